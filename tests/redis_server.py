"""A real ``redis-server`` on a free loopback port, and a fault-injecting TCP proxy in front of it.

The tests that use these must fail, not skip, when ``redis-server`` is missing: the rate
limiter's Redis policy is part of the product (``apt-get install -y redis-server``).

:class:`FaultProxy` forwards bytes both ways and can, at any moment:

* ``down``: drop every connection and close new ones at once (Redis unreachable);
* ``blackhole``: keep connections open but never answer (Redis hung: clients time out);
* ``delay``: add a fixed delay to every chunk forwarded (a slow Redis or network);
* ``pass``: forward normally again.

It runs its own event loop in a thread, so it works for sync tests driving gateway processes
and for async tests alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

from tests.helpers import free_port, stop, wait_port

MISSING = "redis-server is not on PATH: the Redis tests need it (apt-get install -y redis-server)"


def redis_server_path() -> str:
    found = shutil.which("redis-server")
    if found is None:
        raise RuntimeError(MISSING)
    return found


def redis_cli(port: int, *args: str) -> str:
    """Run ``redis-cli -p port args...``; its stdout, stripped."""
    out = subprocess.run(
        ["redis-cli", "-p", str(port), *args],
        check=True,
        capture_output=True,
        text=True,
        timeout=10,
    )
    return out.stdout.strip()


class RedisServer:
    """``redis-server`` without persistence on ``127.0.0.1:<free port>``, stopped by its pid."""

    def __init__(self, workdir: Path | None = None, *args: str, port: int | None = None) -> None:
        self.port = port or free_port()
        self.workdir = workdir
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        pid = self.proc.pid if self.proc is not None else None
        return f"<RedisServer 127.0.0.1:{self.port} pid={pid}>"

    def start(self) -> RedisServer:
        cmd = [
            redis_server_path(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            *self.args,
        ]
        self.proc = subprocess.Popen(
            cmd,
            cwd=self.workdir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_port(self.port, proc=self.proc)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)

    def cli(self, *args: str) -> str:
        """Run ``redis-cli`` against this server; its stdout."""
        return redis_cli(self.port, *args)

    def flush(self) -> None:
        self.cli("FLUSHALL")


class RedisCluster:
    """Three ``redis-server --cluster-enabled yes`` masters joined by ``redis-cli --cluster``."""

    def __init__(self, workdir: Path, size: int = 3) -> None:
        self.workdir = workdir
        self.servers = [
            RedisServer(
                workdir,
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                f"nodes-{i}.conf",
                "--cluster-node-timeout",
                "2000",
                port=_cluster_port(),
            )
            for i in range(size)
        ]

    def __repr__(self) -> str:
        return f"<RedisCluster ports={self.ports}>"

    @property
    def ports(self) -> list[int]:
        return [s.port for s in self.servers]

    def start(self) -> RedisCluster:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        for server in self.servers:
            server.start()
        subprocess.run(
            ["redis-cli", "--cluster", "create"]
            + [f"127.0.0.1:{p}" for p in self.ports]
            + ["--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=30,
        )
        wait_until(
            lambda: all("cluster_state:ok" in s.cli("CLUSTER", "INFO") for s in self.servers),
            timeout=20,
        )

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


def _cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is valid and free too."""
    for _ in range(100):
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port + 10000)) != 0:
                return port
    raise RuntimeError("no free port pair for a Redis Cluster node")


class Sentinel:
    """A master and one ``redis-server --sentinel`` watching it as ``name``."""

    def __init__(self, workdir: Path, name: str = "mymaster", replica: bool = False) -> None:
        self.workdir = workdir
        self.name = name
        self.master = RedisServer(workdir)
        self.replica: RedisServer | None = None
        if replica:
            self.replica = RedisServer(workdir, "--replicaof", "127.0.0.1", str(self.master.port))
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"<Sentinel :{self.port} {self.name} -> {self.master!r}>"

    def start(self) -> Sentinel:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        self.master.start()
        if self.replica is not None:
            self.replica.start()
        conf = self.workdir / f"sentinel-{self.port}.conf"
        conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\n"
            f"sentinel monitor {self.name} 127.0.0.1 {self.master.port} 1\n"
            f"sentinel down-after-milliseconds {self.name} 1000\n"
            f"sentinel failover-timeout {self.name} 5000\n"
        )
        self.proc = subprocess.Popen(
            [redis_server_path(), str(conf), "--sentinel"],
            cwd=self.workdir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_port(self.port, proc=self.proc)

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
        if self.replica is not None:
            self.replica.stop()
        self.master.stop()

    def cli(self, *args: str) -> str:
        """``redis-cli`` against the sentinel."""
        return redis_cli(self.port, *args)


class FaultProxy:
    """A TCP proxy to ``127.0.0.1:<target>`` whose behaviour tests switch (module docstring)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.mode = "pass"
        self.delay = 0.0
        self.connections = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._ready = threading.Event()

    def __repr__(self) -> str:
        return (
            f"<FaultProxy :{self.port} -> :{self.target_port} mode={self.mode} "
            f"delay={self.delay} connections={self.connections}>"
        )

    def start(self) -> FaultProxy:
        self._thread = threading.Thread(target=self._main, name="fault-proxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise TimeoutError("fault proxy did not start")
        return self

    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        self._server = loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", self.port)
        )
        self._ready.set()
        loop.run_forever()
        self._server.close()
        for w in list(self._writers):
            w.transport.abort()
        tasks = asyncio.all_tasks(loop)
        for task in tasks:
            task.cancel()
        if tasks:
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        loop.run_until_complete(self._server.wait_closed())
        loop.close()

    def set(self, mode: str, delay: float = 0.0) -> None:
        """Switch to ``pass``, ``down``, ``blackhole`` or ``delay`` (with ``delay`` seconds)."""
        if mode not in ("pass", "down", "blackhole", "delay"):
            raise ValueError(mode)
        self.mode = mode
        self.delay = delay
        if mode == "down" and self._loop is not None:
            done = threading.Event()

            def drop() -> None:
                for w in list(self._writers):
                    w.transport.abort()
                done.set()

            self._loop.call_soon_threadsafe(drop)
            done.wait(5)

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self.mode == "down":
            writer.transport.abort()
            return
        self._writers.add(writer)
        upstream_writer: asyncio.StreamWriter | None = None
        try:
            up_reader, upstream_writer = await asyncio.open_connection(
                "127.0.0.1", self.target_port
            )
            self._writers.add(upstream_writer)
            await asyncio.gather(self._pipe(reader, upstream_writer), self._pipe(up_reader, writer))
        except OSError:
            pass
        finally:
            for w in (writer, upstream_writer):
                if w is not None:
                    self._writers.discard(w)
                    w.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while True:
                data = await reader.read(65536)
                if not data:
                    return
                if self.mode == "down":
                    return
                if self.mode == "blackhole":
                    continue  # swallowed: the other side never hears back
                if self.mode == "delay" and self.delay:
                    await asyncio.sleep(self.delay)
                writer.write(data)
                await writer.drain()


def wait_until(predicate: object, timeout: float = 10.0, step: float = 0.02) -> None:
    """Poll ``predicate()`` until it is true (a deadline, never a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(step)
    raise TimeoutError(f"condition not met within {timeout}s")
