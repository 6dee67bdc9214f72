"""``GET /schemas/plugins/{name}``: a plugin's schema in Kong's JSON shape.

Kong's Admin API answers it with ``schema_to_jsonable`` of the plugin's subschema:
``{"fields": [{"consumer": ...}, {"protocols": ...}, {"config": {"type": "record", "fields":
[{"<name>": {"type": ..., "default": ..., "required": ...}}, ...]}}]}``. KIC reads it before
every push (its ``deckgen`` fills each plugin's defaults from it with go-kong's
``FillPluginsDefaultsWithOpts``; a plugin whose schema it cannot fetch is left out of the
config), and so do decK and Kong Manager.

fastkong's plugin configs are msgspec Structs, so the schema is derived from them: ``str`` is a
``string``, ``int`` an ``integer``, ``float`` a ``number``, a ``Literal`` a ``one_of``, a list
an ``array`` (a ``set`` where Kong's field is one), a dict a ``map``, a nested Struct a
``record``; a field's default is its Struct default (``null`` defaults are left out, as Kong
leaves them out; a record with a default is ``required`` and carries it, as Kong's records
with defaults do); Kong's ``required`` is a field without a default that does not take
``null``, or one marked so; ``referenceable`` is kept. A field whose default is drawn per node
(session's ``secret``) is ``auto`` without a default: go-kong then leaves it to the node. The
bounds and entity checks are not repeated: ``POST /config`` checks them.
"""

from __future__ import annotations

from typing import Any

import msgspec
import msgspec.inspect as mi

from fastkong.config.validate import struct_info
from fastkong.plugins.registry import PluginSpec


def _unwrap(tp: mi.Type) -> tuple[mi.Type, dict[str, Any], bool]:
    """The type inside metadata and ``| None``, the merged ``extra``, and whether None is
    allowed."""
    extra: dict[str, Any] = {}
    nullable = False
    while True:
        if isinstance(tp, mi.Metadata):
            extra = {**(tp.extra or {}), **extra}
            tp = tp.type
        elif isinstance(tp, mi.UnionType):
            members = [t for t in tp.types if not isinstance(t, mi.NoneType)]
            nullable = nullable or len(members) < len(tp.types)
            if len(members) != 1:
                return tp, extra, nullable
            tp = members[0]
        else:
            return tp, extra, nullable


def _type(tp: mi.Type, extra: dict[str, Any]) -> dict[str, Any]:
    if isinstance(tp, mi.StrType):
        return {"type": "string"}
    if isinstance(tp, mi.BoolType):
        return {"type": "boolean"}
    if isinstance(tp, mi.IntType):
        return {"type": "integer"}
    if isinstance(tp, mi.FloatType):
        return {"type": "number"}
    if isinstance(tp, mi.LiteralType):
        choices = list(tp.values)
        kind = (
            "string"
            if all(isinstance(v, str) for v in choices)
            else "integer"
            if all(isinstance(v, int) for v in choices)
            else "number"
        )
        return {"type": kind, "one_of": choices}
    if isinstance(tp, (mi.ListType, mi.VarTupleType, mi.SetType, mi.FrozenSetType)):
        is_set = extra.get("kong_set") or isinstance(tp, (mi.SetType, mi.FrozenSetType))
        inner, inner_extra, _ = _unwrap(tp.item_type)
        return {"type": "set" if is_set else "array", "elements": _type(inner, inner_extra)}
    if isinstance(tp, mi.DictType):
        key_type, key_extra, _ = _unwrap(tp.key_type)
        value_type, value_extra, _ = _unwrap(tp.value_type)
        keys, values = _type(key_type, key_extra), _type(value_type, value_extra)
        return {"type": "map", "keys": keys, "values": values}
    if isinstance(tp, mi.StructType):
        return record(tp)
    if isinstance(tp, mi.UnionType) and all(
        isinstance(t, (mi.IntType, mi.FloatType, mi.NoneType)) for t in tp.types
    ):
        return {"type": "number"}  # an integer or a float: Kong's number
    return {"type": "json"}  # Any, or a union of several kinds


def _field(info: mi.Field) -> dict[str, Any]:
    tp, extra, nullable = _unwrap(info.type)
    out = _type(tp, extra)
    if extra.get("kong_referenceable"):
        out["referenceable"] = True
    if extra.get("kong_auto"):
        out["auto"] = True
        return out
    default: Any = msgspec.NODEFAULT
    if info.default is not msgspec.NODEFAULT:
        default = info.default
    elif info.default_factory is not msgspec.NODEFAULT:
        default = info.default_factory()
    if default is msgspec.NODEFAULT:
        if not nullable:
            out["required"] = True
    elif default is not None:
        out["default"] = msgspec.to_builtins(default)
        if out["type"] == "record":
            # go-kong fills a record only when it is required (or given); its fields then
            # take the record's default where they have none of their own (Kong's
            # ``typedefs.propagation { default = ... }``)
            out["required"] = True
    if extra.get("kong_required"):
        out["required"] = True
    return out


def record(info: mi.StructType) -> dict[str, Any]:
    return {"type": "record", "fields": [{f.encode_name: _field(f)} for f in info.fields]}


def plugin_schema(spec: PluginSpec) -> dict[str, Any]:
    """Kong's ``GET /schemas/plugins/{name}`` answer for the plugin ``spec``."""
    fields: list[dict[str, Any]] = []
    for scope, forbidden, reference in (
        ("consumer", spec.no_consumer, "consumers"),
        ("route", spec.no_route, "routes"),
        ("service", spec.no_service, "services"),
    ):
        entry: dict[str, Any] = {"type": "foreign", "reference": reference}
        if forbidden:
            entry["eq"] = None
        fields.append({scope: entry})
    elements = {"type": "string", "one_of": list(spec.protocols)}
    protocols = {"type": "set", "required": True, "elements": elements}
    fields.append({"protocols": {**protocols, "default": list(spec.protocols_default())}})
    config = {**record(struct_info(spec.config_type)), "required": True}
    fields.append({"config": config})
    return {"fields": fields, "entity_checks": []}


__all__ = ["plugin_schema", "record"]
