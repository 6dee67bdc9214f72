"""End-to-end proxy benchmark: fastkong against nginx, both in front of the same nginx upstream.

``bench/run`` is the command; this module is what it runs. Method (bench/README.md has the long
version): every server gets one worker and listens on a free 127.0.0.1 port; ``wrk -t1 -c50
--latency`` measures the upstream directly, then nginx as a reverse proxy, then fastkong, and
repeats that sequence for several rounds, so slow drift in the machine hits every leg alike. Each
measurement follows a short unmeasured warmup of the same leg. CPU time comes from
``/proc/<pid>/stat`` (utime + stime of every process in the server's tree, sampled right before and
after the measured run); peak memory from ``VmHWM`` in ``/proc/<pid>/status``.

The script never installs anything: a missing tool is named with the command that installs it.
Every process it starts is stopped by its pid on the way out (also on Ctrl-C, SIGTERM, errors), and
dies with the script if the script itself is killed (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime as dt
import importlib.metadata
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
TEMPLATES = BENCH / "nginx"
RESULTS = BENCH / "results"

PATH = "/static"
BODY = b"Hello, World!"
LEGS = ("direct", "nginx", "fastkong")
CLK_TCK = os.sysconf("SC_CLK_TCK")
# Other processes using more than this share of a core during a measured run flag the run.
FOREIGN_LIMIT = 0.15
INSTALL_HINT = {
    "wrk": "apt-get install -y wrk",
    "nginx": "apt-get install -y nginx",
}

# A plain opener: no http_proxy from the environment between us and 127.0.0.1.
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))

KONG_YML = """\
_format_version: "3.0"
services:
- name: bench-upstream
  url: http://127.0.0.1:{port}
  routes:
  - name: bench-static
    paths: ["{path}"]
    strip_path: false
"""


class BenchError(Exception):
    """A leg could not be started, checked or measured; the message says which and why."""


# --- processes ----------------------------------------------------------------------------------


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: SIGTERM it if this script dies without cleaning up.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """One process this script started (with whatever children it forks) and its log file."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tree(self) -> list[int]:
        return [self.pid, *descendants(self.pid)]

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty log)"

    def stop(self, timeout: float = 20.0) -> None:
        family = [(pid, _start_time(pid)) for pid in descendants(self.pid)]
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                print(f"bench: {self.name} (pid {self.pid}) ignored SIGTERM; killing it")
                self.proc.kill()
                self.proc.wait()
        # A supervisor that exits before its children leaves them running: stop those too, by pid
        # (checked against the start time, so a recycled pid is never hit).
        for sig in (signal.SIGTERM, signal.SIGKILL):
            left = [pid for pid, started in family if _start_time(pid) == started]
            if not left:
                return
            print(f"bench: {self.name} left {left} running; sending {sig.name}")
            for pid in left:
                with contextlib.suppress(OSError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + 5.0
            while time.monotonic() < deadline and any(
                _start_time(pid) == started for pid, started in family
            ):
                time.sleep(0.05)


def spawn(name: str, cmd: Sequence[str], workdir: Path, cwd: Path | None = None) -> Server:
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            list(cmd),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches only us; we stop the servers in order
            preexec_fn=_die_with_parent,
        )
    return Server(name, proc, log)


def render(template: Path, **values: object) -> str:
    text = template.read_text()

    def fill(m: re.Match[str]) -> str:
        if m.group(1) not in values:
            raise BenchError(f"{template}: no value for {m.group(0)}")
        return str(values[m.group(1)])

    return re.sub(r"\{\{(\w+)\}\}", fill, text)


def start_nginx(nginx: str, name: str, template: str, workdir: Path, **values: object) -> Server:
    conf = workdir / f"{name}.conf"
    conf.write_text(render(TEMPLATES / template, prefix=workdir, **values))
    # -e: nginx opens its error log before reading the config; keep even that out of /var/log.
    cmd = [nginx, "-p", str(workdir), "-e", str(workdir / f"{name}-error.log"), "-c", str(conf)]
    return spawn(name, cmd, workdir)


def start_echo(workdir: Path, port: int) -> Server:
    cmd = [sys.executable, "-m", "fastkong.echo", "--port", str(port), "--name", "bench"]
    return spawn("upstream-echo", cmd, workdir, cwd=ROOT)


