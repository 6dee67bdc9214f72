"""Profile one fastkong worker under load: a py-spy flame graph and a perf summary.

``bench/profile`` runs this. It starts the benchmark's upstream and fastkong with 1 worker (the
same configs as ``bench/run``), finds the Granian worker process, drives it with wrk, and
records it: ``py-spy record --native`` twice (an SVG flame graph, and collapsed stacks that it
summarises by Python function), then, when ``perf`` is installed, ``perf record -g`` (on-CPU time
by thread and library, kernel included) and ``perf trace -s`` (syscalls per request). Output goes
to ``bench/results/raw/profile-<timestamp>/`` (git-ignored); the summary is printed.

py-spy pauses the worker for every native sample, so the worker serves far fewer requests while
it records: read shares, not speeds. Nothing is installed: a missing tool is named with the
command that installs it. Every process started is stopped by its pid.

Run: ``bench/profile`` (plain route) or ``bench/profile --scenario auth-rl``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from harness import peers
from harness.procs import BenchError, children_map, descendants

ROOT = Path(__file__).resolve().parent.parent
PATHS = {"plain": ("/static", ()), "auth-rl": ("/auth", ("-H", f"apikey: {peers.API_KEY}"))}


def worker_pid(supervisor: int) -> int:
    """The Granian worker: the deepest process under the supervisor."""
    children = children_map()
    found = descendants(supervisor, children)
    leaves = [pid for pid in found if not children.get(pid)]
    if len(leaves) != 1:
        raise BenchError(f"expected one worker under {supervisor}, found {leaves}")
    return leaves[0]


def summarise_stacks(raw: Path, top: int) -> list[str]:
    """Self and inclusive shares of Python functions in py-spy's collapsed stacks, over the
    samples of the request path (stacks that pass through the gateway's ASGI entry)."""
    total = 0
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [re.sub(r":\d+\)", ")", f) for f in stack.split(";")]
        if not any("Gateway.__call__" in f for f in frames):
            continue
        n = int(count)
        total += n
        for frame in set(frames):
            inclusive[frame] += n
        python = [f for f in frames if ".py)" in f]
        own[frames[-1] if not python or frames[-1] == python[-1] else "native: " + frames[-1]] += n
    if not total:
        return ["(no samples on the request path)"]
    lines = [f"{total} samples on the request path", "", "inclusive (fastkong functions):"]
    lines += [
        f"  {n / total:6.1%}  {f}"
        for f, n in inclusive.most_common()
        if "fastkong/" in f and "granian_main" not in f
    ][:top]
    lines += ["", "self (leaf frames):"]
    lines += [f"  {n / total:6.1%}  {f}" for f, n in own.most_common(top)]
    return lines


def run(args: argparse.Namespace, tools: dict[str, str | None], out: Path) -> list[str]:
    path, headers = PATHS[args.scenario]
    workdir = Path(tempfile.mkdtemp(prefix="fastkong-profile-"))
    report: list[str] = []
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, workdir, True)
        fleet = peers.Fleet(tools, workdir, stack)
        fleet.upstream()
        gateway = fleet.fastkong(1, auth=args.scenario == "auth-rl")
        fleet.wait()
        worker = worker_pid(gateway.server.pid)
        perf = shutil.which("perf")
        seconds = 2 * args.duration + (2 * 10 + 2 if perf else 0) + 10
        wrk = subprocess.Popen(
            [str(tools["wrk"]), "-t1", "-c50", f"-d{seconds}s", *headers, gateway.url(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        stack.callback(wrk.wait)
        stack.callback(wrk.kill)  # runs first: stop our wrk by its pid, then reap it
        time.sleep(3)  # warm
        report.append(f"worker pid {worker}; wrk -t1 -c50 on {path}")
        spy = [args.py_spy, "record", "--native", "-r", str(args.rate), "-d", str(args.duration)]
        subprocess.run([*spy, "-p", str(worker), "-o", str(out / "flame.svg")], check=True)
        raw = out / "stacks.txt"
        subprocess.run([*spy, "-p", str(worker), "--format", "raw", "-o", str(raw)], check=True)
        report += ["", "py-spy (wall-clock samples, event-loop thread):", ""]
        report += summarise_stacks(raw, args.top)
        if perf:
            data = out / "perf.data"
            subprocess.run(
                [perf, "record", "-q", "-F", "999", "-g", "-p", str(worker), "-o", str(data)]
                + ["--", "sleep", "10"],
                check=True,
                capture_output=True,
            )
            by = subprocess.run(
                [perf, "report", "-i", str(data), "--no-children", "--sort", "pid,dso"]
                + ["--stdio", "-g", "none"],
                capture_output=True,
                text=True,
            ).stdout
            rows = [ln for ln in by.splitlines() if ln.strip() and not ln.startswith("#")]
            report += ["", "perf (on-CPU, by thread and library):", "", *rows[: args.top]]
            trace = subprocess.run(
                [perf, "trace", "-s", "-p", str(worker), "--", "sleep", "8"],
                capture_output=True,
                text=True,
            )
            text = trace.stdout + trace.stderr
            (out / "syscalls.txt").write_text(text)
            report += ["", "perf trace -s (8 s; one writev per request on the runtime thread):"]
            report += ["", *[ln for ln in text.splitlines() if ln.strip()][:60]]
        else:
            report += ["", "perf is not installed (apt-get install -y linux-perf): no perf summary"]
    return report


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench/profile", description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", choices=sorted(PATHS), default="plain")
    parser.add_argument("--duration", type=int, default=15, help="seconds per py-spy record (15)")
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second (200)")
    parser.add_argument("--top", type=int, default=25, help="lines per summary (25)")
    args = parser.parse_args()
    tools = peers.find_tools()
    args.py_spy = shutil.which("py-spy")
    missing = [
        (name, hint)
        for name, hint in (
            ("wrk", peers.INSTALL_HINT["wrk"]),
            ("nginx", peers.INSTALL_HINT["nginx"]),
            ("py-spy", "pip install py-spy"),
        )
        if not (args.py_spy if name == "py-spy" else tools.get(name))
    ]
    for name, hint in missing:
        print(f"bench/profile: {name} is not installed (install: {hint})", file=sys.stderr)
    if missing:
        return 2
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = ROOT / "bench" / "results" / "raw" / f"profile-{args.scenario}-{stamp}"
    out.mkdir(parents=True, exist_ok=True)
    try:
        report = run(args, tools, out)
    except (BenchError, subprocess.CalledProcessError) as exc:
        print(f"bench/profile: {exc}", file=sys.stderr)
        return 1
    print("\n".join(report))
    (out / "summary.txt").write_text("\n".join(report) + "\n")
    print(f"\nflame graph: {out / 'flame.svg'}; stacks, perf data and this summary in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
