"""Gateway API translation, one rule at a time (the httproute-* golden cases cover them together):
attachment, hostnames, matches, backends and weights, ReferenceGrants, filters, broken routes."""

from __future__ import annotations

from typing import Any

import pytest

from fastkong.k8s import translate
from fastkong.k8s.gatewayapi import covers, intersection, selects, view
from fastkong.k8s.httproute import backend_request_timeout, match_paths, prefix_uri
from fastkong.k8s.objects import Index
from tests.k8s.conftest import GOLDEN, golden_validator, load_objects
from tests.k8s.kube import (
    backend_ref,
    endpoint_slice,
    gateway,
    gateway_class,
    httproute,
    listener,
    rule,
    service,
)


def config(
    *objects: dict[str, Any], controller: str | None = None, combined: bool = False
) -> dict[str, Any]:
    extra: dict[str, Any] = {"gateway_controller": controller} if controller else {}
    extra["combined_services"] = combined
    return translate(list(objects), validate=golden_validator(), **extra).config


def problems(*objects: dict[str, Any]) -> list[str]:
    return [str(p) for p in translate(list(objects), validate=golden_validator()).problems]


def routes(cfg: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for s in cfg.get("services", []) for r in s.get("routes", [])}


def upstream_targets(cfg: dict[str, Any]) -> dict[str, dict[str, int]]:
    return {
        u["name"]: {t["target"]: t["weight"] for t in u.get("targets", [])}
        for u in cfg.get("upstreams", [])
    }


BASE = (gateway_class(), gateway(), service("echo"))


# -- which objects are ours --------------------------------------------------------------------


def test_only_routes_on_gateways_of_our_class_are_translated() -> None:
    theirs = gateway_class("other", "example.com/x")
    objs = (
        *BASE,
        theirs,
        gateway("foreign", cls="other"),
        httproute("mine"),
        httproute("foreign", parents=[{"name": "foreign"}]),
        httproute("nowhere", parents=[{"name": "missing"}]),
    )
    assert set(routes(config(*objs))) == {"httproute.default.mine.0.0"}
    # KIC's controller name makes its GatewayClasses ours instead.
    kic = config(*objs, controller="example.com/x")
    assert set(routes(kic)) == {"httproute.default.foreign.0.0"}


@pytest.mark.parametrize(
    ("parent", "listeners", "accepted", "reason"),
    [
        ({"sectionName": "http"}, [listener()], True, "Accepted"),
        ({"sectionName": "other"}, [listener()], False, "NoMatchingParent"),
        ({"port": 80}, [listener()], True, "Accepted"),
        ({"port": 81}, [listener()], False, "NoMatchingParent"),
        ({}, [listener(protocol="TCP")], False, "NotAllowedByListeners"),
        (
            {},
            [listener(protocol="HTTPS", tls={"mode": "Passthrough"})],
            False,
            "NotAllowedByListeners",
        ),
        (
            {},
            [listener(allowedRoutes={"kinds": [{"kind": "GRPCRoute"}]})],
            False,
            "NotAllowedByListeners",
        ),
        ({}, [listener(allowedRoutes={"kinds": [{"kind": "HTTPRoute"}]})], True, "Accepted"),
        ({}, [listener(hostname="*.example.org")], False, "NoMatchingListenerHostname"),
        ({}, [listener(hostname="*.example.com")], True, "Accepted"),
    ],
)
def test_parent_ref_acceptance(
    parent: dict[str, Any], listeners: list[dict[str, Any]], accepted: bool, reason: str
) -> None:
    route = httproute(parents=[{"name": "main", **parent}], hostnames=["a.example.com"])
    gv = view(Index([gateway_class(), gateway("main", *listeners), route]))
    (rv,) = gv.routes
    (result,) = rv.parents
    assert (result.accepted, result.reason) == (accepted, reason)


