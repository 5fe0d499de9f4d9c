"""Build the control-plane binaries from Go modules and cache them by version.

The cache lives in ``${XDG_CACHE_HOME:-~/.cache}/kaiwo/bin/<name>-<version>-<key>/<name>`` where the key
hashes everything that changes the output (the wrapper module's go.mod/go.sum, ldflags, the Go version).
A present cache entry is used as is, so the second `ensure` costs a few stat calls. Builds are serialised
by a file lock so parallel test sessions never build the same thing twice or see a half-written binary
(entries appear by an atomic rename).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from kaiwo.devcluster import versions
from kaiwo.devcluster.addons import module_dir


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kaiwo"


def tools_dir() -> Path:
    """The repository's tools/ folder with the Go wrapper modules."""
    override = os.environ.get("KAIWO_TOOLS_DIR")
    path = Path(override) if override else Path(__file__).resolve().parents[2] / "tools"
    if not (path / "k8s" / "go.mod").is_file():
        raise BuildError(f"Go wrapper modules not found in {path} (set KAIWO_TOOLS_DIR to the repo's tools/)")
    return path


class BuildError(RuntimeError):
    pass


def _k8s_ldflags(version: str) -> tuple[str, ...]:
    major, minor, _ = version.removeprefix("v").split(".")
    pkg = "k8s.io/component-base/version"
    return (
        f"-X {pkg}.gitVersion={version}",
        f"-X {pkg}.gitMajor={major}",
        f"-X {pkg}.gitMinor={minor}",
        f"-X {pkg}.gitTreeState=clean",
        f"-X {pkg}.buildDate=1970-01-01T00:00:00Z",
    )


@dataclass(frozen=True)
class SourcePatch:
    """A literal replacement in one file of a module built from a copy of its source (``GoBinary.source``).
    The build fails unless ``old`` occurs exactly once, so a version bump cannot silently drop a patch."""

    file: str
    old: str
    new: str


@dataclass(frozen=True)
class GoBinary:
    """One executable built from a Go main package.

    ``module`` names a wrapper module under tools/ (built with ``go build`` inside it, so its go.mod pins
    and replaces apply). ``source`` names the Go module that contains the package: the build runs
    ``go build`` in a copy of that module's source, with its own go.mod and go.sum (so the same build list as
    ``go install package@version``) and ``patches`` applied. Neither means ``go install package@version``.
    """

    name: str
    package: str
    version: str
    module: str | None = None
    ldflags: tuple[str, ...] = field(default=())
    source: str | None = None
    patches: tuple[SourcePatch, ...] = field(default=())

    def target(self) -> str:
        return self.package if self.module else f"{self.package}@{self.version}"


_K8S = _k8s_ldflags(versions.KUBERNETES)

# Kueue v0.17.1 reads its metrics serving certificate from the fixed folder /etc/kueue/metrics/certs whenever its
# internal cert management is off (cmd/kueue/main.go), and exits if the files are missing - even with metrics
# disabled. This patch lets the local cluster point it at the state folder instead; nothing else changes.
# (`go install -overlay` cannot do it: Go refuses overlays of files in the module cache.)
KUEUE_METRICS_CERT_DIR_ENV = "KAIWO_DEV_KUEUE_METRICS_CERT_DIR"
_KUEUE_METRICS_CERTS = SourcePatch(
    "cmd/kueue/main.go",
    'metricsCertPath := "/etc/kueue/metrics/certs"',
    f'metricsCertPath := os.Getenv("{KUEUE_METRICS_CERT_DIR_ENV}")\n'
    '\t\tif metricsCertPath == "" {\n\t\t\tmetricsCertPath = "/etc/kueue/metrics/certs"\n\t\t}',
)

# The chart tests' helm, with the ldflags of helm's Makefile: its version, and the Kubernetes version that
# `helm template` and `helm lint` assume without a cluster (the Makefile derives it from helm's k8s.io/client-go,
# v0.37.0 in helm v3.22.0; unset, helm assumes v1.20 and refuses charts needing newer).
_HELM = (
    f"-X helm.sh/helm/v3/internal/version.version={versions.HELM}",
    *(
        f"-X helm.sh/helm/v3/pkg/{pkg}.k8sVersion{part}={value}"
        for pkg in ("chartutil", "lint/rules")
        for part, value in (("Major", "1"), ("Minor", "37"))
    ),
)

