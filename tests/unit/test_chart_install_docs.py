"""The chart's install options and the admin guide's dependency install (docs/admin-guide.md section 8), checked
without a cluster: the values schema is current, and the guide's Kueue configuration and versions are those
``kaiwo-dev`` runs. tests/e2e/test_chart_install.py renders both with helm."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import yaml

from kaiwo.devcluster import versions
from tests.kueue_config import GUIDE, KAIWO_RELEVANT, dev_kueue_config, guide_kueue_values

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("chart_schema", REPO / "tools" / "chart_schema.py")
assert _spec and _spec.loader
chart_schema = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(chart_schema)


def test_values_schema_is_current() -> None:
    assert chart_schema.main(["--check"]) == 0, "regenerate with `python tools/chart_schema.py`"


def test_guide_kueue_configuration_is_what_kaiwo_dev_runs() -> None:
    values = guide_kueue_values()
    guide = yaml.safe_load(values["managerConfig"]["controllerManagerConfigYaml"])
    dev = dev_kueue_config()
    assert {k: guide.get(k) for k in KAIWO_RELEVANT} == {k: dev.get(k) for k in KAIWO_RELEVANT}
    gates = {g["name"]: g["enabled"] for g in values["controllerManager"]["featureGates"]}
    assert gates["TopologyAwareScheduling"] is dev["featureGates"]["TopologyAwareScheduling"] is True
    assert guide["leaderElection"]["leaderElect"] is True  # a real cluster runs Kueue with replicas


def test_guide_pins_the_versions_kaiwo_dev_runs() -> None:
    text = GUIDE.read_text()
    section = text[text.index("## 8. Install the dependencies") :]
    assert f"kueue --version {versions.KUEUE.removeprefix('v')}" in section
    assert f"kuberay-operator --version {versions.KUBERAY.removeprefix('v')}" in section
    assert f"releases/download/{versions.APPWRAPPER}/install.yaml" in section
    for name, version in (("Kueue", versions.KUEUE), ("KubeRay operator", versions.KUBERAY)):
        assert f"| {name} | {version} |" in section
    assert f"| AppWrapper | {versions.APPWRAPPER} |" in section
