"""The process that owns a running local cluster: ``python -m kaiwo.devcluster.supervisor --state DIR``.

It starts etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok as its children (they die
with it), bootstraps the cluster (default StorageClass, fake GPU nodes, third-party CRDs), reports progress in
``status.json`` and then watches its children until SIGTERM/SIGINT, when it stops them in reverse order.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import os
import shutil
import signal
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import yaml

from kaiwo.devcluster import addons, components, topology, versions
from kaiwo.devcluster.build import ensure_binaries
from kaiwo.devcluster.components import Layout, Ports
from kaiwo.devcluster.pki import PKI
from kaiwo.devcluster.process import ComponentError, Process
from kaiwo.runtime.client import Client
from kaiwo.runtime.objects import has_condition

FIELD_MANAGER = "kaiwo-dev"
START_ORDER = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
DEFAULT_STORAGE_CLASS = {
    "apiVersion": "storage.k8s.io/v1",
    "kind": "StorageClass",
    "metadata": {"name": "standard", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
    "provisioner": "kubernetes.io/host-path",
    "reclaimPolicy": "Delete",
    "volumeBindingMode": "Immediate",
}


def write_status(layout: Layout, **fields: Any) -> None:
    current: dict[str, Any] = {}
    if layout.status.exists():
        with contextlib.suppress(orjson.JSONDecodeError):
            current = orjson.loads(layout.status.read_bytes())
    current.update(fields)
    tmp = layout.status.with_suffix(".tmp")
    tmp.write_bytes(orjson.dumps(current, option=orjson.OPT_INDENT_2))
    os.replace(tmp, layout.status)


def write_kubeconfig(layout: Layout, server: str) -> None:
    def b64(p: Path) -> str:
        return base64.b64encode(p.read_bytes()).decode()

    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kaiwo-dev", "cluster": {
            "server": server, "certificate-authority-data": b64(layout.pki / "ca.crt")}}],
        "users": [{"name": "kaiwo-dev-admin", "user": {
            "client-certificate-data": b64(layout.pki / "admin.crt"),
            "client-key-data": b64(layout.pki / "admin.key")}}],
        "contexts": [{"name": "kaiwo-dev", "context": {"cluster": "kaiwo-dev", "user": "kaiwo-dev-admin"}}],
        "current-context": "kaiwo-dev",
    }
    layout.kubeconfig.write_text(yaml.safe_dump(cfg, sort_keys=False))
    layout.kubeconfig.chmod(0o600)


def write_kwok_config(layout: Layout, complete_after_ms: int) -> None:
    """kwok's own node stages and pod-ready/pod-delete stages, plus ours for completion and failure."""
    from importlib import resources

    kwok_dir = addons.module_dir("sigs.k8s.io/kwok", versions.KWOK) / "kustomize" / "stage"
    upstream = [
        kwok_dir / "node" / "fast" / "node-initialize.yaml",
        kwok_dir / "node" / "heartbeat-with-lease" / "node-heartbeat-with-lease.yaml",
        kwok_dir / "pod" / "fast" / "pod-ready.yaml",
        kwok_dir / "pod" / "fast" / "pod-delete.yaml",
    ]
    ours = resources.files("kaiwo.devcluster").joinpath("data", "kwok-pod-stages.yaml").read_text()
    ours = ours.replace("{{COMPLETE_AFTER_MS}}", str(complete_after_ms))
    docs = [p.read_text().strip() for p in upstream] + [ours.strip()]
    layout.kwok_config.write_text("\n---\n".join(docs) + "\n")


