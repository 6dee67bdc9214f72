"""The signals an operator sends a node, as nginx takes them (fastkong/control/node_signals.py):
Kong's ``13-signals_spec.lua`` (USR1 received; USR2, nginx's binary upgrade, has no meaning
here and is ignored), no process of the node dying of SIGUSR1, SIGUSR2 or SIGWINCH, log rotation
of the access logs (fastkong/proxy/access_log.py) with and without SIGUSR1, and SIGQUIT's drain.

One node (one worker, a stream listener, both access logs) serves every case; the last one
stops it with SIGQUIT.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fastkong.proxy.access_log import AccessLog
from tests.helpers import ROOT, Echo, Gateway, TaggedEcho, eventually, free_port

pytestmark = pytest.mark.integration


class Node:
    """The node under test, its log files and its stream port."""

    def __init__(self, gw: Gateway, stream_port: int) -> None:
        self.gw = gw
        self.stream_port = stream_port
        self.access = gw.workdir / "access.log"
        self.stream_access = gw.workdir / "stream.log"
        self.stderr = gw.workdir / "stderr.log"

    @property
    def pid(self) -> int:
        assert self.gw.proc is not None
        return self.gw.proc.pid

    def processes(self) -> list[int]:
        """The supervisor, its Granian master and stream process, the master's worker."""
        found = [self.pid]
        for child in _children(self.pid):
            found += [child, *_children(child)]
        return found

    def request(self, path: str = "/echo") -> None:
        assert httpx.get(self.gw.url(path)).status_code == 200

    def session(self) -> None:
        with socket.create_connection(("127.0.0.1", self.stream_port), timeout=5) as conn:
            assert conn.recv(64).startswith(b"tcp-echo")


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, echo: Echo) -> Iterator[Node]:
    workdir = tmp_path_factory.mktemp("signals")
    tagged = TaggedEcho("tcp-echo").start()
    stream_port = free_port()
    config = f"""
_format_version: "3.0"
services:
- name: echo
  url: http://127.0.0.1:{echo.port}
  routes:
  - name: echo
    paths: ["/echo", "/delay"]
    strip_path: false
- name: tcp
  url: tcp://127.0.0.1:{tagged.port}
  routes: [{{name: tcp, protocols: [tcp], destinations: [{{port: {stream_port}}}]}}]
"""
    gw = Gateway(
        workdir,
        config,
        1,
        "--stream-listen",
        f"127.0.0.1:{stream_port}",
        "--proxy-access-log",
        str(workdir / "access.log"),
        "--proxy-stream-access-log",
        str(workdir / "stream.log"),
        "--prefix",
        str(workdir / "prefix"),
    )
    gw.stderr_path = workdir / "stderr.log"
    try:
        gw.start()
        yield Node(gw, stream_port)
    finally:
        gw.stop()
        tagged.stop()


@pytest.mark.parametrize(
    "sig", [signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH], ids=lambda s: s.name
)
def test_no_process_of_the_node_dies_of_the_signal(node: Node, sig: signal.Signals) -> None:
    """Sent to every process of the node (as to its process group), the supervisor first."""
    processes = node.processes()
    assert len(processes) == 4  # supervisor, Granian master, its worker, the stream process
    assert (node.gw.workdir / "prefix" / "pids" / "fastkong.pid").read_text() == f"{node.pid}\n"
    for pid in processes:
        os.kill(pid, sig)
    eventually(lambda: f"{sig.name} received" in node.stderr.read_text())
    node.request()
    node.session()
    assert node.processes() == processes
    assert node.gw.proc is not None and node.gw.proc.poll() is None
    assert httpx.get(node.gw.status_url("/status/ready")).status_code == 200


def test_kong_can_receive_usr1(node: Node) -> None:
    """Kong's "can receive USR1": the supervisor says so, and has the logs reopened."""
    os.kill(node.pid, signal.SIGUSR1)
    eventually(lambda: "SIGUSR1 received: reopening the access logs (2 processes)"
               in node.stderr.read_text())  # fmt: skip


