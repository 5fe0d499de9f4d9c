from pathlib import Path

import pytest
from pydantic import ValidationError

from kaiwo.devcluster import topology


def test_default_topology_has_amd_nvidia_and_cpu_pools() -> None:
    topo = topology.load()
    nodes = topology.node_manifests(topo, "v1.35.4")
    gpus: dict[str, int] = {}
    for n in nodes:
        cap = n["status"]["capacity"]
        key = next((k for k in cap if k.endswith("/gpu")), "none")
        gpus[key] = gpus.get(key, 0) + 1
        assert n["metadata"]["annotations"][topology.KWOK_NODE_ANNOTATION] == "fake"
        assert n["metadata"]["labels"]["kubernetes.io/hostname"] == n["metadata"]["name"]
        assert n["status"]["allocatable"] == cap
    assert gpus == {"amd.com/gpu": 4, "nvidia.com/gpu": 2, "none": 1}
    amd = next(n for n in nodes if n["metadata"]["name"] == "amd-mi300x-0")
    assert amd["metadata"]["labels"]["beta.amd.com/gpu.family.AI"] == "8"
    assert amd["status"]["capacity"]["amd.com/gpu"] == "8"


def test_custom_file_and_validation_errors_name_the_field(tmp_path: Path) -> None:
    good = tmp_path / "t.yaml"
    good.write_text(
        "pools:\n- {name: small, count: 2, cpu: '4', memory: 8Gi, gpu: {resource: amd.com/gpu, count: 1}}\n"
    )
    names = [n["metadata"]["name"] for n in topology.node_manifests(topology.load(good), "v1.35.4")]
    assert names == ["small-0", "small-1"]

    bad = tmp_path / "bad.yaml"
    bad.write_text("pools:\n- {name: Bad_Name, count: 0, cpu: '4', memory: 8Gi}\n")
    with pytest.raises(ValidationError) as e:
        topology.load(bad)
    text = str(e.value)
    assert "pools.0.name" in text and "pools.0.count" in text
