"""KaiwoJob and KaiwoService controllers end to end: Kueue admission, kwok pods, status and children.

The queue-config and workload controllers run in this process; Kueue, KubeRay and AppWrapper run in the local
cluster. Every workload uses the default ClusterQueue `kaiwo` that the queue-config controller derives from
the fake GPU nodes.
"""

from __future__ import annotations

from kaiwo.runtime.client import Client
from kaiwo.runtime.manager import Manager
from kaiwo.runtime.objects import condition
from tests.e2e.helpers import API, event_reasons, eventually, job_pods, kaiwojob, phase_is


async def test_busybox_job_completes_after_admission(client: Client, namespace: str, operator: Manager) -> None:
    await client.create(kaiwojob("hello", namespace, user="test@amd.com"))
    done = await eventually(
        lambda: phase_is(client, "KaiwoJob", "hello", namespace, "COMPLETE", "FAILED", "ERROR"),
        "KaiwoJob hello finished",
        timeout=90,
    )
    status = done["status"]
    assert status["status"] == "COMPLETE", status
    assert (condition(done, "Admitted") or {}).get("status") == "True"
    assert status["startTime"] <= status["completionTime"] and status["observedGeneration"] == 1
    job = await client.get("batch/v1", "Job", "hello", namespace)
    ref = job["metadata"]["ownerReferences"][0]
    assert (ref["kind"], ref["name"], ref["controller"]) == ("KaiwoJob", "hello", True)
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "kaiwo"
    assert job["metadata"]["labels"]["kaiwo.silogen.ai/user"] == "test-amd.com"
    assert job["spec"]["backoffLimit"] == 0 and job["spec"]["ttlSecondsAfterFinished"] == 3600
    requests = job["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]
    assert (requests["cpu"], requests["memory"]) == ("2", "16Gi")  # no GPUs: 2 CPU + 16Gi
    lq = await client.get("kueue.x-k8s.io/v1beta1", "LocalQueue", "kaiwo", namespace)
    assert lq["spec"]["clusterQueue"] == "kaiwo"
    reasons = await event_reasons(client, "KaiwoJob", "hello", namespace, wait_for={"WorkloadComplete"})
    # One event per transition. A phase shorter than the status pass's wait for related changes (1 s, see
    # docs/design/runtime.md#related-batch) may never be written: here PENDING (Kueue admits at once) or RUNNING.
    assert set(reasons.values()) == {1}, reasons
    assert set(reasons) <= {"WorkloadPending", "WorkloadStarting", "WorkloadRunning", "WorkloadComplete"}, reasons
    # Kueue's admission event, on the Workload it made for the Job
    admitted = [
        e
        for e in await client.list("v1", "Event", namespace)
        if e["involvedObject"]["kind"] == "Workload" and e["reason"] == "Admitted"
    ]
    assert admitted and "kaiwo" in admitted[0]["message"], admitted


async def test_failing_job_reaches_failed(client: Client, namespace: str, operator: Manager) -> None:
    await client.create(kaiwojob("broken", namespace, annotations={"kwok.kaiwo.dev/fail": "true"}))
    done = await eventually(
        lambda: phase_is(client, "KaiwoJob", "broken", namespace, "FAILED", "COMPLETE"),
        "KaiwoJob broken finished",
        timeout=90,
    )
    assert done["status"]["status"] == "FAILED"


async def test_multi_node_gpu_job_becomes_an_indexed_job(client: Client, namespace: str, operator: Manager) -> None:
    await client.create(kaiwojob("ddp", namespace, gpus=16, annotations={"kwok.kaiwo.dev/duration": "30s"}))
    await eventually(lambda: phase_is(client, "KaiwoJob", "ddp", namespace, "RUNNING"), "ddp RUNNING", timeout=90)
    job = await client.get("batch/v1", "Job", "ddp", namespace)
    assert job["spec"]["completionMode"] == "Indexed"
    assert job["spec"]["parallelism"] == job["spec"]["completions"] == 2
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["amd.com/gpu"] == "8"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["PET_NNODES"] == "2" and env["NUM_GPUS"] == "16" and env["MASTER_ADDR"]
    assert "WORLD_SIZE" not in env  # per process: torchrun sets it (docs/scientist-guide.md, multi-node training)
    svc = await client.get("v1", "Service", "ddp", namespace)
    assert svc["spec"]["clusterIP"] == "None"
    pods = await job_pods(client, namespace, "ddp", 2)
    assert all(p["spec"]["nodeName"].startswith("amd-mi300x-") for p in pods)
    assert {p["spec"]["schedulerName"] for p in pods} == {"kaiwo-scheduler"}  # the cluster's bin-packing profile


async def test_unsatisfiable_gpu_request_is_an_error_with_a_message(
    client: Client, namespace: str, operator: Manager
) -> None:
    await client.create(kaiwojob("huge", namespace, gpus=13))
    err = await eventually(lambda: phase_is(client, "KaiwoJob", "huge", namespace, "ERROR"), "huge ERROR")
    cond = condition(err, "Schedulable")
    assert cond is not None and cond["status"] == "False" and "12" in cond["message"]
    assert await client.get_or_none("batch/v1", "Job", "huge", namespace) is None


async def test_service_runs_and_spec_edits_reach_the_deployment(
    client: Client, namespace: str, operator: Manager
) -> None:
    svc = {
        "apiVersion": API,
        "kind": "KaiwoService",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {"image": "nginx:1.27", "gpus": 1, "replicas": 1},
    }
    await client.create(svc)
    await eventually(lambda: phase_is(client, "KaiwoService", "web", namespace, "RUNNING"), "web RUNNING", timeout=90)
    dep = await client.get("apps/v1", "Deployment", "web", namespace)
    assert dep["spec"]["template"]["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "kaiwo"
    await client.patch(API, "KaiwoService", "web", {"spec": {"env": [{"name": "MODE", "value": "edited"}]}}, namespace)

    async def edited() -> bool:
        d = await client.get("apps/v1", "Deployment", "web", namespace)
        env = d["spec"]["template"]["spec"]["containers"][0].get("env") or []
        return {"name": "MODE", "value": "edited"} in env

    await eventually(edited, "the edit reached the Deployment", timeout=30)


async def test_deleting_a_job_removes_its_children(client: Client, namespace: str, operator: Manager) -> None:
    await client.create(kaiwojob("gone", namespace, annotations={"kwok.kaiwo.dev/duration": "60s"}))
    await eventually(lambda: client.get_or_none("batch/v1", "Job", "gone", namespace), "Job gone created")
    await client.delete(API, "KaiwoJob", "gone", namespace)

    async def collected() -> bool:
        return await client.get_or_none("batch/v1", "Job", "gone", namespace) is None

    await eventually(collected, "the Job garbage-collected", timeout=60)


async def test_nvidia_8gpu_job_has_upstreams_fields(client: Client, namespace: str, operator: Manager) -> None:
    await client.create(
        kaiwojob(
            "train",
            namespace,
            gpus=8,
            gpuVendor="nvidia",
            user="alice@example.com",
            annotations={"kwok.kaiwo.dev/duration": "60s"},
        )
    )
    await eventually(lambda: phase_is(client, "KaiwoJob", "train", namespace, "RUNNING"), "train RUNNING", timeout=90)
    job = await client.get("batch/v1", "Job", "train", namespace)
    labels = job["metadata"]["labels"]
    assert labels["kaiwo.silogen.ai/user"] == "alice-example.com" and labels["kaiwo.silogen.ai/type"] == "job"
    assert labels["kaiwo.silogen.ai/run-id"] and labels["kueue.x-k8s.io/queue-name"] == "kaiwo"
    assert job["spec"]["suspend"] is False  # Kueue unsuspended it; Kaiwo created it suspended
    assert job["spec"]["backoffLimit"] == 0 and job["spec"]["ttlSecondsAfterFinished"] == 3600
    pod = job["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert c["command"][:2] == ["/bin/sh", "-c"] or c["command"][0].endswith("sh")
    assert (
        c["resources"]["requests"]
        == c["resources"]["limits"]
        == {"cpu": "32", "memory": "256Gi", "nvidia.com/gpu": "8"}
    )
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert (env["NUM_GPUS"], env["NUM_REPLICAS"], env["NUM_GPUS_PER_REPLICA"]) == ("8", "1", "8")
    assert pod["schedulerName"] == "kaiwo-scheduler"
    assert pod["securityContext"] == {"fsGroup": 1000, "runAsGroup": 1000, "runAsUser": 1000}
    assert any(v.get("emptyDir", {}).get("medium") == "Memory" for v in pod["volumes"])  # /dev/shm
    (p,) = await client.list("v1", "Pod", namespace, labelSelector="job-name=train")
    assert p["spec"]["nodeName"].startswith("nvidia-h100-")


async def test_user_job_spec_and_ttl_are_kept_and_metadata_reaches_pods(
    client: Client, namespace: str, operator: Manager
) -> None:
    await client.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "creds", "namespace": namespace},
            "stringData": {"token": "t"},
        }
    )
    await client.create(
        kaiwojob(
            "custom",
            namespace,
            entrypoint=None,
            annotations={"team.example.com/cost-center": "42"},
            podTemplateSpecLabels={"team": "vision"},
            env=[{"name": "MODE", "value": "fast"}],
            imagePullSecrets=[{"name": "registry"}],
            secretVolumes=[{"name": "creds", "secretName": "creds", "mountPath": "/secrets"}],
            job={
                "apiVersion": "batch/v1",
                "kind": "Job",
                "spec": {
                    "ttlSecondsAfterFinished": 60,
                    "template": {
                        "spec": {
                            "containers": [
                                {"name": "workload", "image": "busybox:1.36", "command": ["sh", "-c", "echo custom"]}
                            ]
                        }
                    },
                },
            },
        )
    )
    done = await eventually(
        lambda: phase_is(client, "KaiwoJob", "custom", namespace, "COMPLETE", "FAILED", "ERROR"),
        "custom finished",
        timeout=90,
    )
    assert done["status"]["status"] == "COMPLETE", done["status"]
    job = await client.get("batch/v1", "Job", "custom", namespace)
    assert job["spec"]["ttlSecondsAfterFinished"] == 60
    tmpl = job["spec"]["template"]
    assert tmpl["metadata"]["labels"]["team"] == "vision"
    assert tmpl["metadata"]["annotations"]["team.example.com/cost-center"] == "42"
    c = tmpl["spec"]["containers"][0]
    assert c["command"] == ["sh", "-c", "echo custom"]
    assert {"name": "MODE", "value": "fast"} in c["env"]
    assert tmpl["spec"]["imagePullSecrets"] == [{"name": "registry"}]
    assert any(m["mountPath"] == "/secrets" for m in c["volumeMounts"])
    assert any(v.get("secret", {}).get("secretName") == "creds" for v in tmpl["spec"]["volumes"])


