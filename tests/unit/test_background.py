"""Background work that must come second to serving: lower CPU priority, and paced builds."""

from __future__ import annotations

import os
import threading

import pytest
from _impls import impl_params, load

from fastkong import background
from fastkong._core.routespec import RouteSpec


def test_background_executor_threads_run_nicer_than_their_creator() -> None:
    executor = background.background_executor("test-bg")
    mine = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    theirs = executor.submit(
        lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    ).result()
    executor.shutdown()
    assert theirs == min(mine + background.NICENESS, 19)
    # The creator keeps its own priority.
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == mine


def test_pace_rests_only_inside_paced(monkeypatch: pytest.MonkeyPatch) -> None:
    rests: list[float] = []
    monkeypatch.setattr(background.time, "sleep", rests.append)
    background.pace()
    assert rests == []  # not paced: a no-op
    with background.paced(0.0, 0.002):
        background.pace()
        background.pace()
    assert rests == [0.002, 0.002]
    background.pace()
    assert len(rests) == 2


def test_pace_rests_after_each_work_slice(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    rests: list[float] = []
    monkeypatch.setattr(background.time, "perf_counter", lambda: now[0])
    monkeypatch.setattr(background.time, "sleep", rests.append)
    with background.paced(0.004, 0.001):
        for _ in range(10):
            now[0] += 0.001  # each call comes after 1 ms of work
            background.pace()
    assert rests == [0.001, 0.001]  # after 4 ms, and after 4 more


@pytest.mark.parametrize("name", impl_params("router"))
def test_router_builds_pace_themselves(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    module = load(name)
    rests: list[float] = []
    monkeypatch.setattr(background.time, "sleep", rests.append)
    specs = [RouteSpec(i, paths=(f"/svc{i}",)) for i in range(600)]
    with background.paced(0.0, 0.001):
        module.Router(specs)
    assert len(rests) >= 600  # at least once per route
