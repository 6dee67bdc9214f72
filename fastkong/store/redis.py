"""Redis counters for ``policy: redis``: a pipelined RESP client, the Lua scripts, the batches.

Client choice (measured; ``bench/micro_ratelimit_redis.py``, numbers in ``docs/rate-limiting.md``)
-------------------------------------------------------------------------------------------------
redis-py's asyncio client (8.1, with hiredis 3.5) against this module's own client, both running
the fixed-window script for two periods against a local redis-server 7.0, on uvloop, one process
(the shape of one Granian worker). redis-py takes one pooled connection per concurrent command
and pays its command/response machinery per call; this client keeps **one connection per worker
and Redis node**, writes every command issued in one loop iteration with one ``write`` (automatic
pipelining), and parses replies with ``hiredis.Reader``. Measured on this machine (2 vCPU shared
with other work, load average 2 to 6, so absolute numbers are pessimistic), four runs each:

==========================  ==========================  ==========================
                            redis-py 8.1 asyncio        this client
==========================  ==========================  ==========================
1 caller, median per call   204-403 us                  94-157 us
64 concurrent callers       1,500-4,800 calls/s         10,500-27,600 calls/s
connections used            one per concurrent call     one
==========================  ==========================  ==========================

In every run this client did 4 to 6 times the calls per second of redis-py at 64 callers and
took about half the time per call alone.

So: our own client. It uses ``hiredis`` (``Reader`` and ``pack_command``) when installed and a
pure-Python RESP2 parser (:class:`PyReader`, same interface, same tests) otherwise.

Per request: one round trip
---------------------------
All configured periods are checked and counted by **one** ``EVALSHA`` (``EVAL`` after a
``NOSCRIPT``), atomically: every period admits the request or none counts it (Kong counts rejected
requests too, and counts each period with a separate ``EVAL``). The script reads the clock with
``TIME``, so the window is Redis's, not the gateway's.

Keys are Kong's (``ratelimit:<route_id>:<service_id>:<identifier>:<period_date>:<period>``) with a
Redis Cluster hash tag around the part every period shares: ``ratelimit:{<route_id>:<service_id>:
<identifier>}:<period_date>:<period>``, so one script call never spans two slots. Because a key
names its window, the caller computes the window start from its estimate of Redis's clock (the
offset learned from every reply) and the script checks it against ``TIME``; in the rare case they
disagree (a request within a round trip of a window boundary, or a skewed clock) the script counts
nothing and returns its time, and the call is repeated once with the corrected clock.

Failures
--------
A connection error, a timeout (``redis.timeout``, measured per command by one timer per
connection, not one per call) or a protocol error fails every command in flight on that
connection and puts the client in *backoff*: for 0.1 s, doubling up to 1 s, no request asks
Redis (:class:`RedisUnavailable` at once) while a background probe reconnects; its first success
ends the backoff. The rate-limiting plugin then limits locally or answers 500 (``fault_tolerant``).

Topologies: a single server; Redis Sentinel (``sentinel_nodes`` name the master; a ``READONLY``
reply or a lost connection makes the client ask again); Redis Cluster (``cluster_nodes`` seed the
slot map from ``CLUSTER SLOTS``; ``MOVED`` and ``ASK`` are followed; ``TRYAGAIN``, a call on
several new keys of a slot being migrated, fails the call). Any failure makes the client ask
the sentinels (or the cluster) again. Tested against real servers: all three, a Sentinel
failover after the master died, ``MOVED`` with a stale slot map, ``ASK`` and ``TRYAGAIN`` during
a slot migration; not tested: TLS.
"""

from __future__ import annotations

import asyncio
import binascii
import hashlib
import logging
import ssl as ssl_mod
import time
import weakref
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from fastkong.proxy.upstream_tls import verifying_context
from fastkong.store import _resp
from fastkong.store._resp import (  # noqa: F401  (re-exported: part of this module's API)
    _PROTOCOL_ERRORS,
    ProtocolError,
    PyReader,
    Reader,
    RedisError,
    RedisTimeout,
    RedisUnavailable,
    ReplyError,
    _pack,
    py_pack,
)

