#!/usr/bin/env bash
# Create .venv with kaiwo and its dev tools; a no-op when pyproject.toml has not changed since the last run.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "kaiwo needs Python >= 3.11 (found $("$PY" --version 2>&1)); set PYTHON=/path/to/python3.11+" >&2
  exit 1
fi
if ! command -v go >/dev/null; then
  echo "the local cluster is built from Go modules: install Go >= 1.26 (https://go.dev/dl) and retry" >&2
  exit 1
fi
stamp=.venv/.kaiwo-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "installing kaiwo and its dev tools into .venv ..." >&2
  "$PY" -m venv .venv
  # uv resolves and installs in about 10 s from a cold cache (pip: 3-4 minutes here); pip when uv is not available.
  if .venv/bin/pip install --quiet --disable-pip-version-check uv; then
    .venv/bin/uv pip install --quiet --python .venv/bin/python -e '.[dev]'
  else
    .venv/bin/pip install --quiet --disable-pip-version-check -e '.[dev]'
  fi
  echo "$want" > "$stamp"
fi
