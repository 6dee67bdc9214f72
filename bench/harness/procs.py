"""Processes the benchmark starts, and what ``/proc`` says about them.

Every process is started in its own session (Ctrl-C reaches only the harness, which stops the
servers in order) with ``PR_SET_PDEATHSIG``, so it dies with the harness even if the harness is
killed. :meth:`Server.stop` stops a server by its pid and then any child it left behind, by pid,
checked against the start time so that a recycled pid is never hit.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")

# A plain opener: no http_proxy from the environment between us and 127.0.0.1.
# The TLS scenario's certificate is self-signed: the harness checks answers, not identities.
_UNVERIFIED = ssl.create_default_context()
_UNVERIFIED.check_hostname = False
_UNVERIFIED.verify_mode = ssl.CERT_NONE
_HTTP = urllib.request.build_opener(
    urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=_UNVERIFIED)
)


class BenchError(Exception):
    """A leg could not be started, checked or measured; the message says which and why."""


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: SIGTERM it if the harness dies without cleaning up.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """One process the harness started (with whatever children it forks) and its log file."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tree(self, children: dict[int, list[int]] | None = None) -> list[int]:
        """This process and all its descendants (``children``: a :func:`children_map` to
        reuse)."""
        return [self.pid, *descendants(self.pid, children)]

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty log)"

    def stop(self, timeout: float = 20.0) -> None:
        family = [(pid, start_time(pid)) for pid in descendants(self.pid)]
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                print(f"bench: {self.name} (pid {self.pid}) ignored SIGTERM; killing it")
                self.proc.kill()
                self.proc.wait()
        # A supervisor that exits before its children leaves them running: stop those too.
        for sig in (signal.SIGTERM, signal.SIGKILL):
            left = [pid for pid, started in family if start_time(pid) == started]
            if not left:
                return
            print(f"bench: {self.name} left {left} running; sending {sig.name}")
            for pid in left:
                with contextlib.suppress(OSError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + 5.0
            while time.monotonic() < deadline and any(
                start_time(pid) == started for pid, started in family
            ):
                time.sleep(0.05)


def spawn(
    name: str,
    cmd: Sequence[str],
    workdir: Path,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Server:
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            list(cmd),
            cwd=cwd,
            env=None if env is None else {**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
    return Server(name, proc, log)


def http_get(
    url: str, timeout: float = 2.0, headers: Mapping[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-case names) and body of one GET."""
    request = urllib.request.Request(url, headers=dict(headers or {}))
    try:
        with _HTTP.open(request, timeout=timeout) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()


def wait_ready(server: Server, url: str, timeout: float = 30.0) -> None:
    """Poll ``url`` until it answers 200, the process exits, or the deadline passes."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if not server.alive():
            raise BenchError(
                f"{server.name} exited with {server.proc.returncode} before it was ready; "
                f"log {server.log}:\n{server.log_tail()}"
            )
        try:
            status, _, _ = http_get(url, timeout=1.0)
            if status == 200:
                return
            last = f"HTTP {status}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.05)
    raise BenchError(
        f"{server.name} not ready at {url} after {timeout:.0f}s ({last}); "
        f"log {server.log}:\n{server.log_tail()}"
    )


def wait_port(server: Server, port: int, timeout: float = 30.0) -> None:
    """Poll until something accepts TCP connections on 127.0.0.1:``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not server.alive():
            raise BenchError(
                f"{server.name} exited with {server.proc.returncode} before it was ready; "
                f"log {server.log}:\n{server.log_tail()}"
            )
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1.0):
            return
        time.sleep(0.05)
    raise BenchError(f"{server.name}: nothing listens on port {port} after {timeout:.0f}s")


# --- /proc ----------------------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str]:
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()


def start_time(pid: int) -> int | None:
    """When ``pid`` started (clock ticks after boot); None once it is gone or a zombie."""
    try:
        fields = _stat_fields(pid)
    except (OSError, ValueError):
        return None
    return None if fields[0] in "ZX" else int(fields[19])


def children_map() -> dict[int, list[int]]:
    """Every process's children, from one pass over ``/proc``."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError):
                children.setdefault(int(_stat_fields(int(entry.name))[1]), []).append(
                    int(entry.name)
                )
    return children


def descendants(pid: int, children: dict[int, list[int]] | None = None) -> list[int]:
    if children is None:
        children = children_map()
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def cpu_ticks(pids: Sequence[int]) -> dict[int, int]:
    ticks = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = _stat_fields(pid)
            ticks[pid] = int(fields[11]) + int(fields[12])  # utime + stime
    return ticks


def other_ticks(ours: set[int]) -> dict[int, int]:
    """CPU ticks of every user-space process outside ``ours``, counting the children it reaped,
    so a short-lived process that ran and exited during a run is still seen (in its parent)."""
    ticks = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and int(entry.name) not in ours:
            with contextlib.suppress(OSError, ValueError):
                fields = _stat_fields(int(entry.name))
                if fields[1] not in ("0", "2"):  # not a kernel thread (children of kthreadd)
                    ticks[int(entry.name)] = sum(int(f) for f in fields[11:15])
    return ticks


def peak_rss_kb(pids: Sequence[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
    return total


def reset_peak_rss(pids: Sequence[int]) -> None:
    """Start a new peak: writing 5 to clear_refs resets VmHWM to the current RSS (Linux 4.0+),
    so the peak read after a run is that run's, not the largest since the process started."""
    for pid in pids:
        with contextlib.suppress(OSError):
            Path(f"/proc/{pid}/clear_refs").write_text("5")