hiredis = _resp.hiredis  # None when the C parser is not installed
log = logging.getLogger("fastkong.store.redis")

__all__ = [
    "BACKOFF_MAX",
    "BACKOFF_MIN",
    "Batcher",
    "batcher_for",
    "run_windowed",
    "RedisClient",
    "RedisError",
    "RedisOptions",
    "RedisTimeout",
    "RedisUnavailable",
    "ReplyError",
    "Script",
    "client_for",
    "close_all",
    "counter_keys",
    "hash_slot",
]

BACKOFF_MIN = 0.1  # seconds without asking Redis after a failure...
BACKOFF_MAX = 1.0  # ...doubling per failed probe, up to this


@dataclass(frozen=True, slots=True)
class RedisOptions:
    """Where and how to connect: the plugin's ``redis`` record, resolved (aliases folded in)."""

    host: str | None = None
    port: int = 6379
    timeout: float = 2.0  # seconds (the config says ms)
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    database: int = 0
    ssl: bool = False
    ssl_verify: bool = False
    server_name: str | None = None
    sentinel_master: str | None = None
    sentinel_role: str = "master"
    sentinel_nodes: tuple[tuple[str, int], ...] = ()
    sentinel_username: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)
    cluster_nodes: tuple[tuple[str, int], ...] = ()
    cluster_max_redirections: int = 5

    @property
    def mode(self) -> str:
        if self.cluster_nodes:
            return "cluster"
        if self.sentinel_master:
            return "sentinel"
        return "single"


