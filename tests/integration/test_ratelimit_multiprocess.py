"""Worker processes sharing one counter table admit exactly the limit, as one node must.

Four processes (``spawn``, like Granian's workers: nothing inherited but the file path) wait at a
barrier, then hammer the same table at the same clock. Whatever the interleaving, the totals
must be exact: no lost update, no double insert of a new key, no count for a rejected request.
"""

from __future__ import annotations

import importlib
import multiprocessing as mp
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fastkong._core import NO_EXTENSIONS

COMPILED = "fastkong._core.ratelimit"
TWIN = "fastkong._core._ratelimit_py"
IMPLS = ([pytest.param(COMPILED, id="compiled")] if not NO_EXTENSIONS else []) + [
    pytest.param(TWIN, id="twin")
]
WORKERS = 4
TIMEOUT = 120  # seconds for the whole run; a wedged lock fails instead of hanging
T0 = 1_700_000_040


def one_window(t: Any, worker: int) -> int:
    """3000 attempts per worker at ``minute: 300``."""
    return sum(t.hit_windows(["k:minute"], [T0], [300], [60])[0] for _ in range(3000))


def two_periods(t: Any, worker: int) -> int:
    """``second: 70, minute: 100`` over two seconds: the minute cuts the second second."""
    admitted = 0
    for s in (T0, T0 + 1):
        for _ in range(300):
            ok, _ = t.hit_windows(["m:second", "m:minute"], [s, T0], [70, 100], [1, 60], 1, s)
            admitted += ok
    return admitted


def new_keys(t: Any, worker: int) -> int:
    """Every worker inserts the same 400 new keys, in its own order: each admitted once."""
    keys = [f"new:{i}" for i in range(400)]
    if worker % 2:
        keys.reverse()
    return sum(t.hit_windows([k], [T0], [1], [60])[0] for k in keys)


def token_bucket(t: Any, worker: int) -> int:
    """A bucket of 250 at a frozen clock: 250 tokens, no more."""
    return sum(t.token_bucket("tb", 5_000, 1.0, 250)[0] for _ in range(500))


def sliding(t: Any, worker: int) -> int:
    """A sliding window of 120 at one instant."""
    return sum(t.sliding_window("sw", 5_000, 1000, 120)[0] for _ in range(300))


def sliding_periods(t: Any, worker: int) -> int:
    """Two sliding windows at one instant, ``1 s: 90`` and ``60 s: 60``: the longer one decides,
    and each admitted request is counted in both or in neither."""
    return sum(
        t.sliding_windows(["sp:1s", "sp:60s"], 5_000, [1000, 60_000], [90, 60])[0]
        for _ in range(300)
    )


def bucket_periods(t: Any, worker: int) -> int:
    """Two buckets at a frozen clock, bursts 80 and 50: 50 requests take from both."""
    return sum(
        t.token_buckets(["bp:a", "bp:b"], 5_000, [1.0, 0.5], [80, 50])[0] for _ in range(300)
    )


SCENARIOS: dict[str, Callable[[Any, int], int]] = {
    "one_window": one_window,
    "two_periods": two_periods,
    "new_keys": new_keys,
    "token_bucket": token_bucket,
    "sliding": sliding,
    "sliding_periods": sliding_periods,
    "bucket_periods": bucket_periods,
}


def worker(impl: str, path: str, index: int, barrier: Any, results: Any) -> None:
    table = importlib.import_module(impl).CounterTable(path)
    try:
        for name, scenario in SCENARIOS.items():
            barrier.wait(TIMEOUT)  # every scenario starts in all workers at once
            results.put((name, scenario(table, index)))
    finally:
        table.close()


def hammer(impl: str, path: str) -> dict[str, int]:
    """Run every scenario in WORKERS spawned processes; the admitted total of each."""
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(WORKERS)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=worker, args=(impl, path, i, barrier, results)) for i in range(WORKERS)
    ]
    for p in procs:
        p.start()
    totals: dict[str, int] = dict.fromkeys(SCENARIOS, 0)
    try:
        for _ in range(WORKERS * len(SCENARIOS)):
            name, admitted = results.get(timeout=TIMEOUT)
            totals[name] += admitted
    finally:
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
                p.join()
    assert [p.exitcode for p in procs] == [0] * WORKERS
    return totals


@pytest.mark.parametrize("impl", IMPLS)
def test_workers_admit_exactly_the_limit(impl: str, tmp_path: Path) -> None:
    path = str(tmp_path / "rl.shm")
    rl = importlib.import_module(impl)
    with rl.CounterTable(path, slots=4096) as t:  # created here; the workers open it
        totals = hammer(impl, path)
        assert totals == {
            "one_window": 300,
            "two_periods": 100,
            "new_keys": 400,
            "token_bucket": 250,
            "sliding": 120,
            "sliding_periods": 60,
            "bucket_periods": 50,
        }
        assert t.usage("k:minute", T0) == 300
        per_second = [t.usage("m:second", s) for s in (T0, T0 + 1)]
        assert sum(per_second) == 100 and max(per_second) <= 70, per_second
        assert t.usage("m:minute", T0) == 100
        assert all(t.usage(f"new:{i}", T0) == 1 for i in range(400))
        # Counted in both periods or in neither: the shorter window spent exactly 60 of its 90,
        # and the larger bucket gave exactly the 50 tokens the smaller one had.
        assert t.sliding_windows(["sp:1s", "sp:60s"], 5_000, [1000, 60_000], [90, 60], 0)[1] == [
            30,
            0,
        ]
        assert t.token_buckets(["bp:a", "bp:b"], 5_000, [1.0, 0.5], [80, 50], 0)[1] == [30, 0]
        assert t.evictions == 0
