"""Kong's request debugging (``kong/timing``, Kong 3.5+): where a request's time went.

A request that carries ``X-Kong-Request-Debug: *`` from a loopback client (nginx's
``$remote_addr``: a trusted peer's real-IP header counts, as in Kong), or from any client with
the node's ``X-Kong-Request-Debug-Token``, is answered with ``X-Kong-Request-Debug-Output``: a
JSON tree in Kong's shape (``child``, ``total_time`` in milliseconds, ``request_id``,
``workspace_id``, ``total_time_without_upstream``). Past 2 KB a non-loopback client gets Kong's
truncation message instead and the tree goes to the log; ``X-Kong-Request-Debug-Log: true``
logs it too, in Kong's ``[request-debug]`` lines (3 KB parts). With ``request_debug`` on
(Kong's default) the three ``X-Kong-Request-Debug*`` headers are taken out of every request
before plugins or the upstream see them, whether or not they trigger anything.

Kong's phases as fastkong has them (``kong/timing/init.lua``'s contexts):

* ``rewrite``: from the request's start to the router (fastkong's plugins have no rewrite hook);
* ``access``: ``router`` (the route match) and ``plugins.<name>.<id>`` (each access hook), to
  the upstream exchange; ``dns.<name>.resolve`` (with ``cache_hit``) is filed here as Kong
  files it, though fastkong resolves a name when it opens a connection (so a request on a
  kept-alive connection has none);
* ``balancer``: each try, from taking a pooled connection to having one;
* ``upstream``: ``time_to_first_byte`` (from the last try to the response head) and, in the
  log's tree, ``streaming`` (to the response's last byte), whole milliseconds as Kong's;
* ``response``: the plugins' buffered-response hooks (Kong's ``response`` handlers);
* ``header_filter``, ``body_filter``, ``log``: the plugins' response, body and log hooks, each
  phase from its first hook to the head, the chunk or the log written.

Where the work goes: nothing here runs for a request without one of the three headers (the
header scan notes them: ``fastkong._core``). A debugged request runs the ordinary request path
(``Gateway.http``) again, on a copy of the gateway whose snapshot is this module's view of it
(:class:`DebugRuntime`, made once per config on its first debugged request: timed plugin
proxies, a timed router, no decision cache) and whose exchange records tries and lookups
through :mod:`fastkong.proxy.traced_exchange`'s recorder. The request's :class:`Timing` is
found by the hooks through a context variable, so the shared proxies carry no request state.
"""

from __future__ import annotations

import asyncio
import contextvars
import copy
import hmac
import ipaddress
import json
import logging
import math
import time
import uuid
import weakref
from collections.abc import Awaitable, Callable, Iterator, Mapping, MutableMapping
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NamedTuple, cast

from fastkong._core._h1_py import REQUEST_DEBUG
from fastkong.kong_conf import on_off
from fastkong.plugins.bundled._serializer import WORKSPACE_ID
from fastkong.proxy.traced_exchange import traced_exchange

if TYPE_CHECKING:
    from fastkong.plugins.base import Exit, Plugin
    from fastkong.plugins.chain import Phases, PluginSet
    from fastkong.plugins.context import RequestContext
    from fastkong.proxy.app import Gateway
    from fastkong.runtime import RoutePlan, Runtime

Message = MutableMapping[str, Any]
Send = Callable[[Message], Awaitable[None]]
Receive = Callable[[], Awaitable[Message]]

