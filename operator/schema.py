"""A small typed schema builder: dataclasses -> OpenAPI v3 structural schemas, and back and forth
between a resource's JSON (camelCase) and the dataclasses (snake_case).

Job: one source for the CRDs (``crd.py`` turns a model into its schema) and for the handlers (which
``load`` a resource's spec into the model and ``dump`` a status model into JSON). Validation lives on
the fields: ``field(minimum=1, enum=..., pattern=..., rules=(Rule(...),))``. Types understood:
``int``, ``str``, ``bool``, ``float``, ``Literal[...]`` (an enum of strings), ``list[T]``,
``dict[str, T]``, nested dataclasses, ``T | None`` (optional), ``int | str`` (int-or-string,
Kubernetes quantities), and ``JsonValue`` (any JSON, kept by the API server as given).

Neighbours: ``models`` (the Cluster and Topic models), ``crd`` (the CRDs), ``crdgen`` (the files).
pydantic is not a dependency: this is the subset the CRDs need, and it stays under test.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

JsonValue = typing.NewType("JsonValue", object)
"""Any JSON value; the schema keeps it as given (``x-kubernetes-preserve-unknown-fields``)."""

T = TypeVar("T")
_MISSING = dataclasses.MISSING


@dataclass(frozen=True)
class Rule:
    """One CEL rule (``x-kubernetes-validations``). A rule using ``oldSelf`` is a transition rule:
    the API server checks it on updates only, when both the old and the new value exist."""

    rule: str
    message: str
    reason: Literal["FieldValueInvalid", "FieldValueForbidden", "FieldValueRequired", "FieldValueDuplicate"] | None = (
        None
    )
    field_path: str | None = None

    def to_json(self) -> dict[str, str]:
        out = {"rule": self.rule, "message": self.message}
        if self.reason:
            out["reason"] = self.reason
        if self.field_path:
            out["fieldPath"] = self.field_path
        return out


@dataclass(frozen=True)
class Meta:
    """What a field adds to its type's schema (OpenAPI keywords, in their own spelling)."""

    description: str
    json_name: str | None = None
    minimum: int | float | None = None
    maximum: int | float | None = None
    enum: tuple[str, ...] | None = None
    pattern: str | None = None
    format: str | None = None
    min_length: int | None = None
    max_length: int | None = None
    max_items: int | None = None
    max_properties: int | None = None
    rules: tuple[Rule, ...] = ()
    list_map_keys: tuple[str, ...] | None = None  # x-kubernetes-list-type: map, keyed by these
    emit_default: bool = True  # write the Python default as the schema's default


def field(
    description: str,
    *,
    default: Any = _MISSING,
    default_factory: Any = _MISSING,
    json_name: str | None = None,
    minimum: int | float | None = None,
    maximum: int | float | None = None,
    enum: tuple[str, ...] | None = None,
    pattern: str | None = None,
    format: str | None = None,
    min_length: int | None = None,
    max_length: int | None = None,
    max_items: int | None = None,
    max_properties: int | None = None,
    rules: tuple[Rule, ...] = (),
    list_map_keys: tuple[str, ...] | None = None,
    emit_default: bool = True,
) -> Any:
    """A dataclass field carrying its schema (``Meta``) in its metadata."""
    meta = Meta(
        description, json_name, minimum, maximum, enum, pattern, format, min_length, max_length, max_items,
        max_properties, rules, list_map_keys, emit_default,
    )  # fmt: skip
    return dataclasses.field(default=default, default_factory=default_factory, metadata={"schema": meta})


