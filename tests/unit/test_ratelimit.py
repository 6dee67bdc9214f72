"""The rate-limit counter table (``fastkong._core.ratelimit``), compiled and pure-Python twin.

Every behaviour test runs on both implementations; with ``FASTKONG_NO_EXTENSIONS`` set the
compiled parameter is left out (not skipped). Clocks are plain integers: the kernel reads none.
"""

from __future__ import annotations

import importlib
import mmap
import os
import struct
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from fastkong._core import NO_EXTENSIONS, is_compiled, load
from fastkong._core import windows as W

COMPILED = "fastkong._core.ratelimit"
TWIN = "fastkong._core._ratelimit_py"
IMPLS = ([pytest.param(COMPILED, id="compiled")] if not NO_EXTENSIONS else []) + [
    pytest.param(TWIN, id="twin")
]
T0 = 1_700_000_040  # a minute boundary: 2023-11-14T22:14:00Z


@pytest.fixture(params=IMPLS)
def rl(request: pytest.FixtureRequest) -> ModuleType:
    return importlib.import_module(request.param)


@pytest.fixture
def table(rl: ModuleType) -> Iterator[Any]:
    t = rl.CounterTable(slots=1024)
    yield t
    t.close()


def ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def hit(t: Any, key: str, start: int, limit: int, ttl: int = 60, cost: int = 1) -> bool:
    ok, _ = t.hit_windows([key], [start], [limit], [ttl], cost)
    return bool(ok)


# ---- which implementation -------------------------------------------------------------------
def test_load_gives_the_compiled_core_unless_extensions_are_off() -> None:
    mod = load("ratelimit")
    if NO_EXTENSIONS:
        assert mod.__name__ == TWIN and not is_compiled(mod)
    else:
        assert mod.__name__ == COMPILED and is_compiled(mod), mod.__file__


def test_both_implementations_hash_keys_alike(rl: ModuleType) -> None:
    twin = importlib.import_module(TWIN)
    for key in ["", "a", "1234567", "12345678", "123456789", "ratelimit:r:s:10.0.0.1:minute", "ü✓"]:
        assert rl.key_hash(key) == twin.key_hash(key)
    assert rl.key_hash("a") != rl.key_hash("b")
    with pytest.raises(TypeError):
        rl.key_hash(b"bytes")


# ---- fixed windows --------------------------------------------------------------------------
def test_admits_exactly_the_limit_per_window(table: Any) -> None:
    admitted = [hit(table, "k:minute", T0, 100) for _ in range(150)]
    assert admitted == [True] * 100 + [False] * 50
    assert table.usage("k:minute", T0) == 100


def test_returns_new_usages_when_admitted_and_current_ones_when_not(table: Any) -> None:
    h = table.hit_windows
    assert h(["k"], [T0], [3], [60]) == (True, [1])
    assert h(["k"], [T0], [3], [60], 2) == (True, [3])
    assert h(["k"], [T0], [3], [60]) == (False, [3])
    assert h(["k"], [T0], [3], [60], 0) == (True, [3])  # cost 0: a peek that still fits


def test_window_rollover_starts_a_new_counter(table: Any) -> None:
    for _ in range(5):
        hit(table, "k:minute", T0, 3)
    assert not hit(table, "k:minute", T0, 3)
    assert [hit(table, "k:minute", T0 + 60, 3) for _ in range(4)] == [True] * 3 + [False]
    assert table.usage("k:minute", T0) == 3
    assert table.usage("k:minute", T0 + 60) == 3
    assert table.usage("k:minute", T0 + 120) == 0


def test_keys_are_independent(table: Any) -> None:
    assert [hit(table, "a", T0, 1), hit(table, "b", T0, 1), hit(table, "a", T0, 1)] == [
        True,
        True,
        False,
    ]


