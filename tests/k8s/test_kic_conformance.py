"""Cases ported from KIC's own tests and golden files (``kic:internal/dataplane/testdata/golden``,
``kic:internal/dataplane/translator/*_test.go``): the input KIC's tests feed it, and what KIC's
source gives for it."""

from __future__ import annotations

import base64
from typing import Any

from fastkong.k8s import translate


def service(name: str, ports: list[dict[str, Any]], **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default", **meta},
        "spec": {"ports": ports},
    }


def ingress(
    name: str, paths: list[tuple[str, str, int]], host: str = "", **meta: Any
) -> dict[str, Any]:
    """``paths``: (path, service, port number), pathType ImplementationSpecific."""
    rule: dict[str, Any] = {
        "http": {
            "paths": [
                {
                    "path": path,
                    "pathType": "ImplementationSpecific",
                    "backend": {"service": {"name": svc, "port": {"number": port}}},
                }
                for path, svc, port in paths
            ]
        }
    }
    if host:
        rule["host"] = host
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": name, "namespace": "default", **meta},
        "spec": {"ingressClassName": "kong", "rules": [rule]},
    }


def routes(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for s in config.get("services", []) for r in s.get("routes", [])}


def test_instance_name_suffix_hashes_what_kic_hashes() -> None:
    """KIC golden ``kongplugin-instance-name``: one KongPlugin with ``instance_name: example`` on
    two Ingresses; KIC suffixes sha256 of ``_route-<route name>``."""
    plugins = "konghq.com/plugins"
    objs = [
        service("httpbin", [{"name": "http", "port": 80, "targetPort": 80}]),
        service("httpbin-other", [{"name": "http", "port": 80, "targetPort": 80}]),
        ingress("httpbin", [("/httpbin", "httpbin", 80)], annotations={plugins: "kong-id"}),
        ingress(
            "httpbin-other",
            [("/httpbin-diff", "httpbin", 80), ("/httpbin-other", "httpbin-other", 80)],
            annotations={plugins: "kong-id"},
        ),
        {
            "apiVersion": "configuration.konghq.com/v1",
            "kind": "KongPlugin",
            "metadata": {"name": "kong-id", "namespace": "default"},
            "plugin": "correlation-id",
            "instance_name": "example",
            "config": {"header_name": "kong-id"},
        },
    ]
    got = routes(translate(objs, ingress_class="kong", validate=False).config)
    names = {name: [p["instance_name"] for p in r["plugins"]] for name, r in got.items()}
    assert names == {
        "default.httpbin.httpbin..80": ["example-21a1f5b5f"],
        "default.httpbin-other.httpbin..80": ["example-2bc7f3de3"],
        "default.httpbin-other.httpbin-other..80": ["example-6c322b5f5"],
    }


def endpoint_slice(name: str, endpoints: list[tuple[str, bool, bool]]) -> dict[str, Any]:
    """``endpoints``: (address, ready, terminating), port ``http`` 8080."""
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name,
            "namespace": "default",
            "labels": {"kubernetes.io/service-name": "httpbin"},
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": [
            {"addresses": [a], "conditions": {"ready": r, "terminating": t}}
            for a, r, t in endpoints
        ],
    }


def test_an_address_in_two_slices_is_one_target_of_weight_100() -> None:
    """KIC's ``getEndpoints`` (``translate_upstreams.go``) keeps one endpoint per address, port and
    terminating flag for one Service port; weights only add up across backends."""
    objs = [
        service("httpbin", [{"name": "http", "port": 80, "targetPort": 8080}]),
        ingress("httpbin", [("/", "httpbin", 80)]),
        endpoint_slice("a", [("10.0.0.1", True, False), ("10.0.0.2", True, False)]),
        endpoint_slice("b", [("10.0.0.1", True, False), ("10.0.0.2", False, True)]),
    ]
    (upstream,) = translate(objs, ingress_class="kong", validate=False).config["upstreams"]
    got = {t["target"]: t["weight"] for t in upstream["targets"]}
    assert got == {"10.0.0.1:8080": 100, "10.0.0.2:8080": 100}


