"""Publishing: the ConfigMap (written once per config), and POST /config to real fastkong
gateways found through the admin Service's EndpointSlices (pushed again after a gateway
restarts empty); a rejected push becomes Events."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from aiohttp import web

from fastkong.k8s.events import REASON_APPLY
from fastkong.k8s.publish import EMPTY_HASH, HASH_ANNOTATION, Gateway, discover_gateways
from fastkong.k8s.store import Store
from tests.helpers import Echo, wait_port
from tests.helpers import Gateway as DataPlane
from tests.k8s.fake_apiserver import FakeApiServer
from tests.k8s.kube import (
    NS,
    backend,
    configmap,
    controller,
    endpoint_slice,
    eventually,
    ingress,
)

BASE = '_format_version: "3.0"\n'


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def published(api: FakeApiServer, name: str = "fastkong-config") -> dict[str, Any]:
    cm = api.get("ConfigMap", NS, name)
    assert cm is not None
    return cm


async def test_the_configmap_gets_the_config_once_per_config() -> None:
    async with FakeApiServer() as api:
        api.create(configmap("fastkong-config", BASE))
        backend(api, "echo", 9001)
        api.create(ingress("one", "/one", "echo"))
        async with controller(api, configmap="fastkong-config") as ctl:
            assert ctl.configmap is not None
            await eventually(lambda: ctl.configmap is not None and ctl.configmap.writes == 1)
            cm = published(api)
            text = cm["data"]["kong.yml"]
            assert "/one" in text and "127.0.0.1:9001" in text
            assert cm["metadata"]["annotations"][HASH_ANNOTATION] == md5(text) == ctl.digest
            rv = cm["metadata"]["resourceVersion"]

            translations = ctl.translations
            api.create(
                {"kind": "Secret", "metadata": {"name": "unrelated", "namespace": "default"}}
            )
            await eventually(lambda: ctl.translations > translations)
            await asyncio.sleep(0.2)
            assert ctl.configmap.writes == 1
            assert published(api)["metadata"]["resourceVersion"] == rv

            api.create(ingress("two", "/two", "echo"))
            await eventually(lambda: "/two" in published(api)["data"]["kong.yml"])
            await eventually(lambda: ctl.configmap.writes == 2, what="the write counted")
            assert repr(ctl.configmap).endswith(f"hash={ctl.digest} writes=2>")


async def test_a_kong_upstream_policy_is_watched_and_applied() -> None:
    """The controller watches KongUpstreamPolicy (v1beta1): a policy created after the first
    config, named by the Service's konghq.com/upstream-policy, reaches the published upstream."""
    async with FakeApiServer() as api:
        api.create(configmap("fastkong-config", BASE))
        backend(api, "echo", 9001)
        svc = api.get("Service", "default", "echo")
        assert svc is not None
        svc["metadata"]["annotations"] = {"konghq.com/upstream-policy": "sticky"}
        api.update(svc)
        api.create(ingress("one", "/one", "echo"))
        async with controller(api, configmap="fastkong-config") as ctl:
            await eventually(lambda: ctl.configmap is not None and ctl.configmap.writes >= 1)
            assert "consistent-hashing" not in published(api)["data"]["kong.yml"]
            api.create(
                {
                    "apiVersion": "configuration.konghq.com/v1beta1",
                    "kind": "KongUpstreamPolicy",
                    "metadata": {"name": "sticky", "namespace": "default"},
                    "spec": {"algorithm": "consistent-hashing", "hashOn": {"header": "x-user"}},
                }
            )
            await eventually(
                lambda: "consistent-hashing" in published(api)["data"]["kong.yml"],
                what="the policy in the published config",
            )
            config = yaml.safe_load(published(api)["data"]["kong.yml"])
            (upstream,) = config["upstreams"]
            assert upstream["algorithm"] == "consistent-hashing"
            assert upstream["hash_on"] == "header"
            assert upstream["hash_on_header"] == "x-user"
            # and KIC's policy status: the Service as its ancestor, accepted and programmed

            def ancestors() -> list[dict[str, Any]]:
                policy = api.get("KongUpstreamPolicy", "default", "sticky") or {}
                return list(policy.get("status", {}).get("ancestors", []))

            await eventually(lambda: bool(ancestors()), what="the policy's status")
            (ancestor,) = ancestors()
            assert ancestor["ancestorRef"]["name"] == "echo"
            assert [(c["type"], c["status"]) for c in ancestor["conditions"]] == [
                ("Accepted", "True"),
                ("Programmed", "True"),
            ]


