"""The all-errors walker: check a document against a msgspec Struct, field by field.

msgspec stops at the first error; Kong reports them all. This walker reads a Struct's shape
from :func:`msgspec.inspect.type_info` (required fields and defaults, ``IntType`` bounds,
``StrType`` length and pattern, ``Literal`` values, list/set/dict item types, nested Structs,
``X | None``) and visits every value, collecting *every* problem with its location and Kong's
message. It returns the value normalized to builtins (defaults filled, sets de-duplicated,
integral floats turned into ints), ready for ``msgspec.convert``, which then cannot fail.

Kong rules it applies beyond msgspec's: strings must be non-empty unless the Struct says
``min_length=0``; unknown fields are always errors; a ``null`` for a field with a default takes
the default, unless the field says ``Meta(extra={"kong_required": True})`` (Kong's ``required``
with a ``default``: only a missing value takes the default; a ``null`` is "required field
missing"). Extra checks come from ``Meta(extra={"kong_check": fn, "kong_set": True})``.
"""

from __future__ import annotations

import functools
import re
import typing
from collections.abc import Mapping
from typing import Any

import msgspec
import msgspec.inspect as mi

from fastkong.config import errors as E
from fastkong.config import vault
from fastkong.config.errors import FieldError
from fastkong.config.meta import Loc

#: The field Kong's schemas never validate (``unvalidated_fields`` in kong/db/schema/init.lua).
UNVALIDATED = "updated_at"


class Issues:
    """Collects :class:`FieldError` s; the same message at the same place is kept once."""

    __slots__ = ("errors", "_seen")

    def __init__(self) -> None:
        self.errors: list[FieldError] = []
        self._seen: set[tuple[Loc, str, bool]] = set()

    def __repr__(self) -> str:
        return f"<Issues {len(self.errors)}>"

    def __len__(self) -> int:
        return len(self.errors)

    def field(self, loc: Loc, message: str) -> None:
        self._add(loc, message, False)

    def entity(self, loc: Loc, message: str, key: str | None = None) -> None:
        self._add(loc, message, True, key)

    def replace_field(self, loc: Loc, message: str) -> None:
        """Put ``message`` in place of the field's errors: Kong's ``set_field(errors, ...)``
        overwrites what the field's own rules reported (a conditional check does this)."""
        where = tuple(loc)
        kept = [e for e in self.errors if e.entity or tuple(e.loc) != where]
        for err in self.errors:
            if not err.entity and tuple(err.loc) == where:
                self._seen.discard((where, err.message, False))
        self.errors[:] = kept
        self.field(loc, message)

    def _add(self, loc: Loc, message: str, entity: bool, key: str | None = None) -> None:
        # A field keeps one copy of a message; an entity keeps every message its checks add,
        # repeats included, as Kong's ``insert_entity_error`` appends to ``@entity``.
        seen = (tuple(loc), message, entity)
        if entity or seen not in self._seen:
            self._seen.add(seen)
            self.errors.append(FieldError.at(loc, message, entity=entity, key=key))

    def relocate(self, since: int, prefixes: Mapping[Loc, Loc]) -> None:
        """Move errors recorded after ``since`` under one of ``prefixes`` to the mapped loc."""
        moved = self.errors[since:]
        del self.errors[since:]
        for err in moved:
            for prefix, to in prefixes.items():
                if err.loc[: len(prefix)] == prefix:
                    self._seen.discard((err.loc, err.message, err.entity))
                    self._add(to, err.message, err.entity, err.key)
                    break
            else:
                self.errors.append(err)


#: Literal values in declaration order (msgspec's inspect sorts them; Kong's messages don't).
_LITERAL_ORDER: dict[frozenset[Any], tuple[Any, ...]] = {}
#: The same, per inspected Literal of a field (by id, the object kept alive with it): two
#: plugins may list the same values in different orders (opentelemetry's and zipkin's
#: ``header_type``), and each message follows its own schema.
_LITERAL_AT: dict[int, tuple[mi.LiteralType, tuple[Any, ...]]] = {}


@functools.cache
def struct_info(cls: type[msgspec.Struct]) -> mi.StructType:
    info = mi.type_info(cls)
    assert isinstance(info, mi.StructType)
    try:
        hints = typing.get_type_hints(cls, include_extras=True)
    except Exception:  # unresolvable annotations: messages fall back to msgspec's order
        hints = {}
    for f in info.fields:
        hint = hints.get(f.name)
        if hint is None:
            continue
        literals: list[tuple[Any, ...]] = []
        _collect_literals(hint, literals)
        for node in _literal_nodes(f.type):
            for args in literals:
                if frozenset(args) == frozenset(node.values):
                    _LITERAL_AT[id(node)] = (node, args)
                    break
    return info