def test_grpc_with_http_protocols_unsets_strip_path() -> None:
    """KIC's ``normalizeProtocols`` (``kongstate/route.go``): grpc next to http makes the route
    http+https and, like grpc alone, leaves strip_path unset."""
    objs = [
        service("httpbin", [{"name": "http", "port": 80}]),
        ingress(
            "mixed",
            [("/", "httpbin", 80)],
            annotations={"konghq.com/protocols": "grpc,http", "konghq.com/strip-path": "false"},
        ),
        ingress("grpc", [("/g", "httpbin", 80)], annotations={"konghq.com/protocols": "grpcs"}),
        ingress("plain", [("/p", "httpbin", 80)]),
    ]
    got = routes(translate(objs, ingress_class="kong", validate=False).config)
    mixed, grpc, plain = (got[f"default.{n}.httpbin..80"] for n in ("mixed", "grpc", "plain"))
    assert mixed["protocols"] == ["http", "https"] and "strip_path" not in mixed
    assert grpc["protocols"] == ["grpcs"] and "strip_path" not in grpc
    assert plain["strip_path"] is False


def upstream_policy(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "configuration.konghq.com/v1beta1",
        "kind": "KongUpstreamPolicy",
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
    }


def test_kong_upstream_policy_sets_upstream_fields() -> None:
    """KIC golden ``kongupstreampolicy-ingress``: the policy's fields on the Service's upstream
    (``kongstate/kongupstreampolicy.go`` ``TranslateKongUpstreamPolicy``)."""
    policy = upstream_policy(
        "httpbin",
        {
            "algorithm": "consistent-hashing",
            "slots": 100,
            "hashOn": {"header": "session-id"},
            "hashOnFallback": {"input": "consumer"},
            "healthchecks": {
                "active": {
                    "type": "http",
                    "httpPath": "/status",
                    "httpsSni": "example.com",
                    "httpsVerifyCertificate": False,
                    "concurrency": 20,
                    "timeout": 15,
                    "headers": {"X-Health-Check": ["kong", "dataplane"]},
                    "healthy": {"httpStatuses": [200, 302], "interval": 5, "successes": 5},
                    "unhealthy": {
                        "httpStatuses": [400, 500],
                        "httpFailures": 5,
                        "timeouts": 5,
                        "interval": 10,
                    },
                },
                "passive": {
                    "type": "tcp",
                    "healthy": {"successes": 5},
                    "unhealthy": {"tcpFailures": 5, "timeouts": 10},
                },
            },
        },
    )
    anns = {"konghq.com/upstream-policy": "httpbin"}
    objs = [
        service("httpbin", [{"name": "http", "port": 80}], annotations=anns),
        ingress("httpbin", [("/", "httpbin", 80)]),
        policy,
    ]
    result = translate(objs, ingress_class="kong", validate=False)
    (upstream,) = result.config["upstreams"]
    assert {k: v for k, v in upstream.items() if k not in ("name", "tags", "targets")} == {
        "algorithm": "consistent-hashing",
        "hash_fallback": "consumer",
        "hash_on": "header",
        "hash_on_header": "session-id",
        "slots": 100,
        "healthchecks": {
            "active": {
                "type": "http",
                "concurrency": 20,
                "http_path": "/status",
                "https_sni": "example.com",
                "https_verify_certificate": False,
                "timeout": 15,
                "headers": {"X-Health-Check": ["kong", "dataplane"]},
                "healthy": {"http_statuses": [200, 302], "interval": 5, "successes": 5},
                "unhealthy": {
                    "http_failures": 5,
                    "http_statuses": [400, 500],
                    "timeouts": 5,
                    "interval": 10,
                },
            },
            "passive": {
                "type": "tcp",
                "healthy": {"successes": 5},
                "unhealthy": {"tcp_failures": 5, "timeouts": 10},
            },
        },
    }
    assert not [p for p in result.problems if "upstream-policy" in p.message]


