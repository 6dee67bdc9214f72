"""grpc-gateway's HTTP bindings: ``google.api.http`` rules -> compiled path templates, and a
REST request (path variables, query arguments, JSON body) -> the rpc's request message.

At config load, :func:`compile_bindings` turns each rpc's ``(google.api.http)`` option (read by
:mod:`._proto` as a text-format literal) into :class:`Binding`\\ s: one per ``get``, ``put``,
``post``, ``delete`` or ``patch`` key of the rule and of each ``additional_bindings`` (Kong
reads every such key of a rule, so a rule naming two verbs binds both; ``custom`` is ignored,
as Kong ignores it). A path template (``/v1/{name=messages/*}:verb``) becomes one anchored
regex: ``*`` one segment, ``**`` the rest of the path (at least one character, as Kong's
``.+``), ``{field}`` one segment, ``{field=...}`` what its segments match. A template that does
not parse, a variable or ``body`` naming no field of the request message, are
:class:`~._proto.ProtoError`\\ s naming the file and line of the rpc.

Per request, :class:`Bindings.match` finds the first binding (in the order of the file) for
the method and path, and :func:`build_request` assembles the message as Kong's ``deco.lua``
does: path variables set the (nested) fields they name; a binding with ``body`` takes the JSON
body, whole (``*``, merged over the variables) or as one field, and no query argument; one
without ``body`` takes query arguments (``a.b=v`` into nested fields; a name that is no field
is dropped; ``true``/``false``/``0``/``1`` style booleans by Kong's rule: anything but ``0``
and ``false`` is true). The result is encoded by :mod:`._proto_json`.
"""

from __future__ import annotations

import base64
import re
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import unquote

from fastkong.plugins.bundled._proto import Field, Message, ProtoError, ProtoSet

if TYPE_CHECKING:
    from fastkong.plugins.bundled._proto import Rpc

#: The HTTP methods Kong binds (``deco.lua``'s ``valid_method``).
VERBS: Final = ("get", "put", "post", "delete", "patch")
_IDENT: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
#: A literal segment: RFC 3986 pchar without ":" (which starts the verb).
_LITERAL: Final = re.compile(r"(?:[-_.~0-9A-Za-z!$&'()+,;=@]|%[0-9A-Fa-f]{2})+")
_KNOWN_STRINGS: Final = frozenset(
    {"google.protobuf.Timestamp", "google.protobuf.Duration"}
    | {
        f"google.protobuf.{n}Value"
        for n in ("Double", "Float", "Int64", "UInt64", "Int32", "UInt32", "Bool", "String")
    }
)


class RequestError(ValueError):
    """A request that does not make a message: Kong's 400 with this text as the body."""


class Binding:
    """One HTTP method + path template bound to an rpc."""

    __slots__ = ("verb", "template", "regex", "variables", "rpc", "body")

    def __init__(
        self, verb: str, template: str, regex: re.Pattern[str], variables: list[str], rpc: Rpc
    ) -> None:
        self.verb = verb
        self.template = template
        self.regex = regex
        #: The field path of each capture group, in order (``"a.b"`` for ``{a.b}``).
        self.variables = variables
        self.rpc = rpc
        #: ``*``, a field name, or None (query arguments instead).
        self.body: str | None = None

    def __repr__(self) -> str:
        return f"<Binding {self.verb.upper()} {self.template} -> {self.rpc.path}>"


class Bindings:
    """Every binding of a .proto, by lower-case HTTP method, in the order of the file."""

    def __init__(self, bindings: list[Binding]) -> None:
        self.by_verb: dict[str, list[Binding]] = {}
        for binding in bindings:
            self.by_verb.setdefault(binding.verb, []).append(binding)

    def __repr__(self) -> str:
        counts = ", ".join(f"{v}={len(b)}" for v, b in self.by_verb.items())
        return f"<Bindings {counts}>"

    def match(self, method: str, path: str) -> tuple[Binding, dict[str, str]]:
        """The binding for ``method`` and ``path`` and its variables' values; Kong's errors
        (:class:`RequestError`) when the method or the path is not bound."""
        verb = method.lower()
        candidates = self.by_verb.get(verb)
        if candidates is None:
            raise RequestError(f"failed to transcode .proto file Unknown method {lua_q(verb)}")
        for binding in candidates:
            m = binding.regex.match(path)
            if m is not None:
                return binding, _values(binding, m)
        raise RequestError(f"failed to transcode .proto file Unknown path {lua_q(path)}")


def _values(binding: Binding, m: re.Match[str]) -> dict[str, str]:
    out = {}
    for name, value in zip(binding.variables, m.groups(), strict=True):
        # One segment is percent-decoded whole (the spec's simple expansion); several keep
        # their escaped slashes, as the spec's reserved expansion does.
        out[name] = unquote(value) if "/" not in value else value
    return out


