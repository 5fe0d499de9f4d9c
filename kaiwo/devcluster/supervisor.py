"""The process that owns a running local cluster: ``python -m kaiwo.devcluster.supervisor --state DIR``.

It starts etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok as its children (they die
with it), bootstraps the cluster (default StorageClass, fake GPU nodes, third-party CRDs), starts the fake GPU
exporter (gpuexporter.py; its URLs are ``gpu_metrics`` in status.json), then starts the
selected third-party controllers (``--addons``: Kueue, KubeRay, AppWrapper; see controllers.py) and installs
their webhook configurations. It reports progress in ``status.json`` and then watches its children until
SIGTERM/SIGINT, when it stops them in reverse order.
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
from collections.abc import Callable, Coroutine, Iterable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import yaml

from kaiwo.devcluster import addons, components, controllers, topology, versions
from kaiwo.devcluster.build import CONTROL_PLANE, ensure_binaries
from kaiwo.devcluster.components import Layout, Ports
from kaiwo.devcluster.controllers import Launch
from kaiwo.devcluster.pki import PKI
from kaiwo.devcluster.process import ComponentError, Process
from kaiwo.runtime.client import ApiError, Client
from kaiwo.runtime.objects import has_condition

FIELD_MANAGER = "kaiwo-dev"
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
        "clusters": [
            {
                "name": "kaiwo-dev",
                "cluster": {"server": server, "certificate-authority-data": b64(layout.pki / "ca.crt")},
            }
        ],
        "users": [
            {
                "name": "kaiwo-dev-admin",
                "user": {
                    "client-certificate-data": b64(layout.pki / "admin.crt"),
                    "client-key-data": b64(layout.pki / "admin.key"),
                },
            }
        ],
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
    docs += [yaml.safe_dump(d, sort_keys=False).strip() for d in kwok_debugging(layout)]
    layout.kwok_config.write_text("\n---\n".join(docs) + "\n")


FAKE_SMI = {
    "rocm-smi": "GPU  Temp   AvgPwr  SCLK     MCLK     Fan  Perf  PwrCap  VRAM%  GPU%\n"
    "0    45.0c  120.0W  1500Mhz  1300Mhz  0%   auto  750.0W    12%   87%\n",
    "nvidia-smi": "index, name, utilization.gpu [%], memory.used [MiB]\n0, NVIDIA H100 80GB HBM3, 87 %, 10240 MiB\n",
}


def kwok_debugging(layout: Layout) -> list[dict[str, Any]]:
    """What kwok's kubelet-like server answers for every fake pod: a fixed log (CRI format), ``exec`` run
    on this machine (where kwok_env puts fake ``rocm-smi``/``nvidia-smi`` first on PATH), and port-forwards
    to ``cat`` (an echo server). This is what ``kaiwo logs/exec/monitor/port-forward`` talk to here."""
    log = layout.root / "kwok-pod.log"
    lines = ["simulated by kwok: this pod runs no container", "step 1/2", "step 2/2 done"]
    log.write_text("".join(f"2025-01-01T00:00:0{i}.000000000Z stdout F {line}\n" for i, line in enumerate(lines)))
    meta = {"apiVersion": "kwok.x-k8s.io/v1alpha1"}
    return [
        {
            **meta,
            "kind": "ClusterLogs",
            "metadata": {"name": "kaiwo-dev-logs"},
            "spec": {"logs": [{"logsFile": str(log), "follow": False}]},
        },
        {
            **meta,
            "kind": "ClusterExec",
            "metadata": {"name": "kaiwo-dev-exec"},
            "spec": {"execs": [{"local": {"workDir": str(layout.root)}}]},
        },
        {
            **meta,
            "kind": "ClusterPortForward",
            "metadata": {"name": "kaiwo-dev-port-forward"},
            "spec": {"forwards": [{"command": ["cat"]}]},
        },
    ]


def kwok_env(layout: Layout) -> dict[str, str]:
    """kwok's environment: PATH starts with fake GPU tools, which commands exec'ed in fake pods find."""
    tools = layout.root / "kwok-tools"
    tools.mkdir(parents=True, exist_ok=True)
    for name, output in FAKE_SMI.items():
        script = tools / name
        script.write_text(f"#!/bin/sh\ncat <<'EOF'\n{output}EOF\n")
        script.chmod(0o755)
    return {**os.environ, "PATH": f"{tools}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}"}


def make_pki(layout: Layout) -> None:
    pki = PKI(layout.pki)
    pki.issue(
        "apiserver",
        "kube-apiserver",
        server=True,
        ips=("127.0.0.1",),
        dns=(
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ),
    )
    pki.issue("admin", "kaiwo-dev-admin", org="system:masters", client=True)
    pki.issue("apiserver-kubelet-client", "kube-apiserver-kubelet-client", org="system:masters", client=True)
    pki.service_account_keys()


class Supervisor:
    def __init__(
        self,
        layout: Layout,
        topo: topology.Topology,
        complete_after_ms: int,
        start_timeout: float = 180.0,
        addon_names: Iterable[str] = addons.DEFAULT_ADDONS,
    ) -> None:
        self.layout = layout
        self.topology = topo
        self.complete_after_ms = complete_after_ms
        self.start_timeout = start_timeout
        self.addons = tuple(addon_names)
        self.processes: dict[str, Process] = {}
        self.stopping = asyncio.Event()
        self.timings: dict[str, float] = {}
        self._phase_started = time.monotonic()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.add_signal_handler(sig, self.stopping.set)
        started = time.monotonic()
        write_status(
            self.layout, pid=os.getpid(), phase="starting", message="starting", components={}, addons=list(self.addons)
        )
        try:
            await self._start()
        except Exception as e:  # report any start failure, then clean up
            if not isinstance(e, ComponentError | TimeoutError):
                traceback.print_exc()  # to the supervisor log
            write_status(self.layout, phase="failed", message=f"{e} (logs in {self.layout.logs})")
            self._stop_all()
            return 1
        write_status(self.layout, phase="ready", message="ready", ready_seconds=round(time.monotonic() - started, 2))
        code = await self._watch()
        self._stop_all()
        write_status(self.layout, phase="stopped" if code == 0 else "failed")
        return code

    async def _start(self) -> None:
        layout = self.layout
        wanted = [*CONTROL_PLANE, *(addons.ADDONS[a].binary for a in self.addons)]
        binaries = ensure_binaries(wanted, progress=lambda m: write_status(layout, message=m))
        self._phase_done("binaries")
        if layout.etcd_data.exists():  # a fresh store each start: stale objects would confuse tests
            shutil.rmtree(layout.etcd_data)
        shutil.rmtree(layout.certs, ignore_errors=True)
        shutil.rmtree(layout.addons, ignore_errors=True)
        make_pki(layout)
        ports = Ports.pick()
        write_kubeconfig(layout, f"https://127.0.0.1:{ports.apiserver}")
        write_kwok_config(layout, self.complete_after_ms)
        layout.scheduler_config.write_text(yaml.safe_dump(components.scheduler_config(layout), sort_keys=False))
        layout.apiserver_tracing_config.write_text(yaml.safe_dump(components.apiserver_tracing(ports), sort_keys=False))
        write_status(
            layout,
            server=f"https://127.0.0.1:{ports.apiserver}",
            kubeconfig=str(layout.kubeconfig),
            ports=ports.__dict__,
            logs=str(layout.logs),
        )
        ctx = controllers.Context(layout, ports, binaries, PKI(layout.pki))
        launches = [controllers.LAUNCHERS[name](ctx) for name in self.addons]
        argv: dict[str, Callable[[Path, Layout, Ports], list[str]]] = {
            "etcd": components.etcd,
            "kube-apiserver": components.apiserver,
            "kube-controller-manager": components.controller_manager,
            "kube-scheduler": components.scheduler,
            "kwok": components.kwok,
        }
        async with aiohttp.ClientSession() as http:
            for group in (("etcd",), ("kube-apiserver",), ("kube-controller-manager", "kube-scheduler", "kwok")):
                for name in group:
                    env = components.go_env(kwok_env(layout) if name == "kwok" else None)
                    self._spawn(Process(name, argv[name](binaries[name], layout, ports), layout.log(name), env=env))
                await _all(self._wait_healthy(http, name, components.health_url(name, ports)) for name in group)
            self._phase_done("control_plane")
            write_status(layout, message="bootstrapping the cluster")
            async with await Client.from_kubeconfig(str(layout.kubeconfig)) as client:
                conversions = {k: v for launch in launches for k, v in launch.crd_conversions.items()}
                await bootstrap(client, self.topology, conversions)
                self._phase_done("bootstrap")
                # The fake GPU exporter starts while the addons do (it only needs the apiserver).
                self._spawn(Process("gpu-exporter", components.gpu_exporter(layout, ports), layout.log("gpu-exporter")))
                if launches:
                    await self._start_addons(http, client, launches)
                    self._phase_done("addons")
                await self._wait_healthy(http, "gpu-exporter", components.health_url("gpu-exporter", ports))
                write_status(layout, gpu_metrics=components.gpu_metrics_urls(ports))
                for proc in self.processes.values():
                    proc.check()

    def _phase_done(self, phase: str) -> None:
        """Record how long each start phase took (status.json ``start_seconds``), for benchmarks."""
        now = time.monotonic()
        self.timings[phase] = round(now - self._phase_started, 2)
        self._phase_started = now
        write_status(self.layout, start_seconds=self.timings)

    def _spawn(self, proc: Process) -> None:
        proc.start()
        self.processes[proc.name] = proc
        write_status(
            self.layout,
            message=f"starting {proc.name}",
            components={n: {"pid": p.pid, "log": str(p.log)} for n, p in self.processes.items()},
        )

    async def _start_addons(self, http: aiohttp.ClientSession, client: Client, launches: list[Launch]) -> None:
        """Start the controllers together; once each is healthy, install its webhooks and wait until the
        apiserver reaches them (so a ready cluster never admits objects those webhooks should have changed)."""
        for launch in launches:
            for obj in launch.objects:
                await client.apply(obj, FIELD_MANAGER)
            self._spawn(
                Process(
                    launch.name,
                    launch.argv,
                    self.layout.log(launch.name),
                    env=components.go_env(launch.process_env(self.layout.kubeconfig)),
                )
            )

        async def ready(launch: Launch) -> None:
            await self._wait_healthy(http, launch.name, launch.health_url)
            for hook in launch.webhooks:
                await client.apply(hook, FIELD_MANAGER)
            if launch.webhooks_answer is not None:
                answer = launch.webhooks_answer
                await self._wait_until(launch.name, lambda: answer(client), "its webhooks answer the apiserver")

        await _all(ready(launch) for launch in launches)

    async def _wait_until(self, name: str, check: Callable[[], Any], what: str) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            self.processes[name].check()
            if await check():
                return
            await asyncio.sleep(0.2)
        raise self.processes[name].failure(f"{what}: not within {self.start_timeout:.0f}s")

    async def _wait_healthy(self, http: aiohttp.ClientSession, name: str, url: str) -> None:
        ctx = components.admin_ssl(self.layout) if name == "kube-apiserver" else components.insecure_ssl()
        deadline = time.monotonic() + self.start_timeout
        last = ""
        while time.monotonic() < deadline:
            self.processes[name].check()
            if self.stopping.is_set():
                raise RuntimeError("interrupted while starting")
            try:
                async with http.get(
                    url, ssl=ctx if url.startswith("https") else False, timeout=aiohttp.ClientTimeout(total=3)
                ) as r:
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
                    write_status(
                        self.layout,
                        phase="failed",
                        message=str(
                            proc.failure(
                                f"exited unexpectedly with code {proc.popen.returncode if proc.popen else '?'}"
                            )
                        ),
                    )
                    return 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), 1.0)
        return 0

    def _stop_all(self) -> None:
        for proc in reversed(self.processes.values()):  # controllers first, etcd last
            proc.stop()


async def _all(coros: Iterable[Coroutine[Any, Any, None]]) -> None:
    """Run concurrently; the first failure cancels the others and is raised as is."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def bootstrap(client: Client, topo: topology.Topology, conversions: Mapping[str, Any] | None = None) -> None:
    """Cluster content every test expects: a default StorageClass, fake nodes, third-party CRDs (all of them,
    whichever controllers run; ``conversions`` adds the conversion webhooks of the running ones)."""
    await client.apply(DEFAULT_STORAGE_CLASS, FIELD_MANAGER)
    for node in topology.node_manifests(topo, components.KUBELET_VERSION):
        await client.create(node)
    crds = [addons.with_conversion(crd, conversions or {}) for a in addons.ADDONS.values() for crd in addons.crds(a)]
    await asyncio.gather(*(client.apply(crd, FIELD_MANAGER) for crd in crds))
    await wait_for(lambda: _crds_served(client, crds), "CRDs served")
    await wait_for(lambda: _nodes_ready(client, topo), "fake nodes Ready")
    await wait_for(lambda: _default_service_account(client), "the default ServiceAccount")


