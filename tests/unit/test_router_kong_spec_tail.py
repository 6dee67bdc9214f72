"""Kong's router spec, the HTTP cases after the big per-flavor block (``traditional_compatible``).

Source: ``spec/01-unit/08-router_spec.lua`` lines 4889-5160: ``[both regex and prefix with
regex_priority]``, ``[both regex and prefix]``, ``[overlapping prefixes]``, ``[can create route
with multiple paths and no service]`` and the two ``[cache hit ...]`` cases, routed through
:class:`tests.kong_router_spec.SpecRouter`. The stream case of that range (``[#stream SNI-based
routing does work using tls_passthrough]``) is in ``test_router_kong_spec_stream.py``; what
follows line 5212 runs for ``expressions`` only (ported in ``test_expressions_kong_spec.py``).

Left out: the ``[cache hit ...]`` cases' ``ctx.route_match_cached`` assertions (Kong's cache
internals); their routing assertions (the winner, ``upstream_host``, ``upstream_uri``, the same
request asked twice) are ported.
"""

from __future__ import annotations

from typing import Any

from tests.kong_router_spec import SpecRouter

SERVICE: dict[str, Any] = {"protocol": "http"}


def rid(n: int) -> str:
    """The spec's route id ``e8fb37f1-...-81NN``."""
    return f"e8fb37f1-102d-461e-9c51-6608a6bb81{n:02d}"


def use_case(*routes: dict[str, Any]) -> list[dict[str, Any]]:
    """Routes numbered from 1, all on the spec's one ``service``."""
    return [{"service": SERVICE, "route": {"id": rid(n), **r}} for n, r in enumerate(routes, 1)]


def test_prefix_matching_ignore_regex_priority() -> None:
    """``[both regex and prefix with regex_priority]`` ``[prefix matching ignore
    regex_priority]`` (spec line 4941). ``/.*`` has no ``~``: a prefix path in Kong 3."""
    r = SpecRouter(
        use_case(
            {"paths": ["/.*"], "hosts": ["domain-1.org"]},
            {"paths": ["/"], "hosts": ["domain-2.org"], "regex_priority": 5},
            {"paths": ["/v1"], "hosts": ["domain-2.org"]},
        )
    )
    assert r.select("GET", "/v1", "domain-2.org") == rid(3)


def test_assigns_different_priorities_to_regex_and_non_regex_path() -> None:
    """``[both regex and prefix]`` ``[assigns different priorities to regex and non-regex
    path]`` (spec line 4993)."""
    r = SpecRouter(
        use_case(
            {"paths": ["~/some/thing/else", "/foo"], "hosts": ["domain-1.org"]},
            {"paths": ["/foo/bar"], "hosts": ["domain-1.org"]},
        )
    )
    assert r.select("GET", "/some/thing/else", "domain-1.org") == rid(1)
    assert r.select("GET", "/foo/bar", "domain-1.org") == rid(2)


def test_assigns_different_priorities_to_each_path() -> None:
    """``[overlapping prefixes]`` ``[assigns different priorities to each path]`` (spec line
    5042)."""
    r = SpecRouter(
        use_case(
            {"paths": ["/foo", "/foo/bar/baz"], "hosts": ["domain-1.org"]},
            {"paths": ["/foo/bar"], "hosts": ["domain-1.org"]},
        )
    )
    assert r.select("GET", "/foo", "domain-1.org") == rid(1)
    assert r.select("GET", "/foo/bar", "domain-1.org") == rid(2)


def test_can_create_route_with_multiple_paths_and_no_service() -> None:
    """``[can create route with multiple paths and no service]`` (spec line 5053): the router
    builds (the spec asserts nothing more)."""
    r = SpecRouter([{"route": {"id": rid(1), "paths": ["/foo", "/foo/bar/baz"]}}])
    assert [route["id"] for route in r.config["routes"]] == [rid(1)]
    assert "service" not in r.config["routes"][0]


def test_cache_hit_should_be_case_sensitive() -> None:
    """``[cache hit should be case sensitive]`` (spec line 5075): header values match case-
    insensitively, asked again (Kong's cache hit) and with another case (a cache miss)."""
    r = SpecRouter(use_case({"paths": ["/foo"], "headers": {"test1": ["Quote"]}}))
    assert r.select("GET", "/foo", headers={"test1": "QUOTE"}) == rid(1)
    assert r.select("GET", "/foo", headers={"test1": "QUOTE"}) == rid(1)
    assert r.select("GET", "/foo", headers={"test1": "QuoTe"}) == rid(1)


def test_cache_hit_should_have_correct_upstream_uri() -> None:
    """``[cache hit should have correct match_t.upstream_uri]`` (spec line 5122): a hosts-only
    route, ``preserve_host``; the second request (Kong's cache hit) has its own path."""
    host = "example.com"
    r = SpecRouter(use_case({"hosts": [host], "preserve_host": True}))
    for path in ("/foo", "/bar"):
        m = r.exec("GET", path, headers={"host": host})
        assert m is not None
        assert m.route_id == rid(1)
        assert m.upstream_host == host
        assert m.upstream_uri == path