#: Kong's constants (``kong/constants.lua``, ``kong/timing/init.lua``).
TOKEN_FILE: Final = ".request_debug_token"
LOG_PREFIX: Final = "[request-debug]"
HEADER_JSON_TRUNCATE_LENGTH: Final = 1024 * 2
LOG_JSON_TRUNCATE_LENGTH: Final = 1024 * 3
TRUNCATED_MESSAGE: Final = (
    "Output is truncated, please check the error_log for full output by filtering with the "
    "request_id."
)
OUTPUT_HEADER: Final = b"x-kong-request-debug-output"
FILTER_HEADER: Final = b"x-kong-request-debug"
TOKEN_HEADER: Final = b"x-kong-request-debug-token"
LOG_HEADER: Final = b"x-kong-request-debug-log"
#: The supervisor's token for the workers (the setting's, or the one it generated).
TOKEN_ENV: Final = "FASTKONG_REQUEST_DEBUG_TOKEN"

log = logging.getLogger("fastkong.request_debug")

#: The debugged request's timing, for the hooks (unset outside debugged requests).
CURRENT: ContextVar[Timing | None] = ContextVar("fastkong_request_debug", default=None)


# -- settings --------------------------------------------------------------------------------------
class Settings(NamedTuple):
    """Kong's ``request_debug`` (default on) and ``request_debug_token`` (default unset)."""

    enabled: bool = True
    token: str | None = None


def request_debug_settings(environ: Mapping[str, str]) -> Settings:
    """The node's settings from ``KONG_REQUEST_DEBUG`` and ``KONG_REQUEST_DEBUG_TOKEN``
    (ValueError naming the setting when ``request_debug`` is not a boolean)."""
    enabled = on_off(environ.get("KONG_REQUEST_DEBUG") or "on", "request_debug")
    return Settings(enabled, environ.get("KONG_REQUEST_DEBUG_TOKEN") or None)


def write_token(prefix: Path, environ: Mapping[str, str]) -> str | None:
    """Kong's ``init``: the node's token (the setting's, else a random UUID) written to
    ``<prefix>/.request_debug_token`` (an old file replaced); None when ``request_debug`` is
    off (no file then)."""
    settings = request_debug_settings(environ)
    if not settings.enabled:
        return None
    token = settings.token or str(uuid.uuid4())
    path = prefix / TOKEN_FILE
    try:
        path.unlink(missing_ok=True)
        path.write_text(token)
    except OSError as exc:
        log.error("failed to write .request_debug_token file: %s", exc)
    log.info("%s token for request debugging: %s", LOG_PREFIX, token)
    return token


