"""Stream routes from Kubernetes: Gateway API TCPRoute, TLSRoute and UDPRoute (experimental
channel) and KIC's TCPIngress and UDPIngress, translated into Kong tcp / tls / tls_passthrough /
udp routes; their attachment rules, status, plugins, and the config the stream router loads."""

from __future__ import annotations

from typing import Any

from fastkong.config import load_config
from fastkong.k8s import translate
from fastkong.k8s.gateway_status import desired
from fastkong.k8s.gatewayapi import view
from fastkong.k8s.objects import Index
from fastkong.stream.router import UDP_PROTOCOLS, StreamRouter
from tests.k8s import kube
from tests.k8s.conftest import golden_validator
from tests.k8s.kube import (
    backend_ref,
    endpoint_slice,
    gateway,
    gateway_class,
    httproute,
    ingress,
    listener,
    service,
    tcp_ingress,
    tcp_rule,
)
from tests.pki import Pki

ALPHA = "gateway.networking.k8s.io/v1alpha2"


def tcproute(name: str, *rules: dict[str, Any], ns: str = "default", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"parentRefs": [{"name": "main"}], **spec}
    body["rules"] = list(rules) if rules else [{"backendRefs": [backend_ref("db", 5432)]}]
    return {
        "apiVersion": ALPHA,
        "kind": "TCPRoute",
        "metadata": {"name": name, "namespace": ns},
        "spec": body,
    }


def udproute(name: str, *rules: dict[str, Any], **spec: Any) -> dict[str, Any]:
    route = tcproute(name, *rules, **spec)
    route["kind"] = "UDPRoute"
    return route


def dns_service() -> dict[str, Any]:
    """A Service with a TCP and a UDP port 53 whose pods listen on different ports."""
    svc = service("dns", 53)
    svc["spec"]["ports"] = [
        {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 5353},
        {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 5354},
    ]
    return svc


def dns_slice() -> dict[str, Any]:
    eps = endpoint_slice("dns-1", "dns", "10.0.0.7", 5353)
    eps["ports"] = [
        {"name": "dns-tcp", "port": 5353, "protocol": "TCP"},
        {"name": "dns", "port": 5354, "protocol": "UDP"},
    ]
    return eps


def tlsroute(name: str, hostnames: list[str] | None, backend: str = "web", **spec: Any) -> Any:
    body: dict[str, Any] = {"parentRefs": [{"name": "main"}], **spec}
    if hostnames is not None:
        body["hostnames"] = hostnames
    body.setdefault("rules", [{"backendRefs": [backend_ref(backend, 443)]}])
    return {
        "apiVersion": ALPHA,
        "kind": "TLSRoute",
        "metadata": {"name": name, "namespace": "default"},
        "spec": body,
    }


def tls_secret(name: str, host: str) -> dict[str, Any]:
    cert, key = Pki("k8s stream CA").issue(host, dns=host)
    return kube.tls_secret(name, cert, key)


def backends() -> list[dict[str, Any]]:
    return [
        service("db", 5432),
        endpoint_slice("db-1", "db", "10.0.0.5", 5432),
        service("web", 443),
        endpoint_slice("web-1", "web", "10.0.0.6", 8443),
    ]


def run(*objects: dict[str, Any]) -> Any:
    return translate(list(objects), validate=golden_validator())


def routes(cfg: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for s in cfg.get("services", []) for r in s.get("routes", [])}


def services(cfg: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in cfg.get("services", [])}


def upstream_targets(cfg: dict[str, Any], name: str) -> list[str]:
    (up,) = [u for u in cfg.get("upstreams", []) if u["name"] == name]
    return [t["target"] for t in up.get("targets", [])]