def test_multi_period_reject_counts_nothing(table: Any) -> None:
    keys = ["c:second", "c:minute"]
    ttls = [1, 60]
    limits = [5, 7]
    h = table.hit_windows
    got = [h(keys, [T0, T0], limits, ttls) for _ in range(6)]
    assert [ok for ok, _ in got] == [True] * 5 + [False]
    assert got[-1] == (False, [5, 5])  # the minute did not count the rejected request
    got = [h(keys, [T0 + 1, T0], limits, ttls) for _ in range(3)]
    assert got == [(True, [1, 6]), (True, [2, 7]), (False, [2, 7])]
    assert table.usage("c:second", T0 + 1) == 2
    assert table.usage("c:minute", T0) == 7


def test_cost_larger_than_any_room_counts_nowhere(table: Any) -> None:
    h = table.hit_windows
    assert h(["x:s", "x:m"], [T0, T0], [10, 3], [1, 60], 4) == (False, [0, 0])
    assert h(["x:s", "x:m"], [T0, T0], [10, 3], [1, 60], 3) == (True, [3, 3])


def test_hit_windows_rejects_bad_arguments(table: Any) -> None:
    h = table.hit_windows
    with pytest.raises(ValueError, match="same length"):
        h(["a", "b"], [T0], [1, 1], [1, 1])
    with pytest.raises(ValueError, match="1 to 8"):
        h([], [], [], [])
    with pytest.raises(ValueError, match="1 to 8"):
        h([str(i) for i in range(9)], [T0] * 9, [1] * 9, [1] * 9)
    with pytest.raises(ValueError, match="negative"):
        h(["a"], [T0], [1], [1], -1)
    with pytest.raises(ValueError, match="twice"):
        h(["a", "a"], [T0, T0], [1, 2], [1, 60])
    with pytest.raises(TypeError):
        h([1], [T0], [1], [1])
    assert h(["a", "a"], [T0, T0 + 1], [1, 1], [1, 1]) == (True, [1, 1])  # two windows of "a"


# ---- sliding window -------------------------------------------------------------------------
def test_sliding_window_weights_the_previous_window(table: Any) -> None:
    sw = table.sliding_window
    got = [sw("s", 10_000 + i, 1000, 10) for i in range(11)]
    assert got[0] == (True, 9, 1000)
    assert got[9] == (True, 0, 991)
    assert got[10] == (False, 0, 990)
    # next window: the previous 10 count 10 x (1000 - elapsed) / 1000
    assert sw("s", 11_000, 1000, 10) == (False, 0, 1000)
    assert sw("s", 11_250, 1000, 10) == (True, 1, 750)  # 10 x 0.75 = 7.5: room 2, then 1
    assert sw("s", 11_250, 1000, 10) == (True, 0, 750)
    assert sw("s", 11_250, 1000, 10) == (False, 0, 750)
    assert sw("s", 11_500, 1000, 10) == (True, 2, 500)  # 10 x 0.5 + 2: room 3, then 2
    # 13_000 is two windows after 11_000: nothing of either is left
    assert sw("s", 13_000, 1000, 10) == (True, 9, 1000)


def test_sliding_window_rejected_requests_are_not_counted(table: Any) -> None:
    sw = table.sliding_window
    for _ in range(50):
        sw("r", 5_000, 1000, 2)
    assert sw("r", 6_000, 1000, 2) == (False, 0, 1000)
    assert sw("r", 6_500, 1000, 2) == (True, 0, 500)  # prev=2, not 50: 2 x 0.5 + 1 = 2


def test_sliding_window_late_clock_does_not_move_the_window_back(table: Any) -> None:
    sw = table.sliding_window
    assert sw("l", 2_000, 1000, 3) == (True, 2, 1000)
    assert sw("l", 1_999, 1000, 3) == (True, 1, 1000)  # counted at the window's start
    assert sw("l", 2_999, 1000, 3) == (True, 0, 1)


def test_sliding_window_cost_and_arguments(table: Any) -> None:
    sw = table.sliding_window
    assert sw("c", 0, 100, 5, 5) == (True, 0, 100)
    assert sw("c2", 0, 100, 5, 6) == (False, 5, 100)
    with pytest.raises(ValueError):
        sw("c", 0, 0, 5)
    with pytest.raises(ValueError):
        sw("c", 0, 100, -1)


