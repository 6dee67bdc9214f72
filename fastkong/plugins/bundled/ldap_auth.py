"""ldap-auth: the client's username and password checked by an LDAP bind
(``kong:kong/plugins/ldap-auth``, Kong 3.9).

Priority 1200, access phase. The credentials come as ``Authorization: ldap <base64(user:pass)>``
(``Proxy-Authorization`` is tried first, then ``Authorization``), read as Kong reads them: the
value, lower-cased, must start with optional whitespace, ``header_type`` (lower-cased, a regex
as in Kong) and at least one whitespace; the rest is base64 (nginx's decoder: padding optional,
anything after the first ``=`` ignored) of ``username:password``, split at the first colon, the
password non-empty. The server is asked with a simple bind as ``<attribute>=<username>,<base_dn>``
(:mod:`._ldap`: LDAPS, StartTLS, kept connections).

Outcomes, as in Kong:

- no header: 401 ``Unauthorized``, and so is a header that does not parse, a refused bind (any
  result code but success) and a failed TLS handshake; every 401 carries ``WWW-Authenticate:
  <scheme>`` (with ``realm="<realm>"`` when set), the scheme being ``header_type``, ``LDAP``
  for the default ``ldap``;
- the server unreachable, not answering within ``timeout``, or refusing StartTLS: 500 ``An
  unexpected error occurred``, also with ``anonymous`` set (Kong's error is not a failed
  authentication);
- success: the request goes on with ``X-Credential-Identifier: <username>`` and
  ``X-Anonymous-Consumer`` removed; there is no consumer (``X-Consumer-*`` are removed), as
  Kong's plugin authenticates a credential only. With ``hide_credentials`` both headers are
  removed from the upstream request (only on success, as in Kong).

A bind's result is cached for ``cache_ttl`` seconds (0: no expiry, as Kong's cache reads it;
negative: not cached, where Kong's cache raises an error) under the server, base DN,
attribute, TTL, username and password, as Kong keys it: a password changed in the directory
is still accepted until then, and a wrong password is refused without asking again. The cache
is the worker's, shared by the plugin instances of one config, bounded (:data:`CACHE_SIZE`,
least recently used first out), and starts empty with each new config, as Kong purges its
cache on a reload. Concurrent requests with the same credentials share one bind.

Where fastkong differs (a production user's expectations, where Kong's are an accident of its
implementation): only success and invalidCredentials (49) are cached; any other refusal, a
failed handshake and an unreachable server are asked again on the next request (Kong caches
them all, an unreachable server as a 500 for ``cache_ttl``). The credential's id (the logging
plugins' ``authenticated_entity.id``) is a UUID of the server and username, not Kong's SHA-256
of a string holding the password. A ``header_type`` that is not a regex Python's ``re`` runs
is matched literally. Control characters of the username are percent-encoded in
``X-Credential-Identifier``, as OpenResty escapes header values (as in Kong).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import math
import os
import re
import time
import uuid
from collections import OrderedDict
from typing import TYPE_CHECKING, Annotated, Any, Final

import msgspec

from fastkong.config.schema import Host, Port
from fastkong.plugins.base import REQUIRED, Exit, kong_error
from fastkong.plugins.bundled._consumer import (
    CREDENTIAL_IDENTIFIER,
    ERR_UNEXPECTED,
    AuthPlugin,
    decode_base64,
    set_consumer,
    use_anonymous,
    wire,
)
from fastkong.plugins.bundled._ldap import (
    DEFAULT_TIMEOUT,
    LdapRefused,
    LdapUnavailable,
    Target,
    describe,
    simple_bind,
)
from fastkong.plugins.bundled._pcre import compile_pcre
from fastkong.plugins.registry import register_plugin

if TYPE_CHECKING:
    from fastkong.plugins.context import RequestContext
    from fastkong.runtime import Runtime

log = logging.getLogger("fastkong.plugins.ldap-auth")

ERR_UNAUTHORIZED: Final = "Unauthorized"
ERR_EXCLUSIVE: Final = "'ldaps' and 'start_tls' cannot be enabled simultaneously"
INVALID_CREDENTIALS: Final = 49

#: Bind results kept per worker and config.
CACHE_SIZE: Final = 10_000

_USER_PASS: Final = re.compile(rb"^(.*?):(.+)$")
_ASCII_LOWER: Final = {c: c + 32 for c in range(0x41, 0x5B)}
_CREDENTIAL_KEY: Final = CREDENTIAL_IDENTIFIER.lower().encode()
_UNSAFE: Final = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
#: Cache keys are an HMAC under a key of this process: no password, nor a plain hash of one,
#: is kept in memory.
_SECRET: Final = os.urandom(32)
_IDS: Final = uuid.UUID("4e1b7d2c-6f0a-4d51-9a8e-2f7c3b9d1a60")


class LdapAuthConfig(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    ldap_host: Host
    ldap_port: Annotated[Port, REQUIRED] = 389
    ldaps: Annotated[bool, REQUIRED] = False
    start_tls: Annotated[bool, REQUIRED] = False
    verify_ldap_host: Annotated[bool, REQUIRED] = False
    base_dn: str
    attribute: str
    cache_ttl: Annotated[float, REQUIRED] = 60
    hide_credentials: Annotated[bool, REQUIRED] = False
    timeout: float = 10000
    keepalive: float = 60000
    anonymous: str | None = None
    header_type: str = "ldap"
    realm: str | None = None


class _Unavailable:
    """The bind's outcome when the server could not be asked (Kong's 500)."""

    __slots__ = ()


UNAVAILABLE: Final = _Unavailable()


class LdapCredential:
    """What a successful bind authenticated: Kong's ``{id, username}`` credential."""

    __slots__ = ("id", "username", "header")

    def __init__(self, credential_id: str, username: bytes) -> None:
        self.id = credential_id
        #: The username as a wire string (its bytes as latin-1).
        self.username = username.decode("latin-1")
        #: ``X-Credential-Identifier``'s value.
        self.header = _UNSAFE.sub(lambda m: b"%%%02X" % m.group()[0], username)

    def __repr__(self) -> str:
        return f"<LdapCredential {self.username!r}>"


