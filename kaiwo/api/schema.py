"""Pydantic model -> structural OpenAPI v3 schema, as a CustomResourceDefinition needs it.

The input is pydantic's own JSON schema of the model (``by_alias``, validation mode), so names, types,
enums, defaults and constraints come from the models and nowhere else. The conversion:

- inlines every ``$ref`` (a field's own keywords, such as its description, win over the referenced model's);
- turns ``Optional[X]`` (``anyOf: [X, null]``) into ``X``; drops ``title`` and ``default: null``;
- turns ``const`` into a one-value ``enum``;
- keeps Kubernetes keywords (``x-kubernetes-*``) the models attach, and the int-or-string ``anyOf``;
- rejects anything that would not be structural: free-form maps (``additionalProperties: true``; embedded
  objects must say ``x-kubernetes-preserve-unknown-fields``), unions, nodes without a type, unknown keywords.

The result is deterministic: ``required`` lists are sorted and dict order does not matter (the YAML writer
sorts keys).
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel

from kaiwo.runtime.objects import Obj

ALLOWED_KEYWORDS = frozenset(
    {
        "type",
        "description",
        "properties",
        "items",
        "required",
        "additionalProperties",
        "enum",
        "default",
        "pattern",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "minLength",
        "maxLength",
        "minItems",
        "maxItems",
        "minProperties",
        "maxProperties",
        "format",
        "nullable",
        "anyOf",
        "x-kubernetes-validations",
        "x-kubernetes-list-type",
        "x-kubernetes-list-map-keys",
        "x-kubernetes-map-type",
        "x-kubernetes-int-or-string",
        "x-kubernetes-preserve-unknown-fields",
        "x-kubernetes-embedded-resource",
    }
)
INT_OR_STRING = [{"type": "integer"}, {"type": "string"}]


class SchemaError(ValueError):
    """The model cannot be expressed as a structural schema; the message names the path."""


def openapi_schema(model: type[BaseModel]) -> Obj:
    """The structural OpenAPI schema of ``model``."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs: Obj = raw.pop("$defs", {})
    return _convert(raw, defs, model.__name__)


def _resolve(node: Obj, defs: Obj, path: str) -> Obj:
    """``node`` with its ``$ref`` / single ``allOf`` / nullable ``anyOf`` merged away (siblings win)."""
    node = dict(node)
    if "$ref" in node:
        target = defs[node.pop("$ref").rsplit("/", 1)[-1]]
        return {**_resolve(target, defs, path), **node}
    if "allOf" in node and len(node["allOf"]) == 1:
        inner = node.pop("allOf")[0]
        return {**_resolve(inner, defs, path), **node}
    if "anyOf" in node and not node.get("x-kubernetes-int-or-string"):
        options = [o for o in node["anyOf"] if o != {"type": "null"}]
        if len(options) != 1:
            raise SchemaError(f"{path}: unions are not structural (only Optional[X] and int-or-string are)")
        del node["anyOf"]
        if node.get("default", "") is None:
            del node["default"]
        return {**_resolve(options[0], defs, path), **node}
    return node


def _convert(node: Obj, defs: Obj, path: str) -> Obj:
    node = _resolve(node, defs, path)
    out: Obj = {}
    for key, value in node.items():
        if key in ("title", "$defs", "examples"):
            continue
        if key == "default" and value is None:
            continue
        if key == "const":
            out["enum"] = [value]
        elif key == "properties":
            out["properties"] = {name: _convert(sub, defs, f"{path}.{name}") for name, sub in value.items()}
        elif key == "items":
            out["items"] = _convert(value, defs, f"{path}[]")
        elif key == "additionalProperties":
            if value is True or value == {}:
                raise SchemaError(
                    f"{path}: free-form maps are not structural; use a typed map or "
                    "kaiwo.api.types.Embedded for an embedded Kubernetes object"
                )
            if value is not False:
                out["additionalProperties"] = _convert(value, defs, f"{path}{{}}")
        elif key == "description":
            out["description"] = _unwrap(value)
        elif key == "required":
            out["required"] = sorted(value)
        elif key == "anyOf":
            if value != INT_OR_STRING:
                raise SchemaError(f"{path}: anyOf is only allowed for int-or-string")
            out["anyOf"] = value
        elif key not in ALLOWED_KEYWORDS:
            raise SchemaError(f"{path}: keyword {key!r} has no place in a CRD schema")
        else:
            out[key] = value
    if (
        out.get("type") == "object"
        and not out.get("properties")
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        raise SchemaError(f"{path}: an object without fields would drop everything it is given")
    if (
        "type" not in out
        and not out.get("x-kubernetes-int-or-string")
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        raise SchemaError(f"{path}: every node needs a type")
    return out


def _unwrap(text: str) -> str:
    """Docstring line breaks joined into one line per paragraph."""
    paragraphs = [" ".join(line.strip() for line in p.splitlines()) for p in text.strip().split("\n\n")]
    return "\n\n".join(paragraphs)


def walk(schema: Obj, path: str = "") -> list[tuple[str, Obj]]:
    """Every node of a converted schema with its field path (``spec.env[].name``), depth first, sorted."""
    nodes = [(path, schema)]
    for name in sorted(schema.get("properties", {})):
        child = f"{path}.{name}" if path else name
        nodes += walk(schema["properties"][name], child)
    if "items" in schema:
        nodes += walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        nodes += walk(schema["additionalProperties"], f"{path}{{}}")
    return nodes


def apply_defaults(schema: Obj, value: Any) -> Any:
    """``value`` with the schema's defaults filled in, as the apiserver stores it (defaults of absent fields,
    recursively, including inside defaulted values)."""
    if isinstance(value, dict) and schema.get("type") == "object":
        props: Obj = schema.get("properties", {})
        out = dict(value)
        for name, sub in props.items():
            if name not in out and "default" in sub:
                out[name] = copy.deepcopy(sub["default"])
            if name in out:
                out[name] = apply_defaults(sub, out[name])
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for name in out:
                if name not in props:
                    out[name] = apply_defaults(extra, out[name])
        return out
    if isinstance(value, list) and "items" in schema:
        return [apply_defaults(schema["items"], item) for item in value]
    return value