# ---- token bucket ---------------------------------------------------------------------------
def test_token_bucket_starts_full_and_refills(table: Any) -> None:
    tb = table.token_bucket
    got = [tb("b", 1_000, 2.0, 5) for _ in range(6)]
    assert got[:5] == [(True, 4, 0), (True, 3, 0), (True, 2, 0), (True, 1, 0), (True, 0, 0)]
    assert got[5] == (False, 0, 500)  # 2 tokens/s: one token in 500 ms
    assert tb("b", 1_499, 2.0, 5) == (False, 0, 1)
    assert tb("b", 1_500, 2.0, 5) == (True, 0, 0)
    assert tb("b", 2_750, 2.0, 5) == (True, 1, 0)  # 1.25 s = 2.5 tokens, minus 1


def test_token_bucket_never_exceeds_burst(table: Any) -> None:
    tb = table.token_bucket
    assert tb("i", 0, 100.0, 3) == (True, 2, 0)
    assert tb("i", 10**9, 100.0, 3) == (True, 2, 0)  # a long idle refills to 3, not more


def test_token_bucket_cost_burst_and_rates(table: Any) -> None:
    tb = table.token_bucket
    assert tb("w", 0, 1.0, 10, 4) == (True, 6, 0)
    assert tb("w", 0, 1.0, 10, 7) == (False, 6, 1000)
    assert tb("w", 0, 1.0, 10, 11) == (False, 6, -1)  # more than the burst: never
    assert tb("half", 0, 0.5, 1) == (True, 0, 0)
    assert tb("half", 1, 0.5, 1) == (False, 0, 1999)
    assert tb("slow", 0, 0.0005, 1)[0]
    for rate in (0.0, 0.0004, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            tb("bad", 0, rate, 1)
    with pytest.raises(ValueError):
        tb("bad", 0, 1.0, -1)


def test_token_bucket_late_clock_does_not_refill_twice(table: Any) -> None:
    tb = table.token_bucket
    assert tb("l", 5_000, 1.0, 1) == (True, 0, 0)
    assert tb("l", 4_000, 1.0, 1) == (False, 0, 1000)  # time does not run back
    assert tb("l", 6_000, 1.0, 1) == (True, 0, 0)


def test_kinds_do_not_share_slots(table: Any) -> None:
    assert hit(table, "same", 0, 1)
    assert table.sliding_window("same", 0, 1000, 1)[0]
    assert table.token_bucket("same", 0, 1.0, 1)[0]
    assert table.sliding_window("same", 0, 500, 1)[0]


# ---- calendar windows -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("period", "now", "start"),
    [
        ("second", "2024-02-29T23:59:59.999", "2024-02-29T23:59:59"),
        ("minute", "2024-02-29T23:59:59.999", "2024-02-29T23:59:00"),
        ("hour", "2024-02-29T23:59:59.999", "2024-02-29T23:00:00"),
        ("day", "2024-02-29T23:59:59.999", "2024-02-29T00:00:00"),
        ("month", "2024-02-29T23:59:59.999", "2024-02-01T00:00:00"),
        ("month", "2024-03-01T00:00:00", "2024-03-01T00:00:00"),
        ("month", "2023-12-31T23:59:59", "2023-12-01T00:00:00"),
        ("year", "2023-12-31T23:59:59.999", "2023-01-01T00:00:00"),
        ("year", "2024-01-01T00:00:00", "2024-01-01T00:00:00"),
        ("year", "1969-07-20T20:17:40", "1969-01-01T00:00:00"),
        ("month", "1900-03-01T12:00:00", "1900-03-01T00:00:00"),
    ],
)
def test_window_start_is_calendar_aligned_utc(
    rl: ModuleType, period: str, now: str, start: str
) -> None:
    assert rl.window_start(period, ts(now)) == ts(start)


