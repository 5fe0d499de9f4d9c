"""Phase derivation and status bookkeeping."""

from __future__ import annotations

from kaiwo.api.common import WorkloadStatus
from kaiwo.translate import status as st


def job(**status: object) -> dict[str, object]:
    return {"spec": {"suspend": status.pop("suspend", False)}, "status": status}


def test_job_phases() -> None:
    # just applied, not yet in the cache: created suspended, so it waits for Kueue like any unadmitted child
    assert st.job_phase(None, False) == st.Phase(WorkloadStatus.PENDING, "ChildMissing", "the Job is being created")
    assert st.deployment_phase(None, 0, 0).status == st.rayjob_phase(None, False).status == "PENDING"
    assert st.appwrapper_phase(None).status == "PENDING"
    assert st.job_phase(job(suspend=True), False).status == "PENDING"
    assert st.job_phase(job(active=1, ready=0), True).status == "STARTING"
    assert st.job_phase(job(active=1, ready=1), True).status == "RUNNING"
    assert st.job_phase(job(conditions=[{"type": "Complete", "status": "True"}]), True).status == "COMPLETE"
    failed = st.job_phase(
        job(
            conditions=[
                {
                    "type": "Failed",
                    "status": "True",
                    "reason": "BackoffLimitExceeded",
                    "message": "Job has reached the specified backoff limit",
                }
            ]
        ),
        True,
    )
    assert (failed.status, failed.reason) == ("FAILED", "BackoffLimitExceeded")


def test_deployment_progress_deadline_is_an_error_and_recovers() -> None:
    stuck = {
        "spec": {"replicas": 1},
        "status": {
            "conditions": [
                {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "too slow"}
            ]
        },
    }
    assert st.deployment_phase(stuck, 1, 0) == st.Phase(WorkloadStatus.ERROR, "ProgressDeadlineExceeded", "too slow")
    ok = {"spec": {"replicas": 2}, "status": {"availableReplicas": 2}}
    assert st.deployment_phase(ok, 2, 0).status == "RUNNING"


def test_deployment_is_pending_until_kueue_admits_its_pods() -> None:
    fresh = {"spec": {"replicas": 2}, "status": {}}
    assert st.deployment_phase(fresh, 0, 0).status == "PENDING"  # no pod yet: nothing admitted
    assert st.deployment_phase(fresh, 2, 2).status == "PENDING"
    assert st.deployment_phase(fresh, 2, 1).status == "PENDING"  # one pod still queued
    assert st.deployment_phase(fresh, 2, 0).status == "STARTING"  # all admitted, not yet available
    queued_long = {
        "spec": {"replicas": 1},
        "status": {
            "conditions": [
                {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "too slow"}
            ]
        },
    }
    assert st.deployment_phase(queued_long, 1, 1).status == "PENDING"  # waiting for quota is not an error
    rolling = {"spec": {"replicas": 1}, "status": {"availableReplicas": 1}}
    assert st.deployment_phase(rolling, 2, 1).status == "RUNNING"  # the new pod queues, the old one serves


def test_admission_from_kueue_workload() -> None:
    assert st.admission(None) == (False, st.WAITING_FOR_ADMISSION)
    pending = {
        "status": {
            "conditions": [
                {"type": "QuotaReserved", "status": "False", "message": "couldn't assign flavors to pod set main"}
            ]
        }
    }
    assert st.admission(pending) == (False, "couldn't assign flavors to pod set main")
    assert st.admission({"status": {"conditions": [{"type": "Admitted", "status": "True"}]}})[0]


def test_status_times_duration_and_minimal_writes() -> None:
    cond = [st.condition("Admitted", True, "Admitted", "ok")]
    running = st.next_status({}, "RUNNING", cond, now="2026-01-01T00:00:00Z", now_epoch=1767225600, generation=1)
    assert running["startTime"] == "2026-01-01T00:00:00Z" and running["duration"] == 0
    later = st.next_status(running, "RUNNING", cond, now="2026-01-01T00:01:40Z", now_epoch=1767225700, generation=1)
    assert later["duration"] == 100
    assert not st.differs(running, later)  # only the duration moved: no write
    assert later["conditions"][0]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    done = st.next_status(later, "COMPLETE", cond, now="2026-01-01T00:02:00Z", now_epoch=1767225720, generation=1)
    assert st.differs(later, done)
    assert done["completionTime"] == "2026-01-01T00:02:00Z" and done["duration"] == 120
    assert done["observedGeneration"] == 1
