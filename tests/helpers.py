"""Real processes on loopback for the integration tests: echo upstreams and gateways.

Every process is started here and stopped by its pid; readiness is polled with a deadline,
never a fixed sleep.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple, Self

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent


#: Ports handed out by free_port in this process (never twice).
_GIVEN: set[int] = set()


class RecordingTransport:
    """What an :class:`~fastkong.proxy.upstream.UpstreamConnection` writes to, for tests that
    feed it bytes directly (no socket): keeps the writes, notes the close."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def set_write_buffer_limits(self, **_: int) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def free_port() -> int:
    """A loopback port nothing listens on, below the kernel's ephemeral range: a port the
    kernel picked (port 0) can be given to a client's outgoing connection before the server
    under test binds it, which made tests fail now and then on "address already in use"."""
    low = 10_000
    try:
        low_ephemeral = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low_ephemeral = 32_768
    high = max(low + 1000, low_ephemeral)
    # Under pytest-xdist each worker process draws from its own slice of the range, so two
    # workers never pick the same port between choosing it and binding it.
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1)
    worker = int((os.environ.get("PYTEST_XDIST_WORKER") or "gw0")[2:] or 0)
    if workers > 1:
        span = (high - low) // workers
        low, high = low + worker * span, low + (worker + 1) * span
    for _ in range(1000):
        port = random.randrange(low, high)
        if port in _GIVEN:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _GIVEN.add(port)
        return port
    raise RuntimeError("no free loopback port below the ephemeral range")


