"""request-transformer: rewrite the request before it is proxied.

Kong's ``kong/plugins/request-transformer/{schema,access}.lua``. Parts are transformed in this
order: the URI (``replace.uri``), the method (``http_method``), headers, body, query string.
Within a part, operations run remove -> rename -> replace (only what is present) -> add (only
what is absent) -> append. Values are ``name:value`` pairs whose value may hold templates
(:mod:`._templates`); a template that fails to render ends the request with a 500.

Details kept from Kong:

- the ``headers``/``query_params`` a template reads are the request as it is when the template
  first reads them (client headers plus earlier plugins' edits), then kept for the request;
- ``replace`` of ``host`` sets the upstream Host header; ``add`` never adds ``host``;
- a body is transformed when its ``Content-Type`` (after the header step) is JSON,
  ``application/x-www-form-urlencoded`` or ``multipart/form-data``; remove, rename and replace
  only act on a non-empty body; an unparsable JSON body is sent unchanged;
- a method changed to GET, HEAD or TRACE moves urlencoded body arguments into the query string;
- the query string is rebuilt as ``kong.service.request.set_query`` does: each argument
  URL-encoded, the pieces sorted.

A header given several values (``append``) goes upstream as one header line per value, as in
Kong. fastkong difference: urlencoded bodies keep the order of their arguments.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Final
from urllib.parse import quote

import msgspec
from msgspec import Meta

from fastkong.config import errors as E
from fastkong.config.checks import check_method
from fastkong.plugins.base import Exit, Plugin, kong_error
from fastkong.plugins.bundled._templates import (
    Env,
    HeaderTable,
    Template,
    TemplateError,
    decode_args,
)
from fastkong.plugins.registry import ALL_PROTOCOLS, register_plugin

if TYPE_CHECKING:
    from fastkong.plugins.context import RequestContext
    from fastkong.runtime import Runtime

log = logging.getLogger("fastkong.plugins.request-transformer")

UNEXPECTED: Final = "An unexpected error occurred"
_PAIR = re.compile(r"^([^:]+):*(.*)$", re.DOTALL)
_HEADER_NAME = re.compile(r"^[a-zA-Z0-9\-_]+$")
_UNSAFE_PATH = re.compile(rb"[^!#$&'()*+,/:;=?@\[\]A-Za-z0-9\-_.~%]")


def split_pair(entry: str) -> tuple[str | None, str]:
    """``name:value`` as Kong reads it (``^([^:]+):*(.-)$``); extra leading colons are eaten."""
    m = _PAIR.match(entry)
    return (m.group(1), m.group(2)) if m else (None, "")


# -- schema checks (Kong's custom validators) ----------------------------------------------------


def check_value(entry: str) -> str | None:
    """``check_for_value``: a pair with a non-empty value that is a valid template."""
    name, value = split_pair(entry)
    if name is None:
        return E.MATCH.format(entry)
    if not value:
        return f"key '{name}' has no value"
    try:
        Template(value)
    except TemplateError as exc:
        return f"value '{value}' is not in supported format, error:{exc}"
    return None


def check_header_pair(entry: str) -> str | None:
    """``validate_headers``: the name part must be a valid header name."""
    name, _ = split_pair(entry)
    if name is None or not _HEADER_NAME.match(name):
        return f"'{name}' is not a valid header"
    return None


def check_header_rename(entry: str) -> str | None:
    """``validate_colon_headers``: both names of a rename must be valid header names."""
    bad = check_header_pair(entry)
    if bad:
        return bad
    _, value = split_pair(entry)
    if not _HEADER_NAME.match(value):
        return f"'{value}' is not a valid header"
    return None


_COLON: Final = "^[^:]+:.*$"
HeaderEntry = Annotated[str, Meta(extra={"kong_check": check_header_pair})]
ValueEntry = Annotated[str, Meta(extra={"kong_check": check_value})]
HeaderValueEntry = Annotated[str, Meta(pattern=_COLON, extra={"kong_check": check_header_pair})]
HeaderRenameEntry = Annotated[str, Meta(pattern=_COLON, extra={"kong_check": check_header_rename})]


def _empty() -> list[str]:
    return []


class _Record(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    pass


class Remove(_Record, kw_only=True, frozen=True):
    body: list[str] = msgspec.field(default_factory=_empty)
    headers: list[HeaderEntry] = msgspec.field(default_factory=_empty)
    querystring: list[str] = msgspec.field(default_factory=_empty)


class Rename(_Record, kw_only=True, frozen=True):
    body: list[ValueEntry] = msgspec.field(default_factory=_empty)
    headers: list[HeaderRenameEntry] = msgspec.field(default_factory=_empty)
    querystring: list[ValueEntry] = msgspec.field(default_factory=_empty)


class Edit(_Record, kw_only=True, frozen=True):
    body: list[ValueEntry] = msgspec.field(default_factory=_empty)
    headers: list[HeaderValueEntry] = msgspec.field(default_factory=_empty)
    querystring: list[ValueEntry] = msgspec.field(default_factory=_empty)


class Replace(Edit, kw_only=True, frozen=True):
    uri: str | None = None


class RequestTransformerConfig(_Record, kw_only=True, frozen=True):
    http_method: Annotated[str, Meta(extra={"kong_check": check_method})] | None = None
    remove: Remove = msgspec.field(default_factory=Remove)
    rename: Rename = msgspec.field(default_factory=Rename)
    replace: Replace = msgspec.field(default_factory=Replace)
    add: Edit = msgspec.field(default_factory=Edit)
    append: Edit = msgspec.field(default_factory=Edit)


# -- compiled operations --------------------------------------------------------------------------


class _Broken:
    """A header or URI template Kong only compiles when it is used: it fails every request."""

    __slots__ = ("error", "text")
    static = None

    def __init__(self, text: str, error: TemplateError) -> None:
        self.text = text
        self.error = error

    def render(self, env: Env) -> str:
        raise self.error


Renderer = Template | _Broken
#: One ``name:value`` entry: the name, and the value's template (None for an empty value).
Pair = tuple[str, Renderer | None]


def _template(text: str) -> Renderer:
    try:
        return Template(text)
    except TemplateError as exc:
        return _Broken(text, exc)


def _pairs(entries: list[str]) -> list[Pair]:
    out: list[Pair] = []
    for entry in entries:
        name, value = split_pair(entry)
        if name is not None:
            out.append((name, _template(value) if value else None))
    return out


def _render(template: Renderer | None, env: Env) -> str | None:
    return None if template is None else template.render(env)


class _Ops:
    """remove/rename/replace/add/append of one part (headers, querystring or body)."""

    __slots__ = ("remove", "rename", "replace", "add", "append")

    def __init__(self, config: RequestTransformerConfig, part: str) -> None:
        # Kong reads remove entries as pairs too: "name:anything" removes "name".
        self.remove = [n for n, _ in map(split_pair, getattr(config.remove, part)) if n is not None]
        self.rename = _pairs(getattr(config.rename, part))
        self.replace = _pairs(getattr(config.replace, part))
        self.add = _pairs(getattr(config.add, part))
        self.append = _pairs(getattr(config.append, part))

    def __bool__(self) -> bool:
        return bool(self.remove or self.rename or self.replace or self.add or self.append)


def _append_value(current: Any, value: Any) -> list[Any]:
    if isinstance(current, list):
        current.append(value)
        return current
    if isinstance(current, str):
        return [current, value]
    return [value]


def _truthy(value: Any) -> bool:
    return value is not None and value is not False


def _rename(table: dict[str, Any], old: str, new: str) -> bool:
    if old == new:
        return False
    value = table.get(old)
    if not _truthy(value):
        return False
    del table[old]
    table[new] = value
    return True


# -- encodings ------------------------------------------------------------------------------------


def _escape(text: str) -> str:
    return quote(text, safe="", errors="surrogateescape")


def encode_arg(name: str, value: Any) -> str:
    """``ngx.encode_args({[name] = value})``: lists repeat the name, ``true`` is the bare name."""
    if isinstance(value, list):
        return "&".join(p for p in (encode_arg(name, v) for v in value) if p)
    if value is True:
        return _escape(name)
    if value is None or value is False:
        return ""
    return f"{_escape(name)}={_escape(str(value))}"


def encode_query(args: dict[str, Any]) -> bytes:
    """``kong.service.request.set_query``: every argument encoded, the pieces sorted."""
    pieces = sorted(p for p in (encode_arg(k, v) for k, v in args.items()) if p)
    return "&".join(pieces).encode("ascii")


def encode_form(args: dict[str, Any]) -> bytes:
    return "&".join(p for p in (encode_arg(k, v) for k, v in args.items()) if p).encode("ascii")


def escape_path(path: str) -> str:
    """``kong.tools.uri.escape``: bytes outside the URI character set become ``%XX``."""
    data = path.encode("utf-8", "surrogateescape")
    return _UNSAFE_PATH.sub(lambda m: b"%%%02X" % m.group()[0], data).decode("ascii")


def _content_kind(content_type: str | None) -> str | None:
    if content_type is None:
        return None
    lowered = content_type.lower()
    if "application/json" in lowered:
        return "json"
    if "multipart/form-data" in lowered:
        return "multipart"
    if "application/x-www-form-urlencoded" in lowered:
        return "form"
    return None


# -- multipart (Kong's lua-multipart: simple parts are rebuilt as name/value) ----------------------

_BOUNDARY = re.compile(r"""boundary=(?:"([^"]+)"|([^;\s]+))""", re.IGNORECASE)
_PART_NAME = re.compile(rb'content-disposition:[^\r\n]*?\bname="([^"]*)"', re.IGNORECASE)


