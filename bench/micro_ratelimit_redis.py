"""Redis client choice for the rate limiter: redis-py asyncio (+hiredis) vs fastkong's own client.

Both run the fixed-window script for two periods (the per-request call of ``policy: redis``)
against a local ``redis-server`` started here, on uvloop, in one process (one Granian worker's
shape): first one caller at a time (latency), then ``CONCURRENCY`` callers at once (throughput).

    python bench/micro_ratelimit_redis.py [--calls N] [--concurrency C]

Needs ``redis`` (redis-py) only for the comparison leg; it is not a fastkong dependency.
Last, the plugin's whole ``access`` (identifier, check and count, headers) per request for
``policy: local`` and ``policy: redis``, one caller at a time.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from types import SimpleNamespace  # noqa: E402

import msgspec  # noqa: E402
import uvloop  # noqa: E402

from fastkong._core.windows import window_length, window_start  # noqa: E402
from fastkong.plugins.bundled.rate_limiting import (  # noqa: E402
    RateLimiting,
    RateLimitingConfig,
)
from fastkong.runtime import empty_runtime  # noqa: E402
from fastkong.store.redis import (  # noqa: E402
    FIXED_WINDOW,
    RedisOptions,
    client_for,
    counter_keys,
)
from tests.redis_server import RedisServer  # noqa: E402

PERIODS = ("second", "minute")


def argv_for(now_ms: int) -> tuple[list[str], list[int]]:
    now = now_ms / 1000
    starts = [window_start(p, now) for p in PERIODS]
    keys = counter_keys("r:s:bench", PERIODS, [s * 1000 for s in starts])
    args: list[int] = []
    for p, s in zip(PERIODS, starts, strict=True):
        args += [s, window_length(p, s), 10**12]
    return keys, args


async def measure(name: str, call: Callable[[], Awaitable[object]], calls: int, conc: int) -> None:
    for _ in range(500):  # warm up (connections, script cache)
        await call()
    lat = []
    for _ in range(calls // 4):
        t = time.perf_counter()
        await call()
        lat.append(time.perf_counter() - t)

    async def worker(n: int) -> None:
        for _ in range(n):
            await call()

    t = time.perf_counter()
    await asyncio.gather(*(worker(calls // conc) for _ in range(conc)))
    rate = (calls // conc) * conc / (time.perf_counter() - t)
    print(
        f"{name:28s} 1 caller: median {statistics.median(lat) * 1e6:6.1f} us  "
        f"p99 {sorted(lat)[int(len(lat) * 0.99)] * 1e6:6.1f} us   "
        f"{conc} callers: {rate:8.0f} calls/s"
    )


async def main(calls: int, conc: int) -> None:
    server = RedisServer().start()
    try:
        ours = client_for(RedisOptions(host="127.0.0.1", port=server.port))

        async def ours_call() -> object:
            keys, args = argv_for(ours.now_ms())
            return await ours.evalsha(FIXED_WINDOW, keys, (1, *args))

        await measure("fastkong client", ours_call, calls, conc)
        try:
            import redis.asyncio as aioredis  # noqa: PLC0415  (optional comparison leg)
        except ImportError:
            print("redis-py not installed: comparison leg skipped")
            return
        theirs = aioredis.Redis(port=server.port, max_connections=conc + 8)
        sha = await theirs.script_load(FIXED_WINDOW.source)

        async def theirs_call() -> object:
            keys, args = argv_for(int(time.time() * 1000))
            return await theirs.evalsha(sha, len(keys), *keys, 1, *args)

        await measure("redis-py asyncio + hiredis", theirs_call, calls, conc)
        await theirs.aclose()
        await plugin_access(server.port, calls)
    finally:
        server.stop()


async def plugin_access(port: int, calls: int) -> None:
    entity = SimpleNamespace(id="p", route="r", service="s", consumer=None)
    runtime = empty_runtime()
    for policy in ("local", "redis"):
        raw = {"second": 10**9, "minute": 10**9, "policy": policy, "limit_by": "ip"}
        raw["redis"] = {"host": "127.0.0.1", "port": port}
        config = msgspec.convert(raw, RateLimitingConfig)
        plugin = RateLimiting(config, runtime, entity)
        ctx = SimpleNamespace(forwarded_ip="10.0.0.1", response_headers=[])
        for _ in range(500):
            await plugin.access(ctx)  # type: ignore[arg-type]
        n = calls // 4
        t = time.perf_counter()
        for _ in range(n):
            ctx.response_headers = []
            await plugin.access(ctx)  # type: ignore[arg-type]
        per_call = (time.perf_counter() - t) / n * 1e6
        print(f"plugin access, policy {policy:6s}  1 caller: {per_call:6.1f} us per request")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=40000)
    ap.add_argument("--concurrency", type=int, default=64)
    a = ap.parse_args()
    uvloop.run(main(a.calls, a.concurrency))