def _collect_literals(hint: Any, found: list[tuple[Any, ...]]) -> None:
    if typing.get_origin(hint) is typing.Literal:
        args = typing.get_args(hint)
        _LITERAL_ORDER.setdefault(frozenset(args), args)
        found.append(args)
        return
    for arg in typing.get_args(hint):
        if not isinstance(arg, msgspec.Meta):
            _collect_literals(arg, found)


def _literal_nodes(tp: mi.Type) -> list[mi.LiteralType]:
    """The Literal types in a field's inspected type (not in nested Structs: they have their
    own :func:`struct_info`)."""
    if isinstance(tp, mi.LiteralType):
        return [tp]
    if isinstance(tp, mi.Metadata):
        return _literal_nodes(tp.type)
    if isinstance(tp, mi.UnionType):
        return [node for member in tp.types for node in _literal_nodes(member)]
    if isinstance(tp, (mi.ListType, mi.SetType, mi.FrozenSetType, mi.VarTupleType)):
        return _literal_nodes(tp.item_type)
    if isinstance(tp, mi.DictType):
        return _literal_nodes(tp.key_type) + _literal_nodes(tp.value_type)
    if isinstance(tp, mi.TupleType):
        return [node for item in tp.item_types for node in _literal_nodes(item)]
    return []


class _Plan:
    """What :func:`walk_struct` needs of a Struct, computed once per class."""

    __slots__ = ("fields", "defaults", "required", "nullable", "not_null")

    def __init__(self, cls: type[msgspec.Struct]) -> None:
        info = struct_info(cls)
        self.fields = {f.encode_name: f for f in info.fields}
        #: Optional fields -> default as builtins (shared; callers must not mutate it). A field
        #: whose default is UNSET stays absent (msgspec leaves it out of every encoding).
        self.defaults = {
            f.encode_name: _builtin_default(f)
            for f in info.fields
            if not f.required and not _unset_default(f)
        }
        self.required = tuple(f.encode_name for f in info.fields if f.required)
        self.nullable = frozenset(f.encode_name for f in info.fields if allows_none(f.type))
        #: Kong-required fields with a default: absent takes the default, null is an error.
        self.not_null = frozenset(
            f.encode_name for f in info.fields if _unwrap(f.type)[1].get("kong_required")
        )


@functools.cache
def _plan(cls: type[msgspec.Struct]) -> _Plan:
    return _Plan(cls)


def _unset_default(f: mi.Field) -> bool:
    """A field that defaults to UNSET: msgspec's inspect shows it optional with no default
    (and leaves UnsetType out of its type)."""
    return (
        not f.required and f.default is msgspec.NODEFAULT and f.default_factory is msgspec.NODEFAULT
    )


def _builtin_default(f: mi.Field) -> Any:
    if f.default is not msgspec.NODEFAULT:
        return msgspec.to_builtins(f.default)
    if f.default_factory is not msgspec.NODEFAULT:
        return msgspec.to_builtins(f.default_factory())
    return None


class Walked:
    """The result of :func:`walk_struct`: the normalized fields and the names that failed."""

    __slots__ = ("data", "bad")

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.bad: set[str] = set()

    def __repr__(self) -> str:
        return f"<Walked {sorted(self.data)} bad={sorted(self.bad)}>"


def walk_struct(
    cls: type[msgspec.Struct],
    raw: Mapping[Any, Any],
    loc: Loc,
    issues: Issues,
    *,
    skip: frozenset[str] | set[str] = frozenset(),
    optional: frozenset[str] | set[str] = frozenset(),
) -> Walked:
    """Check the mapping ``raw`` against ``cls``; every problem goes to ``issues``.

    Parameters
    ----------
    skip:
        Keys the caller handles itself (neither checked nor reported as unknown).
    optional:
        Required fields the caller fills in later (ids, foreign keys, generated secrets).
    """
    plan = _plan(cls)
    out = Walked()
    data = out.data
    data.update(plan.defaults)
    seen: set[str] = set()
    for key, value in raw.items():
        name = key if isinstance(key, str) else str(key)
        seen.add(name)
        if name in skip:
            continue
        f = plan.fields.get(name)
        if name == UNVALIDATED:
            # Kong never validates `updated_at` (any record, any value); kept only when valid
            if f is not None and value is not None:
                ok, normalized = walk_value(f.type, value, (*loc, name), Issues())
                if ok:
                    data[name] = normalized
            continue
        if f is None:
            issues.field((*loc, name), E.UNKNOWN)
            out.bad.add(name)
        elif value is None:
            if name in plan.nullable and name not in plan.not_null:
                data[name] = None
            elif name in plan.not_null or (f.required and name not in optional):
                issues.field((*loc, name), E.REQUIRED)
                data.pop(name, None)
                out.bad.add(name)
        else:
            ok, normalized = walk_value(f.type, value, (*loc, name), issues)
            if ok:
                data[name] = normalized
            else:
                data.pop(name, None)
                out.bad.add(name)
    for name in plan.required:
        if name not in seen and name not in skip and name not in optional:
            issues.field((*loc, name), E.REQUIRED)
            out.bad.add(name)
    return out


