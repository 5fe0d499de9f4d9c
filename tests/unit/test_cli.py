"""The kaiwo CLI without a cluster: manifests and defaulting, references, rendering, config file, error
messages and exit codes (through typer's CliRunner)."""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from typer.testing import CliRunner

from kaiwo.cli import render, streams, userconfig
from kaiwo.cli.errors import CliError, explain
from kaiwo.cli.main import app
from kaiwo.cli.manifests import Defaults, choose_defaults, fill, load_documents, place
from kaiwo.cli.pods import parse_ports
from kaiwo.cli.refs import WorkloadRef, parse_ref
from kaiwo.cli.session import Output, Target
from kaiwo.cli.submit import contains, resolve_defaults
from kaiwo.runtime.client import ApiError
from tests.builders import JobBuilder, KaiwoJobBuilder, KaiwoServiceBuilder, NodeBuilder, PodBuilder, WorkloadBuilder

NOW = dt.datetime(2025, 1, 1, 12, 0, 0, tzinfo=dt.UTC)
JOB = "apiVersion: kaiwo.silogen.ai/v1alpha1\nkind: KaiwoJob\nmetadata:\n  name: train\nspec:\n  image: busybox\n"


def cli(*args: str, input: str | None = None, **env: str) -> Any:
    return CliRunner().invoke(app, list(args), input=input, env={"NO_COLOR": "1", **env})


# --- manifests ------------------------------------------------------------------------------------------------


def test_documents_yaml_json_and_lists() -> None:
    two = load_documents(JOB + "---\n" + JOB.replace("train", "eval") + "---\n", "f.yaml")
    assert [d["metadata"]["name"] for d in two] == ["train", "eval"]
    js = load_documents('{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}', "c.json")
    assert js[0]["kind"] == "ConfigMap"
    items = load_documents("apiVersion: v1\nkind: List\nitems:\n- " + JOB.replace("\n", "\n  "), "l.yaml")
    assert [d["kind"] for d in items] == ["KaiwoJob"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kind: KaiwoJob\n  bad: [x\n", "f.yaml: not valid YAML or JSON (line 2"),
        ("", "f.yaml: no objects found"),
        ("- a\n- b\n", "expected a Kubernetes object (a mapping), got list"),
        ("apiVersion: v1\nmetadata: {name: x}\n", "f.yaml: missing kind"),
        ("apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n", "ConfigMap has no metadata.name"),
        (JOB + "---\nkind: KaiwoJob\n", "f.yaml: document 2: missing apiVersion"),
        (JOB.replace("spec:\n  image: busybox\n", "spec: [1]\n"), "spec must be a mapping"),
    ],
)
def test_document_errors_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(CliError) as e:
        load_documents(text, "f.yaml")
    assert message in e.value.message and e.value.hint


def test_defaults_fill_only_what_the_manifest_leaves_out() -> None:
    assert choose_defaults("flag@x.io", None, "cfg@x.io", "cfg-q") == Defaults("flag@x.io", "cfg-q")
    assert choose_defaults(None, "flag-q", "cfg@x.io", "") == Defaults("cfg@x.io", "flag-q")
    doc = load_documents(JOB, "f")[0]
    filled = fill(doc, Defaults("Me@Example.com", "team"))
    assert (filled["spec"]["user"], filled["spec"]["clusterQueue"]) == ("Me@Example.com", "team")
    assert filled["metadata"]["labels"] == {"kaiwo.silogen.ai/user": "me-example.com"}  # as the operator sanitises
    assert "user" not in doc["spec"]  # the input is not changed
    own = load_documents(JOB.replace("image: busybox", "image: busybox\n  user: a@b.c\n  clusterQueue: q"), "f")[0]
    kept = fill(own, Defaults("Me@Example.com", "team"))
    assert (kept["spec"]["user"], kept["spec"]["clusterQueue"]) == ("a@b.c", "q")
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}
    assert fill(cm, Defaults("x@y.z", "q")) == cm
    assert "labels" not in fill(doc, Defaults())["metadata"]


