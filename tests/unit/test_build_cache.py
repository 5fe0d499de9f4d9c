from pathlib import Path

import pytest

from kaiwo.devcluster import build


@pytest.fixture
def tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    tools = tmp_path / "tools"
    (tools / "k8s").mkdir(parents=True)
    (tools / "k8s" / "go.mod").write_text("module x\n")
    (tools / "k8s" / "go.sum").write_text("")
    monkeypatch.setenv("KAIWO_TOOLS_DIR", str(tools))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(build, "_go_version", lambda: "go1.26.8")
    return tools


def test_cache_path_is_keyed_by_version_and_inputs(tools: Path) -> None:
    b = build.Builder(progress=lambda _: None)
    apiserver = build.BINARIES["kube-apiserver"]
    first = b.path(apiserver)
    assert first.name == "kube-apiserver"
    assert first.parent.name.startswith(f"kube-apiserver-{apiserver.version}-")
    assert str(first).startswith(str(build.cache_root() / "bin"))
    (tools / "k8s" / "go.sum").write_text("changed\n")
    assert build.Builder(progress=lambda _: None).path(apiserver) != first


def test_present_binaries_are_not_rebuilt(tools: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    b = build.Builder(progress=lambda _: None)
    for name in build.CONTROL_PLANE:
        p = b.path(build.BINARIES[name])
        p.parent.mkdir(parents=True)
        p.write_text("#!/bin/sh\n")

    def fail(*_: object) -> None:
        raise AssertionError("rebuilt a cached binary")

    monkeypatch.setattr(build.Builder, "_build", fail)
    paths = b.ensure()
    assert set(paths) == set(build.CONTROL_PLANE)


def test_missing_binaries_are_built_in_groups(tools: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str | None, list[str]]] = []
    monkeypatch.setattr(
        build.Builder,
        "_build",
        lambda self, module, ldflags, group, paths: calls.append((module, [g.name for g in group])),
    )
    build.Builder(progress=lambda _: None).ensure(["etcd", "kube-apiserver", "kwok"])
    modules = {m: names for m, names in calls}
    assert modules[None] == ["kwok"]
    assert sorted(n for m, names in calls if m == "k8s" for n in names) == ["etcd", "kube-apiserver"]


def test_prune_keeps_only_the_current_builds(tools: Path) -> None:
    b = build.Builder(progress=lambda _: None)
    current = b.path(build.BINARIES["etcd"]).parent
    stale = build.cache_root() / "bin" / "etcd-v3.5.0-0123456789ab"
    other = b.path(build.BINARIES["kwok"]).parent  # current, but not asked to keep
    for d in (current, stale, other):
        d.mkdir(parents=True)
    assert b.prune(["etcd"]) == sorted([stale, other])
    assert current.exists() and not stale.exists()


def test_long_go_commands_report_that_they_still_run(monkeypatch: pytest.MonkeyPatch) -> None:
    said: list[str] = []
    monkeypatch.setattr(build, "HEARTBEAT", 0.2)
    code, stderr = build.Builder(progress=said.append)._run(
        ["sh", "-c", "sleep 0.5; echo oops >&2; exit 3"], None, {"PATH": "/usr/bin:/bin"}, "thing"
    )
    assert (code, stderr) == (3, "oops\n")
    assert said and all(s.startswith("  still building thing (") for s in said)