def allows_none(tp: mi.Type) -> bool:
    tp = _unwrap(tp)[0]
    if isinstance(tp, (mi.NoneType, mi.AnyType)):
        return True
    return isinstance(tp, mi.UnionType) and any(isinstance(t, mi.NoneType) for t in tp.types)


_UNWRAPPED: dict[int, tuple[mi.Type, mi.Type, dict[str, Any]]] = {}


def _unwrap(tp: mi.Type) -> tuple[mi.Type, dict[str, Any]]:
    """The type inside ``Metadata`` wrappers, and their merged ``extra``."""
    hit = _UNWRAPPED.get(id(tp))
    if hit is not None and hit[0] is tp:
        return hit[1], hit[2]
    inner: mi.Type = tp
    extra: dict[str, Any] = {}
    while isinstance(inner, mi.Metadata):
        if inner.extra:
            extra = {**inner.extra, **extra}
        inner = inner.type
    _UNWRAPPED[id(tp)] = (tp, inner, extra)  # keeps tp alive, so its id stays unique
    return inner, extra


def _num(x: float) -> str:
    return str(int(x)) if isinstance(x, float) and x.is_integer() else str(x)


def _bounds(tp: mi.IntType | mi.FloatType, v: float) -> str | None:
    if tp.ge is not None and tp.le is not None:
        if not tp.ge <= v <= tp.le:
            return E.BETWEEN.format(_num(tp.ge), _num(tp.le))
    else:
        if tp.gt is not None and not v > tp.gt:
            return E.GT.format(_num(tp.gt))
        if tp.ge is not None and v < tp.ge:
            return E.GE.format(_num(tp.ge))
        if tp.le is not None and v > tp.le:
            return E.LE.format(_num(tp.le))
    if tp.lt is not None and not v < tp.lt:
        return E.LT.format(_num(tp.lt))
    if tp.multiple_of is not None and v % tp.multiple_of:
        return E.MULTIPLE_OF.format(_num(tp.multiple_of))
    return None


