"""Translation problems become Events on the objects (once, bumped while they persist, new
when they come back); Ingress status follows the proxy Service; health endpoints."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from fastkong.k8s.events import COMPONENT, REASON_TRANSLATION
from fastkong.k8s.watch import RESOURCES
from tests.k8s.fake_apiserver import FakeApiServer
from tests.k8s.kube import (
    NS,
    backend,
    controller,
    eventually,
    ingress,
    service,
    tcp_ingress,
    tcp_rule,
)


def events_for(api: FakeApiServer, name: str) -> list[dict[str, Any]]:
    return [e for e in api.all("Event") if e["involvedObject"]["name"] == name]


async def test_a_problem_becomes_one_event_on_its_object() -> None:
    async with FakeApiServer() as api:
        broken = api.create(ingress("broken", "/b", "missing"))
        async with controller(api, event_refresh=600.0) as ctl:
            await eventually(lambda: events_for(api, "broken"), what="an Event")
            (event,) = events_for(api, "broken")
            assert event["metadata"]["namespace"] == "default"
            assert event["involvedObject"] == {
                "kind": "Ingress",
                "namespace": "default",
                "name": "broken",
                "uid": broken["metadata"]["uid"],
                "apiVersion": "networking.k8s.io/v1",
                "resourceVersion": broken["metadata"]["resourceVersion"],
            }
            assert event["reason"] == REASON_TRANSLATION and event["type"] == "Warning"
            assert event["source"]["component"] == COMPONENT
            assert event["count"] == 1 and "missing" in event["message"]
            assert event["firstTimestamp"].endswith("+00:00")
            assert any("missing" in p for p in ctl.state()["problems"])

            translations = ctl.translations
            api.create(service("unrelated"))
            await eventually(lambda: ctl.translations > translations)
            await asyncio.sleep(0.1)
            assert len(events_for(api, "broken")) == 1  # still one: no flood


async def test_a_persisting_problem_bumps_the_count_and_a_returning_one_gets_a_new_event() -> None:
    async with FakeApiServer() as api:
        api.create(ingress("broken", "/b", "missing"))
        async with controller(api, event_refresh=0.2) as ctl:
            await eventually(lambda: events_for(api, "broken"))
            await asyncio.sleep(0.25)
            api.create(service("unrelated"))  # a new translation after the refresh period
            await eventually(lambda: events_for(api, "broken")[0]["count"] == 2, what="bumped")
            assert len(events_for(api, "broken")) == 1

            backend(api, "missing", 9001)  # fixed: the problem goes away
            await eventually(lambda: not ctl.state()["problems"], what="no problems")
            api.delete("Service", "default", "missing")  # and comes back
            await eventually(lambda: len(events_for(api, "broken")) == 2, what="a new Event")


async def test_ingress_status_follows_the_proxy_service() -> None:
    async with FakeApiServer() as api:
        backend(api, "echo", 9001)
        api.create(ingress("ours", "/o", "echo"))
        api.create(ingress("theirs", "/t", "echo", cls="nginx"))
        # KIC's stream ingresses get the same status (KIC's UpdateLoadBalancerIngress).
        api.create(tcp_ingress("tcp", tcp_rule(9000, "echo")))
        api.create(tcp_ingress("udp", tcp_rule(9001, "echo"), kind="UDPIngress"))
        api.create(
            tcp_ingress("udp-theirs", tcp_rule(9002, "echo"), cls="nginx", kind="UDPIngress")
        )
        proxy = service("fastkong-proxy", 80, NS, type="LoadBalancer")
        proxy["status"] = {"loadBalancer": {"ingress": [{"ip": "192.0.2.10"}]}}
        api.create(proxy)

        def status(name: str, kind: str = "Ingress") -> Any:
            obj = api.get(kind, "default", name)
            assert obj is not None
            return (obj.get("status") or {}).get("loadBalancer", {}).get("ingress")

        def all_ours(want: list[dict[str, str]]) -> bool:
            return (
                status("ours") == want
                and status("tcp", "TCPIngress") == want
                and status("udp", "UDPIngress") == want
            )

        async with controller(api, proxy_service="fastkong-proxy") as ctl:
            await eventually(lambda: all_ours([{"ip": "192.0.2.10"}]))
            assert status("theirs") is None
            assert status("udp-theirs", "UDPIngress") is None

            current = api.get("Service", NS, "fastkong-proxy")
            assert current is not None
            current["status"] = {"loadBalancer": {"ingress": [{"hostname": "lb.example"}]}}
            api.update(current)
            await eventually(lambda: all_ours([{"hostname": "lb.example"}]))
            # The API server sees the patch before the controller's coroutine resumes to count it.
            updater = ctl.ingress_status
            assert updater is not None
            await eventually(lambda: updater.updates == 6, what="two updates of three objects")


async def test_health_endpoints() -> None:
    async with FakeApiServer() as api:
        api.fail("GET", "/kongconsumers", 503, times=3)  # one kind syncs late
        async with controller(api) as ctl, httpx.AsyncClient() as http:
            base = f"http://127.0.0.1:{ctl.health_port}"
            assert (await http.get(f"{base}/healthz")).status_code == 200
            first = await http.get(f"{base}/readyz")
            if first.status_code == 503:
                # The failing kind is among those still syncing (others may be, this early).
                assert "kongconsumers.configuration.konghq.com" in first.json()["waiting"]
            await eventually(lambda: ctl.ready.is_set())
            assert (await http.get(f"{base}/readyz")).status_code == 200
            state = (await http.get(f"{base}/debug/state")).json()
            assert state["leader"] is True and state["config_hash"] == ctl.digest
            assert len(state["reflectors"]) == len(RESOURCES)  # one per watched kind
