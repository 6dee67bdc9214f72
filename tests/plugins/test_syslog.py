"""syslog (Kong's spec/03-plugins/05-syslog): the schema, the severity and level rules, glibc's
message format, and delivery to real Unix sockets in a temporary directory (never the machine's
``/dev/log``), directly and through a running gateway."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import socket
import syslog as libc_syslog
import threading
import time
from collections.abc import Callable, Iterator
from logging.handlers import SysLogHandler
from pathlib import Path
from typing import Any, get_args

import httpx
import pytest

from fastkong.config import ConfigError, load_config
from fastkong.plugins.bundled import syslog as S
from fastkong.plugins.bundled.loggly import LEVELS
from tests.helpers import Echo, Gateway, echo_config, eventually

#: glibc's message: PRI, ``%h %e %T`` time, ident, pid, then the entry.
LINE = re.compile(rb"<(\d+)>([A-Z][a-z]{2} [ 123]\d \d\d:\d\d:\d\d) kong\[(\d+)\]: (.*)", re.DOTALL)


class UnixCollector:
    """A Unix datagram socket bound in a test's directory, read by a thread: every datagram."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.packets: list[bytes] = []
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while self.running:
            try:
                self.packets.append(self.sock.recv(1 << 20))
            except TimeoutError:
                continue

    def stop(self) -> None:
        self.running = False
        self.thread.join(5)
        self.sock.close()
        self.path.unlink(missing_ok=True)


def config(**fields: Any) -> S.SyslogConfig:
    return S.SyslogConfig(**fields)


# -- schema ------------------------------------------------------------------------------------


def errors(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config('_format_version: "3.0"\n' + text)
    return [f"{e.path}: {e.message}" for e in info.value.errors]


def test_schema_defaults() -> None:
    loaded = load_config('_format_version: "3.0"\nplugins: [{name: syslog}]\n')
    plugin = loaded.config.plugins[0]
    assert plugin.config == {
        "log_level": "info",
        "successful_severity": "info",
        "client_errors_severity": "info",
        "server_errors_severity": "info",
        "custom_fields_by_lua": None,
        "facility": "user",
    }
    assert sorted(plugin.protocols or []) == ["grpc", "grpcs", "http", "https"]


def test_schema_errors() -> None:
    severities = "debug, info, notice, warning, err, crit, alert, emerg"
    assert errors(
        "plugins: [{name: syslog, config: {log_level: loud, server_errors_severity: error, "
        "facility: local8, hostname: x}}]\n"
    ) == [
        f"plugins[0].config.log_level: expected one of: {severities}",
        f"plugins[0].config.server_errors_severity: expected one of: {severities}",
        "plugins[0].config.facility: expected one of: auth, authpriv, cron, daemon, ftp, kern, "
        "lpr, mail, news, syslog, user, uucp, local0, local1, local2, local3, local4, local5, "
        "local6, local7",
        "plugins[0].config.hostname: unknown field",
    ]
    assert errors(
        'plugins: [{name: syslog, config: {custom_fields_by_lua: {x: "return 1"}}}]\n'
    ) == [
        "plugins[0].config.custom_fields_by_lua: "
        "custom_fields_by_lua is not supported: fastkong does not run Lua code"
    ]
    assert errors("plugins: [{name: syslog, config: {successful_severity: 6}}]\n") == [
        "plugins[0].config.successful_severity: expected a string"
    ]


def test_kong_fields_and_codes() -> None:
    assert list(S.SyslogConfig.__struct_fields__) == [
        "log_level",
        "successful_severity",
        "client_errors_severity",
        "server_errors_severity",
        "custom_fields_by_lua",
        "facility",
    ]
    assert S.Syslog.priority == 4
    # The codes are <sys/syslog.h>'s (LOG_<NAME> is the code times 8): as the stdlib's
    # SysLogHandler has them, and this platform's libc where Python exposes the constant.
    assert set(get_args(S.Facility)) == set(S.FACILITIES)
    for name, code in S.FACILITIES.items():
        assert SysLogHandler.facility_names[name] == code, name
        libc = getattr(libc_syslog, f"LOG_{name.upper()}", None)
        assert libc is None or libc == code * 8, name
    for name, level in LEVELS.items():
        upper = "WARNING" if name == "warning" else name.upper()
        assert level == getattr(libc_syslog, f"LOG_{upper}"), name


# -- severity, level, PRI ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "severity"),
    [
        (100, "debug"),
        (200, "debug"),
        (204, "debug"),
        (302, "debug"),
        (399, "debug"),
        (400, "warning"),
        (404, "warning"),
        (499, "warning"),
        (500, "crit"),
        (502, "crit"),
        (599, "crit"),
    ],
)
def test_the_status_class_picks_the_severity(status: int, severity: str) -> None:
    picked = config(
        successful_severity="debug", client_errors_severity="warning", server_errors_severity="crit"
    )
    assert S.severity_for(picked, status) == severity