BINARIES: dict[str, GoBinary] = {
    b.name: b
    for b in [
        GoBinary("etcd", "go.etcd.io/etcd/server/v3", versions.ETCD, "k8s"),
        GoBinary("kube-apiserver", "k8s.io/kubernetes/cmd/kube-apiserver", versions.KUBERNETES, "k8s", _K8S),
        GoBinary(
            "kube-controller-manager",
            "k8s.io/kubernetes/cmd/kube-controller-manager",
            versions.KUBERNETES,
            "k8s",
            _K8S,
        ),
        GoBinary("kube-scheduler", "k8s.io/kubernetes/cmd/kube-scheduler", versions.KUBERNETES, "k8s", _K8S),
        GoBinary("kubectl", "k8s.io/kubernetes/cmd/kubectl", versions.KUBERNETES, "k8s", _K8S),
        GoBinary("kwok", "sigs.k8s.io/kwok/cmd/kwok", versions.KWOK),
        GoBinary(
            "kueue",
            "sigs.k8s.io/kueue/cmd/kueue",
            versions.KUEUE,
            source="sigs.k8s.io/kueue",
            patches=(_KUEUE_METRICS_CERTS,),
        ),
        GoBinary("kuberay-operator", "github.com/ray-project/kuberay/ray-operator", versions.KUBERAY),
        # From a source copy, because `go install ...@v1.2.0` first asks the proxy for the module's version list
        # (to warn about deprecation) and the module proxy here refuses that list for this module.
        GoBinary(
            "appwrapper",
            "github.com/project-codeflare/appwrapper/cmd",
            versions.APPWRAPPER,
            source="github.com/project-codeflare/appwrapper",
        ),
        GoBinary("helm", "helm.sh/helm/v3/cmd/helm", versions.HELM, ldflags=_HELM),
        GoBinary("fake-gcs-server", "github.com/fsouza/fake-gcs-server", versions.FAKE_GCS_SERVER),
        # From a source copy: Jaeger's go.mod has a replace directive, which `go install ...@version` refuses.
        GoBinary(
            "jaeger",
            "github.com/jaegertracing/jaeger/cmd/jaeger",
            versions.JAEGER,
            source="github.com/jaegertracing/jaeger",
        ),
        # Upstream Kaiwo's operator, only for the side-by-side benchmark (bench/bench_e2e.py); never run by tests.
        # From a source copy for the same reason as appwrapper.
        GoBinary(
            "kaiwo-upstream",
            "github.com/silogen/kaiwo/cmd/operator",
            versions.UPSTREAM_KAIWO,
            source="github.com/silogen/kaiwo",
        ),
    ]
}

CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "kubectl")
ADDONS = ("kueue", "kuberay-operator", "appwrapper", "jaeger")
TOOLS = ("helm", "fake-gcs-server")  # used by tests, not by the running cluster
BENCH = ("kaiwo-upstream",)  # built on demand by the benchmarks only

Progress = Callable[[str], None]
HEARTBEAT = 60.0  # seconds between "still building" lines


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _go_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("CGO_ENABLED", "0")
    env.setdefault("GOFLAGS", "-buildvcs=false")
    return env


