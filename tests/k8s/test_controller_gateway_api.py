"""Gateway API end to end, in process: fake API server (real list/watch wire protocol, status
subresource) -> controller (real client library) -> ConfigMap -> kubelet projection -> a running
``fastkong start``. An HTTPRoute created is routed and gets its status; changed, the config
follows; a cross-namespace backend waits for its ReferenceGrant."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import Echo
from tests.helpers import Gateway as DataPlane
from tests.k8s.fake_apiserver import FakeApiServer
from tests.k8s.kube import (
    CONTROLLER,
    NS,
    Kubelet,
    backend_ref,
    configmap,
    controller,
    endpoint_slice,
    eventually,
    gateway,
    gateway_class,
    httproute,
    listener,
    rule,
    service,
)

pytestmark = pytest.mark.integration
HOST = "app.example.com"
FOREIGN = {
    "parentRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "theirs"},
    "controllerName": "example.com/other",
    "conditions": [
        {
            "type": "Accepted",
            "status": "True",
            "reason": "Accepted",
            "message": "",
            "observedGeneration": 1,
            "lastTransitionTime": "2026-01-01T00:00:00Z",
        }
    ],
}


@pytest.fixture
def echo() -> Iterator[Echo]:
    e = Echo().start()
    yield e
    e.stop()


def conditions(obj: dict[str, Any] | None) -> dict[str, tuple[str, str, int]]:
    out = {}
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        out[c["type"]] = (c["status"], c["reason"], c["observedGeneration"])
    return out


def parent_conditions(route: dict[str, Any] | None) -> dict[str, tuple[str, str, int]]:
    parents = ((route or {}).get("status") or {}).get("parents") or []
    mine = [p for p in parents if p.get("controllerName") == CONTROLLER]
    return conditions({"status": mine[0]}) if mine else {}


def status_writes(api: FakeApiServer) -> int:
    return sum(1 for m, path in api.requests if m == "PUT" and path.endswith("/status"))


async def test_an_httproute_is_routed_gets_status_and_follows_changes(
    tmp_path: Path, echo: Echo
) -> None:
    async with FakeApiServer() as api, httpx.AsyncClient() as http:
        api.create(configmap("fastkong-config", '_format_version: "3.0"\n'))
        api.create(service("fastkong-proxy", ns=NS, clusterIP="10.96.0.10"))
        api.create(service("echo"))
        api.create(endpoint_slice("echo-1", "echo", "127.0.0.1", echo.port))
        api.create(gateway_class())
        api.create(gateway("main", listener(hostname="*.example.com")))
        kubelet = Kubelet(api, tmp_path / "volume", "fastkong-config").start()
        gw = DataPlane(tmp_path, None, 1, "-c", str(kubelet.path), "--prefix", str(tmp_path / "p"))
        await asyncio.to_thread(gw.start, False)

        async def get(path: str, host: str = HOST) -> httpx.Response:
            return await http.get(gw.url(path), headers={"host": host})

        try:
            async with controller(api, configmap="fastkong-config", proxy_service="fastkong-proxy"):
                await eventually(
                    lambda: conditions(api.get("GatewayClass", "", "fastkong")),
                    what="GatewayClass status",
                )
                assert conditions(api.get("GatewayClass", "", "fastkong")) == {
                    "Accepted": ("True", "Accepted", 1)
                }
                header = {
                    "type": "RequestHeaderModifier",
                    "requestHeaderModifier": {"set": [{"name": "x-from", "value": "route"}]},
                }
                route = httproute(
                    "app",
                    rule("/api", backend_ref("echo"), filters=[header]),
                    hostnames=[HOST],
                )
                api.create(route)

                async def served(path: str, host: str = HOST) -> bool:
                    return (await get(path, host)).status_code == 200

                await eventually(lambda: served("/api/x"), what="/api routed")
                body = (await get("/api/x")).json()
                assert ["x-from", "route"] in body["headers"]
                assert (await get("/api/x", "other.example.com")).status_code == 404

                await eventually(
                    lambda: parent_conditions(api.get("HTTPRoute", "default", "app")),
                    what="HTTPRoute status",
                )
                stored = api.get("HTTPRoute", "default", "app")
                assert stored is not None
                (parent,) = stored["status"]["parents"]
                assert parent["parentRef"] == {
                    "group": "gateway.networking.k8s.io",
                    "kind": "Gateway",
                    "name": "main",
                }
                assert parent_conditions(stored) == {
                    "Accepted": ("True", "Accepted", 1),
                    "ResolvedRefs": ("True", "ResolvedRefs", 1),
                }

                def gateway_done() -> bool:
                    gw_obj = api.get("Gateway", "default", "main") or {}
                    listeners = (gw_obj.get("status") or {}).get("listeners") or []
                    return bool(listeners) and listeners[0]["attachedRoutes"] == 1

                await eventually(gateway_done, what="Gateway status")
                status = (api.get("Gateway", "default", "main") or {})["status"]
                assert status["addresses"] == [{"type": "IPAddress", "value": "10.96.0.10"}]
                assert conditions({"status": status}) == {
                    "Accepted": ("True", "Accepted", 1),
                    "Programmed": ("True", "Programmed", 1),
                }
                (entry,) = status["listeners"]
                assert entry["supportedKinds"] == [
                    {"group": "gateway.networking.k8s.io", "kind": "HTTPRoute"}
                ]

                # Settled: nothing is written again while nothing changes.
                await asyncio.sleep(0.5)
                writes = status_writes(api)
                await asyncio.sleep(0.5)
                assert status_writes(api) == writes

                # The route changes: the config and the status follow (generation 2).
                changed = httproute("app", rule("/v2", backend_ref("echo")), hostnames=[HOST])
                api.update(changed)
                await eventually(lambda: served("/v2/y"), what="/v2 routed")
                assert (await get("/api/x")).status_code == 404

                def observed_two() -> bool:
                    route_obj = api.get("HTTPRoute", "default", "app")
                    return parent_conditions(route_obj).get("Accepted") == ("True", "Accepted", 2)

                await eventually(observed_two, what="observedGeneration 2")
        finally:
            await kubelet.stop()
            assert await asyncio.to_thread(gw.stop) == 0


async def test_a_cross_namespace_backend_waits_for_its_reference_grant(
    tmp_path: Path, echo: Echo
) -> None:
    async with FakeApiServer() as api, httpx.AsyncClient() as http:
        api.create(configmap("fastkong-config", '_format_version: "3.0"\n'))
        api.create(service("echo", ns="apps"))
        api.create(endpoint_slice("echo-1", "echo", "127.0.0.1", echo.port, ns="apps"))
        api.create(gateway_class())
        api.create(gateway("main"))
        api.create(httproute("far", rule("/far", backend_ref("echo", namespace="apps"))))
        kubelet = Kubelet(api, tmp_path / "volume", "fastkong-config").start()
        gw = DataPlane(tmp_path, None, 1, "-c", str(kubelet.path), "--prefix", str(tmp_path / "p"))
        await asyncio.to_thread(gw.start, False)
        try:
            async with controller(api, configmap="fastkong-config"):

                def resolved() -> tuple[str, str, int] | None:
                    route = api.get("HTTPRoute", "default", "far")
                    return parent_conditions(route).get("ResolvedRefs")

                await eventually(resolved, what="ResolvedRefs written")
                assert resolved() == ("False", "RefNotPermitted", 1)
                await eventually(
                    lambda: any(e["involvedObject"]["name"] == "far" for e in api.all("Event")),
                    what="an Event on the HTTPRoute",
                )

                async def code() -> int:
                    return (await http.get(gw.url("/far"))).status_code

                await eventually(lambda: _is(code(), 500), what="500 without a grant")
                # Another controller reports on the same route: its entry is kept.
                route = api.get("HTTPRoute", "default", "far")
                assert route is not None
                route["status"]["parents"].insert(0, FOREIGN)
                api.update(route)
                api.create(
                    {
                        "apiVersion": "gateway.networking.k8s.io/v1beta1",
                        "kind": "ReferenceGrant",
                        "metadata": {"name": "let-default-in", "namespace": "apps"},
                        "spec": {
                            "from": [
                                {
                                    "group": "gateway.networking.k8s.io",
                                    "kind": "HTTPRoute",
                                    "namespace": "default",
                                }
                            ],
                            "to": [{"group": "", "kind": "Service"}],
                        },
                    }
                )
                await eventually(lambda: _is(code(), 200), what="200 with the grant")
                await eventually(
                    lambda: resolved() == ("True", "ResolvedRefs", 1), what="ResolvedRefs True"
                )
                route = api.get("HTTPRoute", "default", "far")
                assert route is not None
                assert route["status"]["parents"][0] == FOREIGN
                assert len(route["status"]["parents"]) == 2
        finally:
            await kubelet.stop()
            assert await asyncio.to_thread(gw.stop) == 0


async def _is(value: Any, expected: int) -> bool:
    return bool(await value == expected)


async def test_a_backend_tls_policy_gets_its_ancestors_status() -> None:
    tls_policy = {
        "apiVersion": "gateway.networking.k8s.io/v1alpha3",
        "kind": "BackendTLSPolicy",
        "metadata": {"name": "echo-tls", "namespace": "default"},
        "spec": {
            "targetRefs": [{"group": "", "kind": "Service", "name": "echo"}],
            "validation": {"hostname": "echo.internal", "wellKnownCACertificates": "System"},
        },
    }
    async with FakeApiServer() as api:
        api.create(service("echo"))
        api.create(gateway_class())
        api.create(gateway("main", listener()))
        api.create(httproute("app", rule("/", backend_ref("echo"))))
        api.create(tls_policy)

        def ancestors() -> list[dict[str, Any]]:
            stored = api.get("BackendTLSPolicy", "default", "echo-tls") or {}
            return list((stored.get("status") or {}).get("ancestors") or [])

        async with controller(api):
            await eventually(ancestors, what="BackendTLSPolicy status")
            (entry,) = ancestors()
            assert entry["ancestorRef"]["name"] == "main"
            assert entry["controllerName"] == CONTROLLER
            assert conditions({"status": entry}) == {"Accepted": ("True", "Accepted", 1)}
