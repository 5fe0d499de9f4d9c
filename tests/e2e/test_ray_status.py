"""Ray workloads' status from KubeRay's own objects, with the real KubeRay and AppWrapper controllers.

What the local cluster can drive: KubeRay's validation (a RayJob it rejects -> ``ValidationFailed``), and a
RayService that KubeRay keeps initializing (fake pods run no Ray, so its Serve applications never report and
``Ready`` stays False): the KaiwoService must stay STARTING although its AppWrapper is Running. Succeeded,
stopped, failed and unhealthy states need a running Ray; they are pinned by the golden status cases
(tests/unit/golden_status) in the shapes KubeRay v1.5 writes.
"""

from __future__ import annotations

from kaiwo.runtime.client import Client
from kaiwo.runtime.manager import Manager
from kaiwo.runtime.objects import Obj, condition
from tests.e2e.helpers import API, eventually, kaiwojob, phase_is


async def test_ray_service_is_not_running_before_the_rayservice_is_ready(
    client: Client, namespace: str, operator: Manager
) -> None:
    await client.create(
        {
            "apiVersion": API,
            "kind": "KaiwoService",
            "metadata": {"name": "llm", "namespace": namespace},
            "spec": {"image": "rayproject/ray:2.9.0", "ray": True, "gpus": 1, "serveConfigV2": "applications: []"},
        }
    )

    async def aw_running() -> bool:
        aw = await client.get_or_none("workload.codeflare.dev/v1beta2", "AppWrapper", "llm", namespace)
        return bool(aw and (aw.get("status") or {}).get("phase") == "Running")

    await eventually(aw_running, "AppWrapper llm Running", timeout=90)

    async def explained() -> Obj | None:
        """The KaiwoService's ServeReady condition repeats the live RayService's Ready reason."""
        obj = await client.get(API, "KaiwoService", "llm", namespace)
        rs = await client.get_or_none("ray.io/v1", "RayService", "llm", namespace)
        serve, ready = condition(obj, "ServeReady") or {}, condition(rs, "Ready") or {}
        return obj if ready.get("reason") and serve.get("reason") == ready.get("reason") else None

    obj = await eventually(explained, "the KaiwoService explains the RayService's readiness", timeout=60)
    serve = condition(obj, "ServeReady") or {}
    rs = await client.get("ray.io/v1", "RayService", "llm", namespace)
    ready = condition(rs, "Ready") or {}
    assert ready.get("status") != "True"  # fake pods: KubeRay never sees Serve answer
    assert obj["status"]["status"] == "STARTING", obj["status"]
    assert serve["status"] == "False" and serve["reason"] == ready.get("reason"), (serve, ready)
    assert rs["metadata"]["labels"]["kaiwo.silogen.ai/name"] == "llm"
    await client.delete(API, "KaiwoService", "llm", namespace)  # stop KubeRay polling the fake head


async def test_rayjob_rejected_by_kuberay_fails_the_kaiwojob(client: Client, namespace: str, operator: Manager) -> None:
    await client.create(
        kaiwojob(
            "bad-env",
            namespace,
            ray=True,
            gpus=1,
            entrypoint="python train.py",
            rayJob={"spec": {"runtimeEnvYAML": "pip: [unclosed"}},
        )
    )
    failed = await eventually(
        lambda: phase_is(client, "KaiwoJob", "bad-env", namespace, "FAILED", "COMPLETE", "ERROR"),
        "KaiwoJob bad-env finished",
        timeout=90,
    )
    rayjob = await client.get("ray.io/v1", "RayJob", "bad-env", namespace)
    assert rayjob["status"]["jobDeploymentStatus"] == "ValidationFailed"
    assert failed["status"]["status"] == "FAILED", failed["status"]
    finished = condition(failed, "RayJobFinished") or {}
    assert finished.get("reason") == "ValidationFailed" and finished.get("message") == rayjob["status"]["message"]