def is_loopback(address: str) -> bool:
    """Kong's check of ``binary_remote_addr``: 127.0.0.0/8 or ``::1``."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return ip.version == 4 and address.startswith("127.") or ip == ipaddress.IPv6Address("::1")


# -- the tree ----------------------------------------------------------------------------------
_START: Final = "____start____"


class Timing:
    """One debugged request's contexts (Kong's ``kong/timing/context.lua``): a tree of nested
    names, each with its accumulated ``total_time``, plus the phase under way."""

    __slots__ = (
        "root",
        "current",
        "stack",
        "phase_name",
        "log",
        "loopback",
        "waiting_since",
        "tfb",
        "upstream_done",
    )

    def __init__(self, log: bool, loopback: bool) -> None:
        self.root: dict[str, Any] = {}
        self.current = self.root
        self.stack: list[dict[str, Any]] = []
        self.phase_name: str | None = None
        #: Write the tree to the log (``X-Kong-Request-Debug-Log: true``, or truncated).
        self.log = log
        self.loopback = loopback
        #: When the last balancer try ended (Kong's ``KONG_BALANCER_ENDED_AT``), monotonic.
        self.waiting_since: float | None = None
        #: Seconds from the last try to the response head (Kong's ``KONG_WAITING_TIME``).
        self.tfb: float | None = None
        #: When the response's last byte went out (nginx's ``$upstream_response_time``'s end).
        self.upstream_done: float | None = None

    def __repr__(self) -> str:
        return f"<Timing phase={self.phase_name} depth={len(self.stack)} log={self.log}>"

    def enter(self, name: str) -> None:
        parent = self.current
        self.stack.append(parent)
        children: dict[str, Any] | None = parent.get("child")
        if children is None:
            children = parent["child"] = {}
        node: dict[str, Any] | None = children.get(name)
        if node is None:
            node = children[name] = {}
        node[_START] = time.perf_counter_ns()
        self.current = node

    def leave(self) -> None:
        node = self.current
        start = node.pop(_START, None)
        if start is not None:
            elapsed = (time.perf_counter_ns() - start) / 1e6
            node["total_time"] = node.get("total_time", 0) + elapsed
        self.current = self.stack.pop()

    def set_root_prop(self, key: str, value: Any) -> None:
        self.root[key] = value

    def record(self, path: tuple[str, ...], elapsed_ms: float, **props: Any) -> None:
        """A context at ``path`` from the root, timed elsewhere (a DNS lookup, filed under
        ``access`` as Kong files it, whichever phase fastkong ran it in)."""
        node = self.root
        for name in path:
            node = node.setdefault("child", {}).setdefault(name, {})
        node["total_time"] = node.get("total_time", 0) + elapsed_ms
        node.update(props)

    def phase(self, name: str) -> None:
        """Kong's ``before:<phase>``: the phase under way ends, ``name`` begins (nothing when it
        is the one under way)."""
        if self.phase_name == name:
            return
        self.end_phase()
        if name == "header_filter" and self.waiting_since is not None and self.tfb is None:
            self.tfb = time.monotonic() - self.waiting_since
        self.enter(name)
        self.phase_name = name

    def end_phase(self) -> None:
        """Kong's ``after:<phase>`` of the phase under way; contexts left open below it are
        Kong's dangling ones."""
        while self.stack:
            if len(self.stack) > 1:
                self.current["dangling"] = True
            self.leave()
        self.phase_name = None

    def _upstream(self, logging_phase: bool) -> None:
        """Kong's ``mock_upstream_phase``: whole milliseconds, for a proxied request."""
        if self.tfb is None:
            return
        tfb = math.floor(self.tfb * 1000)
        children = self.root.setdefault("child", {})
        phases: dict[str, Any] = {"time_to_first_byte": {"total_time": tfb}}
        upstream = {"total_time": tfb, "child": phases}
        if logging_phase and self.upstream_done is not None and self.waiting_since is not None:
            total = math.floor((self.upstream_done - self.waiting_since) * 1000)
            upstream["total_time"] = total
            phases["streaming"] = {"total_time": total - tfb}
        children["upstream"] = upstream

    def to_json(self, logging_phase: bool = False) -> str:
        """Kong's ``to_json``: the phase ends, the totals are floored to two decimals."""
        if len(self.stack) > 1:  # (below the phase under way)
            self.root["dangling"] = True
            log.warning("timing: dangling subcontext(s) detected")
        self.end_phase()
        self._upstream(logging_phase)
        tree = _render(self.root)
        children = tree.get("child")
        if children is not None:
            tree["total_time_without_upstream"] = round(
                sum(c.get("total_time", 0) for k, c in children.items() if k != "upstream"), 2
            )
        return json.dumps(tree, separators=(",", ":"))

    def header_output(self, request_id: str) -> str:
        """The ``X-Kong-Request-Debug-Output`` value (Kong's ``header_filter``)."""
        output = self.to_json()
        if len(output) >= HEADER_JSON_TRUNCATE_LENGTH and not self.loopback:
            output = json.dumps(
                {"truncated": True, "request_id": request_id, "message": TRUNCATED_MESSAGE},
                separators=(",", ":"),
            )
            self.log = True
        return output

    def log_lines(self) -> list[str]:
        """Kong's ``log``: the tree in one line, or in 3 KB parts."""
        output = self.to_json(logging_phase=True)
        if len(output) < LOG_JSON_TRUNCATE_LENGTH:
            return [f"{LOG_PREFIX} output: {output}"]
        size = LOG_JSON_TRUNCATE_LENGTH
        parts = [output[i : i + size] for i in range(0, len(output), size)]
        return [
            f"{LOG_PREFIX} parts: {n}/{len(parts)} output: {part}"
            for n, part in enumerate(parts, 1)
        ]


