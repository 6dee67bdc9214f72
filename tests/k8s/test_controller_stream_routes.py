"""Stream routes through the whole Kubernetes path, in process: fake API server (real list/watch
wire protocol) -> controller (real client library) -> ConfigMap -> kubelet projection -> a
running ``fastkong start --stream-listen``. A TCPRoute created is proxied on its listener's port
and gets its status; moved to another backend, new connections follow; deleted, the port stops
proxying. A TCPIngress is proxied on its rule's port. A UDPRoute and a UDPIngress are proxied on
the data plane's ``udp`` listeners the same way."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import Gateway as DataPlane
from tests.helpers import TaggedDatagrams, TaggedEcho, free_port, udp_tag_at, wait_port
from tests.k8s.fake_apiserver import FakeApiServer
from tests.k8s.kube import (
    CONTROLLER,
    Kubelet,
    backend_ref,
    configmap,
    controller,
    endpoint_slice,
    eventually,
    gateway,
    gateway_class,
    listener,
    service,
    tcp_ingress,
    tcp_rule,
)

pytestmark = pytest.mark.integration


def tcproute(backend: str, kind: str = "TCPRoute", name: str = "db") -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1alpha2",
        "kind": kind,
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "parentRefs": [{"name": "main"}],
            "rules": [{"backendRefs": [backend_ref(backend, 80)]}],
        },
    }


def data_plane(tmp_path: Path, kubelet: Kubelet, listen: str) -> DataPlane:
    """``fastkong start`` on the kubelet's projection of the ConfigMap, with ``listen`` as its
    stream listeners (not started)."""
    return DataPlane(
        tmp_path,
        None,
        1,
        "-c",
        str(kubelet.path),
        "--prefix",
        str(tmp_path / "p"),
        "--stream-listen",
        listen,
    )


def our_parents(api: FakeApiServer, kind: str, name: str) -> list[dict[str, Any]]:
    """The ``status.parents`` entries our controller wrote on route ``default/name``."""
    stored = api.get(kind, "default", name) or {}
    return [
        p
        for p in (stored.get("status") or {}).get("parents") or []
        if p.get("controllerName") == CONTROLLER
    ]


def tag_at(port: int) -> bytes:
    """The tag of the backend a new connection to ``port`` reaches; b"" when it is closed."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            return sock.makefile("rb").readline().strip()
    except OSError:
        return b""


async def test_tcproute_and_tcp_ingress_are_proxied_and_follow_changes(tmp_path: Path) -> None:
    one, two = TaggedEcho("one").start(), TaggedEcho("two").start()
    route_port, ingress_port = free_port(), free_port()
    async with FakeApiServer() as api:
        api.create(configmap("fastkong-config", '_format_version: "3.0"\n'))
        for name, server in (("one", one), ("two", two)):
            api.create(service(name))
            api.create(endpoint_slice(f"{name}-1", name, "127.0.0.1", server.port))
        api.create(gateway_class())
        api.create(gateway("main", listener("db", "TCP", route_port)))
        kubelet = Kubelet(api, tmp_path / "volume", "fastkong-config").start()
        listen = f"127.0.0.1:{route_port}, 127.0.0.1:{ingress_port}"
        gw = data_plane(tmp_path, kubelet, listen)
        await asyncio.to_thread(gw.start, False)
        try:
            await asyncio.to_thread(wait_port, route_port, proc=gw.proc)
            async with controller(api, configmap="fastkong-config"):
                api.create(tcproute("one"))
                api.create(tcp_ingress("legacy", tcp_rule(ingress_port, "one")))

                async def reaches(port: int, tag: bytes) -> bool:
                    return await asyncio.to_thread(tag_at, port) == tag

                await eventually(lambda: reaches(route_port, b"one"), what="TCPRoute proxied")
                await eventually(lambda: reaches(ingress_port, b"one"), what="TCPIngress proxied")

                await eventually(lambda: our_parents(api, "TCPRoute", "db"), what="TCPRoute status")
                (parent,) = our_parents(api, "TCPRoute", "db")
                got = {c["type"]: (c["status"], c["reason"]) for c in parent["conditions"]}
                assert got == {
                    "Accepted": ("True", "Accepted"),
                    "ResolvedRefs": ("True", "ResolvedRefs"),
                }

                def attached() -> int:
                    status = (api.get("Gateway", "default", "main") or {}).get("status") or {}
                    listeners = status.get("listeners") or [{}]
                    return int(listeners[0].get("attachedRoutes") or 0)

                await eventually(lambda: attached() == 1, what="Gateway attachedRoutes")

                # Moved to another backend: new connections go there.
                api.update(tcproute("two"))
                await eventually(lambda: reaches(route_port, b"two"), what="TCPRoute moved")

                # Deleted: the port is still listened on, but proxies nothing.
                api.delete("TCPRoute", "default", "db")
                await eventually(lambda: reaches(route_port, b""), what="TCPRoute removed")
                assert await asyncio.to_thread(tag_at, ingress_port) == b"one"
        finally:
            await kubelet.stop()
            assert await asyncio.to_thread(gw.stop) == 0
            one.stop()
            two.stop()


