"""The plugin model: a config schema plus a handler with Kong's priority and phase hooks.

A plugin class names its Kong ``name`` and ``priority``, its msgspec ``Config`` Struct, and
defines any of three hooks:

``async access(ctx) -> Exit | None``
    before proxying; return an :class:`Exit` to answer the client without proxying (Envoy's
    "stop iteration"), or None to continue. No exceptions for control flow.
``response(ctx, status, headers) -> None``
    Kong's ``header_filter``: edit the response headers (a list of ``(bytes, bytes)``) before
    they are sent, for proxied and gateway-generated responses alike.
``body(ctx, chunk, last) -> bytes``
    Kong's ``body_filter``: sees every response body chunk (``last`` on the final one) and
    returns what to send instead; buffer by returning ``b""`` until ``last``. A plugin that
    changes the body's size removes ``content-length`` in its ``response`` hook.
``async buffered(ctx, status, headers) -> Exit | None``
    for a request whose plugins asked for the upstream's whole answer
    (``ctx.buffer_response``): runs once that body was read (``ctx.response_body``), before the
    response hooks, and may await I/O; an :class:`Exit` answers the client instead of the
    upstream's response (its response and log phases still run). Kong has no such phase: its
    ai-response-transformer makes the upstream request itself in the access phase, then calls
    ``kong.response.exit``; here the proxy makes that request (balancer, retries, TLS) and the
    plugin answers from this hook.
``log(ctx) -> None``
    after the response went out; must not block (queue work for a background task).

One instance is built per config snapshot (Kong's ``configure``), so per-config work (parsing,
compiling regexes, hashing credentials) happens once, not per request. The chain of instances
each route runs is computed in :mod:`fastkong.plugins.chain`; hooks a class does not define
cost nothing.
"""

from __future__ import annotations

import json
import weakref
from typing import TYPE_CHECKING, Any, ClassVar, Final

import msgspec

from fastkong.plugins.registry import HTTP_PROTOCOLS

if TYPE_CHECKING:
    from fastkong.plugins.context import RequestContext
    from fastkong.runtime import Runtime


#: Kong's ``required = true`` on a plugin config field that has a default: an absent field takes
#: the default, an explicit ``null`` is "required field missing" (the config walker reads it).
REQUIRED: Final = msgspec.Meta(extra={"kong_required": True})


class Exit:
    """A response a plugin gives instead of proxying."""

    __slots__ = (
        "status",
        "body",
        "headers",
        "content_type",
        "message",
        "with_request_id",
        "from_table",
    )

    def __init__(
        self,
        status: int,
        body: bytes = b"",
        headers: list[tuple[bytes, bytes]] | None = None,
        content_type: str | None = None,
        *,
        message: str | None = None,
        with_request_id: bool = False,
        from_table: bool = False,
    ) -> None:
        self.status = status
        self.body = body
        self.headers = headers or []
        self.content_type = content_type
        self.message = message
        self.with_request_id = with_request_id
        #: ``kong.response.exit`` with a table (or no body): a gRPC client gets it in
        #: ``grpc-status``/``grpc-message`` (the table's ``message``), not as JSON.
        self.from_table = from_table

    def __repr__(self) -> str:
        return f"<Exit {self.status} {self.message or self.body[:40]!r}>"


def kong_error(status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None) -> Exit:
    """``kong.response.error``: Kong's negotiated template with the request id."""
    return Exit(status, headers=headers, message=message, with_request_id=True)