def test_namespace_precedence_and_conflict() -> None:
    doc = load_documents(JOB, "f")[0]
    assert place(doc, None, "ctx-ns", True)["metadata"]["namespace"] == "ctx-ns"
    assert place(doc, "flag", "ctx-ns", True)["metadata"]["namespace"] == "flag"
    doc["metadata"]["namespace"] = "own"
    assert place(doc, None, "ctx-ns", True)["metadata"]["namespace"] == "own"
    assert place(doc, "own", "ctx-ns", True)["metadata"]["namespace"] == "own"
    assert "namespace" not in place(doc, "flag", "ctx-ns", False)["metadata"]  # cluster-scoped
    with pytest.raises(CliError) as e:
        place(doc, "flag", "ctx-ns", True)
    assert e.value.code == 2 and "'own'" in e.value.message


def test_client_dry_run_compares_only_the_given_fields() -> None:
    live = {"spec": {"image": "a", "gpus": 0, "user": "u"}, "metadata": {"name": "x", "uid": "1"}}
    assert contains(live, {"spec": {"image": "a"}, "metadata": {"name": "x"}})
    assert not contains(live, {"spec": {"image": "b"}})
    assert not contains(live, {"spec": {"new": 1}})


# --- references and ports -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("job/a", "KaiwoJob"),
        ("kaiwojobs/a", "KaiwoJob"),
        ("kaiwojob.kaiwo.silogen.ai/a", "KaiwoJob"),
        ("service/a", "KaiwoService"),
        ("SVC/a", "KaiwoService"),
        ("kaiwoservice/a", "KaiwoService"),
    ],
)
def test_workload_references(text: str, kind: str) -> None:
    assert parse_ref(text) == WorkloadRef(kind, "a")


@pytest.mark.parametrize("text", ["a", "job/", "pod/a", "job/a/b", "/a"])
def test_bad_references_are_usage_errors(text: str) -> None:
    with pytest.raises(CliError) as e:
        parse_ref(text)
    assert e.value.code == 2 and "job/NAME" in e.value.hint


def test_port_specs() -> None:
    assert parse_ports(["8080:80", "9000", ":7000"]) == [(8080, 80), (9000, 9000), (0, 7000)]
    for bad in ("http", "80:0", "70000:80"):
        with pytest.raises(CliError):
            parse_ports([bad])


# --- rendering ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (5, "5s"),
        (119, "119s"),
        (125, "2m5s"),
        (600, "10m"),
        (3 * 3600 + 240, "3h4m"),
        (20 * 3600, "20h"),
        (4 * 86400 + 7200, "4d2h"),
        (30 * 86400, "30d"),
        (800 * 86400, "2y"),
    ],
)
def test_human_duration(seconds: int, text: str) -> None:
    assert render.human_duration(seconds) == text


def test_table_aligns_columns_without_trailing_blanks() -> None:
    assert render.table(["A", "LONGER"], [["xxxx", 1], ["y", None]]) == "A      LONGER\nxxxx   1\ny"


def workload(name: str, kind: str = "KaiwoJob", ns: str = "a", **status: Any) -> dict[str, Any]:
    builder = KaiwoJobBuilder if kind == "KaiwoJob" else KaiwoServiceBuilder
    cr = builder(name, ns).created("2025-01-01T11:55:00Z").generation(2).user("u@x.io").gpus_per_replica(2).replicas(2)
    for key, value in status.items():
        cr.status_field(key, value)
    return cr.obj()


