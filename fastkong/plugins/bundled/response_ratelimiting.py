"""response-ratelimiting: limits the upstream counts in its responses
(``kong:kong/plugins/response-ratelimiting``).

Contract (Kong's): ``limits`` names counters (``video: {minute: 10}``); the upstream says what a
response costs in ``X-Kong-Limit: video=1, image=2`` (``header_name``), which is removed from
the client's response. Before proxying, each counter's smallest remaining goes upstream as
``X-RateLimit-Remaining-<name>``, and with ``block_on_first_violation`` an exhausted counter is
429 "API rate limit exceeded for '<name>'". The response gets ``X-RateLimit-Limit-<name>-<period>``
and ``X-RateLimit-Remaining-<name>-<period>`` (unless ``hide_client_headers``); a response that
spends from a counter already exhausted is replaced by a 429 without a body, and counted in
none of its counters. Windows and identifiers are rate-limiting's (calendar UTC windows;
``limit_by`` consumer, credential or ip, falling back to the client's address).

Where fastkong differs, on purpose: with ``policy: local`` a response is counted the moment its
head arrives, in one atomic step on the node's shared counters that also decides whether a
priced counter was already exhausted (one step for all its counters when they share a price;
mixed prices: :meth:`ResponseRateLimiting.spend_local`). Kong reads the usage before proxying
and counts later from a timer, so concurrent responses all pass on the same stale reading.
With ``policy: redis`` the check uses the usage read before proxying and the count follows the
response, as in Kong. ``block_on_first_violation`` blocks a counter at or past its limit (Kong:
only exactly at it, so an overshoot unblocks it).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal

import msgspec
from msgspec import Meta

from fastkong._core._ratelimit_py import MAX_KEYS as MAX_WINDOWS  # the kernel asserts the same
from fastkong._core.windows import window_length, window_start
from fastkong.config import errors as E
from fastkong.plugins.base import REQUIRED, Exit, Plugin, kong_error
from fastkong.plugins.bundled._redis_schema import RedisConfig, redis_options
from fastkong.plugins.bundled.rate_limiting import (
    ERR_UNEXPECTED,
    PERIODS,
    CounterScope,
    Limit,
    RedisShorthands,
    _lua_number,
    redis_policy_checks,
)
from fastkong.plugins.registry import register_plugin
from fastkong.store import local as local_store
from fastkong.store import redis as redis_store

if TYPE_CHECKING:
    from fastkong.plugins.context import RequestContext
    from fastkong.runtime import Runtime

log = logging.getLogger("fastkong.plugins.response-ratelimiting")

#: A limit no counter reaches: a plain read (cost 0) or an unconditional count.
_UNLIMITED: Final = 2**40
#: Redis counts in flight (held here until done).
_COUNTING: set[asyncio.Task[None]] = set()


class PeriodLimits(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    second: Limit | None = None
    minute: Limit | None = None
    hour: Limit | None = None
    day: Limit | None = None
    month: Limit | None = None
    year: Limit | None = None


class ResponseRateLimitingConfig(
    RedisShorthands, kw_only=True, frozen=True, forbid_unknown_fields=True
):
    header_name: str = "x-kong-limit"
    limit_by: Literal["consumer", "credential", "ip"] = "consumer"
    policy: Literal["local", "redis"] = "local"
    fault_tolerant: Annotated[bool, REQUIRED] = True
    redis: RedisConfig = msgspec.field(default_factory=RedisConfig)
    block_on_first_violation: Annotated[bool, REQUIRED] = False
    hide_client_headers: Annotated[bool, REQUIRED] = False
    limits: Annotated[dict[str, PeriodLimits], REQUIRED, Meta(min_length=1)]


class Counter:
    """One named limit of one plugin instance: its periods and their limits, in Kong's order."""

    __slots__ = ("name", "periods", "limits", "header")

    def __init__(self, name: str, limits: PeriodLimits) -> None:
        self.name = name
        self.periods = tuple(p for p in PERIODS if getattr(limits, p) is not None)
        self.limits: tuple[float, ...] = tuple(
            int(x) if x == int(x) else float(x) for x in (getattr(limits, p) for p in self.periods)
        )
        self.header = f"x-ratelimit-remaining-{name}"

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{p}={_lua_number(x)}" for p, x in zip(self.periods, self.limits, strict=True)
        )
        return f"<Counter {self.name} {shown}>"


class Usage:
    """What the access phase read: per counter, the remaining count of each period."""

    __slots__ = ("ident", "second", "remaining")

    def __init__(self, ident: str, second: int, remaining: dict[str, list[float]]) -> None:
        self.ident = ident
        self.second = second
        self.remaining = remaining


def parse_costs(values: list[str], known: dict[str, Counter]) -> dict[str, int]:
    """``name=n, name=n`` (every header line): the costs of known counters (Kong's parser:
    an entry that is not exactly ``name=number`` or names no counter is skipped)."""
    costs: dict[str, int] = {}
    for value in values:
        for part in value.split(","):
            pieces = part.split("=")
            if len(pieces) != 2:
                continue
            name = pieces[0].strip()
            if name not in known:
                continue
            try:
                costs[name] = int(pieces[1].strip(), 10)
            except ValueError:
                continue
    return costs


