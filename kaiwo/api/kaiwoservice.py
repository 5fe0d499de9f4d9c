"""KaiwoService (`kaiwo.silogen.ai/v1alpha1`, namespaced): a long-running service, run as a Deployment or a
RayService (wrapped in an AppWrapper for Kueue).

The embedded `deployment` and `rayService` are kept as unvalidated objects
(`x-kubernetes-preserve-unknown-fields`): they are validated by the apiserver when Kaiwo creates the child.
"""

from __future__ import annotations

from typing import Final, Literal

from pydantic import Field

from kaiwo.api.base import CrdInfo, KaiwoModel, PrinterColumn, crd_default
from kaiwo.api.common import WorkloadSpec, WorkloadStatusFields, workload_rules
from kaiwo.api.core import ObjectMeta
from kaiwo.api.groups import KAIWO_API, KAIWO_GROUP, VERSION, KaiwoApiVersion
from kaiwo.api.types import Embedded

API_VERSION: Final = KAIWO_API
KIND: Final = "KaiwoService"


class KaiwoServiceSpec(WorkloadSpec):
    """What to serve: the common workload fields plus the entrypoint or Ray Serve config and optional base
    Deployment or RayService."""

    entrypoint: str | None = Field(
        default=None,
        description="The command of the Deployment's first container, as a shell script. Not used with Ray (use "
        "`serveConfigV2`).",
    )
    serve_config_v2: str | None = Field(
        default=None,
        description="Ray Serve applications to deploy, as a YAML string (RayService `serveConfigV2`); "
        "overrides the one in `rayService`.",
    )
    deployment: Embedded | None = Field(
        default=None,
        description="A full apps/v1 Deployment to start from when not using Ray. The common fields are applied on top.",
    )
    ray_service: Embedded | None = Field(
        default=None,
        description="A full ray.io/v1 RayService to start from; setting it means Ray. The common fields are applied on "
        "top.",
    )

    @property
    def uses_ray(self) -> bool:
        return self.ray or self.ray_service is not None


class KaiwoServiceStatus(WorkloadStatusFields):
    """What Kaiwo reports about a KaiwoService."""


class KaiwoService(KaiwoModel):
    """A long-running service (e.g. online inference) that Kaiwo queues through Kueue and runs as a Deployment
    or, with `ray: true`, as a Ray Serve RayService. It stays RUNNING until deleted or terminated."""

    api_version: KaiwoApiVersion = API_VERSION
    kind: Literal["KaiwoService"] = KIND
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: KaiwoServiceSpec = Field(
        default_factory=KaiwoServiceSpec,
        description="What to serve and with which resources.",
        json_schema_extra=crd_default({}),
    )
    status: KaiwoServiceStatus | None = Field(default=None, description="Set by Kaiwo.")


CRD = CrdInfo(
    model=KaiwoService,
    group=KAIWO_GROUP,
    version=VERSION,
    kind=KIND,
    plural="kaiwoservices",
    singular="kaiwoservice",
    scope="Namespaced",
    short_names=("ks",),
    printer_columns=(
        PrinterColumn("Status", "string", ".status.status"),
        PrinterColumn("StartTime", "string", ".status.startTime"),
        PrinterColumn("Duration(s)", "integer", ".status.duration"),
    ),
    rules=workload_rules("rayService", "service"),
)
