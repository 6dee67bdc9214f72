"""The Redis store against a real ``redis-server``: wire, scripts, pipelining, faults, batches.

Needs ``redis-server`` on PATH and fails (never skips) without it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from fastkong._core.windows import window_length, window_start
from fastkong.store import redis as R
from tests.redis_server import FaultProxy, RedisCluster, RedisServer, Sentinel

pytestmark = pytest.mark.redis

TAG = "r0:s0:alice"
PERIODS = ("second", "minute")


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    s = RedisServer().start()
    yield s
    s.stop()


@pytest.fixture
def proxy(server: RedisServer) -> Iterator[FaultProxy]:
    p = FaultProxy(server.port).start()
    yield p
    p.stop()


@pytest.fixture(params=["hiredis", "python"])
async def client(
    request: pytest.FixtureRequest, server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[R.RedisClient]:
    """A client on each wire implementation: hiredis (when installed) and the pure-Python one."""
    if request.param == "python":
        monkeypatch.setattr(R, "Reader", R.PyReader)
        monkeypatch.setattr(R, "_pack", R.py_pack)
    elif R.hiredis is None:
        pytest.fail("hiredis is a dependency of fastkong's Redis client: pip install hiredis")
    server.flush()
    options = R.RedisOptions(host="127.0.0.1", port=server.port)
    c = R.RedisClient(options, asyncio.get_running_loop())
    yield c
    await c.aclose()


def fixed(limits: tuple[int, ...], tag: str = TAG, periods: tuple[str, ...] = PERIODS) -> Any:
    def compute(now_ms: int) -> tuple[list[str], list[int]]:
        starts = [window_start(p, now_ms / 1000) for p in periods]
        argv: list[int] = []
        for p, s, lim in zip(periods, starts, limits, strict=True):
            argv += (s, window_length(p, s), lim)
        return R.counter_keys(tag, periods, [s * 1000 for s in starts]), argv

    return compute


# -- the wire ---------------------------------------------------------------------------------
REPLIES = [
    b"+OK\r\n",
    b"-ERR wrong\r\n",
    b":-42\r\n",
    b"$5\r\nhello\r\n",
    b"$-1\r\n",
    b"$0\r\n\r\n",
    b"*-1\r\n",
    b"*3\r\n:1\r\n*2\r\n$1\r\na\r\n+b\r\n$-1\r\n",
]


def _drain(reader: Any, chunks: list[bytes]) -> list[Any]:
    out = []
    for chunk in chunks:
        reader.feed(chunk)
        while (reply := reader.gets()) is not False:
            out.append(reply)
    return out


def _normal(replies: list[Any]) -> list[Any]:
    return [(type(r).__name__, str(r)) if isinstance(r, Exception) else r for r in replies]


EXPECTED = [
    b"OK",
    ("ReplyError", "ERR wrong"),
    -42,
    b"hello",
    None,
    b"",
    None,
    [1, [b"a", b"b"], None],
]
READERS = [pytest.param(R.PyReader, id="python")]
if R.hiredis is not None:
    READERS.append(pytest.param(R.hiredis.Reader, id="hiredis"))


@pytest.mark.parametrize("reader", READERS)
def test_readers_parse_resp_whole_and_byte_by_byte(reader: Any) -> None:
    data = b"".join(REPLIES)
    assert _normal(_drain(reader(replyError=R.ReplyError), [data])) == EXPECTED
    bytewise = [data[i : i + 1] for i in range(len(data))]
    assert _normal(_drain(reader(replyError=R.ReplyError), bytewise)) == EXPECTED


def test_pure_python_reader_rejects_garbage() -> None:
    reader = R.PyReader(R.ReplyError)
    reader.feed(b"?what\r\n")
    with pytest.raises(R.ProtocolError):
        reader.gets()


def test_pack_is_resp_bulk_strings() -> None:
    args = ("EVALSHA", "abc", 2, b"k\xff", "ключ", 2.5, -7)
    packed = R.py_pack(args)
    assert packed.startswith(b"*7\r\n$7\r\nEVALSHA\r\n$3\r\nabc\r\n$1\r\n2\r\n$2\r\nk\xff\r\n")
    assert packed.endswith(b"$3\r\n2.5\r\n$2\r\n-7\r\n")
    if R.hiredis is not None:
        assert packed == bytes(R.hiredis.pack_command(args))


def test_hash_slot_is_redis_cluster_crc16() -> None:
    assert R.hash_slot(b"123456789") == 12739  # the CRC16/XMODEM check value, mod 16384
    assert R.hash_slot(b"{user1000}.following") == R.hash_slot(b"user1000")
    assert R.hash_slot(b"foo{}{bar}") == R.hash_slot(b"foo{}{bar}")  # empty tag: whole key
    keys = R.counter_keys("r:s:id}x", PERIODS, [1000, 60000])
    assert len({R.hash_slot(k.encode()) for k in keys}) == 1


def test_keys_are_kongs_with_a_hash_tag() -> None:
    assert R.counter_keys("ROUTE:SERVICE:1.2.3.4", ("minute",), [1_700_000_040_000]) == [
        "ratelimit:{ROUTE:SERVICE:1.2.3.4}:1700000040000:minute"
    ]


# -- commands and scripts ---------------------------------------------------------------------
async def test_evalsha_falls_back_to_eval_after_noscript(
    client: R.RedisClient, server: RedisServer
) -> None:
    server.cli("SCRIPT", "FLUSH")
    reply = await R.run_windowed(client, R.FIXED_WINDOW, fixed((5, 10)), 1)
    assert reply[0] == 1 and reply[2:] == [1, 1]
    assert server.cli("SCRIPT", "EXISTS", R.FIXED_WINDOW.sha) == "1"


async def test_fixed_window_checks_and_counts_every_period_or_none(
    client: R.RedisClient, server: RedisServer
) -> None:
    # minute 3, hour 100: three admitted, then rejected without counting anywhere
    compute = fixed((3, 100), periods=("minute", "hour"))
    got = [await R.run_windowed(client, R.FIXED_WINDOW, compute, 1) for _ in range(5)]
    assert [r[0] for r in got] == [1, 1, 1, 0, 0]
    assert [r[2:] for r in got] == [[1, 1], [2, 2], [3, 3], [3, 3], [3, 3]]
    keys, _ = compute(client.now_ms())
    assert [int(server.cli("GET", k)) for k in keys] == [3, 3]
    # the counter lives until its window's end (+1 s), not a full period from first use
    start = window_start("minute", time.time())
    pttl = int(server.cli("PTTL", keys[0]))
    assert abs(pttl - ((start + 61) * 1000 - time.time() * 1000)) < 1500


async def test_the_window_is_redis_time_not_the_gateways(
    client: R.RedisClient, server: RedisServer
) -> None:
    client.offset_ms = 3_600_000  # we believe Redis is an hour ahead
    reply = await R.run_windowed(client, R.FIXED_WINDOW, fixed((5, 10)), 1)
    assert reply[0] == 1
    assert abs(client.offset_ms) < 1000  # learned from the first (refused) reply
    assert abs(reply[1] - time.time() * 1000) < 1000
    assert len(server.cli("KEYS", "*").split()) == 2  # counted once, in Redis's windows


async def test_concurrent_calls_share_one_pipelined_connection(
    client: R.RedisClient, server: RedisServer
) -> None:
    # The minute counts below run on only inside one minute: start well clear of its end.
    left = 60_000 - client.now_ms() % 60_000
    if left < 5000:
        await asyncio.sleep(left / 1000 + 0.05)
    compute = fixed((10**6, 10**6))
    replies = await asyncio.gather(
        *(R.run_windowed(client, R.FIXED_WINDOW, compute, 1) for _ in range(300))
    )
    assert all(r[0] == 1 for r in replies)
    minute_counts = sorted(r[3] for r in replies)
    assert minute_counts == list(range(minute_counts[0], minute_counts[0] + 300))
    assert len(client.nodes) == 1
    assert repr(client).startswith(f"<RedisClient 127.0.0.1:{server.port} db=0 up nodes=1")


async def test_sliding_window_weights_the_previous_window(
    client: R.RedisClient, server: RedisServer
) -> None:
    w = 60_000
    now = client.now_ms()
    start = now - now % w
    if start + w - now < 3000:  # too close to the window's end for the arithmetic below
        await asyncio.sleep((start + w - now) / 1000 + 0.05)
        now = client.now_ms()
        start = now - now % w
    server.cli("SET", f"ratelimit:{{{TAG}}}:{start - w}:minute", "10")
    elapsed = client.now_ms() - start

    def compute(now_ms: int) -> tuple[list[str], list[int]]:
        s = now_ms - now_ms % w
        keys = [f"ratelimit:{{{TAG}}}:{s}:minute", f"ratelimit:{{{TAG}}}:{s - w}:minute"]
        return keys, [s, w, 10]

    reply = await R.run_windowed(client, R.SLIDING_WINDOW, compute, 1)
    weighted = 10 * (w - elapsed) / w
    assert reply[0] == (1 if weighted + 1 <= 10 else 0)
    assert abs(reply[2] - (10 - weighted - reply[0])) <= 1.01
    assert 0 < reply[3] <= w


async def test_token_bucket_starts_full_and_refills(client: R.RedisClient) -> None:
    keys = [f"ratelimit:{{{TAG}}}:token-bucket:second"]
    argv = (3, 3000)  # capacity 3, refill 3000 micro-tokens per ms = 3 tokens per second
    got = [await client.evalsha(R.TOKEN_BUCKET, keys, (1, *argv)) for _ in range(4)]
    assert [r[0] for r in got] == [1, 1, 1, 0]
    assert [r[2] for r in got] == [2, 1, 0, 0]
    assert 0 < got[3][3] <= 334  # ms until one token is back
    await asyncio.sleep(0.4)
    assert (await client.evalsha(R.TOKEN_BUCKET, keys, (1, *argv)))[0] == 1


# -- faults -----------------------------------------------------------------------------------
async def _proxied(proxy: FaultProxy, timeout: float = 0.3) -> R.RedisClient:
    options = R.RedisOptions(host="127.0.0.1", port=proxy.port, timeout=timeout)
    return R.RedisClient(options, asyncio.get_running_loop())


async def test_a_hung_redis_costs_one_timeout_then_backoff_answers_at_once(
    proxy: FaultProxy,
) -> None:
    client = await _proxied(proxy)
    try:
        await client.execute("PING")
        proxy.set("blackhole")
        t = time.monotonic()
        results = await asyncio.gather(
            *(client.execute("PING") for _ in range(20)), return_exceptions=True
        )
        first = time.monotonic() - t
        assert all(isinstance(r, R.RedisTimeout) for r in results)  # in flight: one timeout
        assert 0.25 < first < 0.6
        assert not client.available
        t = time.monotonic()
        for _ in range(50):
            with pytest.raises(R.RedisUnavailable):
                await client.execute("PING")
        assert time.monotonic() - t < 0.05  # no I/O while in backoff
        proxy.set("pass")
        deadline = time.monotonic() + R.BACKOFF_MAX + 3 * 0.3 + 1
        while not client.available and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert client.available
        assert await client.execute("PING") == b"PONG"
    finally:
        await client.aclose()


async def test_a_refused_connection_fails_fast_and_recovers(proxy: FaultProxy) -> None:
    client = await _proxied(proxy, timeout=2.0)
    try:
        proxy.set("down")
        t = time.monotonic()
        with pytest.raises(R.RedisError):
            await client.execute("PING")
        assert time.monotonic() - t < 0.5
        with pytest.raises(R.RedisUnavailable):
            await client.execute("PING")
        assert "down" in repr(client)
        proxy.set("pass")
        deadline = time.monotonic() + R.BACKOFF_MAX + 2
        while not client.available and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert await client.execute("PING") == b"PONG"
    finally:
        await client.aclose()


async def test_client_for_is_one_per_loop_and_options(server: RedisServer) -> None:
    options = R.RedisOptions(host="127.0.0.1", port=server.port)
    a = R.client_for(options)
    assert R.client_for(R.RedisOptions(host="127.0.0.1", port=server.port)) is a
    assert R.client_for(R.RedisOptions(host="127.0.0.1", port=server.port, database=1)) is not a
    assert "password" not in repr(R.RedisOptions(password="secret"))
    await a.aclose()


async def test_database_and_auth_are_applied(server: RedisServer) -> None:
    server.cli("CONFIG", "SET", "requirepass", "s3cret")
    try:
        loop = asyncio.get_running_loop()
        bad = R.RedisClient(R.RedisOptions(host="127.0.0.1", port=server.port), loop)
        with pytest.raises(R.ReplyError):
            await bad.execute("SET", "x", "1")
        await bad.aclose()
        options = R.RedisOptions(host="127.0.0.1", port=server.port, password="s3cret", database=3)
        good = R.RedisClient(options, loop)
        await good.execute("SET", "in-db-3", "1")
        assert await good.execute("EXISTS", "in-db-3") == 1
        await good.aclose()
    finally:
        server.cli("-a", "s3cret", "--no-auth-warning", "CONFIG", "SET", "requirepass", "")
    assert server.cli("-n", "3", "EXISTS", "in-db-3") == "1"
    assert server.cli("EXISTS", "in-db-3") == "0"


# -- batches ----------------------------------------------------------------------------------
async def test_batches_never_wait_for_redis_and_converge(
    client: R.RedisClient, server: RedisServer
) -> None:
    loop = asyncio.get_running_loop()
    other = R.RedisClient(client.options, loop)  # a second worker
    a, b = R.Batcher(client, 10.0), R.Batcher(other, 10.0)  # flushed by hand below
    key = ["ratelimit:{r:s:bob}:0:hour"]
    expires = [int(time.time() * 1000) + 3_600_000]
    calls = client.calls
    # before any flush each worker sees only itself: both admit the whole limit (the bound)
    assert sum(a.hit(key, expires, [10], 1)[0] for _ in range(15)) == 10
    assert sum(b.hit(key, expires, [10], 1)[0] for _ in range(15)) == 10
    assert client.calls == calls  # zero round trips on the request path
    assert await a.flush() == 1 and await b.flush() == 1
    assert server.cli("GET", key[0]) == "20"
    assert a.hit(key, expires, [10], 1) == (False, [10])  # a has not heard of b yet
    await a.flush()  # a re-reads the counters it touched: now it knows the cluster total
    assert a.hit(key, expires, [10], 1) == (False, [20])
    assert b.hit(key, expires, [10], 1) == (False, [20])
    assert int(server.cli("PTTL", key[0])) > 3_500_000
    a.close()
    b.close()
    await other.aclose()


async def test_a_failed_flush_keeps_the_counts_for_the_next(proxy: FaultProxy) -> None:
    client = await _proxied(proxy)
    batcher = R.Batcher(client, 10.0)
    key = ["ratelimit:{r:s:carol}:0:hour"]
    expires = [int(time.time() * 1000) + 3_600_000]
    try:
        for _ in range(4):
            batcher.hit(key, expires, [100], 1)
        proxy.set("down")
        with pytest.raises(R.RedisError):
            await batcher.flush()
        assert batcher.counters[key[0]].delta == 4
        proxy.set("pass")
        deadline = time.monotonic() + R.BACKOFF_MAX + 2
        while not client.available and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert await batcher.flush() == 1
        assert batcher.counters[key[0]].base == 4
        assert await client.execute("GET", key[0]) == b"4"
    finally:
        batcher.close()
        await client.aclose()


# -- topologies -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    c = RedisCluster(Path(tmp_path_factory.mktemp("cluster"))).start()
    yield c
    c.stop()


async def test_cluster_routes_each_call_to_its_slot(redis_cluster: RedisCluster) -> None:
    seed = (("127.0.0.1", redis_cluster.ports[0]),)
    client = R.RedisClient(R.RedisOptions(cluster_nodes=seed), asyncio.get_running_loop())
    try:
        tags = [f"r:s:user-{i}" for i in range(40)]
        # Long windows: the two passes must count into the same window (with "second", a pass
        # slower than the rest of the current second started a new one).
        periods = ("hour", "day")
        for tag in tags:
            reply = await R.run_windowed(client, R.FIXED_WINDOW, fixed((5, 10), tag, periods), 1)
            assert reply[0] == 1 and reply[2:] == [1, 1]
        assert len(client.nodes) == 3  # the tags spread over every master
        # a stale slot map: every slot on one node; MOVED replies put each call right
        client.slots = [("127.0.0.1", redis_cluster.ports[0])] * 16384
        for tag in tags:
            reply = await R.run_windowed(client, R.FIXED_WINDOW, fixed((5, 10), tag, periods), 1)
            assert reply[2:] == [2, 2]
        owners = {client.slots[R.hash_slot(f"x{{{t}}}".encode())] for t in tags}
        assert len(owners) == 3
    finally:
        await client.aclose()


async def test_cluster_follows_ask_during_a_slot_migration(redis_cluster: RedisCluster) -> None:
    tag = "r:s:migrating"
    slot = R.hash_slot(f"{{{tag}}}".encode())
    servers = {s.port: s for s in redis_cluster.servers}
    seed = (("127.0.0.1", redis_cluster.ports[0]),)
    client = R.RedisClient(R.RedisOptions(cluster_nodes=seed), asyncio.get_running_loop())
    try:
        await client.execute("PING")
        source = servers[client.slots[slot][1]]  # type: ignore[index]
        target = next(s for s in redis_cluster.servers if s is not source)
        source_id, target_id = source.cli("CLUSTER", "MYID"), target.cli("CLUSTER", "MYID")
        target.cli("CLUSTER", "SETSLOT", str(slot), "IMPORTING", source_id)
        source.cli("CLUSTER", "SETSLOT", str(slot), "MIGRATING", target_id)
        try:
            # a new key is not on the source: it answers ASK, the target takes the call
            compute = fixed((10,), tag, ("minute",))
            reply = await R.run_windowed(client, R.FIXED_WINDOW, compute, 1)
            assert reply[0] == 1
            assert len(target.cli("KEYS", f"*{tag}*").split()) == 1
            assert source.cli("KEYS", f"*{tag}*") == ""
            assert client.slots[slot] == ("127.0.0.1", source.port)  # ASK: no map change
            # several new keys mid-migration: Redis says TRYAGAIN; the call fails (the plugin
            # falls back), it does not wait
            with pytest.raises(R.ReplyError, match="TRYAGAIN"):
                await R.run_windowed(client, R.FIXED_WINDOW, fixed((5, 10), tag), 1)
            assert client.available
        finally:
            for server in redis_cluster.servers:
                server.cli("CLUSTER", "SETSLOT", str(slot), "NODE", source_id)
    finally:
        await client.aclose()


async def test_sentinel_resolves_the_master(tmp_path: Path) -> None:
    sentinel = Sentinel(tmp_path).start()
    options = R.RedisOptions(
        sentinel_master="mymaster", sentinel_nodes=(("127.0.0.1", sentinel.port),)
    )
    client = R.RedisClient(options, asyncio.get_running_loop())
    try:
        reply = await R.run_windowed(client, R.FIXED_WINDOW, fixed((5, 10)), 1)
        assert reply[0] == 1
        assert client.master == ("127.0.0.1", sentinel.master.port)
        assert len(sentinel.master.cli("KEYS", "ratelimit:*").split()) == 2
    finally:
        await client.aclose()
        sentinel.stop()


async def test_sentinel_failover_moves_the_client_to_the_new_master(tmp_path: Path) -> None:
    sentinel = Sentinel(tmp_path, replica=True).start()
    assert sentinel.replica is not None
    options = R.RedisOptions(
        sentinel_master="mymaster", sentinel_nodes=(("127.0.0.1", sentinel.port),), timeout=0.5
    )
    loop = asyncio.get_running_loop()
    client = R.RedisClient(options, loop)
    try:
        assert (await R.run_windowed(client, R.FIXED_WINDOW, fixed((100, 100)), 1))[0] == 1
        assert client.master == ("127.0.0.1", sentinel.master.port)
        sentinel.master.stop()  # the master dies; the sentinel promotes the replica
        new_master = ("127.0.0.1", sentinel.replica.port)
        deadline = loop.time() + 40
        while True:
            try:
                reply = await R.run_windowed(client, R.FIXED_WINDOW, fixed((100, 100)), 1)
                if client.master == new_master:
                    break
            except R.RedisError:
                pass  # connection refused, then backoff, until the sentinel names the new one
            assert loop.time() < deadline, f"still on {client.master}"
            await asyncio.sleep(0.1)
        assert reply[0] == 1
    finally:
        await client.aclose()
        sentinel.stop()


async def test_sentinel_that_does_not_know_the_master_is_an_error(tmp_path: Path) -> None:
    sentinel = Sentinel(tmp_path).start()
    options = R.RedisOptions(
        sentinel_master="other", sentinel_nodes=(("127.0.0.1", sentinel.port),)
    )
    client = R.RedisClient(options, asyncio.get_running_loop())
    try:
        with pytest.raises(R.RedisError, match="does not know master 'other'"):
            await client.execute("PING")
        assert not client.available
    finally:
        await client.aclose()
        sentinel.stop()


async def test_close_all_flushes_unsent_counts(server: RedisServer) -> None:
    server.flush()
    client = R.client_for(R.RedisOptions(host="127.0.0.1", port=server.port))
    batcher = R.batcher_for(client, 30.0)
    key = ["ratelimit:{r:s:dave}:0:hour"]
    expires = [int(time.time() * 1000) + 3_600_000]
    assert batcher.hit(key, expires, [10], 1) == (True, [1])
    assert R.batcher_for(client, 30.0) is batcher
    await R.close_all()
    assert server.cli("GET", key[0]) == "1"
    assert R.client_for(client.options) is not client  # a fresh one after shutdown
    await R.close_all()
