"""GPU node taints: added to GPU nodes only, removed when switched off or re-keyed, an admin's taint kept."""

from __future__ import annotations

from kaiwo.controllers.nodetaints import ANNOTATION, desired_patch
from kaiwo.runtime.objects import Obj
from tests.builders import NodeBuilder

KEY = "kaiwo.silogen.ai/gpu"


def node(gpus: str = "8", taints: list[Obj] | None = None, added: str | None = None) -> Obj:
    built = NodeBuilder("n").resource_version("7").gpus(int(gpus), "amd")
    for taint in taints or []:
        built.taint(taint["key"], taint.get("value", ""), taint["effect"])
    return (built.annotation(ANNOTATION, added) if added else built).obj()


def test_taints_gpu_nodes_only() -> None:
    patch = desired_patch(node(taints=[{"key": "other", "effect": "NoExecute"}]), True, KEY)
    assert patch == {
        "metadata": {"resourceVersion": "7", "annotations": {ANNOTATION: KEY}},
        "spec": {
            "taints": [{"key": "other", "effect": "NoExecute"}, {"key": KEY, "value": "true", "effect": "NoSchedule"}]
        },
    }
    assert desired_patch(node(gpus="0"), True, KEY) is None
    tainted = node(taints=[{"key": KEY, "value": "true", "effect": "NoSchedule"}], added=KEY)
    assert desired_patch(tainted, True, KEY) is None  # settled: no write


def test_removal_and_rekeying() -> None:
    tainted = node(taints=[{"key": KEY, "value": "true", "effect": "NoSchedule"}], added=KEY)
    off = desired_patch(tainted, False, KEY)
    assert off is not None and off["spec"]["taints"] is None and off["metadata"]["annotations"] == {ANNOTATION: None}
    moved = desired_patch(tainted, True, "example.com/gpu")
    assert moved is not None and [t["key"] for t in moved["spec"]["taints"]] == ["example.com/gpu"]


def test_an_admins_taint_of_the_same_key_is_never_removed() -> None:
    admin = node(taints=[{"key": KEY, "value": "true", "effect": "NoSchedule"}])  # not added by Kaiwo
    assert desired_patch(admin, False, KEY) is None
    assert desired_patch(admin, True, KEY) is None  # switched on: not duplicated, not claimed