class Multipart:
    """The parts of a ``multipart/form-data`` body, by name, in order."""

    __slots__ = ("boundary", "parts")

    def __init__(self, body: bytes, boundary: bytes) -> None:
        self.boundary = boundary
        #: ``[name, head, value]``: head is the part's header block (without the blank line).
        self.parts: list[list[Any]] = []
        delimiter = b"--" + boundary
        for chunk in body.split(delimiter)[1:]:
            if chunk.startswith(b"--"):
                break
            chunk = chunk[2:] if chunk.startswith(b"\r\n") else chunk
            chunk = chunk[:-2] if chunk.endswith(b"\r\n") else chunk
            head, _, value = chunk.partition(b"\r\n\r\n")
            m = _PART_NAME.search(head)
            self.parts.append([m.group(1).decode("latin-1") if m else "", head, value])

    def __repr__(self) -> str:
        return f"<Multipart {[p[0] for p in self.parts]}>"

    def get(self, name: str) -> list[Any] | None:
        return next((p for p in self.parts if p[0] == name), None)

    def delete(self, name: str) -> None:
        self.parts = [p for p in self.parts if p[0] != name]

    def set_simple(self, name: str, value: bytes) -> None:
        head = b'Content-Disposition: form-data; name="' + name.encode("utf-8") + b'"'
        part = self.get(name)
        if part is not None:
            part[1], part[2] = head, value
        else:
            self.parts.append([name, head, value])

    def encode(self) -> bytes:
        delimiter = b"--" + self.boundary
        out = [
            delimiter + b"\r\n" + head + b"\r\n\r\n" + value + b"\r\n"
            for _, head, value in self.parts
        ]
        return b"".join(out) + delimiter + b"--\r\n"


