"""Kong's health state machine (lua-resty-healthcheck's rules) and the shared health table."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fastkong.config import load_config
from fastkong.runtime import compile_runtime
from fastkong.upstreams import health as H
from fastkong.upstreams.health import (
    CTR_HTTP,
    CTR_SUCCESS,
    CTR_TCP,
    CTR_TIMEOUT,
    HEADER_SIZE,
    HEALTHY,
    MOSTLY_HEALTHY,
    MOSTLY_UNHEALTHY,
    SLOT_SIZE,
    UNHEALTHY,
    UNSET,
    HealthPolicy,
    HealthTable,
    transition,
)
from fastkong.upstreams.registry import Registry
from tests.helpers import ROOT
from tests.upstreams._configs import passive


def run(state: int, *reports: tuple[int, int]) -> tuple[int, H.Counters]:
    counters: H.Counters = H.ZERO
    for counter, limit in reports:
        state, counters = transition(state, counters, counter, limit)
    return state, counters


def test_failures_reach_the_limit() -> None:
    assert run(UNSET, (CTR_HTTP, 3)) == (MOSTLY_HEALTHY, (0, 1, 0, 0))
    assert run(UNSET, (CTR_HTTP, 3), (CTR_HTTP, 3), (CTR_HTTP, 3))[0] == UNHEALTHY
    # each failure kind has its own counter and limit
    assert run(HEALTHY, (CTR_TCP, 2), (CTR_TIMEOUT, 2))[0] == MOSTLY_HEALTHY
    assert run(HEALTHY, (CTR_TCP, 2), (CTR_TCP, 2))[0] == UNHEALTHY


def test_a_success_clears_failures_and_a_failure_clears_successes() -> None:
    state, c = run(HEALTHY, (CTR_HTTP, 3), (CTR_HTTP, 3), (CTR_SUCCESS, 5))
    assert (state, c) == (MOSTLY_HEALTHY, (1, 0, 0, 0))
    state, c = run(UNHEALTHY, (CTR_SUCCESS, 3), (CTR_SUCCESS, 3), (CTR_TCP, 9))
    assert (state, c) == (MOSTLY_UNHEALTHY, (0, 0, 1, 0))


def test_reports_that_agree_with_the_state_are_not_counted() -> None:
    assert run(HEALTHY, (CTR_SUCCESS, 1)) == (HEALTHY, H.ZERO)
    assert run(UNHEALTHY, (CTR_HTTP, 1)) == (UNHEALTHY, H.ZERO)
    assert run(HEALTHY, (CTR_HTTP, 0)) == (HEALTHY, H.ZERO)  # limit 0: that check is off


def test_recovery_needs_the_successes() -> None:
    state, _ = run(UNHEALTHY, (CTR_SUCCESS, 2))
    assert state == MOSTLY_UNHEALTHY and not H.available(state)
    state, _ = run(UNHEALTHY, (CTR_SUCCESS, 2), (CTR_SUCCESS, 2))
    assert state == HEALTHY and H.available(state)
    assert H.available(MOSTLY_HEALTHY) and H.available(UNSET)


def test_counters_saturate_at_255() -> None:
    state, c = run(UNHEALTHY, *[(CTR_SUCCESS, 255)] * 300)
    assert c[0] == 255 and state == HEALTHY


def test_policy_reads_kongs_fields() -> None:
    off = HealthPolicy(None)
    assert not off.using and not off.passive_on and not off.active_on
    p = HealthPolicy(passive(http=3, successes=2))
    assert p.using and p.passive_on
    assert p.passive_status(200) == (CTR_SUCCESS, 2)
    assert p.passive_status(503) == (CTR_HTTP, 3)
    assert p.passive_status(404) is None
    assert p.passive_status(0) == (CTR_HTTP, 3)  # an invalid response


def test_table_slots_survive_and_sweep(tmp_path: Path) -> None:
    path = tmp_path / "health"
    table = HealthTable.create(path, 64)
    fp, tfp = H.key_fp("u1", "t1", "10.0.0.1", 80)
    slot = table.slot(fp, tfp)
    assert slot >= 0 and table.find(fp) == slot and table.slot(fp, tfp) == slot
    gen = table.generation()
    assert table.report(slot, CTR_HTTP, 1, fp) == (UNSET, UNHEALTHY)
    assert table.generation() == gen + 1
    # a second process (here: a second mapping) sees the same slot and state
    other = HealthTable(path)
    assert other.find(fp) == slot and other.state(slot) == UNHEALTHY
    # re-creating the table (a restarted supervisor) keeps it
    again = HealthTable.create(path, 64)
    assert again.state(again.find(fp)) == UNHEALTHY
    # sweeping keeps live targets, kills the others
    assert table.sweep([tfp]) == 0 and table.find(fp) == slot
    assert table.sweep([]) == 1 and table.find(fp) == -1
    # a target that comes back starts healthy (Kong: a new target is healthy)
    revived = table.slot(fp, tfp)
    assert revived >= 0 and table.state(revived) == UNSET
    assert "slots=64" in repr(table)
    for t in (table, other, again):
        t.close()


def test_set_clears_counters(tmp_path: Path) -> None:
    table = HealthTable.create(tmp_path / "h", 16)
    fp, tfp = H.key_fp("u", "t", "1.1.1.1", 1)
    slot = table.slot(fp, tfp)
    table.report(slot, CTR_TCP, 5, fp)
    assert table.read(slot)[:2] == (MOSTLY_HEALTHY, (0, 0, 1, 0))
    assert table.set(slot, False, fp)
    assert table.read(slot)[:2] == (UNHEALTHY, H.ZERO)
    assert not table.set(slot, False, fp)  # no availability change
    table.close()


def test_a_probe_begun_before_an_override_does_not_undo_it(tmp_path: Path) -> None:
    """A probe result is counted only if the slot's availability did not change after the
    probe began: an admin ``unhealthy`` stays, whatever the probe in flight then answers."""
    table = HealthTable.create(tmp_path / "h", 16)
    fp, tfp = H.key_fp("u", "t", "1.1.1.1", 1)
    slot = table.slot(fp, tfp)
    began = time.time()
    time.sleep(0.01)
    assert table.set(slot, False, fp)  # the admin API, while the probe runs
    assert table.report(slot, CTR_SUCCESS, 1, fp, since=began) is None
    assert table.state(slot) == UNHEALTHY
    # a probe begun after the override counts as always
    assert table.report(slot, CTR_SUCCESS, 1, fp, since=time.time()) == (UNHEALTHY, HEALTHY)
    table.close()


def test_table_rejects_a_foreign_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.write_bytes(b"x" * 200)
    with pytest.raises(ValueError):
        HealthTable(bad)
    with pytest.raises(ValueError):
        HealthTable.create(tmp_path / "h", 100)
    table = HealthTable.create(bad, 16)  # create replaces it
    assert table.nslots == 16
    table.close()


WORKER = """
import sys
from fastkong.upstreams import health as H
t = H.HealthTable(sys.argv[1])
fp, tfp = H.key_fp("u", "t", "10.0.0.1", 80)
slot = t.slot(fp, tfp)
for _ in range(int(sys.argv[2])):
    t.report(slot, H.CTR_SUCCESS, 255, fp)