@register_plugin
class ResponseRateLimiting(CounterScope, Plugin):
    name = "response-ratelimiting"
    priority = 900
    Config = ResponseRateLimitingConfig

    def __init__(self, config: ResponseRateLimitingConfig, runtime: Runtime, entity: Any) -> None:
        super().__init__(config, runtime, entity)
        self.set_scope(entity)
        self.counters = {name: Counter(name, limits) for name, limits in config.limits.items()}
        self.header_name = config.header_name.lower().encode("latin-1")
        self.redis_options = redis_options(config.redis) if config.policy == "redis" else None
        self._client: redis_store.RedisClient | None = None

    def __repr__(self) -> str:
        return (
            f"<ResponseRateLimiting {list(self.counters.values())} by={self.config.limit_by} "
            f"policy={self.config.policy} scope={self.scope}>"
        )

    @classmethod
    def check(cls, config: Any) -> list[tuple[str, str]]:
        # A map's errors are reported at the map itself, as Kong does (validate.py).
        out: list[tuple[str, str]] = []
        for limits in config.limits.values():
            given = [(p, getattr(limits, p)) for p in PERIODS if getattr(limits, p) is not None]
            if not given:
                fields = ", ".join(f"'{p}'" for p in PERIODS)
                out.append(("limits", E.AT_LEAST_ONE_OF.format(fields)))
            for i, (lower, v1) in enumerate(given):
                for upper, v2 in given[i + 1 :]:
                    if v2 < v1:
                        message = (
                            f"the limit for {upper}({v2:.1f}) cannot be lower than the limit "
                            f"for {lower}({v1:.1f})"
                        )
                        out.append(("limits", message))
        return out + redis_policy_checks(config)

    # -- the counters -------------------------------------------------------------------------
    def keys(self, ident: str, counter: Counter, second: int) -> tuple[list[str], list[int]]:
        """The counter's keys in the windows at ``second`` (Kong's key parts), and the starts."""
        starts = [window_start(p, second) for p in counter.periods]
        keys = [
            f"response-ratelimit:{{{self.scope}:{ident}}}:{s * 1000}:{counter.name}:{p}"
            for p, s in zip(counter.periods, starts, strict=True)
        ]
        return keys, starts

    def windows(
        self, ident: str, counter: Counter, second: int
    ) -> tuple[list[str], list[int], list[int]]:
        """The counter's keys, window starts and window lengths at ``second``."""
        keys, starts = self.keys(ident, counter, second)
        lengths = [window_length(p, s) for p, s in zip(counter.periods, starts, strict=True)]
        return keys, starts, lengths

    def read_local(
        self, ident: str, second: int, counters: Iterable[Counter] | None = None
    ) -> dict[str, list[float]]:
        """Each counter's remaining counts (every counter's, by default)."""
        table = local_store.node_table()
        remaining: dict[str, list[float]] = {}
        for counter in self.counters.values() if counters is None else counters:
            keys, starts, lengths = self.windows(ident, counter, second)
            _, used = table.hit_windows(keys, starts, [_UNLIMITED] * len(keys), lengths, 0, second)
            remaining[counter.name] = [lim - u for lim, u in zip(counter.limits, used, strict=True)]
        return remaining

    def spend_local(
        self, ident: str, costs: dict[str, int], second: int
    ) -> dict[str, list[float]] | None:
        """Count each priced counter's cost in all its periods, or nothing at all when one of
        them is exhausted (Kong counts a refused response in no counter). The remaining counts
        after, or None.

        A count is one atomic step of the node's table, over several windows with one cost:
        a usage ``u`` passes ``u + cost <= limit - 1 + cost``, that is ``u < limit``. One cost
        for every priced counter (``video=1, image=1``) takes one step for all of them. Mixed
        costs are read first, then counted a counter at a time; should a concurrent response
        take a counter's last unit in between, this one is refused with the counters before it
        counted (the table cannot take a count back)."""
        counters = [self.counters[name] for name in costs]
        table = local_store.node_table()
        prices = set(costs.values())
        if len(prices) == 1 and sum(len(c.periods) for c in counters) <= MAX_WINDOWS:
            steps = [(counters, prices.pop())]
        else:
            if any(min(left) <= 0 for left in self.read_local(ident, second, counters).values()):
                return None
            steps = [([c], costs[c.name]) for c in counters]
        after: dict[str, list[float]] = {}
        for group, cost in steps:
            keys: list[str] = []
            starts: list[int] = []
            lengths: list[int] = []
            ceilings: list[int] = []
            for counter in group:
                k, s, n = self.windows(ident, counter, second)
                keys += k
                starts += s
                lengths += n
                ceilings += [math.ceil(lim) - 1 + cost for lim in counter.limits]
            ok, used = table.hit_windows(keys, starts, ceilings, lengths, cost, second)
            if not ok:
                return None
            spent = iter(used)
            for counter in group:
                after[counter.name] = [lim - next(spent) for lim in counter.limits]
        return after

    async def redis_call(self, ident: str, cost: int, costs: dict[str, int] | None) -> list[int]:
        """One script call over every counter's windows (or those in ``costs``): a read with
        ``cost`` 0, an unconditional count otherwise. The usages, in counter order."""
        client = self.client()
        if not client.available:
            raise redis_store.RedisUnavailable(str(client.last_error))
        counters = [c for c in self.counters.values() if costs is None or c.name in costs]

        def compute(now_ms: int) -> tuple[list[str], list[int]]:
            second = now_ms // 1000
            all_keys: list[str] = []
            argv: list[int] = []
            for counter in counters:
                keys, starts = self.keys(ident, counter, second)
                all_keys += keys
                for p, s in zip(counter.periods, starts, strict=True):
                    argv += (s, window_length(p, s), _UNLIMITED)
            return all_keys, argv

        reply = await redis_store.run_windowed(client, redis_store.FIXED_WINDOW, compute, cost)
        return [int(x) for x in reply[2:]]

    async def read_redis(self, ident: str) -> dict[str, list[float]]:
        used = iter(await self.redis_call(ident, 0, None))
        return {c.name: [lim - next(used) for lim in c.limits] for c in self.counters.values()}

    async def spend_redis(self, ident: str, costs: dict[str, int]) -> None:
        # Counters with different costs go in separate calls (the script takes one cost).
        for name, cost in costs.items():
            try:
                await self.redis_call(ident, cost, {name: cost})
            except redis_store.RedisError as exc:
                log.error("response-ratelimiting: failed to count in Redis: %s", exc)
                return

    # -- the request --------------------------------------------------------------------------
    def identifier(self, ctx: RequestContext) -> str:
        by = self.config.limit_by
        found: Any = None
        if by == "consumer":
            entity = ctx.consumer or ctx.credential
            found = entity.id if entity is not None else None
        elif by == "credential":
            found = ctx.credential.id if ctx.credential is not None else None
        return found or ctx.forwarded_ip

    async def access(self, ctx: RequestContext) -> Exit | None:
        ident = self.identifier(ctx)
        second = int(time.time())
        try:
            if self.redis_options is None:
                remaining = self.read_local(ident, second)
            else:
                remaining = await self.read_redis(ident)
        except redis_store.RedisError as exc:
            if not self.config.fault_tolerant:
                log.error("response-ratelimiting: failed to get usage: %s", exc)
                return kong_error(500, ERR_UNEXPECTED)
            log.error("response-ratelimiting: failed to get usage: %s", exc)
            return None
        for name, left in remaining.items():
            if self.config.block_on_first_violation and min(left) <= 0:
                return kong_error(429, f"API rate limit exceeded for '{name}'")
            ctx.set_upstream_header(self.counters[name].header, _lua_number(max(min(left), 0)))
        ctx.plugin_data[self.id] = Usage(ident, second, remaining)
        return None

    def response(
        self, ctx: RequestContext, status: int, headers: list[tuple[bytes, bytes]]
    ) -> None:
        name = self.header_name
        values = [v.decode("latin-1") for k, v in headers if k.lower() == name]
        if values:
            headers[:] = [(k, v) for k, v in headers if k.lower() != name]
        usage: Usage | None = ctx.plugin_data.get(self.id)
        if usage is None:
            return  # the store failed in the access phase (fault_tolerant): no limiting
        costs = parse_costs(values, self.counters)
        stop = False
        after = dict(usage.remaining)
        spend = {n: c for n, c in costs.items() if c > 0}
        if self.redis_options is None:
            if spend:
                counted = self.spend_local(usage.ident, spend, int(time.time()))
                stop = counted is None
                if counted is None:
                    # Kong's headers on the 429: the reading before proxying, less the price.
                    for n, cost in spend.items():
                        after[n] = [left - cost for left in usage.remaining[n]]
                else:
                    after.update(counted)
        else:
            stop = any(min(usage.remaining[n]) <= 0 for n in spend)
            for n, cost in costs.items():
                after[n] = [left - cost for left in usage.remaining[n]]
            if spend and not stop:
                task = asyncio.get_running_loop().create_task(self.spend_redis(usage.ident, spend))
                _COUNTING.add(task)  # the loop keeps only a weak reference to a task
                task.add_done_callback(_COUNTING.discard)
        if not self.config.hide_client_headers:
            out = ctx.response_headers
            for counter in self.counters.values():
                for period, limit, left in zip(
                    counter.periods, counter.limits, after[counter.name], strict=True
                ):
                    suffix = f"{counter.name}-{period}"
                    out.append(
                        (f"x-ratelimit-limit-{suffix}".encode(), _lua_number(limit).encode())
                    )
                    out.append(
                        (
                            f"x-ratelimit-remaining-{suffix}".encode(),
                            _lua_number(max(0, left)).encode(),
                        )
                    )
        if stop:
            ctx.replace_response(429)
