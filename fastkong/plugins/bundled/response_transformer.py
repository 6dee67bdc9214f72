"""response-transformer: rewrite response headers and JSON response bodies.

Kong's ``kong/plugins/response-transformer/{schema,handler,header_transformer,body_transformer}
.lua``. Operations run remove -> rename -> replace -> add -> append, on headers in the response
hook and on the top-level keys of a JSON body in the body hook.

Headers: rename, replace and add test the headers as they were when the hook started (rename
moves every value; replace needs the header present, add needs it absent); append always adds
another value.

JSON bodies (``application/json`` or any ``+json`` type, as the ``Content-Type`` stands after
the header edits) are buffered to the end, decoded, edited and re-encoded, and
``Content-Length`` is removed (also when only the upstream's type was JSON, as in Kong).
``json_types`` gives, entry by entry, the type of the value written: ``string`` (default),
``number`` (a value that is not a number is skipped) or ``boolean`` (``true`` is true, anything
else false). As in Kong, replace only touches a key whose value is not ``false``, and add
writes a key that is missing or ``false``. A body that is not a JSON object goes out unchanged.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal

import msgspec
from msgspec import Meta

from fastkong.plugins.base import REQUIRED, Plugin
from fastkong.plugins.registry import register_plugin

if TYPE_CHECKING:
    from fastkong.plugins.context import RequestContext
    from fastkong.runtime import Runtime

Headers = list[tuple[bytes, bytes]]
JsonType = Literal["boolean", "number", "string"]

_PAIR = re.compile(r"^([^:]+):*(.*)$", re.DOTALL)
_HEADER_NAME = re.compile(r"^[a-zA-Z0-9\-_]+$")
_COLON: Final = "^[^:]+:.*$"
_NUMBER = re.compile(r"\s*(?:0[xX][0-9a-fA-F]+|[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*")
_MIME = re.compile(r"^\s*([!#$%&'*+\-.^_`|~0-9A-Za-z]+)/([!#$%&'*+\-.^_`|~0-9A-Za-z]+)\s*(;|$)")
_CONTENT_TYPE: Final = b"content-type"
_CONTENT_LENGTH: Final = b"content-length"
#: Marks, in ``ctx.plugin_data``, a response whose body this plugin buffers and transforms.
_BUFFER: Final = "response-transformer"


def split_pair(entry: str) -> tuple[str, str | None]:
    """``name:value`` as Kong reads it; an empty value is None."""
    m = _PAIR.match(entry)
    if m is None:
        return entry, None
    return m.group(1), m.group(2) or None


def check_header_rename(entry: str) -> str | None:
    """``validate_colon_headers``: both names of a rename must be valid header names."""
    name, value = split_pair(entry)
    for part in (name, value or ""):
        if not _HEADER_NAME.match(part):
            return f"'{part}' is not a valid header"
    return None


ColonEntry = Annotated[str, Meta(pattern=_COLON)]
HeaderRenameEntry = Annotated[str, Meta(pattern=_COLON, extra={"kong_check": check_header_rename})]


def _empty() -> list[Any]:
    return []


class _Record(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    pass


class Remove(_Record, kw_only=True, frozen=True):
    json: list[str] = msgspec.field(default_factory=_empty)
    headers: list[str] = msgspec.field(default_factory=_empty)


class Rename(_Record, kw_only=True, frozen=True):
    json: list[ColonEntry] = msgspec.field(default_factory=_empty)
    headers: list[HeaderRenameEntry] = msgspec.field(default_factory=_empty)


class Edit(_Record, kw_only=True, frozen=True):
    json: list[ColonEntry] = msgspec.field(default_factory=_empty)
    json_types: Annotated[list[JsonType], REQUIRED] = msgspec.field(default_factory=_empty)
    headers: list[ColonEntry] = msgspec.field(default_factory=_empty)


class ResponseTransformerConfig(_Record, kw_only=True, frozen=True):
    remove: Remove = msgspec.field(default_factory=Remove)
    rename: Rename = msgspec.field(default_factory=Rename)
    replace: Edit = msgspec.field(default_factory=Edit)
    add: Edit = msgspec.field(default_factory=Edit)
    append: Edit = msgspec.field(default_factory=Edit)


def is_json_body(content_type: str | None) -> bool:
    """Kong's ``is_json_body``: some comma-separated media type is ``application/json`` or
    ``application/<anything>+json``."""
    if not content_type:
        return False
    for item in content_type.split(","):
        m = _MIME.match(item)
        if m is None:
            continue
        kind, subtype = m.group(1).lower(), m.group(2).lower()
        if kind == "application" and (subtype == "json" or subtype.endswith("+json")):
            return True
    return False


_MISSING: Final = object()


def json_value(value: str, json_type: str | None) -> Any:
    """Kong's ``json_value``: the config text as written into the body (``_MISSING``: skip)."""
    # Kong JSON-encodes the text, strips the quotes and unescapes \" and \/ again.
    text = json.dumps(value, ensure_ascii=False)[1:-1].replace('\\"', '"')
    if json_type == "number":
        if not _NUMBER.fullmatch(text):
            return _MISSING
        stripped = text.strip()
        if stripped[:2].lower() == "0x":
            return int(stripped, 16)
        number = float(stripped)
        return int(number) if number.is_integer() and abs(number) < 2**53 else number
    if json_type == "boolean":
        return text == "true"
    return text


