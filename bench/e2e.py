"""End-to-end proxy benchmark: fastkong against nginx, HAProxy, Caddy and a plain aiohttp proxy,
all in front of the same nginx upstream, over several scenarios.

``bench/run`` is the command; this module is what it runs; bench/README.md has the method. Every
server listens on a free 127.0.0.1 port with the scenario's worker count. A *leg* is one target
in one scenario (say fastkong with 10,000 routes); one *round* measures every leg once, in a fixed
order, and the rounds repeat, so slow drift in the machine hits every leg alike. A measured run
is ``wrk -t1 -c50`` (closed loop) after a short unmeasured warmup of the same leg. After the
rounds, the fixed-rate phase sends each plain-route leg half of its own peak and records the
latency. CPU time comes from ``/proc/<pid>/stat`` (the leg's server tree), peak memory from
``VmHWM`` (reset before each run).

The script never installs anything: a missing tool is named with the command that installs it,
and the legs that need it are left out (nginx and wrk are required, except in ``--smoke``).
Every process it starts is stopped by its pid on the way out (also on Ctrl-C, SIGTERM, errors),
and dies with the script if the script itself is killed (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness import peers, report
from harness.procs import (
    CLK_TCK,
    BenchError,
    Server,
    children_map,
    cpu_ticks,
    http_get,
    other_ticks,
    peak_rss_kb,
    reset_peak_rss,
)
from harness.wrk import Load, WrkResult, parse_wrk, run_wrk

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"

TARGETS = ("direct", "nginx", "haproxy", "caddy", "aiohttp", "floor", "floor-asgi", "fastkong")
# The floors (bench/floor_proxy.py, over RSGI and over ASGI) are plain-route-only measuring
# sticks, not proxies to compare.
PROXIES = tuple(t for t in TARGETS[1:] if not t.startswith("floor"))
# fastkong with Granian's own TLS (--ssl-termination granian): the tls scenario only.
GRANIAN_TLS = "fastkong-granian-tls"
CHOICES = (*TARGETS, GRANIAN_TLS)
# The tool each target needs (fastkong needs none beyond this checkout).
NEEDS = {"nginx": "nginx", "haproxy": "haproxy", "caddy": "caddy", "aiohttp": "aiohttp"}
# Other processes using more than this share of a core during a measured run flag the run.
FOREIGN_LIMIT = 0.15
FIXED_SHARE = 0.5  # the fixed-rate runs send this share of each target's own peak


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    targets: tuple[str, ...]
    workers: int = 1
    path: str = "/static"
    routes: int = 0
    plugins: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()  # tools beyond the targets' own
    tls: bool = (
        False  # the proxies terminate TLS (wrk keeps its connections: records, not handshakes)
    )


SCENARIOS = (
    Scenario("plain", "plain route, 1 worker", TARGETS),
    Scenario("1kb", "1 KB response", PROXIES, path="/1k"),
    Scenario("100kb", "100 KB response", PROXIES, path="/100k"),
    Scenario("2workers", "plain route, 2 workers each", PROXIES, workers=2),
    Scenario("tls", "plain route over TLS, 1 worker", ("nginx", "fastkong", GRANIAN_TLS), tls=True),
    Scenario(
        "tls2",
        "plain route over TLS, 2 workers each",
        ("nginx", "fastkong", GRANIAN_TLS),
        workers=2,
        tls=True,
    ),
    Scenario(
        "routes100", "100 routes, requests spread over all", ("nginx", "fastkong"), routes=100
    ),
    Scenario(
        "routes10k", "10,000 routes, requests spread over all", ("nginx", "fastkong"), routes=10_000
    ),
    Scenario(
        "auth-rl",
        "key-auth + rate-limiting (local)",
        ("fastkong",),
        path="/auth",
        plugins=("key-auth", "rate-limiting"),
    ),
    Scenario(
        "rl-redis",
        "rate-limiting (redis)",
        ("fastkong",),
        path="/rl-redis",
        plugins=("rate-limiting",),
        needs=("redis-server",),
    ),
)
FIXED = "fixed-rate"  # the phase after the rounds; selectable like a scenario
SMOKE_SCENARIOS = ("plain", "auth-rl", FIXED)


@dataclass
class Leg:
    """One target in one scenario: its URL, what wrk sends, and the numbers of its runs."""

    scenario: Scenario
    target: str
    url: str
    load: Load
    charged: list[Server]  # the process trees whose CPU and memory count for this leg
    body: bytes
    rate: float = 0.0  # fixed-rate legs: the requests/s sent
    samples: list[WrkResult] = field(default_factory=list)
    cpu_seconds: float = 0.0
    rss_kb: int = 0
    foreign: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.scenario.name} {self.target}"

    def pids(self, children: dict[int, list[int]] | None = None) -> list[int]:
        children = children_map() if children is None else children
        return [pid for server in self.charged for pid in server.tree(children)]

    def measure(
        self,
        wrk: str,
        args: argparse.Namespace,
        raw: Path,
        round_no: int,
        servers: Sequence[Server],
        warmup: int,
    ) -> WrkResult:
        """Warm up, then one measured wrk run; ``servers`` are all the processes we started, so
        that CPU used by anything else on the machine during the run can be told apart."""
        reset_peak_rss(self.pids())
        if warmup > 0:
            run_wrk(wrk, self.url, warmup, args.connections, args.threads, self.load)
        children = children_map()
        ours = {os.getpid(), *(pid for server in servers for pid in server.tree(children))}
        pids = self.pids(children)
        others, before = other_ticks(ours), cpu_ticks(pids)
        start = time.monotonic()
        text = run_wrk(wrk, self.url, args.duration, args.connections, args.threads, self.load)
        elapsed = time.monotonic() - start
        after = cpu_ticks(pids)
        # wrk ran and was reaped by this process, which is in ``ours``: not counted as foreign.
        foreign = sum(t - others.get(pid, 0) for pid, t in other_ticks(ours).items())
        # A reaped child brings its whole lifetime along: cap at what the machine can run.
        foreign = min(foreign / (CLK_TCK * elapsed), float(os.cpu_count() or 1))
        self.foreign.append(foreign)
        if foreign > FOREIGN_LIMIT:
            self.notes.append(f"round {round_no}: other processes used {foreign:.2f} cores")
        name = f"round{round_no}-{self.scenario.name}-{self.target}.txt"
        (raw / name).write_text(text)
        for server in self.charged:
            if not server.alive():
                raise BenchError(
                    f"{self.label}: {server.name} died during the run; log:\n" + server.log_tail()
                )
        if set(before) != set(after):
            self.notes.append(
                f"round {round_no}: process set changed {sorted(before)} -> "
                f"{sorted(after)}; CPU of exited processes is missing"
            )
        self.cpu_seconds += sum(t - before.get(pid, 0) for pid, t in after.items()) / CLK_TCK
        self.rss_kb = max(self.rss_kb, peak_rss_kb(self.pids()))
        result = parse_wrk(text)
        self.samples.append(result)
        if result.errors:
            self.notes.append(f"round {round_no}: {result.describe_errors()}")
        return result

    def median(self, attr: str) -> float:
        return statistics.median(getattr(s, attr) for s in self.samples)

    @property
    def rps(self) -> float:
        return self.median("rps")

    @property
    def requests(self) -> int:
        return sum(s.requests for s in self.samples)

    @property
    def errors(self) -> int:
        return sum(s.errors for s in self.samples)

    @property
    def cpu_per_10k(self) -> float:
        return self.cpu_seconds / self.requests * 10_000 if self.requests else float("nan")

    @property
    def flagged(self) -> int:
        return sum(f > FOREIGN_LIMIT for f in self.foreign)


# --- setting up -------------------------------------------------------------------------------


def fastkong_plugins() -> set[str]:
    """The plugins this checkout's fastkong has (others are still being written)."""
    code = "import fastkong.plugins as p; print(' '.join(p.names()))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    return set(done.stdout.split()) if done.returncode == 0 else set()


