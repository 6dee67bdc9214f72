"""Kong's ``rate-limiting`` plugin (``kong/plugins/rate-limiting/{schema,handler}.lua``).

Contract (Kong's): limits per ``second`` .. ``year`` in calendar-aligned UTC windows, counted per
identifier (``limit_by``) in the plugin's scope (its route and service ids, or the zero UUID);
``X-RateLimit-Limit-<Period>``/``X-RateLimit-Remaining-<Period>`` per period and
``RateLimit-Limit``/``-Remaining``/``-Reset`` for the most restrictive one (lowest remaining;
on a tie the longer window), ``Retry-After`` on a block, then ``kong.response.error(error_code,
error_message)``. ``policy: local`` counts per node, ``redis`` across the cluster.

Where fastkong differs, on purpose (``docs/rate-limiting.md``):

* the check and the count are one atomic step, for every period at once, and a rejected request
  counts nothing: ``local`` admits exactly the limit per node under any concurrency (Kong checks,
  then counts from a timer, so bursts overshoot), and ``redis`` is one round trip per request
  (Kong: one per period, and it counts rejected requests);
* ``algorithm`` (an extra field) picks ``fixed-window`` (Kong's, the default),
  ``sliding-window`` (weighted two-window counter) or ``token-bucket`` (capacity = the limit,
  refilled over the period);
* when Redis fails, the client backs off and, with ``fault_tolerant``, requests are limited by
  the node's local counters (the configured limit per node, never unlimited) until Redis answers
  again; Kong lets every request through and waits ``redis.timeout`` on each one.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal, NamedTuple

import msgspec
from msgspec import Meta

from fastkong._core.windows import PERIOD_SECONDS, window_length, window_start
from fastkong.config import checks as C
from fastkong.config import errors as E
from fastkong.config.schema import REFERENCEABLE, HeaderName, Path
from fastkong.plugins.base import REQUIRED, Exit, Plugin, kong_error
from fastkong.plugins.bundled._redis_schema import RedisConfig, redis_checks, redis_options
from fastkong.plugins.registry import register_plugin
from fastkong.store import local as local_store
from fastkong.store import redis as redis_store

if TYPE_CHECKING:
    from fastkong._core._ratelimit_py import CounterTable
    from fastkong.plugins.context import RequestContext
    from fastkong.runtime import Runtime

log = logging.getLogger("fastkong.plugins.rate-limiting")

PERIODS: Final = ("second", "minute", "hour", "day", "month", "year")
ZERO_UUID: Final = "00000000-0000-0000-0000-000000000000"
ERR_UNEXPECTED: Final = "An unexpected error occurred"
SYNC_RATE_REALTIME: Final = -1
#: The smallest token-bucket refill the counters can represent (0.5 micro-tokens per ms).
MIN_BUCKET_RATE: Final = 0.0005

#: Kong's ``number``: 100 stays 100 in the stored config, 2.5 stays 2.5.
Limit = Annotated[float, Meta(gt=0)] | Annotated[int, Meta(gt=0)]
LooseString = Annotated[str, Meta(min_length=0)]
_ALIASES: Final = (
    "host",
    "port",
    "password",
    "username",
    "ssl",
    "ssl_verify",
    "server_name",
    "timeout",
    "database",
)
_REDIS_DEFAULTS: Final = RedisConfig()


class RedisShorthands(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Kong's deprecated flat aliases of ``redis.*`` (shorthand fields, removal in Kong 4.0)
    for a plugin config with Kong's rate-limiting Redis record: folded into ``redis`` once
    decoded (:func:`fold_redis_aliases`)."""

    redis_host: str | None = None
    redis_port: Annotated[int, Meta(ge=0, le=65535)] | None = None
    redis_password: Annotated[LooseString, REFERENCEABLE] | None = None
    redis_username: Annotated[str, REFERENCEABLE] | None = None
    redis_ssl: bool | None = None
    redis_ssl_verify: bool | None = None
    redis_server_name: str | None = None
    redis_timeout: Annotated[int, Meta(ge=0, le=2**31 - 2)] | None = None
    redis_database: int | None = None

    def __post_init__(self) -> None:
        fold_redis_aliases(self)


