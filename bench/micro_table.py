"""Both micro-benchmarks, compiled kernel against its pure-Python twin, in one table.

``bench/micro`` runs this. It calls the measuring functions of ``bench/micro_router.py`` (router
build and match at 10,000 routes) and ``bench/micro_ratelimit.py`` (the rate-limit counter
table's operations) with their methods unchanged (each file's docstring has it), checks that
both implementations agree, and prints one Markdown table: the compiled figure, the twin's, and
how many times faster the compiled one is. ``--quick`` cuts the number of timed calls.

Run: ``python setup.py build_ext --inplace -q && bench/micro``
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def fmt_ns(ns: float) -> str:
    if ns >= 1e6:
        return f"{ns / 1e6:.1f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} us"
    return f"{ns:.0f} ns"


def router_rows(routes: int, calls: int, seed: int) -> list[tuple[str, str, float, float]]:
    import micro_router

    specs, requests = micro_router.make_routes(routes, random.Random(seed))
    compiled, twin = (
        micro_router.bench(name, specs, requests, calls)
        for name in ("fastkong._core.router", "fastkong._core._router_py")
    )
    assert compiled["impl"] == "compiled", "the router extension is not built"
    assert compiled["results"] == twin["results"], "compiled and twin routers disagree"
    bench = f"router, {routes:,} routes"
    return [
        (bench, "match, median per call", compiled["median"], twin["median"]),
        (bench, "match, p99 per call", compiled["p99"], twin["p99"]),
        (bench, "match, mean in a loop", compiled["loop"], twin["loop"]),
        (
            bench,
            "build, cold (first config)",
            compiled["build_cold"] * 1e9,
            twin["build_cold"] * 1e9,
        ),
        (bench, "build, warm (a reload)", compiled["build_warm"] * 1e9, twin["build_warm"] * 1e9),
    ]


def ratelimit_rows(
    batches: int, twin_batches: int, batch: int
) -> list[tuple[str, str, float, float]]:
    import micro_ratelimit

    names = ["fastkong._core.ratelimit", "fastkong._core._ratelimit_py"]
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryDirectory(prefix="fk-bench-rl-", dir=shm) as directory:
        micro_ratelimit.agree(names, directory)
        compiled = micro_ratelimit.bench(names[0], directory, batches, batch)
        twin = micro_ratelimit.bench(names[1], directory, twin_batches, batch)
    return [
        ("rate-limit counters", f"{label}, median per call", compiled[label][0], twin[label][0])
        for label in compiled
    ]


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench/micro", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer timed calls")
    parser.add_argument("--routes", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))  # run from the checkout
    from fastkong._core import NO_EXTENSIONS

    if NO_EXTENSIONS:
        sys.exit("bench/micro: FASTKONG_NO_EXTENSIONS is set: there is no compiled core to compare")
    calls = 20_000 if args.quick else 100_000
    rows = router_rows(args.routes, calls, args.seed)
    rows += ratelimit_rows(60 if args.quick else 300, 10 if args.quick else 30, 200)
    print(
        f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs; "
        f"router: {calls:,} timed match calls; rate limiter: batches of 200 calls\n"
    )
    print("| benchmark | case | compiled | twin | twin / compiled |")
    print("|---|---|---:|---:|---:|")
    for bench, case, fast, slow in rows:
        print(f"| {bench} | {case} | {fmt_ns(fast)} | {fmt_ns(slow)} | x{slow / fast:.1f} |")


if __name__ == "__main__":
    main()