async def test_ray_job_splits_gpus_over_workers_with_a_gpu_free_head(
    client: Client, namespace: str, operator: Manager
) -> None:
    await client.create(kaiwojob("ray-train", namespace, ray=True, gpus=14, entrypoint="python train.py"))
    rayjob = await eventually(
        lambda: client.get_or_none("ray.io/v1", "RayJob", "ray-train", namespace), "RayJob ray-train"
    )
    cluster = rayjob["spec"]["rayClusterSpec"]
    (group,) = cluster["workerGroupSpecs"]
    assert group["replicas"] == 2
    assert group["template"]["spec"]["containers"][0]["resources"]["limits"]["amd.com/gpu"] == "7"
    head = cluster["headGroupSpec"]["template"]["spec"]["containers"][0]["resources"]
    assert "amd.com/gpu" not in head.get("limits", {}) and "amd.com/gpu" not in head.get("requests", {})
    assert rayjob["spec"]["shutdownAfterJobFinishes"] is True
    assert rayjob["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "kaiwo"
    await eventually(
        lambda: phase_is(client, "KaiwoJob", "ray-train", namespace, "STARTING", "RUNNING"),
        "ray-train admitted and starting",
        timeout=90,
    )


async def test_ray_service_is_wrapped_in_an_appwrapper(client: Client, namespace: str, operator: Manager) -> None:
    await client.create(
        {
            "apiVersion": API,
            "kind": "KaiwoService",
            "metadata": {"name": "serve", "namespace": namespace},
            "spec": {
                "image": "rayproject/ray:2.9.0",
                "ray": True,
                "gpus": 2,
                "rayService": {"serveConfigV2": "applications: []"},
            },
        }
    )
    aw = await eventually(
        lambda: client.get_or_none("workload.codeflare.dev/v1beta2", "AppWrapper", "serve", namespace),
        "AppWrapper serve",
    )
    assert aw["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "kaiwo"
    (component,) = aw["spec"]["components"]
    assert component["template"]["kind"] == "RayService"
    await eventually(
        lambda: client.get_or_none("ray.io/v1", "RayService", "serve", namespace),
        "the RayService created by the AppWrapper after admission",
        timeout=90,
    )
