"""The chart's static files: versions, documented values, the shared scheduler profile, the Dockerfile."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from kaiwo import __version__
from kaiwo.api.config import KaiwoConfigSpec
from kaiwo.devcluster import components

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "kaiwo"


def leaf_keys(values: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for k, v in values.items():
        path = f"{prefix}{k}"
        keys += leaf_keys(v, path + ".") if isinstance(v, dict) and v and k != "scoringStrategy" else [path]
    return keys


def test_app_version_is_the_package_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == __version__


def test_every_value_is_documented_in_the_readme() -> None:
    readme = (CHART / "README.md").read_text()
    documented = set(re.findall(r"`([a-zA-Z.]+)`", readme))
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    missing = [
        k
        for k in leaf_keys(values)
        if k not in documented
        and not any(k.startswith(d + ".") for d in ("resources", "podSecurityContext", "scheduler.resources"))
    ]
    assert missing == []


def test_the_scheduler_profile_is_shared_with_the_dev_cluster() -> None:
    scheduler = components.chart_scheduler_values()
    assert scheduler["name"] == KaiwoConfigSpec().scheduling.kube_scheduler_name
    profile = components.scheduler_config(components.Layout(Path("/state")))["profiles"][1]
    assert profile == {
        "schedulerName": "kaiwo-scheduler",
        "pluginConfig": [{"name": "NodeResourcesFit", "args": {"scoringStrategy": scheduler["scoringStrategy"]}}],
    }
    assert {r["name"] for r in scheduler["scoringStrategy"]["resources"]} == {"amd.com/gpu", "nvidia.com/gpu"}


def test_dockerfile_runs_the_manager_as_non_root() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["python", "-m", "kaiwo.manager"]' in text
    assert re.search(r"^USER 65532:65532$", text, re.M)
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["podSecurityContext"]["runAsUser"] == 65532
    for src in re.findall(r"^COPY (?!--)(\S+) ", text, re.M):
        assert (REPO / src).exists(), f"Dockerfile copies {src}, which does not exist"
