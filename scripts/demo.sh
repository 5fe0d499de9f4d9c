#!/usr/bin/env bash
# The main job: build what is missing, start the local GPU cluster, show it. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export PATH="$PWD/.venv/bin:$PATH"
eval "$(kaiwo-dev up)"
echo
kaiwo-dev status
cat <<EOT

The cluster keeps running. Use it with:
  export KUBECONFIG=$KUBECONFIG
  $(kaiwo-dev build 2>/dev/null | awk '$1=="kubectl"{print $2}') get nodes
Stop it with: .venv/bin/kaiwo-dev down
EOT
