"""KaiwoJob (`kaiwo.silogen.ai/v1alpha1`, namespaced): a batch workload, run as a batch Job or a RayJob.

The embedded `job` and `rayJob` are kept as unvalidated objects (`x-kubernetes-preserve-unknown-fields`):
they are validated by the apiserver when Kaiwo creates the Job or RayJob from them.
"""

from __future__ import annotations

from typing import Final, Literal

from pydantic import Field

from kaiwo.api.base import CrdInfo, KaiwoModel, PrinterColumn, crd_default
from kaiwo.api.common import WorkloadSpec, WorkloadStatusFields, workload_rules
from kaiwo.api.core import ObjectMeta
from kaiwo.api.groups import KAIWO_API, KAIWO_GROUP, VERSION, KaiwoApiVersion
from kaiwo.api.types import Embedded, Time

API_VERSION: Final = KAIWO_API
KIND: Final = "KaiwoJob"


class KaiwoJobSpec(WorkloadSpec):
    """What to run: the common workload fields plus the entrypoint and optional base Job or RayJob."""

    entrypoint: str | None = Field(
        default=None,
        description="The command to run, as a shell script (it may span lines and start with a `#!` line "
        "naming another interpreter). For a batch Job it becomes the first container's command; for a RayJob "
        "it is the Ray job's entrypoint (e.g. `python train.py`).",
    )
    job: Embedded | None = Field(
        default=None,
        description="A full batch/v1 Job to start from (its `spec` is used) when not using Ray. The common fields "
        "(image, resources, GPUs, env, storage, ...) are applied on top.",
    )
    ray_job: Embedded | None = Field(
        default=None,
        description="A full ray.io/v1 RayJob to start from; setting it means Ray. The common fields are "
        "applied on top, and every worker group gets the computed number of replicas.",
    )

    @property
    def uses_ray(self) -> bool:
        return self.ray or self.ray_job is not None


class KaiwoJobStatus(WorkloadStatusFields):
    """What Kaiwo reports about a KaiwoJob."""

    completion_time: Time | None = Field(
        default=None,
        description="When the job finished (COMPLETE, FAILED or TERMINATED).",
    )


class KaiwoJob(KaiwoModel):
    """A batch workload (training, fine-tuning, batch inference) that Kaiwo queues through Kueue and runs as a
    batch Job or, with `ray: true`, as a RayJob. It finishes as COMPLETE or FAILED."""

    api_version: KaiwoApiVersion = API_VERSION
    kind: Literal["KaiwoJob"] = KIND
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: KaiwoJobSpec = Field(
        default_factory=KaiwoJobSpec,
        description="What to run and with which resources.",
        json_schema_extra=crd_default({}),
    )
    status: KaiwoJobStatus | None = Field(default=None, description="Set by Kaiwo.")


CRD = CrdInfo(
    model=KaiwoJob,
    group=KAIWO_GROUP,
    version=VERSION,
    kind=KIND,
    plural="kaiwojobs",
    singular="kaiwojob",
    scope="Namespaced",
    short_names=("kj",),
    printer_columns=(
        PrinterColumn("Status", "string", ".status.status"),
        PrinterColumn("StartTime", "string", ".status.startTime"),
        PrinterColumn("CompletionTime", "string", ".status.completionTime"),
        PrinterColumn("Duration(s)", "integer", ".status.duration"),
    ),
    rules=workload_rules("rayJob", "job"),
)