def test_kong_upstream_policy_hash_variants_and_missing_policy() -> None:
    """``translateHashOn*`` in KIC: a cookie fallback fills ``hash_on_cookie(_path)``; query-arg
    and uri-capture variants fill ``hash_on_*``/``hash_fallback_*``; a policy that does not exist
    leaves the upstream as it was and is reported."""
    objs = [
        service("a", [{"port": 80}], annotations={"konghq.com/upstream-policy": "p"}),
        service("b", [{"port": 80}], annotations={"konghq.com/upstream-policy": "q"}),
        service("c", [{"port": 80}], annotations={"konghq.com/upstream-policy": "absent"}),
        ingress("i", [("/a", "a", 80), ("/b", "b", 80), ("/c", "c", 80)]),
        upstream_policy(
            "p",
            {
                "algorithm": "consistent-hashing",
                "hashOn": {"queryArg": "user"},
                "hashOnFallback": {"cookie": "sess", "cookiePath": "/app"},
            },
        ),
        upstream_policy(
            "q",
            {
                "algorithm": "consistent-hashing",
                "hashOn": {"uriCapture": "id"},
                "hashOnFallback": {"queryArg": "x"},
            },
        ),
    ]
    result = translate(objs, ingress_class="kong", validate=False)
    ups = {u["name"]: u for u in result.config["upstreams"]}
    a, b, c = (ups[f"{n}.default.80.svc"] for n in "abc")
    assert (a["hash_on"], a["hash_on_query_arg"]) == ("query_arg", "user")
    assert (a["hash_fallback"], a["hash_on_cookie"], a["hash_on_cookie_path"]) == (
        "cookie",
        "sess",
        "/app",
    )
    assert (b["hash_on"], b["hash_on_uri_capture"]) == ("uri_capture", "id")
    assert (b["hash_fallback"], b["hash_fallback_query_arg"]) == ("query_arg", "x")
    assert "algorithm" not in c and "hash_on" not in c
    assert [p.message for p in result.problems if p.ref.name == "c"] == [
        "KongUpstreamPolicy default/absent not found; not applied"
    ]


def test_tls_secret_with_line_wrapped_base64_is_read() -> None:
    """KIC golden ``ingress-v1-rule-with-tls``: the Secret's ``data`` is base64 wrapped over lines,
    which the API server (Go's base64 decoder skips line breaks) and KIC accept."""

    def wrapped(text: str) -> str:
        b64 = base64.b64encode(text.encode()).decode()
        return "\n".join(b64[i : i + 76] for i in range(0, len(b64), 76)) + "\n"

    crt = "-----BEGIN CERTIFICATE-----\n" + "A" * 120 + "\n-----END CERTIFICATE-----\n"
    key = "-----BEGIN PRIVATE KEY-----\n" + "B" * 120 + "\n-----END PRIVATE KEY-----\n"
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "sooper-secret", "namespace": "default"},
        "type": "kubernetes.io/tls",
        "data": {"tls.crt": wrapped(crt), "tls.key": wrapped(key)},
    }
    ing = ingress("tls", [("/", "httpbin", 80)], host="example.com")
    ing["spec"]["tls"] = [{"hosts": ["example.com"], "secretName": "sooper-secret"}]
    objs = [service("httpbin", [{"port": 80}]), ing, secret]
    result = translate(objs, ingress_class="kong", validate=False)
    (cert,) = result.config["certificates"]
    # KIC's getCertFromSecret trims the PEM text (here: the final newline).
    assert (cert["cert"], cert["key"]) == (crt.strip(), key.strip())
    assert [s["name"] for s in cert["snis"]] == ["example.com"]
    assert result.problems == []


def ingress_class(default: bool) -> dict[str, Any]:
    anns = {"ingressclass.kubernetes.io/is-default-class": "true"} if default else {}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IngressClass",
        "metadata": {"name": "kong", "annotations": anns},
        "spec": {"controller": "ingress-controllers.konghq.com/kong"},
    }


def test_default_class_takes_consumers_and_cluster_plugins_without_class_annotation() -> None:
    """KIC's store (``getIngressClassHandling``): when our IngressClass is the cluster default,
    KongConsumers and global KongClusterPlugins without ``kubernetes.io/ingress.class`` are
    ours (``ExactOrEmptyClassMatch``); otherwise they need the annotation."""
    consumer = {
        "apiVersion": "configuration.konghq.com/v1",
        "kind": "KongConsumer",
        "metadata": {"name": "alice", "namespace": "default"},
        "username": "alice",
    }
    cluster_plugin = {
        "apiVersion": "configuration.konghq.com/v1",
        "kind": "KongClusterPlugin",
        "metadata": {"name": "cid", "labels": {"global": "true"}},
        "plugin": "correlation-id",
    }
    for default in (True, False):
        objs = [ingress_class(default), consumer, cluster_plugin]
        config = translate(objs, ingress_class="kong", validate=False).config
        assert [c["username"] for c in config.get("consumers", [])] == (
            ["alice"] if default else []
        )
        assert [p["name"] for p in config.get("plugins", [])] == (
            ["correlation-id"] if default else []
        )


