import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("gen_k8s_gomod", ROOT / "tools" / "gen_k8s_gomod.py")
assert spec and spec.loader
gen = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gen)

UPSTREAM = """module k8s.io/kubernetes

go 1.25.0

godebug default=go1.25

require (
\tgo.etcd.io/etcd/server/v3 v3.6.5 // indirect
\tk8s.io/api v0.0.0
)

replace (
\tk8s.io/api => ./staging/src/k8s.io/api
\tk8s.io/cri-streaming => ./staging/src/k8s.io/cri-streaming
\tk8s.io/client-go => ./staging/src/k8s.io/client-go
)
"""


def test_every_staging_module_is_replaced_by_its_release() -> None:
    out = gen.render("v1.35.4", UPSTREAM)
    assert "\tk8s.io/api => k8s.io/api v0.35.4" in out
    assert "\tk8s.io/client-go => k8s.io/client-go v0.35.4" in out
    assert "\tk8s.io/cri-streaming => k8s.io/cri-streaming v0.35.4" in out
    assert "go.etcd.io/etcd/server/v3 v3.6.5" in out
    assert "godebug default=go1.25" in out
    assert "go 1.25.0" in out


def test_missing_staging_block_is_an_error() -> None:
    with pytest.raises(SystemExit, match="no staging replaces"):
        gen.render("v1.35.4", "module k8s.io/kubernetes\n\ngo 1.25.0\n")


def test_committed_gomod_replaces_the_same_modules_as_the_generator() -> None:
    """tools/k8s/go.mod is the generated file after `go mod tidy`: its replace block must be untouched."""
    committed = (ROOT / "tools" / "k8s" / "go.mod").read_text()
    replaces = sorted(line.strip() for line in committed.splitlines() if "=> k8s.io/" in line)
    assert len(replaces) >= 31
    assert all(r.endswith(" v0.35.4") for r in replaces)