def test_workload_table_plain_wide_and_all_namespaces() -> None:
    objs = [
        workload("b", "KaiwoService", status="RUNNING", startTime="2025-01-01T11:58:00Z", duration=120),
        workload("a", conditions=[{"type": "Admitted", "status": "False", "message": "pending admission"}]),
    ]
    assert render.workload_table(objs, NOW, namespaces=False, wide=False).splitlines() == [
        "NAME   TYPE      STATUS    USER     QUEUE       GPUS   AGE",
        "a      job       NEW       u@x.io   <default>   4      5m",
        "b      service   RUNNING   u@x.io   <default>   4      5m",
    ]
    wide = render.workload_table(objs, NOW, namespaces=True, wide=True).splitlines()
    assert wide[0].split() == [
        "NAMESPACE",
        "NAME",
        "TYPE",
        "STATUS",
        "USER",
        "QUEUE",
        "GPUS",
        "AGE",
        "VENDOR",
        "STARTED",
        "DURATION",
        "MESSAGE",
    ]
    assert wide[1].endswith("Admitted: pending admission") and "2m ago" in wide[2] and wide[2].endswith("-")


def test_describe_says_why_a_workload_waits() -> None:
    obj = workload(
        "a",
        status="PENDING",
        observedGeneration=1,
        conditions=[
            {
                "type": "Admitted",
                "status": "False",
                "reason": "Pending",
                "message": "no quota",
                "lastTransitionTime": "2025-01-01T11:59:00Z",
            }
        ],
    )
    wl = WorkloadBuilder("job-a-1", "a").pending("insufficient amd.com/gpu").obj()
    pod = PodBuilder("a-x", "a").gated("g").obj()
    job = (
        JobBuilder("a", "a")
        .created("2025-01-01T11:56:00Z")
        .label("kueue.x-k8s.io/queue-name", "team-default")
        .suspend()
        .obj()
    )
    event = {
        "type": "Warning",
        "reason": "Pending",
        "message": "quota",
        "lastTimestamp": "2025-01-01T11:59:30Z",
        "involvedObject": {"kind": "Workload", "name": "job-a-1"},
    }
    assert render.child_queue([pod, job]) == "team-default" and render.child_queue([pod]) is None
    deployment = {
        "kind": "Deployment",
        "metadata": {"name": "d"},
        "spec": {"template": {"metadata": {"labels": {"kueue.x-k8s.io/queue-name": "svc-q"}}}},
    }
    assert render.child_queue([deployment]) == "svc-q"  # a Deployment's label is on its pod template
    text = render.describe_workload(
        obj, queue="team-default", children=[job], pods=[pod], kueue=[wl], local_queue=None, events=[event], now=NOW
    )
    assert "Queue:       team-default (the cluster's default)" in text
    assert "Status:      PENDING  (for generation 1; the spec is at 2)" in text
    assert "Admitted   False    Pending   60s   no quota" in text
    assert "LocalQueue team-default: missing in this namespace" in text
    assert "Workload job-a-1: not admitted" in text and "insufficient amd.com/gpu" in text
    rows = [line.split() for line in text.splitlines()]
    assert ["Job/a", "Suspended", "4m"] in rows and ["Pod/a-x", "SchedulingGated", "-"] in rows
    assert "30s   Warning   Pending   Workload/job-a-1   quota" in text


def test_quantities_and_pod_requests() -> None:
    assert render.quantity("1500m") == 1.5 and render.quantity("16Gi") == 16 * 2**30 and render.quantity("2k") == 2000
    pod = {
        "spec": {
            "containers": [
                {"resources": {"requests": {"cpu": "2", "memory": "1Gi"}, "limits": {"amd.com/gpu": "4"}}},
                {"resources": {"requests": {"cpu": "500m"}}},
            ]
        }
    }
    assert render.pod_requests(pod) == {"cpu": 2.5, "memory": 2**30, "amd.com/gpu": 4}