def wait_port(
    port: int, timeout: float = 20.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def stop(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def eventually(check: Callable[[], bool], timeout: float = 10.0) -> float:
    """Poll ``check`` until it holds and return the seconds that took; AssertionError when it
    never does within ``timeout``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        time.sleep(0.05)
    raise AssertionError(f"condition not reached in {timeout} s")


def echo_config(echo: Echo, routes: dict[str, str], head: str = "", service: str = "echo") -> str:
    """A kong.yml: ``head`` (consumers, ...), then one service on ``echo`` with a route per
    entry, path ``/<name>``, its ``plugins`` list given as YAML flow text (``{name: cors}``)."""
    text = f"""
_format_version: "3.0"
{head}services:
- name: {service}
  url: http://127.0.0.1:{echo.port}
  routes:
"""
    for name, plugins in routes.items():
        text += f"  - name: {name}\n    paths: [/{name}]\n    plugins: [{plugins}]\n"
    return text


def fastkong_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m fastkong <args>`` run to its end (for commands that stop at once: refused
    settings, bad arguments); ``env`` is added to this process's environment."""
    return subprocess.run(
        [sys.executable, "-m", "fastkong", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def echoed_headers(body: Any) -> dict[str, list[str]]:
    """The request headers the echo upstream saw (its JSON answer), by name."""
    found: dict[str, list[str]] = {}
    for name, value in body["headers"]:
        found.setdefault(name, []).append(value)
    return found


class HttpRequest(NamedTuple):
    """One HTTP/1.1 request as a loopback fake read it (:func:`read_request`)."""

    method: str
    target: str
    #: The header lines in order, names as sent.
    headers: list[tuple[str, str]]
    body: bytes

    @property
    def lowered(self) -> dict[str, str]:
        """Lower-case name -> value (the last one of a repeated header)."""
        return {name.lower(): value for name, value in self.headers}


async def read_request(reader: asyncio.StreamReader) -> HttpRequest:
    """Read one request (head, then a ``Content-Length`` body) from a kept-alive connection;
    ``asyncio.IncompleteReadError`` when the client closes between requests."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    line, *lines = head.split("\r\n")
    method, target, _ = line.split(" ", 2)
    headers = []
    for text in lines:
        name, sep, value = text.partition(":")
        if sep:
            headers.append((name.strip(), value.strip()))
    length = int(next((v for n, v in headers if n.lower() == "content-length"), "0"))
    body = await reader.readexactly(length) if length else b""
    return HttpRequest(method, target, headers, body)


class LoopServer:
    """A test peer served by an asyncio loop in a thread the test starts and stops: subclasses
    give ``_serve`` (an ``asyncio.start_server`` callback) and may pass ``ssl``."""

    def __init__(self, ssl: Any = None) -> None:
        self.port = free_port()
        self.ssl = ssl
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server: asyncio.base_events.Server | None = None
        #: Every connection's writer, so that ``stop`` can end those a client still holds.
        self._held: list[asyncio.StreamWriter] = []

    def start(self) -> Self:
        self.thread.start()

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self._held.append(writer)
            await self._serve(reader, writer)

        async def listen() -> None:
            self.server = await asyncio.start_server(serve, "127.0.0.1", self.port, ssl=self.ssl)

        asyncio.run_coroutine_threadsafe(listen(), self.loop).result(5)
        return self

    def stop(self) -> None:
        async def close() -> None:
            if self.server is not None:
                self.server.close()
            # A connection accepted just before has a handler task that has not run yet (its
            # writer not held): let it start, or cancelled unstarted it leaves its socket open.
            for _ in range(2):
                await asyncio.sleep(0)
            # Connections a client (the gateway's pool) still holds: end their tasks, then
            # their transports at once (a TLS one would wait for the peer's close_notify); one
            # left open is a ResourceWarning in whichever later test collects it.
            tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for writer in self._held:
                writer.transport.abort()
            # A TLS connection still in its handshake has no handler (nor writer) yet: the
            # loop's own table of socket transports (asyncio's selector loops keep one) has it.
            for transport in list(getattr(asyncio.get_running_loop(), "_transports", {}).values()):
                transport.abort()
            for _ in range(2):  # an aborted transport lets go of its socket a loop turn later
                await asyncio.sleep(0)

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError


class TaggedEcho(LoopServer):
    """Says its tag on a line, then echoes every byte back."""

    def __init__(self, tag: str, ssl: Any = None) -> None:
        super().__init__(ssl)
        self.tag = tag

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(self.tag.encode() + b"\n")
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()


def tag_and_echo(sock: socket.socket, payload: bytes = b"ping") -> tuple[bytes, bytes]:
    """Through ``sock`` (plain or TLS) to a :class:`TaggedEcho`: its tag, and ``payload`` as it
    came back."""
    reader = sock.makefile("rb")
    tag = reader.readline().strip()
    sock.sendall(payload)
    return tag, reader.read(len(payload))


def pem_block(pem: str, spaces: int) -> str:
    """``pem`` as a YAML literal block indented by ``spaces`` (a certificate in a kong.yml)."""
    return "|\n" + "".join(" " * spaces + line + "\n" for line in pem.strip().splitlines())


def tls_server_context(cert: str, key: str, tmp: Path) -> ssl.SSLContext:
    """A server TLS context for ``cert`` and ``key`` (PEM), written under ``tmp``."""
    (tmp / "up.crt").write_text(cert)
    (tmp / "up.key").write_text(key)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp / "up.crt", tmp / "up.key")
    return ctx


class JsonPeer(LoopServer):
    """An upstream answering each request on a kept-alive connection (request bodies are not
    read) with a JSON body and extra header lines from :meth:`respond`, given the request's
    headers (names lower-cased) and the connection."""

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                headers = {}
                for line in head.decode("latin-1").split("\r\n")[1:]:
                    name, _, value = line.partition(":")
                    if name:
                        headers[name.lower()] = value.strip()
                payload, extra = self.respond(headers, writer)
                body = json.dumps(payload).encode()
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    + extra
                    + b"content-length: %d\r\n\r\n%s" % (len(body), body)
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def respond(self, headers: dict[str, str], writer: asyncio.StreamWriter) -> tuple[Any, bytes]:
        raise NotImplementedError


class HeadPeer(LoopServer):
    """An HTTP/1.1 peer (TLS with ``ssl``) that answers each request head on a kept-alive
    connection with a 200 whose body :meth:`answer` makes (requests without a body only)."""

    content_type = b"text/plain"

    def answer(self, head: bytes, writer: asyncio.StreamWriter) -> bytes:
        raise NotImplementedError

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                body = self.answer(head, writer)
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: %s\r\ncontent-length: %d\r\n\r\n%s"
                    % (self.content_type, len(body), body)
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()


class LineServer(LoopServer):
    """A TCP (or, with ``ssl``, TLS) server on loopback that keeps every line it receives,
    without its newline, and counts the connections; stopping closes the kept ones too."""

    def __init__(self, ssl: Any = None) -> None:
        super().__init__(ssl)
        self.lines: list[str] = []
        self.connections = 0
        self.writers: list[asyncio.StreamWriter] = []

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        while raw := await reader.readline():
            self.lines.append(raw.decode().rstrip("\n"))
        writer.close()

    def stop(self) -> None:
        for writer in self.writers:
            self.loop.call_soon_threadsafe(writer.close)
        super().stop()


class DatagramCollector:
    """A UDP server on loopback, in a thread: keeps every datagram it receives."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.packets: list[bytes] = []
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while self.running:
            try:
                self.packets.append(self.sock.recv(65536))
            except TimeoutError:
                continue

    def stop(self) -> None:
        self.running = False
        self.thread.join(5)
        self.sock.close()

    @staticmethod
    def module_fixture() -> Any:
        """A module-scoped pytest fixture yielding a collector, stopped after the module:
        ``agent = DatagramCollector.module_fixture()``."""

        @pytest.fixture(scope="module")
        def collector() -> Iterator[DatagramCollector]:
            server = DatagramCollector()
            yield server
            server.stop()

        return collector


class TaggedDatagrams(DatagramCollector):
    """A UDP server answering each datagram with its tag, a colon and the datagram."""

    def __init__(self, tag: str) -> None:
        self.tag = tag.encode()
        super().__init__()

    def _run(self) -> None:
        while self.running:
            try:
                data, addr = self.sock.recvfrom(65536)
            except TimeoutError:
                continue
            self.sock.sendto(self.tag + b":" + data, addr)


def udp_tag_at(port: int, payload: bytes = b"ping", timeout: float = 1.0) -> bytes:
    """The tag of the :class:`TaggedDatagrams` server a new session to ``port`` on loopback
    reaches (a fresh client socket, so a fresh session); b"" when nothing answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(payload, ("127.0.0.1", port))
        try:
            data = sock.recv(65536)
        except TimeoutError:
            return b""
    tag, _, echoed = data.partition(b":")
    return tag if echoed == payload else b""


class FixedPeer(LoopServer):
    """An upstream that answers every request with the same ``response`` bytes on a kept-alive
    connection, and counts the connections it accepts."""

    def __init__(self, response: bytes) -> None:
        super().__init__()
        self.response = response
        self.connections = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                writer.write(self.response)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()


class Echo:
    """``python -m fastkong.echo`` on a free loopback port."""

    def __init__(self, name: str = "echo", port: int | None = None) -> None:
        self.name = name
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Echo:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fastkong.echo", "--port", str(self.port), "--name", self.name],
            stdout=subprocess.DEVNULL,
        )
        wait_port(self.port, proc=self.proc)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class Gateway:
    """``fastkong start`` on free loopback ports, with a config file in ``workdir``."""

    def __init__(self, workdir: Path, config: str | None, workers: int = 1, *extra: str) -> None:
        self.workdir = workdir
        self.config_path = workdir / "kong.yml"
        if config is not None:
            self.config_path.write_text(config)
        self.has_config = config is not None
        self.workers = workers
        self.extra = extra
        self.port = free_port()
        #: Kong's listener flags for the proxy port (``ssl``), set before ``start()``.
        self.port_flags = ""
        #: A second proxy listener, ``ssl http2``, when set before ``start()``.
        self.ssl_port: int | None = None
        self.status_port = free_port()
        self.admin_port = free_port()
        #: A file for the gateway's stderr, set before ``start()`` (else it is this process's).
        self.stderr_path: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "fastkong", "start"]
        if self.has_config:
            cmd += ["-c", str(self.config_path)]
        cmd += [
            "--proxy-listen",
            f"127.0.0.1:{self.port} {self.port_flags}"
            + (f", 127.0.0.1:{self.ssl_port} ssl http2" if self.ssl_port else ""),
            "--status-listen",
            f"127.0.0.1:{self.status_port}",
            "--admin-listen",
            f"127.0.0.1:{self.admin_port}",
            "--workers",
            str(self.workers),
            *self.extra,
        ]
        return cmd

    def start(self, wait_ready: bool = True) -> Gateway:
        stderr = None if self.stderr_path is None else self.stderr_path.open("ab")
        self.proc = subprocess.Popen(self.command(), cwd=ROOT, env=dict(os.environ), stderr=stderr)
        if stderr is not None:
            stderr.close()  # the child has its own copy
        wait_port(self.status_port, proc=self.proc)
        wait_port(self.port, proc=self.proc)
        if self.ssl_port:
            wait_port(self.ssl_port, proc=self.proc)
        if wait_ready:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = httpx.get(self.status_url("/status/ready"))
            if r.status_code == 200:
                return
            time.sleep(0.05)
        raise TimeoutError("gateway never became ready")

    def status(self) -> dict:  # type: ignore[type-arg]
        return httpx.get(self.status_url("/status")).json()

    def worker_pids(self) -> list[int]:
        return [int(pid) for pid in self.status()["fastkong"]["workers"]]

    def stop(self) -> int:
        return stop(self.proc) if self.proc is not None else 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def raw(self, data: bytes) -> bytes:
        """Send ``data`` as is on a new connection (repeated headers kept apart, sizes no client
        library allows) and return everything the gateway answers until it closes."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
            sock.sendall(data)
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        return answer

    def status_url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.status_port}{path}"


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise LookupError(pid)


class KubeletVolume:
    """A directory laid out and updated the way kubelet updates a ConfigMap or Secret volume:
    ``name -> ..data/name`` for each file, ``..data -> ..<timestamp>``; an update writes a new
    timestamped directory, renames a new ``..data`` link over the old one, then deletes the
    old directory (so a path resolved before the update no longer exists)."""

    def __init__(self, root: Path, name: str = "kong.yml") -> None:
        self.root = root
        self.name = name
        root.mkdir(parents=True, exist_ok=True)
        self.n = 0

    def write(self, text: str) -> None:
        self.write_files({self.name: text})

    def write_files(self, files: dict[str, str]) -> None:
        self.n += 1
        version = self.root / f"..2026_11_25_00_00_{self.n:02d}.000000001"
        version.mkdir()
        for name, text in files.items():
            (version / name).write_text(text)
        data = self.root / "..data"
        previous = os.readlink(data) if data.is_symlink() else None
        tmp = self.root / "..data_tmp"
        tmp.symlink_to(version.name)
        os.replace(tmp, data)
        for name in files:
            link = self.root / name
            if not link.is_symlink():
                link.symlink_to(f"..data/{name}")
        if previous is not None:
            shutil.rmtree(self.root / previous)

    @property
    def path(self) -> Path:
        return self.root / self.name

    def file(self, name: str) -> Path:
        return self.root / name


def plugin_package(
    site: Path, dist: str, modules: dict[str, str], entry_points: dict[str, str]
) -> str:
    """An installed distribution in ``site``, the way pip leaves one: its modules (name ->
    source) and a ``.dist-info`` whose ``entry_points.txt`` names ``entry_points`` (plugin ->
    ``module:Class``) in the ``fastkong.plugins`` group. Returns a ``PYTHONPATH`` with ``site``
    first, for the processes that should see it."""
    for name, source in modules.items():
        (site / f"{name}.py").write_text(source)
    # pip writes the normalized name (``-`` -> ``_``): importlib.metadata reads the name up
    # to the first ``-`` of the directory, and drops later distributions of the same name
    info = site / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[fastkong.plugins]\n{lines}")
    return os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH")) if p)


def plugin_config(name: str, config: dict[str, Any]) -> Any:
    """The config of plugin ``name`` as a declarative config holding only it loads it."""
    from fastkong.config import load_config  # noqa: PLC0415 (most helpers need no config)

    doc = {"_format_version": "3.0", "plugins": [{"name": name, "config": config}]}
    return load_config(json.dumps(doc)).config.plugins[0].config


def plugin_config_errors(name: str, config: dict[str, Any]) -> list[str]:
    """The ``path: message`` errors loading plugin ``name`` with ``config`` gives."""
    from fastkong.config import ConfigError  # noqa: PLC0415

    with pytest.raises(ConfigError) as info:
        plugin_config(name, config)
    return [f"{e.path}: {e.message}" for e in info.value.errors]


IN_NETNS = "FASTKONG_TEST_NETNS"
#: Runs the command after it in a new user and network namespace, loopback up.
OWN_NETWORK = ["unshare", "-rn", "sh", "-c", 'ip link set lo up && exec "$0" "$@"']


def in_own_network(tmp_path: Path) -> bool:
    """Whether this process runs in a network namespace of the test's own (``unshare -rn``:
    loopback its one interface, root inside it, so wildcard addresses and ports below 1024 are
    the test's alone); if not, run the calling test there (it must pass) and return False."""
    if os.environ.get(IN_NETNS) == "1":
        return True
    caller = sys._getframe(1).f_code
    node = f"{Path(caller.co_filename).relative_to(ROOT)}::{caller.co_name}"
    pytest_args = ["-q", "-p", "no:cacheprovider", "--basetemp", str(tmp_path / "netns")]
    proc = subprocess.run(
        [*OWN_NETWORK, sys.executable, "-m", "pytest", *pytest_args, node],
        cwd=ROOT,
        env={**os.environ, IN_NETNS: "1"},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0 and "1 passed" in proc.stdout, proc.stdout + proc.stderr
    return False


def cli_json(args: list[str]) -> dict[str, Any]:
    """A ``fastkong`` command run in this process (it must exit 0): its JSON answer."""
    import contextlib  # noqa: PLC0415
    import io  # noqa: PLC0415

    from fastkong.cli import main  # noqa: PLC0415

    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as done:
        main(args)
    assert done.value.code == 0
    answer: dict[str, Any] = json.loads(out.getvalue())
    return answer


def explain(
    config: Path, method: str, url: str, headers: dict[str, str], flavor: str
) -> dict[str, Any]:
    """``fastkong config explain`` run in this process: its JSON answer."""
    args = ["config", "explain", str(config), "--method", method, "--url", url]
    args += ["--router-flavor", flavor]
    for name, value in headers.items():
        args += ["--header", f"{name}: {value}"]
    return cli_json(args)
