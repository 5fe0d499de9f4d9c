"""``kaiwo exec`` command forms and TTY resize messages, ``kaiwo port-forward``'s port discovery (pure parts;
tests/e2e/test_cli_interactive.py runs them against kwok)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from typer.testing import CliRunner

from kaiwo.cli import streams
from kaiwo.cli.errors import CliError
from kaiwo.cli.main import app
from kaiwo.cli.pods import discover_ports, exec_command


def test_exec_command_forms() -> None:
    assert exec_command(["ls", "-l"], None) == ["ls", "-l"]
    assert exec_command(None, "ls -l | wc -l") == ["/bin/sh", "-c", "ls -l | wc -l"]  # upstream's --command
    with pytest.raises(CliError, match="not both"):
        exec_command(["ls"], "ls")
    with pytest.raises(CliError, match="no command"):
        exec_command([], None)


def test_exec_without_a_command_is_a_usage_error() -> None:
    r = CliRunner().invoke(app, ["exec", "job/x"], env={"KUBECONFIG": "/nonexistent"})
    assert r.exit_code == 2 and "no command to run" in r.stderr


async def test_terminal_sizes_go_on_channel_4() -> None:
    sent: list[bytes] = []

    class FakeWs:
        async def send_bytes(self, data: bytes) -> None:
            sent.append(data)

    async def sizes() -> AsyncIterator[tuple[int, int]]:
        yield 80, 24
        yield 132, 50

    await streams._resize(FakeWs(), sizes())  # type: ignore[arg-type]
    assert sent == [b'\x04{"Width":80,"Height":24}', b'\x04{"Width":132,"Height":50}']


def pod(labels: dict[str, str], *ports: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {"name": "p", "labels": labels},
        "spec": {"containers": [{"name": "main", "ports": list(ports)}]},
    }


def service(name: str, selector: dict[str, str], *ports: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"selector": selector, "ports": list(ports)}}


def test_ports_come_from_the_selecting_service_then_the_containers() -> None:
    head = pod(
        {"ray.io/node-type": "head", "app": "x"},
        {"name": "dashboard", "containerPort": 8265},
        {"name": "serve", "containerPort": 8000},
    )
    services = [
        service("other", {"app": "y"}, {"port": 80, "targetPort": 9999}),
        service("x-head-svc", {"ray.io/node-type": "head"}, {"port": 8265, "targetPort": "dashboard"}),
        service("x-serve-svc", {"app": "x"}, {"port": 80, "targetPort": 8000}, {"port": 53, "protocol": "UDP"}),
    ]
    assert discover_ports(head, services) == ([8265, 8000], "its Service")
    assert discover_ports(head, []) == ([8265, 8000], "its containers")


def test_the_rendezvous_service_of_a_multi_node_job_is_not_an_endpoint() -> None:
    worker = pod({"batch.kubernetes.io/job-name": "ddp"}, {"containerPort": 6006})
    rendezvous = service("ddp", {"batch.kubernetes.io/job-name": "ddp"}, {"name": "rendezvous", "port": 29500})
    assert discover_ports(worker, [rendezvous]) == ([6006], "its containers")
    assert discover_ports(pod({}), [rendezvous]) == ([], "its containers")