class RateLimitingConfig(RedisShorthands, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Kong's schema (DB-less: ``policy`` is ``local`` or ``redis``) plus ``algorithm``."""

    second: Limit | None = None
    minute: Limit | None = None
    hour: Limit | None = None
    day: Limit | None = None
    month: Limit | None = None
    year: Limit | None = None
    limit_by: Literal["consumer", "credential", "ip", "service", "header", "path"] = "consumer"
    header_name: HeaderName | None = None
    path: Path | None = None
    policy: Literal["local", "redis"] = "local"
    fault_tolerant: Annotated[bool, REQUIRED] = True
    redis: RedisConfig = msgspec.field(default_factory=RedisConfig)
    hide_client_headers: Annotated[bool, REQUIRED] = False
    error_code: Limit = 429
    error_message: str = "API rate limit exceeded"
    sync_rate: Annotated[float | int, REQUIRED] = SYNC_RATE_REALTIME
    algorithm: Literal["fixed-window", "sliding-window", "token-bucket"] = "fixed-window"


def fold_redis_aliases(config: Any) -> None:
    """Kong expands the ``redis_*`` shorthands into ``redis`` before storing the config, and
    shows each shorthand again, as the value of its ``redis`` field, when the config is read
    back. (A conflicting alias is left as it is, for the plugin's check to report.)"""
    overrides, conflicts = folded_redis(config)
    if overrides:
        redis = msgspec.structs.replace(config.redis, **overrides)
        msgspec.structs.force_setattr(config, "redis", redis)
    if not conflicts:
        for name in _ALIASES:
            msgspec.structs.force_setattr(config, f"redis_{name}", getattr(config.redis, name))


def _lua_number(x: float) -> str:
    """A number as Kong prints it in a header (LuaJIT's ``%.14g``)."""
    if x.__class__ is int or x == int(x):
        return str(int(x))
    return f"{x:.14g}"


def folded_redis(config: Any) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The deprecated ``redis_*`` values to apply over ``config.redis``, and any conflicts.

    As in Kong, an alias fills its ``redis.*`` field; an explicit, different ``redis.*`` value
    (one that is not the default) is an error.
    """
    overrides: dict[str, Any] = {}
    errors: list[tuple[str, str]] = []
    for name in _ALIASES:
        value = getattr(config, f"redis_{name}")
        if value is None:
            continue
        current = getattr(config.redis, name)
        if current is not None and current != getattr(_REDIS_DEFAULTS, name) and current != value:
            message = (
                "both deprecated and new field are used but their values mismatch: "
                f"redis_{name} = {_lua_value(value)} vs redis.{name} = {_lua_value(current)}"
            )
            errors.append((f"redis_{name}", message))
        else:
            overrides[name] = value
    return overrides, errors


def redis_policy_checks(config: Any) -> list[tuple[str, str]]:
    """The ``redis_*`` shorthands' conflicts and values, and (``policy: redis``) the ``redis``
    record's checks, for a plugin with Kong's rate-limiting Redis fields."""
    out = folded_redis(config)[1]
    # a folded alias is checked as the ``redis`` field it became (Kong: after expansion)
    for name, check_value in (("host", C.check_host), ("server_name", C.check_sni)):
        value = getattr(config, f"redis_{name}")
        message = check_value(value) if value is not None else None
        if message is not None:
            out.append((f"redis.{name}", message))
    if config.policy == "redis":
        out += redis_checks(config.redis, "redis", "config.redis", "config.policy")
    return out


def _lua_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


#: Identifiers whose counter keys are kept for the current second (beyond: computed afresh).
_KEYS_PER_SECOND = 4096


class CounterScope:
    """What Kong's two rate-limiting plugins share: the scope in their counter keys, and the
    worker's Redis client for their ``redis`` record (one per event loop)."""

    scope: str
    redis_options: redis_store.RedisOptions | None
    _client: redis_store.RedisClient | None

    def set_scope(self, entity: Any) -> None:
        """``<route_id>:<service_id>`` (the zero UUID for what the plugin is not scoped to)."""
        route = getattr(entity, "route", None) or ZERO_UUID
        service = getattr(entity, "service", None) or ZERO_UUID
        self.scope = f"{route}:{service}"

    def client(self) -> redis_store.RedisClient:
        client = self._client
        if client is None or client.loop is not asyncio.get_running_loop():
            assert self.redis_options is not None
            client = self._client = redis_store.client_for(self.redis_options)
        return client


@register_plugin
class RateLimiting(CounterScope, Plugin):
    """The handler: one instance per plugin entity and config snapshot."""

    name = "rate-limiting"
    priority = 910
    Config = RateLimitingConfig

    def __init__(self, config: RateLimitingConfig, runtime: Runtime, entity: Any) -> None:
        super().__init__(config, runtime, entity)
        self.set_scope(entity)
        self.periods = tuple(p for p in PERIODS if getattr(config, p) is not None)
        # integral limits stay ints, so remaining counts are ints (cheap to print)
        self.limits: tuple[float, ...] = tuple(
            int(x) if x == int(x) else float(x) for x in (getattr(config, p) for p in self.periods)
        )
        self.ints = [math.ceil(limit) for limit in self.limits]
        self.lengths = tuple(PERIOD_SECONDS[p] for p in self.periods)
        self.windows_ms = [n * 1000 for n in self.lengths]
        #: Token-bucket refill rates per second (the limit over the period).
        self.rates = [lim / n for lim, n in zip(self.limits, self.lengths, strict=True)]
        self.limit_headers = tuple(
            (f"x-ratelimit-limit-{p}".encode(), _lua_number(lim).encode())
            for p, lim in zip(self.periods, self.limits, strict=True)
        )
        self.remaining_names = tuple(f"x-ratelimit-remaining-{p}".encode() for p in self.periods)
        self.status = int(config.error_code)
        self.message = config.error_message
        if not 400 <= config.error_code <= 599:
            # kong.response.error raises on such a code: the blocked request ends in a 500.
            self.status, self.message = 500, ERR_UNEXPECTED
        self.algorithm = config.algorithm
        self.batched = config.policy == "redis" and config.sync_rate != SYNC_RATE_REALTIME
        self.redis_options = redis_options(config.redis) if config.policy == "redis" else None
        self._cached_second = -1
        self._keys: dict[str, list[str]] = {}
        self._cached = _Windows([], [], [], [])
        self._client: redis_store.RedisClient | None = None

    def __repr__(self) -> str:
        limits = ", ".join(
            f"{p}={_lua_number(x)}" for p, x in zip(self.periods, self.limits, strict=True)
        )
        return (
            f"<RateLimiting {limits} by={self.config.limit_by} policy={self.config.policy} "
            f"algorithm={self.algorithm} scope={self.scope}>"
        )

    # -- config -----------------------------------------------------------------------------------
    @classmethod
    def check(cls, config: Any) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        given = [(p, getattr(config, p)) for p in PERIODS if getattr(config, p) is not None]
        if not given:
            fields = ", ".join(f"'config.{p}'" for p in PERIODS)
            out.append(("", E.AT_LEAST_ONE_OF.format(fields)))
        # Kong's custom validator: its first failure, reported at ``config`` itself (".").
        message = _periods_order(given)
        if message is None and config.policy != "redis" and config.sync_rate != -1:
            message = "sync_rate can only be used with the redis policy"
        if message is None and config.policy == "redis":
            if config.sync_rate != -1 and config.sync_rate < 0.02:
                message = "sync_rate must be greater than 0.02, or -1 to disable"
        if message is not None:
            out.append((".", message))
        if config.limit_by == "header" and config.header_name is None:
            out += [("header_name", E.REQUIRED), ("", E.CONDITIONAL.format("config.limit_by"))]
        if config.limit_by == "path" and config.path is None:
            out += [("path", E.REQUIRED), ("", E.CONDITIONAL.format("config.limit_by"))]
        out += redis_policy_checks(config)
        if config.policy == "redis":
            if config.sync_rate != -1 and config.algorithm != "fixed-window":
                out.append(
                    ("sync_rate", "sync_rate > 0 works with the fixed-window algorithm only")
                )
        if config.algorithm == "token-bucket":
            for p, limit in given:
                if limit / PERIOD_SECONDS[p] < MIN_BUCKET_RATE:
                    out.append(
                        (
                            p,
                            f"too low for token-bucket: {_lua_number(limit)} per {p} refills "
                            f"less than {MIN_BUCKET_RATE} tokens per second",
                        )
                    )
        return out

    # -- the request ------------------------------------------------------------------------------
    def identifier(self, ctx: RequestContext) -> str:
        """Kong's ``get_identifier``: whom this request counts for."""
        by = self.config.limit_by
        found: Any = None
        if by == "consumer":
            entity = ctx.consumer or ctx.credential
            found = entity.id if entity is not None else None
        elif by == "ip":
            return ctx.forwarded_ip
        elif by == "credential":
            found = ctx.credential.id if ctx.credential is not None else None
        elif by == "service":
            found = ctx.service.id if ctx.service is not None else None
        elif by == "header":
            found = ctx.header(self.config.header_name or "")
        elif by == "path" and ctx.path == self.config.path:
            found = ctx.path
        return found or ctx.forwarded_ip

    async def access(self, ctx: RequestContext) -> Exit | None:
        ident = self.identifier(ctx)
        now = time.time()
        show = not self.config.hide_client_headers
        if self.redis_options is None:
            ok, remaining, resets = self.hit_local(local_store.node_table(), ident, now)
        else:
            try:
                ok, remaining, resets = await self.hit_redis(ident)
            except redis_store.RedisError as exc:
                if not self.config.fault_tolerant:
                    if not isinstance(exc, redis_store.RedisUnavailable):
                        log.error("rate-limiting: Redis failed: %s", exc)
                    return kong_error(500, ERR_UNEXPECTED)
                # The node's own counters stand in: the limit per node, not unlimited.
                ok, remaining, resets = self.hit_local(local_store.node_table(), ident, now)
                show = show and not ok  # Kong sends no headers when the store fails
        if show:
            self.add_headers(ctx, ok, remaining, resets)
        if ok:
            return None
        return kong_error(self.status, self.message)

    def add_headers(
        self, ctx: RequestContext, ok: bool, remaining: list[float], resets: list[int]
    ) -> None:
        out = ctx.response_headers
        best = -1
        best_remaining = 0.0
        for i, limit_header in enumerate(self.limit_headers):
            left = remaining[i] if remaining[i] > 0 else 0
            out.append(limit_header)
            out.append((self.remaining_names[i], _lua_number(left).encode()))
            if (
                best < 0
                or left < best_remaining
                or (left == best_remaining and self.lengths[i] > self.lengths[best])
            ):
                best = i
                best_remaining = left
        reset = str(resets[best]).encode()
        out.append((b"ratelimit-limit", self.limit_headers[best][1]))
        out.append((b"ratelimit-remaining", _lua_number(best_remaining).encode()))
        out.append((b"ratelimit-reset", reset))
        if not ok:
            out.append((b"retry-after", reset))

    def windows(self, second: int) -> _Windows:
        """The fixed windows at ``second`` (computed once a second): starts and lengths (s),
        Kong's key suffixes ``<period_date>:<period>`` and RateLimit-Reset values."""
        if second != self._cached_second:
            starts = [window_start(p, second) for p in self.periods]
            self._cached = _Windows(
                starts,
                [window_length(p, s) for p, s in zip(self.periods, starts, strict=True)],
                [f"{s * 1000}:{p}" for p, s in zip(self.periods, starts, strict=True)],
                # Kong's: the nominal period (30-day month, 365-day year) minus the elapsed
                [max(1, n - (second - s)) for n, s in zip(self.lengths, starts, strict=True)],
            )
            self._cached_second = second
            self._keys.clear()
        return self._cached

    # -- local counters ---------------------------------------------------------------------------
    def hit_local(
        self, table: CounterTable, ident: str, now: float
    ) -> tuple[bool, list[float], list[int]]:
        """Check and count on the node's table (``policy: local``, and Redis's fallback)."""
        if self.algorithm == "fixed-window":
            second = int(now)
            w = self.windows(second)
            # The counters' keys change with the windows: kept per identifier for this second.
            keys = self._keys.get(ident)
            if keys is None:
                if len(self._keys) >= _KEYS_PER_SECOND:
                    self._keys.clear()
                prefix = f"ratelimit:{self.scope}:{ident}:"
                keys = self._keys[ident] = [prefix + suffix for suffix in w.suffixes]
            ok, usages = table.hit_windows(keys, w.starts, self.ints, w.lengths, 1, second)
            return ok, [lim - u for lim, u in zip(self.limits, usages, strict=True)], w.resets
        prefix = f"ratelimit:{self.scope}:{ident}:"
        now_ms = int(now * 1000)
        # Every period in one atomic step: counted in all of them or in none, whatever another
        # worker does meanwhile.
        keys = [f"{prefix}{self.algorithm}:{p}" for p in self.periods]
        if self.algorithm == "sliding-window":
            ok, left, reset_ms = table.sliding_windows(keys, now_ms, self.windows_ms, self.ints, 1)
            return ok, [float(x) for x in left], [max(1, -(-ms // 1000)) for ms in reset_ms]
        ok, left, retries = table.token_buckets(keys, now_ms, self.rates, self.ints, 1)
        resets = [
            _bucket_reset(ok, tokens, retry, cap, rate)
            for tokens, retry, cap, rate in zip(left, retries, self.ints, self.rates, strict=True)
        ]
        return ok, [float(x) for x in left], resets

    # -- Redis ------------------------------------------------------------------------------------
    async def hit_redis(self, ident: str) -> tuple[bool, list[float], list[int]]:
        """Check and count in Redis: one script call, or the worker's batch (``sync_rate``)."""
        client = self.client()
        if not client.available:
            raise redis_store.RedisUnavailable(str(client.last_error))
        tag = f"{self.scope}:{ident}"
        periods = self.periods
        if self.batched:
            w = self.windows(client.now_ms() // 1000)
            keys = [f"ratelimit:{{{tag}}}:{suffix}" for suffix in w.suffixes]
            expires = [(s + n) * 1000 + 1000 for s, n in zip(w.starts, w.lengths, strict=True)]
            batcher = redis_store.batcher_for(client, self.config.sync_rate)
            ok, usages = batcher.hit(keys, expires, self.ints, 1)
            remaining = [lim - u for lim, u in zip(self.limits, usages, strict=True)]
            return ok, remaining, w.resets
        if self.algorithm == "fixed-window":

            def compute_fixed(now_ms: int) -> tuple[list[str], list[int]]:
                w = self.windows(now_ms // 1000)
                argv: list[int] = []
                for s, n, lim in zip(w.starts, w.lengths, self.ints, strict=True):
                    argv += (s, n, lim)
                return [f"ratelimit:{{{tag}}}:{suffix}" for suffix in w.suffixes], argv

            reply = await redis_store.run_windowed(
                client, redis_store.FIXED_WINDOW, compute_fixed, 1
            )
            w = self.windows(reply[1] // 1000)  # Redis's clock decides the windows
            remaining = [lim - u for lim, u in zip(self.limits, reply[2:], strict=True)]
            return reply[0] == 1, remaining, w.resets
        if self.algorithm == "sliding-window":

            def compute_sliding(now_ms: int) -> tuple[list[str], list[int]]:
                keys: list[str] = []
                argv: list[int] = []
                for p, n, lim in zip(periods, self.lengths, self.ints, strict=True):
                    w = n * 1000
                    start = now_ms - now_ms % w
                    keys += (
                        f"ratelimit:{{{tag}}}:{start}:{p}",
                        f"ratelimit:{{{tag}}}:{start - w}:{p}",
                    )
                    argv += (start, w, lim)
                return keys, argv

            reply = await redis_store.run_windowed(
                client, redis_store.SLIDING_WINDOW, compute_sliding, 1
            )
            remaining = [float(x) for x in reply[2::2]]
            resets = [max(1, -(-ms // 1000)) for ms in reply[3::2]]
            return reply[0] == 1, remaining, resets
        keys = [f"ratelimit:{{{tag}}}:token-bucket:{p}" for p in periods]
        argv: list[int] = []
        for lim, n in zip(self.ints, self.lengths, strict=True):
            argv += (lim, math.floor(lim / n * 1000 + 0.5))
        reply = await client.evalsha(redis_store.TOKEN_BUCKET, keys, (1, *argv))
        ok = reply[0] == 1
        remaining = [float(x) for x in reply[2::2]]
        resets = [
            _bucket_reset(ok, int(left), int(retry), lim, lim / n)
            for left, retry, lim, n in zip(
                reply[2::2], reply[3::2], self.ints, self.lengths, strict=True
            )
        ]
        return ok, remaining, resets


class _Windows(NamedTuple):
    starts: list[int]
    lengths: list[int]
    suffixes: list[str]
    resets: list[int]


def _periods_order(given: list[tuple[str, float]]) -> str | None:
    """Kong's ``validate_periods_order``: a longer period may not have a lower limit."""
    for i, (lower, v1) in enumerate(given):
        for upper, v2 in given[i + 1 :]:
            if v2 < v1:
                return (
                    f"The limit for {upper}({v2:.1f}) cannot be lower than the limit for "
                    f"{lower}({v1:.1f})"
                )
    return None


def _bucket_reset(admitted: bool, left: int, retry_ms: int, capacity: int, rate: float) -> int:
    """Token bucket: seconds until full again, or (rejected) until the request could pass."""
    if not admitted:
        if retry_ms < 0:
            return max(1, math.ceil(capacity / rate))
        return max(1, -(-retry_ms // 1000))
    return max(1, math.ceil((capacity - left) / rate))