def test_tcproute_becomes_a_tcp_route_on_its_listener_ports() -> None:
    gw = gateway("main", listener("db", "TCP", 5432), listener("web", "HTTP", 80))
    result = run(gateway_class(), gw, *backends(), tcproute("pg"))
    assert not result.problems
    svc = services(result.config)["tcproute.default.pg.0"]
    assert (svc["protocol"], svc["host"]) == ("tcp", "tcproute.default.pg.0")
    assert "path" not in svc
    route = routes(result.config)["tcproute.default.pg.0.0"]
    assert route["protocols"] == ["tcp"] and route["destinations"] == [{"port": 5432}]
    assert "k8s-kind:TCPRoute" in route["tags"]
    assert upstream_targets(result.config, "tcproute.default.pg.0") == ["10.0.0.5:5432"]
    # What the data plane loads: the stream router takes the route on that port only.
    loaded = load_config(result.to_yaml().encode()).config
    router = StreamRouter(loaded.routes)
    assert router.match(None, "10.1.1.1", 4000, "10.2.2.2", 5432) is not None
    assert router.match(None, "10.1.1.1", 4000, "10.2.2.2", 5433) is None


def test_tlsroute_passthrough_and_terminate() -> None:
    gw = gateway(
        "main",
        listener("pass", "TLS", 8443, hostname="*.pass.test", tls={"mode": "Passthrough"}),
        listener(
            "term",
            "TLS",
            9443,
            hostname="term.test",
            tls={"mode": "Terminate", "certificateRefs": [{"name": "term-cert"}]},
        ),
    )
    passthrough = tlsroute("p", ["a.pass.test", "other.test"], parentRefs=[_section("pass")])
    terminate = tlsroute("t", None, parentRefs=[_section("term")])
    result = run(
        gateway_class(),
        gw,
        *backends(),
        tls_secret("term-cert", "term.test"),
        passthrough,
        terminate,
    )
    assert not result.problems, result.problems
    got = routes(result.config)
    p, t = got["tlsroute.default.p.0.0"], got["tlsroute.default.t.0.0"]
    # The route's hostnames narrowed by the listener's; other.test does not fit *.pass.test.
    assert p["protocols"] == ["tls_passthrough"] and p["snis"] == ["a.pass.test"]
    assert p["destinations"] == [{"port": 8443}]
    # No hostnames of its own: the listener's.
    assert t["protocols"] == ["tls"] and t["snis"] == ["term.test"]
    assert t["destinations"] == [{"port": 9443}]
    (cert,) = result.config["certificates"]
    assert [s["name"] for s in cert["snis"]] == ["term.test"]
    loaded = load_config(result.to_yaml().encode()).config
    router = StreamRouter(loaded.routes)
    hit = router.match("a.pass.test", "10.1.1.1", 4000, "10.2.2.2", 8443)
    assert hit is not None and hit.name == "tlsroute.default.p.0.0"
    assert router.match("a.pass.test", "10.1.1.1", 4000, "10.2.2.2", 9443) is None


def _section(name: str) -> dict[str, Any]:
    return {"name": "main", "sectionName": name}


def test_kinds_attach_only_to_their_protocols() -> None:
    gw = gateway("main", listener("web", "HTTP", 80), listener("db", "TCP", 5432))
    objs = [gateway_class(), gw, *backends()]
    tcp_on_http = tcproute("a", parentRefs=[_section("web")])
    http_on_tcp = httproute("b", parents=[_section("db")])
    tls_on_tcp = tlsroute("c", ["c.test"])
    index = Index([*objs, tcp_on_http, http_on_tcp, tls_on_tcp])
    gv = view(index)
    reasons = {rv.route["metadata"]["name"]: rv.parents[0].reason for rv in gv.routes}
    assert reasons == {
        "a": "NotAllowedByListeners",
        "b": "NotAllowedByListeners",
        "c": "NotAllowedByListeners",
    }
    messages = {rv.route["metadata"]["name"]: rv.parents[0].message for rv in gv.routes}
    assert messages["a"] == "no TCP listener allows this route"
    assert messages["c"] == "no TLS listener allows this route"
    result = run(*objs, tcp_on_http, http_on_tcp, tls_on_tcp)
    assert "services" not in result.config
    assert len([p for p in result.problems if "not accepted by any Gateway" in str(p)]) == 3