def _render(node: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == _START:
            continue
        if key == "child":
            out[key] = {name: _render(child) for name, child in value.items()}
        elif key == "total_time" and isinstance(value, float):
            out[key] = math.floor(value * 100) / 100
        else:
            out[key] = value
    return out


# -- the hooks: a config as a debugged request sees it ---------------------------------------------
class _Phase:
    """Enter ``<phase>.plugins.<name>.<id>`` for one hook of a plugin."""

    __slots__ = ("timing", "phase", "names")

    def __init__(self, timing: Timing, phase: str, names: tuple[str, str]) -> None:
        self.timing = timing
        self.phase = phase
        self.names = names

    def __enter__(self) -> None:
        timing = self.timing
        timing.phase(self.phase)
        timing.enter("plugins")
        timing.enter(self.names[0])
        timing.enter(self.names[1])

    def __exit__(self, *_: object) -> None:
        timing = self.timing
        timing.leave()
        timing.leave()
        timing.leave()


class TimedPlugin:
    """A plugin instance as debugged requests run it: each hook timed (Kong's
    ``before:plugin``/``after:plugin``); everything else is the instance's own."""

    def __init__(self, plugin: Plugin) -> None:
        self._plugin = plugin
        self._names = (plugin.name, plugin.id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._plugin, name)

    def __repr__(self) -> str:
        return f"<TimedPlugin {self._plugin!r}>"

    def _in(self, phase: str) -> _Phase | None:
        timing = CURRENT.get()
        return _Phase(timing, phase, self._names) if timing is not None else None

    async def access(self, ctx: RequestContext) -> Exit | None:
        scope = self._in("access")
        if scope is None:
            return await self._plugin.access(ctx)
        with scope:
            return await self._plugin.access(ctx)

    async def buffered(
        self, ctx: RequestContext, status: int, headers: list[tuple[bytes, bytes]]
    ) -> Exit | None:
        scope = self._in("response")
        if scope is None:
            return await self._plugin.buffered(ctx, status, headers)
        with scope:
            return await self._plugin.buffered(ctx, status, headers)

    def response(
        self, ctx: RequestContext, status: int, headers: list[tuple[bytes, bytes]]
    ) -> None:
        scope = self._in("header_filter")
        if scope is None:
            return self._plugin.response(ctx, status, headers)
        with scope:
            return self._plugin.response(ctx, status, headers)

    def body(self, ctx: RequestContext, chunk: bytes, last: bool) -> bytes:
        scope = self._in("body_filter")
        if scope is None:
            return self._plugin.body(ctx, chunk, last)
        with scope:
            return self._plugin.body(ctx, chunk, last)

    def log(self, ctx: RequestContext) -> None:
        scope = self._in("log")
        if scope is None:
            return self._plugin.log(ctx)
        with scope:
            return self._plugin.log(ctx)


class TimedPlugins:
    """A snapshot's :class:`~fastkong.plugins.chain.PluginSet` whose chains are of
    :class:`TimedPlugin` proxies (one per instance, made on first use)."""

    def __init__(self, plugins: PluginSet) -> None:
        self._plugins = plugins
        self._timed: dict[Plugin, TimedPlugin] = {}
        self.consumer_scoped = plugins.consumer_scoped
        self.by_name = plugins.by_name
        self.unrouted = self.timed(plugins.unrouted)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._plugins, name)

    def __len__(self) -> int:
        return len(self._plugins)

    def timed(self, chain: tuple[Plugin, ...]) -> tuple[Plugin, ...]:
        found = self._timed
        for plugin in chain:
            if plugin not in found:
                found[plugin] = TimedPlugin(plugin)
        return tuple(cast("Plugin", found[p]) for p in chain)

    def consumer_chain(
        self, route: str | None, service: str | None, consumer: str
    ) -> tuple[Plugin, ...]:
        return self.timed(self._plugins.consumer_chain(route, service, consumer))

    def phases(self, chain: tuple[Plugin, ...]) -> Phases:
        return self._plugins.phases(chain)


