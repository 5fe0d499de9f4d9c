"""Property tests of translate: any KaiwoJob/KaiwoService the CRD schema lets through, including malformed
embedded Job/Deployment/RayJob/RayService specs, gives children or a typed ``TranslateError`` whose message
names a field under ``spec.`` — never an exception, and never the catch-all for shapes nobody checked.

Embedded specs are drawn two ways: a valid object with one node somewhere replaced by an arbitrary JSON value
(finds wrong types deep in known places), and arbitrary JSON built from the Kubernetes field names the
builders read (finds structures nobody thought of).
"""

from __future__ import annotations

import copy
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kaiwo.runtime.objects import Obj
from kaiwo.translate.gpus import GpuPool
from kaiwo.translate.meta import INSUFFICIENT_GPUS, INVALID_SPEC, NO_GPUS, UNEVEN_GPUS, TranslateError
from kaiwo.translate.workload import Children, Facts, desired_children
from tests.builders import KaiwoJobBuilder, KaiwoServiceBuilder
from tests.strategies import FIELDS, JSON, KIND_OF, VALID, mutated

FACTS = Facts(gpu_pools=(GpuPool("amd", 8, 2),))


def cr(field: str, embedded: Any, **spec: Any) -> Obj:
    builder = KaiwoJobBuilder if KIND_OF[field] == "KaiwoJob" else KaiwoServiceBuilder
    workload = builder("w", "ns").uid("u").spec_field(field, embedded)
    for key, value in spec.items():
        workload.spec_field(key, value)
    return workload.obj()


def check(obj: Obj) -> None:
    out = desired_children(obj, FACTS)
    if isinstance(out, TranslateError):
        assert out.reason in (INVALID_SPEC, NO_GPUS, INSUFFICIENT_GPUS, UNEVEN_GPUS), out
        assert out.message.startswith("spec."), out.message
        assert "cannot be translated" not in out.message, f"a shape the checks missed: {out.message}"
    else:
        assert isinstance(out, Children)
        orjson.dumps([*out.objects])  # plain JSON, ready to apply


FIELD = st.sampled_from(sorted(VALID))
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(st.data(), FIELD)
def test_one_wrong_node_in_a_valid_embedded_spec(data: st.DataObject, field: str) -> None:
    check(cr(field, data.draw(mutated(field))))


@SETTINGS
@given(FIELD, JSON)
def test_arbitrary_embedded_json(field: str, embedded: Any) -> None:
    check(cr(field, embedded))


@SETTINGS
@given(FIELD, st.dictionaries(st.sampled_from(FIELDS), JSON, max_size=3))
def test_arbitrary_embedded_spec(field: str, spec: Obj) -> None:
    check(cr(field, {"spec": spec}))


TOP_FIELDS = [
    "image",
    "entrypoint",
    "gpus",
    "replicas",
    "gpusPerReplica",
    "gpuVendor",
    "gpuModels",
    "env",
    "resources",
    "storage",
    "secretVolumes",
    "podTemplateSpecLabels",
    "imagePullSecrets",
    "duration",
    "clusterQueue",
    "priorityClass",
    "user",
    "ray",
    "dangerous",
    "preferredTopologyLabel",
    "requiredTopologyLabel",
]


@SETTINGS
@given(FIELD, st.dictionaries(st.sampled_from(TOP_FIELDS), JSON, max_size=4))
def test_arbitrary_kaiwo_fields(field: str, top: Obj) -> None:
    check(cr(field, VALID[field], **top))


def test_template_17_names_the_field() -> None:
    out = desired_children(cr("job", {"spec": {"template": 17}}), Facts())
    assert out == TranslateError(INVALID_SPEC, "spec.job.spec.template: must be an object, not 17")


def test_a_deep_wrong_type_names_its_path() -> None:
    bad = copy.deepcopy(VALID["rayService"])
    bad["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["env"] = "A=1"
    out = desired_children(cr("rayService", bad), Facts())
    assert isinstance(out, TranslateError)
    assert out.message == (
        "spec.rayService.spec.rayClusterConfig.workerGroupSpecs[0].template.spec.containers[0].env: "
        "must be a list, not a string"
    )


def test_the_valid_specs_translate() -> None:
    for field, embedded in VALID.items():
        assert isinstance(desired_children(cr(field, embedded), Facts()), Children), field