def test_allowed_route_kinds_and_namespaces() -> None:
    only_http = {"kinds": [{"kind": "HTTPRoute"}]}
    everywhere = {"namespaces": {"from": "All"}}
    gw = gateway(
        "main",
        listener("strict", "TCP", 5432, allowedRoutes=only_http),
        listener("open", "TCP", 6432, allowedRoutes=everywhere),
    )
    other_ns = tcproute("x", ns="apps", parentRefs=[{"name": "main", "namespace": "default"}])
    result = run(
        gateway_class(), gw, *backends(), service("db", 5432, ns="apps"), tcproute("pg"), other_ns
    )
    got = routes(result.config)
    # "strict" admits no TCPRoute: both routes ride the open listener only.
    assert got["tcproute.default.pg.0.0"]["destinations"] == [{"port": 6432}]
    assert got["tcproute.apps.x.0.0"]["destinations"] == [{"port": 6432}]
    status = desired(Index([gateway_class(), gw, tcproute("pg")]), view(Index([gw])))
    assert status == {}  # a view without our class speaks for nothing


def test_route_status_and_attached_routes() -> None:
    gw = gateway("main", listener("db", "TCP", 5432))
    no_backends = tcproute("empty", {"backendRefs": []})
    missing = tcproute("missing", {"backendRefs": [backend_ref("nope", 1)]})
    objs = [gateway_class(), gw, *backends(), tcproute("pg"), no_backends, missing]
    index = Index(objs)
    want = desired(index, view(index), [{"ip": "10.9.9.9"}])
    (listener_status,) = want[("Gateway", "default", "main")]["listeners"]
    assert listener_status["attachedRoutes"] == 3
    assert listener_status["supportedKinds"] == [
        {"group": "gateway.networking.k8s.io", "kind": "TCPRoute"}
    ]

    def conditions(name: str) -> dict[str, tuple[str, str]]:
        (parent,) = want[("TCPRoute", "default", name)]["parents"]
        return {c["type"]: (c["status"], c["reason"]) for c in parent["conditions"]}

    assert conditions("pg") == {
        "Accepted": ("True", "Accepted"),
        "ResolvedRefs": ("True", "ResolvedRefs"),
    }
    assert conditions("empty")["Accepted"] == ("False", "UnsupportedValue")
    assert conditions("missing")["ResolvedRefs"] == ("False", "BackendNotFound")
    result = run(*objs)
    problems = [str(p) for p in result.problems]
    assert (
        "error: TCPRoute default/empty: TCPRoute can't be routed: rules[0]: a TCPRoute rule "
        "needs backendRefs; left out" in problems
    )
    # The route whose backend is missing stays, with no targets (connections are closed rather
    # than taken by another route).
    assert "tcproute.default.missing.0.0" in routes(result.config)
    assert upstream_targets(result.config, "tcproute.default.missing.0") == []


def test_tlsroute_with_no_hostname_anywhere_is_left_out() -> None:
    gw = gateway("main", listener("pass", "TLS", 8443, tls={"mode": "Passthrough"}))
    result = run(gateway_class(), gw, *backends(), tlsroute("bare", None))
    assert "services" not in result.config
    assert any("a TLSRoute needs its own or its listener's" in str(p) for p in result.problems)