def lua_q(text: str) -> str:
    """Lua's ``%q``: the text quoted, ``"``, ``\\`` and newlines escaped, controls as ``\\ddd``."""
    out = ['"']
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 32 or ord(ch) == 127:
            out.append(f"\\{ord(ch)}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


# -- templates ---------------------------------------------------------------------------------


def compile_template(template: str) -> tuple[re.Pattern[str], list[str]]:
    """The anchored regex of a path template and its variables' field paths; ValueError with
    the reason when it does not follow the template grammar."""
    if not template.startswith("/"):
        raise ValueError("a path template starts with '/'")
    body, verb = _split_verb(template[1:])
    variables: list[str] = []
    parts = [_segment(seg, variables) for seg in _split(body)] if body else []
    pattern = "/" + "/".join(parts)
    if verb is not None:
        if not _LITERAL.fullmatch(verb):
            raise ValueError(f"bad verb {verb!r}")
        pattern += re.escape(":" + verb)
    if len(set(variables)) != len(variables):
        raise ValueError("a variable appears twice")
    return re.compile(pattern + r"\Z"), variables


def _split_verb(text: str) -> tuple[str, str | None]:
    depth = 0
    for i, ch in enumerate(text):
        depth += (ch == "{") - (ch == "}")
        if ch == ":" and depth == 0:
            return text[:i], text[i + 1 :]
    return text, None


def _split(text: str) -> list[str]:
    """The segments of a template body: ``/`` outside braces separates."""
    out, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "{":
            depth += 1
            if depth > 1:
                raise ValueError("nested '{'")
        elif ch == "}":
            depth -= 1
            if depth < 0:
                raise ValueError("unbalanced '}'")
        elif ch == "/" and depth == 0:
            out.append(text[start:i])
            start = i + 1
    if depth:
        raise ValueError("unclosed '{'")
    out.append(text[start:])
    return out


def _segment(seg: str, variables: list[str]) -> str:
    if seg.startswith("{"):
        if not seg.endswith("}"):
            raise ValueError(f"bad segment {seg!r}")
        name, eq, inner = seg[1:-1].partition("=")
        if not _IDENT.fullmatch(name):
            raise ValueError(f"bad variable name {name!r}")
        variables.append(name)
        if not eq:
            return "([^/]+)"
        if not inner:
            raise ValueError(f"variable {name!r} has an empty pattern")
        return "(" + "/".join(_plain(part) for part in inner.split("/")) + ")"
    return _plain(seg)


def _plain(seg: str) -> str:
    if seg == "*":
        return "[^/]+"
    if seg == "**":
        return ".+"
    if not _LITERAL.fullmatch(seg):
        raise ValueError(f"bad segment {seg!r}" if seg else "an empty segment")
    return re.escape(seg)


def _field_at(message: Message, path: str) -> Field | None:
    """The field a dotted path names from ``message`` (through singular message fields)."""
    field = None
    current: Message | None = message
    for part in path.split("."):
        if current is None:
            return None
        field = current.by_json.get(part)
        if field is None:
            return None
        current = field.message if field.kind == "message" and not field.repeated else None
    return field


def compile_bindings(protos: ProtoSet) -> Bindings:
    """Every rpc's ``google.api.http`` rules, checked; :class:`ProtoError` with the rpc's
    file and line for a template or a field name that cannot work."""
    out: list[Binding] = []
    for rpc in protos.rpcs:
        if rpc.http is None:
            continue
        rules = [
            rpc.http,
            *[r for r in rpc.http.get("additional_bindings", ()) if isinstance(r, dict)],
        ]
        for rule in rules:
            out.extend(_rule(rpc, rule))
    return Bindings(out)


def _rule(rpc: Rpc, rule: dict[str, Any]) -> list[Binding]:
    body = rule.get("body")
    body_name = body[-1] if body else None
    if body_name is not None and not isinstance(body_name, str):
        raise ProtoError(f"{rpc.where}: google.api.http body must be a string")
    if body_name not in (None, "", "*") and rpc.input.by_json.get(body_name) is None:
        raise ProtoError(
            f"{rpc.where}: google.api.http body {body_name!r} is not a field of "
            f"{rpc.input.full_name}"
        )
    out = []
    for verb in (key for key in rule if key in VERBS):
        template = rule[verb][-1]
        if not isinstance(template, str):
            raise ProtoError(f"{rpc.where}: google.api.http {verb} must be a string")
        try:
            regex, variables = compile_template(template)
        except ValueError as exc:
            raise ProtoError(f"{rpc.where}: invalid path template {template!r}: {exc}") from None
        for name in variables:
            field = _field_at(rpc.input, name)
            if field is None or field.kind == "message" and not _known_string(field):
                raise ProtoError(
                    f"{rpc.where}: path template {template!r}: {name!r} is not a scalar field "
                    f"of {rpc.input.full_name}"
                )
        binding = Binding(verb, template, regex, variables, rpc)
        binding.body = body_name or None
        out.append(binding)
    return out


def _known_string(field: Field) -> bool:
    return field.message is not None and field.message.full_name in _KNOWN_STRINGS


# -- the request message ----------------------------------------------------------------------


def build_request(
    binding: Binding, variables: dict[str, str], query: dict[str, list[str]], body: Any
) -> dict[str, Any]:
    """The request message's JSON form (proto names) from the path variables, the query
    arguments (bindings without ``body``) and the parsed JSON body (``None``: no body)."""
    message = binding.rpc.input
    payload: dict[str, Any] = {}
    for name, value in variables.items():
        _put(payload, message, name, [value], lenient_bool=False)
    if binding.body is None:
        for name, values in query.items():
            _put(payload, message, name, values, lenient_bool=True)
    elif body is not None:
        if binding.body != "*":
            payload[binding.body] = body
        elif isinstance(body, dict):
            payload.update(body)
        elif not isinstance(body, list):
            # Kong: a JSON array is a table too (its keys, numbers, name no field).
            raise RequestError("body must be a table")
    return _known_fields(message, payload)


def _put(
    payload: dict[str, Any], message: Message, path: str, values: list[str], lenient_bool: bool
) -> None:
    """Set the field at dotted ``path``; a name that is no field (or a path through a scalar)
    is dropped, as Kong drops it."""
    parts = path.split(".")
    target = payload
    current: Message | None = message
    for i, part in enumerate(parts):
        field = current.by_json.get(part) if current is not None else None
        if field is None:
            return
        if i < len(parts) - 1:
            if field.kind != "message" or field.repeated or _known_string(field):
                return
            nested = target.setdefault(field.name, {})
            if not isinstance(nested, dict):
                return
            target, current = nested, field.message
            continue
        if field.repeated and field.map is None:
            target[field.name] = [_typed(field, v, lenient_bool) for v in values]
        elif len(values) == 1:
            target[field.name] = _typed(field, values[0], lenient_bool)
        else:
            # Kong hands a table of strings to a singular field: its encoder refuses.
            raise RequestError("failed to encode payload")


def _typed(field: Field, value: str, lenient_bool: bool) -> Any:
    """A text value as the JSON value its field takes (the encoder then checks it)."""
    kind = field.kind
    if field.message is not None and field.message.full_name.endswith("BoolValue"):
        kind = "bool"
    if kind == "bool":
        if lenient_bool:
            return value not in ("0", "false")
        return {"true": True, "false": False}.get(value, value)
    if kind == "bytes":
        # Kong hands the text itself to the encoder: those are the bytes.
        return base64.b64encode(value.encode("utf-8", "surrogateescape")).decode("ascii")
    if kind == "enum" and value.lstrip("-").isdigit():
        return int(value)
    return value


def _known_fields(message: Message, value: dict[str, Any]) -> dict[str, Any]:
    """The object with keys that name no field dropped (lua-protobuf skips them), all the way
    down; a JSON ``null`` anywhere is refused (Kong's encoder fails on cjson's null)."""
    out = {}
    for key, item in value.items():
        field = message.by_json.get(key)
        if field is None:
            continue
        out[key] = _known_value(field, item)
    return out


def _known_value(field: Field, item: Any) -> Any:
    if item is None:
        raise RequestError("failed to encode payload")
    if field.map is not None:
        value_field = field.map[1]
        if isinstance(item, dict):
            return {k: _known_value(value_field, v) for k, v in item.items()}
        return item
    inner = field.message
    if inner is None or _known_string(field):
        return _nonnull_list(item)
    if field.repeated and isinstance(item, list):
        return [_known_fields(inner, v) if isinstance(v, dict) else _nonnull(v) for v in item]
    return _known_fields(inner, item) if isinstance(item, dict) else item


def _nonnull_list(item: Any) -> Any:
    if isinstance(item, list) and None in item:
        raise RequestError("failed to encode payload")
    return item


def _nonnull(item: Any) -> Any:
    if item is None:
        raise RequestError("failed to encode payload")
    return item


__all__ = [
    "Binding",
    "Bindings",
    "RequestError",
    "VERBS",
    "build_request",
    "compile_bindings",
    "compile_template",
    "lua_q",
]
