"""Workload status from observations: the child's state and Kueue's admission -> phase and conditions.

Pure: the caller passes the objects it read and ``now`` (an RFC 3339 string and epoch seconds).
Phases (docs/design/upstream.md#status-machine): "" (new) -> [DOWNLOADING] -> PENDING -> STARTING -> RUNNING ->
COMPLETE | FAILED, ERROR (recoverable), TERMINATING -> TERMINATED.
"""

from __future__ import annotations

from dataclasses import dataclass

from kaiwo.api.common import TERMINAL as TERMINAL  # re-exported: the workload controller's st.TERMINAL
from kaiwo.api.common import WorkloadCondition, WorkloadStatus
from kaiwo.runtime.objects import Obj, has_condition, merge_condition
from kaiwo.runtime.objects import condition as condition_of
from kaiwo.runtime.timestamps import epoch

KUEUE_ADMISSION_GATE = "kueue.x-k8s.io/admission"  # scheduling gate on pods Kueue has not admitted yet
# Until Kueue says more (a QuotaReserved message such as "couldn't assign flavors"), one message for every step
# before admission, so the child's and the Workload's creation cost no status writes of their own
# (docs/design/decisions.md D29).
WAITING_FOR_ADMISSION = "waiting for Kueue admission"


@dataclass(frozen=True)
class Phase:
    status: WorkloadStatus
    reason: str = ""
    message: str = ""


def admission(workload: Obj | None) -> tuple[bool, str]:
    """(admitted, message) from a Kueue Workload; no Workload yet means not admitted."""
    if workload is None:
        return False, WAITING_FOR_ADMISSION
    if has_condition(workload, "Admitted"):
        return True, "admitted by Kueue"
    pending = condition_of(workload, "QuotaReserved")
    return False, (pending or {}).get("message") or WAITING_FOR_ADMISSION


def job_phase(job: Obj | None, admitted: bool) -> Phase:
    if job is None:
        return Phase(WorkloadStatus.PENDING, "ChildMissing", "the Job is being created")
    if has_condition(job, "Complete") or has_condition(job, "SuccessCriteriaMet"):
        return Phase(WorkloadStatus.COMPLETE, "JobComplete", "the Job completed")
    if has_condition(job, "Failed") or has_condition(job, "FailureTarget"):
        c = condition_of(job, "Failed") or condition_of(job, "FailureTarget") or {}
        return Phase(WorkloadStatus.FAILED, c.get("reason") or "JobFailed", c.get("message") or "the Job failed")
    spec, st = job.get("spec") or {}, job.get("status") or {}
    if spec.get("suspend") and not admitted:
        return Phase(WorkloadStatus.PENDING)
    if (st.get("ready") or 0) > 0:
        return Phase(WorkloadStatus.RUNNING)
    return Phase(WorkloadStatus.STARTING)


def deployment_phase(dep: Obj | None, pods: int, gated_pods: int) -> Phase:
    """Kueue's pod integration admits each pod of a Deployment on its own by removing ``KUEUE_ADMISSION_GATE``.

    Short of the wanted available replicas, a Deployment is PENDING while pods wait behind the gate or none
    exist yet (nothing has been admitted), so time spent queueing never reads as an ERROR (docs/design/decisions.md
    D30); a progress deadline exceeded after admission is an ERROR, which recovers when a later rollout progresses.
    """
    if dep is None:
        return Phase(WorkloadStatus.PENDING, "ChildMissing", "the Deployment is being created")
    want = (dep.get("spec") or {}).get("replicas", 1)
    available = (dep.get("status") or {}).get("availableReplicas") or 0
    if available < want and gated_pods:
        return Phase(WorkloadStatus.PENDING)
    progressing = condition_of(dep, "Progressing")
    if progressing and progressing.get("status") == "False" and progressing.get("reason") == "ProgressDeadlineExceeded":
        return Phase(WorkloadStatus.ERROR, "ProgressDeadlineExceeded", progressing.get("message") or "")
    if want and available >= want:
        return Phase(WorkloadStatus.RUNNING)
    if pods == 0:
        return Phase(WorkloadStatus.PENDING)
    return Phase(WorkloadStatus.STARTING)