def test_ingress_class_annotation_wins_over_ingress_class_name() -> None:
    """KIC's ``ListIngressesV1`` checks a non-empty ``kubernetes.io/ingress.class`` annotation
    before ``spec.ingressClassName``."""
    ann = "kubernetes.io/ingress.class"
    ours = ingress("ours", [("/a", "httpbin", 80)], annotations={ann: "kong"})
    ours["spec"]["ingressClassName"] = "other"
    theirs = ingress("theirs", [("/b", "httpbin", 80)], annotations={ann: "other"})
    objs = [service("httpbin", [{"port": 80}]), ours, theirs]
    got = routes(translate(objs, ingress_class="kong", validate=False).config)
    assert list(got) == ["default.ours.httpbin..80"]


def test_core_objects_have_no_group_tag() -> None:
    """KIC golden ``ingress-v1-with-default-backend``: a Service's entities are tagged
    ``k8s-name``, ``k8s-namespace``, ``k8s-kind``, ``k8s-version`` (``GenerateTagsForObject``
    writes ``k8s-group`` only for a non-empty group); an Ingress's carry its group."""
    svc = service("foo-svc", [{"port": 80}])
    objs = [svc, ingress("foo", [("/", "foo-svc", 80)], host="example.com")]
    config = translate(objs, ingress_class="kong", validate=False).config
    (kong_service,) = config["services"]
    assert kong_service["tags"] == [
        "k8s-name:foo-svc",
        "k8s-namespace:default",
        "k8s-kind:Service",
        "k8s-version:v1",
    ]
    assert config["upstreams"][0]["tags"] == kong_service["tags"]
    assert kong_service["routes"][0]["tags"] == [
        "k8s-name:foo",
        "k8s-namespace:default",
        "k8s-kind:Ingress",
        "k8s-group:networking.k8s.io",
        "k8s-version:v1",
    ]


def test_udp_is_not_a_protocol_kic_takes_from_annotations() -> None:
    """KIC's ``util.ValidateProtocol`` knows http, https, grpc(s), ws(s), tcp, tls and
    tls_passthrough: ``konghq.com/protocols: udp`` on an Ingress and ``konghq.com/protocol: udp``
    on a Service are ignored."""
    objs = [
        service("httpbin", [{"port": 80}], annotations={"konghq.com/protocol": "udp"}),
        ingress("udp", [("/", "httpbin", 80)], annotations={"konghq.com/protocols": "udp"}),
        ingress("tls", [("/t", "httpbin", 80)], annotations={"konghq.com/protocols": "tls"}),
    ]
    result = translate(objs, ingress_class="kong", validate=False)
    (kong_service,) = result.config["services"]
    assert kong_service["protocol"] == "http"
    got = {r["name"]: r["protocols"] for r in kong_service["routes"]}
    assert got == {"default.udp.httpbin..80": ["http", "https"], "default.tls.httpbin..80": ["tls"]}


def credential_secret(name: str, kind: str, **data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": "default",
            "labels": {"konghq.com/credential": kind},
        },
        "stringData": data,
    }


def consumer(name: str, credentials: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": "configuration.konghq.com/v1",
        "kind": "KongConsumer",
        "metadata": {
            "name": name,
            "namespace": "default",
            "annotations": {"kubernetes.io/ingress.class": "kong"},
        },
        "username": name,
        "credentials": credentials,
    }


def test_a_credential_key_two_consumers_share_authenticates_nobody() -> None:
    """KIC's ``CredentialConflictsDetector``: a key-auth key (basic-auth username, jwt key) given
    by two credentials is a conflict, and KIC keeps none of them (it drops the consumers too;
    fastkong keeps the consumers and their other credentials). Before, the first consumer by
    name kept the key."""
    objs = [
        credential_secret("a", "key-auth", key="shared"),
        credential_secret("b", "key-auth", key="shared"),
        credential_secret("c", "key-auth", key="own"),
        credential_secret("d", "basic-auth", username="u", password="p1"),
        credential_secret("e", "basic-auth", username="u", password="p2"),
        consumer("alice", ["a", "c", "d"]),
        consumer("bob", ["b", "e"]),
    ]
    result = translate(objs, ingress_class="kong", validate=False)
    got = {
        c["username"]: (
            [k["key"] for k in c.get("keyauth_credentials", [])],
            [b["username"] for b in c.get("basicauth_credentials", [])],
        )
        for c in result.config["consumers"]
    }
    assert got == {"alice": (["own"], []), "bob": ([], [])}
    left_out = sorted(p.ref.name for p in result.problems if p.ref.kind == "Secret")
    assert left_out == ["a", "b", "d", "e"]


