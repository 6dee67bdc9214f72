"""Hypothesis: the compiled counter table answers exactly as its twin, and both keep the limits.

Operation sequences run against a 16-slot table (so reuse and eviction happen) and a roomy one,
with a clock that mostly moves forward, sometimes jumps, and sometimes runs a little back (a
worker whose clock was read before another's got to the table).
"""

from __future__ import annotations

import importlib
from collections import Counter
from types import ModuleType
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from fastkong._core import NO_EXTENSIONS

COMPILED = "fastkong._core.ratelimit"
TWIN = "fastkong._core._ratelimit_py"
IMPLS = ([pytest.param(COMPILED, id="compiled")] if not NO_EXTENSIONS else []) + [
    pytest.param(TWIN, id="twin")
]
T0_MS = 1_700_000_000_000
PERIODS = ("second", "minute", "hour")
RATES = (0.5, 1.0, 3.3, 250.0, 1000.0)

KEYS = st.integers(0, 3) | st.integers(0, 40)  # a few hot keys, and enough to fill 16 slots
steps = st.integers(-300, 3000) | st.sampled_from([0, 0, 0, 60_000, 3_600_000])
hit_op = st.tuples(
    st.just("hit"),
    steps,
    KEYS,
    st.lists(st.sampled_from(PERIODS), min_size=1, max_size=3, unique=True),
    st.integers(0, 6),  # limit
    st.integers(0, 3),  # cost
    st.booleans(),  # pass now_s
)
usage_op = st.tuples(st.just("usage"), steps, KEYS, st.sampled_from(PERIODS))
sliding_op = st.tuples(
    st.just("sliding"),
    steps,
    KEYS,
    st.sampled_from([100, 1000, 60_000]),
    st.integers(0, 6),
    st.integers(0, 3),
)
bucket_op = st.tuples(
    st.just("bucket"),
    steps,
    KEYS,
    st.sampled_from(RATES),
    st.integers(0, 6),
    st.integers(0, 3),
)
sliding_many_op = st.tuples(
    st.just("slidings"),
    steps,
    KEYS,
    st.lists(st.sampled_from([100, 1000, 60_000]), min_size=1, max_size=3, unique=True),
    st.integers(0, 6),
    st.integers(0, 3),
)
bucket_many_op = st.tuples(
    st.just("buckets"),
    steps,
    KEYS,
    st.lists(st.sampled_from(RATES), min_size=1, max_size=3, unique=True),
    st.integers(0, 6),
    st.integers(0, 3),
)
# many live counters at once: a 16-slot table has to evict
fill_op = st.tuples(st.just("fill"), steps, st.integers(0, 40), st.integers(1, 24))
operations = st.lists(
    hit_op | usage_op | sliding_op | bucket_op | sliding_many_op | bucket_many_op | fill_op,
    max_size=80,
)


def run(mod: ModuleType, table: Any, ops: list[tuple[Any, ...]]) -> list[object]:
    now = T0_MS
    out: list[object] = []
    for op in ops:
        now += op[1]
        if op[0] == "hit":
            _, _, key, periods, limit, cost, pass_now = op
            starts = [mod.window_start(p, now / 1000) for p in periods]
            out.append(
                table.hit_windows(
                    [f"k{key}:{p}" for p in periods],
                    starts,
                    [limit] * len(periods),
                    [mod.window_length(p, s) for p, s in zip(periods, starts, strict=True)],
                    cost,
                    now // 1000 if pass_now else None,
                )
            )
        elif op[0] == "fill":
            _, _, first, n = op
            start = mod.window_start("hour", now / 1000)
            for key in range(first, first + n):
                out.append(table.hit_windows([f"k{key}:hour"], [start], [3], [3600]))
        elif op[0] == "usage":
            _, _, key, period = op
            out.append(table.usage(f"k{key}:{period}", mod.window_start(period, now / 1000)))
        elif op[0] == "sliding":
            _, _, key, window, limit, cost = op
            out.append(table.sliding_window(f"s{key}", now, window, limit, cost))
        elif op[0] == "slidings":
            _, _, key, windows, limit, cost = op
            keys = [f"s{key}:{w}" for w in windows]
            out.append(table.sliding_windows(keys, now, windows, [limit] * len(keys), cost))
        elif op[0] == "buckets":
            _, _, key, rates, burst, cost = op
            keys = [f"b{key}:{r}" for r in rates]
            out.append(table.token_buckets(keys, now, rates, [burst] * len(keys), cost))
        else:
            _, _, key, rate, burst, cost = op
            out.append(table.token_bucket(f"b{key}", now, rate, burst, cost))
    out.append(repr(table))
    return out


# The equivalence needs the compiled core: left out (not skipped) without it.
if not NO_EXTENSIONS:

    @pytest.mark.parametrize("slots", [16, 1024])
    @settings(max_examples=300, deadline=None)
    @given(ops=operations)
    def test_compiled_answers_as_the_twin(slots: int, ops: list[tuple[Any, ...]]) -> None:
        compiled, twin = importlib.import_module(COMPILED), importlib.import_module(TWIN)
        with compiled.CounterTable(slots=slots) as a, twin.CounterTable(slots=slots) as b:
            assert run(compiled, a, ops) == run(twin, b, ops)

    @settings(max_examples=300, deadline=None)
    @given(key=st.text(max_size=40))
    def test_compiled_hashes_as_the_twin(key: str) -> None:
        compiled, twin = importlib.import_module(COMPILED), importlib.import_module(TWIN)
        try:
            expected = twin.key_hash(key)
        except UnicodeEncodeError:  # lone surrogates have no UTF-8: both refuse them
            with pytest.raises(UnicodeEncodeError):
                compiled.key_hash(key)
        else:
            assert compiled.key_hash(key) == expected