def _headers_dict(headers: Headers) -> dict[bytes, list[bytes]]:
    found: dict[bytes, list[bytes]] = {}
    for name, value in headers:
        found.setdefault(name, []).append(value)
    return found


def _clear(headers: Headers, name: bytes) -> None:
    if any(h[0] == name for h in headers):
        headers[:] = [h for h in headers if h[0] != name]


def _set(headers: Headers, name: bytes, values: list[bytes]) -> None:
    _clear(headers, name)
    headers.extend((name, v) for v in values)


def _header_pairs(entries: list[str]) -> list[tuple[bytes, bytes | None]]:
    out = []
    for entry in entries:
        name, value = split_pair(entry)
        out.append((name.lower().encode("latin-1"), value.encode("latin-1") if value else None))
    return out


def _json_pairs(edit: Edit) -> list[tuple[str, Any]]:
    out = []
    for i, entry in enumerate(edit.json):
        name, value = split_pair(entry)
        if value is None:
            continue
        kind = edit.json_types[i] if i < len(edit.json_types) else None
        converted = json_value(value, kind)
        if converted is not _MISSING:
            out.append((name, converted))
    return out


@register_plugin
class ResponseTransformer(Plugin):
    name = "response-transformer"
    priority = 800
    Config = ResponseTransformerConfig

    def __init__(self, config: ResponseTransformerConfig, runtime: Runtime, entity: Any) -> None:
        super().__init__(config, runtime, entity)
        # Remove entries are read as pairs too: "name:anything" removes "name".
        self.remove_headers = [
            split_pair(e)[0].lower().encode("latin-1") for e in config.remove.headers
        ]
        self.rename_headers = _header_pairs(config.rename.headers)
        self.replace_headers = _header_pairs(config.replace.headers)
        self.add_headers = _header_pairs(config.add.headers)
        self.append_headers = _header_pairs(config.append.headers)
        self.remove_json = [split_pair(e)[0] for e in config.remove.json]
        self.rename_json = [split_pair(e) for e in config.rename.json]
        self.replace_json = _json_pairs(config.replace)
        self.add_json = _json_pairs(config.add)
        self.append_json = _json_pairs(config.append)
        self.transforms_body = bool(
            config.remove.json
            or config.rename.json
            or config.replace.json
            or config.add.json
            or config.append.json
        )

    def response(self, ctx: RequestContext, status: int, headers: Headers) -> None:
        before = _headers_dict(headers)
        for name in self.remove_headers:
            _clear(headers, name)
        for old, new in self.rename_headers:
            values = before.get(old)
            if values is not None and new is not None:
                _set(headers, new, values)
                _clear(headers, old)
        for name, value in self.replace_headers:
            if name in before and value is not None:
                _set(headers, name, [value])
        for name, value in self.add_headers:
            if name not in before and value is not None:
                _set(headers, name, [value])
        for name, value in self.append_headers:
            if value is not None:
                headers.append((name, value))
        if self.transforms_body:
            # Kong drops Content-Length when the upstream's type was JSON, then its body filter
            # transforms when the type sent (after the edits above) is JSON.
            content_type = before.get(_CONTENT_TYPE)
            if content_type and is_json_body(content_type[0].decode("latin-1")):
                _clear(headers, _CONTENT_LENGTH)
            sent = next((v for n, v in headers if n == _CONTENT_TYPE), None)
            if sent is not None and is_json_body(sent.decode("latin-1")):
                _clear(headers, _CONTENT_LENGTH)  # a body that may change size: never stale
                ctx.plugin_data[_BUFFER] = []

    def body(self, ctx: RequestContext, chunk: bytes, last: bool) -> bytes:
        buffered: list[bytes] | None = ctx.plugin_data.get(_BUFFER)
        if buffered is None:
            return chunk
        buffered.append(chunk)
        if not last:
            return b""
        data = b"".join(buffered)
        buffered.clear()
        return self.transform_json(data)

    def transform_json(self, data: bytes) -> bytes:
        """The body with the JSON edits applied; unchanged if it is not a JSON object."""
        try:
            body = msgspec.json.decode(data)
        except msgspec.DecodeError:
            return data
        if not isinstance(body, dict):
            return data
        for name in self.remove_json:
            body.pop(name, None)
        # Lua truthiness, with JSON null (cjson.null) a truthy value: replace needs the key
        # present and not false, add needs it missing or false.
        for old, new in self.rename_json:
            if new is not None and old in body:
                body[new] = body.pop(old)
        for name, value in self.replace_json:
            if name in body and body[name] is not False:
                body[name] = value
        for name, value in self.add_json:
            if body.get(name, False) is False:
                body[name] = value
        for name, value in self.append_json:
            current = body.get(name)
            if isinstance(current, list):
                current.append(value)
            elif isinstance(current, str):
                body[name] = [current, value]
            else:
                body[name] = [value]
        return msgspec.json.encode(body)
