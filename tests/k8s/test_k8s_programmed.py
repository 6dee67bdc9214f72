"""KIC's Programmed condition on Kong's CRDs (fastkong/k8s/programmed.py): True for an object a
delivered entity came from, False/Invalid for one a problem names, False/Pending otherwise, and
only the Programmed entry of the conditions is touched."""

from __future__ import annotations

from typing import Any

from fastkong.k8s import ObjectRef, Problem
from fastkong.k8s.programmed import (
    INVALID_MESSAGE,
    PENDING_MESSAGE,
    TRUE_MESSAGE,
    desired,
    policy_status,
)

GROUP = "configuration.konghq.com"


def kong(
    kind: str, name: str, ns: str = "default", cls: str | None = None, **extra: Any
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "generation": 3}
    if ns:
        meta["namespace"] = ns
    if cls is not None:
        meta["annotations"] = {"kubernetes.io/ingress.class": cls}
    version = "v1alpha1" if kind == "KongVault" else "v1"
    return {"apiVersion": f"{GROUP}/{version}", "kind": kind, "metadata": meta, **extra}


def ours(obj: dict[str, Any]) -> bool:
    return obj["metadata"].get("annotations", {}).get("kubernetes.io/ingress.class") == "fastkong"


def programmed(status: dict[str, Any]) -> tuple[str, str, str, int]:
    (cond,) = [c for c in status["conditions"] if c["type"] == "Programmed"]
    return cond["status"], cond["reason"], cond["message"], cond["observedGeneration"]


def test_true_invalid_and_pending() -> None:
    used = kong("KongPlugin", "used")
    broken = kong("KongPlugin", "broken")
    idle = kong("KongPlugin", "idle")
    consumer = kong("KongConsumer", "alice", cls="fastkong", username="alice")
    theirs = kong("KongConsumer", "bob", cls="kong", username="bob")
    vault = kong("KongVault", "env", ns="", cls="fastkong")
    want = desired(
        [used, broken, idle, consumer, theirs, vault],
        [ObjectRef("KongPlugin", "default", "used"), ObjectRef("KongConsumer", "default", "alice")],
        [
            Problem(ObjectRef("KongPlugin", "default", "broken"), "unknown plugin 'nope'"),
            Problem(ObjectRef("KongVault", "", "env"), "vault 'aws' left out: ..."),
            Problem(ObjectRef("KongPlugin", "default", "idle"), "a warning only", "warning"),
        ],
        ours,
    )
    assert sorted(want) == [
        ("KongConsumer", "default", "alice"),
        ("KongPlugin", "default", "broken"),
        ("KongPlugin", "default", "idle"),
        ("KongPlugin", "default", "used"),
        ("KongVault", "", "env"),
    ]  # bob is another class's
    assert programmed(want[("KongPlugin", "default", "used")]) == (
        "True",
        "Programmed",
        TRUE_MESSAGE,
        3,
    )
    assert programmed(want[("KongConsumer", "default", "alice")])[:2] == ("True", "Programmed")
    assert programmed(want[("KongPlugin", "default", "broken")]) == (
        "False",
        "Invalid",
        INVALID_MESSAGE,
        3,
    )
    assert programmed(want[("KongVault", "", "env")])[:2] == ("False", "Invalid")
    assert programmed(want[("KongPlugin", "default", "idle")]) == (
        "False",
        "Pending",
        PENDING_MESSAGE,
        3,
    )


def test_other_conditions_stay_and_a_known_state_never_turns_pending() -> None:
    other = {
        "type": "Custom",
        "status": "True",
        "reason": "Mine",
        "message": "",
        "observedGeneration": 1,
    }
    known = {
        "type": "Programmed",
        "status": "True",
        "reason": "Programmed",
        "message": TRUE_MESSAGE,
        "observedGeneration": 2,
    }
    plugin = kong("KongPlugin", "p", status={"conditions": [other]})
    want = desired([plugin], [ObjectRef("KongPlugin", "default", "p")], [], ours)
    status = want[("KongPlugin", "default", "p")]
    assert status["conditions"][0] == other and programmed(status)[0] == "True"
    # nothing delivered came from it now, but it was Programmed: left as it is (KIC)
    was = kong("KongPlugin", "q", status={"conditions": [other, known]})
    assert desired([was], [], [], ours) == {}
    # a failure does replace it
    failed = desired([was], [], [Problem(ObjectRef("KongPlugin", "default", "q"), "x")], ours)
    status = failed[("KongPlugin", "default", "q")]
    assert [c["type"] for c in status["conditions"]] == ["Custom", "Programmed"]
    assert programmed(status)[:2] == ("False", "Invalid")


def service(name: str, policy: str | None, created: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "default", "creationTimestamp": created}
    if policy:
        meta["annotations"] = {"konghq.com/upstream-policy": policy}
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta}


def route(*backends: list[str]) -> dict[str, Any]:
    rules = [{"backendRefs": [{"name": b, "port": 80} for b in rule]} for rule in backends]
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "r", "namespace": "default"},
        "spec": {"rules": rules},
    }


def conditions(ancestor: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(c["type"], c["status"], c["reason"]) for c in ancestor["conditions"]]


def test_upstream_policy_ancestors() -> None:
    policy = kong("KongUpstreamPolicy", "sticky")
    services = [
        service("b", "sticky", "2026-01-02T00:00:00Z"),
        service("a", "sticky", "2026-01-01T00:00:00Z"),
        service("mixed", "sticky", "2026-01-03T00:00:00Z"),
        service("plain", None, "2026-01-01T00:00:00Z"),
    ]
    translated = [ObjectRef("Service", "default", n) for n in ("a", "mixed", "plain")]
    routes = [route(["mixed", "plain"], ["a", "b"])]
    want = policy_status([policy], services, routes, translated, "fastkong.io/gateway-controller")
    (status,) = want.values()
    ancestors = status["ancestors"]
    assert [a["ancestorRef"]["name"] for a in ancestors] == ["a", "b", "mixed"]  # oldest first
    assert ancestors[0]["ancestorRef"] == {
        "group": "core",
        "kind": "Service",
        "namespace": "default",
        "name": "a",
    }
    assert ancestors[0]["controllerName"] == "fastkong.io/gateway-controller"
    # a and b share a rule and a policy: no conflict; b made nothing of the delivered config
    assert conditions(ancestors[0]) == [
        ("Accepted", "True", "Accepted"),
        ("Programmed", "True", "Programmed"),
    ]
    assert conditions(ancestors[1]) == [
        ("Accepted", "True", "Accepted"),
        ("Programmed", "False", "Pending"),
    ]
    # mixed shares a rule with a Service without the policy: one upstream, two policies
    assert conditions(ancestors[2]) == [
        ("Accepted", "False", "Conflicted"),
        ("Programmed", "False", "Pending"),
    ]


def test_an_unused_policy_is_left_alone_and_ancestors_are_capped() -> None:
    policy = kong("KongUpstreamPolicy", "p")
    idle = [service("s", "p", "2026-01-01T00:00:00Z")]
    assert policy_status([policy], idle, [], [], "c") == {}
    many = [service(f"s{i:02}", "p", f"2026-01-01T00:00:{i:02}Z") for i in range(20)]
    translated = [ObjectRef.of(s) for s in many]
    (status,) = policy_status([policy], many, [], translated, "c").values()
    assert [a["ancestorRef"]["name"] for a in status["ancestors"]] == [
        f"s{i:02}" for i in range(16)
    ]