def kong_exit(
    status: int, payload: Any = None, headers: list[tuple[bytes, bytes]] | None = None
) -> Exit:
    """``kong.response.exit(status, table)``: a JSON body, no request id.

    A string payload becomes ``{"message": payload}`` as in Kong.
    """
    if payload is None:
        return Exit(status, b"", headers, from_table=True)
    if isinstance(payload, str):
        payload = {"message": payload}
    message = payload.get("message") if isinstance(payload, dict) else None
    try:
        body = msgspec.json.encode(payload)
    except UnicodeEncodeError:
        # Text the client sent in bytes that are not UTF-8 (kept as surrogate escapes, e.g.
        # request-termination's echo): written back as those bytes, as Kong's cjson writes them.
        text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        body = text.encode("utf-8", "surrogateescape")
    return Exit(
        status,
        body,
        headers,
        "application/json; charset=utf-8",
        message=message if isinstance(message, str) else None,
        from_table=True,
    )


class Plugin:
    """Base class of plugin handlers (see the module docstring)."""

    name: ClassVar[str]
    priority: ClassVar[int]
    Config: ClassVar[type[msgspec.Struct]]
    #: Kong's ``typedefs.no_consumer`` and friends: scopes the plugin may not be applied to.
    no_consumer: ClassVar[bool] = False
    no_route: ClassVar[bool] = False
    no_service: ClassVar[bool] = False
    #: Kong's schema for the plugin's ``protocols`` field: ``typedefs.protocols_http`` (the
    #: HTTP subsystem's protocols) for most plugins, ``typedefs.protocols`` (every protocol,
    #: stream ones too) for the logging plugins and a few others. A ``deck dump`` writes the
    #: field out for every plugin, so the set Kong accepts must load here too.
    allowed_protocols: ClassVar[tuple[str, ...]] = HTTP_PROTOCOLS
    #: The field's default when the config leaves it out (None: ``allowed_protocols``).
    default_protocols: ClassVar[tuple[str, ...] | None] = None

    def __init__(self, config: Any, runtime: Runtime, entity: Any) -> None:
        self.config = config
        # A weak proxy: the snapshot owns its plugins, and a strong back-reference would make
        # every snapshot a reference cycle (workers freeze the GC's view of live snapshots, so
        # retired ones must be freed by reference counting alone).
        # (None only when a plugin is built outside a snapshot, e.g. in a unit test.)
        self.runtime: Runtime = weakref.proxy(runtime) if runtime is not None else runtime
        self.entity = entity
        self.id: str = entity.id if entity is not None else ""
        #: Request protocols the plugin runs on (Kong's ``protocols`` field).
        self.protocols: frozenset[str] = frozenset(HTTP_PROTOCOLS)
        cls = type(self)
        self.has_access = cls.defines("access")
        self.has_response = cls.defines("response")
        self.has_body = cls.defines("body")
        self.has_buffered = cls.defines("buffered")
        self.has_log = cls.defines("log")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} priority={self.priority} id={self.id}>"

    @classmethod
    def check(cls, config: Any) -> list[tuple[str, str]]:
        """Cross-field checks Kong's schema does with entity checks; ``(field, message)`` pairs."""
        return []

    @classmethod
    def check_invalid(cls, raw: dict[str, Any]) -> list[tuple[str, str]]:
        """The checks Kong also runs when some config field failed its own rules (the config
        as written, since it did not convert); ``(field, message)`` pairs as :meth:`check`."""
        return []

    async def access(self, ctx: RequestContext) -> Exit | None:  # pragma: no cover - optional
        return None

    def response(
        self, ctx: RequestContext, status: int, headers: list[tuple[bytes, bytes]]
    ) -> None:  # pragma: no cover - optional
        return None

    def body(
        self, ctx: RequestContext, chunk: bytes, last: bool
    ) -> bytes:  # pragma: no cover - optional
        return chunk

    async def buffered(
        self, ctx: RequestContext, status: int, headers: list[tuple[bytes, bytes]]
    ) -> Exit | None:  # pragma: no cover - optional
        return None

    def log(self, ctx: RequestContext) -> None:  # pragma: no cover - optional
        return None

    @classmethod
    def defines(cls, hook: str) -> bool:
        """True when the class overrides ``hook`` (so chains skip the ones it does not)."""
        return getattr(cls, hook) is not getattr(Plugin, hook)
