"""The routing decision shared by the proxy and ``config explain`` (sans-I/O)."""

from __future__ import annotations

from fastkong.config import load_config
from fastkong.proxy.routing import BAD_PATH, NO_ROUTE, Decision, decide, strip_port
from fastkong.runtime import compile_runtime

CONFIG = """
_format_version: "3.0"
services:
- name: s
  url: http://upstream.internal:8080/base
  routes:
  - {name: with-port, hosts: ["api.example.com:8443"]}
  - {name: any-port, hosts: ["www.example.com"], strip_path: false, paths: ["/x"]}
"""


def runtime():  # type: ignore[no-untyped-def]
    loaded = load_config(CONFIG)
    return compile_runtime(loaded.config, loaded.hash)


def test_host_port_uses_the_host_header_port_first() -> None:
    rt = runtime()
    d = decide(rt, "GET", "api.example.com:8443", 8000, "/a", "http", None)
    assert isinstance(d, Decision) and d.plan.name == "with-port"
    assert decide(rt, "GET", "api.example.com", 8000, "/a", "http", None) == NO_ROUTE
    # no port in the Host header: the listener's port counts
    d = decide(rt, "GET", "api.example.com", 8443, "/a", "http", None)
    assert isinstance(d, Decision) and d.plan.name == "with-port"


def test_upstream_path_and_repr() -> None:
    rt = runtime()
    d = decide(rt, "GET", "www.example.com:1234", 8000, "/x/y", "http", None)
    assert isinstance(d, Decision)
    assert d.upstream_path == "/base/x/y"
    assert repr(d) == "<Decision route=any-port upstream_path='/base/x/y'>"
    assert repr(rt).startswith("<Runtime v0 hash=")


def test_bad_escape_is_bad_path() -> None:
    assert decide(runtime(), "GET", "www.example.com", 80, "/x/%zz", "http", None) == BAD_PATH


def test_strip_port() -> None:
    assert strip_port("a.example:80") == "a.example"
    assert strip_port("[::1]:8000") == "[::1]"
    assert strip_port("[::1]") == "[::1]"
    assert strip_port("plain") == "plain"


HEADER_ROUTES = """
_format_version: "3.0"
services:
- name: s
  url: http://upstream.internal:8080
  routes:
  - {name: v2, paths: ["/api"], headers: {x-version: ["2"]}}
  - {name: plain, paths: ["/api"]}
"""


def test_decisions_are_cached_per_snapshot() -> None:
    rt = runtime()
    first = decide(rt, "GET", "www.example.com", 80, "/x/1", "http", None)
    assert decide(rt, "GET", "www.example.com", 80, "/x/1", "http", None) is first
    # every input is part of the key
    assert decide(rt, "GET", "www.example.com", 80, "/x/2", "http", None) is not first
    assert decide(rt, "POST", "www.example.com", 80, "/x/1", "http", None) is not first
    assert decide(rt, "GET", "api.example.com", 8443, "/x/1", "http", None) != first
    assert len(rt.decisions) == 4
    # misses are cached too (a flood of unknown paths costs one dict entry each, bounded)
    assert decide(rt, "GET", "nowhere", 80, "/", "http", None) == NO_ROUTE
    assert ("GET", "nowhere", 80, "/", "http", "") in rt.decisions
    # a new snapshot starts empty
    assert runtime().decisions == {}


def test_decision_cache_is_bounded(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from fastkong.proxy import routing

    monkeypatch.setattr(routing, "DECISION_CACHE_SIZE", 3)
    rt = runtime()
    for i in range(10):
        decide(rt, "GET", "www.example.com", 80, f"/x/{i}", "http", None)
    assert len(rt.decisions) == 3
    # the oldest entries went first
    assert [k[3] for k in rt.decisions] == ["/x/7", "/x/8", "/x/9"]
    # long keys are never stored (a full cache of them would hold megabytes)
    long_path = "/x/" + "a" * routing.DECISION_CACHE_KEY_LIMIT
    d = decide(rt, "GET", "www.example.com", 80, long_path, "http", None)
    assert isinstance(d, Decision) and d.upstream_path == "/base" + long_path
    assert all(k[3] != long_path for k in rt.decisions)


def test_header_routing_is_never_served_from_the_cache() -> None:
    loaded = load_config(HEADER_ROUTES)
    rt = compile_runtime(loaded.config, loaded.hash)
    v2 = decide(rt, "GET", "h", 80, "/api", "http", {"x-version": ["2"]})
    other = decide(rt, "GET", "h", 80, "/api", "http", {})
    assert isinstance(v2, Decision) and v2.plan.name == "v2"
    assert isinstance(other, Decision) and other.plan.name == "plain"
    assert rt.decisions == {}


IPV6_ROUTES = """
_format_version: "3.0"
routes:
- {name: bare, hosts: ["[::1]"]}
- {name: with-port, hosts: ["[::2]:8000"]}
"""


def test_ipv6_literal_host_is_matched_whole_as_kong_splits_at_the_first_colon() -> None:
    # kong/router/transform.lua split_host_port cuts "host:port" at the *first* ':' and keeps
    # the port only if the rest is a number; for "[::1]:8000" it is not, so the whole header is
    # http.host and the listener's port is net.dst.port (kong/router/atc.lua matching()).
    loaded = load_config(IPV6_ROUTES)
    rt = compile_runtime(loaded.config, loaded.hash)
    d = decide(rt, "GET", "[::1]", 8000, "/", "http", None)
    assert isinstance(d, Decision) and d.plan.name == "bare"
    assert d.host == "[::1]"
    assert decide(rt, "GET", "[::1]:8000", 8000, "/", "http", None) == NO_ROUTE
    d = decide(rt, "GET", "[::2]:8000", 9000, "/", "http", None)
    assert isinstance(d, Decision) and d.plan.name == "with-port"
    assert d.host == "[::2]"  # nginx's $host, for X-Forwarded-Host: the port is cut off
    assert decide(rt, "GET", "[::2]", 8000, "/", "http", None) == NO_ROUTE


def test_host_header_with_an_empty_port_is_matched_whole() -> None:
    # "www.example.com:" has no numeric port: Kong's http.host is the whole header.
    assert decide(runtime(), "GET", "www.example.com:", 80, "/x", "http", None) == NO_ROUTE


SNI_ROUTES = """
_format_version: "3.0"
services:
- name: s
  url: http://upstream.internal:8080
  routes:
  - {name: by-sni, paths: ["/"], protocols: [https], snis: [b.test]}
"""


def test_the_clients_sni_is_matched_when_known() -> None:
    """The edge knows the SNI (str, or None when the client sent none); Granian's TLS does not
    (""), and then the Host stands in for it. Each is its own cache entry."""
    loaded = load_config(SNI_ROUTES)
    rt = compile_runtime(loaded.config, loaded.hash)
    matched = decide(rt, "GET", "a.test", 443, "/x", "https", None, "b.test")
    assert isinstance(matched, Decision) and matched.plan.name == "by-sni"
    assert decide(rt, "GET", "b.test", 443, "/x", "https", None, "a.test") == NO_ROUTE
    assert decide(rt, "GET", "b.test", 443, "/x", "https", None, None) == NO_ROUTE
    stood_in = decide(rt, "GET", "b.test", 443, "/x", "https", None, "")
    assert isinstance(stood_in, Decision) and stood_in.plan.name == "by-sni"
    assert decide(rt, "GET", "b.test", 443, "/x", "https", None) is stood_in
    assert len(rt.decisions) == 4