@pytest.mark.parametrize(
    ("allowed", "route_ns", "labels", "accepted"),
    [
        (None, "default", {}, True),  # Same is the default
        (None, "apps", {}, False),
        ({"from": "Same"}, "apps", {}, False),
        ({"from": "All"}, "apps", {}, True),
        (
            {"from": "Selector", "selector": {"matchLabels": {"team": "a"}}},
            "apps",
            {"team": "a"},
            True,
        ),
        (
            {"from": "Selector", "selector": {"matchLabels": {"team": "a"}}},
            "apps",
            {"team": "b"},
            False,
        ),
        (
            {
                "from": "Selector",
                "selector": {
                    "matchExpressions": [
                        {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["apps"]}
                    ]
                },
            },
            "apps",
            None,  # no Namespace object: its name label still counts
            True,
        ),
    ],
)
def test_allowed_routes_namespaces(
    allowed: dict[str, Any] | None, route_ns: str, labels: dict[str, str] | None, accepted: bool
) -> None:
    extra = {"allowedRoutes": {"namespaces": allowed}} if allowed else {}
    objs: list[dict[str, Any]] = [gateway_class(), gateway("main", listener(**extra))]
    objs.append(httproute(ns=route_ns, parents=[{"name": "main", "namespace": "default"}]))
    if labels is not None:
        objs.append(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": route_ns, "labels": labels},
            }
        )
    (rv,) = view(Index(objs)).routes
    assert rv.accepted is accepted


def test_label_selector_operators() -> None:
    labels = {"env": "prod", "team": "a"}
    assert selects(
        {"matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["dev"]}]}, labels
    )
    assert not selects({"matchExpressions": [{"key": "env", "operator": "DoesNotExist"}]}, labels)
    assert selects({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}, labels)
    assert not selects({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}, labels)
    assert not selects({"matchExpressions": [{"key": "env", "operator": "Bogus"}]}, labels)


# -- hostnames ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mask", "host", "expected"),
    [
        ("*.example.com", "a.example.com", True),
        ("*.example.com", "a.b.example.com", True),
        ("*.example.com", "example.com", False),
        ("*.example.com", "aexample.com", False),
        ("a.example.com", "a.example.com", True),
        ("a.example.com", "b.example.com", False),
    ],
)
def test_wildcard_covers(mask: str, host: str, expected: bool) -> None:
    assert covers(mask, host) is expected


def test_intersection_is_the_more_specific_name() -> None:
    assert intersection("*.example.com", "api.example.com") == "api.example.com"
    assert intersection("api.example.com", "*.example.com") == "api.example.com"
    assert intersection("*.example.com", "*.api.example.com") == "*.api.example.com"
    assert intersection("*.example.com", "example.org") is None


@pytest.mark.parametrize(
    ("listener_hosts", "route_hosts", "expected"),
    [
        ([None], None, None),  # any host
        (["*.example.com"], None, ["*.example.com"]),
        (["a.example.com", None], None, None),  # one listener takes any host
        (["a.example.com", "b.example.com"], None, ["a.example.com", "b.example.com"]),
        (["*.example.com"], ["x.example.com", "x.example.org"], ["x.example.com"]),
        (["a.example.com", "b.example.com"], ["*.example.com"], ["a.example.com", "b.example.com"]),
        ([None], ["x.example.org"], ["x.example.org"]),
    ],
)
def test_effective_hostnames(
    listener_hosts: list[str | None], route_hosts: list[str] | None, expected: list[str] | None
) -> None:
    listeners = [
        listener(f"l{i}", port=80 + i, **({"hostname": h} if h else {}))
        for i, h in enumerate(listener_hosts)
    ]
    cfg = config(
        gateway_class(),
        gateway("main", *listeners),
        service("echo"),
        httproute(hostnames=route_hosts),
    )
    assert routes(cfg)["httproute.default.r.0.0"].get("hosts") == expected


# -- matches -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "value", "expected"),
    [
        ("PathPrefix", "/", ["~/$", "/"]),
        ("PathPrefix", "/api", ["~/api$", "/api/"]),
        ("PathPrefix", "/api/", ["~/api/$", "/api/"]),
        ("PathPrefix", "/v1.0", ["~/v1\\.0$", "/v1.0/"]),
        ("Exact", "/a.b", ["~/a\\.b$"]),
        ("RegularExpression", "/items/[0-9]+", ["~/items/[0-9]+"]),
    ],
)
def test_path_matches(kind: str, value: str, expected: list[str]) -> None:
    assert match_paths({"path": {"type": kind, "value": value}}) == expected