# -- the plugin -----------------------------------------------------------------------------------


@register_plugin
class RequestTransformer(Plugin):
    name = "request-transformer"
    priority = 801
    allowed_protocols = ALL_PROTOCOLS
    Config = RequestTransformerConfig

    def __init__(self, config: RequestTransformerConfig, runtime: Runtime, entity: Any) -> None:
        super().__init__(config, runtime, entity)
        self.uri = _template(config.replace.uri) if config.replace.uri is not None else None
        self.method = config.http_method.upper() if config.http_method else None
        self.header_ops = _Ops(config, "headers")
        self.query_ops = _Ops(config, "querystring")
        self.body_ops = _Ops(config, "body")

    async def access(self, ctx: RequestContext) -> Exit | None:
        env = Env(
            {
                "headers": lambda: _current_headers(ctx),
                "query_params": lambda: _current_query(ctx),
                "uri_captures": lambda: ctx.match.captures or {},
                "shared": lambda: ctx.shared,
            }
        )
        try:
            if self.uri is not None:
                path = self.uri.render(env)
                if not path.startswith("/"):
                    raise TemplateError("path must start with /")
                ctx.upstream_path = escape_path(path)
            if self.method is not None:
                await self._method(ctx)
            content_type = _current_header(ctx, "content-type")
            if self.header_ops:
                content_type = self._headers(ctx, env)
            if self.body_ops:
                await self._body(ctx, env, content_type)
            if self.query_ops:
                self._query(ctx, env)
        except TemplateError as exc:
            log.error(
                "[request-transformer] failed to render the template %s, error:%s",
                exc.template if exc.template is not None else "",
                exc,
            )
            return kong_error(500, UNEXPECTED)
        return None

    async def _method(self, ctx: RequestContext) -> None:
        method = self.method
        assert method is not None
        ctx.upstream_method = method
        if method not in ("GET", "HEAD", "TRACE"):
            return
        if _content_kind(_current_header(ctx, "content-type")) != "form":
            return
        params = decode_args(_text(await ctx.read_body()))
        if not params:
            return
        query = _current_query(ctx)
        for name, value in params.items():
            if name in query:
                current = query[name]
                query[name] = (current if isinstance(current, list) else [current]) + (
                    value if isinstance(value, list) else [value]
                )
            else:
                query[name] = value
        ctx.upstream_query = encode_query(query)

    def _headers(self, ctx: RequestContext, env: Env) -> str | None:
        """Edit the upstream headers; returns the Content-Type the request then has."""
        ops = self.header_ops
        headers = _current_headers(ctx)
        headers.pop("host", None)
        changed: set[str] = set()
        removed: set[str] = set()
        for name in ops.remove:
            key = name.lower()
            if key in headers:
                del headers[key]
                removed.add(key)
        for old, new in ops.rename:
            new_name = _render(new, env)
            if new_name is None:
                continue
            old_key, new_key = old.lower(), new_name.lower()
            if old_key != new_key and _rename(headers, old_key, new_key):
                removed.add(old_key)
                changed.add(new_key)
        for name, template in ops.replace:
            key = name.lower()
            value = _render(template, env)
            if (key in headers or key == "host") and value is not None:
                headers[key] = value
                changed.add(key)
        for name, template in ops.add:
            key = name.lower()
            value = _render(template, env)
            if key not in headers and key != "host" and value is not None:
                headers[key] = value
                changed.add(key)
        for name, template in ops.append:
            key = name.lower()
            value = _render(template, env)
            if key == "host" or value is None:
                continue
            current = headers.get(key)
            headers[key] = _append_value(
                list(current) if isinstance(current, list) else current, value
            )
            changed.add(key)
        for key in removed - headers.keys():
            ctx.clear_upstream_header(key)
        for key in changed & headers.keys():
            value = headers[key]
            if isinstance(value, list):
                ctx.set_upstream_header(key, [_wire(v) for v in value])
            else:
                ctx.set_upstream_header(key, _wire(value))
        content_type = headers.get("content-type")
        return content_type[0] if isinstance(content_type, list) else content_type

    async def _body(self, ctx: RequestContext, env: Env, content_type: str | None) -> None:
        kind = _content_kind(content_type)
        if kind is None:
            return
        body = await ctx.read_body()
        if kind == "json":
            new = self._json(body, env)
        elif kind == "form":
            new = self._form(body, env)
        else:
            assert content_type is not None
            new = self._multipart(body, env, content_type)
        if new is not None:
            ctx.body = new

    def _edit_table(
        self, params: dict[str, Any], has_body: bool, env: Env, add_if: Callable[[Any], bool]
    ) -> bool:
        """The body ops on a decoded JSON object or form; True when anything was applied."""
        ops = self.body_ops
        done = False
        if has_body:
            for name in ops.remove:
                params.pop(name, None)
                done = True
            for old, new in ops.rename:
                new_name = _render(new, env)
                if new_name is not None and _rename(params, old, new_name):
                    done = True
            for name, template in ops.replace:
                if _truthy(params.get(name)):
                    params[name] = _render(template, env)
                    done = True
        for name, template in ops.add:
            if add_if(params.get(name)):
                params[name] = _render(template, env)
                done = True
        for name, template in ops.append:
            params[name] = _append_value(params.get(name), _render(template, env))
            done = True
        return done

    def _json(self, body: bytes, env: Env) -> bytes | None:
        if body:
            try:
                params = msgspec.json.decode(body)
            except msgspec.DecodeError:
                return None
            if not isinstance(params, dict):
                return None
        else:
            params = {}
        if self._edit_table(params, bool(body), env, lambda v: not _truthy(v)):
            return msgspec.json.encode(params)
        return None

    def _form(self, body: bytes, env: Env) -> bytes | None:
        params = decode_args(_text(body)) if body else {}
        if self._edit_table(params, bool(body), env, lambda v: v is None):
            return encode_form(params)
        return None

    def _multipart(self, body: bytes, env: Env, content_type: str) -> bytes | None:
        m = _BOUNDARY.search(content_type)
        if m is None:
            return None
        parts = Multipart(body, (m.group(1) or m.group(2)).encode("latin-1"))
        ops = self.body_ops
        done = False
        if body:
            for old, new in ops.rename:
                new_name = _render(new, env)
                part = parts.get(old)
                if part is not None and new_name is not None and old != new_name:
                    parts.set_simple(new_name, part[2])
                    parts.delete(old)
                    done = True
            for name in ops.remove:
                parts.delete(name)
                done = True
            for name, template in ops.replace:
                if parts.get(name) is not None:
                    parts.delete(name)
                    parts.set_simple(name, (_render(template, env) or "").encode("utf-8"))
                    done = True
        for name, template in ops.add:
            if parts.get(name) is None:
                parts.set_simple(name, (_render(template, env) or "").encode("utf-8"))
                done = True
        return parts.encode() if done else None

    def _query(self, ctx: RequestContext, env: Env) -> None:
        ops = self.query_ops
        source = env.lookup("query_params")
        query = {k: list(v) if isinstance(v, list) else v for k, v in source.items()}
        for name in ops.remove:
            query.pop(name, None)
        for old, new in ops.rename:
            new_name = _render(new, env)
            if new_name is not None:
                _rename(query, old, new_name)
        for name, template in ops.replace:
            if _truthy(query.get(name)):
                query[name] = _render(template, env)
        for name, template in ops.add:
            if not _truthy(query.get(name)):
                query[name] = _render(template, env)
        for name, template in ops.append:
            query[name] = _append_value(query.get(name), _render(template, env))
        ctx.upstream_query = encode_query(query)


