"""cors: Cross-Origin Resource Sharing headers, and answers to preflight requests.

Kong's ``kong/plugins/cors/{schema,handler}.lua``. Origin matching, computed once per config:

- no origins, or exactly ``["*"]``: ``Access-Control-Allow-Origin: *`` (no ``Vary``);
- otherwise ``Vary: Origin`` is always added, and
  - a single origin made only of ``A-Za-z0-9.:/-`` is sent as configured, whatever the request;
  - else each entry is tried in order against the request's normalized ``Origin`` (scheme, host,
    port without the scheme's default). An entry with another character is a regex, anchored at
    both ends; it is matched against the host alone unless it contains ``:``. Any other entry
    must equal the normalized origin. A ``*`` among several entries allows every origin. The
    first match is echoed back, normalized; without a match the header is removed.
- with ``credentials``, a ``*`` answer becomes the request's ``Origin`` (plus ``Vary: Origin``)
  and ``Access-Control-Allow-Credentials: true`` is sent.

A preflight is an ``OPTIONS`` with an ``Origin`` and an ``Access-Control-Request-Method``; it is
answered here with 200 and an empty body, unless ``preflight_continue`` passes it upstream, in
which case the plugin adds no header at all.
"""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal

import msgspec
from msgspec import Meta

from fastkong.config.checks import compile_path_regex
from fastkong.plugins.base import REQUIRED, Exit, Plugin
from fastkong.plugins.registry import register_plugin

if TYPE_CHECKING:
    from fastkong.plugins.context import RequestContext
    from fastkong.runtime import Runtime

Headers = list[tuple[bytes, bytes]]

METHODS: Final = ("GET", "HEAD", "PUT", "PATCH", "POST", "DELETE", "OPTIONS", "TRACE", "CONNECT")
Method = Literal["GET", "HEAD", "PUT", "PATCH", "POST", "DELETE", "OPTIONS", "TRACE", "CONNECT"]

ACAO: Final = b"access-control-allow-origin"
ACAC: Final = b"access-control-allow-credentials"
ACAH: Final = b"access-control-allow-headers"
ACAM: Final = b"access-control-allow-methods"
ACEH: Final = b"access-control-expose-headers"
ACMA: Final = b"access-control-max-age"
ACAPN: Final = b"access-control-allow-private-network"
VARY: Final = (b"vary", b"Origin")

_PLAIN_ORIGIN = re.compile(r"^[A-Za-z0-9.:/-]+$")
_URL = re.compile(r"^(?:([A-Za-z0-9][A-Za-z0-9+\-.]*):)?(?://([^/?#]*))?")


def check_origin(value: str) -> str | None:
    """Kong's ``validate_asterisk_or_regex``."""
    if value == "*":
        return None
    try:
        compile_path_regex(value)
    except re.error:
        return f"'{value}' is not a valid regex"
    return None


Origin = Annotated[str, Meta(extra={"kong_check": check_origin})]


