"""Kong's ``balancer`` and ``dns_query`` instrumentations: the upstream exchange of a traced
request, recorded without a line of :mod:`fastkong.proxy.exchange` knowing it.

A config whose node records either (:mod:`fastkong.proxy.tracing`) gets a gateway whose
``exchange`` is :func:`traced_exchange`'s (``Gateway.swap`` decides, once per config). For a
request with a trace it runs the ordinary :meth:`Exchange.exchange` on a view of the gateway
whose connection pool and resolver are this request's :class:`Recorder`: each ``take_idle`` is
a new try (Kong's balancer phase: the exchange takes a connection once per try), each
``connect`` ends one (Kong ends a failed try's span once its connection was made), each
``resolve`` of a name is a ``kong.dns`` span. A try's peer (address, port, name) is the one the
exchange tells the request context (``ctx.upstream_peer``, Kong's ``balancer_data``).

Kong resolves the upstream's name for every request (its DNS cache answers); fastkong resolves
it when it opens a connection, so a request on a kept-alive connection has no ``kong.dns`` span.
A try whose name did not resolve is no try (Kong fails it before its balancer phase).

The same recorder times a debugged request's tries and lookups (Kong's request debugging,
:mod:`fastkong.proxy.request_debug`): its ``balancer`` contexts and ``dns`` lookups.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, cast

from fastkong.proxy.exchange import Exchange
from fastkong.proxy.tracing import KEY, KIND_CLIENT, STATUS_ERROR, Instrumentation, Trace, Try
from fastkong.proxy.upstream import ConnectionPool, PoolKey, UpstreamConnection, UpstreamTimeout
from fastkong.upstreams.balancers import is_ip
from fastkong.upstreams.dns import Resolver

if TYPE_CHECKING:
    from fastkong.plugins.context import RequestContext
    from fastkong.proxy.request_debug import Timing

#: What a request no opentelemetry plugin traces records for it: nothing.
_UNTRACED = Instrumentation()


class Recorder:
    """One traced (or debugged: ``timing``) request's connection pool and resolver: the real
    ones, observed."""

    __slots__ = ("pool", "resolver", "trace", "ctx", "inst", "attempt", "port", "timing")

    def __init__(
        self,
        pool: ConnectionPool,
        resolver: Resolver,
        trace: Trace | None,
        ctx: RequestContext | None,
        timing: Timing | None = None,
    ) -> None:
        self.pool = pool
        self.resolver = resolver
        self.trace = cast(Trace, trace)  # (only read when ``inst`` records something)
        self.ctx = ctx
        self.inst = trace.inst if trace is not None else _UNTRACED
        self.attempt: Try | None = None
        self.port = 0
        self.timing = timing

    def __repr__(self) -> str:
        return f"<Recorder {self.trace!r} attempt={self.attempt is not None}>"

    def __getattr__(self, name: str) -> Any:
        return getattr(self.pool, name)  # release, ssl_context, ...: the pool's own

    def settle(self) -> None:
        """The try under way is over: its peer is the one the exchange named."""
        attempt = self.attempt
        if attempt is not None:
            self.attempt = None
            peer = self.ctx.upstream_peer if self.ctx is not None else None
            if peer is not None:
                attempt.ip, attempt.port, attempt.name = peer

    def take_idle(self, key: PoolKey) -> UpstreamConnection | None:
        self.settle()
        self.port = key[1]
        if self.inst.balancer:
            self.attempt = self.trace.start_try(key[1], key[0])
        timing = self.timing
        if timing is None:
            return self.pool.take_idle(key)
        timing.phase("balancer")  # a try: Kong's balancer phase, to a connection
        conn = self.pool.take_idle(key)
        if conn is not None:
            self.tried()
        return conn

    def tried(self) -> None:
        """A debugged request's try ended: the upstream's wait begins."""
        timing = self.timing
        if timing is not None:
            timing.end_phase()
            timing.waiting_since = time.monotonic()

    async def connect(self, key: PoolKey, address: str, timeout: float) -> UpstreamConnection:
        attempt = self.attempt
        try:
            return await self.pool.connect(key, address, timeout)
        except UpstreamTimeout:
            if attempt is not None:
                attempt.code = 504  # nginx's "upstream timed out" (Kong's failure code)
            raise
        finally:
            if attempt is not None:
                attempt.end = time.monotonic_ns()
            self.tried()

    async def resolve(self, host: str, *, stale_ok: bool = True) -> list[str]:
        if is_ip(host):  # Kong looks up names only
            return await self.resolver.resolve(host, stale_ok=stale_ok)
        if self.timing is not None:
            return await self._timed_resolve(host, stale_ok)
        return await self._resolve(host, stale_ok)

    async def _timed_resolve(self, host: str, stale_ok: bool) -> list[str]:
        """Kong's ``dns.<name>.resolve`` context, filed under ``access`` as Kong files it."""
        assert self.timing is not None
        cache_hit = self.resolver.usable(host) is not None
        start = time.perf_counter_ns()
        try:
            return await self._resolve(host, stale_ok)
        finally:
            elapsed = (time.perf_counter_ns() - start) / 1e6
            self.timing.record(("access", "dns", host, "resolve"), elapsed, cache_hit=cache_hit)

    async def _resolve(self, host: str, stale_ok: bool) -> list[str]:
        span = None
        if self.inst.dns_query:
            span = self.trace.child("kong.dns", KIND_CLIENT)
            span.attributes["dns.record.domain"] = host
            span.attributes["dns.record.port"] = self.port
        try:
            addresses = await self.resolver.resolve(host, stale_ok=stale_ok)
        except OSError as exc:
            if span is not None:
                span.record_error(str(exc))
                span.status = STATUS_ERROR
            if self.attempt is not None:  # no peer to try: not a try
                self.trace.tries.remove(self.attempt)
                self.attempt = None
            raise
        finally:
            if span is not None:
                span.end = time.monotonic_ns()
        if span is not None:
            span.attributes["dns.record.ip"] = addresses[0]
        return addresses


