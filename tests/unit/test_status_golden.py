"""Golden cases of the status machine (kaiwo.translate.status): a Kaiwo object (with its previous status) and
what was observed of its workload child, Kueue's Workload and the child's pods -> the phase, the Admitted
condition and the next status (conditions merged, times, duration), and whether a status write is needed.

Cases are built with the test builders; each golden file (tests/unit/golden/status/<case>.yaml) shows input and
output. ``KAIWO_UPDATE_GOLDEN=1`` rewrites them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from kaiwo.runtime.objects import Obj
from kaiwo.translate import status as st
from tests import golden
from tests.builders import (
    AppWrapperBuilder,
    DeploymentBuilder,
    JobBuilder,
    KaiwoJobBuilder,
    KaiwoServiceBuilder,
    ObjectBuilder,
    PodBuilder,
    RayJobBuilder,
    WorkloadBuilder,
)

FOLDER = Path(__file__).parent / "golden" / "status"
NOW = "2026-03-01T12:00:00Z"
EARLIER = "2026-03-01T11:00:00Z"
NOW_EPOCH = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC).timestamp()


@dataclass
class Case:
    cr: ObjectBuilder
    child_kind: str
    child: ObjectBuilder | None = None
    workload: WorkloadBuilder | None = None
    pods: list[PodBuilder] = field(default_factory=list)


def _job(child: Obj | None, admitted: bool, pods: list[Obj]) -> st.Phase:
    return st.job_phase(child, admitted)


def _rayjob(child: Obj | None, admitted: bool, pods: list[Obj]) -> st.Phase:
    return st.rayjob_phase(child, admitted)


def _appwrapper(child: Obj | None, admitted: bool, pods: list[Obj]) -> st.Phase:
    return st.appwrapper_phase(child)


def _deployment(child: Obj | None, admitted: bool, pods: list[Obj]) -> st.Phase:
    gated = sum(1 for p in pods if (p.get("spec") or {}).get("schedulingGates"))
    return st.deployment_phase(child, len(pods), gated)


PHASE_OF: dict[str, Callable[[Obj | None, bool, list[Obj]], st.Phase]] = {
    "Job": _job,
    "RayJob": _rayjob,
    "AppWrapper": _appwrapper,
    "Deployment": _deployment,
}


def running_job(name: str = "train") -> KaiwoJobBuilder:
    return KaiwoJobBuilder(name, "ns").gpus(8, "amd").phase("RUNNING").started(EARLIER)


def admitted(child: ObjectBuilder) -> WorkloadBuilder:
    return WorkloadBuilder("wl", "ns").owned_by(child.obj()).admitted()


JOB = JobBuilder("train", "ns")
CASES: dict[str, Case] = {
    "job-not-created-yet": Case(KaiwoJobBuilder("train", "ns"), "Job"),
    "job-suspended-no-workload-yet": Case(KaiwoJobBuilder("train", "ns"), "Job", JobBuilder("train", "ns").suspend()),
    "job-suspended-kueue-explains-why": Case(
        KaiwoJobBuilder("train", "ns").phase("PENDING"),
        "Job",
        JobBuilder("train", "ns").suspend(),
        WorkloadBuilder("wl", "ns").pending("couldn't assign flavors to pod set main: insufficient amd.com/gpu"),
    ),
    "job-admitted-pods-not-ready": Case(
        KaiwoJobBuilder("train", "ns").phase("PENDING"), "Job", JobBuilder("train", "ns").active(1, 0), admitted(JOB)
    ),
    "job-starts-running": Case(
        KaiwoJobBuilder("train", "ns").phase("STARTING"), "Job", JobBuilder("train", "ns").active(2), admitted(JOB)
    ),
    "job-running-is-settled": Case(
        running_job()
        .observed_generation(1)
        .condition("Admitted", True, "Admitted", "admitted by Kueue", observedGeneration=1, lastTransitionTime=EARLIER),
        "Job",
        JobBuilder("train", "ns").active(2),
        admitted(JOB),
    ),
    "job-completes": Case(running_job(), "Job", JobBuilder("train", "ns").succeeded(), admitted(JOB)),
    "job-fails": Case(running_job(), "Job", JobBuilder("train", "ns").failed(), admitted(JOB)),
    "job-failure-target-counts-as-failed": Case(
        running_job(),
        "Job",
        JobBuilder("train", "ns").condition("FailureTarget", True, "PodFailurePolicy", "container exited 42"),
        admitted(JOB),
    ),
    "deployment-pods-wait-behind-the-admission-gate": Case(
        KaiwoServiceBuilder("serve", "ns"),
        "Deployment",
        DeploymentBuilder("serve", "ns").replicas(2),
        pods=[
            PodBuilder("serve-a", "ns").of_workload("serve").gated(),
            PodBuilder("serve-b", "ns").of_workload("serve"),
        ],
    ),
    "deployment-admitted-not-available": Case(
        KaiwoServiceBuilder("serve", "ns").phase("PENDING"),
        "Deployment",
        DeploymentBuilder("serve", "ns").replicas(2).available(1),
        pods=[
            PodBuilder("serve-a", "ns").of_workload("serve").running(),
            PodBuilder("serve-b", "ns").of_workload("serve"),
        ],
    ),
    "deployment-available": Case(
        KaiwoServiceBuilder("serve", "ns").phase("STARTING"),
        "Deployment",
        DeploymentBuilder("serve", "ns").available(1),
        pods=[PodBuilder("serve-a", "ns").of_workload("serve").running()],
    ),
    "deployment-progress-deadline-is-an-error": Case(
        KaiwoServiceBuilder("serve", "ns").phase("STARTING"),
        "Deployment",
        DeploymentBuilder("serve", "ns").progress_deadline_exceeded(),
        pods=[PodBuilder("serve-a", "ns").of_workload("serve").running(False)],
    ),
    "rayjob-waits-for-admission": Case(
        KaiwoJobBuilder("ray", "ns").ray(), "RayJob", RayJobBuilder("ray", "ns").deployment_status("Initializing")
    ),
    "rayjob-running": Case(
        KaiwoJobBuilder("ray", "ns").ray().phase("STARTING"),
        "RayJob",
        RayJobBuilder("ray", "ns").deployment_status("Running").job_status("RUNNING"),
        admitted(RayJobBuilder("ray", "ns")),
    ),
    "rayjob-failed-keeps-ray-reason": Case(
        running_job("ray").ray(),
        "RayJob",
        RayJobBuilder("ray", "ns").deployment_status(
            "Failed", reason="DeadlineExceeded", message="activeDeadlineSeconds reached"
        ),
        admitted(RayJobBuilder("ray", "ns")),
    ),
    "appwrapper-suspended": Case(
        KaiwoServiceBuilder("svc", "ns").ray(), "AppWrapper", AppWrapperBuilder("svc", "ns").phase("Suspended")
    ),
    "appwrapper-resuming-is-starting": Case(
        KaiwoServiceBuilder("svc", "ns").ray().phase("PENDING"),
        "AppWrapper",
        AppWrapperBuilder("svc", "ns").phase("Resuming"),
        admitted(AppWrapperBuilder("svc", "ns")),
    ),
    "appwrapper-running": Case(
        KaiwoServiceBuilder("svc", "ns").ray().phase("STARTING"),
        "AppWrapper",
        AppWrapperBuilder("svc", "ns").phase("Running"),
        admitted(AppWrapperBuilder("svc", "ns")),
    ),
}


def render(case: Case) -> dict[str, Any]:
    cr = case.cr.obj()
    child = case.child.obj() if case.child else None
    workload = case.workload.obj() if case.workload else None
    pods = [p.obj() for p in case.pods]
    is_admitted, message = st.admission(workload)
    phase = PHASE_OF[case.child_kind](child, is_admitted, pods)
    conditions = [st.condition("Admitted", is_admitted, "Admitted" if is_admitted else "Pending", message)]
    old = cr.get("status") or {}
    new = st.next_status(
        old, phase.status, conditions, now=NOW, now_epoch=NOW_EPOCH, generation=cr["metadata"]["generation"]
    )
    return {
        "input": {
            "kind": cr["kind"],
            "oldStatus": old,
            "child": {"kind": case.child_kind, "spec": (child or {}).get("spec"), "status": (child or {}).get("status")}
            if child
            else None,
            "kueueWorkloadConditions": (workload or {}).get("status", {}).get("conditions") if workload else None,
            "pods": [{"gated": bool(p["spec"].get("schedulingGates")), "phase": p["status"]["phase"]} for p in pods],
        },
        "output": {
            "phase": {"status": phase.status, "reason": phase.reason, "message": phase.message},
            "status": new,
            "writeNeeded": st.differs(old, new),
        },
    }


@pytest.mark.parametrize("name", sorted(CASES))
def test_status_golden(name: str) -> None:
    golden.check(FOLDER / f"{name}.yaml", render(CASES[name]))


def test_no_stale_golden_files() -> None:
    assert golden.stale_files(FOLDER, list(CASES)) == []


def test_settled_status_needs_no_write() -> None:
    """Rendering a case again from the status it produced changes nothing: the machine reaches a fixed point."""
    for name, case in CASES.items():
        first = render(case)["output"]["status"]
        again = Case(_with_status(case.cr, first), case.child_kind, case.child, case.workload, case.pods)
        second = render(again)["output"]
        assert second["writeNeeded"] is False, name
        assert second["status"]["conditions"] == first["conditions"], name


def _with_status(cr: ObjectBuilder, status: Obj) -> ObjectBuilder:
    obj = cr.obj()
    kind = KaiwoJobBuilder if obj["kind"] == "KaiwoJob" else KaiwoServiceBuilder
    b = kind(obj["metadata"]["name"], obj["metadata"]["namespace"])
    for key, value in obj["spec"].items():
        b.spec_field(key, value)
    b.phase(status["status"])
    for key in ("startTime", "completionTime", "conditions", "observedGeneration", "duration"):
        if key in status:
            b.status_field(key, status[key])
    return b