def test_hmac_auth_credentials() -> None:
    """KIC's hmac-auth credential Secret: ``username`` required (``constraints.go``), ``secret``
    optional (Kong generates one); a username two consumers give is a conflict, as for basic-auth.
    They were reported as an unknown credential type."""
    objs = [
        credential_secret("h1", "hmac-auth", username="alice-h", secret="s1"),
        credential_secret("h2", "hmac-auth", username="gen"),
        credential_secret("h3", "hmac-auth", secret="no-user"),
        credential_secret("h4", "hmac-auth", username="shared", secret="a"),
        credential_secret("h5", "hmac-auth", username="shared", secret="b"),
        consumer("alice", ["h1", "h2", "h3", "h4"]),
        consumer("bob", ["h5"]),
    ]
    result = translate(objs, ingress_class="kong", validate=True)
    got = {
        c["username"]: [(h["username"], h.get("secret")) for h in c.get("hmacauth_credentials", [])]
        for c in result.config["consumers"]
    }
    assert got == {"alice": [("alice-h", "s1"), ("gen", None)], "bob": []}
    left_out = sorted(p.ref.name for p in result.problems if p.ref.kind == "Secret")
    assert left_out == ["h4", "h5"]
    assert "credential secret default/h3: hmac-auth credential needs 'username'" in [
        p.message for p in result.problems
    ]


def test_credential_type_comes_from_the_label_only() -> None:
    """KIC 3's ``util.ExtractKongCredentialType`` reads the ``konghq.com/credential`` label; the
    ``kongCredType`` data key of KIC 1.x makes no credential."""
    legacy = credential_secret("legacy", "key-auth", key="k", kongCredType="key-auth")
    del legacy["metadata"]["labels"]
    objs = [legacy, consumer("alice", ["legacy"])]
    result = translate(objs, ingress_class="kong", validate=False)
    (alice,) = result.config["consumers"]
    assert "keyauth_credentials" not in alice
    assert [p.message for p in result.problems] == [
        "credential secret default/legacy has no label konghq.com/credential "
        "(kongCredType in data is KIC 1.x's, not read)"
    ]


def test_rewrite_annotation_becomes_a_request_transformer() -> None:
    """KIC's ``MaybeRewriteURI`` (``subtranslator/ingress.go``, RewriteURIs gate on, which a KIC
    user of ``konghq.com/rewrite`` has): ``$N`` becomes ``$(uri_captures[N])``, ``\\$`` a
    literal ``$``; a malformed value leaves the route out."""
    rw = "konghq.com/rewrite"
    objs = [
        service("httpbin", [{"port": 80}]),
        ingress("cap", [("/~/api/(.*)", "httpbin", 80)], annotations={rw: "/v2/$1\\$"}),
        ingress("empty", [("/e", "httpbin", 80)], annotations={rw: ""}),
        ingress("bad", [("/b", "httpbin", 80)], annotations={rw: "/$x"}),
    ]
    result = translate(objs, ingress_class="kong", validate=False)
    got = {
        name: [(p["name"], p["config"]) for p in r.get("plugins", [])]
        for name, r in routes(result.config).items()
    }
    assert got == {
        "default.cap.httpbin..80": [
            ("request-transformer", {"replace": {"uri": "/v2/$(uri_captures[1])$"}})
        ],
        "default.empty.httpbin..80": [("request-transformer", {"replace": {"uri": "/"}})],
    }
    assert [p.message for p in result.problems] == [
        "route 'default.bad.httpbin..80' left out: konghq.com/rewrite='/$x': unexpected x at pos 2"
    ]