"""


def test_concurrent_processes_never_lose_a_count(tmp_path: Path) -> None:
    path = tmp_path / "health"
    table = HealthTable.create(path, 256)
    fp, tfp = H.key_fp("u", "t", "10.0.0.1", 80)
    slot = table.slot(fp, tfp)
    table.set(slot, False, fp)  # unhealthy: successes are counted, up to 255
    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER, str(path), "60"], cwd=ROOT)
        for _ in range(4)
    ]
    for p in procs:
        assert p.wait(30) == 0
    state, counters, _ = table.read(slot)
    assert counters[CTR_SUCCESS] == 240 and state == MOSTLY_UNHEALTHY
    table.close()


def test_more_addresses_than_the_table_holds_degrade_without_touching_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # 100 targets, a table of 64 slots (48 usable): the 52 left over get no shared slot, keep
    # per-worker passive health, and no report of theirs (or of anyone) writes another's slot.
    table = HealthTable(None, 64)
    spec = ", ".join(f'{{target: "10.0.{i // 200}.{i % 200 + 1}:80"}}' for i in range(100))
    text = f"""
_format_version: "3.0"
services: [{{name: s, host: pool.test, routes: [{{name: r, paths: ["/"]}}]}}]
upstreams:
- name: pool.test
  healthchecks: {{passive: {{unhealthy: {{http_failures: 1}}}}}}
  targets: [{spec}]