def _current_headers(ctx: RequestContext) -> HeaderTable:
    """The request headers as ``kong.request.get_headers`` sees them now (with earlier edits).

    Values are text in the plugin's one convention: UTF-8, with other bytes kept as lone
    surrogates, so that values from headers, the query and the config mix and go back to bytes
    unchanged (Kong handles them all as bytes)."""
    table = HeaderTable()
    for name, values in ctx.headers.items():
        if values:
            texts = [_from_wire(v) for v in values]
            table[name] = texts[0] if len(texts) == 1 else texts
    for key in ctx.upstream_remove:
        table.pop(key.decode("latin-1"), None)
    for key, value in ctx.upstream_set.items():
        if isinstance(value, list):
            table[key.decode("latin-1")] = [_text(v) for v in value]
        else:
            table[key.decode("latin-1")] = _text(value)
    return table


def _current_header(ctx: RequestContext, name: str) -> str | None:
    key = name.encode("latin-1")
    if key in ctx.upstream_remove:
        return None
    value = ctx.upstream_set.get(key)
    if isinstance(value, list):
        return _text(value[0]) if value else None
    if value is not None:
        return _text(value)
    found = ctx.header(name)
    return _from_wire(found) if found is not None else None


def _current_query(ctx: RequestContext) -> dict[str, Any]:
    raw = ctx.upstream_query if ctx.upstream_query is not None else ctx.query_string
    return decode_args(_text(raw))


def _text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def _from_wire(value: str) -> str:
    """A header value as the PDK gives it (latin-1 text of its bytes) -> the UTF-8 convention."""
    if value.isascii():
        return value
    return value.encode("latin-1").decode("utf-8", "surrogateescape")


def _wire(value: str) -> str:
    """A header value as the latin-1 text of its UTF-8 bytes (what goes on the wire)."""
    if value.isascii():
        return value
    return value.encode("utf-8", "surrogateescape").decode("latin-1")