def test_entity_ids_are_kics() -> None:
    """KIC (FillIDs, on by default in KIC 3) gives services, routes, consumers with a username and
    plugins a UUIDv5 ID; the values here are those of KIC's goldens ``ingress-v1-with-default-
    backend``, ``kongplugin-instance-name`` and ``credentials``."""
    svc = service("foo-svc", [{"port": 80}])
    svc["metadata"]["namespace"] = "foo-namespace"
    rule = ingress("foo", [("/", "foo-svc", 80)], host="example.com")
    rule["metadata"]["namespace"] = "foo-namespace"
    rule["spec"]["rules"][0]["http"]["paths"][0]["pathType"] = "Exact"
    config = translate([svc, rule], ingress_class="kong", validate=False).config
    (kong_service,) = config["services"]
    assert kong_service["id"] == "fe1e2edc-5479-52fe-b0f4-b90d8d5f83ba"
    assert kong_service["routes"][0]["id"] == "3eee2c18-8fcc-5661-8f84-5c89adfa404f"

    plugins = "konghq.com/plugins"
    objs = [
        service("httpbin", [{"port": 80}]),
        ingress("httpbin", [("/httpbin", "httpbin", 80)], annotations={plugins: "kong-id"}),
        {
            "apiVersion": "configuration.konghq.com/v1",
            "kind": "KongPlugin",
            "metadata": {"name": "kong-id", "namespace": "default"},
            "plugin": "correlation-id",
        },
        consumer("consumer", []),
    ]
    config = translate(objs, ingress_class="kong", validate=False).config
    (route,) = routes(config).values()
    assert [p["id"] for p in route["plugins"]] == ["61a22b86-f859-5c8a-a23c-97b92b14b635"]
    assert config["consumers"][0]["id"] == "7deb6e70-60be-5dd2-b374-06551479ea5e"


def test_default_backend_service_has_no_path() -> None:
    """KIC golden ``ingress-v1-with-default-backend``: the Kong service made for a default
    backend has no ``path`` (``translateIngressDefaultBackendService``); a Service's
    ``konghq.com/path`` still sets one."""
    objs = [
        service("default-svc", [{"port": 80}]),
        service("pathed", [{"port": 80}], annotations={"konghq.com/path": "/base"}),
    ]
    for backend, expected in (("default-svc", None), ("pathed", "/base")):
        ing = ingress("ing", [])
        ing["spec"] = {
            "ingressClassName": "kong",
            "defaultBackend": {"service": {"name": backend, "port": {"number": 80}}},
        }
        config = translate([*objs, ing], ingress_class="kong", validate=False).config
        (kong_service,) = config["services"]
        assert kong_service.get("path") == expected
        assert kong_service["routes"][0]["name"] == "default.ing"


def test_ingress_class_parameters() -> None:
    """IngressClassParameters named by our IngressClass (KIC's
    ``getIngressClassParametersOrDefault``): ``serviceUpstream`` makes every Service's target its
    DNS name (``getEndpoints``); ``enableLegacyRegexDetection`` makes a path with characters
    Kong 2 took for a regex one (``MaybePrependRegexPrefix``)."""
    cls = ingress_class(False)
    cls["spec"]["parameters"] = {
        "apiGroup": "configuration.konghq.com",
        "kind": "IngressClassParameters",
        "name": "params",
        "namespace": "kong",
        "scope": "Namespace",
    }
    params = {
        "apiVersion": "configuration.konghq.com/v1alpha1",
        "kind": "IngressClassParameters",
        "metadata": {"name": "params", "namespace": "kong"},
        "spec": {"serviceUpstream": True, "enableLegacyRegexDetection": True},
    }
    objs = [
        cls,
        service("httpbin", [{"name": "http", "port": 80, "targetPort": 8080}]),
        ingress("i", [("/v[0-9]+/users", "httpbin", 80), ("/plain-path_1.0", "httpbin", 80)]),
        endpoint_slice("a", [("10.0.0.1", True, False)]),
    ]
    for given, paths, target in (
        (True, ["~/v[0-9]+/users", "/plain-path_1.0"], "httpbin.default.svc:80"),
        (False, ["/v[0-9]+/users", "/plain-path_1.0"], "10.0.0.1:8080"),
    ):
        config = translate(
            objs + ([params] if given else []), ingress_class="kong", validate=False
        ).config
        (route,) = routes(config).values()
        assert route["paths"] == paths
        assert [t["target"] for t in config["upstreams"][0]["targets"]] == [target]


# -- Gateway API: KIC's golden cases (``kic:internal/dataplane/testdata/golden/httproute-*``) --


def _kic_httproute(rules: list[dict[str, Any]], **meta: Any) -> list[dict[str, Any]]:
    """KIC's ``httproute-*`` golden inputs: Services httpbin (80 -> 80) and nginx (8080 -> 80),
    an HTTPRoute ``httproute-testing`` on Gateway ``kong``; plus that Gateway (HTTP) and a
    GatewayClass of ours, which KIC's translator does not need (its controller filters)."""
    return [
        service("httpbin", [{"port": 80, "protocol": "TCP", "targetPort": 80}]),
        service("nginx", [{"port": 8080, "protocol": "TCP", "targetPort": 80}]),
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "GatewayClass",
            "metadata": {"name": "kong"},
            "spec": {"controllerName": "konghq.com/kic-gateway-controller"},
        },
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "Gateway",
            "metadata": {"name": "kong", "namespace": "default"},
            "spec": {
                "gatewayClassName": "kong",
                "listeners": [{"name": "http", "protocol": "HTTP", "port": 80}],
            },
        },
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": "httproute-testing", "namespace": "default", **meta},
            "spec": {"parentRefs": [{"name": "kong"}], "rules": rules},
        },
    ]


