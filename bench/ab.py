"""Two (or more) fastkong checkouts side by side: ``python bench/ab.py BASE NEW``.

``bench/run`` compares fastkong with its peers; this compares fastkong with itself, to judge a
change. Each checkout (a directory with its extensions built, e.g. ``git worktree add /tmp/base
<rev> && cd /tmp/base && python setup.py build_ext --inplace``) serves the benchmark's plain
route from one worker, in front of one nginx upstream; wrk (``-t1 -c50``) loads them in turn,
round after round, so that the host's drifts land on all of them. Per run it records req/s and
the CPU time of the checkout's process tree per request (supervisor, Granian master and worker):
the second figure moves less with the host's pace than the first. The table gives each
checkout's medians and, against the first, the ratio and how many rounds went its way.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import peers  # noqa: E402
from harness.procs import BenchError, cpu_ticks  # noqa: E402
from harness.wrk import Load, parse_wrk, run_wrk  # noqa: E402

_TICK = os.sysconf("SC_CLK_TCK")


def measure(
    wrk: str, run: peers.Running, duration: int, path: str, load: Load
) -> tuple[float, float]:
    """One loaded run: req/s and CPU microseconds per request of ``run``'s process tree."""
    run_wrk(wrk, run.url(path), 1, 50, 1, load)  # warmup, not measured
    tree = run.server.tree()
    before = sum(cpu_ticks(tree).values())
    result = parse_wrk(run_wrk(wrk, run.url(path), duration, 50, 1, load))
    spent = sum(cpu_ticks(tree).values()) - before
    return result.rps, spent / _TICK / max(result.requests, 1) * 1e6


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("trees", nargs="+", type=Path, help="fastkong checkouts; the first is the base")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--duration", type=int, default=5, help="seconds per run")
    p.add_argument("--path", default="/static", help="the route loaded (/static, /1k, /auth...)")
    args = p.parse_args(argv)
    tools = peers.find_tools()
    if not tools.get("nginx") or not tools.get("wrk"):
        print("bench/ab.py needs nginx and wrk (apt-get install -y nginx wrk)", file=sys.stderr)
        return 2
    wrk = str(tools["wrk"])
    trees = [tree.resolve() for tree in args.trees]
    results: dict[Path, list[tuple[float, float]]] = {tree: [] for tree in trees}
    with tempfile.TemporaryDirectory(prefix="fastkong-ab-") as tmp, contextlib.ExitStack() as stack:
        fleet = peers.Fleet(tools, Path(tmp), stack)
        fleet.upstream()
        auth = args.path == "/auth"
        runs = {tree: fleet.fastkong(1, auth=auth, root=tree) for tree in trees}
        try:
            fleet.wait()
        except BenchError as exc:
            print(f"bench/ab.py: {exc}", file=sys.stderr)
            return 1
        load = Load(("apikey: " + peers.API_KEY,) if auth else ())
        for n in range(1, args.rounds + 1):
            for tree, run in runs.items():
                rps, cpu = measure(wrk, run, args.duration, args.path, load)
                results[tree].append((rps, cpu))
                print(f"round {n}  {tree}: {rps:9.0f} req/s  {cpu:6.1f} us CPU/req", flush=True)
    print()
    print("| checkout | req/s (median) | CPU us/req (median) | req/s vs first | rounds faster |")
    print("|---|---:|---:|---:|---:|")
    base = results[trees[0]]
    for tree in trees:
        rows = results[tree]
        rps = statistics.median(r for r, _ in rows)
        cpu = statistics.median(c for _, c in rows)
        ratio = rps / statistics.median(r for r, _ in base)
        wins = sum(mine[0] > theirs[0] for mine, theirs in zip(rows, base, strict=True))
        won = "-" if tree == trees[0] else f"{wins}/{len(rows)}"
        print(f"| {tree} | {rps:.0f} | {cpu:.1f} | {ratio:.2f} | {won} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
