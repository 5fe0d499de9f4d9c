"""``python -m kaiwo.manager`` configuration: upstream's feature switches, environment defaults, clear errors."""

from __future__ import annotations

import pytest

from kaiwo import manager

SWITCHES = (
    "DISABLE_WEBHOOKS",
    "ENFORCE_KAIWO_ON_GPU_WORKLOADS",
    "RESOURCE_MONITORING_ENABLED",
    "GPU_PREEMPTION_ENABLED",
    "RESOURCE_MONITORING_METRICS_ENDPOINT",
    "RESOURCE_MONITORING_POLLING_INTERVAL",
    "GPU_PREEMPTION_METRICS_ENDPOINT",
    "GPU_PREEMPTION_DEFAULT_POLICY",
    "FORMATTED_LOGS",
    "KAIWO_LOG_FORMAT",
    "KAIWO_LOG_LEVEL",
    "KAIWO_WORKERS",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SWITCHES:
        monkeypatch.delenv(name, raising=False)


def parse_error(capsys: pytest.CaptureFixture[str], argv: list[str] | None = None) -> str:
    with pytest.raises(SystemExit) as exc:
        manager.parse(argv or [])
    assert exc.value.code == 2
    return capsys.readouterr().err


def test_upstream_manifest_values_are_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    """What upstream's kustomize manifests and chart set: webhooks disabled, optional features off."""
    for name, value in (
        ("DISABLE_WEBHOOKS", "true"),
        ("ENFORCE_KAIWO_ON_GPU_WORKLOADS", "false"),
        ("RESOURCE_MONITORING_ENABLED", "False"),
        ("GPU_PREEMPTION_ENABLED", "0"),
    ):
        monkeypatch.setenv(name, value)
    cfg = manager.parse([])
    assert cfg.log_format == "json" and cfg.leader_elect


@pytest.mark.parametrize(
    ("name", "value", "feature"),
    [
        ("DISABLE_WEBHOOKS", "false", "admission webhooks"),
        ("ENFORCE_KAIWO_ON_GPU_WORKLOADS", "true", "Job admission webhook"),
    ],
)
def test_switching_on_an_absent_feature_fails_naming_it(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    name: str,
    value: str,
    feature: str,
) -> None:
    monkeypatch.setenv(name, value)
    err = parse_error(capsys)
    assert f"{name}={value}" in err and feature in err and "not implemented" in err


@pytest.mark.parametrize("name", ["DISABLE_WEBHOOKS", "GPU_PREEMPTION_ENABLED", "FORMATTED_LOGS"])
def test_a_switch_that_is_not_a_boolean_is_an_error(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    name: str,
) -> None:
    monkeypatch.setenv(name, "enabled")
    assert f"{name}='enabled': expected true or false" in parse_error(capsys)


def test_formatted_logs_selects_text_unless_the_log_format_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORMATTED_LOGS", "true")
    assert manager.parse([]).log_format == "text"
    assert manager.parse(["--log-format", "json"]).log_format == "json"
    monkeypatch.setenv("KAIWO_LOG_FORMAT", "json")
    assert manager.parse([]).log_format == "json"


def test_environment_defaults_are_validated_like_flags(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("KAIWO_LOG_FORMAT", "xml")
    assert "--log-format 'xml' (from the environment): choose from json, text" in parse_error(capsys)
    monkeypatch.delenv("KAIWO_LOG_FORMAT")
    monkeypatch.setenv("KAIWO_WORKERS", "many")
    assert "argument --workers: invalid int value: 'many'" in parse_error(capsys)
    monkeypatch.setenv("KAIWO_WORKERS", "4")
    assert manager.parse([]).workers == 4


def test_resource_monitoring_from_upstreams_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESOURCE_MONITORING_ENABLED", "true")
    monkeypatch.setenv("RESOURCE_MONITORING_METRICS_ENDPOINT", "http://amd:5000/metrics,http://dcgm:9400/metrics")
    monkeypatch.setenv("RESOURCE_MONITORING_POLLING_INTERVAL", "1m")
    source = manager.parse([]).gpu.monitoring
    assert source is not None and source.interval == 60.0
    assert source.endpoints == ("http://amd:5000/metrics", "http://dcgm:9400/metrics")
    assert manager.parse(["--no-resource-monitoring"]).gpu.monitoring is None
    assert manager.parse([]).gpu.preemption is None


def test_resource_monitoring_flags_win_and_default_to_30s() -> None:
    assert manager.parse([]).gpu.monitoring is None  # off by default
    cfg = manager.parse(["--resource-monitoring", "--resource-monitoring-metrics-endpoint", "https://x/metrics"])
    assert cfg.gpu.monitoring is not None and cfg.gpu.monitoring.interval == 30.0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--resource-monitoring"], "--resource-monitoring-metrics-endpoint is empty"),
        (
            ["--resource-monitoring", "--resource-monitoring-metrics-endpoint", "amd:5000"],
            "'amd:5000' is not an http(s) URL",
        ),
        (
            [
                "--resource-monitoring",
                "--resource-monitoring-metrics-endpoint",
                "http://a",
                "--resource-monitoring-polling-interval",
                "soon",
            ],
            "--resource-monitoring-polling-interval 'soon'",
        ),
    ],
)
def test_resource_monitoring_misconfiguration_names_the_flag(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert message in parse_error(capsys, argv)


def test_gpu_preemption_from_upstreams_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPU_PREEMPTION_ENABLED", "true")
    monkeypatch.setenv("GPU_PREEMPTION_METRICS_ENDPOINT", "http://amd:5000/metrics")
    monkeypatch.setenv("GPU_PREEMPTION_DEFAULT_POLICY", "Always")
    cfg = manager.parse(["--leader-election-namespace", "ops"])
    assert cfg.gpu.preemption is not None and cfg.gpu.preemption.interval == 15.0
    assert cfg.gpu.preemption_namespace == "ops" and cfg.gpu.defaults.policy == "Always"


def test_gpu_preemption_misconfiguration_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GPU_PREEMPTION_DEFAULT_POLICY", "Never")
    err = parse_error(capsys, ["--gpu-preemption", "--gpu-preemption-metrics-endpoint", "http://a/metrics"])
    assert "GPU_PREEMPTION_DEFAULT_POLICY='Never'" in err
    assert "--gpu-preemption-metrics-endpoint is empty" in parse_error(capsys, ["--gpu-preemption"])