def start_fastkong(workdir: Path, upstream_port: int) -> tuple[Server, int, int]:
    config = workdir / "kong.yml"
    config.write_text(KONG_YML.format(port=upstream_port, path=PATH))
    port, status_port, admin_port = free_port(), free_port(), free_port()
    cmd = [
        sys.executable,
        "-m",
        "fastkong",
        "start",
        "-c",
        str(config),
        "--proxy-listen",
        f"127.0.0.1:{port}",
        "--status-listen",
        f"127.0.0.1:{status_port}",
        "--admin-listen",
        f"127.0.0.1:{admin_port}",
        "--workers",
        "1",
    ]
    return spawn("fastkong", cmd, workdir, cwd=ROOT), port, status_port


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with _HTTP.open(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


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
            status, _ = http_get(url, timeout=1.0)
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


def check_leg(name: str, url: str) -> None:
    """One request through the leg before any load: 200 and the upstream's exact body."""
    try:
        status, body = http_get(url)
    except OSError as exc:
        raise BenchError(f"{name}: GET {url} failed: {exc}") from exc
    if status != 200 or body != BODY:
        raise BenchError(f"{name}: GET {url} answered {status} {body[:200]!r}, want 200 {BODY!r}")


# --- /proc ----------------------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str]:
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()


def _start_time(pid: int) -> int | None:
    """When ``pid`` started (clock ticks after boot); None once it is gone or a zombie."""
    try:
        fields = _stat_fields(pid)
    except (OSError, ValueError):
        return None
    return None if fields[0] in "ZX" else int(fields[19])


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError):
                children.setdefault(int(_stat_fields(int(entry.name))[1]), []).append(
                    int(entry.name)
                )
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


# --- wrk ------------------------------------------------------------------------------------------

_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_NUM_UNIT = r"([\d.]+)(us|ms|s|m|h)"


@dataclass
class WrkResult:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    non_2xx: int = 0  # wrk counts status >= 400 here ("Non-2xx or 3xx responses")
    socket_errors: dict[str, int] = field(default_factory=dict)

    @property
    def errors(self) -> int:
        return self.non_2xx + sum(self.socket_errors.values())

    def describe_errors(self) -> str:
        parts = [f"non-2xx/3xx {self.non_2xx}"] if self.non_2xx else []
        parts += [f"{k} {v}" for k, v in self.socket_errors.items() if v]
        return ", ".join(parts)


def parse_wrk(text: str) -> WrkResult:
    """Numbers from ``wrk --latency`` output; BenchError if any of the required ones is missing."""

    def need(pattern: str) -> re.Match[str]:
        m = re.search(pattern, text, re.MULTILINE)
        if m is None:
            raise BenchError(f"wrk output has no match for {pattern!r}:\n{text}")
        return m

    total = need(rf"^\s*(\d+) requests in {_NUM_UNIT}")
    p50 = need(rf"^\s*50(?:\.000)?%\s+{_NUM_UNIT}\s*$")
    p99 = need(rf"^\s*99(?:\.000)?%\s+{_NUM_UNIT}\s*$")
    result = WrkResult(
        requests=int(total.group(1)),
        seconds=float(total.group(2)) * _UNIT_MS[total.group(3)] / 1000.0,
        rps=float(need(r"^Requests/sec:\s+([\d.]+)").group(1)),
        p50_ms=float(p50.group(1)) * _UNIT_MS[p50.group(2)],
        p99_ms=float(p99.group(1)) * _UNIT_MS[p99.group(2)],
    )
    if m := re.search(r"Non-2xx or 3xx responses: (\d+)", text):
        result.non_2xx = int(m.group(1))
    if m := re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    ):
        result.socket_errors = dict(
            zip(("connect", "read", "write", "timeout"), map(int, m.groups()), strict=True)
        )
    return result