def choose(
    args: argparse.Namespace, tools: dict[str, str | None]
) -> tuple[list[Scenario], list[str], list[str]]:
    """The scenarios and targets that can run here, and a note for each one left out."""
    left_out: list[str] = []
    targets = []
    for target in args.targets:
        tool = NEEDS.get(target)
        if tool and not tools.get(tool):
            left_out.append(
                f"{target}: {tool} is not installed (install: {peers.INSTALL_HINT[tool]}); "
                "its legs are left out"
            )
        else:
            targets.append(target)
    have = fastkong_plugins() if "fastkong" in targets else set()
    scenarios = []
    for scenario in SCENARIOS:
        if scenario.name not in args.scenarios:
            continue
        if missing := [p for p in scenario.plugins if p not in have]:
            left_out.append(
                f"scenario {scenario.name}: fastkong has no {', '.join(missing)} plugin here "
                "(not in fastkong.plugins.names()); left out"
            )
            continue
        if missing := [t for t in scenario.needs if not tools.get(t)]:
            hints = "; ".join(peers.INSTALL_HINT[t] for t in missing)
            left_out.append(
                f"scenario {scenario.name}: {', '.join(missing)} is not installed "
                f"(install: {hints}); left out"
            )
            continue
        if not tools.get("nginx") and (scenario.path != "/static" or scenario.routes):
            continue  # the echo upstream (smoke without nginx) serves /static only
        scenarios.append(scenario)
    return scenarios, targets, left_out