def test_node_table_counts_running_pods_only() -> None:
    node = NodeBuilder("n1").cpu("64", "512Gi").gpus(8, "amd", labelled=False).label("kaiwo/gpu-model", "mi300x").obj()
    cpu_node = NodeBuilder("cpu").cpu("8", "32Gi").obj()
    gpu_pod = PodBuilder("p", "ns").on_node("n1").gpus(2, "amd").requests(cpu="16")
    running, done = gpu_pod.phase("Running").obj(), gpu_pod.phase("Succeeded").obj()
    lines = render.node_table([node, cpu_node], [running, done], "amd.com/gpu").splitlines()
    assert len(lines) == 2 and lines[1].split() == [
        "n1",
        "mi300x",
        "2/8",
        "(25%)",
        "16/64",
        "(25%)",
        "0Gi/512Gi",
        "(0%)",
        "1/110",
        "(1%)",
    ]


def test_queue_table_totals_and_local_queues() -> None:
    cq = {
        "metadata": {"name": "kaiwo"},
        "spec": {
            "resourceGroups": [
                {
                    "flavors": [
                        {
                            "name": "f",
                            "resources": [
                                {"name": "amd.com/gpu", "nominalQuota": "32"},
                                {"name": "cpu", "nominalQuota": 100},
                                {"name": "memory", "nominalQuota": "100Gi"},
                            ],
                        }
                    ]
                }
            ]
        },
        "status": {
            "admittedWorkloads": 2,
            "pendingWorkloads": 1,
            "flavorsReservation": [
                {"name": "f", "resources": [{"name": "amd.com/gpu", "total": "8"}, {"name": "cpu", "total": "10"}]}
            ],
        },
    }
    lq = {
        "metadata": {"name": "kaiwo", "namespace": "team"},
        "spec": {"clusterQueue": "kaiwo"},
        "status": {"admittedWorkloads": 2, "pendingWorkloads": 1},
    }
    other = {"metadata": {"name": "x", "namespace": "t"}, "spec": {"clusterQueue": "other"}}
    rows = [line.split() for line in render.queue_table([cq], [lq, other]).splitlines()]
    assert rows[0] == ["CLUSTERQUEUE", "LOCALQUEUE", "ADMITTED", "PENDING", "GPUS", "CPU", "MEMORY", "STATE"]
    assert rows[1] == [
        "kaiwo",
        "[TOTAL]",
        "2",
        "1",
        "8/32",
        "(25%)",
        "10/100",
        "(10%)",
        "0Gi/100Gi",
        "(0%)",
        "UNKNOWN",
    ]
    assert rows[2] == ["team/kaiwo", "2", "1", "UNKNOWN"] and len(rows) == 4
    assert rows[3][:3] == ["!", "ClusterQueue", "kaiwo"]


def test_queue_table_marks_a_terminating_cluster_queue_and_names_its_holders() -> None:
    cq = {
        "metadata": {
            "name": "kaiwo",
            "deletionTimestamp": "2026-01-01T00:00:00Z",
            "finalizers": ["kueue.x-k8s.io/resource-in-use"],
        },
        "spec": {},
        "status": {
            "admittedWorkloads": 1,
            "conditions": [
                {
                    "type": "Active",
                    "status": "False",
                    "reason": "Terminating",
                    "message": "Can't admit new workloads; clusterQueue is terminating",
                }
            ],
        },
    }
    wl = {"metadata": {"name": "pod-web-1", "namespace": "team"}, "status": {"admission": {"clusterQueue": "kaiwo"}}}
    other = {"metadata": {"name": "x", "namespace": "team"}, "status": {"admission": {"clusterQueue": "other"}}}
    text = render.queue_table([cq], [], [wl, other])
    _header, row, note = text.splitlines()
    assert row.split()[-1] == "TERMINATING"
    assert "terminating since 2026-01-01T00:00:00Z" in note
    assert "held by finalizer kueue.x-k8s.io/resource-in-use" in note
    assert "1 admitted and 0 reserving workload(s): team/pod-web-1" in note and "team/x" not in note
    assert "Kueue says Terminating: Can't admit new workloads" in note


