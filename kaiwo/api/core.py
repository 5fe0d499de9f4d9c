"""The pieces of core Kubernetes types that Kaiwo's APIs embed, modelled only as far as Kaiwo needs them.

Kubernetes is not re-modelled here. The rule is: the lightest schema that is still structural and rejects
what would otherwise fail later, when the child object is created:

- `ResourceRequirements`: `requests` and `limits` maps of quantities (resource claims are not
  supported: Kaiwo copies these defaults into containers, where claims would also need pod-level claims).
- `EnvVar`: `name` is required; `value` or one `valueFrom` source (the four core sources, typed).
- `LocalObjectReference`: `name` is required.
- `Taint` / `Toleration` / `LabelSelector`: typed with their enums, as Kueue's own CRDs do.
- `Condition`: `metav1.Condition` with the upstream limits, kept as a map keyed by `type`.
- `ObjectMeta`: what controllers read; the CRD schema of `metadata` is the apiserver's own.

The embedded workload specs (batch Job, RayJob, Deployment, RayService) are kaiwo.api.types.Embedded dicts.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import ConfigDict, Field

from kaiwo.api.base import KaiwoModel, Rule, k8s
from kaiwo.api.types import (
    CONDITION_REASON_PATTERN,
    QUALIFIED_NAME_PATTERN,
    DnsSubdomain,
    QualifiedName,
    Quantity,
    Time,
)


class OwnerReference(KaiwoModel):
    """An owner of an object."""

    api_version: str
    kind: str
    name: str
    uid: str
    controller: bool | None = None
    block_owner_deletion: bool | None = None


class ObjectMeta(KaiwoModel):
    """The standard object metadata (only the fields controllers use; the rest is ignored)."""

    name: str | None = None
    generate_name: str | None = None
    namespace: str | None = None
    uid: str | None = None
    resource_version: str | None = None
    generation: int | None = None
    creation_timestamp: Time | None = None
    deletion_timestamp: Time | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    finalizers: list[str] | None = None
    owner_references: list[OwnerReference] | None = None


class ResourceRequirements(KaiwoModel):
    """Requests and limits, e.g. `{"requests": {"cpu": "4", "memory": "32Gi"}}`."""

    requests: dict[str, Quantity] | None = Field(
        default=None, description="Minimum resources per container, by resource name (cpu, memory, ephemeral-storage)."
    )
    limits: dict[str, Quantity] | None = Field(
        default=None, description="Maximum resources per container, by resource name."
    )


class LocalObjectReference(KaiwoModel):
    """A reference to an object in the same namespace."""

    name: DnsSubdomain = Field(description="Name of the referenced object (for image pull secrets: the Secret).")


class KeySelector(KaiwoModel):
    """A key of a ConfigMap or Secret in the workload's namespace."""

    name: DnsSubdomain = Field(description="Name of the ConfigMap or Secret.")
    key: str = Field(min_length=1, description="The key to read.")
    optional: bool | None = Field(default=None, description="Whether the object or key may be missing.")


class ObjectFieldSelector(KaiwoModel):
    """A field of the pod, e.g. `metadata.name` or `status.podIP`."""

    api_version: str | None = Field(default=None, description='Version of the schema of fieldPath (default "v1").')
    field_path: str = Field(min_length=1, description="Path of the field to select.")


class ResourceFieldSelector(KaiwoModel):
    """A resource request or limit of a container, e.g. `limits.memory`."""

    container_name: str | None = Field(default=None, description="Container name (default: the container itself).")
    resource: str = Field(min_length=1, description="The resource to select, e.g. requests.cpu.")
    divisor: Quantity | None = Field(default=None, description='Unit of the exposed value (default "1").')


class EnvVarSource(KaiwoModel):
    """Where an environment variable's value comes from (exactly one source)."""

    model_config = ConfigDict(
        json_schema_extra=k8s(
            rules=[
                Rule(
                    rule="(has(self.configMapKeyRef) ? 1 : 0) + (has(self.secretKeyRef) ? 1 : 0) + "
                    "(has(self.fieldRef) ? 1 : 0) + (has(self.resourceFieldRef) ? 1 : 0) == 1",
                    message=(
                        "valueFrom: exactly one of configMapKeyRef, secretKeyRef, fieldRef and resourceFieldRef "
                        "must be set"
                    ),
                )
            ]
        )
    )

    config_map_key_ref: KeySelector | None = Field(default=None, description="A key of a ConfigMap.")
    secret_key_ref: KeySelector | None = Field(default=None, description="A key of a Secret.")
    field_ref: ObjectFieldSelector | None = Field(default=None, description="A field of the pod.")
    resource_field_ref: ResourceFieldSelector | None = Field(default=None, description="A resource of a container.")


