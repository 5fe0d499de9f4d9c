"""kaiwo.translate.workload edge cases that are clearer as small tests than as golden files."""

from __future__ import annotations

from typing import Any

from kaiwo.translate.gpus import GpuPool
from kaiwo.translate.meta import INVALID_SPEC, TranslateError
from kaiwo.translate.workload import Children, Facts, desired_children
from tests.builders import KaiwoJobBuilder, KaiwoServiceBuilder


def cr(spec: dict[str, Any], kind: str = "KaiwoJob") -> dict[str, Any]:
    builder = KaiwoJobBuilder if kind == "KaiwoJob" else KaiwoServiceBuilder
    return builder("w", "ns").uid("u").spec(spec).obj()


def test_ray_job_needs_an_entrypoint() -> None:
    out = desired_children(cr({"ray": True}), Facts())
    assert isinstance(out, TranslateError) and out.reason == INVALID_SPEC and "spec.entrypoint" in out.message


def test_precache_without_size_is_invalid() -> None:
    out = desired_children(
        cr({"image": "i", "storage": {"storageEnabled": True, "huggingFace": {"preCacheRepos": [{"repoId": "a/b"}]}}}),
        Facts(),
    )
    assert isinstance(out, TranslateError) and "huggingFace.storageSize" in out.message


def test_invalid_spec_value() -> None:
    out = desired_children(cr({"image": "i", "gpus": -1}), Facts())
    assert isinstance(out, TranslateError) and out.reason == INVALID_SPEC and out.message.startswith("spec.gpus")


def test_storage_is_separate_and_first() -> None:
    out = desired_children(
        cr(
            {"image": "i", "gpus": 8, "storage": {"storageEnabled": True, "data": {"storageSize": "1Gi"}}},
            "KaiwoService",
        ),
        Facts(gpu_pools=(GpuPool("amd", 8, 1),)),
    )
    assert isinstance(out, Children)
    assert [o["kind"] for o in out.objects] == ["PersistentVolumeClaim", "Deployment"]
    assert [o["kind"] for o in out.storage] == ["PersistentVolumeClaim"]


def test_storage_disabled_is_ignored() -> None:
    out = desired_children(cr({"image": "i", "storage": {"data": {"storageSize": "1Gi"}}}), Facts())
    assert isinstance(out, Children) and out.storage == ()


def test_download_pod_carries_the_workload_annotations() -> None:
    job = cr(
        {
            "image": "i",
            "storage": {
                "storageEnabled": True,
                "data": {
                    "storageSize": "1Gi",
                    "download": {"git": [{"repository": "https://example.com/r.git", "targetPath": "r"}]},
                },
            },
        }
    )
    job["metadata"]["annotations"] = {
        "sidecar.istio.io/inject": "false",
        "kubectl.kubernetes.io/last-applied-configuration": "{}",
    }
    out = desired_children(job, Facts())
    assert isinstance(out, Children)
    (download,) = [o for o in out.storage if o["kind"] == "Job"]
    assert download["spec"]["template"]["metadata"]["annotations"] == {"sidecar.istio.io/inject": "false"}
