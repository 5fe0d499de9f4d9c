"""Pinned versions of everything the local cluster builds and runs.

Kubernetes v1.35.4 is the newest 1.35 patch the Go module proxy serves here; 1.35 is what the Kueue,
KubeRay and kwok releases we run are built against (k8s.io/* v0.35.x/v0.36.x), so the apiserver speaks
exactly the API those controllers expect. etcd is the version that release's go.mod requires.
"""

from __future__ import annotations

KUBERNETES = "v1.35.4"
ETCD = "v3.6.5"  # go.etcd.io/etcd/server/v3 as required by k8s.io/kubernetes KUBERNETES (see tools/k8s/go.mod)
KWOK = "v0.8.0"
KUEUE = "v0.17.1"
KUBERAY = "v1.5.0"
APPWRAPPER = "v1.2.0"  # v1.2.1 is served by the proxy but missing from the checksum database
JAEGER = "v1.76.0"  # github.com/jaegertracing/jaeger (its cmd/jaeger is Jaeger v2, an OpenTelemetry collector)
HELM = "v3.22.0"  # helm.sh/helm/v3, for the chart tests (lint, template)
FAKE_GCS_SERVER = "v1.56.1"  # github.com/fsouza/fake-gcs-server, the GCS server of the downloader tests
UPSTREAM_KAIWO = "v0.2.1"  # github.com/silogen/kaiwo: the Go operator bench/bench_e2e.py compares against