async def wait_for(check: Callable[[], Any], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.2)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


async def _crds_served(client: Client, crds: list[dict[str, Any]]) -> bool:
    """Every served version of every CRD is in API discovery (small answers, unlike listing the multi-MB CRDs,
    which would load the apiserver while it is busy compiling their schemas)."""
    wanted: dict[str, set[str]] = {}
    for crd in crds:
        for v in crd["spec"]["versions"]:
            if v.get("served", True):
                wanted.setdefault(f"{crd['spec']['group']}/{v['name']}", set()).add(crd["spec"]["names"]["plural"])
    for group_version, plurals in wanted.items():
        try:
            doc = await client.request("GET", f"/apis/{group_version}")
        except ApiError as e:
            if e.not_found:
                return False
            raise
        if not plurals <= {r["name"] for r in doc.get("resources", [])}:
            return False
    client.forget_discovery()  # mappings looked up before now may lack the new kinds
    return True


async def _nodes_ready(client: Client, topo: topology.Topology) -> bool:
    want = {n for pool in topo.pools for n in pool.node_names()}
    ready = {n["metadata"]["name"] for n in await client.list("v1", "Node") if has_condition(n, "Ready")}
    return want <= ready


async def _default_service_account(client: Client) -> bool:
    return await client.get_or_none("v1", "ServiceAccount", "default", "default") is not None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--state", required=True, type=Path)
    ap.add_argument("--topology", type=Path)
    ap.add_argument("--complete-after-ms", type=int, default=3000)
    ap.add_argument("--addons", default="all", help="comma list of " + ", ".join(addons.ADDONS) + ", all or none")
    args = ap.parse_args(argv)
    layout = Layout(args.state.resolve())
    layout.root.mkdir(parents=True, exist_ok=True)
    topo = topology.load(args.topology)
    selected = addons.parse_selection(args.addons)
    return asyncio.run(Supervisor(layout, topo, args.complete_after_ms, addon_names=selected).run())


if __name__ == "__main__":
    sys.exit(main())