# --- exec results and the stdin close frame ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "result"),
    [
        ({"status": "Success"}, streams.ExecResult(0)),
        (
            {
                "status": "Failure",
                "reason": "NonZeroExitCode",
                "details": {"causes": [{"reason": "ExitCode", "message": "42"}]},
            },
            streams.ExecResult(42),
        ),
        (
            {"status": "Failure", "message": "error executing command in container: cmd wait: sh: exit status 3"},
            streams.ExecResult(3),
        ),
        (
            {"status": "Failure", "message": 'exec: "x": executable file not found in $PATH'},
            streams.ExecResult(1, 'exec: "x": executable file not found in $PATH'),
        ),
        (None, streams.ExecResult(1, "the connection closed before the command finished")),
    ],
)
def test_exec_result(status: dict[str, Any] | None, result: streams.ExecResult) -> None:
    assert streams.exec_result(status) == result


async def test_stdin_is_sent_on_channel_0_then_closed() -> None:
    sent: list[bytes] = []

    class FakeWs:
        async def send_bytes(self, data: bytes) -> None:
            sent.append(data)

    async def chunks() -> AsyncIterator[bytes]:
        yield b"ab"
        yield b"c"

    await streams._feed(FakeWs(), chunks())  # type: ignore[arg-type]
    assert sent == [b"\x00ab", b"\x00c", b"\xff\x00"]


# --- config file ----------------------------------------------------------------------------------------------