def make_pki(layout: Layout) -> None:
    pki = PKI(layout.pki)
    pki.issue("apiserver", "kube-apiserver", server=True, ips=("127.0.0.1",),
              dns=("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                   "kubernetes.default.svc.cluster.local"))
    pki.issue("admin", "kaiwo-dev-admin", org="system:masters", client=True)
    pki.issue("apiserver-kubelet-client", "kube-apiserver-kubelet-client", org="system:masters", client=True)
    pki.service_account_keys()


class Supervisor:
    def __init__(self, layout: Layout, topo: topology.Topology, complete_after_ms: int,
                 start_timeout: float = 180.0) -> None:
        self.layout = layout
        self.topology = topo
        self.complete_after_ms = complete_after_ms
        self.start_timeout = start_timeout
        self.processes: dict[str, Process] = {}
        self.stopping = asyncio.Event()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.add_signal_handler(sig, self.stopping.set)
        started = time.monotonic()
        write_status(self.layout, pid=os.getpid(), phase="starting", message="starting", components={})
        try:
            await self._start()
        except Exception as e:  # report any start failure, then clean up
            if not isinstance(e, ComponentError | TimeoutError):
                traceback.print_exc()  # to the supervisor log
            write_status(self.layout, phase="failed", message=f"{e} (logs in {self.layout.logs})")
            self._stop_all()
            return 1
        write_status(self.layout, phase="ready", message="ready",
                     ready_seconds=round(time.monotonic() - started, 2))
        code = await self._watch()
        self._stop_all()
        write_status(self.layout, phase="stopped" if code == 0 else "failed")
        return code

    async def _start(self) -> None:
        layout = self.layout
        binaries = ensure_binaries(progress=lambda m: write_status(layout, message=m))
        if layout.etcd_data.exists():  # a fresh store each start: stale objects would confuse tests
            shutil.rmtree(layout.etcd_data)
        shutil.rmtree(layout.certs, ignore_errors=True)
        make_pki(layout)
        ports = Ports.pick()
        write_kubeconfig(layout, f"https://127.0.0.1:{ports.apiserver}")
        write_kwok_config(layout, self.complete_after_ms)
        write_status(layout, server=f"https://127.0.0.1:{ports.apiserver}", kubeconfig=str(layout.kubeconfig),
                     ports=ports.__dict__, logs=str(layout.logs))
        argv: dict[str, Callable[[Path, Layout, Ports], list[str]]] = {
            "etcd": components.etcd,
            "kube-apiserver": components.apiserver,
            "kube-controller-manager": components.controller_manager,
            "kube-scheduler": components.scheduler,
            "kwok": components.kwok,
        }
        async with aiohttp.ClientSession() as http:
            for group in (("etcd",), ("kube-apiserver",),
                          ("kube-controller-manager", "kube-scheduler", "kwok")):
                for name in group:
                    proc = Process(name, argv[name](binaries[name], layout, ports), layout.log(name))
                    proc.start()
                    self.processes[name] = proc
                    write_status(layout, message=f"starting {name}",
                                 components={n: {"pid": p.pid, "log": str(p.log)}
                                             for n, p in self.processes.items()})
                await asyncio.gather(*(self._wait_healthy(http, name, ports) for name in group))
        write_status(layout, message="bootstrapping the cluster")
        async with await Client.from_kubeconfig(str(layout.kubeconfig)) as client:
            await bootstrap(client, self.topology)
            for proc in self.processes.values():
                proc.check()

    async def _wait_healthy(self, http: aiohttp.ClientSession, name: str, ports: Ports) -> None:
        url = components.health_url(name, ports)
        ctx = components.admin_ssl(self.layout) if name == "kube-apiserver" else components.insecure_ssl()
        deadline = time.monotonic() + self.start_timeout
        last = ""
        while time.monotonic() < deadline:
            self.processes[name].check()
            if self.stopping.is_set():
                raise RuntimeError("interrupted while starting")
            try:
                async with http.get(url, ssl=ctx if url.startswith("https") else False,
                                    timeout=aiohttp.ClientTimeout(total=3)) as r:
                    if r.status == 200:
                        return
                    last = f"{r.status} {(await r.text())[-300:]}"
            except (aiohttp.ClientError, TimeoutError) as e:
                last = repr(e)
            await asyncio.sleep(0.2)
        raise self.processes[name].failure(f"not healthy at {url} within {self.start_timeout:.0f}s ({last})")

    async def _watch(self) -> int:
        while not self.stopping.is_set():
            for proc in self.processes.values():
                if not proc.alive():
                    write_status(self.layout, phase="failed", message=str(proc.failure(
                        f"exited unexpectedly with code {proc.popen.returncode if proc.popen else '?'}")))
                    return 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), 1.0)
        return 0

    def _stop_all(self) -> None:
        for name in reversed(START_ORDER):
            if name in self.processes:
                self.processes[name].stop()


async def bootstrap(client: Client, topo: topology.Topology) -> None:
    """Cluster content every test expects: a default StorageClass, fake nodes, third-party CRDs."""
    await client.apply(DEFAULT_STORAGE_CLASS, FIELD_MANAGER)
    for node in topology.node_manifests(topo, components.KUBELET_VERSION):
        await client.create(node)
    for addon in addons.ADDONS.values():
        for crd in addons.crds(addon):
            await client.apply(crd, FIELD_MANAGER)
    await wait_for(lambda: _crds_established(client), "CRDs established")
    await wait_for(lambda: _nodes_ready(client, topo), "fake nodes Ready")
    await wait_for(lambda: _default_service_account(client), "the default ServiceAccount")


async def wait_for(check: Callable[[], Any], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.2)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


async def _crds_established(client: Client) -> bool:
    crds = await client.list("apiextensions.k8s.io/v1", "CustomResourceDefinition")
    return all(has_condition(crd, "Established") for crd in crds)


async def _nodes_ready(client: Client, topo: topology.Topology) -> bool:
    want = {n for pool in topo.pools for n in pool.node_names()}
    ready = {
        n["metadata"]["name"] for n in await client.list("v1", "Node")
        if has_condition(n, "Ready")
    }
    return want <= ready


async def _default_service_account(client: Client) -> bool:
    return await client.get_or_none("v1", "ServiceAccount", "default", "default") is not None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--state", required=True, type=Path)
    ap.add_argument("--topology", type=Path)
    ap.add_argument("--complete-after-ms", type=int, default=3000)
    args = ap.parse_args(argv)
    layout = Layout(args.state.resolve())
    layout.root.mkdir(parents=True, exist_ok=True)
    topo = topology.load(args.topology)
    return asyncio.run(Supervisor(layout, topo, args.complete_after_ms).run())


if __name__ == "__main__":
    sys.exit(main())