async def test_a_kong_vault_is_watched_and_published_as_a_vault() -> None:
    """KongVault (v1alpha1, cluster-scoped) goes through the real list/watch: created after the
    first config it reaches the published config; deleted, it leaves it."""
    async with FakeApiServer() as api:
        api.create(configmap("fastkong-config", BASE))
        backend(api, "echo", 9001)
        api.create(ingress("one", "/one", "echo"))
        async with controller(api, configmap="fastkong-config") as ctl:
            await eventually(lambda: ctl.configmap is not None and ctl.configmap.writes >= 1)
            assert "vaults" not in yaml.safe_load(published(api)["data"]["kong.yml"])
            api.create(
                {
                    "apiVersion": "configuration.konghq.com/v1alpha1",
                    "kind": "KongVault",
                    "metadata": {
                        "name": "app-env",
                        "annotations": {"kubernetes.io/ingress.class": "fastkong"},
                    },
                    "spec": {"backend": "env", "prefix": "app-env", "config": {"prefix": "APP_"}},
                }
            )

            def vaults() -> list[dict[str, Any]]:
                config = yaml.safe_load(published(api)["data"]["kong.yml"])
                return list(config.get("vaults", []))

            await eventually(lambda: len(vaults()) == 1, what="the vault published")
            (vault,) = vaults()
            assert (vault["name"], vault["prefix"], vault["config"]) == (
                "env",
                "app-env",
                {"prefix": "APP_"},
            )
            api.delete("KongVault", "", "app-env")
            await eventually(lambda: not vaults(), what="the vault withdrawn")


async def test_kong_crds_get_kic_s_programmed_condition() -> None:
    """After a delivery, KongPlugins (and KongClusterPlugins, KongConsumers, KongVaults of our
    class) get KIC's Programmed condition through the status subresource: True for one an
    entity came from, Pending for one nothing uses, Invalid for one that was left out."""

    def plugin(name: str, kind: str = "KongPlugin", **meta: Any) -> dict[str, Any]:
        return {
            "apiVersion": "configuration.konghq.com/v1",
            "kind": kind,
            "metadata": {
                "name": name,
                **({"namespace": "default"} if kind == "KongPlugin" else {}),
                **meta,
            },
            "plugin": "cors",
        }

    def condition(kind: str, ns: str, name: str) -> tuple[str, str] | None:
        obj = api.get(kind, ns, name)
        found = [
            c
            for c in (obj or {}).get("status", {}).get("conditions", [])
            if c["type"] == "Programmed"
        ]
        return (found[0]["status"], found[0]["reason"]) if found else None

    async with FakeApiServer() as api:
        api.create(configmap("fastkong-config", BASE))
        backend(api, "echo", 9001)
        routed = ingress("one", "/one", "echo")
        routed["metadata"]["annotations"] = {"konghq.com/plugins": "cors"}
        api.create(routed)
        api.create(plugin("cors"))
        api.create(plugin("idle"))
        ours = {"annotations": {"kubernetes.io/ingress.class": "fastkong"}}
        api.create(plugin("global-cors", "KongClusterPlugin", labels={"global": "true"}, **ours))
        api.create(
            {
                "apiVersion": "configuration.konghq.com/v1alpha1",
                "kind": "KongVault",
                "metadata": {"name": "cloud", **ours},
                "spec": {"backend": "aws", "prefix": "cloud"},
            }
        )
        async with controller(api, configmap="fastkong-config") as ctl:
            await eventually(lambda: condition("KongVault", "", "cloud") is not None)
            assert condition("KongPlugin", "default", "cors") == ("True", "Programmed")
            assert condition("KongPlugin", "default", "idle") == ("False", "Pending")
            assert condition("KongClusterPlugin", "", "global-cors") == ("True", "Programmed")
            assert condition("KongVault", "", "cloud") == ("False", "Invalid")
            # (the count goes up once the round of writes is over, after the objects show it)
            await eventually(lambda: ctl.crd_status.updates == 4)
            writes = ctl.crd_status.updates
            # a new translation that changes nothing for them writes nothing
            api.create(ingress("two", "/two", "echo"))
            await eventually(lambda: "/two" in published(api)["data"]["kong.yml"])
            await asyncio.sleep(0.3)
            assert ctl.crd_status.updates == writes