class EnvVar(KaiwoModel):
    """An environment variable: a literal `value` or a `valueFrom` source."""

    model_config = ConfigDict(
        json_schema_extra=k8s(
            rules=[
                Rule(
                    rule="!has(self.valueFrom) || !has(self.value) || self.value == ''",
                    message="value and valueFrom are mutually exclusive",
                )
            ]
        )
    )

    name: str = Field(min_length=1, description="Name of the variable.")
    value: str | None = Field(default=None, description="Literal value.")
    value_from: EnvVarSource | None = Field(
        default=None,
        description="Take the value from a Secret, ConfigMap or field.",
    )


class TaintEffect(StrEnum):
    """What a taint does to pods that do not tolerate it."""

    NO_SCHEDULE = "NoSchedule"
    PREFER_NO_SCHEDULE = "PreferNoSchedule"
    NO_EXECUTE = "NoExecute"


class Taint(KaiwoModel):
    """A node taint."""

    key: QualifiedName = Field(description="Taint key.")
    value: str | None = Field(default=None, description="Taint value.")
    effect: TaintEffect = Field(description="NoSchedule, PreferNoSchedule or NoExecute.")
    time_added: Time | None = Field(default=None, description="When a NoExecute taint was added.")


class TolerationOperator(StrEnum):
    """How a toleration matches a taint's value."""

    EXISTS = "Exists"
    EQUAL = "Equal"


class TolerationEffect(StrEnum):
    """The taint effect a toleration matches; empty matches every effect."""

    ALL = ""
    NO_SCHEDULE = "NoSchedule"
    PREFER_NO_SCHEDULE = "PreferNoSchedule"
    NO_EXECUTE = "NoExecute"


class Toleration(KaiwoModel):
    """A pod toleration."""

    key: str | None = Field(
        default=None,
        pattern=r"^$|" + QUALIFIED_NAME_PATTERN,
        description="Taint key to match; empty with operator Exists matches every taint.",
    )
    operator: TolerationOperator | None = Field(default=None, description="Exists or Equal (the default).")
    value: str | None = Field(default=None, description="Taint value to match (empty for Exists).")
    effect: TolerationEffect | None = Field(default=None, description="Taint effect to match; empty matches all.")
    toleration_seconds: int | None = Field(
        default=None,
        description="For NoExecute: how long the pod stays bound after the taint appears.",
        json_schema_extra=k8s(int64=True),
    )


class SelectorOperator(StrEnum):
    """Label selector operators."""

    IN = "In"
    NOT_IN = "NotIn"
    EXISTS = "Exists"
    DOES_NOT_EXIST = "DoesNotExist"


class LabelSelectorRequirement(KaiwoModel):
    """One label selector requirement."""

    key: QualifiedName = Field(description="The label key.")
    operator: SelectorOperator = Field(description="In, NotIn, Exists or DoesNotExist.")
    values: list[str] | None = Field(
        default=None,
        description="Values for In and NotIn.",
        json_schema_extra=k8s(list_type="atomic"),
    )


class LabelSelector(KaiwoModel):
    """A label selector; `{}` selects everything."""

    model_config = ConfigDict(json_schema_extra=k8s(map_type="atomic"))

    match_labels: dict[str, str] | None = Field(default=None, description="Labels that must all match exactly.")
    match_expressions: list[LabelSelectorRequirement] | None = Field(
        default=None, description="Requirements that must all hold.", json_schema_extra=k8s(list_type="atomic")
    )


class ConditionStatus(StrEnum):
    """The status of a condition."""

    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(KaiwoModel):
    """A condition (`metav1.Condition`): one observed aspect of the object's state."""

    type: str = Field(
        max_length=316,
        pattern=QUALIFIED_NAME_PATTERN,
        description="Type of the condition, e.g. Schedulable or Admitted.",
    )
    status: ConditionStatus = Field(description="True, False or Unknown.")
    observed_generation: int | None = Field(
        default=None,
        ge=0,
        description="The metadata.generation the condition was computed from.",
        json_schema_extra=k8s(int64=True),
    )
    last_transition_time: Time = Field(description="When the status last changed.")
    reason: str = Field(
        min_length=1,
        max_length=1024,
        pattern=CONDITION_REASON_PATTERN,
        description="Machine-readable reason in CamelCase.",
    )
    message: str = Field(max_length=32768, description="Human-readable details.")


def conditions_field(description: str) -> Any:
    """The `conditions` field of a status (a list merged by condition type)."""
    return Field(default=None, description=description, json_schema_extra=k8s(list_type="map", list_map_keys=["type"]))
