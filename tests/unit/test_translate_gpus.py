"""GPU maths (kaiwo.translate.gpus), table-driven."""

from __future__ import annotations

import pytest

from kaiwo.translate.gpus import GpuPool, Plan, gpu_pools, plan
from kaiwo.translate.meta import INSUFFICIENT_GPUS, NO_GPUS, UNEVEN_GPUS, TranslateError
from kaiwo.translate.nodepools import NodePool

AMD8 = (GpuPool("amd", 8, 4),)
MIXED = (GpuPool("amd", 8, 2), GpuPool("amd", 4, 2), GpuPool("nvidia", 8, 1))


@pytest.mark.parametrize(
    ("gpus", "replicas", "per", "pools", "expected"),
    [
        (0, 1, None, (), (0, 1, 0)),
        (0, 3, None, (), (0, 3, 0)),
        (1, 1, None, AMD8, (1, 1, 1)),
        (8, 1, None, AMD8, (8, 1, 8)),
        (14, 1, None, AMD8, (14, 2, 7)),
        (16, 1, None, AMD8, (16, 2, 8)),
        (32, 1, None, AMD8, (32, 4, 8)),
        (0, 2, 4, AMD8, (8, 2, 4)),  # explicit split used as given
        (8, 4, 2, AMD8, (8, 4, 2)),
        (8, 1, None, MIXED, (8, 2, 4)),  # smallest node of the vendor decides, as upstream
    ],
)
def test_plans(
    gpus: int, replicas: int, per: int | None, pools: tuple[GpuPool, ...], expected: tuple[int, int, int]
) -> None:
    out = plan(
        gpus=gpus, replicas=replicas, gpus_per_replica=per, vendor="AMD", resource_key="amd.com/gpu", pools=pools
    )
    assert isinstance(out, Plan), out
    assert (out.gpus, out.replicas, out.gpus_per_replica) == expected
    assert out.indexed == (out.replicas > 1)


@pytest.mark.parametrize(
    ("gpus", "replicas", "per", "pools", "reason", "words"),
    [
        (1, 1, None, (), NO_GPUS, ["no amd GPU nodes"]),
        (8, 1, None, (GpuPool("nvidia", 8, 2),), NO_GPUS, ["no amd"]),
        (40, 1, None, AMD8, INSUFFICIENT_GPUS, ["40 amd", "has 32", "4 nodes x 8"]),
        (13, 1, None, AMD8, UNEVEN_GPUS, ["13", "12 (2 x 6)", "14 (2 x 7)", "gpusPerReplica"]),
        (9, 1, None, AMD8, UNEVEN_GPUS, ["8 (2 x 4)", "10 (2 x 5)"]),
        (31, 1, None, AMD8, UNEVEN_GPUS, ["28 (4 x 7)", "32 (4 x 8)"]),
        (0, 2, 16, AMD8, INSUFFICIENT_GPUS, ["2 nodes with at least 16", "at most 8"]),
        (0, 3, 8, (GpuPool("amd", 8, 2), GpuPool("amd", 4, 4)), INSUFFICIENT_GPUS, ["has 2"]),
    ],
)
def test_errors_say_what_fits(
    gpus: int, replicas: int, per: int | None, pools: tuple[GpuPool, ...], reason: str, words: list[str]
) -> None:
    out = plan(
        gpus=gpus, replicas=replicas, gpus_per_replica=per, vendor="amd", resource_key="amd.com/gpu", pools=pools
    )
    assert isinstance(out, TranslateError)
    assert out.reason == reason
    for word in words:
        assert word in out.message


def test_gpu_pools_from_node_pools() -> None:
    pools = [
        NodePool("cpu-only-0gpu-8core-28gi", "cpu", "only", 0, nodes=["c"]),
        NodePool("amd-mi300x-8gpu-100core-1000gi", "amd", "mi300x", 8, nodes=["a", "b"]),
    ]
    assert gpu_pools(pools) == (GpuPool("amd", 8, 2),)