def rayjob_phase(rayjob: Obj | None, admitted: bool) -> Phase:
    """KubeRay reports two levels: ``jobDeploymentStatus`` (the RayJob's lifecycle: cluster, submission, end) and
    ``jobStatus`` (the Ray job inside, as the Ray dashboard reports it). The first decides the terminal phases
    and whether the cluster is up; the second whether the job itself runs yet.

    - ``ValidationFailed`` (KubeRay rejected the spec) and ``Failed`` (submission failed, deadline exceeded, the
      application failed) -> FAILED with KubeRay's reason and message;
    - ``Complete``: by ``jobStatus`` SUCCEEDED -> COMPLETE, FAILED -> FAILED, STOPPED (``ray job stop``) ->
      TERMINATED (ended early on request, as a Kaiwo termination is);
    - ``Running`` with ``jobStatus`` RUNNING -> RUNNING; with the job still PENDING in Ray -> STARTING;
    - ``Suspended``/``Suspending`` (Kueue took the admission back) and anything before admission -> PENDING;
    - otherwise (``Initializing``, ``Waiting`` for an interactive submission, ``Retrying``) -> STARTING.
    """
    if rayjob is None:
        return Phase(WorkloadStatus.PENDING, "ChildMissing", "the RayJob is being created")
    st = rayjob.get("status") or {}
    deployment = st.get("jobDeploymentStatus") or ""
    job = st.get("jobStatus") or ""
    message = st.get("message") or ""
    if deployment == "ValidationFailed":
        return Phase(WorkloadStatus.FAILED, "ValidationFailed", message or "KubeRay rejected the RayJob")
    if deployment == "Failed" or (deployment == "Complete" and job == "FAILED"):
        return Phase(WorkloadStatus.FAILED, st.get("reason") or "RayJobFailed", message or "the Ray job failed")
    if deployment == "Complete" and job == "STOPPED":
        return Phase(WorkloadStatus.TERMINATED, "RayJobStopped", message or "the Ray job was stopped")
    if deployment == "Complete":
        return Phase(WorkloadStatus.COMPLETE, "RayJobComplete", message or "the RayJob completed")
    if deployment in ("Suspended", "Suspending") or not admitted:
        return Phase(WorkloadStatus.PENDING)
    if deployment == "Running" and job == "RUNNING":
        return Phase(WorkloadStatus.RUNNING)
    return Phase(WorkloadStatus.STARTING)


def appwrapper_phase(aw: Obj | None) -> Phase:
    if aw is None:
        return Phase(WorkloadStatus.PENDING, "ChildMissing", "the AppWrapper is being created")
    phase = (aw.get("status") or {}).get("phase") or ""
    return {
        "Running": Phase(WorkloadStatus.RUNNING),
        "Succeeded": Phase(WorkloadStatus.COMPLETE),
        "Failed": Phase(WorkloadStatus.FAILED, "AppWrapperFailed", "the AppWrapper failed"),
        "Suspended": Phase(WorkloadStatus.PENDING),
        "": Phase(WorkloadStatus.PENDING),
    }.get(phase, Phase(WorkloadStatus.STARTING))


# Ray Serve application and deployment states (KubeRay copies them from the Serve controller).
SERVE_FAILED = frozenset({"DEPLOY_FAILED"})  # Serve gave up on this config: only a new config deploys again
SERVE_UNHEALTHY = frozenset({"UNHEALTHY"})  # failing health checks: Serve keeps restarting replicas


def _serve_problem(service_status: Obj, states: frozenset[str]) -> str | None:
    """The first application (or its deployment) in one of ``states``, described for the status message."""
    apps = service_status.get("applicationStatuses") or {}
    for app_name in sorted(apps):
        app = apps[app_name] or {}
        if app.get("status") in states:
            return f"Serve application {app_name!r} is {app['status']}: {app.get('message') or 'no message'}"
        deployments = app.get("serveDeploymentStatuses") or {}
        for dep_name in sorted(deployments):
            dep = deployments[dep_name] or {}
            if dep.get("status") in states:
                return (
                    f"Serve deployment {dep_name!r} of application {app_name!r} is {dep['status']}: "
                    f"{dep.get('message') or 'no message'}"
                )
    return None