class _TimedRouter:
    """A router whose matches are Kong's ``router`` context (the ``access`` phase's first)."""

    def __init__(self, router: Any) -> None:
        self._router = router

    def __getattr__(self, name: str) -> Any:
        return getattr(self._router, name)

    def match(self, *args: Any) -> Any:
        timing = CURRENT.get()
        if timing is None:
            return self._router.match(*args)
        timing.phase("access")
        timing.enter("router")
        try:
            found = self._router.match(*args)
        finally:
            timing.leave()
        if found is not None:
            # Kong's ``workspace_id:got``: the matched route's workspace (DB-less: the one).
            timing.set_root_prop("workspace_id", WORKSPACE_ID)
        return found


class _TimedRoutes:
    """``runtime.routes`` whose plans run the timed chains (copies made on first use)."""

    def __init__(self, routes: list[RoutePlan], plugins: TimedPlugins) -> None:
        self._routes = routes
        self._plugins = plugins
        self._plans: dict[int, RoutePlan] = {}

    def __len__(self) -> int:
        return len(self._routes)

    def __iter__(self) -> Iterator[RoutePlan]:
        return (self[i] for i in range(len(self._routes)))

    def __getitem__(self, key: int) -> RoutePlan:
        plan = self._plans.get(key)
        if plan is None:
            plan = copy.copy(self._routes[key])
            plan.plugins = self._plugins.timed(plan.plugins)
            self._plans[key] = plan
        return plan


class _NoDecisions(dict):  # type: ignore[type-arg]
    """A debugged request routes every time (its router context is real), and keeps nothing."""

    def get(self, key: Any, default: Any = None) -> Any:
        return None

    def __setitem__(self, key: Any, value: Any) -> None:
        pass


class DebugRuntime:
    """A config snapshot as debugged requests see it; the snapshot's own for the rest (held
    weakly: the snapshot owns this view, which must not keep it alive)."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = weakref.proxy(runtime)
        self.plugins = TimedPlugins(runtime.plugins)
        self.routes = _TimedRoutes(runtime.routes, self.plugins)
        self.router = _TimedRouter(runtime.router)
        expr = runtime.expression_router
        self.expression_router = _TimedRouter(expr) if expr is not None else None
        self.decisions = _NoDecisions()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._runtime, name)

    def __repr__(self) -> str:
        return f"<DebugRuntime {self._runtime!r}>"


def debug_runtime(runtime: Runtime) -> Runtime:
    """The snapshot's :class:`DebugRuntime` (made on its first debugged request)."""
    found = runtime.request_debug
    if found is None:
        found = runtime.request_debug = DebugRuntime(runtime)
    return cast("Runtime", found)


