"""The reflector against the fake API server through the real client: paging, resume after a
dropped stream, 410 Gone (status and in-stream) with re-list and diff, bookmarks, backoff."""

from __future__ import annotations

import asyncio
import base64
import copy
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from fastkong.k8s.store import Store
from fastkong.k8s.watch import RESOURCES, Backoff, Reflector, Resource, list_calls
from tests.k8s.fake_apiserver import FakeApiServer
from tests.k8s.kube import client, eventually, service

SERVICES = next(r for r in RESOURCES if r.kind == "Service")
INGRESSES = next(r for r in RESOURCES if r.kind == "Ingress")


@asynccontextmanager
async def reflecting(
    api: FakeApiServer, resource: Resource = SERVICES, **kwargs: Any
) -> AsyncIterator[Reflector]:
    kwargs.setdefault("backoff", Backoff(0.02, 0.2, rng=random.Random(1)))
    kwargs.setdefault("watch_timeout", 5.0)
    async with client(api) as c:
        calls = list_calls(c, resource)
        reflector = Reflector(*calls[0], Store(), fallbacks=calls[1:], **kwargs)
        task = asyncio.create_task(reflector.run())
        try:
            await asyncio.wait_for(reflector.synced.wait(), 10)
            yield reflector
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def cached(reflector: Reflector) -> dict[tuple[str, str], str]:
    """What the reflector's store holds: (namespace, name) -> resourceVersion."""
    return {
        (o["metadata"]["namespace"], o["metadata"]["name"]): o["metadata"]["resourceVersion"]
        for o in reflector.store.objects(reflector.resource.kind)
    }


def truth(api: FakeApiServer, kind: str = "Service") -> dict[tuple[str, str], str]:
    return {
        (o["metadata"]["namespace"], o["metadata"]["name"]): o["metadata"]["resourceVersion"]
        for o in api.all(kind)
    }


def seed(api: FakeApiServer, n: int = 5) -> None:
    for i in range(n):
        api.create(service(f"svc-{i}", 80 + i))


async def test_list_is_paged_from_one_snapshot_and_items_get_kind_and_api_version() -> None:
    async with FakeApiServer() as api:
        seed(api, 5)
        async with reflecting(api, page_size=2) as r:
            assert cached(r) == truth(api)
            assert r.rv == str(api.rv)
            obj = r.store.get("Service", "default", "svc-0")
            assert obj is not None and obj["kind"] == "Service" and obj["apiVersion"] == "v1"
            lists = [p for m, p in api.requests if "watch" not in p]
            assert len(lists) == 3 and "continue=" in lists[1]


async def test_events_are_applied_and_advance_the_resource_version() -> None:
    async with FakeApiServer() as api:
        seed(api, 2)
        async with reflecting(api) as r:
            api.create(service("new"))
            changed = api.get("Service", "default", "svc-0")
            assert changed is not None
            changed["spec"]["ports"][0]["port"] = 8080
            api.update(changed)
            api.delete("Service", "default", "svc-1")
            await eventually(lambda: cached(r) == truth(api), what="store == server")
            assert r.rv == str(api.rv)
            assert r.stats.events == 3 and r.stats.lists == 1


@pytest.mark.parametrize("expired_as", ["event", "status"])
async def test_changes_during_a_gap_are_right_after_410(expired_as: str) -> None:
    """Created, changed and deleted while no watch was open, history compacted meanwhile: the
    resumed watch gets 410 (HTTP status or in-stream ERROR), re-lists, and the diff removes
    what was deleted during the gap."""
    async with FakeApiServer(expired_as=expired_as) as api:  # type: ignore[arg-type]
        seed(api, 4)
        async with reflecting(api, backoff=Backoff(0.3, 0.3, jitter=0.0)) as r:
            await eventually(lambda: api.watch_count("Service") == 1)
            api.fail("GET", "/services", 503, times=1)  # the resumed watch fails once: a gap
            api.drop_streams()
            api.create(service("born-in-gap"))
            changed = api.get("Service", "default", "svc-0")
            assert changed is not None
            changed["metadata"]["labels"] = {"changed": "yes"}
            api.update(changed)
            api.delete("Service", "default", "svc-1")
            api.create(service("short-lived"))
            api.delete("Service", "default", "short-lived")
            api.compact()
            await eventually(lambda: cached(r) == truth(api), what="store == server")
            assert r.stats.expired == 1 and r.stats.lists == 2
            assert ("default", "svc-1") not in cached(r)
            obj = r.store.get("Service", "default", "svc-0")
            assert obj is not None and obj["metadata"]["labels"] == {"changed": "yes"}
            assert r.rv == str(api.rv)