def rayservice_phase(aw: Obj | None, rayservice: Obj | None) -> Phase:
    """A Ray KaiwoService: the AppWrapper (what Kueue admits) first, then the RayService it created.

    The AppWrapper's Running only means its components exist. From then on the RayService decides:
    - a Serve application or deployment ``DEPLOY_FAILED``, or ``Ready=False`` with reason
      ``InitializingTimeout`` (KubeRay gave up waiting) -> FAILED;
    - an application or deployment ``UNHEALTHY`` -> ERROR (recoverable: Serve restarts replicas, and the phase
      returns to RUNNING when they pass their health checks again);
    - ``Ready=True`` (KubeRay: the Serve endpoints answer) -> RUNNING; otherwise STARTING with KubeRay's reason.
    The applications are read from the cluster that serves (``activeServiceStatus``) or, before the first one
    is up, from the one being prepared (``pendingServiceStatus``). While an active cluster serves, a failing
    new config (in the pending cluster) is an ERROR: the old config still answers, the new one will not.
    """
    outer = appwrapper_phase(aw)
    if outer.status != WorkloadStatus.RUNNING:
        return outer
    if rayservice is None:
        return Phase(
            WorkloadStatus.STARTING, "RayServiceMissing", "the AppWrapper controller is creating the RayService"
        )
    status = rayservice.get("status") or {}
    active = status.get("activeServiceStatus") or {}
    pending = status.get("pendingServiceStatus") or {}
    serving = active if active.get("rayClusterName") else pending
    failed = _serve_problem(serving, SERVE_FAILED)
    if failed:
        return Phase(WorkloadStatus.FAILED, "RayServeDeployFailed", failed)
    ready = condition_of(rayservice, "Ready") or {}
    if ready.get("status") == "False" and ready.get("reason") == "InitializingTimeout":
        return Phase(
            WorkloadStatus.FAILED, "InitializingTimeout", ready.get("message") or "the RayService did not become ready"
        )
    unhealthy = _serve_problem(serving, SERVE_UNHEALTHY)
    if unhealthy:
        return Phase(WorkloadStatus.ERROR, "RayServeUnhealthy", unhealthy)
    if serving is active:
        upgrade = _serve_problem(pending, SERVE_FAILED | SERVE_UNHEALTHY)
        if upgrade:
            return Phase(WorkloadStatus.ERROR, "RayServeUpgradeFailing", f"the new config does not deploy; {upgrade}")
    if ready.get("status") == "True":
        return Phase(WorkloadStatus.RUNNING)
    return Phase(WorkloadStatus.STARTING, ready.get("reason") or "RayServiceNotReady", ready.get("message") or "")


def condition(ctype: str, ok: bool, reason: str, message: str) -> Obj:
    """A condition as written to the API (its type a plain string, a ``WorkloadCondition`` member's value)."""
    return {"type": str(ctype), "status": "True" if ok else "False", "reason": reason, "message": message}


def serve_condition(phase: Phase) -> Obj:
    """``ServeReady`` on a Ray KaiwoService: why it is (not yet) serving, in KubeRay's and Ray Serve's words."""
    if phase.status == WorkloadStatus.RUNNING:
        return condition(WorkloadCondition.SERVE_READY, True, "Ready", "the RayService's Serve applications are ready")
    return condition(
        WorkloadCondition.SERVE_READY, False, phase.reason or "NotReady", phase.message or "waiting for the RayService"
    )


def rayjob_condition(phase: Phase) -> Obj | None:
    """``RayJobFinished`` once KubeRay reports an end: the reason and message of the Ray job's outcome."""
    if phase.status not in TERMINAL:
        return None
    return condition(WorkloadCondition.RAY_JOB_FINISHED, True, phase.reason, phase.message)


def next_status(old: Obj, phase: str, conditions: list[Obj], *, now: str, now_epoch: float, generation: int) -> Obj:
    """The new status: merged conditions (transition times kept when unchanged), start/completion times,
    duration and observedGeneration."""
    merged: list[Obj] = list(old.get("conditions") or [])
    for c in conditions:
        merged = merge_condition(merged, {**c, "observedGeneration": generation}, now)
    status: Obj = {"status": str(phase), "conditions": merged, "observedGeneration": generation}
    start = old.get("startTime")
    if phase == WorkloadStatus.RUNNING and not start:
        start = now
    if start:
        status["startTime"] = start
        status["duration"] = max(0, int(now_epoch - epoch(start)))
    completion = old.get("completionTime")
    if phase in TERMINAL and not completion:
        completion = now
    if completion:
        status["completionTime"] = completion
        if start:
            status["duration"] = max(0, int(epoch(completion) - epoch(start)))
    return status


def differs(old: Obj, new: Obj) -> bool:
    """Whether a write is needed: anything but the running duration and transition timestamps changed."""

    def view(s: Obj) -> Obj:
        conds = [{k: v for k, v in c.items() if k not in ("lastTransitionTime",)} for c in s.get("conditions") or []]
        return {**{k: v for k, v in s.items() if k not in ("duration", "conditions")}, "conditions": conds}

    return view(old) != view(new)