def _kic_translate(objs: list[dict[str, Any]]) -> dict[str, Any]:
    controller = "konghq.com/kic-gateway-controller"
    return translate(objs, validate=False, gateway_controller=controller).config


ROUTE_TAGS = [
    "k8s-name:httproute-testing",
    "k8s-namespace:default",
    "k8s-kind:HTTPRoute",
    "k8s-group:gateway.networking.k8s.io",
    "k8s-version:v1",
]


def _service_tags(name: str) -> list[str]:
    return [f"k8s-name:{name}", "k8s-namespace:default", "k8s-kind:Service", "k8s-version:v1"]


def _path(kind: str, value: str) -> dict[str, Any]:
    return {"path": {"type": kind, "value": value}}


def test_httproute_example_golden() -> None:
    """KIC golden ``httproute-example``: rules with the same backends share a service named
    after the first; a single-Service service carries that Service's tags; the port is the last
    backend's; named rules tag their routes; ``konghq.com/strip-path`` applies."""
    rules = [
        {
            "name": "httproute-testing",
            "matches": [_path("PathPrefix", "/httproute-testing")],
            "backendRefs": [
                {"name": "httpbin", "kind": "Service", "port": 80, "weight": 75},
                {"name": "nginx", "kind": "Service", "port": 8080, "weight": 25},
            ],
        },
        {
            "name": "echo",
            "matches": [_path("PathPrefix", "/echo")],
            "backendRefs": [{"name": "httpbin", "kind": "Service", "port": 80}],
        },
        {
            "name": "content",
            "matches": [_path("PathPrefix", "/content")],
            "backendRefs": [{"name": "httpbin", "kind": "Service", "port": 80}],
        },
        {
            "matches": [_path("PathPrefix", "/nginx")],
            "backendRefs": [{"name": "nginx", "kind": "Service", "port": 8080}],
        },
    ]
    objs = _kic_httproute(rules, annotations={"konghq.com/strip-path": "true"})
    config = _kic_translate(objs)
    got = {
        s["name"]: (s["id"], s["host"], s["port"], s["tags"], s["routes"])
        for s in config["services"]
    }
    expected = {
        "httproute.default.httproute-testing.3": (
            "efb4a7d7-791f-504e-b005-0bd38bf1435e",
            8080,
            _service_tags("nginx"),
            [("80ab997f-3534-58af-a969-300888c6058a", "3.0", ["~/nginx$", "/nginx/"], [])],
        ),
        "httproute.default.httproute-testing.1": (
            "672dc964-a7f8-5a80-a518-96fc39500cc8",
            80,
            _service_tags("httpbin"),
            [
                (
                    "4deff45c-4095-55d2-80ab-aea40c0ac7bd",
                    "1.0",
                    ["~/echo$", "/echo/", "~/content$", "/content/"],
                    ["k8s-named-route-rule:echo", "k8s-named-route-rule:content"],
                )
            ],
        ),
        "httproute.default.httproute-testing.0": (
            "4e3cb785-a8d0-5866-aa05-117f7c64f24d",
            8080,
            ROUTE_TAGS,
            [
                (
                    "073fc413-1c03-50b4-8f44-43367c13daba",
                    "0.0",
                    ["~/httproute-testing$", "/httproute-testing/"],
                    ["k8s-named-route-rule:httproute-testing"],
                )
            ],
        ),
    }
    assert set(got) == set(expected)
    for name, (sid, port, tags, routes_) in expected.items():
        gid, host, gport, gtags, groutes = got[name]
        assert (gid, host, gport, gtags) == (sid, name, port, tags), name
        assert [
            (r["id"], r["name"].removeprefix("httproute.default.httproute-testing."), r["paths"])
            for r in groutes
        ] == [(rid, rname, paths) for rid, rname, paths, _ in routes_]
        for r, (_, _, _, extra) in zip(groutes, routes_, strict=True):
            assert r["tags"] == ROUTE_TAGS + extra
            assert (r["strip_path"], r["preserve_host"]) == (True, True)
    upstreams = {u["name"]: u["tags"] for u in config["upstreams"]}
    assert upstreams == {name: e[2] for name, e in expected.items()}


