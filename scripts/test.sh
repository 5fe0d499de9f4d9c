#!/usr/bin/env bash
# All checks and tests: lint, types, unit tests, and e2e tests against a local control plane that the
# test session builds (first time only), starts and stops. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
.venv/bin/ruff check kaiwo tests tools bench
.venv/bin/ruff format --check kaiwo tests tools bench
.venv/bin/mypy --cache-dir "${XDG_CACHE_HOME:-$HOME/.cache}/kaiwo/mypy"  # shared by clones: a fresh one checks in seconds
.venv/bin/kaiwo-dev build >/dev/null  # builds show their progress here rather than inside a test fixture
# Two workers, each with its own local cluster, each taking whole files (module-scoped operators stay shared). The
# e2e tests mostly wait on Kueue and the controllers, so two clusters on two cores take about half the time of one
# (tests/conftest.py). `-n 0` after it runs serially.
exec .venv/bin/pytest -ra -n 2 --dist loadfile "$@"