def _timed_send(send: Send, timing: Timing, request_id: str) -> Send:
    """Kong's ``after:header_filter`` (the output header) and ``body_filter`` phases."""

    async def timed(message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            timing.phase("header_filter")
            output = timing.header_output(request_id)
            headers = [*message["headers"], (OUTPUT_HEADER, output.encode())]
            message = {**message, "headers": headers}
        elif kind == "http.response.body":
            timing.phase("body_filter")
            timing.end_phase()
            if not message.get("more_body"):
                timing.upstream_done = time.monotonic()
        await send(message)

    return timed


def _timed_exchange(view: Gateway, timing: Timing) -> Callable[..., Awaitable[None]]:
    """The exchange of a debugged request: Kong's access phase ends where it begins; the
    tries and lookups are recorded by :mod:`fastkong.proxy.traced_exchange`'s recorder."""
    inner = traced_exchange(view, timing)

    async def exchange(*args: Any, **kwargs: Any) -> None:
        timing.end_phase()
        await inner(*args, **kwargs)

    return exchange


# -- the gate ----------------------------------------------------------------------------------
class RequestDebug:
    """One worker's request debugging (``request_debug = on``) and the node's token."""

    __slots__ = ("token",)

    def __init__(self, token: str) -> None:
        self.token = token

    def __repr__(self) -> str:
        return "<RequestDebug>"

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> RequestDebug | None:
        """The worker's, or None when ``request_debug`` is off (the supervisor's token, else
        the setting's, else a random one: a worker outside the supervisor)."""
        settings = request_debug_settings(environ)
        if not settings.enabled:
            return None
        return cls(environ.get(TOKEN_ENV) or settings.token or str(uuid.uuid4()))

    def authorized(self, found: Mapping[bytes, bytes], remote: str) -> Timing | None:
        """Kong's ``timing.auth``: a request to debug (``*``, from loopback or with the
        token), its timing; else None."""
        if found.get(FILTER_HEADER) != b"*":
            return None
        loopback = is_loopback(remote)
        if not loopback:
            token = found.get(TOKEN_HEADER)
            if token is None or not hmac.compare_digest(token, self.token.encode()):
                return None
        return Timing(found.get(LOG_HEADER) == b"true", loopback)

    async def serve(
        self, gateway: Gateway, scope: MutableMapping[str, Any], receive: Receive, send: Send,
        request_id: str,
    ) -> None:  # fmt: skip
        """A request with one of the three headers: they go (for plugins and the upstream
        alike, as Kong's ``ngx.req.set_header(name, nil)``), then the request runs again,
        debugged when it asked to be."""
        found: dict[bytes, bytes] = {}
        kept = []
        for name, value in scope["headers"]:
            if name in REQUEST_DEBUG:
                found.setdefault(name, value)  # (nginx's $http_*: the first)
            else:
                kept.append((name, value))
        scope["headers"] = kept
        timing = self.authorized(found, gateway.remote_addr(scope))
        if timing is None:
            gateway.requests -= 1  # (counted again)
            await gateway.http(scope, receive, send, request_id)
            return
        timing.set_root_prop("request_id", request_id)
        timing.phase("rewrite")
        runtime = gateway.runtime  # held for the request: its view holds it weakly
        view = copy.copy(gateway)
        view.request_debug = None
        view.runtime = debug_runtime(runtime)
        view.__dict__["exchange"] = _timed_exchange(view, timing)

        # The hooks find this request's timing in CURRENT, set in a task and context of the
        # request's own: Granian may run requests' coroutines in one shared context, where two
        # debugged requests at once would read each other's.
        async def debugged() -> None:
            CURRENT.set(timing)
            await view.http(scope, receive, _timed_send(send, timing, request_id), request_id)

        loop = asyncio.get_running_loop()
        try:
            await loop.create_task(debugged(), context=contextvars.copy_context())
        finally:
            if gateway.h2_pool is None and view.h2_pool is not None:
                gateway.h2_pool = view.h2_pool  # (made by this request: the gateway closes it)
        timing.phase("log")
        timing.end_phase()
        if timing.log:
            client = gateway.remote_addr(scope)
            for line in timing.log_lines():
                log.info(
                    '%s while logging request, client: %s, request_id: "%s"',
                    line,
                    client,
                    request_id,
                )


__all__ = [
    "CURRENT",
    "HEADER_JSON_TRUNCATE_LENGTH",
    "LOG_JSON_TRUNCATE_LENGTH",
    "LOG_PREFIX",
    "TOKEN_ENV",
    "TOKEN_FILE",
    "DebugRuntime",
    "RequestDebug",
    "Settings",
    "TimedPlugin",
    "TimedPlugins",
    "Timing",
    "debug_runtime",
    "is_loopback",
    "request_debug_settings",
    "write_token",
]