@pytest.mark.parametrize(
    ("period", "start", "days"),
    [
        ("month", "2024-02-01", 29),
        ("month", "2023-02-01", 28),
        ("month", "2024-01-01", 31),
        ("month", "2024-12-01", 31),
        ("month", "2024-04-01", 30),
        ("year", "2024-01-01", 366),
        ("year", "2023-01-01", 365),
        ("year", "2100-01-01", 365),
        ("year", "2000-01-01", 366),
    ],
)
def test_window_length_follows_the_calendar(
    rl: ModuleType, period: str, start: str, days: int
) -> None:
    assert rl.window_length(period, int(ts(start + "T00:00:00"))) == days * 86400


def test_period_seconds_are_kongs_ttls(rl: ModuleType) -> None:
    assert rl.PERIOD_SECONDS == {
        "second": 1,
        "minute": 60,
        "hour": 3600,
        "day": 86400,
        "month": 2592000,
        "year": 31536000,
    }
    assert rl.window_length("minute", T0) == 60
    with pytest.raises(ValueError, match="unknown"):
        rl.window_start("week", 0)
    with pytest.raises(ValueError, match="unknown"):
        W.window_length("fortnight", 0)


# ---- eviction and reuse ---------------------------------------------------------------------
def test_full_table_evicts_the_stalest_counter(rl: ModuleType) -> None:
    with rl.CounterTable(slots=16) as t:
        for i in range(16):  # all live at now=T0; counter i expires after ttl 10 + i
            assert t.hit_windows([f"k{i}"], [T0], [5], [10 + i])[0]
        assert repr(t) == "<CounterTable path=None slots=16 used=16 evictions=0>"
        assert t.hit_windows(["new"], [T0], [5], [60]) == (True, [1])
        assert t.evictions == 1
        assert t.usage("k0", T0) == 0  # the stalest went
        assert all(t.usage(f"k{i}", T0) == 1 for i in range(1, 16))
        assert t.usage("new", T0) == 1


def test_expired_slots_are_reused_without_eviction(rl: ModuleType) -> None:
    with rl.CounterTable(slots=16) as t:
        for i in range(16):
            t.hit_windows([f"k{i}"], [T0], [5], [1])
        # 2 s later (ttl 1 + 1 s grace) every one of them has expired
        for i in range(16):
            assert t.hit_windows([f"n{i}"], [T0 + 2], [5], [1]) == (True, [1])
        assert (t.used(), t.evictions) == (16, 0)
        assert t.usage("k0", T0) == 0


def test_counter_survives_one_second_past_its_window(rl: ModuleType) -> None:
    with rl.CounterTable(slots=16) as t:
        for i in range(16):
            t.hit_windows([f"k{i}"], [T0], [1], [1])
        # a late request of window T0 reaching the table at T0 + 1 (its window has ended)
        assert t.hit_windows(["other"], [T0 + 1], [5], [1]) == (True, [1])
        assert t.evictions == 1  # nothing had expired yet: a live counter had to go
        assert sum(t.usage(f"k{i}", T0) for i in range(16)) == 15


def test_multi_period_call_never_evicts_its_own_counters(rl: ModuleType) -> None:
    with rl.CounterTable(slots=16) as t:
        for i in range(16):
            t.hit_windows([f"k{i}"], [T0], [5], [3600])
        ok, usages = t.hit_windows(["a:s", "a:m", "a:h"], [T0, T0, T0], [5, 5, 5], [1, 60, 3600])
        assert (ok, usages, t.evictions) == (True, [1, 1, 1], 3)
        assert [t.usage(k, T0) for k in ("a:s", "a:m", "a:h")] == [1, 1, 1]


def test_now_s_lets_expired_counters_be_recognised(rl: ModuleType) -> None:
    with rl.CounterTable(slots=16) as t:
        for i in range(16):
            t.hit_windows([f"k{i}:second"], [T0], [5], [1])
        # a yearly window starts long before T0; with now_s the second counters are seen expired
        t.hit_windows(["y:year"], [T0 - 10**6], [5], [10**7], now_s=T0 + 5)
        assert t.evictions == 0