def _go_version() -> str:
    try:
        out = subprocess.run(["go", "env", "GOVERSION"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as e:
        raise BuildError(f"the Go toolchain is needed to build the local cluster: {e}") from e
    return out.stdout.strip()


class Builder:
    def __init__(self, progress: Progress = _stderr) -> None:
        self.progress = progress
        self._go: str | None = None
        self._tools: Path | None = None

    @property
    def go(self) -> str:
        if self._go is None:
            self._go = _go_version()
        return self._go

    def _module_dir(self, module: str) -> Path:
        if self._tools is None:
            self._tools = tools_dir()
        return self._tools / module

    def key(self, b: GoBinary) -> str:
        h = hashlib.sha256()
        h.update(f"{b.target()}\n{' '.join(b.ldflags)}\n{self.go}\n".encode())
        if b.source:  # only then, so the keys of all other binaries stay as they were
            h.update(f"source {b.source}\n".encode())
        for p in b.patches:
            h.update(f"{p.file}\n{p.old}\n{p.new}\n".encode())
        if b.module:
            for f in ("go.mod", "go.sum"):
                h.update((self._module_dir(b.module) / f).read_bytes())
        return h.hexdigest()[:12]

    def path(self, b: GoBinary) -> Path:
        return cache_root() / "bin" / f"{b.name}-{b.version}-{self.key(b)}" / b.name

    def ensure(self, names: Iterable[str] = CONTROL_PLANE) -> dict[str, Path]:
        """Return the cached binary for each name, building the missing ones."""
        wanted = [BINARIES[n] for n in names]
        paths = {b.name: self.path(b) for b in wanted}
        missing = [b for b in wanted if not paths[b.name].exists()]
        if not missing:
            return paths
        lock_path = cache_root() / "build.lock"
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(lock_path, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            missing = [b for b in missing if not paths[b.name].exists()]  # another process may have built them
            groups: dict[tuple[str | None, tuple[str, ...]], list[GoBinary]] = {}
            for b in missing:
                groups.setdefault((b.module, b.ldflags), []).append(b)
            for (module, ldflags), group in groups.items():
                self._build(module, ldflags, group, paths)
        return paths

    def _build(
        self, module: str | None, ldflags: tuple[str, ...], group: list[GoBinary], paths: dict[str, Path]
    ) -> None:
        names = ", ".join(b.name for b in group)
        self.progress(f"building {names} from Go modules (first time only; several minutes on 2 cores)")
        started = time.monotonic()
        flags = ["-trimpath", "-ldflags", " ".join(("-s", "-w", *ldflags))]
        with tempfile.TemporaryDirectory(dir=cache_root()) as tmp:
            for b in group:
                # One binary per `go` call keeps output names explicit; the Go build cache shares the packages,
                # and -p lets each call use every core.
                out = Path(tmp) / b.name
                built = out
                env = _go_env()
                if module:
                    cmd = ["go", "build", *flags, "-o", str(out), b.package]
                    cwd: Path | None = self._module_dir(module)
                elif b.source:
                    cwd = copy_source(b, Path(tmp) / f"src-{b.name}")
                    package = "./" + b.package.removeprefix(b.source).lstrip("/")
                    cmd = ["go", "build", *flags, "-o", str(out), package]
                else:
                    cmd = ["go", "install", *flags, b.target()]
                    cwd = None
                    env["GOBIN"] = tmp
                    built = Path(tmp) / b.package.rsplit("/", 1)[-1]  # go install's name
                self.progress(f"  go {cmd[1]} {b.target()}" + (f" (from {b.source} source)" if b.source else ""))
                code, stderr = self._run(cmd, cwd, env, b.name)
                if code != 0:
                    raise BuildError(f"building {b.name} failed:\n{stderr[-4000:]}")
                dest = paths[b.name]
                dest.parent.mkdir(parents=True, exist_ok=True)
                staged = dest.parent / f".{b.name}.tmp"
                shutil.move(str(built), staged)
                os.replace(staged, dest)
        self.progress(f"built {names} in {time.monotonic() - started:.0f}s")

    def _run(self, cmd: list[str], cwd: Path | None, env: dict[str, str], name: str) -> tuple[int, str]:
        """Run a `go` command, saying every HEARTBEAT seconds that it still works (a cold build is long)."""
        started = time.monotonic()
        with tempfile.TemporaryFile("w+") as err:
            proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=err, text=True)
            while True:
                try:
                    code = proc.wait(HEARTBEAT)
                    break
                except subprocess.TimeoutExpired:
                    self.progress(f"  still building {name} ({time.monotonic() - started:.0f}s)")
            err.seek(0)
            return code, err.read()

    def prune(self, keep: Iterable[str]) -> list[Path]:
        """Delete cached builds other than the current ones of ``keep`` (older versions, go.mod or Go changes)."""
        current = {self.path(BINARIES[n]).parent for n in keep}
        removed = []
        for entry in sorted((cache_root() / "bin").glob("*")):
            if entry.is_dir() and entry not in current:
                shutil.rmtree(entry)
                removed.append(entry)
        return removed


def copy_source(b: GoBinary, dest: Path) -> Path:
    """Copy the source of ``b.source`` at ``b.version`` from the module cache to ``dest`` and apply the patches."""
    assert b.source
    # Plain copies: the module cache's files and folders are read-only, the copy must be writable and removable.
    shutil.copytree(module_dir(b.source, b.version), dest, copy_function=shutil.copyfile)
    for folder in (dest, *(d for d in dest.rglob("*") if d.is_dir())):
        folder.chmod(0o755)
    for p in b.patches:
        path = dest / p.file
        text = path.read_text()
        if text.count(p.old) != 1:
            raise BuildError(
                f"patch for {b.name} does not apply to {b.source}@{b.version}/{p.file}: expected exactly one {p.old!r}"
            )
        path.write_text(text.replace(p.old, p.new))
    return dest


def ensure_binaries(names: Iterable[str] = CONTROL_PLANE, progress: Progress = _stderr) -> dict[str, Path]:
    return Builder(progress).ensure(names)
