"""Multi-node KaiwoJobs start torchrun natively: the rendered pod environment, run as real processes.

Each pod of the Indexed Job becomes one local "node" process with exactly the environment the kubelet would
give it (``valueFrom`` of the completion-index annotation resolved to the pod's index). The node runs
tests/unit/rendezvous_agent.py, which reads its configuration the way ``torchrun`` does (``PET_*`` defaults)
and starts one worker per GPU with torchrun's per-process ``WORLD_SIZE``/``RANK``; the workers rendezvous at
node 0's store. Two things differ from a cluster, both outside what is tested: pod 0's DNS name
(``<job>-0.<job>``, the headless Service) resolves to 127.0.0.1, and the store port is a free local port
instead of 29500 so that parallel runs on one machine do not collide.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from kaiwo.api.config import KaiwoConfigSpec
from kaiwo.translate import batchjob
from kaiwo.translate.gpus import GpuPool
from kaiwo.translate.meta import TranslateError
from kaiwo.translate.workload import Facts, desired_children
from tests.builders import KaiwoJobBuilder

AGENT = Path(__file__).parent / "rendezvous_agent.py"
TORCH_LAUNCH_VARS = ("PET_", "WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "NODE_RANK")


def kaiwojob(gpus: int, vendor: str = "amd", **spec: Any) -> dict[str, Any]:
    job = KaiwoJobBuilder("ddp", "team-a").image("rocm/pytorch").gpus(gpus, vendor).entrypoint("torchrun train.py")
    for key, value in spec.items():
        job.spec_field(key, value)
    return job.obj()


def job_template(cr: dict[str, Any], vendor: str = "amd") -> dict[str, Any]:
    facts = Facts(config=KaiwoConfigSpec(), gpu_pools=(GpuPool(vendor, 8, 4),))
    out = desired_children(cr, facts)
    assert not isinstance(out, TranslateError), out
    job = next(o for o in out.workload if o["kind"] == "Job")
    return dict(job["spec"]["template"])


def pod_env(template: dict[str, Any], index: int) -> dict[str, str]:
    """The main container's environment in pod ``index``, as the kubelet resolves it."""
    annotation = f"metadata.annotations['{batchjob.COMPLETION_INDEX_ANNOTATION}']"
    env = {}
    for e in template["spec"]["containers"][0]["env"]:
        if "value" in e:
            env[e["name"]] = e["value"]
        else:
            assert e["valueFrom"]["fieldRef"]["fieldPath"] == annotation, e
            env[e["name"]] = str(index)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_nodes(template: dict[str, Any], nodes: int) -> list[int]:
    port = str(free_port())
    base = {k: v for k, v in os.environ.items() if not k.startswith(TORCH_LAUNCH_VARS)}
    procs = []
    for i in range(nodes):
        env = pod_env(template, i)
        master = env["PET_MASTER_ADDR"]
        env = {k: "127.0.0.1" if v == master else port if v == str(batchjob.MASTER_PORT) else v for k, v in env.items()}
        cmd = [sys.executable, str(AGENT), "agent"]
        procs.append(subprocess.Popen(cmd, env={**base, **env}, stdout=subprocess.PIPE, text=True))
    outs = [p.communicate(timeout=60)[0] for p in procs]
    assert [p.returncode for p in procs] == [0] * nodes, outs
    ranks: list[int] = json.loads(outs[0])
    return ranks


def test_pods_carry_torchruns_environment_and_no_pod_level_world_size() -> None:
    template = job_template(kaiwojob(16))  # 16 AMD GPUs on 8-GPU nodes: 2 pods x 8
    for i in range(2):
        env = pod_env(template, i)
        assert env["PET_NNODES"] == env["NNODES"] == "2"
        assert env["PET_NPROC_PER_NODE"] == "8"
        assert env["PET_NODE_RANK"] == env["NODE_RANK"] == str(i)
        assert env["PET_MASTER_ADDR"] == env["MASTER_ADDR"] == "ddp-0.ddp"  # pod 0 in the headless Service
        assert env["PET_MASTER_PORT"] == env["MASTER_PORT"] == "29500"
        assert "WORLD_SIZE" not in env and "RANK" not in env  # per process: torchrun sets them
        assert env["TORCH_NCCL_ASYNC_ERROR_HANDLING"] == "1" and env["HSA_FORCE_FINE_GRAIN_PCIE"] == "1"
    assert template["spec"]["subdomain"] == "ddp"


def test_nvidia_pods_get_no_rocm_setting_and_user_env_wins() -> None:
    cr = kaiwojob(16, "nvidia", env=[{"name": "TORCH_NCCL_ASYNC_ERROR_HANDLING", "value": "0"}])
    env = pod_env(job_template(cr, "nvidia"), 0)
    assert "HSA_FORCE_FINE_GRAIN_PCIE" not in env
    assert env["TORCH_NCCL_ASYNC_ERROR_HANDLING"] == "0"


def test_rendered_environment_rendezvouses_consistently() -> None:
    """2 pods x 4 GPUs: 8 worker processes agree on WORLD_SIZE 8 and hold ranks 0..7 exactly once."""
    template = job_template(kaiwojob(0, replicas=2, gpusPerReplica=4))
    assert run_nodes(template, 2) == list(range(8))


def test_cpu_only_multi_pod_job_runs_one_process_per_pod() -> None:
    template = job_template(kaiwojob(0, replicas=3))
    assert pod_env(template, 2)["PET_NPROC_PER_NODE"] == "1"
    assert run_nodes(template, 3) == [0, 1, 2]