def test_sent_when_at_least_as_severe_as_log_level() -> None:
    # Kong's spec: info level and warning messages, sent; err level, not; warning and warning, sent.
    assert S.priority(config(log_level="info"), "warning") == 12
    assert S.priority(config(log_level="err"), "warning") is None
    assert S.priority(config(log_level="warning"), "warning") == 12
    # The whole table: syslog's numbers run from emerg (0) to debug (7).
    for level, threshold in LEVELS.items():
        for severity, number in LEVELS.items():
            found = S.priority(config(log_level=level), severity)  # type: ignore[arg-type]
            assert (found is not None) == (number <= threshold), (level, severity)


@pytest.mark.parametrize(
    ("facility", "severity", "pri"),
    [
        ("user", "info", 14),
        ("kern", "emerg", 0),
        ("mail", "err", 19),
        ("auth", "notice", 37),
        ("authpriv", "alert", 81),
        ("local0", "debug", 135),
        ("local3", "warning", 156),
        ("local7", "emerg", 184),
    ],
)
def test_pri_is_facility_times_8_plus_severity(facility: str, severity: str, pri: int) -> None:
    chosen = config(log_level="debug", facility=facility)
    assert S.priority(chosen, severity) == pri  # type: ignore[arg-type]


def test_plugin_precomputes_each_class_pri() -> None:
    plugin = S.Syslog(
        config(
            log_level="warning",
            successful_severity="info",
            client_errors_severity="warning",
            server_errors_severity="crit",
            facility="local3",
        ),
        None,  # type: ignore[arg-type]
        None,
    )
    assert (plugin.successful, plugin.client_errors, plugin.server_errors) == (None, 156, 154)


# -- the message -------------------------------------------------------------------------------


@pytest.fixture
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_glibc_message_format(utc: None) -> None:
    entry = b'{"response":{"status":200}}'
    assert S.record(14, entry, now=1704445387.9, pid=4242) == (
        b'<14>Jan  5 09:03:07 kong[4242]: {"response":{"status":200}}'
    )
    assert S.record(156, b"{}", now=1795737599, pid=7) == b"<156>Nov 26 23:59:59 kong[7]: {}"
    # The time is the local one (glibc's localtime), and the pid defaults to this process's.
    m = LINE.fullmatch(S.record(14, b"{}"))
    assert m is not None
    assert int(m.group(3)) == os.getpid()


def test_timestamp_is_the_c_locale_whatever_the_month(utc: None) -> None:
    months = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()
    for month in range(1, 13):
        now = time.mktime((2026, month, 1, 0, 0, 0, 0, 0, -1))
        assert S.timestamp(now) == f"{months[month - 1]}  1 00:00:00"


# -- delivery to a real socket -----------------------------------------------------------------


async def until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


@pytest.fixture
def short_dir(tmp_path: Path) -> Path:
    # A Unix socket path is at most 107 bytes; pytest's tmp_path is usually far below.
    assert len(str(tmp_path)) < 80
    return tmp_path


async def test_one_datagram_per_message(short_dir: Path) -> None:
    collector = UnixCollector(short_dir / "log")
    target = S.SyslogSocket(str(collector.path))
    try:
        messages = [S.record(14, b'{"n":%d}' % n) for n in range(3)]
        for message in messages:
            target.append(message)
        await until(lambda: len(collector.packets) == 3)
        assert collector.packets == messages  # whole, in order, no newline or NUL
        assert (target.sent, target.dropped, target.kind) == (3, 0, socket.SOCK_DGRAM)
    finally:
        target.close()
        collector.stop()