async def test_a_dropped_stream_resumes_from_the_last_resource_version_without_a_relist() -> None:
    async with FakeApiServer() as api:
        seed(api, 3)
        async with reflecting(api) as r:
            api.create(service("seen"))
            await eventually(lambda: r.rv == str(api.rv))
            last = r.rv
            api.drop_streams()
            api.create(service("after-drop"))
            api.delete("Service", "default", "svc-0")
            await eventually(lambda: cached(r) == truth(api), what="store == server")
            assert r.stats.lists == 1 and r.stats.dropped >= 1 and r.stats.expired == 0
            watches = [p for _, p in api.requests if "watch=true" in p]
            assert f"resourceVersion={last}&" in watches[-1]
            assert all("allowWatchBookmarks=true" in p for p in watches)


async def test_an_event_larger_than_the_read_buffer_is_applied() -> None:
    secrets = next(x for x in RESOURCES if x.kind == "Secret")
    big = base64.b64encode(b"x" * (3 * 1024 * 1024)).decode()
    async with FakeApiServer() as api:
        async with reflecting(api, secrets) as r:
            api.create({"kind": "Secret", "metadata": {"name": "big"}, "data": {"blob": big}})
            api.create({"kind": "Secret", "metadata": {"name": "small"}, "data": {}})
            await eventually(lambda: r.store.get("Secret", "default", "small"))
            got = r.store.get("Secret", "default", "big")
            assert got is not None and got["data"]["blob"] == big
            assert r.stats.dropped == 0


async def test_an_in_stream_410_on_an_open_watch_relists() -> None:
    async with FakeApiServer() as api:
        seed(api, 2)
        async with reflecting(api) as r:
            await eventually(lambda: api.watch_count("Service") == 1)
            api.compact()
            api.expire_streams()
            api.delete("Service", "default", "svc-0")
            await eventually(lambda: cached(r) == truth(api), what="store == server")
            assert r.stats.expired == 1 and r.stats.lists == 2


async def test_bookmarks_advance_the_rv_so_a_reconnect_after_compaction_needs_no_relist() -> None:
    """Only Services change; the Ingress watch sees none of it, but its bookmarks carry the
    server's RV, so after compaction and a dropped stream it resumes without a 410."""
    async with FakeApiServer(bookmark_interval=0.05) as api:
        async with reflecting(api, INGRESSES) as r:
            start = r.rv
            seed(api, 3)
            await eventually(lambda: r.rv == str(api.rv), what="bookmark RV")
            assert int(r.rv) > int(start) and r.stats.bookmarks > 0 and r.stats.events == 0
            api.compact()
            api.drop_streams()
            api.create(
                {
                    "kind": "Ingress",
                    "metadata": {"name": "late", "namespace": "default"},
                    "spec": {},
                }
            )
            await eventually(lambda: r.store.get("Ingress", "default", "late"))
            assert r.stats.lists == 1 and r.stats.expired == 0


async def test_without_bookmarks_the_same_reconnect_needs_a_relist() -> None:
    async with FakeApiServer(bookmark_interval=None) as api:
        async with reflecting(api, INGRESSES) as r:
            seed(api, 3)
            await eventually(lambda: api.watch_count("Ingress") == 1)
            api.compact()
            api.drop_streams()
            await eventually(lambda: r.stats.lists == 2, what="relist")
            assert r.stats.expired == 1


async def test_list_failures_back_off_and_retry_after_is_honoured() -> None:
    async with FakeApiServer() as api:
        seed(api, 1)
        api.fail("GET", "/services", 500, times=2)
        api.fail("GET", "/services", 429, times=1, retry_after=1)
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with reflecting(api) as r:
            assert r.stats.errors == 3 and cached(r) == truth(api)
            assert loop.time() - started >= 1.0


async def test_a_kind_the_server_does_not_serve_is_synced_and_empty() -> None:
    plugins = next(x for x in RESOURCES if x.kind == "KongPlugin")
    async with FakeApiServer() as api:
        api.fail("GET", "/kongplugins", 404, times=1)
        async with reflecting(api, plugins) as r:
            assert r.synced.is_set() and r.stats.lists == 0
            assert r.store.synced == {"KongPlugin"}


async def test_a_kind_not_served_at_its_version_is_listed_at_its_fallback() -> None:
    # The fake serves BackendTLSPolicy at v1alpha3 only, as a cluster with the Gateway API's
    # experimental CRDs before v1.4; the controller asks for v1 first.
    policies = next(x for x in RESOURCES if x.kind == "BackendTLSPolicy")
    assert (policies.version, policies.fallbacks) == ("v1", ("v1alpha3",))
    policy = {
        "apiVersion": "gateway.networking.k8s.io/v1alpha3",
        "kind": "BackendTLSPolicy",
        "metadata": {"name": "p", "namespace": "default"},
        "spec": {"targetRefs": [], "validation": {"hostname": "a.test"}},
    }
    async with FakeApiServer() as api:
        api.create(policy)
        async with reflecting(api, policies) as r:
            assert r.resource.version == "v1alpha3" and r.stats.lists == 1
            (found,) = r.store.objects("BackendTLSPolicy")
            assert found["apiVersion"] == "gateway.networking.k8s.io/v1alpha3"
            # Later changes come through the fallback's watch.
            changed = {**policy, "spec": {**policy["spec"], "options": {"a": "b"}}}
            api.update(changed)
            await eventually(
                lambda: r.store.objects("BackendTLSPolicy")[0]["spec"].get("options"),
                what="the change watched",
            )