def build_legs(
    scenarios: Sequence[Scenario], targets: Sequence[str], fleet: peers.Fleet
) -> list[Leg]:
    """Start every server the legs need (each once), and describe the legs."""
    upstream = fleet.upstream()
    auth = any(s.name == "auth-rl" for s in scenarios)
    redis = any(s.name == "rl-redis" for s in scenarios)
    legs = []
    for scenario in scenarios:
        load = Load()
        if scenario.routes:
            paths = fleet.workdir / f"paths-{scenario.routes}.txt"
            paths.write_text("\n".join(peers.route_paths(scenario.routes)) + "\n")
            load = load.with_env(WRK_PATHS_FILE=str(paths))
        if scenario.name == "auth-rl":
            load = Load(headers=(f"apikey: {peers.API_KEY}",))
        for target in scenario.targets:
            if target not in targets:
                continue
            w, n = scenario.workers, scenario.routes
            if target == "direct":
                run = upstream
            elif target == "fastkong" and scenario.tls:
                run = fleet.fastkong(w, n, tls=True)
            elif target == GRANIAN_TLS:
                run = fleet.fastkong(w, n, tls=True, ssl_termination="granian")
            elif target == "fastkong":
                run = fleet.fastkong(w, n, auth=auth and not n and w == 1, redis=redis and w == 1)
            elif target == "nginx":
                run = fleet.nginx(w, n, tls=scenario.tls)
            elif target == "floor-asgi":
                run = fleet.floor(w, interface="asgi")
            else:
                run = getattr(fleet, target)(w)
            charged = [run.server]
            if scenario.name == "rl-redis" and fleet.redis_server:
                charged.append(fleet.redis_server)
            body = (
                peers.sized_body(peers.SIZES[scenario.path])
                if scenario.path in peers.SIZES
                else peers.BODY
            )
            legs.append(Leg(scenario, target, run.url(scenario.path), load, charged, body))
    fleet.wait()
    return legs


def check_leg(leg: Leg) -> None:
    """Requests through the leg before any load: 200 and the upstream's exact body (and, for
    the plugin scenarios, proof that the plugins run)."""
    url = leg.url
    headers = dict(h.split(": ", 1) for h in leg.load.headers)
    try:
        paths = dict(leg.load.env).get("WRK_PATHS_FILE")
        urls = [url]
        if paths:  # the first and the last route
            listed = Path(paths).read_text().split()
            base = url.split("/", 3)
            urls = [f"{base[0]}//{base[2]}{p}" for p in (listed[0], listed[-1])]
        for u in urls:
            status, got, body = http_get(u, headers=headers)
            if status != 200 or body != leg.body:
                raise BenchError(
                    f"{leg.label}: GET {u} answered {status} {body[:200]!r}, "
                    f"want 200 and {len(leg.body)} bytes starting {leg.body[:40]!r}"
                )
            if leg.scenario.name in ("auth-rl", "rl-redis"):
                if "x-ratelimit-limit-minute" not in got:
                    raise BenchError(f"{leg.label}: no X-RateLimit-Limit-Minute in {got}")
        if leg.scenario.name == "auth-rl":
            status, _, _ = http_get(url)
            if status != 401:
                raise BenchError(f"{leg.label}: GET {url} without a key answered {status}, not 401")
    except OSError as exc:
        raise BenchError(f"{leg.label}: GET {url} failed: {exc}") from exc


# --- running ------------------------------------------------------------------------------------