def test_tcp_ingress_rules_tls_and_class() -> None:
    ours = tcp_ingress(
        "pg",
        tcp_rule(5432, "db", 5432),
        tcp_rule(9443, "db", 5432, host="db.example.test"),
        tcp_rule(0, "db", 5432),
        tls=[{"hosts": ["db.example.test"], "secretName": "db-cert"}],
    )
    theirs = tcp_ingress("other", tcp_rule(7000, "db", 5432), cls="nginx")
    result = run(*backends(), tls_secret("db-cert", "db.example.test"), ours, theirs)
    assert [str(p) for p in result.problems] == [
        "error: TCPIngress default/pg: rules[2]: port must be a number from 1 to 65535; left out"
    ]
    (svc,) = result.config["services"]
    assert (svc["name"], svc["host"], svc["protocol"]) == (
        "default.db.5432",
        "db.default.5432.svc",
        "tcp",
    )
    first, second = svc["routes"]
    assert first["name"] == "default.pg.0" and first["protocols"] == ["tcp", "tls"]
    assert first["destinations"] == [{"port": 5432}] and "snis" not in first
    assert second["snis"] == ["db.example.test"] and second["destinations"] == [{"port": 9443}]
    assert upstream_targets(result.config, "db.default.5432.svc") == ["10.0.0.5:5432"]
    (cert,) = result.config["certificates"]
    assert [s["name"] for s in cert["snis"]] == ["db.example.test"]
    loaded = load_config(result.to_yaml().encode()).config
    router = StreamRouter(loaded.routes)
    hit = router.match("db.example.test", "10.1.1.1", 4000, "10.2.2.2", 9443)
    assert hit is not None and hit.name == "default.pg.1"


def test_tcp_ingress_that_shares_an_http_service_is_left_out() -> None:
    http = ingress("web", "/", "db", 5432)
    tcp = tcp_ingress("pg", tcp_rule(5432, "db", 5432))
    result = run(*backends(), http, tcp)
    assert [r for r in routes(result.config) if r.startswith("default.pg")] == []
    assert any("also serves HTTP routes" in str(p) for p in result.problems)


def test_plugins_annotation_attaches_to_stream_routes() -> None:
    plugin = {
        "apiVersion": "configuration.konghq.com/v1",
        "kind": "KongPlugin",
        "metadata": {"name": "only-local", "namespace": "default"},
        "plugin": "ip-restriction",
        "config": {"allow": ["10.0.0.0/8"]},
    }
    route = tcproute("pg")
    route["metadata"]["annotations"] = {"konghq.com/plugins": "only-local"}
    tcp = tcp_ingress("ti", tcp_rule(6000, "db", 5432))
    tcp["metadata"]["annotations"]["konghq.com/plugins"] = "only-local"
    udp = tcp_ingress("ui", tcp_rule(6001, "db", 5432), kind="UDPIngress")
    udp["metadata"]["annotations"]["konghq.com/plugins"] = "only-local"
    dns = udproute("resolver", {"backendRefs": [backend_ref("db", 5432)]})
    dns["metadata"]["annotations"] = {"konghq.com/plugins": "only-local"}
    gw = gateway("main", listener("db", "TCP", 5432), listener("dns", "UDP", 53))
    result = run(gateway_class(), gw, *backends(), plugin, route, tcp, udp, dns)
    assert not result.problems, result.problems
    got = routes(result.config)
    for name in (
        "tcproute.default.pg.0.0",
        "default.ti.0",
        "default.ui.0.udp",
        "udproute.default.resolver.0.0",
    ):
        (attached,) = got[name]["plugins"]
        assert attached["name"] == "ip-restriction"
        assert attached["config"]["allow"] == ["10.0.0.0/8"]


def test_udproute_becomes_a_udp_route_on_its_udp_listener_ports() -> None:
    gw = gateway("main", listener("dns", "UDP", 53), listener("db", "TCP", 5432))
    result = run(
        gateway_class(),
        gw,
        dns_service(),
        dns_slice(),
        udproute("resolver", {"backendRefs": [backend_ref("dns", 53)]}),
    )
    assert not result.problems, result.problems
    svc = services(result.config)["udproute.default.resolver.0"]
    assert (svc["protocol"], svc["host"]) == ("udp", "udproute.default.resolver.0")
    route = routes(result.config)["udproute.default.resolver.0.0"]
    # Only the UDP listener carries it: the TCP listener takes TCPRoutes.
    assert route["protocols"] == ["udp"] and route["destinations"] == [{"port": 53}]
    assert "k8s-kind:UDPRoute" in route["tags"]
    # The Service's UDP port, whose endpoints listen on 5354 (the TCP port's on 5353).
    assert upstream_targets(result.config, "udproute.default.resolver.0") == ["10.0.0.7:5354"]
    loaded = load_config(result.to_yaml().encode()).config
    udp = StreamRouter(loaded.routes, UDP_PROTOCOLS)
    assert udp.match(None, "10.1.1.1", 4000, "10.2.2.2", 53) is not None
    # A datagram's route is not a connection's.
    assert StreamRouter(loaded.routes).match(None, "10.1.1.1", 4000, "10.2.2.2", 53) is None
    index = Index([gateway_class(), gw, dns_service(), udproute("resolver")])
    got = desired(index, view(index), [])
    by_name = {x["name"]: x for x in got[("Gateway", "default", "main")]["listeners"]}
    assert by_name["dns"]["attachedRoutes"] == 1 and by_name["db"]["attachedRoutes"] == 0