class CorsConfig(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    origins: list[Origin] | None = None
    headers: list[str] | None = None
    exposed_headers: list[str] | None = None
    methods: list[Method] = msgspec.field(default_factory=lambda: list(METHODS))
    max_age: float | None = None
    credentials: Annotated[bool, REQUIRED] = False
    private_network: Annotated[bool, REQUIRED] = False
    preflight_continue: Annotated[bool, REQUIRED] = False
    allow_origin_absent: Annotated[bool, REQUIRED] = True


@functools.lru_cache(maxsize=10_000)
def normalize_origin(origin: str) -> tuple[str, str]:
    """``(domain, host)`` of an origin, as Kong's ``normalize_origin`` (LuaSocket's url.parse):
    ``http://a.test:80`` -> ``("http://a.test", "a.test")``; no authority -> the text twice."""
    text = origin.partition("#")[0]
    m = _URL.match(text)
    scheme, authority = (m.group(1), m.group(2)) if m else (None, None)
    if not authority:
        return origin, origin
    authority = authority.rpartition("@")[2]
    host, port = authority, None
    colon = authority.rfind(":")
    if colon != -1 and "]" not in authority[colon:]:
        host, port = authority[:colon], authority[colon + 1 :]
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host:
        return origin, origin
    if (scheme == "http" and port == "80") or (scheme == "https" and port == "443"):
        port = None
    domain = (f"{scheme}://" if scheme else "") + host + (f":{port}" if port is not None else "")
    return domain, host


class _Entry:
    """One configured origin: a regex (on the host, or on the whole domain) or a domain."""

    __slots__ = ("regex", "domain", "by_host")

    def __init__(self, entry: str) -> None:
        self.by_host = ":" not in entry
        self.regex: re.Pattern[str] | None = None
        self.domain = ""
        if re.search(r"[^A-Za-z0-9.:/-]", entry):
            if not entry.endswith("$"):
                entry += "$"
            if entry.startswith("^"):
                entry = entry[1:]
            self.regex = compile_path_regex(entry)
        else:
            self.domain = normalize_origin(entry)[0]

    def __repr__(self) -> str:
        what = f"regex={self.regex.pattern!r}" if self.regex is not None else self.domain
        return f"<origin {what} by_host={self.by_host}>"

    def matches(self, domain: str, host: str) -> bool:
        if self.regex is not None:
            return self.regex.match(host if self.by_host else domain) is not None
        return domain == self.domain


def _set(headers: Headers, name: bytes, value: bytes) -> None:
    headers[:] = [h for h in headers if h[0] != name]
    headers.append((name, value))


def _clear(headers: Headers, name: bytes) -> None:
    if any(h[0] == name for h in headers):
        headers[:] = [h for h in headers if h[0] != name]


def _number(value: float) -> str:
    return str(int(value)) if value.is_integer() else repr(value)


@register_plugin
class Cors(Plugin):
    name = "cors"
    priority = 2000
    Config = CorsConfig
    no_consumer = True

    def __init__(self, config: CorsConfig, runtime: Runtime, entity: Any) -> None:
        super().__init__(config, runtime, entity)
        origins = config.origins or []
        #: Every origin allowed outright (``*``, or nothing configured).
        self.any_origin = not origins or origins == ["*"]
        #: The one configured origin sent as is (a single non-regex entry).
        self.fixed: bytes | None = None
        #: A ``*`` among several entries: allows any origin the request names.
        self.star = False
        self.entries: list[_Entry] = []
        if not self.any_origin:
            if len(origins) == 1 and _PLAIN_ORIGIN.match(origins[0]):
                self.fixed = origins[0].encode("latin-1")
            elif "*" in origins:
                self.star = True
            else:
                self.entries = [_Entry(o) for o in origins]
        self.credentials = config.credentials
        self.allow_origin_absent = config.allow_origin_absent
        self.preflight_continue = config.preflight_continue
        self.private_network = config.private_network
        self.allow_headers = ",".join(config.headers).encode() if config.headers else None
        self.expose_headers = (
            ",".join(config.exposed_headers).encode() if config.exposed_headers else None
        )
        self.allow_methods = ",".join(config.methods).encode()
        self.max_age = _number(config.max_age).encode() if config.max_age is not None else None

    def _origin(self, headers: Headers, origin: str | None, vary: bool) -> bool:
        """Set (or clear) Access-Control-Allow-Origin; True when every origin is allowed."""
        if self.any_origin:
            _set(headers, ACAO, b"*")
            return True
        if vary:
            headers.append(VARY)
        else:
            _set(headers, *VARY)
        if self.fixed is not None:
            _set(headers, ACAO, self.fixed)
            return False
        if origin:
            if self.star:
                _set(headers, ACAO, b"*")
                return True
            domain, host = normalize_origin(origin)
            for entry in self.entries:
                if entry.matches(domain, host):
                    _set(headers, ACAO, domain.encode("latin-1"))
                    return False
        _clear(headers, ACAO)
        return False

    def _credentials(
        self, headers: Headers, allow_all: bool, origin: str | None, vary: bool
    ) -> None:
        if not self.credentials:
            return
        if not allow_all:
            _set(headers, ACAC, b"true")
            return
        if origin:
            if vary:
                headers.append(VARY)
            else:
                _set(headers, *VARY)
            _set(headers, ACAO, origin.encode("latin-1"))
            _set(headers, ACAC, b"true")

    async def access(self, ctx: RequestContext) -> Exit | None:
        if ctx.method != "OPTIONS":
            return None
        origin = ctx.header("origin")
        if not origin or ctx.header("access-control-request-method") is None:
            return None
        # A preflight: the response hook adds nothing, whether it is answered here or upstream.
        ctx.plugin_data[self.name] = True
        if self.preflight_continue:
            return None
        headers: Headers = []
        allow_all = self._origin(headers, origin, vary=False)
        self._credentials(headers, allow_all, origin, vary=False)
        if self.allow_headers is not None:
            headers.append((ACAH, self.allow_headers))
        else:
            requested = ctx.header("access-control-request-headers")
            if requested is not None:
                headers.append((ACAH, requested.encode("latin-1")))
        headers.append((ACAM, self.allow_methods))
        if self.max_age is not None:
            headers.append((ACMA, self.max_age))
        if self.private_network and ctx.header("access-control-request-private-network") == "true":
            headers.append((ACAPN, b"true"))
        return Exit(200, b"", headers)

    def response(self, ctx: RequestContext, status: int, headers: Headers) -> None:
        if ctx.plugin_data.get(self.name):
            return
        origin = ctx.header("origin")
        if not origin and not self.allow_origin_absent:
            return
        allow_all = self._origin(headers, origin, vary=True)
        self._credentials(headers, allow_all, origin, vary=True)
        if self.expose_headers is not None:
            _set(headers, ACEH, self.expose_headers)
