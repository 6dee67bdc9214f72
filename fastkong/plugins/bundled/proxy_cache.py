"""proxy-cache: responses cached in memory (``kong:kong/plugins/proxy-cache``), priority 100.

**Key.** Kong's ``cache_key.lua``: the SHA-256 hex of
``<prefix>|<method>|<uri>|<query>|<headers>`` where the prefix is ``<consumer id>:<route id>``
(or the route id without a consumer), ``<uri>`` is nginx's ``$request`` with everything from the
first ``?`` cut off (so ``GET /a HTTP/1.1`` without a query, ``GET /a`` with one), ``<query>``
the ``vary_query_params`` (all arguments, sorted, when unset) as ``name=value`` joined by ``:``
(a repeated name's values sorted and joined by ``,``, a bare name as itself) and ``<headers>``
the ``vary_headers`` the same way (none when unset). ``ignore_uri_case`` lower-cases the uri.

**Flow.** ``access`` checks the method and (``cache_control``) the request's ``no-store`` /
``no-cache``, computes the key and looks it up: a fresh entry is answered from memory
(``X-Cache-Status: Hit``, ``Age``; ages count whole seconds, as Kong's ``ngx.time()``); a
stale one (older than ``cache_ttl``, or failing the request's ``max-age``/``max-stale``/
``min-fresh``) is ``Refresh``, a missing one ``Miss``, and both go upstream;
``only-if-cached`` without an entry is 504. The ``response`` hook decides whether the
upstream's answer may be stored (``response_code``, ``content_type`` compared as media types,
and with ``cache_control`` the response's ``private``/``no-store``/``no-cache`` and
its ``s-maxage``/``max-age``/``Expires`` TTL), else ``Bypass``; the ``body`` hook collects the
body and stores it for ``storage_ttl`` (else the Cache-Control TTL, else ``cache_ttl``) seconds.
``X-Cache-Status``, ``X-Cache-Key`` and ``Age`` are sent when ``response_headers`` enables them
or the request carries a ``Kong-Debug`` header.

**Store.** The ``memory`` strategy is a per-worker LRU store per ``memory.dictionary_name``,
bounded to :data:`DEFAULT_CAPACITY` bytes (an entry larger than a quarter of it is not cached).
Kong's shared dict is per node; with several Granian workers each worker fills its own copy, so
the first request for a key misses once per worker. Stores survive config reloads, as a shared
dict does.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections import OrderedDict
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal

import msgspec
from msgspec import Meta

from fastkong import __version__, metrics
from fastkong.plugins.base import REQUIRED, Exit, Plugin, kong_exit
from fastkong.plugins.bundled._serializer import kong_query
from fastkong.plugins.registry import ALL_PROTOCOLS, register_plugin

if TYPE_CHECKING:
    from fastkong.plugins.context import RequestContext
    from fastkong.runtime import Runtime

CACHE_VERSION: Final = 1
DEFAULT_CAPACITY: Final = 32 * 1024 * 1024
#: The per-entry overhead counted against the capacity besides headers and body.
_ENTRY_OVERHEAD: Final = 256
_VIA: Final = b"1.1 fastkong/" + __version__.encode()
_RATELIMIT_REMAINING: Final = re.compile(rb"ratelimit-remaining")
# Headers a cached response never replays: hop-by-hop ones and content-length (Kong's list),
# plus what the gateway sets afresh on every response.
_NOT_REPLAYED: Final = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
        b"content-length",
        b"age",
        b"x-cache-status",
        b"x-cache-key",
        b"server",
        b"date",
        b"via",
        b"x-kong-request-id",
        b"x-kong-upstream-latency",
        b"x-kong-proxy-latency",
        b"x-kong-response-latency",
    }
)
_DIRECTIVE: Final = re.compile(r"^\s*([^=]+)(?:=(.+))?")
_TOKEN: Final = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_MEDIA_TYPE: Final = re.compile(rf"^({_TOKEN})/({_TOKEN})$|^\*$")
_PARAM: Final = re.compile(rf'\s*;\s*({_TOKEN})=({_TOKEN}|"(?:[^"\\]|\\.)*")')


class ResponseHeaders(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    age: bool = True
    x_cache_status: bool = msgspec.field(default=True, name="X-Cache-Status")
    x_cache_key: bool = msgspec.field(default=True, name="X-Cache-Key")


class Memory(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    dictionary_name: Annotated[str, REQUIRED] = "kong_db_cache"


class ProxyCacheConfig(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    strategy: Literal["memory"]
    response_code: Annotated[
        list[Annotated[int, Meta(ge=100, le=900)]], Meta(min_length=1), REQUIRED
    ] = msgspec.field(default_factory=lambda: [200, 301, 404])
    request_method: Annotated[list[Literal["HEAD", "GET", "POST", "PATCH", "PUT"]], REQUIRED] = (
        msgspec.field(default_factory=lambda: ["GET", "HEAD"])
    )
    content_type: Annotated[list[str], REQUIRED] = msgspec.field(
        default_factory=lambda: ["text/plain", "application/json"]
    )
    cache_ttl: Annotated[int, Meta(gt=0)] = 300
    cache_control: Annotated[bool, REQUIRED] = False
    ignore_uri_case: bool = False
    storage_ttl: int | None = None
    memory: Memory = msgspec.field(default_factory=Memory)
    vary_query_params: list[str] | None = None
    vary_headers: list[str] | None = None
    response_headers: ResponseHeaders = msgspec.field(default_factory=ResponseHeaders)


# -- parsing helpers (Kong's kong.tools.http and kong.tools.mime_type) -------------------------

MediaType = tuple[str, str, dict[str, str]]


def parse_mime_type(text: str) -> MediaType | None:
    """``type/subtype; k=v``: lower-cased type, subtype and parameter names; None if invalid."""
    head, sep, rest = text.partition(";")
    m = _MEDIA_TYPE.match(head.strip() if sep else text.strip())
    if m is None:
        return None
    kind, sub = (m.group(1).lower(), m.group(2).lower()) if m.group(1) else ("*", "*")
    params: dict[str, str] = {}
    if sep:
        rest = ";" + rest
        pos = 0
        while pos < len(rest.rstrip()):
            p = _PARAM.match(rest, pos)
            if p is None:
                return None
            value = p.group(2)
            if value.startswith('"'):
                value = re.sub(r"\\(.)", r"\1", value[1:-1])
            params[p.group(1).lower()] = value
            pos = p.end()
    return kind, sub, params


def parse_directive_header(value: str | None) -> dict[str, Any]:
    """``Cache-Control`` directives: name -> number, string or True."""
    if not value:
        return {}
    found: dict[str, Any] = {}
    for part in value.split(","):
        m = _DIRECTIVE.match(part)
        if m is None:
            continue
        name = m.group(1).strip().lower()
        token = m.group(2)
        if token is None:
            found[name] = True
            continue
        token = token.strip()
        try:
            found[name] = int(token)
        except ValueError:
            try:
                found[name] = float(token)
            except ValueError:
                found[name] = token
    return found


def resource_ttl(cc: dict[str, Any], expires: str | None, now: float) -> float:
    """Kong's ``calculate_resource_ttl``: ``s-maxage``, ``max-age``, else ``Expires``; >= 0."""
    max_age = cc.get("s-maxage", cc.get("max-age"))
    if not isinstance(max_age, (int, float)) or isinstance(max_age, bool):
        max_age = None
    if max_age is None and expires:
        try:
            max_age = parsedate_to_datetime(expires).timestamp() - now
        except (TypeError, ValueError, IndexError):
            max_age = None
    return max(max_age, 0) if max_age is not None else 0


