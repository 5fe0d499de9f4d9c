"""The ``kaiwo`` CLI against the local cluster, with the operator running in this process.

Commands run through typer's CliRunner in a worker thread (each command has its own event loop, and the
operator keeps running on the test loop meanwhile); port-forward and one error case run the real ``kaiwo``
executable. kwok serves the pods' logs, exec and port-forward (see kaiwo.devcluster.supervisor.kwok_debugging):
a fixed log, commands run on this machine with fake rocm-smi/nvidia-smi, and ``cat`` as every port's echo server.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from kaiwo.runtime.client import Client
from kaiwo.runtime.manager import Manager
from tests.e2e.helpers import API, Cli, event_reasons, eventually, job_pods, kaiwojob, ok, phase_is


def job_yaml(name: str, **spec: Any) -> str:
    return yaml.safe_dump(kaiwojob(name, None, **spec))


def edited_kubeconfig(kubeconfig: str, path: Path, *, namespace: str = "", server: str = "") -> Path:
    """A copy of the cluster's kubeconfig with the context's namespace or the server changed."""
    cfg = yaml.safe_load(Path(kubeconfig).read_text())
    if namespace:
        cfg["contexts"][0]["context"]["namespace"] = namespace
    if server:
        cfg["clusters"][0]["cluster"]["server"] = server
    path.write_text(yaml.safe_dump(cfg))
    return path


async def test_submit_stdin_fills_defaults_and_updates(
    cli: Cli, client: Client, namespace: str, operator: Manager
) -> None:
    r = ok(await cli("submit", "-f", "-", "-n", namespace, input=job_yaml("train")))
    assert r.stdout.strip() == "kaiwojob.kaiwo.silogen.ai/train created"
    obj = await client.get(API, "KaiwoJob", "train", namespace)
    assert obj["spec"]["user"] == "scientist@example.com" and obj["spec"]["clusterQueue"] == "kaiwo"
    assert obj["metadata"]["labels"]["kaiwo.silogen.ai/user"] == "scientist-example.com"
    managers = {m["manager"] for m in obj["metadata"]["managedFields"]}
    assert "kaiwo-cli" in managers

    r = ok(await cli("submit", "-f", "-", "-n", namespace, input=job_yaml("train")))
    assert r.stdout.strip() == "kaiwojob.kaiwo.silogen.ai/train unchanged"
    r = ok(await cli("submit", "-f", "-", "-n", namespace, input=job_yaml("train", entrypoint="echo changed")))
    assert r.stdout.strip() == "kaiwojob.kaiwo.silogen.ai/train configured"
    assert (await client.get(API, "KaiwoJob", "train", namespace))["spec"]["entrypoint"] == "echo changed"

    # The manifest wins over flags, flags over the config file; several documents in one stream.
    two = job_yaml("mine", user="owner@example.com") + "---\n" + job_yaml("flagged")
    r = ok(await cli("submit", "-f", "-", "-n", namespace, "--user", "flag@example.com", "--queue", "other", input=two))
    assert r.stdout.splitlines() == [
        "kaiwojob.kaiwo.silogen.ai/mine created",
        "kaiwojob.kaiwo.silogen.ai/flagged created",
    ]
    mine = await client.get(API, "KaiwoJob", "mine", namespace)
    flagged = await client.get(API, "KaiwoJob", "flagged", namespace)
    assert (mine["spec"]["user"], mine["spec"]["clusterQueue"]) == ("owner@example.com", "other")
    assert (flagged["spec"]["user"], flagged["spec"]["clusterQueue"]) == ("flag@example.com", "other")


async def test_namespace_comes_from_the_kubeconfig_context(
    cli: Cli, client: Client, namespace: str, kubeconfig: str, tmp_path: Path
) -> None:
    own = edited_kubeconfig(kubeconfig, tmp_path / "kubeconfig", namespace=namespace)
    ok(await cli("submit", "-f", "-", "--dry-run=client", input=job_yaml("ctx"), KUBECONFIG=str(own)))
    r = ok(await cli("submit", "-f", "-", input=job_yaml("ctx"), KUBECONFIG=str(own)))
    assert "created" in r.stdout
    assert await client.get_or_none(API, "KaiwoJob", "ctx", namespace) is not None
    # A manifest namespace that contradicts -n is a usage error.
    doc = yaml.safe_load(job_yaml("ctx"))
    doc["metadata"]["namespace"] = "elsewhere"
    r = ok(await cli("submit", "-f", "-", "-n", namespace, input=yaml.safe_dump(doc)), 2)
    assert "elsewhere" in r.stderr and "-n" in r.stderr


async def test_dry_runs_change_nothing(cli: Cli, client: Client, namespace: str) -> None:
    r = ok(await cli("submit", "-f", "-", "-n", namespace, "--dry-run=client", "-o", "yaml", input=job_yaml("dry")))
    assert r.stdout.startswith("kaiwojob.kaiwo.silogen.ai/dry created (client dry run)")
    assert "user: scientist@example.com" in r.stdout  # the defaulted manifest is shown
    r = ok(await cli("submit", "-f", "-", "-n", namespace, "--dry-run=server", input=job_yaml("dry")))
    assert r.stdout.strip() == "kaiwojob.kaiwo.silogen.ai/dry created (server dry run)"
    assert await client.get_or_none(API, "KaiwoJob", "dry", namespace) is None
    # The server validates in a dry run: a wrong type is rejected with the field named.
    r = ok(await cli("submit", "-f", "-", "-n", namespace, "--dry-run=server", input=job_yaml("dry", gpus="lots")), 1)
    assert "spec.gpus" in r.stderr and "Traceback" not in r.stderr
    ok(await cli("submit", "-f", "-", "-n", namespace, input=job_yaml("dry")))
    r = ok(await cli("submit", "-f", "-", "-n", namespace, "--dry-run=server", input=job_yaml("dry")))
    assert r.stdout.strip() == "kaiwojob.kaiwo.silogen.ai/dry unchanged (server dry run)"
    r = ok(await cli("submit", "-f", "-", "-n", namespace, "--dry-run=client", input=job_yaml("dry", gpus=1)))
    assert r.stdout.strip() == "kaiwojob.kaiwo.silogen.ai/dry configured (client dry run)"
    assert (await client.get(API, "KaiwoJob", "dry", namespace))["spec"]["gpus"] == 0  # the CRD default


async def test_wait_reports_complete_and_failed(cli: Cli, namespace: str, operator: Manager) -> None:
    r = ok(await cli("submit", "-f", "-", "-n", namespace, "--wait", "--timeout", "120", input=job_yaml("fine")))
    assert r.stdout.splitlines()[-1] == "kaiwojob.kaiwo.silogen.ai/fine COMPLETE"
    broken = job_yaml("broken", annotations={"kwok.kaiwo.dev/fail": "true"})
    r = ok(await cli("submit", "-f", "-", "-n", namespace, "--wait", "--timeout", "120", input=broken), 1)
    assert r.stdout.splitlines()[-1] == "kaiwojob.kaiwo.silogen.ai/broken FAILED"
    assert "job/broken is FAILED" in r.stderr


async def test_running_job_list_status_logs_exec_monitor_delete(
    cli: Cli, client: Client, namespace: str, operator: Manager
) -> None:
    running = job_yaml("gpu", gpus=1, annotations={"kwok.kaiwo.dev/duration": "300s"})
    ok(await cli("submit", "-f", "-", "-n", namespace, input=running))
    ok(await cli("submit", "-f", "-", "-n", namespace, input=job_yaml("theirs", user="someone@else.org")))
    await eventually(lambda: phase_is(client, "KaiwoJob", "gpu", namespace, "RUNNING"), "gpu RUNNING", timeout=90)

    r = ok(await cli("list", "-n", namespace))
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["NAME", "TYPE", "STATUS", "USER", "QUEUE", "GPUS", "AGE"]
    assert len(lines) == 2 and lines[1].split()[:6] == ["gpu", "job", "RUNNING", "scientist@example.com", "kaiwo", "1"]
    r = ok(await cli("list", "-n", namespace, "--all-users", "-o", "wide"))
    assert {line.split()[0] for line in r.stdout.splitlines()[1:]} == {"gpu", "theirs"}
    assert "VENDOR" in r.stdout.splitlines()[0]
    r = ok(await cli("list", "-A", "-o", "json", "--user", "someone@else.org"))
    items = yaml.safe_load(r.stdout)["items"]
    assert (namespace, "theirs") in [(i["metadata"]["namespace"], i["metadata"]["name"]) for i in items]
    assert {i["spec"]["user"] for i in items} == {"someone@else.org"}  # other namespaces may hold older runs

    await event_reasons(client, "KaiwoJob", "gpu", namespace, wait_for={"WorkloadRunning"})  # sent after the status
    r = ok(await cli("status", "job/gpu", "-n", namespace))
    out = r.stdout
    assert "Status:      RUNNING" in out and "User:        scientist@example.com" in out
    assert "Admitted" in out and "admitted to kaiwo" in out  # the Kueue Workload and its conditions
    assert "LocalQueue kaiwo -> ClusterQueue kaiwo" in out
    assert "Job/gpu" in out and "Pod/gpu-" in out and "Running" in out
    assert "WorkloadRunning" in out  # recent events
    r = ok(await cli("status", "kaiwojob/gpu", "-n", namespace, "-o", "yaml"))
    assert yaml.safe_load(r.stdout)["object"]["status"]["status"] == "RUNNING"

    r = ok(await cli("logs", "job/gpu", "-n", namespace))
    assert r.stdout.splitlines() == ["simulated by kwok: this pod runs no container", "step 1/2", "step 2/2 done"]
    r = ok(await cli("logs", "job/gpu", "-n", namespace, "--tail", "1", "-c", "workload"))
    assert r.stdout.splitlines() == ["step 2/2 done"]
    r = ok(await cli("logs", "job/gpu", "-n", namespace, "-c", "nope"), 2)
    assert "no container 'nope'" in r.stderr

    r = ok(await cli("exec", "job/gpu", "-n", namespace, "--", "sh", "-c", "echo out; echo err >&2; exit 3"), 3)
    assert r.stdout == "out\n" and "err" in r.stderr
    # stdin reaches the command (kwok v0.8 never closes a local command's stdin, so no `cat`/`tr` here).
    r = ok(await cli("exec", "job/gpu", "-n", namespace, "-i", "--", "head", "-n", "1", input="first\nsecond\n"))
    assert r.stdout == "first\n"
    r = ok(await cli("exec", "job/gpu", "-n", namespace, "--", "no-such-command-here"), 1)
    assert "no-such-command-here" in r.stderr and "Traceback" not in r.stderr

    r = ok(await cli("monitor", "job/gpu", "-n", namespace, "--once"))
    assert "GPU%" in r.stdout and "87%" in r.stdout  # rocm-smi for an AMD job

    r = ok(await cli("delete", "job/gpu", "-n", namespace))
    assert r.stdout.strip() == "kaiwojob.kaiwo.silogen.ai/gpu deleted"
    await eventually(lambda: _gone(client, "KaiwoJob", "gpu", namespace), "gpu deleted")
    r = ok(await cli("status", "job/gpu", "-n", namespace), 1)
    assert "job/gpu not found in namespace" in r.stderr


async def _gone(client: Client, kind: str, name: str, ns: str) -> bool:
    return await client.get_or_none(API, kind, name, ns) is None


async def test_nvidia_monitor_and_pod_choice(cli: Cli, client: Client, namespace: str, operator: Manager) -> None:
    job = job_yaml("ddp", gpus=16, gpuVendor="nvidia", annotations={"kwok.kaiwo.dev/duration": "300s"})
    ok(await cli("submit", "-f", "-", "-n", namespace, input=job))
    await eventually(lambda: phase_is(client, "KaiwoJob", "ddp", namespace, "RUNNING"), "ddp RUNNING", timeout=90)
    pods = sorted(p["metadata"]["name"] for p in await job_pods(client, namespace, "ddp", 2))
    r = ok(await cli("logs", "job/ddp", "-n", namespace), 2)  # not a terminal: it cannot ask which pod
    assert "has 2 pods" in r.stderr and "--pod" in r.stderr
    r = ok(await cli("logs", "job/ddp", "-n", namespace, "--pod", pods[1], "--tail", "1"))
    assert r.stdout == "step 2/2 done\n"
    r = ok(await cli("monitor", "job/ddp", "-n", namespace, "--once", "--pod", pods[0]))
    assert "utilization.gpu" in r.stdout  # nvidia-smi for an NVIDIA job

    r = ok(await cli("status", "nvidia"))
    table = r.stdout.split("\n\n")[0]  # the node table; GPU utilisation lines follow a blank line
    busy = [line.split() for line in table.splitlines()[1:]]
    assert {row[0] for row in busy} == {"nvidia-h100-0", "nvidia-h100-1"}
    assert sum(int(row[2].split("/")[0]) for row in busy) >= 16  # this job's GPUs are counted as allocated
    r = ok(await cli("status", "amd"))
    table = r.stdout.split("\n\n")[0]
    assert table.splitlines()[0].split()[:4] == ["NODE", "GPU", "MODEL", "GPUS"]
    assert [row.split()[1] for row in table.splitlines()[1:]] == ["mi300x"] * 4  # kaiwo/gpu-model
    r = ok(await cli("status", "queues"))
    rows = [line.split() for line in r.stdout.splitlines()]
    assert rows[0][:4] == ["CLUSTERQUEUE", "LOCALQUEUE", "ADMITTED", "PENDING"]
    assert rows[1][:2] == ["kaiwo", "[TOTAL]"]
    assert any(row[0] == f"{namespace}/kaiwo" and int(row[1]) >= 1 for row in rows[2:])


async def test_port_forward_reaches_the_pod(
    kubeconfig: str, cli: Cli, client: Client, namespace: str, operator: Manager
) -> None:
    svc = yaml.safe_dump(
        {"apiVersion": API, "kind": "KaiwoService", "metadata": {"name": "web"}, "spec": {"image": "nginx:1.27"}}
    )
    ok(await cli("submit", "-f", "-", "-n", namespace, "--wait", "--timeout", "120", input=svc))
    kaiwo = Path(sys.executable).parent / "kaiwo"
    proc = await asyncio.create_subprocess_exec(
        str(kaiwo),
        "port-forward",
        "service/web",
        ":8080",
        "-n",
        namespace,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "KUBECONFIG": kubeconfig},
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        assert line.startswith("Forwarding from 127.0.0.1:") and line.strip().endswith("-> 8080"), line
        port = int(line.split(":")[1].split()[0])
        for message in (b"hello through the tunnel\n", b"and again\n"):  # one websocket per connection
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(message)
            await writer.drain()
            assert await asyncio.wait_for(reader.readexactly(len(message)), 10) == message  # kwok echoes (cat)
            writer.close()
    finally:
        proc.terminate()
        await proc.wait()


async def test_clear_errors(cli: Cli, namespace: str, kubeconfig: str, tmp_path: Path) -> None:
    r = ok(await cli("submit", "-f", str(tmp_path / "missing.yaml"), "-n", namespace), 2)
    assert "missing.yaml: no such file" in r.stderr
    r = ok(await cli("submit", "-f", "-", "-n", namespace, input="kind: KaiwoJob\n  bad: [indent\n"), 1)
    assert "not valid YAML" in r.stderr and "line" in r.stderr
    unknown = "apiVersion: kaiwo.silogen.ai/v1alpha1\nkind: KaiwoTrain\nmetadata: {name: x}\n"
    r = ok(await cli("submit", "-f", "-", "-n", namespace, input=unknown), 1)
    assert "no resource for kind KaiwoTrain" in r.stderr and "hint:" in r.stderr
    r = ok(await cli("logs", "job/nothing", "-n", namespace), 1)
    assert "job/nothing not found" in r.stderr
    r = ok(await cli("delete", "service/nothing", "-n", namespace), 1)
    assert "service/nothing not found" in r.stderr
    r = ok(await cli("status", "pods/x"), 2)
    assert "not a workload reference" in r.stderr
    r = ok(await cli("list", KUBECONFIG=str(tmp_path / "no-kubeconfig")), 1)
    assert "no kubeconfig found" in r.stderr

    # An unreachable API server: the real executable, exit 1, a message and no traceback.
    dead = edited_kubeconfig(kubeconfig, tmp_path / "dead-kubeconfig", server="https://127.0.0.1:1")
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "kaiwo"),
        "list",
        "-n",
        namespace,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "KUBECONFIG": str(dead), "NO_COLOR": "1"},
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 1 and stdout == b""
    text = stderr.decode()
    assert "cannot reach the Kubernetes API" in text and "127.0.0.1:1" in text and "Traceback" not in text