def test_route_fields_headers_and_method() -> None:
    headers = [
        {"name": "X-A", "value": "1"},
        {"name": "x-b", "type": "RegularExpression", "value": "^v[0-9]$"},
        {"name": "x-a", "value": "ignored"},
    ]
    cfg = config(
        *BASE, httproute("r", rule("/x", backend_ref("echo"), headers=headers, method="POST"))
    )
    route = routes(cfg)["httproute.default.r.0.0"]
    assert route["headers"] == {"X-A": ["1"], "x-b": ["~*^v[0-9]$"]}
    assert route["methods"] == ["POST"]
    assert route["protocols"] == ["http"]
    assert (route["strip_path"], route["preserve_host"]) == (False, True)
    assert "k8s-kind:HTTPRoute" in route["tags"]


def test_matches_of_rules_with_the_same_backends_and_filters_share_a_route() -> None:
    r = httproute(
        "r",
        rule("/a", backend_ref("echo")),
        rule("/b", backend_ref("echo")),
        rule("/c", backend_ref("echo"), method="GET"),
    )
    cfg = config(*BASE, r)
    assert list(routes(cfg)) == ["httproute.default.r.0.0", "httproute.default.r.2.0"]
    assert routes(cfg)["httproute.default.r.0.0"]["paths"] == ["~/a$", "/a/", "~/b$", "/b/"]
    (svc,) = cfg["services"]
    assert svc["name"] == svc["host"] == "httproute.default.r.0"
    assert "path" not in svc  # KIC sets none for HTTPRoute services
    # One backend Service: the Kong service carries its tags (KIC's generateKongServiceTags).
    assert "k8s-kind:Service" in svc["tags"] and cfg["upstreams"][0]["tags"] == svc["tags"]


def test_rules_with_the_same_backends_in_two_httproutes_share_a_service_when_combined() -> None:
    objs = (*BASE, httproute("a"), httproute("b", rule("/b", backend_ref("echo"))))
    assert [s["name"] for s in config(*objs)["services"]] == [
        "httproute.default.a.0",
        "httproute.default.b.0",
    ]
    (svc,) = config(*objs, combined=True)["services"]
    assert svc["name"] == "httproute.default.svc.default.echo.80.1"
    assert [r["name"] for r in svc["routes"]] == [
        "httproute.default.a.0.0",
        "httproute.default.b.0.0",
    ]


def test_the_service_port_is_the_last_usable_backends() -> None:
    objs = (*BASE, service("alt", 8080))
    r = httproute("r", rule("/", backend_ref("echo"), backend_ref("alt", 8080), backend_ref("x")))
    (svc,) = config(*objs, r)["services"]
    assert svc["port"] == 8080
    assert "k8s-kind:HTTPRoute" in svc["tags"]  # two Services: the HTTPRoute's tags


def test_a_long_service_name_is_trimmed_with_a_hash() -> None:
    backends = [backend_ref("b" * 60 + str(i), weight=1) for i in range(10)]
    cfg = config(*BASE, httproute("r", rule("/", *backends)), combined=True)
    (svc,) = cfg["services"]
    assert len(svc["name"]) < 200 and "_combined." in svc["name"]
    assert svc["name"].startswith(f"httproute.default.svc.default.{'b' * 60}0.80.1_combined.")


@pytest.mark.parametrize(
    ("value", "ms"), [("5s", 5000), ("1m30s", 90000), ("250ms", 250), ("1h", 3600000), ("5x", None)]
)
def test_backend_request_timeout(value: str, ms: int | None) -> None:
    assert backend_request_timeout({"timeouts": {"backendRequest": value}}) == ms


# -- backends ----------------------------------------------------------------------------------


def slices(
    name: str, *addresses: str, ns: str = "default", terminating: tuple[str, ...] = ()
) -> list[dict[str, Any]]:
    out = [endpoint_slice(f"{name}-{i}", name, a, 8080, ns) for i, a in enumerate(addresses)]
    out += [
        endpoint_slice(f"{name}-t{i}", name, a, 8080, ns, ready=False, terminating=True)
        for i, a in enumerate(terminating)
    ]
    return out