def _vary_part(args: dict[str, Any], fields: list[str]) -> str:
    parts: list[str] = []
    for name in fields:
        value = args.get(name)
        if value is None or value is False:
            continue
        if isinstance(value, list):
            items = sorted("" if v is True else str(v) for v in value)
            parts.append(f"{name}={','.join(items)}")
        elif value is True:
            parts.append(name)
        else:
            parts.append(f"{name}={value}")
    return ":".join(parts)


def build_cache_key(
    consumer_id: str | None,
    route_id: str | None,
    method: str,
    uri: str,
    query: dict[str, Any],
    headers: dict[str, Any],
    vary_query_params: list[str] | None,
    vary_headers: list[str] | None,
) -> str:
    """Kong's ``build_cache_key`` (``headers`` keyed by lower-case name)."""
    if consumer_id and route_id:
        prefix = f"{consumer_id}:{route_id}"
    elif route_id:
        prefix = route_id
    else:
        prefix = "default"
    params = _vary_part(query, vary_query_params if vary_query_params else sorted(query))
    vary = ""
    if vary_headers:
        vary = _vary_part({name: headers.get(name.lower()) for name in vary_headers}, vary_headers)
    text = f"{prefix}|{method}|{uri}|{params}|{vary}"
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


# -- the memory strategy ---------------------------------------------------------------------