def test_config_path_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("KAIWOCONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert userconfig.config_path() == tmp_path / "xdg" / "kaiwo" / "kaiwoconfig.yaml"
    monkeypatch.setenv("KAIWOCONFIG", str(tmp_path / "env.yaml"))
    assert userconfig.config_path() == tmp_path / "env.yaml"
    assert userconfig.config_path(str(tmp_path / "flag.yaml")) == tmp_path / "flag.yaml"


def test_config_roundtrip_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "a" / "kaiwoconfig.yaml"
    assert userconfig.load(path) is None
    userconfig.save(path, userconfig.UserConfig("me@x.io", "team"))
    assert userconfig.load(path) == userconfig.UserConfig("me@x.io", "team")
    path.write_text("user: [\n")
    with pytest.raises(CliError, match="not valid YAML"):
        userconfig.load(path)
    with pytest.raises(ValueError):
        userconfig.validate_email("not-an-email")


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_first_run_prompt_writes_the_config_at_a_terminal(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "kaiwoconfig.yaml"
    monkeypatch.setattr("sys.stdin", Tty("y\nnot-an-email\nme@x.io\nteam-q\n"))
    docs = load_documents(JOB, "f")
    defaults = resolve_defaults(Output(), docs, None, None, str(path))
    assert defaults == Defaults("me@x.io", "team-q")
    assert userconfig.load(path) == userconfig.UserConfig("me@x.io", "team-q")


def test_no_prompt_without_a_terminal(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "kaiwoconfig.yaml"
    monkeypatch.setattr("sys.stdin", io.StringIO("y\nme@x.io\n"))
    defaults = resolve_defaults(Output(), load_documents(JOB, "f"), None, "q", str(path))
    assert defaults == Defaults("", "q") and not path.exists()
    assert "no user set" in capsys.readouterr().err
    # No prompt either when --user is given or the manifest names its user.
    monkeypatch.setattr("sys.stdin", Tty(""))
    assert resolve_defaults(Output(), load_documents(JOB, "f"), "u@x.io", None, str(path)).user == "u@x.io"
    assert not path.exists()


# --- errors and exit codes ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "text"),
    [
        (ApiError(401, {"message": "Unauthorized"}), "did not accept your credentials"),
        (ApiError(403, {"message": "kaiwojobs is forbidden"}), "not allowed: kaiwojobs is forbidden"),
        (ApiError(404, {"message": "the server has no resource for kind X in v1"}), "no resource for kind X"),
        (ApiError(409, {"message": "conflict with kubectl"}), "conflict: conflict with kubectl"),
        (ApiError(422, {"message": "spec.gpus: Invalid value"}), "rejected the request: spec.gpus"),
        (aiohttp.ClientConnectionError("refused"), "cannot reach the Kubernetes API at https://h: refused"),
        (TimeoutError(), "cannot reach the Kubernetes API"),
    ],
)
def test_expected_failures_are_explained(exc: BaseException, text: str) -> None:
    err = explain(exc, "https://h")
    assert err is not None and text in err.message and err.code == 1
    assert explain(ValueError("bug")) is None


def test_kubeconfig_discovery(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    with pytest.raises(CliError, match="no kubeconfig found"):
        Target().kubeconfig_path()
    cfg = tmp_path / "config"
    cfg.write_text(
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://h'}}]\n"
        "users: [{name: u, user: {}}]\ncontexts: [{name: a, context: {cluster: c, user: u, namespace: "
        "team}}, {name: b, context: {cluster: c, user: u}}]\ncurrent-context: a\n"
    )
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path / 'none'}:{cfg}")
    assert Target().kubeconfig_path() == str(cfg)
    assert Target().resolve_namespace() == "team"
    assert Target(context="b").resolve_namespace() == "default"
    assert Target(namespace="flag").resolve_namespace() == "flag"
    with pytest.raises(CliError) as e:
        Target(context="zz").resolve_namespace()
    assert e.value.code == 2 and "a, b" in e.value.hint


def test_cli_exit_codes_and_messages(tmp_path: Path) -> None:
    r = cli("version")
    assert r.exit_code == 0 and r.stdout.startswith("kaiwo ")
    r = cli("submit", "-f", str(tmp_path / "nope.yaml"))
    assert r.exit_code == 2 and "nope.yaml: no such file" in r.stderr and "Traceback" not in r.stderr
    r = cli("submit", "-f", "-", input="a: [\n", KAIWOCONFIG=str(tmp_path / "c.yaml"))
    assert r.exit_code == 1 and "error: <stdin>: not valid YAML" in r.stderr and "hint:" in r.stderr
    r = cli("submit", "-f", "-", "--wait", "--dry-run", "client", input=JOB)
    assert r.exit_code == 2 and "--wait cannot be combined" in r.stderr
    r = cli("status", "amd-nodes")
    assert r.exit_code == 2 and "neither a workload" in r.stderr
    r = cli("logs", "pod/x")
    assert r.exit_code == 2 and "not a workload reference" in r.stderr
    r = cli("-v", "-q", "version")
    assert r.exit_code == 2
    r = cli("list", "--bogus")
    assert r.exit_code == 2  # click's own usage error
    r = cli("list", KUBECONFIG=str(tmp_path / "missing"), KAIWOCONFIG=str(tmp_path / "c.yaml"))
    assert r.exit_code == 1 and "no kubeconfig found" in r.stderr and "--kubeconfig" in r.stderr


@pytest.mark.parametrize(
    "command", ["submit", "list", "status", "logs", "exec", "monitor", "delete", "port-forward", "version"]
)
def test_every_command_has_help_with_examples(command: str) -> None:
    r = cli(command, "--help")
    assert r.exit_code == 0 and "Examples" in r.stdout and f"kaiwo {command}" in r.stdout


def test_spinner_off_a_terminal_prints_each_change_once(capsys: pytest.CaptureFixture[str]) -> None:
    out = Output()
    with out.spinner("waiting") as update:
        for text in ("job/a: PENDING", "job/a: PENDING", "job/a: RUNNING"):
            update(text)
    assert capsys.readouterr().err.splitlines() == ["job/a: PENDING", "job/a: RUNNING"]
    quiet = Output(verbosity=-1)
    with quiet.spinner("waiting") as update:
        update("job/a: PENDING")
    assert capsys.readouterr().err == ""