class _Connection(asyncio.Protocol):
    """One RESP connection: commands are queued, written once per loop iteration, answered FIFO."""

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        self.loop = loop
        self.timeout = timeout
        self.transport: asyncio.Transport | None = None
        self.reader = Reader(replyError=ReplyError)
        self.waiters: deque[tuple[asyncio.Future[Any], float]] = deque()
        self.out: list[bytes] = []
        self.flushing = False
        self.timer: asyncio.TimerHandle | None = None
        self.error: RedisError | None = None
        self.on_fail: Any = None  # callable(error), set by the owner

    def __repr__(self) -> str:
        state = "closed" if self.error is not None else "open"
        return f"<redis connection {state} in_flight={len(self.waiters)}>"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a TCP transport (uvloop's too)

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        waiters = self.waiters
        while True:
            try:
                reply = self.reader.gets()
            except _PROTOCOL_ERRORS as exc:
                self.fail(RedisError(f"protocol error: {exc}"))
                return
            if reply is False:
                return
            if not waiters:
                self.fail(RedisError("reply without a command"))
                return
            fut = waiters.popleft()[0]
            if not fut.done():
                fut.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(RedisError(f"connection lost: {exc}" if exc else "connection closed by Redis"))

    def send(self, packed: bytes) -> asyncio.Future[Any]:
        if self.error is not None:
            raise self.error
        fut = self.loop.create_future()
        self.waiters.append((fut, self.loop.time() + self.timeout))
        self.out.append(packed)
        if not self.flushing:
            self.flushing = True
            self.loop.call_soon(self._flush)
        if self.timer is None:
            self.timer = self.loop.call_at(self.waiters[0][1], self._deadline)
        return fut

    def _flush(self) -> None:
        self.flushing = False
        if self.out and self.transport is not None and self.error is None:
            self.transport.write(b"".join(self.out))
        self.out.clear()

    def _deadline(self) -> None:
        self.timer = None
        if not self.waiters or self.error is not None:
            return
        due = self.waiters[0][1]
        if due <= self.loop.time():
            self.fail(RedisTimeout(f"no reply from Redis within {self.timeout * 1000:.0f} ms"))
        else:
            self.timer = self.loop.call_at(due, self._deadline)

    def fail(self, error: RedisError) -> None:
        """Close, and fail every command in flight with ``error`` (idempotent)."""
        if self.error is not None:
            return
        self.error = error
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        while self.waiters:
            fut = self.waiters.popleft()[0]
            if not fut.done():
                fut.set_exception(error)
        if self.transport is not None:
            self.transport.abort()
        if self.on_fail is not None:
            self.on_fail(error)


async def _open(
    loop: asyncio.AbstractEventLoop,
    host: str,
    port: int,
    opts: RedisOptions,
    *,
    username: str | None,
    password: str | None,
    database: int,
) -> _Connection:
    """Connect, authenticate, select the database; everything within ``opts.timeout``."""
    context: ssl_mod.SSLContext | None = None
    if opts.ssl and opts.ssl_verify:
        context = verifying_context()  # Kong's lua_ssl_trusted_certificate roots
    elif opts.ssl:
        context = ssl_mod.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl_mod.CERT_NONE
    conn = _Connection(loop, opts.timeout)
    try:
        async with asyncio.timeout(opts.timeout):
            await loop.create_connection(
                lambda: conn,
                host,
                port,
                ssl=context,
                server_hostname=(opts.server_name or host) if context is not None else None,
            )
    except TimeoutError:
        raise RedisTimeout(f"connecting to Redis {host}:{port} timed out") from None
    except OSError as exc:
        raise RedisError(f"cannot connect to Redis {host}:{port}: {exc}") from exc
    hello: list[asyncio.Future[Any]] = []
    if password:
        auth = ("AUTH", username, password) if username else ("AUTH", password)
        hello.append(conn.send(_pack(auth)))
    if database:
        hello.append(conn.send(_pack(("SELECT", database))))
    for fut in hello:
        reply = await fut
        if isinstance(reply, ReplyError):
            conn.fail(RedisError(f"Redis refused the connection setup: {reply}"))
            raise reply
    return conn


# -- the client -------------------------------------------------------------------------------
def hash_slot(key: bytes) -> int:
    """Redis Cluster's slot of ``key`` (CRC16/XMODEM of its hash tag, mod 16384)."""
    start = key.find(b"{")
    if start >= 0:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            key = key[start + 1 : end]
    return binascii.crc_hqx(key, 0) & 16383


class Script:
    """A Lua script called by ``EVALSHA``, with ``EVAL`` when the server does not know it."""

    __slots__ = ("name", "source", "sha")

    def __init__(self, name: str, source: str) -> None:
        self.name = name
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    def __repr__(self) -> str:
        return f"<Script {self.name} {self.sha[:10]}>"


class RedisClient:
    """One worker's link to one Redis deployment (all plugin instances using it share it).

    Every call is one command on a shared, pipelined connection per Redis node. Health is kept
    here: after a failure :attr:`available` is False for the backoff period and calls raise
    :class:`RedisUnavailable` without I/O until a background probe succeeds.
    """

    def __init__(self, options: RedisOptions, loop: asyncio.AbstractEventLoop) -> None:
        self.options = options
        self.loop = loop
        self.nodes: dict[tuple[str, int], _Connection] = {}
        self._connecting: dict[tuple[str, int], asyncio.Future[_Connection]] = {}
        self.slots: list[tuple[str, int] | None] = []  # cluster: slot -> node
        self.master: tuple[str, int] | None = None  # sentinel: the resolved master
        self.down = False
        self.failures = 0
        self.last_error: RedisError | None = None
        self.probe: asyncio.Task[None] | None = None
        #: Redis's clock minus ours, in ms (learned from every script reply).
        self.offset_ms = 0
        self.calls = 0
        self.batchers: dict[float, Batcher] = {}

    def __repr__(self) -> str:
        o = self.options
        where = f"{o.host}:{o.port}" if o.mode == "single" else o.mode
        state = f"down failures={self.failures}" if self.down else "up"
        return f"<RedisClient {where} db={o.database} {state} nodes={len(self.nodes)}>"

    @property
    def available(self) -> bool:
        return not self.down

    def now_ms(self) -> int:
        """Our estimate of Redis's clock."""
        return int(time.time() * 1000) + self.offset_ms

    # -- health --------------------------------------------------------------------------------
    def failed(self, error: RedisError) -> None:
        """Enter backoff (called on any connection-level failure)."""
        self.last_error = error
        self._forget_topology()
        if self.down:
            return
        self.down = True
        self.failures = 1
        log.warning("Redis failed (%s); not asked for %.2fs", error, BACKOFF_MIN)
        self.probe = self.loop.create_task(self._probe())

    async def _probe(self) -> None:
        delay = BACKOFF_MIN
        while True:
            await asyncio.sleep(delay)
            try:
                reply = await self._call(None, ("PING",))
                if isinstance(reply, ReplyError):
                    raise reply
            except RedisError as exc:
                self.failures += 1
                self.last_error = exc
                self._forget_topology()
                delay = min(BACKOFF_MAX, delay * 2)
                continue
            self.down = False
            self.failures = 0
            self.probe = None
            log.warning("Redis answers again")
            return

    def close(self) -> None:
        for batcher in self.batchers.values():
            batcher.close()
        for conn in list(self.nodes.values()):
            conn.on_fail = None
            conn.fail(RedisError("client closed"))
        self.nodes.clear()
        if self.probe is not None:
            self.probe.cancel()

    async def aclose(self) -> None:
        """:meth:`close`, then let the loop finish closing the sockets."""
        self.close()
        await asyncio.sleep(0)
        await asyncio.sleep(0)

    # -- connections ---------------------------------------------------------------------------
    async def _node(self, address: tuple[str, int]) -> _Connection:
        conn = self.nodes.get(address)
        if conn is not None and conn.error is None:
            return conn
        pending = self._connecting.get(address)
        if pending is None:
            pending = self.loop.create_future()
            self._connecting[address] = pending
            try:
                o = self.options
                conn = await _open(
                    self.loop,
                    address[0],
                    address[1],
                    o,
                    username=o.username,
                    password=o.password,
                    database=0 if o.mode == "cluster" else o.database,
                )
            except RedisError as exc:
                pending.set_exception(exc)
                pending.exception()  # retrieved: waiters get it below
                raise
            finally:
                self._connecting.pop(address, None)
            conn.on_fail = self._conn_failed
            self.nodes[address] = conn
            pending.set_result(conn)
            return conn
        return await asyncio.shield(pending)

    def _conn_failed(self, error: RedisError) -> None:
        for address, conn in list(self.nodes.items()):
            if conn.error is not None:
                del self.nodes[address]
        self.failed(error)

    def _forget_topology(self) -> None:
        # After a failure there may have been a failover: ask the sentinels (or the cluster
        # for its slots) again on the next connection.
        if self.options.mode == "sentinel":
            self.master = None
        elif self.options.mode == "cluster":
            self.slots = []

    async def _address(self, key: bytes | None) -> tuple[str, int]:
        o = self.options
        if o.mode == "single":
            assert o.host is not None
            return (o.host, o.port)
        if o.mode == "sentinel":
            if self.master is None:
                self.master = await self._ask_sentinels()
            return self.master
        if not self.slots:
            await self._load_slots()
        if key is not None:
            found = self.slots[hash_slot(key)]
            if found is not None:
                return found
        return o.cluster_nodes[0]

    async def _ask_sentinels(self) -> tuple[str, int]:
        o = self.options
        errors = []
        for host, port in o.sentinel_nodes:
            try:
                conn = await _open(
                    self.loop,
                    host,
                    port,
                    o,
                    username=o.sentinel_username,
                    password=o.sentinel_password,
                    database=0,
                )
            except RedisError as exc:
                errors.append(str(exc))
                continue
            try:
                reply = await conn.send(
                    _pack(("SENTINEL", "get-master-addr-by-name", o.sentinel_master))
                )
            except RedisError as exc:
                errors.append(str(exc))
                continue
            finally:
                conn.fail(RedisError("sentinel query done"))
            if isinstance(reply, list) and len(reply) == 2:
                return (reply[0].decode(), int(reply[1]))
            errors.append(f"{host}:{port} does not know master {o.sentinel_master!r}")
        raise RedisError("no sentinel named the master: " + "; ".join(errors))

    async def _load_slots(self) -> None:
        o = self.options
        errors = []
        for address in o.cluster_nodes:
            try:
                conn = await self._node(address)
                reply = await conn.send(_pack(("CLUSTER", "SLOTS")))
            except RedisError as exc:
                errors.append(str(exc))
                continue
            if isinstance(reply, ReplyError):
                errors.append(str(reply))
                continue
            slots: list[tuple[str, int] | None] = [None] * 16384
            for entry in reply:
                first, last, master = int(entry[0]), int(entry[1]), entry[2]
                host = master[0].decode() or address[0]
                node = (host, int(master[1]))
                for s in range(first, last + 1):
                    slots[s] = node
            self.slots = slots
            return
        raise RedisError("no cluster node answered CLUSTER SLOTS: " + "; ".join(errors))

    # -- commands ------------------------------------------------------------------------------
    async def _call(self, key: bytes | None, args: Sequence[Any]) -> Any:
        """One command, following cluster redirections; reply errors are returned, not raised."""
        address = await self._address(key)
        asking = False
        for _ in range(self.options.cluster_max_redirections + 1):
            conn = await self._node(address)
            if asking:
                conn.send(_pack(("ASKING",))).add_done_callback(_ignore_result)
            reply = await conn.send(_pack(args))
            if not isinstance(reply, ReplyError):
                return reply
            text = str(reply)
            if text.startswith("READONLY") and self.options.mode != "single":
                # a replica now (failover): drop it, find the master again, back off meanwhile
                conn.fail(RedisError(f"{address[0]}:{address[1]} is read-only: {text}"))
                raise RedisError(text)
            if text.startswith(("MOVED ", "ASK ")) and self.options.mode == "cluster":
                kind, slot, where = text.split(" ", 2)
                host, _, port = where.rpartition(":")
                address = (host or address[0], int(port))
                asking = kind == "ASK"
                if not asking:
                    self.slots[int(slot)] = address
                continue
            return reply
        raise RedisError("too many cluster redirections")

    async def execute(self, *args: Any, key: bytes | None = None) -> Any:
        """Run one command (``key`` routes it in a cluster); raises on any error reply."""
        if self.down:
            raise RedisUnavailable(f"Redis is in backoff after: {self.last_error}")
        self.calls += 1
        reply = await self._guarded(key, args)
        if isinstance(reply, ReplyError):
            raise reply
        return reply

    async def _guarded(self, key: bytes | None, args: Sequence[Any]) -> Any:
        try:
            return await self._call(key, args)
        except ReplyError:
            raise
        except RedisError as exc:
            self.failed(exc)
            raise

    async def evalsha(
        self, script: Script, keys: Sequence[bytes | str], args: Sequence[Any]
    ) -> Any:
        """Run ``script`` (one round trip; two when the server must first learn it)."""
        if self.down:
            raise RedisUnavailable(f"Redis is in backoff after: {self.last_error}")
        self.calls += 1
        route = keys[0] if keys else None
        if isinstance(route, str):
            route = route.encode()
        reply = await self._guarded(route, ("EVALSHA", script.sha, len(keys), *keys, *args))
        if isinstance(reply, ReplyError) and str(reply).startswith("NOSCRIPT"):
            reply = await self._guarded(route, ("EVAL", script.source, len(keys), *keys, *args))
        if isinstance(reply, ReplyError):
            raise reply
        return reply


def _ignore_result(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()  # retrieved: the command that follows reports any failure


_CLIENTS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[RedisOptions, RedisClient]]
_CLIENTS = weakref.WeakKeyDictionary()


def client_for(options: RedisOptions) -> RedisClient:
    """The running loop's (so: the worker's) client for ``options``, created on first use.

    Clients outlive config reloads: a new snapshot with the same Redis settings reuses the
    connection, its learned clock offset and its health state.
    """
    loop = asyncio.get_running_loop()
    per_loop = _CLIENTS.get(loop)
    if per_loop is None:
        per_loop = _CLIENTS[loop] = {}
    client = per_loop.get(options)
    if client is None:
        client = per_loop[options] = RedisClient(options, loop)
    return client


async def close_all() -> None:
    """Worker shutdown: flush every batch's unsent counts (best effort), close the clients."""
    per_loop = _CLIENTS.pop(asyncio.get_running_loop(), {})
    for client in per_loop.values():
        for batcher in client.batchers.values():
            try:
                await batcher.flush()
            except RedisError as exc:
                log.warning("rate-limiting: final flush to Redis failed: %s", exc)
        await client.aclose()


def counter_keys(tag: str, periods: Sequence[str], starts_ms: Sequence[int]) -> list[str]:
    """Kong's keys with the cluster hash tag: ``ratelimit:{<tag>}:<period_date>:<period>``.

    ``tag`` is ``<route_id>:<service_id>:<identifier>``.
    """
    return [f"ratelimit:{{{tag}}}:{s}:{p}" for p, s in zip(periods, starts_ms, strict=True)]


# -- the scripts ------------------------------------------------------------------------------
# Every script replies {status, redis_now_ms, ...}: status 1 admitted, 0 rejected, -1 "your
# window is not mine" (nothing counted; retry with the returned clock).

#: KEYS[i]: the counter of period i in the caller's window. ARGV: cost, then per period: window
#: start (s), window length (s), limit. Reply: status, now_ms, count_1..count_n (after counting
#: when admitted, before when rejected).
FIXED_WINDOW = Script(
    "fixed-window",
    """
local t = redis.call('TIME')
local now = tonumber(t[1])
local now_ms = now * 1000 + math.floor(tonumber(t[2]) / 1000)
local cost = tonumber(ARGV[1])
local reply = {1, now_ms}
for i = 1, #KEYS do
  local start = tonumber(ARGV[3 * i - 1])
  if now < start or now >= start + tonumber(ARGV[3 * i]) then
    return {-1, now_ms}
  end
  local count = tonumber(redis.call('GET', KEYS[i]) or '0')
  reply[i + 2] = count
  if count + cost > tonumber(ARGV[3 * i + 1]) then
    reply[1] = 0
  end
end
if reply[1] == 1 and cost > 0 then
  for i = 1, #KEYS do
    local count = redis.call('INCRBY', KEYS[i], cost)
    reply[i + 2] = count
    if count == cost then
      local ends = tonumber(ARGV[3 * i - 1]) + tonumber(ARGV[3 * i])
      redis.call('PEXPIREAT', KEYS[i], ends * 1000 + 1000)
    end
  end
end
return reply
""",
)

#: Weighted two-window counter. KEYS[2i-1], KEYS[2i]: the current and previous window of
#: period i. ARGV: cost, then per period: current window start (ms), window (ms), limit.
#: Reply: status, now_ms, then per period: remaining (after counting), ms to the window's end.
SLIDING_WINDOW = Script(
    "sliding-window",
    """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cost = tonumber(ARGV[1])
local n = #KEYS / 2
local reply = {1, now}
local cur = {}
local room = {}
for i = 1, n do
  local start = tonumber(ARGV[3 * i - 1])
  local w = tonumber(ARGV[3 * i])
  if now < start or now >= start + w then
    return {-1, now}
  end
  cur[i] = tonumber(redis.call('GET', KEYS[2 * i - 1]) or '0')
  local prev = tonumber(redis.call('GET', KEYS[2 * i]) or '0')
  room[i] = math.floor((tonumber(ARGV[3 * i + 1]) * w - prev * (w - (now - start))) / w) - cur[i]
  if cost > room[i] then
    reply[1] = 0
  end
end
for i = 1, n do
  local start = tonumber(ARGV[3 * i - 1])
  local w = tonumber(ARGV[3 * i])
  if reply[1] == 1 then
    room[i] = room[i] - cost
    if cost > 0 then
      local count = redis.call('INCRBY', KEYS[2 * i - 1], cost)
      if count == cost then
        redis.call('PEXPIREAT', KEYS[2 * i - 1], start + 2 * w + 1000)
      end
    end
  end
  reply[2 * i + 1] = math.max(room[i], 0)
  reply[2 * i + 2] = start + w - now
end
return reply
""",
)

#: Token buckets, one hash per period (fields t: micro-tokens, l: last refill ms). ARGV: cost,
#: then per period: capacity (tokens), refill (micro-tokens per ms). Reply: status, now_ms, then
#: per period: whole tokens left, ms until the request could pass (0 if admitted, -1 never).
TOKEN_BUCKET = Script(
    "token-bucket",
    """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local need = tonumber(ARGV[1]) * 1000000
local reply = {1, now}
local tokens = {}
for i = 1, #KEYS do
  local cap = tonumber(ARGV[2 * i]) * 1000000
  local rate = tonumber(ARGV[2 * i + 1])
  local state = redis.call('HMGET', KEYS[i], 't', 'l')
  local tok = tonumber(state[1])
  local last = tonumber(state[2])
  if tok == nil or last == nil then
    tok = cap
  elseif now > last then
    tok = math.min(cap, tok + (now - last) * rate)
  end
  tokens[i] = math.min(tok, cap)
  if need > tokens[i] then
    reply[1] = 0
  end
end
for i = 1, #KEYS do
  local cap = tonumber(ARGV[2 * i]) * 1000000
  local rate = tonumber(ARGV[2 * i + 1])
  local retry = 0
  if reply[1] == 1 then
    tokens[i] = tokens[i] - need
  elseif need > cap then
    retry = -1
  elseif need > tokens[i] then
    retry = math.ceil((need - tokens[i]) / rate)
  end
  redis.call('HSET', KEYS[i], 't', tokens[i], 'l', now)
  redis.call('PEXPIRE', KEYS[i], math.ceil((cap - tokens[i]) / rate) + 1000)
  reply[2 * i + 1] = math.floor(tokens[i] / 1000000)
  reply[2 * i + 2] = retry
end
return reply
""",
)


#: Batched mode: add a delta to one counter. KEYS[1]: the counter; ARGV: delta, expiry (ms since
#: the epoch). Reply: the counter's total.
async def run_windowed(client: RedisClient, script: Script, compute: Any, cost: int) -> list[int]:
    """Run a script whose keys name windows computed from the clock, retrying on a disagreement.

    ``compute(now_ms)`` returns ``(keys, per-period ARGV)``. Returns the script's reply.
    """
    for _ in range(3):
        keys, argv = compute(client.now_ms())
        sent = time.time()
        reply: list[int] = await client.evalsha(script, keys, (cost, *argv))
        received = time.time()
        client.offset_ms = reply[1] - int((sent + received) * 500)
        if reply[0] != -1:
            return reply
    raise RedisError("the gateway's and Redis's clocks keep disagreeing about the window")


# -- batched mode (sync_rate > 0) ---------------------------------------------------------------


# Batched mode lives in its own module; re-exported here as part of this module's API.
from fastkong.store.redis_batch import Batcher, batcher_for  # noqa: E402
