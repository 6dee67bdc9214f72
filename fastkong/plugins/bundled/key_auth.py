"""key-auth: an API key in a header, the query string or the body (``kong:kong/plugins/key-auth``).

For each name of ``key_names`` in order, the key is looked up in the headers, then the query,
then (``key_in_body``) a form, JSON or multipart body; the first name that gives a string wins,
and a name given twice is ``Duplicate API key found``. Failures are 401 with
``WWW-Authenticate: Key`` (``Key realm="..."`` when ``realm`` is set).

``ttl``: as in Kong's DB-less and hybrid modes, a credential's ``ttl`` is the Unix time (s) at
which it expires (Kong's export writes it so, and its LMDB reader drops a credential once
``ttl - now <= 0``); a small number such as ``ttl: 3600`` is therefore long past, and a key
with it is ``Unauthorized``, as in Kong.
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Annotated, Any, Final

import msgspec

from fastkong.config.schema import HeaderName
from fastkong.plugins.base import REQUIRED, Exit, kong_error
from fastkong.plugins.bundled._consumer import (
    AuthPlugin,
    Flag,
    args_without,
    parse_args,
    set_consumer,
    unescape,
    wire,
)
from fastkong.plugins.registry import register_plugin

if TYPE_CHECKING:
    from fastkong.plugins.context import RequestContext
    from fastkong.runtime import Runtime

ERR_DUPLICATE_API_KEY: Final = "Duplicate API key found"
ERR_NO_API_KEY: Final = "No API key found in request"
ERR_INVALID_AUTH_CRED: Final = "Unauthorized"


class KeyAuthConfig(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    key_names: Annotated[list[HeaderName], REQUIRED] = msgspec.field(
        default_factory=lambda: ["apikey"]
    )
    hide_credentials: Annotated[bool, REQUIRED] = False
    anonymous: str | None = None
    key_in_header: Annotated[bool, REQUIRED] = True
    key_in_query: Annotated[bool, REQUIRED] = True
    key_in_body: Annotated[bool, REQUIRED] = False
    run_on_preflight: Annotated[bool, REQUIRED] = True
    realm: str | None = None


class _Duplicate:
    """A name given more than once (Lua sees a table)."""

    __slots__ = ()


class _Other:
    """A value that is there but not a string (a flag, a number, null): Kong skips the name."""

    __slots__ = ()


DUPLICATE: Final = _Duplicate()
OTHER: Final = _Other()
Found = str | _Duplicate | _Other | None


def _one(values: list[Any] | None) -> Found:
    if values is None:
        return None
    if len(values) > 1:
        return DUPLICATE
    value = values[0]
    return OTHER if isinstance(value, Flag) else value


# -- credentials -------------------------------------------------------------------------------
def _credentials(runtime: Runtime) -> dict[str, tuple[Any, float | None]]:
    """Wire key -> (credential, expiry time or None), once per snapshot."""
    found: dict[str, tuple[Any, float | None]] = {}
    config = runtime.config
    if config is None:
        return found
    for cred in config.keyauth_credentials:
        found[wire(cred.key)] = (cred, cred.ttl)
    return found


# -- bodies (kong.request.get_body / kong.service.request.set_body) ----------------------------
_BOUNDARY: Final = re.compile(r'boundary=(?:"([^"]*)"|([^;\s]+))', re.IGNORECASE)
_PART_NAME: Final = re.compile(rb'(?:^|;)\s*name="([^"]*)"|(?:^|;)\s*name=([^;\s]*)', re.IGNORECASE)


class _Body:
    """A parsed request body: the key lookup and the body without a given name.

    Removing a key keeps every other byte of a form or multipart body as it came (Kong
    re-serializes them in sorted order); a JSON body is re-encoded, as in Kong.
    """

    __slots__ = ("kind", "raw", "values", "data", "parts")

    def __init__(self, kind: str, raw: bytes) -> None:
        self.kind = kind
        self.raw = raw
        self.values: dict[str, list[Any]] = {}
        self.data: Any = None
        #: multipart: (name, start, end) spans of the raw body, one per part.
        self.parts: list[tuple[str | None, int, int]] = []

    def get(self, name: str) -> Found:
        if self.kind == "json":
            if not isinstance(self.data, dict) or name not in self.data:
                return None
            value = self.data[name]
            if isinstance(value, str):
                return wire(value)
            return DUPLICATE if isinstance(value, (list, dict)) else OTHER
        return _one(self.values.get(name))

    def without(self, name: str) -> bytes | None:
        """The body without ``name``; None when nothing changes."""
        if name not in self.values and not (isinstance(self.data, dict) and name in self.data):
            return None
        if self.kind == "json":
            data = {k: v for k, v in self.data.items() if k != name}
            return msgspec.json.encode(data)
        if self.kind == "form":
            text = self.raw.decode("latin-1")
            kept = [p for p in text.split("&") if p and _form_key(p) != name]
            return "&".join(kept).encode("latin-1")
        out = bytearray()
        cursor = 0
        for part, start, end in self.parts:
            if part == name:
                out += self.raw[cursor:start]
                cursor = end
        out += self.raw[cursor:]
        return bytes(out)


def _form_key(part: str) -> str:
    return unescape(part.partition("=")[0])


EMPTY_BODY: Final = _Body("none", b"")


def _content_kind(content_type: str | None) -> str | None:
    if content_type is None:
        return None
    kind = content_type.lower().partition(";")[0]
    if kind.startswith("application/x-www-form-urlencoded"):
        return "form"
    if kind.startswith("application/json"):
        return "json"
    if kind.startswith("multipart/form-data"):
        return "multipart"
    return None


def parse_body(content_type: str | None, raw: bytes) -> _Body:
    """Kong's ``get_body``: an unsupported or broken body holds no key (``EMPTY``)."""
    kind = _content_kind(content_type)
    if kind is None:
        return EMPTY_BODY
    body = _Body(kind, raw)
    if kind == "form":
        body.values = dict(parse_args(raw.decode("latin-1")))
    elif kind == "json":
        try:
            body.data = msgspec.json.decode(raw)
        except msgspec.DecodeError:
            return EMPTY_BODY
        if not isinstance(body.data, (dict, list)):
            return EMPTY_BODY
    else:
        assert content_type is not None
        m = _BOUNDARY.search(content_type)
        if m is None or not _parse_multipart(body, (m.group(1) or m.group(2)).encode("latin-1")):
            return EMPTY_BODY
    return body