async def test_a_burst_of_changes_is_one_translation_and_a_failed_write_is_retried() -> None:
    async with FakeApiServer() as api:
        api.create(configmap("fastkong-config", BASE))
        backend(api, "echo", 9001)
        async with controller(api, configmap="fastkong-config", debounce=0.25) as ctl:
            await eventually(lambda: ctl.configmap is not None and ctl.configmap.writes == 1)
            before = ctl.translations
            api.fail("PATCH", "/configmaps/fastkong-config", 500, times=2)
            for i in range(20):
                api.create(ingress(f"i{i}", f"/p{i}", "echo"))
                await asyncio.sleep(0.005)
            await eventually(lambda: "/p19" in published(api)["data"]["kong.yml"], what="all 20")
            # The fake server applies the PATCH before the controller reads its answer and
            # counts the write: wait for the count, then check that nothing more follows.
            await eventually(lambda: ctl.configmap.writes == 2, what="the retried write counted")
            await asyncio.sleep(0.3)
            assert ctl.translations - before <= 2
            assert ctl.configmap.writes == 2
            failed = [p for m, p in api.requests if m == "PATCH" and "configmaps" in p]
            assert len(failed) == 4  # the first write, two failures, the retry


async def test_an_absent_configmap_is_created_in_the_given_namespace() -> None:
    async with FakeApiServer() as api:
        async with controller(api, configmap="other/kong-config") as ctl:
            await eventually(lambda: api.get("ConfigMap", "other", "kong-config"))
            cm = api.get("ConfigMap", "other", "kong-config")
            assert cm is not None and cm["data"]["kong.yml"] == ctl.text
            assert cm["metadata"]["labels"] == {"app.kubernetes.io/name": "fastkong"}


def test_discovery_takes_ready_pod_endpoints_on_the_named_port() -> None:
    store = Store()
    objs = [
        endpoint_slice("a-1", "admin", "10.0.0.1", 8001, NS, "admin", pod="gw-1"),
        endpoint_slice("a-2", "admin", "10.0.0.2", 8001, NS, "admin", pod="gw-2", ready=False),
        endpoint_slice("a-3", "admin", "10.0.0.3", 8001, NS, "admin", terminating=True),
        endpoint_slice("a-4", "admin", "10.0.0.4", 8100, NS, "status"),
        endpoint_slice("a-5", "admin", "fd00::5", 8001, NS, "admin"),
        endpoint_slice("o-1", "other", "10.0.0.6", 8001, NS, "admin"),
        endpoint_slice("x-1", "admin", "10.0.0.7", 8001, "elsewhere", "admin"),
    ]
    node = endpoint_slice("a-6", "admin", "10.0.0.8", 8001, NS, "admin")
    node["endpoints"][0]["targetRef"] = {"kind": "Node", "name": "n"}
    for obj in [*objs, node]:
        store.apply("ADDED", obj)
    found = discover_gateways(store, NS, "admin")
    assert found == [Gateway("10.0.0.1", 8001, "gw-1"), Gateway("fd00::5", 8001)]
    assert found[1].url == "http://[fd00::5]:8001"
    assert str(found[0]) == "gw-1@http://10.0.0.1:8001"


# -- real gateways ---------------------------------------------------------------------------


@pytest.fixture
def echo() -> Iterator[Echo]:
    e = Echo().start()
    yield e
    e.stop()


def start_gateway(workdir: Path, ports: tuple[int, int, int] | None = None) -> DataPlane:
    """A fastkong with no config (fresh prefix: nothing persisted), optionally on given ports."""
    workdir.mkdir(parents=True)
    gw = DataPlane(workdir, None, 1, "--prefix", str(workdir / "prefix"))
    if ports is not None:
        gw.port, gw.status_port, gw.admin_port = ports
    gw.start(wait_ready=False)
    wait_port(gw.admin_port, proc=gw.proc)
    return gw


async def config_hash(http: httpx.AsyncClient, gw: DataPlane) -> str:
    try:
        r = await http.get(f"http://127.0.0.1:{gw.admin_port}/status")
    except httpx.HTTPError:
        return ""
    return str(r.json()["configuration_hash"])


async def serves(http: httpx.AsyncClient, gws: list[DataPlane], path: str) -> bool:
    """Every gateway proxies ``path`` (its workers have loaded the config, not only the
    supervisor that answers /status)."""
    codes = [(await http.get(gw.url(path))).status_code for gw in gws]
    return codes == [200] * len(gws)


