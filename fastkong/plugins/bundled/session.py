"""session: a login kept in an encrypted cookie (``kong:kong/plugins/session``, Kong 3.9).

The plugin does not authenticate anyone itself: it remembers who an authentication plugin let
in. It runs before them (priority 1900; key-auth is 1250, basic-auth 1100):

- **access**: a valid session cookie authenticates the request as the consumer (and credential)
  it was issued to, with the consumer headers an auth plugin sets (``X-Credential-Identifier``
  is the credential's id, whatever plugin issued it) and the groups it stored
  (``X-Authenticated-Groups``). The session is renewed or touched when due (a ``Set-Cookie`` on
  the response) and ``request_headers``/``response_headers`` get the session's properties. A
  missing, expired, tampered or foreign cookie is ignored: the request goes on unauthenticated
  and the auth plugins decide. Configured with ``anonymous`` (Kong's documented setup), an auth
  plugin then lets a session-authenticated request through untouched; without it, it demands
  its own credentials as usual.
- **logout**: a request with a valid session, one of ``logout_methods`` and the
  ``logout_query_arg`` query argument (or, with ``read_body_for_logout``, the
  ``logout_post_arg`` in a form, JSON or multipart body) ends the session: Kong's empty 200
  with the cookie expired. A session whose consumer no longer exists is ended the same way
  (the request goes on, unauthenticated).
- **response**: when an auth plugin authenticated the request with a credential (never the
  anonymous consumer) and no session stands for that consumer and credential, a session is
  created for them and sent as ``Set-Cookie``.

Storage is the cookie itself (:mod:`fastkong.plugins.bundled._session_cookie`, the format of
lua-resty-session 4 that Kong uses). ``storage: kong`` keeps sessions in Kong's database, which
a DB-less node does not have (Kong DB-less accepts the config and then never finds a session
it stored): here it is a config error.

``secret``'s default is Kong's: a random value drawn once per process that validates the
config. Here that is the node's supervisor, which hands the filled-in config to every worker,
so all workers of a node accept each other's cookies, across config reloads; a restart draws a
new one (every session ends) and each node has its own. Set ``secret`` to share sessions
between nodes or keep them across restarts.
"""

from __future__ import annotations

import logging
import math
import secrets
import string
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal

import msgspec

from fastkong.config.schema import REFERENCEABLE
from fastkong.plugins.base import Exit, Plugin, kong_exit
from fastkong.plugins.bundled._consumer import (
    AUTHENTICATED_GROUPS,
    parse_args,
    set_consumer,
    wire,
)
from fastkong.plugins.bundled._session_cookie import (
    PROPERTY_HEADERS,
    CookieSession,
    SessionError,
    Settings,
    cookie_lookup,
)
from fastkong.plugins.bundled.key_auth import parse_body
from fastkong.plugins.registry import ALL_PROTOCOLS, register_plugin

if TYPE_CHECKING:
    from fastkong.plugins.context import RequestContext
    from fastkong.runtime import Runtime

log = logging.getLogger("fastkong.plugins")

_SET: Final = msgspec.Meta(extra={"kong_set": True})

SameSite = Literal["Strict", "Lax", "None", "Default"]
Property = Literal[
    "id",
    "audience",
    "subject",
    "timeout",
    "idling-timeout",
    "rolling-timeout",
    "absolute-timeout",
]
LogoutMethod = Literal["GET", "POST", "DELETE"]
Number = float | int

#: Methods whose body may hold the logout argument (Kong's READ_BODY_METHODS).
_BODY_METHODS: Final = frozenset({"DELETE", "PATCH", "POST", "PUT"})
#: The bodies ``kong.request.get_body`` reads; others are not read at all.
_BODY_TYPES: Final = (
    "application/x-www-form-urlencoded",
    "application/json",
    "multipart/form-data",
)
_ALPHANUMERIC: Final = string.ascii_letters + string.digits

#: ``ctx.plugin_data`` key of the request's :class:`_Pending`.
KEY: Final = "session"


def _random_secret() -> str:
    """Kong's default secret: 44 random letters and digits (its ``random_string``)."""
    return "".join(secrets.choice(_ALPHANUMERIC) for _ in range(44))


#: Drawn once per process, as Kong evaluates its schema's default once: the config validated in
#: the supervisor carries it to every worker (see the module docstring).
NODE_SECRET: Final = _random_secret()