async def test_periodic_resync_relists() -> None:
    async with FakeApiServer() as api:
        seed(api, 1)
        async with reflecting(api, resync=0.3) as r:
            await eventually(lambda: r.stats.lists >= 3, what="resyncs")


def test_backoff_grows_with_jitter_up_to_the_cap() -> None:
    b = Backoff(0.1, 1.0, jitter=1.0, rng=random.Random(7))
    delays = [b.next() for _ in range(8)]
    for i, d in enumerate(delays):
        base = min(1.0, 0.1 * 2**i)
        assert base <= d <= min(1.0, 2 * base)
    assert delays[-1] == pytest.approx(1.0)
    assert len({round(d, 6) for d in delays[:3]}) == 3
    b.reset()
    assert b.next() < 0.2
    assert repr(b).startswith("<Backoff failures=1")


def test_store_replace_diffs_and_apply_is_idempotent() -> None:
    seen: list[tuple[str, str]] = []
    store = Store(on_change=lambda kind, d: seen.append((d[0], d[1]["metadata"]["name"])))
    a = {"kind": "Service", "metadata": {"name": "a", "namespace": "x", "resourceVersion": "1"}}
    b = {"kind": "Service", "metadata": {"name": "b", "namespace": "x", "resourceVersion": "2"}}
    assert store.apply("ADDED", a) and not store.apply("MODIFIED", dict(a))
    store.apply("ADDED", b)
    b2 = {**b, "metadata": {**b["metadata"], "resourceVersion": "3", "managedFields": [{}]}}
    c = {"kind": "Service", "metadata": {"name": "c", "namespace": "x", "resourceVersion": "4"}}
    deltas = store.replace("Service", [b2, c])
    assert [(t, o["metadata"]["name"]) for t, o in deltas] == [
        ("DELETED", "a"),
        ("MODIFIED", "b"),
        ("ADDED", "c"),
    ]
    stored = store.get("Service", "x", "b")
    assert stored is not None and "managedFields" not in stored["metadata"]
    assert seen[-3:] == [("DELETED", "a"), ("MODIFIED", "b"), ("ADDED", "c")]
    assert not store.apply("DELETED", a)
    assert repr(store) == "<Store gen=5 Service=2 synced=1>"


async def test_tlsroute_is_listed_at_the_first_version_served() -> None:
    # Standard (v1) since Gateway API v1.5; the fake serves the older experimental v1alpha2,
    # after two 404s (v1, v1alpha3).
    routes = next(x for x in RESOURCES if x.kind == "TLSRoute")
    assert (routes.version, routes.fallbacks) == ("v1", ("v1alpha3", "v1alpha2"))
    async with FakeApiServer() as api:
        async with reflecting(api, routes) as r:
            assert r.resource.version == "v1alpha2" and r.stats.lists == 1
            assert not r.fallbacks


CONFIGMAPS = next(r for r in RESOURCES if r.kind == "ConfigMap")


def _configmap(name: str, labelled: bool) -> dict[str, Any]:
    labels = {"konghq.com/ca-cert": "true"} if labelled else {}
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "default", "labels": labels},
        "data": {"id": name},
    }


async def test_configmaps_are_watched_by_label_and_leave_when_it_goes() -> None:
    """Only CA ConfigMaps reach the cache (the cluster's others are many and large); one whose
    label is removed leaves it (the API server's DELETED for an object leaving a selector), one
    that gains it arrives, also across a dropped stream."""
    async with FakeApiServer() as api:
        api.create(_configmap("ca", True))
        api.create(_configmap("app-settings", False))
        async with reflecting(api, CONFIGMAPS) as r:
            assert set(cached(r)) == {("default", "ca")}
            assert all("labelSelector=konghq.com" in p for _, p in api.requests)
            # (copies: the fake's get() hands out the stored object itself)
            gains = copy.deepcopy(api.get("ConfigMap", "default", "app-settings"))
            assert gains is not None
            gains["metadata"]["labels"] = {"konghq.com/ca-cert": "true"}
            api.update(gains)
            await eventually(
                lambda: set(cached(r)) == {("default", "ca"), ("default", "app-settings")}
            )
            loses = copy.deepcopy(api.get("ConfigMap", "default", "ca"))
            assert loses is not None
            loses["metadata"]["labels"] = {}
            api.drop_streams("ConfigMap")  # the change is replayed on the resumed watch
            api.update(loses)
            await eventually(lambda: set(cached(r)) == {("default", "app-settings")})
            assert r.stats.lists == 1