@pytest.mark.integration
async def test_gateways_get_the_config_pushed_and_again_after_restarting_empty(
    tmp_path: Path, echo: Echo
) -> None:
    gws = list(
        await asyncio.gather(
            *(asyncio.to_thread(start_gateway, tmp_path / f"gw{i}") for i in range(2))
        )
    )
    try:
        async with FakeApiServer() as api, httpx.AsyncClient() as http:
            backend(api, "echo", echo.port)
            api.create(ingress("one", "/one", "echo"))
            for i, gw in enumerate(gws):
                api.create(
                    endpoint_slice(
                        f"fastkong-admin-{i}",
                        "fastkong-admin",
                        "127.0.0.1",
                        gw.admin_port,
                        NS,
                        "admin",
                        pod=f"gw-{i}",
                    )
                )
            async with controller(api, admin_service="fastkong-admin") as ctl:
                await eventually(lambda: ctl.digest, what="translated")

                async def in_step() -> bool:
                    hashes = [await config_hash(http, gw) for gw in gws]
                    return hashes == [ctl.digest] * len(gws)

                await eventually(in_step, what="both gateways have the config")
                assert ctl.digest == md5(ctl.text)  # what fastkong reports for this config
                await eventually(lambda: serves(http, gws, "/one"), what="/one everywhere")
                assert ctl.gateways is not None and ctl.gateways.pushes == 2

                # gw0 restarts with nothing persisted: it comes back empty, is noticed by the
                # /status poll and pushed again although the config itself did not change.
                ports = (gws[0].port, gws[0].status_port, gws[0].admin_port)
                await asyncio.to_thread(gws[0].stop)
                gws[0] = await asyncio.to_thread(start_gateway, tmp_path / "gw0-again", ports)
                await eventually(in_step, what="the restarted gateway has the config again")
                await eventually(lambda: serves(http, gws, "/one"), what="/one again")
                assert ctl.gateways.pushes == 3

                api.create(ingress("two", "/two", "echo"))

                await eventually(lambda: serves(http, gws, "/two"), what="/two everywhere")
                assert await in_step()
    finally:
        await asyncio.gather(*(asyncio.to_thread(gw.stop) for gw in gws))


# -- a gateway that rejects ------------------------------------------------------------------


@asynccontextmanager
async def rejecting_gateway() -> AsyncIterator[tuple[int, list[dict[str, Any]]]]:
    """An admin API that answers every POST /config with Kong's 400 (code 14) and
    flattened errors tagged with the Ingress ``default/one``."""
    seen: list[dict[str, Any]] = []

    async def post_config(request: web.Request) -> web.Response:
        seen.append(
            {
                "query": dict(request.query),
                "token": request.headers.get("Kong-Admin-Token"),
                "body": await request.json(),
            }
        )
        error = {
            "entity_type": "route",
            "entity_name": "default.one.echo..80",
            "entity_tags": ["k8s-name:one", "k8s-namespace:default", "k8s-kind:Ingress"],
            "errors": [{"field": "paths", "message": "bad path", "type": "field"}],
        }
        body = {"code": 14, "name": "invalid declarative configuration", "message": "invalid"}
        return web.json_response({**body, "flattened_errors": [error]}, status=400)

    async def status(request: web.Request) -> web.Response:
        return web.json_response({"configuration_hash": EMPTY_HASH})

    app = web.Application()
    app.router.add_post("/config", post_config)
    app.router.add_get("/status", status)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield int(runner.addresses[0][1]), seen
    finally:
        await runner.cleanup()


async def test_a_rejected_push_becomes_an_event_and_is_not_retried() -> None:
    async with FakeApiServer() as api, rejecting_gateway() as (port, seen):
        backend(api, "echo", 9001)
        api.create(ingress("one", "/one", "echo"))
        api.create(endpoint_slice("adm", "fastkong-admin", "127.0.0.1", port, NS, "admin"))
        async with controller(api, admin_service="fastkong-admin", admin_token="s3cret") as ctl:
            await eventually(lambda: api.all("Event"), what="an Event")
            await asyncio.sleep(0.5)  # several gateway checks
            assert len(seen) == 1
            assert seen[0]["query"] == {"check_hash": "1", "flatten_errors": "1"}
            assert seen[0]["token"] == "s3cret"
            assert seen[0]["body"] == {"config": ctl.text}
            (event,) = api.all("Event")
            assert event["reason"] == REASON_APPLY and event["type"] == "Warning"
            assert event["involvedObject"]["kind"] == "Ingress"
            assert event["involvedObject"]["name"] == "one"
            assert "rejected route default.one.echo..80: paths: bad path" in event["message"]
            state = ctl.state()["gateways"]
            assert [s["rejected"] for s in state.values()] == [True]
            json.dumps(ctl.state())  # /debug/state is JSON