def test_udproute_rule_without_backends_is_refused() -> None:
    gw = gateway("main", listener("dns", "UDP", 53))
    result = run(gateway_class(), gw, dns_service(), udproute("bare", {"backendRefs": []}))
    assert "services" not in result.config
    assert any("a UDPRoute rule needs backendRefs" in str(p) for p in result.problems)


def test_udp_ingress_rules_and_a_tcp_ingress_on_the_same_port() -> None:
    udp = tcp_ingress(
        "resolver",
        tcp_rule(9999, "dns", 53),
        tcp_rule(9998, "dns", 53, host="dns.example.test"),
        kind="UDPIngress",
    )
    tcp = tcp_ingress("resolver-tcp", tcp_rule(9999, "dns", 53))
    result = run(dns_service(), dns_slice(), udp, tcp)
    assert sorted(str(p) for p in result.problems) == [
        "error: TCPIngress default/resolver-tcp: route 'default.resolver-tcp.0': service "
        "default/dns: its TCP and UDP ports 53 reach different endpoints, which one upstream "
        "cannot hold; left out",
        "error: UDPIngress default/resolver: rules[1]: host is a TCPIngress field; left out",
    ]
    svc = services(result.config)["default.dns.53.udp"]
    assert (svc["host"], svc["port"], svc["protocol"]) == ("dns.default.53.svc", 53, "udp")
    (route,) = svc["routes"]
    assert route["name"] == "default.resolver.0.udp" and route["protocols"] == ["udp"]
    assert route["destinations"] == [{"port": 9999}] and "snis" not in route
    assert "k8s-kind:UDPIngress" in route["tags"]
    assert upstream_targets(result.config, "dns.default.53.svc") == ["10.0.0.7:5354"]


def test_udp_and_tcp_ingress_share_a_service_whose_ports_agree() -> None:
    svc = dns_service()
    for port in svc["spec"]["ports"]:
        port["targetPort"] = 53
    eps = dns_slice()
    for port in eps["ports"]:
        port["port"] = 53
    udp = tcp_ingress("resolver", tcp_rule(53, "dns", 53), kind="UDPIngress")
    tcp = tcp_ingress("resolver-tcp", tcp_rule(53, "dns", 53))
    result = run(svc, eps, udp, tcp)
    assert not result.problems, result.problems
    got = services(result.config)
    assert got["default.dns.53"]["protocol"] == "tcp"
    assert got["default.dns.53.udp"]["protocol"] == "udp"
    assert got["default.dns.53"]["host"] == got["default.dns.53.udp"]["host"]
    assert upstream_targets(result.config, "dns.default.53.svc") == ["10.0.0.7:53"]
    loaded = load_config(result.to_yaml().encode()).config
    udp_hit = StreamRouter(loaded.routes, UDP_PROTOCOLS).match(None, "10.1.1.1", 1, "10.2.2.2", 53)
    tcp_hit = StreamRouter(loaded.routes).match(None, "10.1.1.1", 1, "10.2.2.2", 53)
    assert udp_hit is not None and udp_hit.name == "default.resolver.0.udp"
    assert tcp_hit is not None and tcp_hit.name == "default.resolver-tcp.0"