@pytest.mark.parametrize("impl", IMPLS)
@settings(max_examples=150, deadline=None)
@given(
    hits=st.lists(
        st.tuples(
            st.integers(0, 250_000),  # ms after T0_MS
            st.integers(0, 3),  # key
            st.lists(st.sampled_from(PERIODS), min_size=1, max_size=3, unique=True),
            st.integers(1, 3),  # cost
        ),
        max_size=120,
    ),
    limits=st.fixed_dictionaries({p: st.integers(0, 8) for p in PERIODS}),
)
@example(
    hits=[(0, 0, ["second"], 1), (0, 0, ["second"], 1), (132000, 1, ["second"], 1)],
    limits={"second": 1, "minute": 0, "hour": 0},
)
def test_fixed_windows_admit_exactly_what_fits(
    impl: str, hits: list[tuple[int, int, list[str], int]], limits: dict[str, int]
) -> None:
    """Against a dict model: all-or-nothing, never past a limit, nothing lost or double counted."""
    rl = importlib.import_module(impl)
    model: Counter[tuple[str, int]] = Counter()
    with rl.CounterTable(slots=4096) as t:
        for at, key, periods, cost in sorted(hits):
            now_s = (T0_MS + at) / 1000
            names = [f"k{key}:{p}" for p in periods]
            starts = [rl.window_start(p, now_s) for p in periods]
            ttls = [rl.window_length(p, s) for p, s in zip(periods, starts, strict=True)]
            lims = [limits[p] for p in periods]
            fits = all(
                model[(n, s)] + cost <= lim for n, s, lim in zip(names, starts, lims, strict=True)
            )
            ok, usages = t.hit_windows(names, starts, lims, ttls, cost)
            if fits:
                for n, s in zip(names, starts, strict=True):
                    model[(n, s)] += cost
            assert ok == fits
            assert usages == [model[(n, s)] for n, s in zip(names, starts, strict=True)]
        # A key holds one window at a time: a later window of the same key replaces the earlier
        # one (which has expired by then), so only each key's latest window is still readable;
        # and an expired window's slot may be taken by any other key (not an eviction), so only
        # windows still running at the last hit must be intact.
        last_s = max(((T0_MS + at) / 1000 for at, *_ in hits), default=0.0)
        latest: dict[str, int] = {}
        for name, start in model:
            latest[name] = max(start, latest.get(name, start))
        for (name, start), count in model.items():
            period = name.rsplit(":", 1)[1]
            assert count <= limits[period]
            if latest[name] == start and start + rl.window_length(period, start) > last_s:
                assert t.usage(name, start) == count
        assert t.evictions == 0


@pytest.mark.parametrize("impl", IMPLS)
@settings(max_examples=150, deadline=None)
@given(
    gaps=st.lists(st.integers(0, 400), max_size=150),
    rate=st.sampled_from(RATES),
    burst=st.integers(0, 10),
    cost=st.integers(1, 3),
)
def test_token_bucket_never_exceeds_burst(
    impl: str, gaps: list[int], rate: float, burst: int, cost: int
) -> None:
    """Remaining never passes the burst; admitted tokens never pass burst + refill since start."""
    rl = importlib.import_module(impl)
    per_ms = round(rate * 1000)  # micro-tokens per ms, as the kernel rounds
    now, admitted = T0_MS, 0
    with rl.CounterTable(slots=16) as t:
        for gap in gaps:
            now += gap
            ok, remaining, retry = t.token_bucket("b", now, rate, burst, cost)
            admitted += cost if ok else 0
            assert 0 <= remaining <= burst
            assert admitted * 1_000_000 <= burst * 1_000_000 + (now - T0_MS) * per_ms
            assert retry == 0 if ok else (retry == -1) == (cost > burst)


@pytest.mark.parametrize("impl", IMPLS)
@settings(max_examples=150, deadline=None)
@given(
    gaps=st.lists(st.integers(0, 300), max_size=150),
    window=st.sampled_from([100, 1000]),
    limit=st.integers(0, 8),
)
def test_sliding_window_never_admits_more_than_the_limit_per_window(
    impl: str, gaps: list[int], window: int, limit: int
) -> None:
    rl = importlib.import_module(impl)
    now = T0_MS
    per_window: Counter[int] = Counter()
    with rl.CounterTable(slots=16) as t:
        for gap in gaps:
            now += gap
            ok, remaining, reset = t.sliding_window("s", now, window, limit)
            if ok:
                per_window[now // window] += 1
            assert 0 <= remaining <= limit and 0 < reset <= window
        assert all(n <= limit for n in per_window.values())


@pytest.mark.parametrize("impl", IMPLS)
@settings(max_examples=100, deadline=None)
@given(calls=st.lists(st.tuples(st.integers(0, 1500), st.integers(0, 3)), max_size=40))
def test_several_periods_count_in_all_or_none(impl: str, calls: list[tuple[int, int]]) -> None:
    """A request over several periods is counted in every one or in none: a refused call
    leaves every window and bucket as a look (cost 0) found it, an admitted one takes its cost
    from each."""
    mod = importlib.import_module(impl)
    with mod.CounterTable(slots=64) as t:
        now = T0_MS
        for step, cost in calls:
            now += step
            windows = (["w:1s", "w:5s"], now, [1000, 5000], [3, 5])
            before = t.sliding_windows(*windows, 0)[1]
            ok, after, _ = t.sliding_windows(*windows, cost)
            assert after == ([b - cost for b in before] if ok else before)
            buckets = (["b:fast", "b:slow"], now, [2.0, 0.5], [3, 5])
            before = t.token_buckets(*buckets, 0)[1]
            ok, after, _ = t.token_buckets(*buckets, cost)
            assert after == ([b - cost for b in before] if ok else before)
