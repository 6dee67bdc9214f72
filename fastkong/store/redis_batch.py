"""Batched counting for the Redis policy (``sync_rate`` > 0): zero round trips per request.

Each worker counts locally against a per-window estimate and a background task flushes the
deltas to Redis as one pipelined batch every ``sync_rate`` seconds. The over-admission bound and
its derivation are in ``docs/rate-limiting.md``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from fastkong.store._resp import RedisError, RedisUnavailable
from fastkong.store.redis import RedisClient, Script, log

FLUSH = Script(
    "flush",
    """
local delta = tonumber(ARGV[1])
if delta == 0 then
  return tonumber(redis.call('GET', KEYS[1]) or '0')
end
local count = redis.call('INCRBY', KEYS[1], delta)
if count == delta then
  redis.call('PEXPIREAT', KEYS[1], ARGV[2])
end
return count
""",
)


class _Counter:
    __slots__ = ("base", "delta", "inflight", "expires_ms", "touched")

    def __init__(self, expires_ms: int) -> None:
        self.base = 0  # the cluster's total at the last flush that returned it
        self.delta = 0  # admitted here, not yet sent
        self.inflight = 0  # sent, not yet acknowledged
        self.expires_ms = expires_ms
        self.touched = True

    def __repr__(self) -> str:
        return f"<_Counter base={self.base} delta={self.delta} inflight={self.inflight}>"


class Batcher:
    """Counters kept in the worker and added to Redis every ``sync_rate`` seconds.

    The request path never waits for Redis: a request is admitted when ``base + unsent + cost``
    stays within every period's limit, where ``base`` is the cluster total returned by this
    worker's last flush. A flush sends every counter's unsent delta (and re-reads the counters
    touched since the last flush) as one pipelined batch of ``EVALSHA`` calls.

    Over-admission bound, with ``W`` workers receiving the key's traffic (all nodes) at ``r``
    requests/s each: a worker learns what the others admitted at its next flush after theirs,
    at most two intervals and a round trip later, so a window admits at most
    ``min(W x limit, limit + (W - 1) x r x (2 x sync_rate + rtt))``. The ``W x limit`` end is
    reached when the limit is used up faster than one interval (every worker starts a window
    knowing only its own count). ``docs/rate-limiting.md`` has measured numbers.
    """

    def __init__(self, client: RedisClient, sync_rate: float) -> None:
        self.client = client
        self.sync_rate = sync_rate
        self.counters: dict[str, _Counter] = {}
        self.task: asyncio.Task[None] | None = None
        self.flushes = 0

    def __repr__(self) -> str:
        return (
            f"<Batcher every {self.sync_rate}s counters={len(self.counters)} "
            f"flushes={self.flushes} {self.client!r}>"
        )

    def hit(
        self, keys: Sequence[str], expires_ms: Sequence[int], limits: Sequence[int], cost: int
    ) -> tuple[bool, list[int]]:
        """Check and count locally; returns ``(admitted, usages)`` like ``hit_windows``."""
        if self.task is None or self.task.done():
            self.task = self.client.loop.create_task(self._run())
        counters = self.counters
        found = []
        ok = True
        for key, expires, limit in zip(keys, expires_ms, limits, strict=True):
            c = counters.get(key)
            if c is None:
                c = counters[key] = _Counter(expires)
            c.touched = True
            found.append(c)
            if c.base + c.delta + c.inflight + cost > limit:
                ok = False
        if ok:
            for c in found:
                c.delta += cost
        return ok, [c.base + c.delta + c.inflight for c in found]

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.sync_rate)
            try:
                await self.flush()
            except RedisError as exc:
                log.warning("rate-limiting: flushing counters to Redis failed: %s", exc)
            except Exception:  # a bug must not stop the flushes
                log.exception("rate-limiting: flushing counters to Redis failed")

    async def flush(self) -> int:
        """Send every unsent delta (and re-read touched counters); returns the keys sent."""
        now = self.client.now_ms()
        batch: list[tuple[str, _Counter, int]] = []
        for key, c in list(self.counters.items()):
            if c.expires_ms <= now:
                del self.counters[key]  # the window is over: its count no longer matters
                continue
            if c.delta or c.touched:
                batch.append((key, c, c.delta))
                c.inflight += c.delta
                c.delta = 0
                c.touched = False
        if not batch:
            return 0
        if not self.client.available:
            self._undo(batch)
            raise RedisUnavailable(f"Redis is in backoff after: {self.client.last_error}")
        calls = [self.client.evalsha(FLUSH, (key,), (sent, c.expires_ms)) for key, c, sent in batch]
        results = await asyncio.gather(*calls, return_exceptions=True)
        failed: list[tuple[str, _Counter, int]] = []
        error: BaseException | None = None
        for (key, c, sent), result in zip(batch, results, strict=True):
            c.inflight -= sent
            if isinstance(result, BaseException):
                c.delta += sent
                failed.append((key, c, sent))
                error = result
            else:
                c.base = int(result)
        self.flushes += 1
        if error is not None:
            raise error if isinstance(error, RedisError) else RedisError(str(error))
        return len(batch)

    @staticmethod
    def _undo(batch: list[tuple[str, _Counter, int]]) -> None:
        for _, c, sent in batch:
            c.inflight -= sent
            c.delta += sent
            c.touched = True

    def close(self) -> None:
        if self.task is not None:
            self.task.cancel()


def batcher_for(client: RedisClient, sync_rate: float) -> Batcher:
    """The worker's batch for ``client`` and ``sync_rate`` (shared by plugin instances, kept
    across config reloads so unsent counts are not lost)."""
    found = client.batchers.get(sync_rate)
    if found is None:
        found = client.batchers[sync_rate] = Batcher(client, sync_rate)
    return found