"""
    registry = Registry(table)
    rt = compile_runtime(load_config(text.encode()).config, "h1")
    with caplog.at_level(logging.ERROR, logger="fastkong.upstreams"):
        registry.adopt(rt)
    assert "the health table is full (64 slots, 48 usable): 52 addresses" in caplog.text
    assert table.used() == table.capacity == 48
    assert sum(1 for s in range(64) if table.fp_at(s) == 0) == 16  # misses stop early
    b = rt.services[next(iter(rt.services))].balancer
    assert b is not None and len(b.peers) == 100
    spilled = [p for p in b.peers if p.st.slot < 0]
    slotted = [p for p in b.peers if p.st.slot >= 0]
    assert len(spilled) == 52 and len({p.st.slot for p in slotted}) == 48

    before = bytes(table.mm)
    b.report_status(spilled[0], 500)
    assert spilled[0].st.state == UNHEALTHY and spilled[0] not in b.live
    assert bytes(table.mm) == before  # counted in this worker only
    registry.poll(now=1e9)  # a re-read of the table leaves the private state alone
    assert spilled[0].st.state == UNHEALTHY and len(b.live) == 99

    victim = slotted[0]
    b.report_status(victim, 500)
    after = bytes(table.mm)
    changed = [
        s
        for s in range(64)
        if before[HEADER_SIZE + s * SLOT_SIZE : HEADER_SIZE + (s + 1) * SLOT_SIZE]
        != after[HEADER_SIZE + s * SLOT_SIZE : HEADER_SIZE + (s + 1) * SLOT_SIZE]
    ]
    assert changed == [victim.st.slot] and table.state(victim.st.slot) == UNHEALTHY
    assert all(p.st.state == UNSET for p in b.peers if p not in (victim, spilled[0]))
    assert "capacity=48 used=48" in repr(table)


def test_a_stale_slot_never_counts_for_its_new_owner() -> None:
    # A swept slot goes to the next address probing through it; a writer still holding the old
    # index must not count into (or force) the new owner's state.
    table = HealthTable(None, 16)
    old, new = 0x10, 0x20  # both start probing at slot 0
    assert table.slot(old, 1) == 0
    assert table.sweep([]) == 1
    assert table.slot(new, 2) == 0  # the dead slot is reused
    assert table.report(0, CTR_HTTP, 1, old) is None
    assert not table.set(0, False, old)
    assert table.read(0)[:2] == (UNSET, H.ZERO)
    assert table.report(0, CTR_HTTP, 1, new) == (UNSET, UNHEALTHY)


def test_the_default_table_holds_more_than_the_old_16384_addresses() -> None:
    # The load cap must not shrink what fitted before: 20,000 addresses all get a slot, and a
    # lookup of an unknown one still ends at a never-used slot.
    table = HealthTable(None)
    fps = [H.key_fp("u", f"t{i}", "10.0.0.1", 80) for i in range(20000)]
    slots = {table.slot(fp, tfp) for fp, tfp in fps}
    assert -1 not in slots and len(slots) == 20000
    assert table.find(H.key_fp("u", "absent", "10.0.0.1", 80)[0]) == -1
    assert table.capacity == 24576