async def test_a_message_over_the_datagram_limit_is_dropped_whole(
    short_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    collector = UnixCollector(short_dir / "log")
    target = S.SyslogSocket(str(collector.path))
    try:
        target.append(S.record(14, b'{"n":1}'))
        await until(lambda: target.sent == 1)
        assert target.sock is not None
        limit = target.sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        big = S.record(14, b'{"x":"' + b"a" * (2 * limit) + b'"}')
        with caplog.at_level(logging.ERROR, logger="fastkong.plugins.syslog"):
            target.append(big)
            target.append(S.record(14, b'{"n":2}'))
            await until(lambda: target.sent == 2)
        assert target.dropped == 1
        assert [p[-7:] for p in collector.packets] == [b'{"n":1}', b'{"n":2}']
        (line,) = [r.getMessage() for r in caplog.records]
        assert f"a message of {len(big)} bytes is larger than" in line
        assert "1 message(s) dropped so far" in line
    finally:
        target.close()
        collector.stop()


async def test_a_stream_socket_gets_nul_terminated_messages(short_dir: Path) -> None:
    path = short_dir / "stream"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    received = bytearray()

    def read() -> None:
        conn, _ = server.accept()
        with conn:
            while chunk := conn.recv(65536):
                received.extend(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    target = S.SyslogSocket(str(path))
    try:
        messages = [S.record(14, b'{"n":%d}' % n) for n in range(3)]
        for message in messages:
            target.append(message)
        await until(lambda: target.sent == 3)
        assert target.kind == socket.SOCK_STREAM  # glibc's fallback on EPROTOTYPE
    finally:
        target.close()
    reader.join(5)
    server.close()
    assert bytes(received) == b"".join(m + b"\0" for m in messages)


async def test_a_missing_socket_drops_and_reports_once_a_while(
    short_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = short_dir / "log"
    target = S.SyslogSocket(str(path))
    with caplog.at_level(logging.ERROR, logger="fastkong.plugins.syslog"):
        for n in range(5):
            target.append(S.record(14, b'{"n":%d}' % n))
            await asyncio.sleep(0)  # each on its own turn of the loop
            await asyncio.sleep(0)
    assert (target.sent, target.dropped, len(target.pending)) == (0, 5, 0)
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith(f"[syslog] cannot connect to {path}: No such file or directory;")
    assert not any(r.exc_info for r in caplog.records)
    # The daemon comes up: the next message gets there.
    collector = UnixCollector(path)
    try:
        target.append(S.record(14, b'{"n":5}'))
        await until(lambda: target.sent == 1)
        assert collector.packets[0].endswith(b'{"n":5}')
    finally:
        target.close()
        collector.stop()


async def test_a_restarted_daemon_is_reconnected(short_dir: Path) -> None:
    path = short_dir / "log"
    first = UnixCollector(path)
    target = S.SyslogSocket(str(path))
    try:
        target.append(S.record(14, b'{"n":1}'))
        await until(lambda: len(first.packets) == 1)
        first.stop()  # the socket file goes too
        second = UnixCollector(path)
        try:
            target.append(S.record(14, b'{"n":2}'))
            await until(lambda: len(second.packets) == 1)
            assert (target.sent, target.dropped) == (2, 0)
        finally:
            second.stop()
    finally:
        target.close()


async def test_a_full_daemon_queue_waits_without_blocking(short_dir: Path) -> None:
    path = short_dir / "log"
    daemon = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    daemon.bind(str(path))
    target = S.SyslogSocket(str(path))
    try:
        count = 200  # well over the kernel's queue of datagrams (net.unix.max_dgram_qlen)
        for n in range(count):
            target.append(S.record(14, b'{"n":%d}' % n))
        await until(lambda: target.waiting)
        assert target.sent < count and target.dropped == 0
        # The daemon catches up: the loop was never blocked, the rest follows in order.
        daemon.setblocking(False)
        got: list[bytes] = []

        def drain() -> bool:
            while True:
                try:
                    got.append(daemon.recv(65536))
                except BlockingIOError:
                    return len(got) == count

        await until(drain)
        assert [json.loads(p.partition(b": ")[2])["n"] for p in got] == list(range(count))
        assert (target.sent, target.dropped, target.waiting) == (count, 0, False)
    finally:
        target.close()
        daemon.close()


# -- through a running gateway -----------------------------------------------------------------


@pytest.fixture(scope="module")
def syslog_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("syslog")


@pytest.fixture(scope="module")
def collector(syslog_dir: Path) -> Iterator[UnixCollector]:
    found = UnixCollector(syslog_dir / "log")
    yield found
    found.stop()


@pytest.fixture(scope="module")
def gateway(
    gateway_with: Callable[[str], Gateway], echo: Echo, collector: UnixCollector
) -> Gateway:
    routes = {
        "defaults": "{name: syslog}",
        "levels": "{name: syslog, config: {facility: local3, log_level: warning, "
        "successful_severity: info, client_errors_severity: warning, "
        "server_errors_severity: crit}}",
    }
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(S.SOCKET_ENV, str(collector.path))
        return gateway_with(echo_config(echo, routes))


def messages(collector: UnixCollector, route: str, count: int) -> list[tuple[int, Any]]:
    """The ``(PRI, entry)`` of the messages for ``route``, once ``count`` have come."""

    def found() -> list[tuple[int, Any]]:
        out = []
        for packet in list(collector.packets):
            m = LINE.fullmatch(packet)
            assert m is not None, packet
            entry = json.loads(m.group(4))
            if entry["route"]["name"] == route:
                out.append((int(m.group(1)), entry))
        return out

    eventually(lambda: len(found()) >= count)
    return found()


@pytest.mark.integration
def test_gateway_sends_each_entry_to_the_socket(gateway: Gateway, collector: UnixCollector) -> None:
    assert httpx.get(gateway.url("/defaults/x?q=1")).status_code == 200
    ((pri, entry),) = messages(collector, "defaults", 1)
    assert pri == 14  # user (1) * 8 + info (6)
    assert entry["request"]["uri"] == "/defaults/x?q=1"
    assert entry["response"]["status"] == 200
    assert entry["service"]["name"] == "echo"
    m = LINE.fullmatch(collector.packets[-1])
    assert m is not None and int(m.group(3)) in gateway.worker_pids()


@pytest.mark.integration
def test_gateway_severities_and_level(gateway: Gateway, collector: UnixCollector) -> None:
    assert httpx.get(gateway.url("/levels/x")).status_code == 200  # info, under warning: not sent
    assert httpx.get(gateway.url("/levels/status/404")).status_code == 404  # from the upstream
    assert httpx.get(gateway.url("/levels/status/500")).status_code == 500
    found = messages(collector, "levels", 2)
    assert [(pri, entry["response"]["status"]) for pri, entry in found] == [
        (19 * 8 + 4, 404),  # local3, warning
        (19 * 8 + 2, 500),  # local3, crit
    ]


@pytest.mark.integration
def test_a_missing_socket_never_breaks_requests(
    tmp_path_factory: pytest.TempPathFactory, echo: Echo
) -> None:
    workdir = tmp_path_factory.mktemp("no-syslog")
    gw = Gateway(workdir, echo_config(echo, {"logged": "{name: syslog}"}))
    gw.stderr_path = workdir / "stderr.log"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(S.SOCKET_ENV, str(workdir / "nothing-here"))
        gw.start()
    try:
        for n in range(5):
            assert httpx.get(gw.url(f"/logged/{n}"), timeout=5).status_code == 200

        def reports() -> list[str]:
            text = gw.stderr_path.read_text() if gw.stderr_path else ""
            return [line for line in text.splitlines() if "[syslog]" in line]

        eventually(lambda: len(reports()) == 1)
        for n in range(5):
            assert httpx.get(gw.url(f"/logged/{n}"), timeout=5).status_code == 200
        time.sleep(0.3)
        (line,) = reports()
        assert "cannot connect to" in line and "nothing-here" in line
        assert "Traceback" not in (gw.stderr_path.read_text() if gw.stderr_path else "")
    finally:
        gw.stop()