def test_backend_weights_are_split_over_serving_endpoints() -> None:
    objs = [
        *BASE,
        service("blue"),
        service("green"),
        *slices("blue", "10.0.0.1", "10.0.0.2", "10.0.0.3", terminating=("10.0.0.9",)),
        *slices("green", "10.0.1.1"),
        httproute("r", rule("/", backend_ref("blue", weight=80), backend_ref("green", weight=20))),
    ]
    targets = upstream_targets(config(*objs))
    assert targets == {
        "httproute.default.r.0": {
            "10.0.0.1:8080": 26,
            "10.0.0.2:8080": 26,
            "10.0.0.3:8080": 26,
            "10.0.0.9:8080": 0,
            "10.0.1.1:8080": 20,
        }
    }


def test_small_and_zero_weights() -> None:
    objs = [
        *BASE,
        service("a"),
        service("b"),
        *slices("a", "10.0.0.1", "10.0.0.2"),
        *slices("b", "10.0.1.1"),
        httproute("r", rule("/", backend_ref("a", weight=1), backend_ref("b", weight=0))),
    ]
    (targets,) = upstream_targets(config(*objs)).values()
    assert targets == {"10.0.0.1:8080": 1, "10.0.0.2:8080": 1, "10.0.1.1:8080": 0}


GRANT = {
    "apiVersion": "gateway.networking.k8s.io/v1beta1",
    "kind": "ReferenceGrant",
    "metadata": {"name": "g", "namespace": "other"},
    "spec": {
        "from": [
            {"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "namespace": "default"}
        ],
        "to": [{"group": "", "kind": "Service", "name": "far"}],
    },
}


def _grant(**changes: Any) -> dict[str, Any]:
    spec = {**GRANT["spec"], **changes.pop("spec", {})}
    return {**GRANT, "metadata": {**GRANT["metadata"], **changes}, "spec": spec}


@pytest.mark.parametrize(
    ("grant", "allowed"),
    [
        (None, False),
        (_grant(), True),
        (_grant(spec={"to": [{"group": "", "kind": "Service"}]}), True),  # every Service
        (_grant(spec={"to": [{"group": "", "kind": "Service", "name": "near"}]}), False),
        (_grant(namespace="default"), False),  # a grant lives in the target's namespace
        (
            _grant(
                spec={
                    "from": [
                        {
                            "group": "gateway.networking.k8s.io",
                            "kind": "HTTPRoute",
                            "namespace": "x",
                        }
                    ]
                }
            ),
            False,
        ),
        (
            _grant(
                spec={
                    "from": [
                        {
                            "group": "gateway.networking.k8s.io",
                            "kind": "GRPCRoute",
                            "namespace": "default",
                        }
                    ]
                }
            ),
            False,
        ),
    ],
)
def test_cross_namespace_backends_need_a_reference_grant(
    grant: dict[str, Any] | None, allowed: bool
) -> None:
    objs = [*BASE, service("far", ns="other"), *slices("far", "10.9.0.1", ns="other")]
    objs.append(httproute("r", rule("/", backend_ref("far", namespace="other"))))
    if grant is not None:
        objs.append(grant)
    result = translate(objs, validate=golden_validator())
    (svc,) = result.config["services"]
    targets = upstream_targets(result.config)[svc["name"]]
    if allowed:
        assert targets == {"10.9.0.1:8080": 1} and "plugins" not in svc
    else:
        assert targets == {}
        assert svc["plugins"][0]["name"] == "request-termination"
        assert svc["plugins"][0]["config"] == {
            "status_code": 500,
            "message": "no existing backendRef provided",
        }
        assert any("no ReferenceGrant in other" in str(p) for p in result.problems)


# -- filters -----------------------------------------------------------------------------------


def plugins_of(cfg: dict[str, Any], route: str = "httproute.default.r.0.0") -> dict[str, Any]:
    return {p["name"]: p["config"] for p in routes(cfg)[route].get("plugins", [])}


def test_header_modifiers_become_transformers() -> None:
    filters = [
        {
            "type": "RequestHeaderModifier",
            "requestHeaderModifier": {
                "set": [{"name": "X-S", "value": "1"}],
                "add": [{"name": "X-A", "value": "2"}],
                "remove": ["X-R"],
            },
        },
        {"type": "ResponseHeaderModifier", "responseHeaderModifier": {"remove": ["Server"]}},
        {"type": "URLRewrite", "urlRewrite": {"hostname": "up.internal"}},
    ]
    got = plugins_of(config(*BASE, httproute("r", rule("/", backend_ref("echo"), filters=filters))))
    assert got == {
        "request-transformer": {
            "replace": {"headers": ["X-S:1", "host:up.internal"]},
            "add": {"headers": ["X-S:1", "host:up.internal"]},
            "append": {"headers": ["X-A:2"]},
            "remove": {"headers": ["X-R"]},
        },
        "response-transformer": {"remove": {"headers": ["Server"]}},
    }


@pytest.mark.parametrize(
    ("path", "replacement", "paths", "uri"),
    [
        ("/old", "/new", ["~/old$", "~/old(/.*)"], "/new$(uri_captures[1])"),
        ("/old/", "/new/", ["~/old$", "~/old(/.*)"], "/new$(uri_captures[1])"),
        (
            "/old",
            "/",
            ["~/old$", "~/old(/.*)"],
            '$(uri_captures[1] == nil and "/" or uri_captures[1])',
        ),
        (
            "/",
            "/new",
            ["~/$", "~/(.*)"],
            '/new$(uri_captures[1] == nil and "" or "/" .. uri_captures[1])',
        ),
        ("/", "", ["~/$", "~/(.*)"], '$(uri_captures[1] == nil and "/" or "/" .. uri_captures[1])'),
    ],
)
def test_url_rewrite_prefix(path: str, replacement: str, paths: list[str], uri: str) -> None:
    rewrite = {
        "type": "URLRewrite",
        "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": replacement}},
    }
    cfg = config(*BASE, httproute("r", rule(path, backend_ref("echo"), filters=[rewrite])))
    assert routes(cfg)["httproute.default.r.0.0"]["paths"] == paths
    assert plugins_of(cfg)["request-transformer"] == {"replace": {"uri": uri}}
    assert prefix_uri(None, "/x") == "/"


