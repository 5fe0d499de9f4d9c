#!/usr/bin/env bash
# The main job: build what is missing, start the local GPU cluster with Kueue/KubeRay/AppWrapper, start the
# Kaiwo operator, submit a sample KaiwoJob and KaiwoService and follow them to COMPLETE / RUNNING.
# Safe to run again: a running cluster and operator are reused.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export PATH="$PWD/.venv/bin:$PATH"
eval "$(kaiwo-dev up)"
state=$(dirname "$KUBECONFIG")
kubectl=$(kaiwo-dev build 2>/dev/null | awk '$1=="kubectl"{print $2}')
k() { "$kubectl" --kubeconfig "$KUBECONFIG" "$@"; }

echo "== nodes"
kaiwo-dev nodes
echo "== installing Kaiwo's CRDs"
k apply --server-side --field-manager=kaiwo-demo -f charts/kaiwo/crds/ >/dev/null
k wait --for=condition=Established crd --all --timeout=60s >/dev/null

if [ -f "$state/operator.pid" ] && kill -0 "$(cat "$state/operator.pid")" 2>/dev/null; then
  echo "== the Kaiwo operator is already running (pid $(cat "$state/operator.pid"))"
else
  echo "== starting the Kaiwo operator (logs: $state/operator.log)"
  nohup python -m kaiwo.manager --kubeconfig "$KUBECONFIG" --leader-election-namespace default \
    --metrics-bind-address 127.0.0.1:18080 --health-probe-bind-address 127.0.0.1:18081 \
    --log-format text >"$state/operator.log" 2>&1 &
  echo $! >"$state/operator.pid"
  for _ in $(seq 60); do
    python -c 'import urllib.request as u; u.urlopen("http://127.0.0.1:18081/readyz", timeout=2)' 2>/dev/null && break
    sleep 1
  done
fi

echo "== submitting examples/kaiwojob-hello.yaml and examples/kaiwoservice-web.yaml into namespace kaiwo-demo"
k create namespace kaiwo-demo --dry-run=client -o yaml | k apply -f - >/dev/null
k label namespace kaiwo-demo kueue-managed=true --overwrite >/dev/null
k apply -n kaiwo-demo -f examples/kaiwojob-hello.yaml -f examples/kaiwoservice-web.yaml >/dev/null

for i in $(seq 90); do
  job=$(k get kaiwojob hello-gpu -n kaiwo-demo -o jsonpath='{.status.status}' 2>/dev/null || true)
  svc=$(k get kaiwoservice inference -n kaiwo-demo -o jsonpath='{.status.status}' 2>/dev/null || true)
  printf '\r  %3ss  KaiwoJob hello-gpu: %-10s KaiwoService inference: %-10s' "$i" "${job:-NEW}" "${svc:-NEW}"
  [ "$job" = COMPLETE ] && [ "$svc" = RUNNING ] && break
  sleep 1
done
echo
k get kaiwojobs,kaiwoservices -n kaiwo-demo
cat <<EOT

Explore:
  export KUBECONFIG=$KUBECONFIG
  $kubectl get kaiwojobs,kaiwoservices,jobs,deployments,pods -n kaiwo-demo
  $kubectl get clusterqueues,localqueues -A; $kubectl get kaiwoqueueconfig kaiwo -o yaml
  curl -s http://127.0.0.1:18080/metrics | grep controller_runtime_reconcile_total   # Prometheus metrics
Stop: kill \$(cat $state/operator.pid); .venv/bin/kaiwo-dev down
EOT