def test_httproute_url_rewrite_path_prefix_golden() -> None:
    """KIC golden ``httproute-url-rewrite-path-prefix``: ReplacePrefixMatch rewrites the
    route's paths into a capture and the URI from it; the plugin has the route's tags, no ID."""
    rewrite = {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/new-prefix"}
    rules = [
        {
            "matches": [_path("PathPrefix", "/prefix")],
            "filters": [{"type": "URLRewrite", "urlRewrite": {"path": rewrite}}],
            "backendRefs": [
                {"name": "httpbin", "kind": "Service", "port": 80, "weight": 75},
                {"name": "nginx", "kind": "Service", "port": 8080, "weight": 25},
            ],
        }
    ]
    (svc,) = _kic_translate(_kic_httproute(rules))["services"]
    assert (svc["id"], svc["name"], svc["port"]) == (
        "4e3cb785-a8d0-5866-aa05-117f7c64f24d",
        "httproute.default.httproute-testing.0",
        8080,
    )
    (route,) = svc["routes"]
    assert route["id"] == "073fc413-1c03-50b4-8f44-43367c13daba"
    assert route["paths"] == ["~/prefix$", "~/prefix(/.*)"]
    assert (route["strip_path"], route["preserve_host"]) == (False, True)
    assert route["plugins"] == [
        {
            "name": "request-transformer",
            "config": {"replace": {"uri": "/new-prefix$(uri_captures[1])"}},
            "tags": ROUTE_TAGS,
        }
    ]


def test_kongupstreampolicy_httproute_golden() -> None:
    """KIC golden ``kongupstreampolicy-httproute``: a KongUpstreamPolicy named by both backend
    Services (the same annotation on each) shapes the upstreams of both rules' services."""
    policy_ann = {"konghq.com/upstream-policy": "httpbin-httproute"}
    objs = [
        service("httpbin-prod", [{"port": 80, "protocol": "TCP", "targetPort": 80}]),
        service("httpbin-test", [{"port": 80, "protocol": "TCP", "targetPort": 80}]),
        *_kic_httproute([], annotations={"konghq.com/strip-path": "true"})[2:],
        {
            "apiVersion": "configuration.konghq.com/v1beta1",
            "kind": "KongUpstreamPolicy",
            "metadata": {"name": "httpbin-httproute", "namespace": "default"},
            "spec": {
                "algorithm": "consistent-hashing",
                "slots": 100,
                "hashOn": {"header": "session-id"},
                "hashOnFallback": {"input": "consumer"},
            },
        },
    ]
    for obj in objs[:2]:
        obj["metadata"]["annotations"] = policy_ann
    route = objs[-2]
    route["metadata"]["name"] = "httpbin"
    route["spec"]["rules"] = [
        {
            "matches": [_path("PathPrefix", "/httpbin-with-test")],
            "backendRefs": [
                {"name": "httpbin-prod", "kind": "Service", "port": 80, "weight": 75},
                {"name": "httpbin-test", "kind": "Service", "port": 80, "weight": 25},
            ],
        },
        {
            "matches": [_path("PathPrefix", "/httpbin-prod-only")],
            "backendRefs": [{"name": "httpbin-prod", "kind": "Service", "port": 80}],
        },
    ]
    config = _kic_translate(objs)
    ids = {s["name"]: (s["id"], s["routes"][0]["id"]) for s in config["services"]}
    assert ids == {
        "httproute.default.httpbin.1": (
            "bbf738ea-19e7-5277-8a48-36d555e5ae94",
            "e148326c-f112-5b0d-9644-4219ccb43cb6",
        ),
        "httproute.default.httpbin.0": (
            "de4fffcc-97bc-59c6-9ccd-f1fb29b93beb",
            "668cce91-3da3-590f-82c9-8296c5bb28e5",
        ),
    }
    for upstream in config["upstreams"]:
        fields = {k: upstream.get(k) for k in ("algorithm", "slots", "hash_on", "hash_fallback")}
        assert fields == {
            "algorithm": "consistent-hashing",
            "slots": 100,
            "hash_on": "header",
            "hash_fallback": "consumer",
        }
        assert upstream["hash_on_header"] == "session-id"