@pytest.mark.parametrize(
    ("redirect", "hostnames", "expected"),
    [
        (
            {"hostname": "b.example.com", "statusCode": 301},
            None,
            {"status_code": 301, "location": "http://b.example.com/", "keep_incoming_path": True},
        ),
        (
            {
                "scheme": "https",
                "hostname": "b.example.com",
                "port": 8443,
                "path": {"type": "ReplaceFullPath", "replaceFullPath": "/x"},
            },
            None,
            {
                "status_code": 302,
                "location": "https://b.example.com:8443/x",
                "keep_incoming_path": False,
            },
        ),
        (
            {"scheme": "https"},
            ["a.example.com"],
            {"status_code": 302, "location": "https://a.example.com/", "keep_incoming_path": True},
        ),
    ],
)
def test_request_redirect_uses_the_redirect_plugin(
    redirect: dict[str, Any], hostnames: list[str] | None, expected: dict[str, Any]
) -> None:
    flt = [{"type": "RequestRedirect", "requestRedirect": redirect}]
    cfg = config(*BASE, httproute("r", rule("/", filters=flt), hostnames=hostnames))
    assert plugins_of(cfg) == {"redirect": expected}


def test_extension_ref_and_annotation_attach_kong_plugins() -> None:
    def kong_plugin(name: str, plugin: str, conf: dict[str, Any]) -> dict[str, Any]:
        return {
            "apiVersion": "configuration.konghq.com/v1",
            "kind": "KongPlugin",
            "metadata": {"name": name, "namespace": "default"},
            "plugin": plugin,
            "config": conf,
        }

    ext = [
        {
            "type": "ExtensionRef",
            "extensionRef": {
                "group": "configuration.konghq.com",
                "kind": "KongPlugin",
                "name": "limit",
            },
        }
    ]
    route = httproute(
        "r",
        rule("/a", backend_ref("echo"), filters=ext),
        rule("/b", backend_ref("echo")),
        annotations={"konghq.com/plugins": "tid"},
    )
    objs = (
        *BASE,
        route,
        kong_plugin("limit", "rate-limiting", {"minute": 5}),
        kong_plugin("tid", "correlation-id", {}),
    )
    cfg = config(*objs)
    assert set(plugins_of(cfg, "httproute.default.r.0.0")) == {"rate-limiting", "correlation-id"}
    assert set(plugins_of(cfg, "httproute.default.r.1.0")) == {"correlation-id"}


