"""The jaeger addon: opt-in selection, its configuration on the reserved ports, the apiserver's tracing config."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from kaiwo.devcluster import addons, components, controllers
from kaiwo.devcluster.build import ADDONS, BINARIES


def ports() -> components.Ports:
    return components.Ports(*range(20000, 20000 + len(dataclasses.fields(components.Ports))))


def test_jaeger_is_opt_in_and_built_by_kaiwo_dev_build() -> None:
    assert "jaeger" not in addons.parse_selection(None) and "jaeger" not in addons.parse_selection("all")
    assert addons.parse_selection("all,jaeger") == ("kueue", "kuberay", "appwrapper", "jaeger")
    assert addons.parse_selection("jaeger") == ("jaeger",)
    assert addons.crds(addons.ADDONS["jaeger"]) == []  # no module download for CRDs it does not have
    assert "jaeger" in ADDONS and BINARIES["jaeger"].version == "v1.76.0"


def test_jaeger_listens_on_loopback_ports_the_apiserver_names() -> None:
    p = ports()
    cfg = controllers.jaeger_config(p)
    otlp = cfg["receivers"]["otlp"]["protocols"]
    assert otlp["grpc"]["endpoint"] == f"127.0.0.1:{p.jaeger_otlp_grpc}"
    assert otlp["http"]["endpoint"] == f"127.0.0.1:{p.jaeger_otlp_http}"
    query = cfg["extensions"]["jaeger_query"]
    assert query["http"]["endpoint"] == f"127.0.0.1:{p.jaeger_query}"
    assert query["grpc"]["endpoint"] == f"127.0.0.1:{p.jaeger_query_grpc}"
    tracing = components.apiserver_tracing(p)
    assert tracing["endpoint"] == otlp["grpc"]["endpoint"] and tracing["samplingRatePerMillion"] == 0
    layout = components.Layout(Path("/state"))
    argv = components.apiserver(Path("/bin/kube-apiserver"), layout, p)
    assert f"--tracing-config-file={layout.apiserver_tracing_config}" in argv
    assert controllers.jaeger_endpoints(dataclasses.asdict(p))["ui"] == f"http://127.0.0.1:{p.jaeger_query}"