_AUTO = msgspec.Meta(extra={"kong_auto": True})


def _node_secret() -> str:
    return NODE_SECRET


class SessionConfig(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Kong 3.9's schema, plus ``hash_subject`` and ``store_metadata`` (added after 3.9; they
    concern server-side storage and do nothing with cookies, in Kong too)."""

    # drawn per node: the Admin API's schema shows it as ``auto`` (fastkong/control/schemas.py)
    secret: Annotated[str, REFERENCEABLE, _AUTO] = msgspec.field(default_factory=_node_secret)
    storage: Literal["cookie", "kong"] = "cookie"
    audience: str = "default"
    idling_timeout: Number = 900
    rolling_timeout: Number = 3600
    absolute_timeout: Number = 86400
    #: How long a replaced session stays valid in server-side storage: unused with cookies.
    stale_ttl: Number = 10
    cookie_name: str = "session"
    cookie_path: str = "/"
    cookie_domain: str | None = None
    cookie_same_site: SameSite = "Strict"
    cookie_http_only: bool = True
    cookie_secure: bool = True
    remember: bool = False
    remember_cookie_name: str = "remember"
    remember_rolling_timeout: Number = 604800
    remember_absolute_timeout: Number = 2592000
    response_headers: Annotated[list[Property], _SET] | None = None
    request_headers: Annotated[list[Property], _SET] | None = None
    read_body_for_logout: bool = False
    logout_methods: Annotated[list[LogoutMethod], _SET] = msgspec.field(
        default_factory=lambda: ["POST", "DELETE"]
    )
    logout_query_arg: str = "session_logout"
    logout_post_arg: str = "session_logout"
    hash_subject: bool = False
    store_metadata: bool = False
    # Kong's deprecated shorthands (to be removed in Kong 4.0): each sets its field, over an
    # explicit value of it, and is not kept.
    cookie_lifetime: Number | None = None
    cookie_idletime: Number | None = None
    cookie_renew: Number | None = None
    cookie_discard: Number | None = None
    cookie_samesite: Literal["Strict", "Lax", "None", "Default", "off"] | None = None
    cookie_httponly: bool | None = None
    cookie_persistent: bool | None = None

    def __post_init__(self) -> None:
        for shorthand, target in (
            ("cookie_lifetime", "rolling_timeout"),
            ("cookie_idletime", "idling_timeout"),
            ("cookie_discard", "stale_ttl"),
            ("cookie_samesite", "cookie_same_site"),
            ("cookie_httponly", "cookie_http_only"),
            ("cookie_persistent", "remember"),
        ):
            value = getattr(self, shorthand)
            if value is not None:
                if value == "off" and shorthand == "cookie_samesite":
                    value = "Lax"  # lua-resty-session 3's "no SameSite"
                msgspec.structs.force_setattr(self, target, value)
                msgspec.structs.force_setattr(self, shorthand, None)
        # cookie_renew: lua-resty-session 4 computes the renewal itself (Kong drops it too)
        msgspec.structs.force_setattr(self, "cookie_renew", None)


_NUMBERS: Final = (
    "idling_timeout",
    "rolling_timeout",
    "absolute_timeout",
    "stale_ttl",
    "remember_rolling_timeout",
    "remember_absolute_timeout",
)


class _Credential(msgspec.Struct, frozen=True, gc=False):
    """The credential a session stands for: its id and consumer (Kong's session builds the
    same two-field table), as the logging plugins and acl read a credential."""

    id: str
    consumer: str


class _Pending:
    """One request's session work: the ``Set-Cookie`` values and session headers to send, and
    the session that authenticated the request."""

    __slots__ = ("cookies", "headers", "session")

    def __init__(self) -> None:
        self.cookies: dict[str, str] = {}
        self.headers: dict[bytes, bytes] = {}
        self.session: CookieSession | None = None


def _lua_number(x: Number) -> str:
    """A number as Lua prints it (``900``, ``899.5``, ``1e+20``)."""
    if isinstance(x, int) or (abs(x) < 1e15 and x == int(x)):
        return str(int(x))
    return f"{x:.14g}"


def _session_data(session: CookieSession) -> tuple[Any, Any, Any]:
    """``(consumer id, credential id, groups)`` as Kong stores them: ``[id, id, groups]``."""
    data = session.data
    if not isinstance(data, list):
        return None, None, None
    padded = [*data[:3], None, None, None]
    return padded[0], padded[1], padded[2]


@register_plugin
class SessionPlugin(Plugin):
    name = "session"
    priority = 1900
    allowed_protocols = ALL_PROTOCOLS
    Config = SessionConfig
    no_consumer = True

    def __init__(self, config: SessionConfig, runtime: Runtime, entity: Any) -> None:
        super().__init__(config, runtime, entity)
        self.settings = Settings(
            config.secret,
            audience=config.audience,
            cookie_name=config.cookie_name,
            remember_cookie_name=config.remember_cookie_name,
            cookie_path=config.cookie_path,
            cookie_domain=config.cookie_domain,
            cookie_same_site=config.cookie_same_site,
            cookie_http_only=config.cookie_http_only,
            cookie_secure=config.cookie_secure,
            idling_timeout=config.idling_timeout,
            rolling_timeout=config.rolling_timeout,
            absolute_timeout=config.absolute_timeout,
            remember=config.remember,
            remember_rolling_timeout=config.remember_rolling_timeout,
            remember_absolute_timeout=config.remember_absolute_timeout,
        )
        self.remember = config.remember
        self.request_headers = tuple(
            (p, PROPERTY_HEADERS[p].lower().encode()) for p in config.request_headers or ()
        )
        self.response_headers = tuple(
            (p, PROPERTY_HEADERS[p].lower().encode()) for p in config.response_headers or ()
        )
        self.logout_methods = frozenset(config.logout_methods)
        self.logout_query_arg = wire(config.logout_query_arg)
        self.logout_post_arg = wire(config.logout_post_arg)
        self.read_body_for_logout = config.read_body_for_logout

    @classmethod
    def check(cls, config: SessionConfig) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        if config.storage == "kong":
            out.append(
                (
                    "storage",
                    "'kong' keeps sessions in Kong's database, which fastkong does not have "
                    "(DB-less); use 'cookie'",
                )
            )
        for field in _NUMBERS:
            if not math.isfinite(getattr(config, field)):
                out.append((field, "expected a finite number"))  # YAML's .inf and .nan
        return out

    def _lookup(self, ctx: RequestContext) -> Callable[[str], str | None] | None:
        """The request's cookies, or None when it has none of this plugin's."""
        lookup = cookie_lookup(ctx.headers.get("cookie"))
        settings = self.settings
        if lookup(settings.cookie_name) is None and (
            not self.remember or lookup(settings.remember_cookie_name) is None
        ):
            return None
        return lookup

    # -- access --------------------------------------------------------------------------------
    async def access(self, ctx: RequestContext) -> Exit | None:
        # The configured request headers come from a session or not at all: a client's own
        # Session-Subject must not reach the upstream as the gateway's (Kong passes it on).
        for _, key in self.request_headers:
            ctx.clear_upstream_raw(key)
        lookup = self._lookup(ctx)
        if lookup is None:
            return None
        pending = _Pending()
        ctx.plugin_data[KEY] = pending
        session = CookieSession(self.settings, lookup, int(time.time()), pending.cookies)
        try:
            exists, reason = session.open()
        except SessionError as exc:  # a remember cookie whose session could not be re-issued
            exists, reason = False, str(exc)
        if not exists:
            log.debug("session not present (%s)", reason)
            return None

        if await self.wants_logout(ctx):
            self.end(session)
            ctx.plugin_data.pop(KEY, None)  # sent with the exit, not again by the response hook
            headers = [(b"set-cookie", v.encode()) for v in pending.cookies.values()]
            return kong_exit(200, None, headers)

        consumer_id, credential_id, groups = _session_data(session)
        if not isinstance(consumer_id, str):
            log.error("could not load consumer: the session holds no consumer id")
            return None
        consumer = self.runtime.consumers.get(consumer_id)
        if consumer is None:
            log.debug("failed to find consumer, destroying session")
            self.end(session)
            return None

        try:
            session.refresh()
        except SessionError as exc:
            log.warning("session refresh failed (%s)", exc)
        for prop, key in self.request_headers:
            value = self._property(session, prop)
            if value is not None:
                ctx.set_upstream_raw(key, value)
        self._response_properties(session, pending)
        pending.session = session

        credential = (
            _Credential(credential_id, consumer.id) if isinstance(credential_id, str) else None
        )
        set_consumer(ctx, consumer, credential, credential.id if credential else None)
        if isinstance(groups, list) and all(isinstance(g, str) for g in groups):
            ctx.set_upstream_header(AUTHENTICATED_GROUPS, ", ".join(wire(g) for g in groups))
            ctx.authenticated_groups = list(groups)
        else:
            ctx.clear_upstream_header(AUTHENTICATED_GROUPS)
        return None

    @staticmethod
    def end(session: CookieSession) -> None:
        """Kong's ``session:logout()``: a failure is logged, the request goes on."""
        try:
            session.logout()
        except SessionError as exc:
            log.warning("session logout failed (%s)", exc)

    async def wants_logout(self, ctx: RequestContext) -> bool:
        """Kong's ``session.logout(conf)``: the method is a logout method and the query (or,
        with ``read_body_for_logout``, the body) has the logout argument, whatever its value."""
        method = ctx.method
        if method not in self.logout_methods:
            return False
        query = parse_args(ctx.query_string.decode("latin-1"))
        if self.logout_query_arg in query:
            return True
        if not self.read_body_for_logout or method not in _BODY_METHODS:
            return False
        content_type = ctx.header("content-type")
        if content_type is None or not content_type.lower().startswith(_BODY_TYPES):
            return False  # a body Kong cannot decode is not read
        body = parse_body(content_type, await ctx.read_body())
        if body.kind == "json":
            # Lua truthiness: any value but false (JSON null is a truthy userdata in Lua)
            data = body.data
            return isinstance(data, dict) and data.get(self.logout_post_arg, False) is not False
        return self.logout_post_arg in body.values

    # -- response ------------------------------------------------------------------------------
    def response(
        self, ctx: RequestContext, status: int, headers: list[tuple[bytes, bytes]]
    ) -> None:
        pending: _Pending | None = ctx.plugin_data.get(KEY)
        credential = ctx.credential
        consumer = ctx.consumer
        if credential is not None and consumer is not None:
            # Kong does not open sessions for anonymous users (no credential).
            pending = self.issue(ctx, pending, getattr(credential, "id", None), consumer)
        if pending is not None:
            self.send(pending, headers)

    def issue(
        self, ctx: RequestContext, pending: _Pending | None, credential_id: Any, consumer: Any
    ) -> _Pending | None:
        """A session for the authenticated consumer, unless the request's session is theirs."""
        session = pending.session if pending is not None else None
        if session is not None:
            consumer_id, session_credential_id, _ = _session_data(session)
            if consumer_id == consumer.id and session_credential_id == credential_id:
                return pending
        if pending is None:
            pending = ctx.plugin_data[KEY] = _Pending()
        now = int(time.time())
        if session is None:
            lookup = cookie_lookup(ctx.headers.get("cookie"))
            session = CookieSession(self.settings, lookup, now, pending.cookies)
            try:
                session.open()
            except SessionError as exc:
                log.warning("session open failed (%s)", exc)
        session.now = now
        groups = ctx.authenticated_groups
        data: list[Any] = [consumer.id, credential_id or consumer.id]
        if groups is not None:
            data.append(list(groups))
        session.data = data
        session.subject = consumer.username or consumer.custom_id or consumer.id
        try:
            session.save()
        except SessionError as exc:
            log.error("session save failed (%s)", exc)
            return pending
        self._response_properties(session, pending)
        return pending

    def send(self, pending: _Pending, headers: list[tuple[bytes, bytes]]) -> None:
        """The session's cookies over any of the same name, then its property headers."""
        if pending.cookies:
            names = {name.encode() for name in pending.cookies}
            headers[:] = [
                (k, v)
                for k, v in headers
                if k != b"set-cookie" or v.partition(b"=")[0].strip() not in names
            ]
            headers.extend((b"set-cookie", v.encode()) for v in pending.cookies.values())
        if pending.headers:
            headers[:] = [(k, v) for k, v in headers if k not in pending.headers]
            headers.extend(pending.headers.items())

    # -- properties ----------------------------------------------------------------------------
    def _response_properties(self, session: CookieSession, pending: _Pending) -> None:
        for prop, key in self.response_headers:
            value = self._property(session, prop)
            if value is not None:
                pending.headers[key] = value

    @staticmethod
    def _property(session: CookieSession, prop: str) -> bytes | None:
        value = session.property(prop)
        if value is None:
            return None
        text = value if isinstance(value, str) else _lua_number(value)
        return wire(text).encode("latin-1")


__all__ = ["NODE_SECRET", "SessionConfig", "SessionPlugin"]
