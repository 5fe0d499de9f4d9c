"""`kaiwo-dev up --addons`: only the chosen addons run (here KubeRay, and Jaeger, which receives the apiserver's
spans), a running cluster is not silently reused with other ones, and a SIGKILLed supervisor takes every component
with it. Starts a private cluster, so it only runs where the binaries are built here."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import aiohttp
import pytest
from opentelemetry.sdk.trace import TracerProvider

from kaiwo.devcluster import controllers
from kaiwo.devcluster.cluster import ClusterError, DevCluster
from kaiwo.devcluster.components import GO_RUNTIME_DEFAULTS
from kaiwo.devcluster.process import pid_alive
from kaiwo.runtime.client import Client
from tests.e2e.helpers import eventually

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("KAIWO_E2E_KUBECONFIG")), reason="needs the locally built control plane"
)


def go_settings(pid: int, keys: dict[str, str]) -> dict[str, str]:
    """The values of ``keys`` in the environment a process started with."""
    pairs = (e.decode().split("=", 1) for e in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") if b"=" in e)
    return {k: v for k, v in pairs if k in keys}


async def test_only_the_chosen_addons_run_and_die_with_their_supervisor(tmp_path: Path) -> None:
    cluster = DevCluster(tmp_path / "state")
    try:
        kubeconfig = cluster.up(addons=("kuberay", "jaeger"), progress=lambda _: None)
        st = cluster.status()
        assert st.data["addons"] == ["kuberay", "jaeger"]
        assert {"kuberay", "jaeger"} <= set(st.data["components"])
        assert not {"kueue", "appwrapper"} & set(st.data["components"])
        with pytest.raises(ClusterError, match="runs addons"):
            cluster.up(progress=lambda _: None)  # default: all addons
        async with await Client.from_kubeconfig(str(kubeconfig)) as client:
            hooks = await client.list("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration")
            assert not [h for h in hooks if h["metadata"]["name"].startswith("kueue-")]
            crd = await client.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", "workloads.kueue.x-k8s.io")
            # Without Kueue nothing could serve conversions, so the CRD has none (the CRDs are still installed).
            assert crd["spec"]["conversion"]["strategy"] == "None"
            await client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "plain"}})
            await client.create(
                {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "metadata": {"name": "j", "namespace": "plain", "labels": {"kueue.x-k8s.io/queue-name": "q"}},
                    "spec": {
                        "template": {
                            "spec": {
                                "restartPolicy": "Never",
                                "containers": [{"name": "c", "image": "busybox", "command": ["true"]}],
                            }
                        }
                    },
                }
            )
            job = await client.get("batch/v1", "Job", "j", "plain")
            assert job["spec"]["suspend"] is False  # no Kueue webhook suspended it
            # The jaeger addon receives the apiserver's spans of a request that carries a sampled traceparent.
            with TracerProvider().get_tracer("e2e").start_as_current_span("probe"):
                await client.get("v1", "Namespace", "plain")
            ui = controllers.jaeger_endpoints(st.data["ports"])["ui"]

            async def apiserver_traced() -> bool:
                async with aiohttp.ClientSession() as http, http.get(f"{ui}/api/services") as r:
                    return "apiserver" in ((await r.json()).get("data") or [])

            await eventually(apiserver_traced, "the apiserver's spans in the jaeger addon", timeout=30)
        # The Go components run with the local cluster's GC settings (an environment value wins).
        want = {k: os.environ.get(k, v) for k, v in GO_RUNTIME_DEFAULTS.items()}
        for name in ("kube-apiserver", "etcd", "kuberay"):
            assert go_settings(st.data["components"][name]["pid"], want) == want
        # No orphans: a supervisor killed without a chance to clean up takes its components with it.
        pids = [c["pid"] for c in cluster.status().data["components"].values()]
        os.kill(st.data["pid"], signal.SIGKILL)

        async def all_dead() -> bool:
            return not any(pid_alive(p) for p in pids)

        await eventually(all_dead, "every component gone after the supervisor's SIGKILL", timeout=15, interval=0.1)
        assert cluster.status().phase == "failed"
    finally:
        cluster.down()