class Entry:
    """One cached response."""

    __slots__ = ("status", "headers", "body", "timestamp", "ttl", "expires", "size", "version")

    def __init__(
        self,
        status: int,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        now: float,
        ttl: float,
        storage_ttl: float,
    ) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        #: Whole seconds, as Kong's ``ngx.time()``: ages and staleness count whole seconds.
        self.timestamp = int(now)
        self.ttl = ttl
        self.expires = now + storage_ttl
        self.size = len(body) + sum(len(n) + len(v) for n, v in headers) + _ENTRY_OVERHEAD
        self.version = CACHE_VERSION

    def __repr__(self) -> str:
        return f"<Entry {self.status} {len(self.body)}B ttl={self.ttl}>"


class MemoryStore:
    """A bounded LRU store of one worker (Kong's ``lua_shared_dict``, per worker here)."""

    def __init__(self, name: str, capacity: int = DEFAULT_CAPACITY) -> None:
        self.name = name
        self.capacity = capacity
        self.used = 0
        self.entries: OrderedDict[str, Entry] = OrderedDict()
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    def __repr__(self) -> str:
        return (
            f"<MemoryStore {self.name} entries={len(self.entries)} used={self.used}/"
            f"{self.capacity} hits={self.hits} misses={self.misses} evictions={self.evictions}>"
        )

    def usage(self) -> tuple[int, int]:
        return self.used, self.capacity

    def fetch(self, key: str, now: float) -> Entry | None:
        entry = self.entries.get(key)
        if entry is None or entry.expires <= now:
            if entry is not None:
                self.purge(key)
            self.misses += 1
            return None
        self.entries.move_to_end(key)
        self.hits += 1
        return entry

    def store(self, key: str, entry: Entry) -> bool:
        if entry.size > self.capacity // 4:
            return False
        self.purge(key)
        while self.entries and self.used + entry.size > self.capacity:
            _, old = self.entries.popitem(last=False)
            self.used -= old.size
            self.evictions += 1
        self.entries[key] = entry
        self.used += entry.size
        return True

    def purge(self, key: str) -> None:
        old = self.entries.pop(key, None)
        if old is not None:
            self.used -= old.size

    def flush(self) -> None:
        self.entries.clear()
        self.used = 0


_STORES: dict[str, MemoryStore] = {}


def store_for(name: str) -> MemoryStore:
    """The worker's store named ``name`` (created on first use, reported to /metrics)."""
    store = _STORES.get(name)
    if store is None:
        store = _STORES[name] = MemoryStore(name)
        metrics.WORKER.dicts[name] = store.usage
    return store


# -- the plugin ------------------------------------------------------------------------------


class _State:
    """What one request carries from ``access`` to ``response`` and ``body``."""

    __slots__ = ("key", "status", "hit", "collect", "parts", "size", "headers", "ttl")

    def __init__(self, key: str | None, status: str | None) -> None:
        self.key = key
        self.status = status
        self.hit = False
        self.collect = False
        self.parts: list[bytes] = []
        self.size = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.ttl = 0.0


