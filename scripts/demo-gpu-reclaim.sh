#!/usr/bin/env bash
# Idle-GPU reclamation on the local cluster: an idle AMD job (GPU utilisation scripted to 1 % by the pod annotation
# kwok.kaiwo.dev/gpu-utilization, read from kaiwo-dev's fake exporter) gives its GPUs to a job that waits for them.
# Runs its own operator with --resource-monitoring and --gpu-preemption (stop scripts/demo.sh's operator first).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export PATH="$PWD/.venv/bin:$PATH"
eval "$(kaiwo-dev up)"
state=$(dirname "$KUBECONFIG")
kubectl=$(kaiwo-dev build 2>/dev/null | awk '$1=="kubectl"{print $2}')
k() { "$kubectl" --kubeconfig "$KUBECONFIG" "$@"; }
if [ -f "$state/operator.pid" ] && kill -0 "$(cat "$state/operator.pid")" 2>/dev/null; then
  echo "scripts/demo.sh's operator runs without the GPU switches: kill $(cat "$state/operator.pid") first" >&2
  exit 1
fi
metrics=$(python -c 'import json,sys; print(json.load(open(sys.argv[1]))["gpu_metrics"]["all"])' "$state/status.json")
k apply --server-side --field-manager=kaiwo-demo -f charts/kaiwo/crds/ >/dev/null
k wait --for=condition=Established crd --all --timeout=60s >/dev/null
if ! { [ -f "$state/operator-gpu.pid" ] && kill -0 "$(cat "$state/operator-gpu.pid")" 2>/dev/null; }; then
  echo "== starting the operator with GPU monitoring and reclamation, reading $metrics"
  nohup python -m kaiwo.manager --kubeconfig "$KUBECONFIG" --leader-election-namespace default \
    --metrics-bind-address 127.0.0.1:18090 --health-probe-bind-address 127.0.0.1:18091 --log-format text \
    --resource-monitoring --resource-monitoring-metrics-endpoint "$metrics" --resource-monitoring-polling-interval 5s \
    --gpu-preemption --gpu-preemption-metrics-endpoint "$metrics" --gpu-preemption-polling-interval 5s \
    >"$state/operator-gpu.log" 2>&1 &
  echo $! >"$state/operator-gpu.pid"
  for _ in $(seq 60); do
    python -c 'import urllib.request as u; u.urlopen("http://127.0.0.1:18091/readyz", timeout=2)' 2>/dev/null && break
    sleep 1
  done
fi
ns=kaiwo-gpu-demo
k create namespace $ns --dry-run=client -o yaml | k apply -f - >/dev/null
k label namespace $ns kueue-managed=true --overwrite >/dev/null
job() {  # name gpus utilisation-annotation opt-in
  cat <<EOT
apiVersion: kaiwo.silogen.ai/v1alpha1
kind: KaiwoJob
metadata:
  name: $1
  namespace: $ns
  annotations:
    kwok.kaiwo.dev/duration: 3600s
    kwok.kaiwo.dev/gpu-utilization: "$3"
$( [ "$4" = yes ] && printf '    kaiwo.silogen.ai/gpu-preemption.enabled: "true"\n    kaiwo.silogen.ai/gpu-preemption.grace-period: 20s\n' )
spec:
  user: scientist@example.com
  image: busybox:1.36
  entrypoint: sleep 3600
  gpus: $2
EOT
}
echo "== filling the 32 AMD GPUs: a busy 24-GPU job and an idle 8-GPU job that opted in to reclamation"
job busy 24 95 no | k apply -f - >/dev/null
job idle 8 1 yes | k apply -f - >/dev/null
k wait --for=jsonpath='{.status.status}'=RUNNING -n $ns kaiwojob/busy kaiwojob/idle --timeout=180s >/dev/null
echo "== waiting for the idle job's GpuWorkload to be Idle"
for _ in $(seq 60); do
  [ "$(k get gpuworkloads -n $ns -o jsonpath='{.items[0].status.phase}' 2>/dev/null)" = Idle ] && break; sleep 2
done
k get gpuworkloads -n $ns
echo "== submitting an 8-GPU job: it waits for quota, and the idle job is reclaimed for it after its 20 s grace"
job waiting 8 90 no | k apply -f - >/dev/null
k wait --for=jsonpath='{.status.status}'=RUNNING -n $ns kaiwojob/waiting --timeout=240s >/dev/null
k get gpuworkloads -n $ns -o custom-columns=NAME:.metadata.name,PHASE:.status.phase,FOR:.status.preemptedFor,WHY:.status.preemptionReason
k get kaiwojobs -n $ns
kaiwo status amd
cat <<EOT

Explore: export KUBECONFIG=$KUBECONFIG PATH=$PWD/.venv/bin:\$PATH
  kaiwo status job/busy -n $ns; $kubectl get events -n $ns --sort-by=.lastTimestamp | tail
  curl -s $metrics | head; curl -s http://127.0.0.1:18090/metrics | grep kaiwo_gpu
Stop: kill \$(cat $state/operator-gpu.pid); $kubectl delete namespace $ns
EOT
