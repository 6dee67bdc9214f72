"""The state file shared by the supervisor and the workers."""

from __future__ import annotations

from pathlib import Path

from fastkong.config import load_config
from fastkong.control.state import CHUNK, read_state, write_state
from fastkong.runtime import compile_runtime


def config_text(n_routes: int, target_port: int = 9000) -> str:
    routes = "".join(f'  - name: r{i}\n    paths: ["/p{i}"]\n' for i in range(n_routes))
    return (
        '_format_version: "3.0"\nservices:\n- name: s\n  host: pool.internal\n  routes:\n'
        f"{routes}upstreams:\n- name: pool.internal\n  targets:\n"
        f"  - target: 127.0.0.1:{target_port}\n"
    )


def test_round_trip_in_chunks(tmp_path: Path) -> None:
    loaded = load_config(config_text(CHUNK * 2 + 7))
    write_state(tmp_path / "state", loaded.hash, loaded.config)
    config_hash, config, digests = read_state(tmp_path / "state")
    assert config_hash == loaded.hash
    assert config == loaded.config
    assert set(digests) >= {"services", "routes", "targets"}


def test_router_is_reused_when_only_targets_change(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = load_config(config_text(50, 9000))
    write_state(state, first.hash, first.config)
    h, config, d = read_state(state)
    rt1 = compile_runtime(config, h, router_key=d["services"] + d["routes"])

    second = load_config(config_text(50, 9001))
    write_state(state, second.hash, second.config)
    h, config, d2 = read_state(state)
    assert d2["routes"] == d["routes"] and d2["targets"] != d["targets"]
    rt2 = compile_runtime(config, h, previous=rt1, router_key=d2["services"] + d2["routes"])
    assert rt2.router is rt1.router
    assert rt2.routes[0].service is not None
    assert rt2.routes[0].service.balancer is not None
    assert rt2.routes[0].service.balancer.peers[0].port == 9001

    third = load_config(config_text(51, 9001))
    write_state(state, third.hash, third.config)
    h, config, d3 = read_state(state)
    rt3 = compile_runtime(config, h, previous=rt2, router_key=d3["services"] + d3["routes"])
    assert rt3.router is not rt2.router
    assert len(rt3.router) == 51
