"""Gateway API status as computed (gateway_status.desired) and compared, without a server."""

from __future__ import annotations

from typing import Any

from fastkong.k8s.gateway_status import desired, same, with_times
from fastkong.k8s.gatewayapi import view
from fastkong.k8s.objects import Index
from tests.k8s.kube import (
    CONTROLLER,
    backend_ref,
    gateway,
    gateway_class,
    httproute,
    listener,
    rule,
    service,
)


def status_of(objs: list[dict[str, Any]], proxy: list[dict[str, str]] | None = None) -> Any:
    index = Index(objs)
    return desired(index, view(index), proxy or [])


def conds(entry: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in entry["conditions"]}


def test_gateway_listeners_and_addresses() -> None:
    gw = gateway(
        "main",
        listener(),
        listener("raw", "example.com/sctp", 9000),
        listener("tls", "HTTPS", 443),
        listener("db", "TCP", 5432),
        listener("dns", "UDP", 53),
    )
    gw["metadata"]["generation"] = 3
    objs = [gateway_class(), gw, service("echo"), httproute("a"), httproute("b")]
    got = status_of(objs, [{"ip": "10.0.0.1"}, {"hostname": "lb.example.com"}])
    status = got[("Gateway", "default", "main")]
    assert status["addresses"] == [
        {"type": "IPAddress", "value": "10.0.0.1"},
        {"type": "Hostname", "value": "lb.example.com"},
    ]
    assert conds(status) == {"Accepted": ("True", "Accepted"), "Programmed": ("True", "Programmed")}
    assert {c["observedGeneration"] for c in status["conditions"]} == {3}
    by_name = {x["name"]: x for x in status["listeners"]}
    assert by_name["http"]["attachedRoutes"] == 2 and by_name["tls"]["attachedRoutes"] == 2
    assert by_name["raw"]["attachedRoutes"] == 0 and by_name["raw"]["supportedKinds"] == []
    assert conds(by_name["raw"])["Accepted"] == ("False", "UnsupportedProtocol")
    assert by_name["db"]["supportedKinds"] == [
        {"group": "gateway.networking.k8s.io", "kind": "TCPRoute"}
    ]
    assert by_name["db"]["attachedRoutes"] == 0
    assert conds(by_name["db"])["Accepted"] == ("True", "Accepted")
    assert by_name["dns"]["supportedKinds"] == [
        {"group": "gateway.networking.k8s.io", "kind": "UDPRoute"}
    ]
    assert conds(by_name["dns"])["Accepted"] == ("True", "Accepted")
    no_address = status_of(objs)[("Gateway", "default", "main")]
    assert conds(no_address)["Programmed"] == ("False", "AddressNotAssigned")


def test_route_parent_conditions() -> None:
    broken = httproute(
        "query", rule("/", backend_ref("echo"), queryParams=[{"name": "a", "value": "1"}])
    )
    missing = httproute("missing", rule("/", backend_ref("nope")))
    lost = httproute("lost", parents=[{"name": "main", "sectionName": "x"}])
    objs = [gateway_class(), gateway(), service("echo"), broken, missing, lost]
    got = status_of(objs)
    (parent,) = got[("HTTPRoute", "default", "query")]["parents"]
    assert parent["controllerName"] == CONTROLLER
    assert conds(parent)["Accepted"] == ("False", "UnsupportedValue")
    (parent,) = got[("HTTPRoute", "default", "missing")]["parents"]
    assert conds(parent) == {
        "Accepted": ("True", "Accepted"),
        "ResolvedRefs": ("False", "BackendNotFound"),
    }
    (parent,) = got[("HTTPRoute", "default", "lost")]["parents"]
    assert conds(parent)["Accepted"] == ("False", "NoMatchingParent")
    assert parent["parentRef"]["sectionName"] == "x"


def test_our_stale_entries_go_and_other_routes_are_left_alone() -> None:
    ours = {"parentRef": {"name": "main"}, "controllerName": CONTROLLER, "conditions": []}
    theirs = {"parentRef": {"name": "x"}, "controllerName": "example.com/x", "conditions": []}
    moved = httproute("moved", parents=[{"name": "elsewhere"}])
    moved["status"] = {"parents": [theirs, ours]}
    untouched = httproute("untouched", parents=[{"name": "elsewhere"}])
    untouched["status"] = {"parents": [theirs]}
    got = status_of([gateway_class(), gateway(), moved, untouched])
    assert got[("HTTPRoute", "default", "moved")] == {"parents": [theirs]}
    assert ("HTTPRoute", "default", "untouched") not in got
    # No GatewayClass of ours left: our stale entry still goes, nothing else is written.
    assert status_of([gateway_class("x", "example.com/x"), moved, untouched]) == {
        ("HTTPRoute", "default", "moved"): {"parents": [theirs]}
    }


def test_times_are_kept_while_a_condition_holds() -> None:
    old = {
        "conditions": [
            {
                "type": "Accepted",
                "status": "True",
                "reason": "Accepted",
                "lastTransitionTime": "T0",
            },
            {"type": "Programmed", "status": "False", "reason": "X", "lastTransitionTime": "T0"},
        ]
    }
    want = {
        "conditions": [
            {"type": "Accepted", "status": "True", "reason": "Accepted"},
            {"type": "Programmed", "status": "True", "reason": "Programmed"},
        ]
    }
    out = with_times(old, want, "T1")
    assert [c["lastTransitionTime"] for c in out["conditions"]] == ["T0", "T1"]
    assert same(out, {"conditions": [dict(c, lastTransitionTime="T9") for c in out["conditions"]]})
    assert not same(old, out)


def test_a_listener_without_its_certificate_is_not_programmed() -> None:
    tls = {"certificateRefs": [{"name": "missing"}]}
    gw = gateway("main", listener("tls", "HTTPS", 443, tls=tls))
    status = status_of([gateway_class(), gw], [{"ip": "10.0.0.1"}])[("Gateway", "default", "main")]
    (entry,) = status["listeners"]
    assert conds(entry)["ResolvedRefs"] == ("False", "InvalidCertificateRef")
    assert conds(entry)["Programmed"] == ("False", "Invalid")
    assert conds(entry)["Accepted"] == ("True", "Accepted")
