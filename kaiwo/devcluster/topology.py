"""Fake GPU nodes: the topology file and the Node objects kwok simulates.

A topology is a list of node pools; each pool becomes ``count`` Nodes named ``<pool>-<i>`` with the pool's
capacity and labels. kwok manages exactly the nodes carrying the annotation ``kwok.x-k8s.io/node: fake``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
DEFAULT_FILE = "topology-default.yaml"


class Gpu(BaseModel):
    model_config = ConfigDict(extra="forbid")
    resource: str = Field(pattern=r"^[a-z0-9.-]+/[a-z0-9.-]+$")
    count: int = Field(ge=1)


class NodePool(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=50)
    count: int = Field(ge=1, le=1000)
    cpu: str
    memory: str
    pods: int = 110
    ephemeral_storage: str = Field("2Ti", alias="ephemeralStorage")
    gpu: Gpu | None = None
    labels: dict[str, str] = {}
    taints: list[dict[str, str]] = []

    def node_names(self) -> list[str]:
        return [f"{self.name}-{i}" for i in range(self.count)]


class Topology(BaseModel):
    model_config = ConfigDict(extra="forbid")
    pools: list[NodePool] = Field(min_length=1)


def load(path: Path | None = None) -> Topology:
    if path is None:
        text = resources.files("kaiwo.devcluster").joinpath("data", DEFAULT_FILE).read_text()
    else:
        text = path.read_text()
    return Topology.model_validate(yaml.safe_load(text))


def node_manifests(topology: Topology, kubelet_version: str) -> list[dict[str, Any]]:
    nodes = []
    for pool in topology.pools:
        capacity = {
            "cpu": pool.cpu,
            "memory": pool.memory,
            "pods": str(pool.pods),
            "ephemeral-storage": pool.ephemeral_storage,
        }
        if pool.gpu:
            capacity[pool.gpu.resource] = str(pool.gpu.count)
        for name in pool.node_names():
            nodes.append(
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {
                        "name": name,
                        "annotations": {KWOK_NODE_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
                        "labels": {
                            "kubernetes.io/hostname": name,
                            "kubernetes.io/os": "linux",
                            "kubernetes.io/arch": "amd64",
                            "type": "kwok",
                            **pool.labels,
                        },
                    },
                    "spec": {"taints": list(pool.taints)},
                    "status": {
                        "capacity": capacity,
                        "allocatable": dict(capacity),
                        "nodeInfo": {
                            "architecture": "amd64",
                            "operatingSystem": "linux",
                            "kubeletVersion": kubelet_version,
                            "kubeProxyVersion": kubelet_version,
                        },
                    },
                }
            )
    return nodes
