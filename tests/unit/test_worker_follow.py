"""A worker's state follower: retired snapshots are torn down only after their last request."""

from __future__ import annotations

import asyncio
from pathlib import Path

from fastkong.config import load_config
from fastkong.control.state import write_state
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
