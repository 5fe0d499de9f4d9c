"""The base of every API model, the wire format, and the Kubernetes-only schema keywords models declare.

Conventions every model in kaiwo.api follows (they are what makes the generated CRDs match the models):

- Python attributes are snake_case; the JSON (wire) names are camelCase aliases. Both are accepted on input.
- A field's Python default is the apiserver default: a field with a non-None default gets the same CRD
  ``default``. Fields Kubernetes leaves unset are ``None`` in Python. Nested objects the CRD defaults to
  ``{}`` use ``default_factory`` plus ``crd_default({})``.
- Unknown fields are ignored on input, as the apiserver prunes them.
- Kubernetes-specific schema keywords (CEL rules, list types, int-or-string, preserve-unknown-fields) are
  attached with ``k8s(...)`` as pydantic ``json_schema_extra``; kaiwo.api.schema turns the pydantic JSON
  schema into a structural CRD schema.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from kaiwo.runtime.objects import Obj


class KaiwoModel(BaseModel):
    """Base of all API models: camelCase JSON names, unknown fields ignored."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


def wire(model: BaseModel, *, include_defaults: bool = False) -> Obj:
    """The JSON-ready dict of ``model`` with JSON names, leaving out None values and, unless
    ``include_defaults``, fields that were never set (so a server-side apply claims only what was meant).
    Top-level objects always keep ``apiVersion`` and ``kind``."""
    data: Obj = model.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_unset=not include_defaults)
    for name in ("api_version", "kind"):
        if name in type(model).model_fields:
            data[type(model).model_fields[name].alias or name] = getattr(model, name)
    return data


@dataclass(frozen=True)
class Rule:
    """One CEL rule (``x-kubernetes-validations`` entry). ``message`` must name the field and say why.
    ``message_expression`` may add the offending value, but only from bounded strings: the apiserver prices
    ``string(int)`` as unbounded and refuses the CRD."""

    rule: str
    message: str
    message_expression: str | None = None
    field_path: str | None = None
    # FieldValueDuplicate is left out on purpose: the apiserver prints it without the message.
    reason: Literal["FieldValueInvalid", "FieldValueForbidden", "FieldValueRequired"] | None = None

    def to_json(self) -> Obj:
        out: Obj = {"rule": self.rule, "message": self.message}
        if self.message_expression:
            out["messageExpression"] = self.message_expression
        if self.field_path:
            out["fieldPath"] = self.field_path
        if self.reason:
            out["reason"] = self.reason
        return out


def k8s(
    *,
    rules: list[Rule] | None = None,
    list_type: Literal["atomic", "set", "map"] | None = None,
    list_map_keys: list[str] | None = None,
    map_type: Literal["atomic", "granular"] | None = None,
    int64: bool = False,
    int32: bool = False,
    default: Any = None,
) -> Obj:
    """Kubernetes schema keywords for a field or a model (``json_schema_extra``)."""
    out: Obj = {}
    if rules:
        out["x-kubernetes-validations"] = [r.to_json() for r in rules]
    if list_type:
        out["x-kubernetes-list-type"] = list_type
    if list_map_keys:
        out["x-kubernetes-list-map-keys"] = list_map_keys
    if map_type:
        out["x-kubernetes-map-type"] = map_type
    if int64:
        out["format"] = "int64"
    if int32:
        out["format"] = "int32"
    if default is not None:
        out["default"] = default
    return out


def crd_default(value: Any) -> Obj:
    """The CRD default of a field whose Python default comes from a ``default_factory``."""
    return {"default": value}


@dataclass(frozen=True)
class PrinterColumn:
    """A ``kubectl get`` column."""

    name: str
    type: Literal["string", "integer", "number", "boolean", "date"]
    json_path: str
    description: str = ""
    format: str = ""

    def to_json(self) -> Obj:
        out: Obj = {"name": self.name, "type": self.type, "jsonPath": self.json_path}
        if self.description:
            out["description"] = self.description
        if self.format:
            out["format"] = self.format
        return out


@dataclass(frozen=True)
class CrdInfo:
    """Everything about a kind the CRD needs besides the schema of its spec and status."""

    model: type[BaseModel]
    group: str
    version: str
    kind: str
    plural: str
    singular: str
    scope: Literal["Namespaced", "Cluster"]
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ("kaiwo",)
    status_subresource: bool = True
    printer_columns: tuple[PrinterColumn, ...] = ()
    rules: tuple[Rule, ...] = ()  # on the whole object (may read metadata.name)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"

    @property
    def name(self) -> str:
        return f"{self.plural}.{self.group}"

    @property
    def namespaced(self) -> bool:
        return self.scope == "Namespaced"
