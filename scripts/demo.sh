#!/usr/bin/env bash
# The main job: build what is missing, start the local GPU cluster with Kueue/KubeRay/AppWrapper, start the
# Kaiwo operator, submit a sample KaiwoJob and KaiwoService and follow them to COMPLETE / RUNNING.
# Safe to run again: a running cluster and operator are reused.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export PATH="$PWD/.venv/bin:$PATH"
eval "$(kaiwo-dev up --addons all,jaeger)"
state=$(dirname "$KUBECONFIG")
jaeger() { kaiwo-dev status --state "$state" | awk -v k="$1:" '$1=="jaeger" && $2==k {print $3}'; }
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
  OTEL_EXPORTER_OTLP_ENDPOINT=$(jaeger otlp_grpc) OTEL_EXPORTER_OTLP_PROTOCOL=grpc \
  nohup python -m kaiwo.manager --kubeconfig "$KUBECONFIG" --leader-election-namespace default \
    --metrics-bind-address 127.0.0.1:18080 --health-probe-bind-address 127.0.0.1:18081 \
    --log-format text >"$state/operator.log" 2>&1 &
  echo $! >"$state/operator.pid"
  for _ in $(seq 60); do
    python -c 'import urllib.request as u; u.urlopen("http://127.0.0.1:18081/readyz", timeout=2)' 2>/dev/null && break
    sleep 1
  done
fi

echo "== submitting examples/kaiwojob-hello.yaml and examples/kaiwoservice-web.yaml with the kaiwo CLI"
k create namespace kaiwo-demo --dry-run=client -o yaml | k apply -f - >/dev/null
k label namespace kaiwo-demo kueue-managed=true --overwrite >/dev/null
submit=(kaiwo submit -n kaiwo-demo --user scientist@example.com
        -f examples/kaiwojob-hello.yaml -f examples/kaiwoservice-web.yaml)
"${submit[@]}"
echo "== following them until the job is COMPLETE and the service RUNNING (kaiwo submit --wait)"
"${submit[@]}" --wait --timeout 180 >/dev/null
kaiwo list -n kaiwo-demo --all-users
cat <<EOT

Explore (the kaiwo CLI and kubectl use this cluster once you run the export):
  export KUBECONFIG=$KUBECONFIG PATH=$PWD/.venv/bin:\$PATH
  kaiwo status job/hello-gpu -n kaiwo-demo        # why: phase, Kueue admission and queue usage, children, events
  kaiwo doctor --operator-namespace default       # the cluster's Kaiwo setup, each finding with what to do
  kaiwo logs job/hello-gpu -n kaiwo-demo          # (kwok serves a canned log in the local cluster)
  kaiwo status queues; kaiwo status amd; kaiwo status nvidia
  kaiwo submit -f my-job.yaml --wait              # your own; see docs/scientist-guide.md
  $kubectl get kaiwojobs,kaiwoservices,jobs,deployments,pods -n kaiwo-demo
  $kubectl get clusterqueues,localqueues -A; $kubectl get kaiwoqueueconfig kaiwo -o yaml
  curl -s '$(jaeger ui)/api/traces?service=kaiwo-operator&limit=1'   # a trace in Jaeger (with the apiserver's spans)
  curl -s http://127.0.0.1:18080/metrics | grep -E '^(kaiwo_workloads|controller_runtime_reconcile_total)'
Stop: kill \$(cat $state/operator.pid); .venv/bin/kaiwo-dev down
EOT