def test_access_logs_follow_a_rename_without_a_signal(node: Node) -> None:
    """logrotate without postrotate: ``create`` mode for the HTTP log (a new empty file at the
    path), plain rename for the stream log. New lines reach the path within about a second."""
    node.request()
    node.session()
    eventually(lambda: lines(node.access) > 0 and lines(node.stream_access) > 0)
    node.access.rename(node.gw.workdir / "access.log.1")
    node.access.touch()
    node.stream_access.rename(node.gw.workdir / "stream.log.1")

    def new_lines_in_new_files() -> bool:
        node.request()
        node.session()
        return lines(node.access) > 0 and lines(node.stream_access) > 0

    eventually(new_lines_in_new_files, 10)
    assert lines(node.gw.workdir / "access.log.1") > 0  # what was written before stays there


def test_access_logs_are_reopened_on_sigusr1(node: Node) -> None:
    """logrotate's ``postrotate kill -USR1 $(cat <prefix>/pids/fastkong.pid)``: the files are
    reopened at once (created at the path with no request sent), new lines go there."""
    node.request()
    node.session()
    eventually(lambda: lines(node.access) > 0 and lines(node.stream_access) > 0)
    node.access.rename(node.gw.workdir / "access.log.2")
    node.stream_access.rename(node.gw.workdir / "stream.log.2")
    pid = int((node.gw.workdir / "prefix" / "pids" / "fastkong.pid").read_text())
    os.kill(pid, signal.SIGUSR1)
    eventually(lambda: node.access.exists() and node.stream_access.exists())
    node.request()
    node.session()
    eventually(lambda: lines(node.access) == 1 and lines(node.stream_access) == 1)


def test_sigquit_drains_in_flight_requests(node: Node) -> None:
    """nginx's graceful stop: readiness 503 ``draining``, the request in flight finishes, the
    node exits 0 and removes its pid file. (Ends the module's node.)"""
    result: list[int] = []
    with socket.create_connection(("127.0.0.1", node.gw.port), timeout=20) as slow:
        slow.sendall(b"GET /delay/1500 HTTP/1.1\r\nHost: x\r\n\r\n")
        os.kill(node.pid, signal.SIGQUIT)
        ready = httpx.get(node.gw.status_url("/status/ready"))
        assert (ready.status_code, ready.json()) == (503, {"message": "draining"})
        result.append(int(slow.recv(65536).split(b" ", 2)[1]))
    assert result == [200]
    assert node.gw.proc is not None and node.gw.proc.wait(20) == 0
    assert not (node.gw.workdir / "prefix" / "pids" / "fastkong.pid").exists()


# -- the pieces, in this process ---------------------------------------------------------------

RELAY_CHILD = textwrap.dedent(
    """
    import os, signal, time
    from fastkong.control.lifeline import RELAY_SIGNAL, relay_once

    terms = []
    signal.signal(signal.SIGTERM, lambda signum, frame: terms.append(signum))
    relay_once(parent=os.getppid())
    os.kill(os.getpid(), RELAY_SIGNAL)  # an operator's SIGUSR2: the parent is alive
    time.sleep(0.1)
    print(len(terms))
    """
)


def test_the_relay_ignores_sigusr2_while_the_parent_lives() -> None:
    done = subprocess.run(
        [sys.executable, "-c", RELAY_CHILD], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0"]


async def test_the_log_path_is_looked_at_once_a_second_at_most(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No stat() per request: a flush looks at the path when a second has passed since."""
    log = AccessLog(str(tmp_path / "access.log"))
    log.open()
    stats: list[str] = []
    real_stat = os.stat
    monkeypatch.setattr(os, "stat", lambda path, *a, **k: stats.append(path) or real_stat(path))
    for _ in range(100):
        log.write("line\n")
        log.flush()
    assert stats == []
    log.next_check = 0.0  # a second later
    (tmp_path / "access.log").rename(tmp_path / "access.log.1")
    log.write("after\n")
    log.flush()
    assert stats == [str(tmp_path / "access.log")]
    assert (tmp_path / "access.log").read_text() == "after\n"
    log.close()
    assert repr(log) == f"<AccessLog {tmp_path / 'access.log'} buffered=0>"