# -- broken routes -----------------------------------------------------------------------------


def test_a_broken_httproute_does_not_block_the_others() -> None:
    query = httproute(
        "query", rule("/q", backend_ref("echo"), queryParams=[{"name": "v", "value": "1"}])
    )
    regex = httproute("regex", rule("/items/[", backend_ref("echo"), kind="RegularExpression"))
    good = httproute("good", rule("/good", backend_ref("echo")))
    result = translate([*BASE, query, regex, good], validate=golden_validator())
    assert set(routes(result.config)) == {"httproute.default.good.0.0"}
    text = [str(p) for p in result.problems]
    assert any("HTTPRoute default/query" in t and "query param matches" in t for t in text)
    assert any("HTTPRoute default/regex" in t for t in text)


def test_unaccepted_routes_are_reported() -> None:
    lost = httproute("lost", parents=[{"name": "main", "sectionName": "nope"}])
    (message,) = problems(*BASE, lost)
    assert "HTTPRoute default/lost: not accepted by any Gateway (NoMatchingParent" in message


def test_route_annotations_apply_to_httproute_routes() -> None:
    anns = {"konghq.com/strip-path": "true", "konghq.com/protocols": "https"}
    cfg = config(*BASE, httproute("r", annotations=anns))
    route = routes(cfg)["httproute.default.r.0.0"]
    assert (route["strip_path"], route["protocols"]) == (True, ["https"])


TLS_SECRET = {
    "apiVersion": "v1",
    "kind": "Secret",
    "metadata": {"name": "cert", "namespace": "certs"},
    "type": "kubernetes.io/tls",
}


@pytest.mark.parametrize("with_grant", [False, True])
def test_https_listener_certificate_from_another_namespace(with_grant: bool) -> None:
    tls_golden = load_objects(GOLDEN / "tls" / "in.yaml")
    data = next(o["data"] for o in tls_golden if o["kind"] == "Secret")
    secret = {**TLS_SECRET, "data": data}
    https = listener(
        "tls",
        "HTTPS",
        443,
        hostname="secure.example.com",
        tls={"certificateRefs": [{"name": "cert", "namespace": "certs"}]},
    )
    objs = [gateway_class(), gateway("main", https), secret]
    if with_grant:
        objs.append(
            _grant(
                namespace="certs",
                spec={
                    "from": [
                        {
                            "group": "gateway.networking.k8s.io",
                            "kind": "Gateway",
                            "namespace": "default",
                        }
                    ],
                    "to": [{"group": "", "kind": "Secret"}],
                },
            )
        )
    result = translate(objs, validate=golden_validator())
    certs = result.config.get("certificates", [])
    if with_grant:
        assert [s["name"] for c in certs for s in c["snis"]] == ["secure.example.com"]
        assert result.problems == []
    else:
        assert certs == []
        assert "no ReferenceGrant in certs allows Gateways from default" in str(result.problems)


def test_backend_service_annotations_apply_and_must_agree() -> None:
    def annotated(name: str, **anns: str) -> dict[str, Any]:
        svc = service(name)
        svc["metadata"]["annotations"] = anns
        return svc

    plugin = {
        "apiVersion": "configuration.konghq.com/v1",
        "kind": "KongPlugin",
        "metadata": {"name": "tid", "namespace": "default"},
        "plugin": "correlation-id",
        "config": {},
    }
    same = {"konghq.com/read-timeout": "5000", "konghq.com/plugins": "tid"}
    objs = [
        gateway_class(),
        gateway(),
        plugin,
        annotated("a", **same),
        annotated("b", **same),
        annotated("c", **{"konghq.com/read-timeout": "9000"}),
        httproute("agree", rule("/ok", backend_ref("a"), backend_ref("b"))),
        httproute("differ", rule("/no", backend_ref("a"), backend_ref("c"))),
    ]
    result = translate(objs, validate=golden_validator())
    (svc,) = result.config["services"]
    assert svc["name"] == "httproute.default.agree.0" and svc["read_timeout"] == 5000
    assert [p["name"] for p in svc["plugins"]] == ["correlation-id"]
    text = "\n".join(str(p) for p in result.problems)
    assert "Service default/c: Service has inconsistent konghq.com/plugins annotation" in text
    assert "httproute.default.differ.0 left out" in text