def run_wrk(wrk: str, url: str, duration: int, connections: int, threads: int) -> str:
    cmd = [wrk, f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency", url]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"wrk did not finish: {shlex.join(cmd)}") from exc
    if done.returncode != 0:
        raise BenchError(f"wrk exited with {done.returncode}: {shlex.join(cmd)}\n{done.stderr}")
    return f"$ {shlex.join(cmd)}\n{done.stdout}{done.stderr}"


# --- one leg, many rounds -----------------------------------------------------------------------


@dataclass
class Leg:
    """A target under load: its URL and the server whose process tree is charged for it."""

    name: str
    url: str
    server: Server
    samples: list[WrkResult] = field(default_factory=list)
    cpu_seconds: float = 0.0
    rss_kb: int = 0
    foreign: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def measure(
        self,
        wrk: str,
        args: argparse.Namespace,
        raw: Path,
        round_no: int,
        servers: Sequence[Server],
    ) -> WrkResult:
        """Warm up, then one measured wrk run; ``servers`` are all the processes we started, so
        that CPU used by anything else on the machine during the run can be told apart."""
        if args.warmup > 0:
            run_wrk(wrk, self.url, args.warmup, args.connections, args.threads)
        ours = {os.getpid(), *(pid for server in servers for pid in server.tree())}
        others, before = other_ticks(ours), cpu_ticks(self.server.tree())
        start = time.monotonic()
        text = run_wrk(wrk, self.url, args.duration, args.connections, args.threads)
        elapsed = time.monotonic() - start
        after = cpu_ticks(self.server.tree())
        # wrk ran and was reaped by this process, which is in ``ours``: not counted as foreign.
        foreign = sum(t - others.get(pid, 0) for pid, t in other_ticks(ours).items())
        # A reaped child brings its whole lifetime along: cap at what the machine can run.
        foreign = min(foreign / (CLK_TCK * elapsed), float(os.cpu_count() or 1))
        self.foreign.append(foreign)
        if foreign > FOREIGN_LIMIT:
            self.notes.append(
                f"round {round_no}: other processes used {foreign:.2f} cores during the run "
                "(the machine was not quiet; its numbers are suspect)"
            )
        (raw / f"round{round_no}-{self.name}.txt").write_text(text)
        if not self.server.alive():
            raise BenchError(
                f"{self.name}: {self.server.name} died during the run; log:\n"
                + self.server.log_tail()
            )
        if set(before) != set(after):
            self.notes.append(
                f"round {round_no}: process set changed {sorted(before)} -> "
                f"{sorted(after)}; CPU of exited processes is missing"
            )
        self.cpu_seconds += sum(t - before.get(pid, 0) for pid, t in after.items()) / CLK_TCK
        self.rss_kb = max(self.rss_kb, peak_rss_kb(self.server.tree()))
        result = parse_wrk(text)
        self.samples.append(result)
        if result.errors:
            self.notes.append(f"round {round_no}: {result.describe_errors()}")
        return result

    @property
    def rps(self) -> float:
        return statistics.median(s.rps for s in self.samples)

    @property
    def requests(self) -> int:
        return sum(s.requests for s in self.samples)

    @property
    def errors(self) -> int:
        return sum(s.errors for s in self.samples)


def table(legs: Sequence[Leg]) -> list[str]:
    """The Markdown result table: medians over rounds, CPU per 10k requests over all rounds."""
    nginx = next((leg.rps for leg in legs if leg.name == "nginx" and leg.samples), None)
    lines = [
        "| target | req/s | p50 ms | p99 ms | CPU s/10k req | RSS MB | vs nginx | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for leg in legs:
        if not leg.samples:
            continue
        cpu = leg.cpu_seconds / leg.requests * 10_000 if leg.requests else float("nan")
        ratio = f"{leg.rps / nginx:.2f}" if nginx else "-"
        errors = f"**{leg.errors}** (flagged)" if leg.errors else "0"
        lines.append(
            f"| {leg.name} | {leg.rps:.0f} "
            f"| {statistics.median(s.p50_ms for s in leg.samples):.2f} "
            f"| {statistics.median(s.p99_ms for s in leg.samples):.2f} "
            f"| {cpu:.3f} | {leg.rss_kb / 1024:.1f} | {ratio} | {errors} |"
        )
    return lines


def rounds_table(legs: Sequence[Leg]) -> list[str]:
    n = max(len(leg.samples) for leg in legs)
    lines = [
        "| target | " + " | ".join(f"round {i + 1}" for i in range(n)) + " |",
        "|---|" + "---:|" * n,
    ]
    for leg in legs:
        cells = (f"{s.rps:.0f} ({f:.2f})" for s, f in zip(leg.samples, leg.foreign, strict=True))
        lines.append(f"| {leg.name} | " + " | ".join(cells) + " |")
    return lines


# --- machine --------------------------------------------------------------------------------------


def _output(cmd: Sequence[str]) -> str:
    try:
        done = subprocess.run(list(cmd), capture_output=True, text=True, timeout=20, cwd=ROOT)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (done.stdout + done.stderr).strip()


def machine_info(nginx: str | None, wrk: str) -> list[str]:
    cpu = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    distro = ""
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                distro = line.split("=", 1)[1].strip('"')

    def version(dist: str) -> str:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    nginx_v = re.search(r"nginx/(\S+)", _output([nginx, "-v"])) if nginx else None
    wrk_v = re.search(r"^wrk (\S+)", _output([wrk, "-v"]))
    commit = _output(["git", "rev-parse", "--short", "HEAD"]) or "unknown"
    if _output(["git", "status", "--porcelain", "--untracked-files=no"]):
        commit += " (work tree has uncommitted changes)"
    core = _output(
        [
            sys.executable,
            "-c",
            "import fastkong._core as c, fastkong._core.router as r;"
            "print('compiled' if c.is_compiled(r) else 'pure-Python twins')",
        ]
    ).splitlines()
    return [
        f"- CPU: {cpu}, {os.cpu_count()} cores",
        f"- OS: {distro or platform.system()}, kernel {platform.release()}",
        f"- Python {platform.python_version()}, Granian {version('granian')}, "
        f"uvloop {version('uvloop')}, nginx {nginx_v[1] if nginx_v else '-'}, "
        f"wrk {wrk_v[1] if wrk_v else 'unknown'}",
        f"- fastkong: commit {commit}, core {core[-1] if core else 'unknown'}",
        f"- date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
    ]


# --- main -----------------------------------------------------------------------------------------


def find_tool(name: str) -> str | None:
    # nginx lives in /usr/sbin, which is not on every user's PATH.
    return shutil.which(name) or shutil.which(name, path="/usr/local/sbin:/usr/sbin:/sbin")


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench/run",
        description="Benchmark fastkong against nginx (reverse proxy) and the bare upstream.",
    )
    p.add_argument("--duration", type=int, default=5, help="seconds per measured run (5)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (3)")
    p.add_argument("--connections", type=int, default=50, help="wrk -c (50)")
    p.add_argument("--threads", type=int, default=1, help="wrk -t (1)")
    p.add_argument("--warmup", type=int, default=1, help="unmeasured seconds before each run (1)")
    p.add_argument(
        "--targets",
        default=",".join(LEGS),
        help="comma-separated subset of direct,nginx,fastkong (all)",
    )
    p.add_argument("--quick", action="store_true", help="--duration 3 --rounds 2")
    p.add_argument(
        "--smoke",
        action="store_true",
        help="1 s, 1 round, no warmup, direct + fastkong (+ nginx if installed); "
        "exit 1 unless every leg answered 2xx with numbers; writes no results",
    )
    p.add_argument("--results", type=Path, default=RESULTS, help="results directory")
    args = p.parse_args(argv)
    if args.quick:
        args.duration, args.rounds = 3, 2
    if args.smoke:
        args.duration, args.rounds, args.warmup = 1, 1, 0
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    if unknown := set(args.targets) - set(LEGS):
        p.error(f"unknown target(s) {', '.join(sorted(unknown))}; choose from {', '.join(LEGS)}")
    if min(args.duration, args.rounds, args.connections, args.threads) < 1 or args.warmup < 0:
        p.error("--duration, --rounds, --connections, --threads must be >= 1, --warmup >= 0")
    return args


def start_legs(
    args: argparse.Namespace, nginx: str | None, workdir: Path, stack: contextlib.ExitStack
) -> tuple[list[Leg], list[Server]]:
    """Start the upstream and the proxies; return the legs to measure and every server started."""
    upstream_port = free_port()
    if nginx:
        upstream = start_nginx(nginx, "upstream", "upstream.conf", workdir, port=upstream_port)
    else:  # only in --smoke: the bundled asyncio echo upstream stands in
        upstream = start_echo(workdir, upstream_port)
    stack.callback(upstream.stop)
    wait_ready(upstream, f"http://127.0.0.1:{upstream_port}{PATH}")
    legs = {"direct": Leg("direct", f"http://127.0.0.1:{upstream_port}{PATH}", upstream)}

    if "nginx" in args.targets and nginx:
        port = free_port()
        proxy = start_nginx(
            nginx, "nginx-proxy", "proxy.conf", workdir, port=port, upstream_port=upstream_port
        )
        stack.callback(proxy.stop)
        legs["nginx"] = Leg("nginx", f"http://127.0.0.1:{port}{PATH}", proxy)
        wait_ready(proxy, legs["nginx"].url)

    if "fastkong" in args.targets:
        gateway, port, status_port = start_fastkong(workdir, upstream_port)
        stack.callback(gateway.stop)
        try:
            wait_ready(gateway, f"http://127.0.0.1:{status_port}/status/ready")
        except BenchError as exc:
            raise BenchError(
                f"{exc}\n(`bench/run --targets direct,nginx` runs without it)"
            ) from None
        legs["fastkong"] = Leg("fastkong", f"http://127.0.0.1:{port}{PATH}", gateway)
        wait_ready(gateway, legs["fastkong"].url, timeout=10.0)  # ready, and the proxy port too

    chosen = [legs[name] for name in LEGS if name in legs and name in args.targets]
    for leg in chosen:
        check_leg(leg.name, leg.url)
    return chosen, [leg.server for leg in legs.values()]


def bench(args: argparse.Namespace, nginx: str | None, wrk: str, workdir: Path) -> int:
    raw = workdir / "raw"
    if not args.smoke:
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        raw = args.results / "raw" / stamp
    raw.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()

    with contextlib.ExitStack() as stack:
        legs, servers = start_legs(args, nginx, workdir, stack)
        print(
            f"bench: {', '.join(leg.name for leg in legs)}; {args.rounds} round(s) of "
            f"{args.duration}s, wrk -t{args.threads} -c{args.connections}, warmup {args.warmup}s",
            flush=True,
        )
        for round_no in range(1, args.rounds + 1):
            for leg in legs:
                r = leg.measure(wrk, args, raw, round_no, servers)
                flag = f"  ERRORS: {r.describe_errors()}" if r.errors else ""
                print(
                    f"  round {round_no} {leg.name:>8}: {r.rps:9.0f} req/s  "
                    f"p50 {r.p50_ms:6.2f} ms  p99 {r.p99_ms:6.2f} ms  "
                    f"other load {leg.foreign[-1]:.2f} cores{flag}",
                    flush=True,
                )

    lines = table(legs)
    notes = [f"- {leg.name}: {note}" for leg in legs for note in leg.notes]
    print()
    print("\n".join(lines))
    if notes:
        print("\nflagged:\n" + "\n".join(notes))
    failed = [leg.name for leg in legs if leg.errors or not leg.samples or leg.rps <= 0]

    if args.smoke:
        print(f"\nsmoke: {'FAILED: ' + ', '.join(failed) if failed else 'ok'}")
        return 1 if failed else 0

    command = "bench/run" + (" " + shlex.join(sys.argv[1:]) if sys.argv[1:] else "")
    report = [
        "# fastkong end-to-end benchmark: latest results",
        "",
        *lines,
        "",
        "req/s by round (interleaved; the spread is the noise), and in parentheses the CPU that "
        "other processes on the machine used during that run, in cores:",
        "",
        *rounds_table(legs),
        "",
        "Flagged:" if notes else "No errors: wrk saw no status >= 400 and no socket errors.",
        *notes,
        "",
        "## Machine",
        "",
        *machine_info(nginx, wrk),
        "",
        "## Command",
        "",
        f"`{command}`: {args.rounds} round(s) x {args.duration} s per target, "
        f"`wrk -t{args.threads} -c{args.connections} -d{args.duration}s --latency`, "
        f"{args.warmup} s warmup per run, {time.monotonic() - started:.0f} s wall time. "
        f"Raw wrk output: `{raw.relative_to(ROOT) if raw.is_relative_to(ROOT) else raw}/`.",
        "",
    ]
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "latest.md").write_text("\n".join(report))
    print(f"\nwrote {args.results / 'latest.md'}; raw wrk output in {raw}")
    if failed:
        print(f"bench: runs with errors: {', '.join(failed)} (see flagged above)", file=sys.stderr)
        return 1
    return 0


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)  # the same clean way out as Ctrl-C


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    wrk, nginx = find_tool("wrk"), find_tool("nginx")
    missing = [name for name, path in (("wrk", wrk), ("nginx", nginx)) if path is None]
    if args.smoke:  # the smoke test runs without nginx; the echo upstream stands in
        missing = [name for name in missing if name != "nginx"]
    if missing:
        for name in missing:
            print(
                f"bench: {name} is not installed (install: {INSTALL_HINT[name]})", file=sys.stderr
            )
        return 2
    assert wrk is not None
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with it ignored
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    workdir = Path(tempfile.mkdtemp(prefix="fastkong-bench-"))
    try:
        status = bench(args, nginx, wrk, workdir)
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        print(f"bench: configs and logs kept in {workdir}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted; servers stopped", file=sys.stderr)
        status = 130
    shutil.rmtree(workdir, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