def _parse_multipart(body: _Body, boundary: bytes) -> bool:
    raw = body.raw
    delimiter = b"--" + boundary
    start = raw.find(delimiter)
    if start < 0 or not boundary:
        return False
    while True:
        after = start + len(delimiter)
        if raw.startswith(b"--", after):
            return True  # the closing delimiter
        line_end = raw.find(b"\r\n", after)
        if line_end < 0:
            return False
        nxt = raw.find(b"\r\n" + delimiter, line_end)
        if nxt < 0:
            return False
        head, _, content = raw[line_end + 2 : nxt].partition(b"\r\n\r\n")
        name = _part_name(head)
        if name is not None:
            body.values.setdefault(name, []).append(content.decode("latin-1"))
        body.parts.append((name, start, nxt + 2))
        start = nxt + 2


def _part_name(head: bytes) -> str | None:
    for line in head.split(b"\r\n"):
        key, _, value = line.partition(b":")
        if key.strip().lower() == b"content-disposition":
            m = _PART_NAME.search(value)
            if m is not None:
                name = m.group(1) if m.group(1) is not None else m.group(2)
                return name.decode("latin-1")
    return None


# -- the plugin --------------------------------------------------------------------------------
@register_plugin
class KeyAuth(AuthPlugin):
    name = "key-auth"
    priority = 1250
    Config = KeyAuthConfig

    def __init__(self, config: KeyAuthConfig, runtime: Runtime, entity: Any) -> None:
        super().__init__(config, runtime, entity)
        self.hide = config.hide_credentials
        self.in_header = config.key_in_header
        self.in_query = config.key_in_query
        self.in_body = config.key_in_body
        #: (name, header names to look at): Kong's header lookup is case-insensitive and an
        #: underscore in the name also finds a hyphenated header.
        self.names: tuple[tuple[str, tuple[str, ...]], ...] = tuple(
            (name, _header_names(name)) for name in config.key_names
        )
        realm = f'Key realm="{config.realm}"' if config.realm is not None else "Key"
        self.www_authenticate = (b"www-authenticate", realm.encode("utf-8"))
        self.credentials = runtime.index("key-auth:credentials", _credentials)

    def unauthorized(self, message: str) -> Exit:
        return kong_error(401, message, [self.www_authenticate])

    async def authenticate(self, ctx: RequestContext) -> Exit | None:
        key: str | None = None
        query: dict[str, list[str | Flag]] | None = None
        body: _Body | None = None
        headers = ctx.headers
        for name, header_names in self.names:
            found: Found = None
            if self.in_header:
                for header in header_names:
                    found = _one(headers.get(header))
                    if found is not None:
                        break
            if found is None and self.in_query:
                if query is None:
                    query = parse_args(ctx.query_string.decode("latin-1"))
                found = _one(query.get(name))
            if found is None and self.in_body:
                if body is None:
                    body = await self.read_body(ctx)
                found = body.get(name)
            if isinstance(found, str):
                key = found
                if self.hide:
                    await self.hide_key(ctx, name, header_names, body)
                break
            if found is DUPLICATE:
                return self.unauthorized(ERR_DUPLICATE_API_KEY)

        if not key:
            return self.unauthorized(ERR_NO_API_KEY)
        hit = self.credentials.get(key)
        if hit is None:
            return self.unauthorized(ERR_INVALID_AUTH_CRED)
        credential, expires = hit
        if expires is not None and time.time() >= expires:
            return self.unauthorized(ERR_INVALID_AUTH_CRED)
        consumer = self.runtime.consumers.get(credential.consumer)
        set_consumer(ctx, consumer, credential, credential.id)
        return None

    async def read_body(self, ctx: RequestContext) -> _Body:
        content_type = ctx.header("content-type")
        if _content_kind(content_type) is None:
            return EMPTY_BODY  # Kong does not read a body it cannot decode
        return parse_body(content_type, await ctx.read_body())

    async def hide_key(
        self, ctx: RequestContext, name: str, header_names: tuple[str, ...], body: _Body | None
    ) -> None:
        """``hide_credentials``: the key leaves the query, the headers and the body."""
        raw_query = (
            ctx.upstream_query if ctx.upstream_query is not None else ctx.query_string
        ).decode("latin-1")
        if raw_query:
            rewritten = args_without(raw_query, name)
            if rewritten is not None:
                ctx.upstream_query = rewritten.encode("latin-1")
        for header in header_names:
            ctx.clear_upstream_header(header)
        if self.in_body:
            if body is None:
                body = await self.read_body(ctx)
            stripped = body.without(name)
            if stripped is not None:
                ctx.body = stripped


def _header_names(name: str) -> tuple[str, ...]:
    lower = name.lower()
    hyphenated = lower.replace("_", "-")
    return (lower, hyphenated) if hyphenated != lower else (lower,)