def ascii_lower(text: str) -> str:
    """Lua's ``string.lower``: A-Z only."""
    return text.translate(_ASCII_LOWER)


def header_pattern(header_type: str) -> re.Pattern[str]:
    """Kong's ``^\\s*<header_type>\\s+``, lower-cased, with PCRE's meaning; a ``header_type``
    Python's ``re`` cannot run as PCRE does is matched literally (logged)."""
    lowered = ascii_lower(header_type)
    try:
        return compile_pcre("^\\s*" + lowered + "\\s+")
    except (ValueError, re.error, OverflowError, RecursionError) as exc:
        log.warning("[ldap-auth] header_type %r is matched literally: %s", header_type, exc)
        return re.compile(r"^[\t\n\x0b\x0c\r ]*" + re.escape(wire(lowered)) + r"[\t\n\x0b\x0c\r ]+")


def parse_credentials(value: str, pattern: re.Pattern[str]) -> tuple[bytes, bytes] | None:
    """``<header_type> base64(username:password)`` -> (username, password), as Kong reads it."""
    m = pattern.search(ascii_lower(value))
    if m is None or m.start() != 0:
        return None
    decoded = decode_base64(value[m.end() :])
    if decoded is None:
        return None
    parts = _USER_PASS.match(decoded)
    if parts is None:
        return None
    return parts.group(1), parts.group(2)


class Verdicts:
    """Bind results by cache key: a credential (success) or None (refused), each with its
    expiry; least recently used first out past :data:`CACHE_SIZE`. Also the binds under way."""

    def __init__(self, size: int = CACHE_SIZE, clock: Any = time.monotonic) -> None:
        self.size = size
        self.clock = clock
        self.entries: OrderedDict[bytes, tuple[float, LdapCredential | None]] = OrderedDict()
        self.inflight: dict[bytes, asyncio.Task[LdapCredential | _Unavailable | None]] = {}

    def __repr__(self) -> str:
        return f"<ldap-auth Verdicts entries={len(self.entries)} inflight={len(self.inflight)}>"

    def get(self, key: bytes) -> tuple[bool, LdapCredential | None]:
        """(found, result)."""
        entry = self.entries.get(key)
        if entry is None:
            return False, None
        if entry[0] <= self.clock():
            del self.entries[key]
            return False, None
        self.entries.move_to_end(key)
        return True, entry[1]

    def put(self, key: bytes, value: LdapCredential | None, ttl: float) -> None:
        """Keep ``value`` ``ttl`` seconds (0: no expiry; negative: not kept)."""
        if ttl < 0:
            return
        self.entries[key] = (self.clock() + ttl if ttl > 0 else math.inf, value)
        self.entries.move_to_end(key)
        while len(self.entries) > self.size:
            self.entries.popitem(last=False)


def _verdicts(_: Runtime) -> Verdicts:
    return Verdicts()