class _View:
    """The gateway as one traced request's exchange sees it: its pool and resolver are the
    request's :class:`Recorder`, everything else the gateway's own."""

    __slots__ = ("_gateway", "pool", "resolver")

    def __init__(self, gateway: Exchange, recorder: Recorder) -> None:
        object.__setattr__(self, "_gateway", gateway)
        object.__setattr__(self, "pool", recorder)
        object.__setattr__(self, "resolver", recorder)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._gateway, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._gateway, name, value)  # (the HTTP/2 pool, made on first use)


#: Where ``ctx`` sits among :meth:`Exchange.exchange`'s positional arguments (after ``self``).
_CTX_AT = list(inspect.signature(Exchange.exchange).parameters).index("ctx") - 1


def traced_exchange(
    gateway: Exchange, timing: Timing | None = None
) -> Callable[..., Awaitable[None]]:
    """The gateway's ``exchange`` for a config that records balancer tries or DNS lookups, or
    for one debugged request (``timing``): the same arguments as :meth:`Exchange.exchange`,
    passed on unchanged."""
    plain = Exchange.exchange

    async def exchange(*args: Any, **kwargs: Any) -> None:
        ctx: RequestContext | None = kwargs.get(
            "ctx", args[_CTX_AT] if len(args) > _CTX_AT else None
        )
        trace = ctx.plugin_data.get(KEY) if ctx is not None else None
        if (trace is None and timing is None) or gateway.pool is None or gateway.resolver is None:
            # (a request no opentelemetry plugin traces)
            return await plain(gateway, *args, **kwargs)
        recorder = Recorder(gateway.pool, gateway.resolver, trace, ctx, timing)
        try:
            await plain(cast(Exchange, _View(gateway, recorder)), *args, **kwargs)
        finally:
            recorder.settle()

    return exchange


__all__ = ["Recorder", "traced_exchange"]
