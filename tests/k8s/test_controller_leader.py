"""Leader election on a Lease in the fake API server, through the real client: one leader of
two, failover when the lease expires, fast handover on release, stepping down when the API
server is unreachable, and only the leader publishing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime

from kubernetes.aio.client import CoordinationV1Api

from fastkong.k8s.leader import LeaderElector, micro
from tests.k8s.fake_apiserver import MICRO_TIME, FakeApiServer
from tests.k8s.kube import (
    NS,
    backend,
    client,
    configmap,
    controller,
    eventually,
    gateway,
    gateway_class,
    httproute,
    ingress,
)

LEASE = "fastkong-controller"
TIMING = {"lease_duration": 1.5, "renew_deadline": 1.0, "retry_period": 0.1}


@asynccontextmanager
async def candidates(api: FakeApiServer, *names: str) -> AsyncIterator[list[LeaderElector]]:
    electors: list[LeaderElector] = []
    tasks: list[asyncio.Task[None]] = []
    changes: dict[str, list[bool]] = {}
    async with AsyncExitStack() as stack:
        for name in names:
            c = await stack.enter_async_context(client(api))
            changes[name] = []
            elector = LeaderElector(
                CoordinationV1Api(c),
                NS,
                LEASE,
                name,
                on_change=changes[name].append,
                **TIMING,  # type: ignore[arg-type]
            )
            electors.append(elector)
            tasks.append(asyncio.create_task(elector.run()))
        try:
            yield electors
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


def holder(api: FakeApiServer) -> str | None:
    lease = api.get("Lease", NS, LEASE)
    return None if lease is None else lease["spec"].get("holderIdentity")


def published(api: FakeApiServer) -> str:
    cm = api.get("ConfigMap", NS, "fastkong-config")
    return "" if cm is None else str(cm["data"]["kong.yml"])


def leaders(electors: list[LeaderElector]) -> list[str]:
    return [e.identity for e in electors if e.is_leader]


async def test_two_candidates_one_leader_and_the_lease_names_it() -> None:
    async with FakeApiServer() as api, candidates(api, "a", "b") as electors:
        await eventually(lambda: len(leaders(electors)) == 1, what="a leader")
        await asyncio.sleep(0.5)  # several retry periods: still exactly one
        (leader,) = leaders(electors)
        assert holder(api) == leader
        lease = api.get("Lease", NS, LEASE)
        assert lease is not None
        assert lease["spec"]["leaseDurationSeconds"] == 2
        renew = lease["spec"]["renewTime"]
        assert MICRO_TIME.match(renew), renew
        follower = next(e for e in electors if not e.is_leader)
        assert follower.observed_holder == leader
        assert repr(follower).endswith(f" follower of {leader}>")
        assert repr(next(e for e in electors if e.is_leader)).endswith(f"{leader} leader>")


async def test_failover_when_the_leader_stops_renewing() -> None:
    """The leader is cut off (every lease call fails): it steps down after its renew deadline,
    without touching the Lease; the follower waits a full lease duration, measured on its own
    clock since it last saw the record change, then takes over and counts a transition."""
    async with FakeApiServer() as api, candidates(api, "a") as (a,):
        await eventually(lambda: a.is_leader)
        async with candidates(api, "b") as (b,):
            await asyncio.sleep(0.3)
            assert not b.is_leader
            a.try_acquire_or_renew = _never  # type: ignore[method-assign]
            cut_at = time.monotonic()
            await eventually(lambda: not a.is_leader, timeout=3, what="a steps down")
            stepped_down = time.monotonic() - cut_at
            await eventually(lambda: b.is_leader, timeout=6, what="failover")
            took = time.monotonic() - cut_at
            assert stepped_down < 1.3 <= took  # a stopped leading before b started
            assert holder(api) == "b"
            lease = api.get("Lease", NS, LEASE)
            assert lease is not None and lease["spec"]["leaseTransitions"] == 1


def test_lease_times_are_valid_micro_times_even_on_a_whole_second() -> None:
    whole = datetime(2026, 11, 25, 10, 0, 0, tzinfo=UTC)
    assert MICRO_TIME.match(micro(whole).isoformat())
    assert micro(whole.replace(microsecond=5)).microsecond == 5


async def _never() -> bool:
    return False


async def test_a_released_lease_is_taken_over_at_once() -> None:
    async with FakeApiServer() as api:
        first = candidates(api, "a")
        (a,) = await first.__aenter__()
        await eventually(lambda: a.is_leader)
        async with candidates(api, "b") as (b,):
            await asyncio.sleep(0.3)
            assert not b.is_leader
            await first.__aexit__(None, None, None)  # "a" shuts down and releases the Lease
            assert holder(api) is None
            released_at = time.monotonic()
            await eventually(lambda: b.is_leader, timeout=3)
            assert time.monotonic() - released_at < 1.0  # not a full lease duration


async def test_a_leader_that_cannot_renew_steps_down() -> None:
    async with FakeApiServer() as api, candidates(api, "a") as (elector,):
        await eventually(lambda: elector.is_leader)
        api.fail("GET", "/leases/", 500, times=1000)
        await eventually(lambda: not elector.is_leader, timeout=3, what="stepped down")
        api.faults.clear()
        await eventually(lambda: elector.is_leader, timeout=3, what="re-acquired")


async def test_only_the_leader_publishes_and_the_follower_takes_over() -> None:
    async with FakeApiServer() as api:
        api.create(configmap("fastkong-config", '_format_version: "3.0"\n'))
        backend(api, "echo", 9)
        api.create(ingress("one", "/one", "echo"))
        api.create(gateway_class())
        api.create(gateway())
        api.create(httproute("route-one"))
        opts = {"leader_election": True, "configmap": "fastkong-config", **TIMING}
        async with controller(api, pod_name="c-1", **opts) as c1:
            await eventually(lambda: c1.is_leader and c1.configmap and c1.configmap.writes == 1)
            await eventually(lambda: c1.gateway_status.updates == 3, what="c-1 wrote status")
            async with controller(api, pod_name="c-2", **opts) as c2:
                await eventually(lambda: c2.ready.is_set())
                api.create(httproute("route-two"))  # a status to write, for the leader only
                await eventually(lambda: c1.gateway_status.updates == 5, what="c-1 again")
                await asyncio.sleep(0.3)
                assert not c2.is_leader and c2.configmap is not None
                assert c2.configmap.writes == 0 and c2.translations == 0
                assert c2.gateway_status.updates == 0
                await c1.stop()  # releases the Lease
                await eventually(lambda: c2.is_leader, timeout=3, what="c-2 leads")
                api.create(ingress("two", "/two", "echo"))
                await eventually(
                    lambda: (
                        "/two" in api.get("ConfigMap", NS, "fastkong-config")["data"]["kong.yml"]
                    )
                )
                assert holder(api) == "c-2"
                api.create(httproute("route-three"))
                await eventually(lambda: c2.gateway_status.updates >= 2, what="c-2 writes")
