"""`kaiwo-dev up --addons`: only the chosen controllers run, and a running cluster is not silently reused with
other ones. Starts a private cluster, so it only runs where the binaries are built here."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kaiwo.devcluster.cluster import ClusterError, DevCluster
from kaiwo.runtime.client import Client

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("KAIWO_E2E_KUBECONFIG")), reason="needs the locally built control plane"
)


async def test_only_the_chosen_addons_run(tmp_path: Path) -> None:
    cluster = DevCluster(tmp_path / "state")
    try:
        kubeconfig = cluster.up(addons=("kuberay",), progress=lambda _: None)
        st = cluster.status()
        assert st.data["addons"] == ["kuberay"]
        assert {"kuberay"} <= set(st.data["components"]) and not {"kueue", "appwrapper"} & set(st.data["components"])
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
    finally:
        cluster.down()