async def test_udproute_and_udp_ingress_are_proxied_and_follow_changes(tmp_path: Path) -> None:
    one, two = TaggedDatagrams("one"), TaggedDatagrams("two")
    route_port, ingress_port, tcp_port = free_port(), free_port(), free_port()
    async with FakeApiServer() as api:
        api.create(configmap("fastkong-config", '_format_version: "3.0"\n'))
        for name, server in (("one", one), ("two", two)):
            svc = service(name)
            svc["spec"]["ports"][0]["protocol"] = "UDP"
            api.create(svc)
            eps = endpoint_slice(f"{name}-1", name, "127.0.0.1", server.port)
            eps["ports"][0]["protocol"] = "UDP"
            api.create(eps)
        api.create(gateway_class())
        api.create(
            gateway("main", listener("dns", "UDP", route_port), listener("db", "TCP", tcp_port))
        )
        kubelet = Kubelet(api, tmp_path / "volume", "fastkong-config").start()
        listen = f"127.0.0.1:{route_port} udp, 127.0.0.1:{ingress_port} udp, 127.0.0.1:{tcp_port}"
        gw = data_plane(tmp_path, kubelet, listen)
        await asyncio.to_thread(gw.start, False)
        try:
            await asyncio.to_thread(wait_port, tcp_port, proc=gw.proc)
            async with controller(api, configmap="fastkong-config"):
                api.create(tcproute("one", "UDPRoute", "dns"))
                api.create(tcp_ingress("legacy", tcp_rule(ingress_port, "two"), kind="UDPIngress"))

                async def reaches(port: int, tag: bytes) -> bool:
                    return await asyncio.to_thread(udp_tag_at, port) == tag

                await eventually(lambda: reaches(route_port, b"one"), what="UDPRoute proxied")
                await eventually(lambda: reaches(ingress_port, b"two"), what="UDPIngress proxied")

                await eventually(
                    lambda: our_parents(api, "UDPRoute", "dns"), what="UDPRoute status"
                )
                (parent,) = our_parents(api, "UDPRoute", "dns")
                got = {c["type"]: (c["status"], c["reason"]) for c in parent["conditions"]}
                assert got["Accepted"] == ("True", "Accepted")

                def attached() -> dict[str, int]:
                    status = (api.get("Gateway", "default", "main") or {}).get("status") or {}
                    listeners = status.get("listeners") or []
                    return {x["name"]: int(x.get("attachedRoutes") or 0) for x in listeners}

                await eventually(
                    lambda: attached() == {"dns": 1, "db": 0}, what="Gateway attachedRoutes"
                )

                # Moved to another backend: new sessions go there.
                api.update(tcproute("two", "UDPRoute", "dns"))
                await eventually(lambda: reaches(route_port, b"two"), what="UDPRoute moved")

                # The UDPIngress deleted: its port answers nothing; the UDPRoute's still does.
                api.delete("UDPIngress", "default", "legacy")
                await eventually(lambda: reaches(ingress_port, b""), what="UDPIngress removed")
                assert await asyncio.to_thread(udp_tag_at, route_port) == b"two"
        finally:
            await kubelet.stop()
            assert await asyncio.to_thread(gw.stop) == 0
            one.stop()
            two.stop()
