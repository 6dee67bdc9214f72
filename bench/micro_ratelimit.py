"""Micro-benchmark of the rate-limit counter table, compiled kernel vs pure-Python twin.

Method: one table file (under ``/dev/shm`` when it exists, as in production, so the twin pays for
its ``fcntl`` lock as it would), one process, no contention. Each case calls one operation with
the same key and clock over and over (the steady state of a hot client: the counter exists, the
slot's cache line is warm); limits are high enough that every call is admitted and counted. Calls
are timed in batches of ``--batch`` with ``perf_counter_ns`` (so the clock's own cost is spread
over the batch), with the garbage collector off, after a warm-up; the table shows the median and
the 99th percentile of the per-call time over all batches. Both implementations must agree on
every answer of a short seeded run first.

Run: ``python setup.py build_ext --inplace -q && python bench/micro_ratelimit.py``
"""

from __future__ import annotations

import argparse
import gc
import importlib
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

T0 = 1_700_000_040
PERIODS = ("second", "minute", "hour")
BIG = 1 << 50


def cases(t: Any, mod: Any) -> dict[str, Callable[[], object]]:
    key = "ratelimit:0f3a:route-7:203.0.113.9:"
    one = ([key + "minute"], [mod.window_start("minute", T0)], [BIG], [60])
    starts = [mod.window_start(p, T0) for p in PERIODS]
    three = (
        [key + p for p in PERIODS],
        starts,
        [BIG] * 3,
        [mod.window_length(p, s) for p, s in zip(PERIODS, starts, strict=True)],
    )
    hit = t.hit_windows
    return {
        "hit_windows, 1 period": lambda: hit(*one),
        "hit_windows, 3 periods": lambda: hit(*three),
        "token_bucket": lambda: t.token_bucket(key + "tb", T0 * 1000, 1e6, BIG >> 12),
        "sliding_window": lambda: t.sliding_window(key + "sw", T0 * 1000, 60_000, BIG),
    }


def agree(names: list[str], directory: str) -> None:
    """A short run of mixed operations gives the same answers on every implementation."""
    answers = []
    for name in names:
        mod = importlib.import_module(name)
        with mod.CounterTable(os.path.join(directory, f"agree-{name}"), slots=64) as t:
            out = []
            for i in range(3000):
                now = T0 * 1000 + i * 37
                k = f"k{i % 7}"
                starts = [mod.window_start(p, now / 1000) for p in PERIODS]
                out.append(
                    t.hit_windows([k + p for p in PERIODS], starts, [5, 40, 300], [1, 60, 3600])
                )
                out.append(t.token_bucket(k, now, 3.5, 4))
                out.append(t.sliding_window(k, now, 1000, 6))
            out.append((t.used(), t.evictions))
        answers.append(out)
    assert all(a == answers[0] for a in answers), "compiled and twin disagree"


def bench(name: str, directory: str, batches: int, batch: int) -> dict[str, tuple[float, float]]:
    from fastkong._core import is_compiled

    mod = importlib.import_module(name)
    assert (name == "fastkong._core.ratelimit") == is_compiled(mod), mod.__file__
    clock = time.perf_counter_ns
    rows: dict[str, tuple[float, float]] = {}
    with mod.CounterTable(os.path.join(directory, f"bench-{name}")) as t:
        for label, call in cases(t, mod).items():
            for _ in range(batch * 10):  # warm-up: counters exist, caches are hot
                call()
            per_call = []
            gc.disable()
            try:
                for _ in range(batches):
                    t0 = clock()
                    for _ in range(batch):
                        call()
                    per_call.append((clock() - t0) / batch)
            finally:
                gc.enable()
            per_call.sort()
            rows[label] = (statistics.median(per_call), per_call[int(len(per_call) * 0.99)])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--twin-batches", type=int, default=30, help="batches for the twin")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from the checkout
    from fastkong._core import NO_EXTENSIONS

    names = ([] if NO_EXTENSIONS else ["fastkong._core.ratelimit"]) + [
        "fastkong._core._ratelimit_py"
    ]
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryDirectory(prefix="fk-bench-rl-", dir=shm) as directory:
        agree(names, directory)
        results = {
            name: bench(
                name,
                directory,
                args.batches if name.endswith(".ratelimit") else args.twin_batches,
                args.batch,
            )
            for name in names
        }
    import Cython

    print(
        f"python {platform.python_version()}, Cython {Cython.__version__}, {platform.machine()}, "
        f"{os.cpu_count()} CPUs; table under {shm or tempfile.gettempdir()}; "
        f"batches of {args.batch} calls\n"
    )
    impls = ["compiled" if n.endswith(".ratelimit") else "twin" for n in names]
    header = "| case | " + " | ".join(f"{i} median | {i} p99" for i in impls)
    header += " | twin / compiled |" if len(names) == 2 else " |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for label in results[names[0]]:
        cells = []
        for name in names:
            med, p99 = results[name][label]
            cells += [f"{med:.0f} ns", f"{p99:.0f} ns"]
        if len(names) == 2:
            cells.append(f"x{results[names[1]][label][0] / results[names[0]][label][0]:.0f}")
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