# ---- lifecycle, files, reopen ---------------------------------------------------------------
def test_repr_shows_state_and_close_is_final(rl: ModuleType) -> None:
    t = rl.CounterTable(slots=64)
    assert repr(t) == "<CounterTable path=None slots=64 used=0 evictions=0>"
    t.hit_windows(["a", "b"], [T0, T0], [1, 1], [1, 60])
    t.token_bucket("c", 0, 1.0, 1)
    assert repr(t) == "<CounterTable path=None slots=64 used=3 evictions=0>"
    t.close()
    t.close()
    assert repr(t) == "<CounterTable path=None slots=64 closed>"
    with pytest.raises(ValueError, match="closed"):
        t.hit_windows(["a"], [T0], [1], [1])
    with pytest.raises(ValueError, match="closed"):
        t.token_bucket("c", 0, 1.0, 1)


@pytest.mark.parametrize("slots", [0, 8, 100, 1 << 25])
def test_slots_must_be_a_power_of_two_in_range(rl: ModuleType, slots: int) -> None:
    with pytest.raises(ValueError, match="power of two"):
        rl.CounterTable(slots=slots)


def test_reopen_existing_file_keeps_counts_and_slot_count(rl: ModuleType, tmp_path: Path) -> None:
    path = str(tmp_path / "rl.shm")
    with rl.CounterTable(path, slots=128) as a:
        assert [hit(a, "k", T0, 3) for _ in range(2)] == [True, True]
        with rl.CounterTable(path, slots=1024) as b:  # opens, adopts 128
            assert repr(b) == f"<CounterTable path={path} slots=128 used=1 evictions=0>"
            assert hit(b, "k", T0, 3)
            assert not hit(a, "k", T0, 3)
    assert os.path.getsize(path) == 64 + 128 * 64
    assert sorted(os.listdir(tmp_path)) == ["rl.shm"]  # no temporary file left behind
    with rl.CounterTable(path) as c:
        assert c.usage("k", T0) == 3


def test_anonymous_table_is_process_local(rl: ModuleType) -> None:
    with rl.CounterTable(slots=16) as a, rl.CounterTable(slots=16) as b:
        assert hit(a, "k", T0, 1) and hit(b, "k", T0, 1)


def test_foreign_files_are_refused(rl: ModuleType, tmp_path: Path) -> None:
    junk = tmp_path / "junk"
    junk.write_bytes(b"x" * 4096)
    with pytest.raises(ValueError, match="not a fastkong counter table"):
        rl.CounterTable(str(junk))
    short = tmp_path / "short"
    short.write_bytes(b"")
    with pytest.raises(ValueError, match="too short"):
        rl.CounterTable(str(short))


# ---- the compiled core only (left out, not skipped, without it) ------------------------------
if not NO_EXTENSIONS:

    def test_a_table_belongs_to_the_implementation_that_created_it(tmp_path: Path) -> None:
        compiled, twin = importlib.import_module(COMPILED), importlib.import_module(TWIN)
        with compiled.CounterTable(str(tmp_path / "c"), slots=16):
            with pytest.raises(ValueError, match="created by the compiled core"):
                twin.CounterTable(str(tmp_path / "c"))
        with twin.CounterTable(str(tmp_path / "t"), slots=16):
            with pytest.raises(ValueError, match="created by the pure-Python twin"):
                compiled.CounterTable(str(tmp_path / "t"))

    def test_a_lock_held_by_a_dead_process_is_taken_over(tmp_path: Path) -> None:
        path = str(tmp_path / "rl.shm")
        compiled = importlib.import_module(COMPILED)
        compiled.CounterTable(path, slots=16).close()
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        with open(path, "r+b") as f, mmap.mmap(f.fileno(), 0) as mm:
            for i in range(16):  # every slot lock and insert lock held by a process that is gone
                struct.pack_into("=II", mm, 64 + 64 * i, dead.pid, dead.pid)
        code = textwrap.dedent(
            f"""
            from fastkong._core.ratelimit import CounterTable
            t = CounterTable({path!r})
            print(t.hit_windows(["k"], [0], [1], [1]), t.token_bucket("b", 0, 1.0, 1))
            """
        )
        done = subprocess.run(
            [sys.executable, "-c", code],
            cwd=Path(__file__).resolve().parents[2],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert done.stdout.strip() == "(True, [1]) (True, 0, 0)"