def _is_int(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


def _kind_matches(tp: mi.Type, value: Any) -> bool:
    tp = _unwrap(tp)[0]
    if isinstance(tp, mi.IntType):
        return _is_int(value)
    if isinstance(tp, mi.FloatType):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(tp, (mi.StrType,)):
        return isinstance(value, str)
    if isinstance(tp, mi.LiteralType):
        return value in tp.values
    if isinstance(tp, mi.BoolType):
        return isinstance(value, bool)
    if isinstance(tp, (mi.ListType, mi.SetType, mi.FrozenSetType, mi.VarTupleType)):
        return isinstance(value, list) or value == {}
    if isinstance(tp, (mi.DictType, mi.StructType)):
        return isinstance(value, dict) or value == []
    return isinstance(tp, mi.AnyType)


def walk_value(tp: mi.Type, value: Any, loc: Loc, issues: Issues) -> tuple[bool, Any]:
    """Check one value; returns ``(ok, normalized value)``."""
    tp, extra = _unwrap(tp)
    if value is None:
        if allows_none(tp):
            return True, None
        issues.field(loc, E.REQUIRED)
        return False, None
    if isinstance(tp, mi.UnionType):
        members = [t for t in tp.types if not isinstance(t, mi.NoneType)]
        chosen = next((t for t in members if _kind_matches(t, value)), members[0])
        tp, more = _unwrap(chosen)
        extra = {**more, **extra}
    if extra.get("kong_referenceable") and vault.is_reference(value):
        return _walk_reference(tp, value, loc, issues, extra)
    ok, normalized = _walk_typed(tp, value, loc, issues, extra)
    if ok and "kong_check" in extra:
        message = extra["kong_check"](normalized)
        if message:
            issues.field(loc, message)
            return False, None
    return ok, normalized


def _walk_reference(
    tp: mi.Type, reference: str, loc: Loc, issues: Issues, extra: dict[str, Any]
) -> tuple[bool, Any]:
    """A secret reference in a referenceable field: it must resolve here and now, and its
    value must pass the field's own checks; the reference itself is what the config keeps."""
    try:
        if not vault.resolving():
            vault.check(reference)
            return True, reference
        secret = vault.resolve(reference)
    except vault.VaultError as exc:
        return _fail(issues, loc, vault.unresolved(reference, exc))
    scratch = Issues()
    ok, normalized = _walk_typed(tp, secret, loc, scratch, extra)
    if ok and "kong_check" in extra:
        message = extra["kong_check"](normalized)
        if message:
            scratch.field(loc, message)
    if scratch.errors:
        detail = scratch.errors[0].message
        if secret in detail:
            detail = "it does not pass the field's checks"  # never a secret in a message
        return _fail(issues, loc, f"the value of {reference} is invalid: {detail}")
    return True, reference


def referenceable_shape(cls: type[msgspec.Struct]) -> dict[str, Any] | None:
    """Where ``cls`` has referenceable strings (for :func:`fastkong.config.vault.resolve_fields`):
    field name -> ``True``, a nested shape, or ``("*", shape)`` for a map's or list's values;
    None when it has none."""
    return _shape_of_struct(cls)


@functools.cache
def _shape_of_struct(cls: type[msgspec.Struct]) -> dict[str, Any] | None:
    shape = {}
    for f in struct_info(cls).fields:
        found = _shape_of(f.type)
        if found is not None:
            shape[f.encode_name] = found
    return shape or None


def _shape_of(tp: mi.Type) -> Any:
    inner, extra = _unwrap(tp)
    if extra.get("kong_referenceable"):
        return True
    if isinstance(inner, mi.UnionType):
        shapes = [s for t in inner.types if (s := _shape_of(t)) is not None]
        return shapes[0] if shapes else None
    if isinstance(inner, mi.StructType):
        return _shape_of_struct(inner.cls)
    if isinstance(inner, (mi.ListType, mi.SetType, mi.FrozenSetType, mi.VarTupleType)):
        item = _shape_of(inner.item_type)
        return None if item is None else ("*", item)
    if isinstance(inner, mi.DictType):
        item = _shape_of(inner.value_type)
        return None if item is None else ("*", item)
    return None


def _fail(issues: Issues, loc: Loc, message: str) -> tuple[bool, Any]:
    issues.field(loc, message)
    return False, None


def _walk_typed(
    tp: mi.Type, value: Any, loc: Loc, issues: Issues, extra: dict[str, Any]
) -> tuple[bool, Any]:
    if isinstance(tp, mi.AnyType):
        return True, value
    if isinstance(tp, mi.BoolType):
        return (True, value) if isinstance(value, bool) else _fail(issues, loc, E.BOOLEAN)
    if isinstance(tp, mi.IntType):
        if not _is_int(value):
            return _fail(issues, loc, E.INTEGER)
        message = _bounds(tp, int(value))
        return _fail(issues, loc, message) if message else (True, int(value))
    if isinstance(tp, mi.FloatType):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return _fail(issues, loc, E.NUMBER)
        message = _bounds(tp, value)
        return _fail(issues, loc, message) if message else (True, value)
    if isinstance(tp, mi.StrType):
        return _walk_str(tp, value, loc, issues)
    if isinstance(tp, mi.LiteralType):
        return _walk_literal(tp, value, loc, issues)
    if isinstance(tp, (mi.ListType, mi.SetType, mi.FrozenSetType, mi.VarTupleType)):
        return _walk_array(tp, value, loc, issues, extra)
    if isinstance(tp, mi.DictType):
        return _walk_map(tp, value, loc, issues)
    if isinstance(tp, mi.StructType):
        if value == []:
            value = {}  # Lua has one empty table: Kong takes `[]` for an empty record
        if not isinstance(value, dict):
            return _fail(issues, loc, E.RECORD)
        mark = len(issues)
        walked = walk_struct(tp.cls, value, loc, issues)
        return (True, walked.data) if len(issues) == mark else (False, None)
    if isinstance(tp, mi.NoneType):
        return _fail(issues, loc, E.EQ_NULL)
    if isinstance(tp, mi.EnumType):
        values = [m.value for m in tp.cls]
        if value in values:
            return True, value
        return _fail(issues, loc, E.ONE_OF.format(", ".join(str(v) for v in values)))
    # Anything else (datetime, tuples, ...): msgspec.convert checks it when the Struct is built.
    return True, value


def _walk_str(tp: mi.StrType, value: Any, loc: Loc, issues: Issues) -> tuple[bool, Any]:
    if not isinstance(value, str):
        return _fail(issues, loc, E.STRING)
    min_length = 1 if tp.min_length is None else tp.min_length
    if len(value) < min_length:
        return _fail(issues, loc, E.LEN_MIN.format(min_length))
    if tp.max_length is not None and len(value) > tp.max_length:
        return _fail(issues, loc, E.LEN_MAX.format(tp.max_length))
    if tp.pattern is not None and not _pattern(tp.pattern).search(value):
        return _fail(issues, loc, E.MATCH.format(value))
    return True, value


@functools.cache
def _pattern(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _walk_literal(tp: mi.LiteralType, value: Any, loc: Loc, issues: Issues) -> tuple[bool, Any]:
    known = _LITERAL_AT.get(id(tp))
    if known is not None and known[0] is tp:
        values = known[1]
    else:
        values = _LITERAL_ORDER.get(frozenset(tp.values), tp.values)
    if all(isinstance(v, str) for v in values) and not isinstance(value, str):
        return _fail(issues, loc, E.STRING)
    if all(isinstance(v, int) for v in values):
        if not _is_int(value):
            return _fail(issues, loc, E.INTEGER)
        value = int(value)
    if value not in values or isinstance(value, bool):
        return _fail(issues, loc, E.ONE_OF.format(", ".join(str(v) for v in values)))
    return True, value


def _walk_array(
    tp: mi.ListType | mi.SetType | mi.FrozenSetType | mi.VarTupleType,
    value: Any,
    loc: Loc,
    issues: Issues,
    extra: dict[str, Any],
) -> tuple[bool, Any]:
    is_set = bool(extra.get("kong_set")) or isinstance(tp, (mi.SetType, mi.FrozenSetType))
    if value == {}:
        value = []  # Lua has one empty table: Kong takes `{}` for an empty array
    if not isinstance(value, list):
        return _fail(issues, loc, E.SET if is_set else E.ARRAY)
    out: list[Any] = []
    ok = True
    for i, item in enumerate(value):
        item_ok, normalized = walk_value(tp.item_type, item, (*loc, i), issues)
        if item_ok:
            if not (is_set and normalized in out):
                out.append(normalized)
        else:
            ok = False
    if not ok:
        return False, None
    if tp.min_length is not None and len(out) < tp.min_length:
        return _fail(issues, loc, E.LEN_MIN.format(tp.min_length))
    if tp.max_length is not None and len(out) > tp.max_length:
        return _fail(issues, loc, E.LEN_MAX.format(tp.max_length))
    return True, out


def _walk_map(tp: mi.DictType, value: Any, loc: Loc, issues: Issues) -> tuple[bool, Any]:
    """A map, as Kong checks one: its first bad entry only, a key's error at the map itself."""
    if isinstance(value, list):
        # Lua has one kind of table: Kong takes `[]` for an empty map, and reads a list as a
        # map from 1, 2, ... (so a string-keyed map refuses it for its keys, not as a non-map).
        value = {i: v for i, v in enumerate(value, 1)}
    if not isinstance(value, dict):
        return _fail(issues, loc, E.MAP)
    out: dict[Any, Any] = {}
    for k, v in value.items():
        # Kong stops at the first bad key or value. A key's error stands at the map; a value's
        # errors keep what is below it (an array value's element index: `headers[0]`).
        sub = Issues()
        key_ok, key = walk_value(tp.key_type, k, loc, sub)
        if key_ok:
            value_ok, normalized = walk_value(tp.value_type, v, loc, sub)
            if value_ok:
                out[key] = normalized
                continue
        for err in sub.errors:
            issues.field(err.loc, err.message)
        return False, None
    if tp.min_length is not None and len(out) < tp.min_length:
        return _fail(issues, loc, E.LEN_MIN.format(tp.min_length))
    if tp.max_length is not None and len(out) > tp.max_length:
        return _fail(issues, loc, E.LEN_MAX.format(tp.max_length))
    return True, out


_AT = re.compile(r" - at `\$(.*)`$")
_PART = re.compile(r"\.([^.\[]+)|\[([0-9]+)\]")


def convert(data: Any, cls: type[msgspec.Struct], loc: Loc, issues: Issues) -> Any:
    """``msgspec.convert`` that reports a failure (a check the walker could not see) at its loc."""
    try:
        return msgspec.convert(data, cls)
    except msgspec.ValidationError as exc:
        text = str(exc)
        sub: list[str | int] = []
        m = _AT.search(text)
        if m:
            text = text[: m.start()]
            for part in _PART.finditer(m.group(1)):
                sub.append(part.group(1) if part.group(1) is not None else int(part.group(2)))
        issues.field((*loc, *sub), text)
        return None