def camel(name: str) -> str:
    """``delete_claim`` -> ``deleteClaim``."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def json_name(f: dataclasses.Field[Any]) -> str:
    meta: Meta | None = f.metadata.get("schema")
    return meta.json_name if meta and meta.json_name else camel(f.name)


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=True)


def _strip_optional(tp: Any) -> tuple[Any, bool]:
    if get_origin(tp) in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        optional = len(args) < len(get_args(tp))
        if len(args) == 1:
            return args[0], optional
        return Union[tuple(args)], optional  # noqa: UP007 - rebuilt from runtime args
    return tp, False


def _is_int_or_string(tp: Any) -> bool:
    return get_origin(tp) in (Union, types.UnionType) and set(get_args(tp)) == {int, str}


def type_schema(tp: Any) -> dict[str, Any]:
    """The structural schema of a type (without a field's extras)."""
    tp, _ = _strip_optional(tp)
    origin = get_origin(tp)
    if tp is JsonValue:
        return {"x-kubernetes-preserve-unknown-fields": True}
    if _is_int_or_string(tp):
        return {"x-kubernetes-int-or-string": True}
    if tp is bool:
        return {"type": "boolean"}
    if tp is int:
        return {"type": "integer"}
    if tp is float:
        return {"type": "number"}
    if tp is str:
        return {"type": "string"}
    if origin is Literal:
        return {"type": "string", "enum": list(get_args(tp))}
    if origin is list:
        return {"type": "array", "items": type_schema(get_args(tp)[0])}
    if origin is dict:
        key, value = get_args(tp)
        if key is not str:
            raise TypeError(f"map keys must be str, not {key}")
        if value is JsonValue:
            return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        return {"type": "object", "additionalProperties": type_schema(value)}
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return object_schema(tp)
    raise TypeError(f"no schema for {tp!r}")


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not _MISSING:
        return f.default
    if f.default_factory is not _MISSING:
        return f.default_factory()
    return _MISSING


def object_schema(cls: type) -> dict[str, Any]:
    """``{"type": "object", "properties": ..., "required": ...}`` of a dataclass, with its class
    docstring as the description and its ``__rules__`` (CEL rules on the whole object)."""
    hints = _hints(cls)
    props: dict[str, Any] = {}
    required: list[str] = []
    for f in dataclasses.fields(cls):
        name = json_name(f)
        props[name] = field_schema(f, hints[f.name])
        _, optional = _strip_optional(hints[f.name])
        if _default(f) is _MISSING and not optional:
            required.append(name)
    out: dict[str, Any] = {"type": "object"}
    if cls.__doc__ and not cls.__doc__.startswith(f"{cls.__name__}("):
        out["description"] = " ".join(cls.__doc__.split())
    out["properties"] = props
    if required:
        out["required"] = required
    rules: tuple[Rule, ...] = getattr(cls, "__rules__", ())
    if rules:
        out["x-kubernetes-validations"] = [r.to_json() for r in rules]
    return out


def field_schema(f: dataclasses.Field[Any], tp: Any) -> dict[str, Any]:
    meta: Meta | None = f.metadata.get("schema")
    if meta is None:
        raise TypeError(f"field {f.name!r} has no schema: declare it with schema.field(...)")
    out = {"description": meta.description, **{k: v for k, v in type_schema(tp).items() if k != "description"}}
    keywords = (
        ("minimum", meta.minimum),
        ("maximum", meta.maximum),
        ("pattern", meta.pattern),
        ("format", meta.format),
        ("minLength", meta.min_length),
        ("maxLength", meta.max_length),
        ("maxItems", meta.max_items),
        ("maxProperties", meta.max_properties),
    )
    out.update({key: value for key, value in keywords if value is not None})
    if meta.enum is not None:
        out["enum"] = list(meta.enum)
    if meta.list_map_keys:
        out["x-kubernetes-list-type"] = "map"
        out["x-kubernetes-list-map-keys"] = list(meta.list_map_keys)
    default = _default(f)
    if meta.emit_default and default is not _MISSING and default is not None:
        if dataclasses.is_dataclass(default):
            out["default"] = {}  # the API server then applies the nested defaults
        elif isinstance(default, (bool, int, float, str)) or default in ([], {}):
            out["default"] = default
    if meta.rules:
        out["x-kubernetes-validations"] = [r.to_json() for r in meta.rules]
    return out


def load(cls: type[T], data: Mapping[str, Any] | None) -> T:
    """A resource's JSON (camelCase keys) as the dataclass ``cls``; absent keys take the defaults,
    unknown keys are ignored (the API server prunes them anyway)."""
    data = data or {}
    hints = _hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        key = json_name(f)
        if key in data and data[key] is not None:
            kwargs[f.name] = _load_value(hints[f.name], data[key])
    return cls(**kwargs)


def _load_value(tp: Any, value: Any) -> Any:
    tp, _ = _strip_optional(tp)
    origin = get_origin(tp)
    if origin is list:
        return [_load_value(get_args(tp)[0], v) for v in value]
    if origin is dict:
        return {k: _load_value(get_args(tp)[1], v) for k, v in value.items()}
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return load(tp, value)
    if tp is float and isinstance(value, int):
        return float(value)
    return value


def dump(obj: Any) -> Any:
    """A dataclass (or a value holding some) as JSON with camelCase keys; ``None`` fields are left out."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out = {}
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if value is not None:
                out[json_name(f)] = dump(value)
        return out
    if isinstance(obj, list):
        return [dump(v) for v in obj]
    if isinstance(obj, dict):
        return {k: dump(v) for k, v in obj.items()}
    return obj


QUANTITY_PATTERN = r"^([+]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"
"""Kubernetes' resource.Quantity, as its own OpenAPI schema spells it."""
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


def matches(pattern: str, value: str) -> bool:
    """Whether ``value`` matches an OpenAPI ``pattern`` (ECMA 262; these patterns are also Python's)."""
    return re.search(pattern, value) is not None