def progress(leg: Leg, round_no: int, r: WrkResult) -> None:
    flag = f"  ERRORS: {r.describe_errors()}" if r.errors else ""
    rate = f" @{leg.rate:.0f}/s" if leg.rate else ""
    print(
        f"  round {round_no} {leg.scenario.name:>10} {leg.target:>8}{rate}: {r.rps:8.0f} req/s  "
        f"p50 {r.p50_ms:6.2f}  p99 {r.p99_ms:7.2f}  p99.9 {r.p999_ms:7.2f} ms  "
        f"other load {leg.foreign[-1]:.2f}{flag}",
        flush=True,
    )


def fixed_legs(legs: Sequence[Leg]) -> list[Leg]:
    """One fixed-rate leg per plain-route leg: half of its own median peak."""
    out = []
    for leg in legs:
        if leg.scenario.name == "plain" and leg.samples and leg.rps > 0:
            rate = max(1.0, round(leg.rps * FIXED_SHARE))
            scenario = Scenario(FIXED, f"fixed rate, {FIXED_SHARE:.0%} of each peak", ())
            load = leg.load.with_env(WRK_RATE=f"{rate:.0f}")
            out.append(Leg(scenario, leg.target, leg.url, load, leg.charged, leg.body, rate))
    return out


def bench(args: argparse.Namespace, tools: dict[str, str | None], workdir: Path) -> int:
    wrk = str(tools["wrk"])
    raw = workdir / "raw"
    if not args.smoke:
        raw = args.results / "raw" / dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    raw.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    scenarios, targets, left_out = choose(args, tools)
    for note in left_out:
        print(f"bench: {note}", file=sys.stderr)
    if not scenarios:
        raise BenchError("no scenario can run here (see above)")

    with contextlib.ExitStack() as stack:
        fleet = peers.Fleet(tools, workdir, stack)
        legs = build_legs(scenarios, targets, fleet)
        if not legs:
            raise BenchError("none of the chosen targets runs in the chosen scenarios")
        for leg in legs:
            check_leg(leg)
        servers = fleet.servers()
        runs = len(legs) * args.rounds
        fixed = FIXED in args.scenarios
        per_run = args.duration + args.warmup
        estimate = runs * per_run - (args.rounds - 1) * len(legs) * args.warmup * args.warmup_once
        print(
            f"bench: {len(legs)} legs in {len(scenarios)} scenarios, {args.rounds} round(s) of "
            f"{args.duration}s, wrk -t{args.threads} -c{args.connections}, warmup "
            f"{args.warmup}s{' (first round only)' if args.warmup_once else ''}; about "
            f"{estimate / 60:.1f} min before the fixed-rate runs",
            flush=True,
        )
        for round_no in range(1, args.rounds + 1):
            warmup = 0 if args.warmup_once and round_no > 1 else args.warmup
            for leg in legs:
                progress(leg, round_no, leg.measure(wrk, args, raw, round_no, servers, warmup))
        fixed_rate: list[Leg] = []
        if fixed:
            fixed_rate = fixed_legs(legs)
            # --quick: the servers are warm by now; the paced run needs no warmup of its own.
            warm = 0 if args.warmup_once else args.warmup
            for round_no in range(1, args.fixed_rounds + 1):
                for leg in fixed_rate:
                    r = leg.measure(wrk, args, raw, round_no, servers, warm)
                    progress(leg, round_no, r)

    wall = time.monotonic() - started
    lines = report.summary(legs, fixed_rate, FOREIGN_LIMIT)
    print("\n" + "\n".join(lines))
    failed = [leg.label for leg in (*legs, *fixed_rate) if leg.errors or leg.rps <= 0]
    if args.smoke:
        print(f"\nsmoke: {'FAILED: ' + ', '.join(failed) if failed else 'ok'}")
        return 1 if failed else 0

    command = "bench/run" + (" " + shlex.join(sys.argv[1:]) if sys.argv[1:] else "")
    method = (
        f"`{command}`: {args.rounds} round(s) x {args.duration} s per leg, `wrk -t{args.threads} "
        f"-c{args.connections} -d{args.duration}s` with bench/loadtest/wrk/gateway.lua, "
        f"{args.warmup} s warmup {'before the first round' if args.warmup_once else 'per run'}; "
        f"fixed-rate: {args.fixed_rounds} round(s) at {FIXED_SHARE:.0%} of each plain-route "
        f"peak; {wall / 60:.1f} min wall time. Raw wrk output: "
        f"`{raw.relative_to(ROOT) if raw.is_relative_to(ROOT) else raw}/`."
    )
    args.results.mkdir(parents=True, exist_ok=True)
    plots = report.plots(legs, fixed_rate, args.results) if tools.get("matplotlib") else []
    if not tools.get("matplotlib"):
        print(f"bench: matplotlib is not installed ({peers.INSTALL_HINT['matplotlib']}): no plots")
    text = report.markdown(legs, fixed_rate, FOREIGN_LIMIT, left_out, plots, tools, method)
    (args.results / "latest.md").write_text(text)
    print(f"\nwrote {args.results / 'latest.md'}{' and plots' if plots else ''}; raw in {raw}")
    if failed:
        print(f"bench: legs with errors: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


# --- main -----------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    names = [s.name for s in SCENARIOS] + [FIXED]
    p = argparse.ArgumentParser(
        prog="bench/run",
        description="Benchmark fastkong against nginx, HAProxy, Caddy and a Python proxy.",
    )
    p.add_argument("--duration", type=int, default=5, help="seconds per measured run (5)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (3)")
    p.add_argument("--fixed-rounds", type=int, default=2, help="rounds of fixed-rate runs (2)")
    p.add_argument("--connections", type=int, default=50, help="wrk -c (50)")
    p.add_argument("--threads", type=int, default=1, help="wrk -t (1)")
    p.add_argument("--warmup", type=int, default=1, help="unmeasured seconds before a run (1)")
    p.add_argument(
        "--targets",
        default=",".join(CHOICES),
        help=f"comma-separated subset of {','.join(CHOICES)}",
    )
    p.add_argument(
        "--scenarios", default=",".join(names), help=f"comma-separated subset of {','.join(names)}"
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="--rounds 2 --duration 3 --fixed-rounds 1, warmup in the first round only "
        "(and none before the fixed-rate runs)",
    )
    p.add_argument(
        "--smoke",
        action="store_true",
        help="1 round of 1 s, no warmup, scenarios plain, auth-rl, fixed-rate, only the "
        "targets installed; exit 1 unless every leg answered 2xx with numbers; writes nothing",
    )
    p.add_argument("--results", type=Path, default=RESULTS, help="results directory")
    args = p.parse_args(argv)
    args.warmup_once = False
    if args.quick:
        args.duration, args.rounds, args.fixed_rounds, args.warmup_once = 3, 2, 1, True
    if args.smoke:
        args.duration, args.rounds, args.fixed_rounds, args.warmup = 1, 1, 1, 0
        if args.scenarios == ",".join(names):
            args.scenarios = ",".join(SMOKE_SCENARIOS)
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    if unknown := set(args.targets) - set(CHOICES):
        p.error(f"unknown target(s) {', '.join(sorted(unknown))}; choose from {', '.join(CHOICES)}")
    if unknown := set(args.scenarios) - set(names):
        p.error(f"unknown scenario(s) {', '.join(sorted(unknown))}; choose from {', '.join(names)}")
    if min(args.duration, args.rounds, args.connections, args.threads, args.fixed_rounds) < 1:
        p.error("--duration, --rounds, --fixed-rounds, --connections, --threads must be >= 1")
    if args.warmup < 0:
        p.error("--warmup must be >= 0")
    return args


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)  # the same clean way out as Ctrl-C


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    tools = peers.find_tools()
    required = ["wrk"] + ([] if args.smoke else ["nginx"])  # smoke: the echo upstream stands in
    if missing := [name for name in required if not tools.get(name)]:
        for name in missing:
            print(
                f"bench: {name} is not installed (install: {peers.INSTALL_HINT[name]})",
                file=sys.stderr,
            )
        return 2
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with it ignored
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    workdir = Path(tempfile.mkdtemp(prefix="fastkong-bench-"))
    try:
        status = bench(args, tools, workdir)
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        print(f"bench: configs and logs kept in {workdir}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted; servers stopped", file=sys.stderr)
        status = 130
    except Exception:
        print(
            f"bench: crashed; servers stopped; configs and logs kept in {workdir}", file=sys.stderr
        )
        raise
    shutil.rmtree(workdir, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
