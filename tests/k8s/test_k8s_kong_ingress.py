"""KongIngress: the ``upstream`` section a Service names in ``konghq.com/override`` (KIC 3.x,
deprecated), its precedence, and what is ignored."""

from __future__ import annotations

import functools
from typing import Any

from fastkong.k8s import translate
from fastkong.k8s.admission import Reviewer
from fastkong.k8s.kong_ingress import DEPRECATED
from fastkong.k8s.objects import ObjectRef
from tests.k8s.kube import (
    backend_ref,
    endpoint_slice,
    gateway,
    gateway_class,
    httproute,
    ingress,
    rule,
    service,
)

UPSTREAM = "echo.default.80.svc"


def kong_ingress(name: str = "legacy", **sections: Any) -> dict[str, Any]:
    return {
        "apiVersion": "configuration.konghq.com/v1",
        "kind": "KongIngress",
        "metadata": {"name": name, "namespace": "default"},
        **sections,
    }


def echo(**annotations: str) -> list[dict[str, Any]]:
    svc = service("echo")
    svc["metadata"]["annotations"] = annotations
    return [svc, endpoint_slice("echo-a", "echo", "10.0.0.1", 8080)]


def upstream_of(objects: list[dict[str, Any]]) -> dict[str, Any]:
    result = translate(objects)
    return next(u for u in result.config["upstreams"] if u["name"] == UPSTREAM)


def messages(objects: list[dict[str, Any]], kind: str) -> list[str]:
    return [p.message for p in translate(objects).problems if p.ref.kind == kind]


HASHING = {
    "algorithm": "consistent-hashing",
    "hash_on": "header",
    "hash_on_header": "x-user",
    "hash_fallback": "ip",
    "slots": 100,
    "host_header": "from-kongingress.internal",
    "healthchecks": {"passive": {"unhealthy": {"http_failures": 3}}},
}


def test_the_upstream_section_reaches_the_services_upstream() -> None:
    objects = [
        ingress("app", "/app", "echo"),
        *echo(**{"konghq.com/override": "legacy"}),
        kong_ingress(upstream={**HASHING, "not_a_kic_field": 1}),
    ]
    upstream = upstream_of(objects)
    for field, value in HASHING.items():
        assert upstream[field] == value, field
    assert "not_a_kic_field" not in upstream  # KIC copies its own list of fields only
    assert [m for m in messages(objects, "Service") if DEPRECATED in m]


def test_annotations_and_a_kong_upstream_policy_win_over_it() -> None:
    objects = [
        ingress("app", "/app", "echo"),
        *echo(
            **{
                "konghq.com/override": "legacy",
                "konghq.com/host-header": "from-annotation.internal",
                "konghq.com/upstream-policy": "policy",
            }
        ),
        kong_ingress(upstream=HASHING),
        {
            "apiVersion": "configuration.konghq.com/v1beta1",
            "kind": "KongUpstreamPolicy",
            "metadata": {"name": "policy", "namespace": "default"},
            "spec": {"slots": 500},
        },
    ]
    upstream = upstream_of(objects)
    assert upstream["host_header"] == "from-annotation.internal"
    assert upstream["slots"] == 500
    assert upstream["hash_on_header"] == "x-user"  # what the policy leaves out stays


def test_a_missing_kong_ingress_changes_nothing_and_is_reported() -> None:
    objects = [ingress("app", "/app", "echo"), *echo(**{"konghq.com/override": "gone"})]
    upstream = upstream_of(objects)
    assert "algorithm" not in upstream
    assert any("KongIngress default/gone not found" in m for m in messages(objects, "Service"))


def test_proxy_and_route_sections_are_ignored_with_a_warning() -> None:
    objects = [
        ingress("app", "/app", "echo"),
        *echo(**{"konghq.com/override": "legacy"}),
        kong_ingress(proxy={"retries": 1}, route={"strip_path": True}),
    ]
    result = translate(objects)
    service = next(s for s in result.config["services"] if s["host"] == UPSTREAM)
    assert service.get("retries") != 1
    assert all(r["strip_path"] is False for r in service["routes"])
    assert messages(objects, "KongIngress") == [
        "sections proxy and route ignored: removed in KIC 3.0 (use the Service's and the "
        "Ingress's annotations)"
    ]


def test_an_ingress_naming_a_kong_ingress_is_told_it_no_longer_applies() -> None:
    app = ingress("app", "/app", "echo")
    app["metadata"]["annotations"] = {"konghq.com/override": "legacy"}
    objects = [app, *echo(), kong_ingress(upstream=HASHING)]
    assert "algorithm" not in upstream_of(objects)
    assert any("removed in KIC 3.0" in m for m in messages(objects, "Ingress"))


def test_gateway_api_backends_do_not_take_it() -> None:
    """As KIC: a KongIngress never applies to the upstreams of Gateway API routes."""
    objects = [
        gateway_class(),
        gateway(),
        httproute("r", rule("/", backend_ref("echo"))),
        *echo(**{"konghq.com/override": "legacy"}),
        kong_ingress(upstream=HASHING),
    ]
    result = translate(objects)
    upstreams = result.config["upstreams"]
    assert upstreams and all("algorithm" not in u for u in upstreams)
    assert any(
        "does not apply to Gateway API routes" in p.message
        for p in result.problems
        if p.ref == ObjectRef("Service", "default", "echo")
    )


def test_admission_refuses_a_kong_ingress_edit_that_breaks_an_upstream() -> None:
    """The webhook judges a KongIngress by what it does to the upstreams that use it."""
    cluster = [
        ingress("app", "/app", "echo"),
        *echo(**{"konghq.com/override": "legacy"}),
        kong_ingress(upstream=HASHING),
    ]
    reviewer = Reviewer(functools.partial(translate, ingress_class=["fastkong"]), ["fastkong"])
    broken = kong_ingress(upstream={**HASHING, "slots": 5})
    request = {"uid": "u", "operation": "UPDATE", "object": broken, "namespace": "default"}
    verdict = reviewer.review(request, cluster, 1)
    assert not verdict.allowed
    assert (
        "Change on KongIngress default/legacy will generate invalid configuration for "
        "Service default/echo: upstream 'echo.default.80.svc' left out: slots: value should be "
        "between 10 and 65536"
    ) in verdict.message
    fine = {**request, "object": kong_ingress(upstream={**HASHING, "slots": 200})}
    assert reviewer.review(fine, cluster, 1).allowed