@register_plugin
class ProxyCache(Plugin):
    name = "proxy-cache"
    priority = 100
    allowed_protocols = ALL_PROTOCOLS
    Config = ProxyCacheConfig

    def __init__(self, config: ProxyCacheConfig, runtime: Runtime, entity: Any) -> None:
        super().__init__(config, runtime, entity)
        self.methods = frozenset(config.request_method)
        self.codes = frozenset(config.response_code)
        self.content_types = [t for t in map(parse_mime_type, config.content_type) if t]
        self.cache_ttl = config.cache_ttl
        self.storage_ttl = config.storage_ttl
        self.cache_control = config.cache_control
        self.ignore_uri_case = config.ignore_uri_case
        self.vary_query_params = config.vary_query_params
        self.vary_headers = config.vary_headers
        shown = config.response_headers
        self.show = {
            b"x-cache-status": shown.x_cache_status,
            b"x-cache-key": shown.x_cache_key,
            b"age": shown.age,
        }
        self.store = store_for(config.memory.dictionary_name)
        self.slot = f"proxy-cache:{self.id}"
        self._content_type_cache: dict[bytes, bool] = {}

    def __repr__(self) -> str:
        return f"<ProxyCache priority={self.priority} id={self.id} store={self.store!r}>"

    # -- access --------------------------------------------------------------------------

    def cache_key(self, ctx: RequestContext) -> str:
        version = ctx.scope.get("http_version", "1.1")
        if version == "2":
            version = "2.0"  # nginx's $request spells HTTP/2 as HTTP/2.0
        request_line = f"{ctx.method} {ctx.raw_path.decode('latin-1')}"
        uri = request_line if ctx.query_string else f"{request_line} HTTP/{version}"
        uri = uri.partition("?")[0]
        if self.ignore_uri_case:
            uri = uri.lower()
        consumer = ctx.consumer
        return build_cache_key(
            getattr(consumer, "id", None) if consumer is not None else None,
            ctx.route.id,
            ctx.method,
            uri,
            kong_query(ctx.query_string),
            _header_args(ctx) if self.vary_headers else {},
            self.vary_query_params,
            self.vary_headers,
        )

    async def access(self, ctx: RequestContext) -> Exit | None:
        cc = _request_cc(ctx) if self.cache_control else {}
        if ctx.method not in self.methods or (
            self.cache_control and (cc.get("no-store") or cc.get("no-cache"))
        ):
            # Kong also names ngx.var.authorization here, a variable nginx never sets.
            ctx.plugin_data[self.slot] = _State(None, "Bypass")
            return None
        key = self.cache_key(ctx)
        state = _State(key, None)
        ctx.plugin_data[self.slot] = state
        now = time.time()
        entry = self.store.fetch(key, now)
        if entry is None:
            if self.cache_control and cc.get("only-if-cached"):
                return kong_exit(504)
            return self._signal(state, "Miss")
        if entry.version != CACHE_VERSION:
            self.store.purge(key)
            return self._signal(state, "Bypass")
        age = int(now) - entry.timestamp  # Kong: ngx.time() - res.timestamp, whole seconds
        if self.cache_control:
            max_age, max_stale, min_fresh = (
                _number(cc.get("max-age")),
                _number(cc.get("max-stale")),
                _number(cc.get("min-fresh")),
            )
            if max_age is not None and age > max_age:
                return self._signal(state, "Refresh")
            if max_stale is not None and age - entry.ttl > max_stale:
                return self._signal(state, "Refresh")
            if min_fresh is not None and entry.ttl - age < min_fresh:
                return self._signal(state, "Refresh")
        elif age > self.cache_ttl:
            return self._signal(state, "Refresh")
        state.hit = True
        state.status = "Hit"
        debug = ctx.header("kong-debug")
        headers = [(n, v) for n, v in entry.headers if _replayable(n)]
        for name, value in (
            (b"age", str(age).encode()),
            (b"x-cache-status", b"Hit"),
            (b"x-cache-key", key.encode()),
        ):
            if debug or self.show[name]:
                headers.append((name, value))
        return Exit(entry.status, entry.body, headers)

    def _signal(self, state: _State, status: str) -> Exit | None:
        state.status = status
        state.collect = True
        return None

    # -- response ------------------------------------------------------------------------

    def response(
        self, ctx: RequestContext, status: int, headers: list[tuple[bytes, bytes]]
    ) -> None:
        state: _State | None = ctx.plugin_data.get(self.slot)
        if state is None:
            return
        if state.hit:
            _as_proxied(headers)
            return
        if state.collect:
            ttl = self._cacheable_response(ctx, status, headers)
            if ttl is None:
                state.collect = False
                state.status = "Bypass"
            else:
                state.ttl = ttl
                state.headers = list(headers)
        debug = ctx.header("kong-debug")
        edits: list[tuple[bytes, bytes]] = []
        if state.status is not None and (debug or self.show[b"x-cache-status"]):
            edits.append((b"x-cache-status", state.status.encode()))
        if state.key is not None and (debug or self.show[b"x-cache-key"]):
            edits.append((b"x-cache-key", state.key.encode()))
        if edits:
            names = {n for n, _ in edits}
            headers[:] = [(n, v) for n, v in headers if n.lower() not in names]
            headers.extend(edits)

    def _cacheable_response(
        self, ctx: RequestContext, status: int, headers: list[tuple[bytes, bytes]]
    ) -> float | None:
        """The entry's TTL when the response may be stored, else None."""
        if status not in self.codes:
            return None
        content_type: bytes | None = None
        cache_control: list[bytes] = []
        expires: bytes | None = None
        for name, value in headers:
            lname = name.lower()
            if lname == b"content-type":
                if content_type is not None:
                    return None  # Kong cannot examine a repeated content type
                content_type = value
            elif lname == b"cache-control":
                cache_control.append(value)
            elif lname == b"expires":
                expires = value
        if not content_type or not self._content_type_ok(content_type):
            return None
        if not self.cache_control:
            return float(self.cache_ttl)
        cc = parse_directive_header(b", ".join(cache_control).decode("latin-1"))
        if cc.get("private") or cc.get("no-store") or cc.get("no-cache"):
            return None
        ttl = resource_ttl(cc, expires.decode("latin-1") if expires else None, time.time())
        return ttl if ttl > 0 else None

    def _content_type_ok(self, value: bytes) -> bool:
        found = self._content_type_cache.get(value)
        if found is None:
            found = self._content_type_cache[value] = self._match_content_type(value)
            if len(self._content_type_cache) > 256:
                self._content_type_cache.clear()
        return found

    def _match_content_type(self, value: bytes) -> bool:
        parsed = parse_mime_type(value.decode("latin-1"))
        if parsed is None:
            return False
        kind, sub, params = parsed
        for exp_kind, exp_sub, exp_params in self.content_types:
            if (exp_kind == "*" or exp_kind == kind) and (exp_sub == "*" or exp_sub == sub):
                if exp_params == params:
                    return True
        return False

    # -- body ----------------------------------------------------------------------------

    def body(self, ctx: RequestContext, chunk: bytes, last: bool) -> bytes:
        state: _State | None = ctx.plugin_data.get(self.slot)
        if state is None or not state.collect:
            return chunk
        if chunk:
            state.size += len(chunk)
            if state.size > self.store.capacity // 4:
                state.collect = False
                state.parts = []
                return chunk
            state.parts.append(chunk)
        if last:
            state.collect = False
            body = b"".join(state.parts)
            state.parts = []
            ttl = state.ttl
            if self.storage_ttl is not None:
                storage_ttl: float = self.storage_ttl
            elif self.cache_control:
                storage_ttl = ttl
            else:
                storage_ttl = self.cache_ttl
            headers = [(n, v) for n, v in state.headers if _replayable(n)]
            entry = Entry(ctx.status, headers, body, time.time(), ttl, storage_ttl)
            assert state.key is not None
            self.store.store(state.key, entry)
        return chunk


def _replayable(name: bytes) -> bool:
    lname = name.lower()
    return lname not in _NOT_REPLAYED and _RATELIMIT_REMAINING.search(lname) is None


def _as_proxied(headers: list[tuple[bytes, bytes]]) -> None:
    """A hit carries the headers of a proxied response (Kong sets ``KONG_PROXIED``): proxy and
    upstream latency and Via. Its source stays ``kong`` (``KONG_EXITED``) in logs and metrics."""
    for i, (name, value) in enumerate(headers):
        if name == b"x-kong-response-latency":
            headers[i] = (b"x-kong-proxy-latency", value)
            headers.append((b"x-kong-upstream-latency", b"0"))
            headers.append((b"via", _VIA))
            return


def _request_cc(ctx: RequestContext) -> dict[str, Any]:
    values = ctx.headers.get("cache-control")
    return parse_directive_header(", ".join(values)) if values else {}


def _header_args(ctx: RequestContext) -> dict[str, Any]:
    return {name: v[0] if len(v) == 1 else list(v) for name, v in ctx.headers.items()}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)