@register_plugin
class LdapAuth(AuthPlugin):
    name = "ldap-auth"
    priority = 1200
    Config = LdapAuthConfig

    def __init__(self, config: LdapAuthConfig, runtime: Runtime, entity: Any) -> None:
        super().__init__(config, runtime, entity)
        tls = "ldaps" if config.ldaps else "starttls" if config.start_tls else ""
        self.target = Target(config.ldap_host, config.ldap_port, tls, config.verify_ldap_host)
        # OpenResty's sockets: a timeout below 1 ms is nginx's default, a keepalive below
        # 1 ms no limit.
        self.timeout = config.timeout / 1000 if config.timeout >= 1 else DEFAULT_TIMEOUT
        self.keepalive = config.keepalive / 1000 if config.keepalive >= 1 else None
        self.ttl = config.cache_ttl
        self.hide = config.hide_credentials
        self.pattern = header_pattern(config.header_type)
        scheme = "LDAP" if config.header_type == "ldap" else config.header_type
        www = scheme if config.realm is None else f'{scheme} realm="{config.realm}"'
        self.www_authenticate = (b"www-authenticate", www.encode("utf-8"))
        self.dn_prefix = f"{config.attribute}=".encode()
        self.dn_suffix = f",{config.base_dn}".encode()
        where = f"{config.ldap_host.lower()}:{config.ldap_port}:{config.base_dn}:{config.attribute}"
        self.id_prefix = where + ":"
        self.key_prefix = f"{where}:{config.cache_ttl}:".encode()
        self.verdicts: Verdicts = (
            runtime.index("ldap-auth:verdicts", _verdicts) if runtime is not None else Verdicts()
        )

    def __repr__(self) -> str:
        host, port, tls, _ = self.target
        return f"<LdapAuth priority={self.priority} id={self.id} {host}:{port} tls={tls or 'no'}>"

    @classmethod
    def check(cls, config: Any) -> list[tuple[str, str]]:
        """Kong's entity check of the config record: ``ldaps`` and ``start_tls`` exclude each
        other (a conditional: the field's ``eq`` message, the record's ``then_err``)."""
        if config.ldaps and config.start_tls:
            return [("start_tls", "value must be false"), ("@entity", ERR_EXCLUSIVE)]
        return []

    def unauthorized(self) -> Exit:
        return kong_error(401, ERR_UNAUTHORIZED, [self.www_authenticate])

    async def access(self, ctx: RequestContext) -> Exit | None:
        if self.anonymous is None:
            return await self.authenticate(ctx)
        if ctx.credential is not None:
            return None  # another auth plugin authenticated the request (logical OR)
        result = await self.authenticate(ctx)
        if result is None or result.status == 500:
            return result  # Kong's error is not a failed authentication: no anonymous then
        return use_anonymous(ctx, self.anonymous)

    async def authenticate(self, ctx: RequestContext) -> Exit | None:
        authorization = ctx.header("authorization")
        proxy = ctx.header("proxy-authorization")
        if authorization is None and proxy is None:
            return self.unauthorized()
        found: LdapCredential | Exit | None = None
        if proxy is not None:
            found = await self.verify(proxy)
        if found is None and authorization is not None:
            found = await self.verify(authorization)
        if found is None:
            return self.unauthorized()
        if isinstance(found, Exit):
            return found
        if self.hide:
            ctx.clear_upstream_header("authorization")
            ctx.clear_upstream_header("proxy-authorization")
        set_consumer(ctx, None, found, found.username)
        ctx.set_upstream_raw(_CREDENTIAL_KEY, found.header)
        return None

    async def verify(self, value: str) -> LdapCredential | Exit | None:
        """The credential a header value authenticates, None (401), or the 500 Exit."""
        given = parse_credentials(value, self.pattern)
        if given is None:
            return None
        username, password = given
        key = hmac.digest(_SECRET, self.key_prefix + username + b":" + password, "sha256")
        verdicts = self.verdicts
        found, credential = verdicts.get(key)
        if found:
            return credential
        task = verdicts.inflight.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(self.bind(key, username, password))
            verdicts.inflight[key] = task
            task.add_done_callback(lambda _: verdicts.inflight.pop(key, None))
        # A client that goes away does not cancel the bind the others wait for (or its cache).
        outcome = await asyncio.shield(task)
        if isinstance(outcome, _Unavailable):
            return kong_error(500, ERR_UNEXPECTED)
        return outcome

    async def bind(
        self, key: bytes, username: bytes, password: bytes
    ) -> LdapCredential | _Unavailable | None:
        dn = self.dn_prefix + username + self.dn_suffix
        try:
            response = await simple_bind(self.target, dn, password, self.timeout, self.keepalive)
        except LdapUnavailable as exc:
            log.error("[ldap-auth] %s", exc)
            return UNAVAILABLE
        except LdapRefused as exc:
            log.error("[ldap-auth] %s", exc)
            return None
        if response.code == 0:
            credential = LdapCredential(
                str(uuid.uuid5(_IDS, self.id_prefix + username.decode("latin-1"))), username
            )
            self.verdicts.put(key, credential, self.ttl)
            return credential
        shown = dn.decode("utf-8", "replace")
        if response.code == INVALID_CREDENTIALS:
            log.info("[ldap-auth] bind as %r refused: %s", shown, describe(response))
            self.verdicts.put(key, None, self.ttl)
        else:
            log.error("[ldap-auth] bind as %r refused: %s", shown, describe(response))
        return None
