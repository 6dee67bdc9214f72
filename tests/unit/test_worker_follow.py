"""A worker's state follower: retired snapshots are torn down only after their last request."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from fastkong import background
from fastkong.config import load_config
from fastkong.control.state import write_state
from fastkong.proxy import worker
from fastkong.proxy.app import Gateway
from fastkong.proxy.worker import StateFollower


def config(n: int) -> str:
    routes = "".join(f'  - name: r{i}\n    paths: ["/p{i}"]\n' for i in range(n))
    head = '_format_version: "3.0"\nservices:\n- name: s\n  url: http://127.0.0.1:9\n'
    return f"{head}  routes:\n{routes}"


async def test_retired_snapshot_is_freed_after_its_last_user(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = load_config(config(600))
    write_state(state, first.hash, first.config)
    gateway = Gateway()
    follower = StateFollower(gateway, state)
    assert follower.refresh()
    in_flight = gateway.runtime  # a request that started on the first snapshot
    routes = in_flight.routes
    assert len(routes) == 600

    second = load_config(config(601))
    write_state(state, second.hash, second.config)
    assert follower.changed()
    follower.install(follower.build())
    assert gateway.runtime.hash == second.hash
    teardown = asyncio.get_running_loop().create_task(follower.tear_down())
    await asyncio.sleep(0.3)
    assert len(routes) == 600  # still in use: untouched
    del in_flight
    await asyncio.wait_for(teardown, 5)
    assert routes == []
    assert follower.retired == []
    assert len(gateway.runtime.routes) == 601


async def test_teardown_releases_a_retired_router_but_not_a_shared_one(tmp_path: Path) -> None:
    state = tmp_path / "state"
    gateway = Gateway()
    follower = StateFollower(gateway, state)
    first = load_config(config(300))
    write_state(state, first.hash, first.config)
    assert follower.refresh()
    old_router = gateway.runtime.router

    # Same services and routes, one more consumer: the new snapshot reuses the router.
    same_routes = load_config(config(300) + "consumers:\n- username: alice\n")
    write_state(state, same_routes.hash, same_routes.config)
    assert follower.changed()
    follower.install(follower.build())
    assert gateway.runtime.router is old_router
    await asyncio.wait_for(follower.tear_down(), 5)
    assert len(old_router) == 300  # shared with the snapshot being served: untouched
    assert old_router.match("GET", "", 80, "/p7", None, None) is not None

    # Different routes: a new router; the retired one is emptied.
    changed = load_config(config(301))
    write_state(state, changed.hash, changed.config)
    assert follower.changed()
    follower.install(follower.build())
    assert gateway.runtime.router is not old_router
    await asyncio.wait_for(follower.tear_down(), 5)
    assert len(old_router) == 0
    assert old_router.match("GET", "", 80, "/p7", None, None) is None
    assert gateway.runtime.router.match("GET", "", 80, "/p7", None, None) is not None


def test_builds_pace_themselves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A build rests (GIL released) after every BUILD_WORK seconds of work, so requests get
    # windows in which they wait for nothing.
    state = tmp_path / "state"
    loaded = load_config(config(200))
    write_state(state, loaded.hash, loaded.config)
    rests: list[float] = []
    monkeypatch.setattr(background.time, "sleep", rests.append)
    monkeypatch.setattr(worker, "BUILD_WORK", 0.0)
    follower = StateFollower(Gateway(), state)
    runtime = follower.build()
    assert len(runtime.routes) == 200
    assert len(rests) >= 200 and set(rests) == {worker.BUILD_REST}
