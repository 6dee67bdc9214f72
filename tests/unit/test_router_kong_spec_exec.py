"""Kong's router spec, ``exec()``: ``spec/01-unit/08-router_spec.lua`` lines 3314-4407.

Flavor ``traditional_compatible``: each Kong ``it(...)`` becomes one test (the two
``preserve Host header`` blocks, plain and ``#grpc``, are one parametrized set), routed through
:class:`tests.kong_router_spec.SpecRouter`, i.e. fastkong's config loader, runtime and
``fastkong.proxy.routing.decide``. Kong's ``match_t.route`` is compared by route id,
``match_t.prefix`` / ``upstream_uri`` / ``upstream_host`` / ``matches.uri_captures`` /
``upstream_url_t.host`` / ``upstream_url_t.port`` / ``service.protocol`` by the harness's
``Match`` fields of the same meaning.

Adapted, not left out:

- ``upstream_uri``: Kong's router returns it unescaped and ``kong/runloop/handler.lua:1352``
  sends ``kong.tools.uri.escape(match_t.upstream_uri)``; fastkong's ``upstream_uri`` is the
  escaped one, so every expected value goes through :func:`kong_escape` (a no-op except for
  the ``"`` and ``\\`` case).
- ``upstream_url_t.port`` of a service given ``protocol = "https"`` and no port: the spec's raw
  table leaves ``port`` nil, so ``get_service_info`` (``kong/router/utils.lua:228-234``) picks
  443; Kong's schema fills ``port = 80`` whatever the protocol
  (``kong/db/schema/entities/services.lua:38``), and a config goes through the schema, so the
  port expected here is 80 (fastkong's loader fills the same default).
- ``#grpc`` copy: services get ``protocol = "grpc"`` and routes ``protocols = {"grpc",
  "grpcs"}`` (Kong's spec route tables have none; traditional_compatible does not route on
  protocols, ``kong/router/transform.lua``).
- ``#slash handling`` (line 4219): ``tests/unit/test_router_kong_path_handling.py`` already
  runs the fixture's v0 rows (the only ones this flavor runs, lines 4222 and 4273; Kong's ATC router
  joins every route's upstream path with ``get_upstream_uri_v0``, ``kong/router/atc.lua``
  ``set_upstream_uri``) through the router and uri kernels directly, with a path-only route.
  The spec's ``it`` is a different shape: a route with ``hosts`` *and* ``paths``,
  ``path_handling = "v0"`` and the service's ``path`` set in the entities, the request carrying
  that Host. Here the same ``ROWS`` (imported from that file, which holds exactly the fixture's
  106 v0 rows) go through config, runtime and ``decide`` in the spec's shape.
- ``invalid utf-8``: the spec's request target has no leading ``/`` (nginx would answer 400
  before Kong's router); the same bytes behind a ``/`` are routed too, and must be a 404.

Left out:

- ``matches.host`` / ``matches.uri`` / ``matches.method`` / ``matches.headers``
  (line 3379): Kong sets them only under ``traditional`` (or asserts them nil); fastkong has no
  equivalent. The route winners are ported, with the upstream path Kong computes.
- ``upstream_url_t.scheme`` and ``upstream_url_t.path``: asserted only under ``traditional``.
- spies on ``get_headers`` (lines 3344, 3434...) and on ``ngx.log`` (the utf-8 case's log
  line): Lua internals.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import pytest
from test_router_kong_path_handling import ROWS

from fastkong.proxy.routing import BAD_PATH, NO_ROUTE, decide
from tests.kong_router_spec import Match, SpecRouter

ID1 = "e8fb37f1-102d-461e-9c51-6608a6bb8101"
ID2 = "e8fb37f1-102d-461e-9c51-6608a6bb8102"
ID3 = "e8fb37f1-102d-461e-9c51-6608a6bb8103"
ID4 = "e8fb37f1-102d-461e-9c51-6608a6bb8104"

# kong.tools.uri ESCAPE_PATTERN ("joi": case-insensitive, byte-wise).
_UNSAFE = re.compile(r"[^!#$&'()*+,/:;=?@\[\]A-Za-z0-9\-_.~%]")


def kong_escape(uri: str) -> str:
    """``kong.tools.uri.escape``: what Kong sends upstream for ``match_t.upstream_uri``."""
    return _UNSAFE.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode()), uri)


def service(**fields: Any) -> dict[str, Any]:
    """The spec's ``service`` table (``name = "service-invalid"``, protocol http by default)."""
    return {"protocol": "http", **fields}


def single(**route: Any) -> SpecRouter:
    """A router of one route (id ``ID1``) on the spec's shared ``service``."""
    return SpecRouter([{"service": service(), "route": {"id": ID1, **route}}])


def routed(router: SpecRouter, method: str, uri: str, host: str, **kw: Any) -> Match:
    found = router.exec(method, uri, host, **kw)
    assert found is not None, f"{method} {uri} (Host {host}) matched no route"
    return found


def positional(captures: Mapping[int | str, str]) -> list[int]:
    """Lua's ``#uri_captures``: the positional captures, without ``[0]``."""
    return sorted(k for k in captures if isinstance(k, int) and k > 0)


# --- returns parsed upstream_url + upstream_uri ------------------------------------------


def test_returns_parsed_upstream_url_and_upstream_uri() -> None:  # spec line 3315
    router = SpecRouter(
        [
            {
                "service": service(host="example.org", protocol="http"),
                "route": {"id": ID1, "paths": ["/my-route"]},
            },
            {
                "service": service(host="example.org", protocol="https"),
                "route": {"id": ID2, "paths": ["/my-route-2"]},
            },
        ]
    )
    # Kong's spec expects 80 and 443: its raw https service has no port; the schema's default
    # is 80 for every protocol (see the module docstring).
    for uri, route_id, port in (("/my-route", ID1, 80), ("/my-route-2", ID2, 80)):
        m = routed(router, "GET", uri, "domain.org")
        assert m.route_id == route_id
        assert m.service_host == "example.org"
        assert m.service_port == port
        assert m.upstream_host is None  # only when preserve_host = true
        assert m.upstream_uri == kong_escape(uri)


def test_returns_matched_host_uri_method_headers() -> None:  # spec line 3379
    # Kong's `matches.*` fields are traditional-only (or nil): the winners are what is ported.
    shared = service()
    router = SpecRouter(
        [
            {
                "service": shared,
                "route": {
                    "id": ID1,
                    "hosts": ["host.com"],
                    "methods": ["GET"],
                    "paths": ["/my-route"],
                },
            },
            {
                "service": shared,
                "route": {"id": ID2, "hosts": ["host.com"], "paths": ["/my-route"]},
            },
            {
                "service": shared,
                "route": {
                    "id": ID3,
                    "hosts": ["*.host.com"],
                    "headers": {"location": ["my-location-1", "my-location-2"]},
                },
            },
            {"service": shared, "route": {"id": ID4, "paths": [r"~/users/\d+/profile"]}},
        ]
    )
    requests: list[tuple[str, str, dict[str, str], str]] = [
        ("GET", "/my-route", {"host": "host.com"}, ID1),
        ("GET", "/my-route/prefix/match", {"host": "host.com"}, ID1),
        ("POST", "/my-route", {"host": "host.com"}, ID2),
        ("GET", "/", {"host": "test.host.com", "location": "my-location-1"}, ID3),
        ("GET", "/users/123/profile", {"host": "domain.org"}, ID4),
    ]
    for method, uri, headers, route_id in requests:
        m = routed(router, method, uri, headers["host"], headers=headers)
        assert m.route_id == route_id, (method, uri)
        assert m.uri_captures is None
        assert m.upstream_uri == uri


# --- uri_captures --------------------------------------------------------------------------


def test_uri_captures_work_with_the_optional_capture_group_fix_13014() -> None:  # line 3487
    router = single(paths=[r"~/(users/)?1984/(?<subpath>profile)$"])
    m = routed(router, "GET", "/1984/profile", "domain.org")
    assert m.uri_captures is not None
    assert not m.uri_captures.get(1)
    assert m.uri_captures["subpath"] == "profile"
    assert "scope" not in m.uri_captures


def test_returns_uri_captures_from_a_uri_regex() -> None:  # spec line 3507
    router = single(paths=[r"~/users/(?P<user_id>\d+)/profile/?(?P<scope>[a-z]*)"])
    # the second request is Kong's "again, this time from the LRU cache"
    for uri, scope in (
        ("/users/1984/profile", ""),
        ("/users/1984/profile", ""),
        ("/users/1984/profile/email", "email"),
    ):
        m = routed(router, "GET", uri, "domain.org")
        captures = m.uri_captures
        assert captures is not None
        assert captures[1] == captures["user_id"] == "1984"
        assert captures[2] == captures["scope"] == scope
        assert captures[0] == uri  # the full match as well
        assert "stripped_uri" not in captures
        assert positional(captures) == [1, 2]


def test_returns_uri_captures_normalized_fix_7913() -> None:  # spec line 3561
    router = single(paths=[r"~/users/(?P<fullname>[a-zA-Z\s\d%]+)/profile/?(?P<scope>[a-z]*)"])
    for _ in range(2):  # the second time from the LRU cache
        m = routed(router, "GET", "/users/%6aohn%20doe/profile", "domain.org")
        captures = m.uri_captures
        assert captures is not None
        assert captures[1] == captures["fullname"] == "john doe"
        assert captures[2] == captures["scope"] == ""
        assert captures[0] == "/users/john doe/profile"
        assert "stripped_uri" not in captures
        assert positional(captures) == [1, 2]


def test_returns_no_uri_captures_from_a_uri_prefix_match() -> None:  # spec line 3601
    router = single(paths=["/hello"], strip_path=True)
    m = routed(router, "GET", "/hello/world", "domain.org")
    assert m.upstream_uri == "/world"
    assert m.uri_captures is None


def test_returns_no_uri_captures_from_a_uri_regex_match_without_groups() -> None:  # line 3621
    router = single(paths=[r"~/users/\d+/profile"])
    m = routed(router, "GET", "/users/1984/profile", "domain.org")
    assert m.uri_captures is None


# --- upstream_url --------------------------------------------------------------------------


def test_parses_path_component_from_upstream_url_property() -> None:  # spec line 3640
    router = SpecRouter(
        [
            {
                "service": service(host="example.org", path="/get", protocol="http"),
                "route": {"id": ID1, "paths": ["/my-route"]},
            }
        ]
    )
    m = routed(router, "GET", "/my-route", "domain.org")
    assert m.route_id == ID1
    # upstream_url_t.path is asserted under traditional only; the upstream path Kong builds
    # from it (get_upstream_uri_v0, no strip) is "/get" .. "/my-route".
    assert m.upstream_uri == "/get/my-route"


def test_parses_upstream_url_port() -> None:  # spec line 3667
    router = SpecRouter(
        [
            {
                "service": service(host="example.org", port=8080, protocol="http"),
                "route": {"id": ID1, "paths": ["/my-route"]},
            },
            {
                "service": service(host="example.org", port=8443, protocol="https"),
                "route": {"id": ID2, "paths": ["/my-route-2"]},
            },
        ]
    )
    assert routed(router, "GET", "/my-route", "domain.org").service_port == 8080
    assert routed(router, "GET", "/my-route-2", "domain.org").service_port == 8443


def test_allows_url_encoded_paths_if_they_are_reserved_characters() -> None:  # line 3707
    router = single(paths=["/endel%2Fst"])
    m = routed(router, "GET", "/endel%2Fst", "domain.org")
    assert m.route_id == ID1
    assert m.upstream_uri == "/endel%2Fst"


# --- stripped paths #strip (line 3726) -------------------------------------------------------

STRIP_SERVICE = service()
STRIP_CASE = [
    {
        "service": STRIP_SERVICE,
        "route": {"id": ID1, "paths": ["/my-route", "/xx-route"], "strip_path": True},
    },
    # don't strip this route's matching URI
    {
        "service": STRIP_SERVICE,
        "route": {
            "id": ID2,
            "methods": ["POST"],
            "paths": ["/my-route", "/xx-route"],
            "strip_path": False,
        },
    },
]


@pytest.fixture(scope="module")
def strip_router() -> SpecRouter:
    return SpecRouter(STRIP_CASE)


def check_strip(
    router: SpecRouter,
    method: str,
    uri: str,
    route_id: str,
    prefix: str | None,
    upstream_uri: str,
) -> None:
    m = routed(router, method, uri, "domain.org")
    assert m.route_id == route_id
    assert m.prefix == prefix
    assert m.upstream_uri == kong_escape(upstream_uri)


def test_strips_the_specified_paths_from_the_given_uri_if_matching(
    strip_router: SpecRouter,
) -> None:  # spec line 3754
    check_strip(strip_router, "GET", "/my-route/hello/world", ID1, "/my-route", "/hello/world")


def test_strips_if_matched_uri_is_plain_not_a_prefix(strip_router: SpecRouter) -> None:
    # spec line 3764
    check_strip(strip_router, "GET", "/my-route", ID1, "/my-route", "/")


def test_doesnt_strip_if_strip_uri_is_not_enabled(strip_router: SpecRouter) -> None:
    # spec line 3773
    check_strip(strip_router, "POST", "/my-route/hello/world", ID2, None, "/my-route/hello/world")


def test_normalized_client_uri_before_matching_and_proxying(strip_router: SpecRouter) -> None:
    # spec line 3783
    check_strip(strip_router, "POST", "/my-route/hello/world", ID2, None, "/my-route/hello/world")


def test_does_not_strip_root_uri() -> None:  # spec line 3793
    router = single(paths=["/"], strip_path=True)
    check_strip(router, "POST", "/my-route/hello/world", ID1, "/", "/my-route/hello/world")


def test_can_find_a_route_with_stripped_uri_several_times_in_a_row(
    strip_router: SpecRouter,
) -> None:  # spec line 3817
    for _ in range(2):
        check_strip(strip_router, "GET", "/my-route", ID1, "/my-route", "/")


def test_can_proxy_a_route_with_stripped_uri_with_different_uris_in_a_row(
    strip_router: SpecRouter,
) -> None:  # spec line 3833
    for uri in ("/my-route", "/xx-route", "/my-route", "/xx-route"):
        check_strip(strip_router, "GET", uri, ID1, uri, "/")


def test_strips_url_encoded_paths() -> None:  # spec line 3863
    router = single(paths=["/endel%2Fst"], strip_path=True)
    check_strip(router, "GET", "/endel%2Fst", ID1, "/endel%2Fst", "/")


@pytest.mark.parametrize(
    "regex",
    [
        pytest.param(r"~/users/\d+/profile", id="strips a [uri regex] (line 3884)"),
        pytest.param(
            r"~/users/(\d+)/profile", id="strips a [uri regex] with a capture group (line 3905)"
        ),
    ],
)
def test_strips_a_uri_regex(regex: str) -> None:  # spec lines 3884, 3905
    router = single(paths=[regex], strip_path=True)
    check_strip(
        router, "GET", "/users/123/profile/hello/world", ID1, "/users/123/profile", "/hello/world"
    )


# --- preserve Host header (line 3927) and its #grpc copy (line 4066) -------------------------

PROTOCOLS = [pytest.param("http", id="http"), pytest.param("grpc", id="grpc")]


def protocol_route(protocol: str, **route: Any) -> dict[str, Any]:
    """A route of the plain block, or of the #grpc one (gRPC protocols)."""
    if protocol == "grpc":
        route["protocols"] = ["grpc", "grpcs"]
    return route


def preserve_router(protocol: str) -> SpecRouter:
    return SpecRouter(
        [
            # use the request's Host header
            {
                "service": service(host="example.org", protocol=protocol),
                "route": protocol_route(
                    protocol, id=ID1, preserve_host=True, hosts=["preserve.com"]
                ),
            },
            # use the route's upstream_url's Host
            {
                "service": service(host="example.org", protocol=protocol),
                "route": protocol_route(
                    protocol, id=ID2, preserve_host=False, hosts=["discard.com"]
                ),
            },
        ]
    )


def check_preserve(router: SpecRouter, protocol: str, uri: str, host: str, route_id: str) -> Match:
    m = routed(router, "GET", uri, host)
    assert m.route_id == route_id
    assert m.service_scheme == protocol  # the #grpc block's `match_t.service.protocol`
    return m


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_preserve_host_true_uses_the_requests_host_header(protocol: str) -> None:
    # spec lines 3965, 4104
    m = check_preserve(preserve_router(protocol), protocol, "/", "preserve.com", ID1)
    assert m.upstream_host == "preserve.com"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_preserve_host_true_uses_the_requests_host_header_incl_port(protocol: str) -> None:
    # spec lines 3973, 4113
    m = check_preserve(preserve_router(protocol), protocol, "/", "preserve.com:123", ID1)
    assert m.upstream_host == "preserve.com:123"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_preserve_host_true_does_not_change_the_target_upstream(protocol: str) -> None:
    # spec lines 3981, 4122
    m = check_preserve(preserve_router(protocol), protocol, "/", "preserve.com", ID1)
    assert m.service_host == "example.org"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_preserve_host_true_uses_the_requests_host_header_when_grab_header_is_disabled(
    protocol: str,
) -> None:  # spec lines 3989, 4131
    router = SpecRouter(
        [
            {
                "service": service(protocol=protocol),
                "route": protocol_route(
                    protocol, id=ID1, name="route-1", preserve_host=True, paths=["/foo"]
                ),
            }
        ]
    )
    m = check_preserve(router, protocol, "/foo", "preserve.com", ID1)
    assert m.upstream_host == "preserve.com"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_preserve_host_true_uses_the_requests_host_header_if_a_route_with_no_host_was_cached(
    protocol: str,
) -> None:  # spec lines 4011, 4157 (Kong issue #2825)
    router = SpecRouter(
        [
            {
                "service": service(protocol=protocol),
                "route": protocol_route(
                    protocol, id=ID1, name="no-host", paths=["/nohost"], preserve_host=True
                ),
            }
        ]
    )
    for host in ("domain1.com", "domain2.com"):
        m = check_preserve(router, protocol, "/nohost", host, ID1)
        assert m.upstream_host == host


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_preserve_host_false_does_not_change_the_target_upstream(protocol: str) -> None:
    # spec lines 4048, 4199
    m = check_preserve(preserve_router(protocol), protocol, "/", "discard.com", ID2)
    assert m.service_host == "example.org"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_preserve_host_false_does_not_set_the_host_header(protocol: str) -> None:
    # spec lines 4056, 4208
    m = check_preserve(preserve_router(protocol), protocol, "/", "discard.com", ID2)
    assert m.upstream_host is None


# --- #slash handling (line 4219) ---------------------------------------------------------------

SLASH_ROWS = [
    pytest.param(i, *row, id=f"{i}: {row[0]} {row[1]} strip={row[2]} req={row[3]}")
    for i, row in enumerate(ROWS, 1)
]


def slash_check(
    service_path: str, route: dict[str, Any], host: str, request_path: str, expected: str
) -> None:
    router = SpecRouter([{"service": service(path=service_path), "route": {"id": ID1, **route}}])
    m = routed(router, "GET", request_path, host)
    assert m.route_id == ID1
    assert m.upstream_uri == kong_escape(expected)


@pytest.mark.parametrize(
    ("i", "service_path", "route_path", "strip", "request_path", "expected"), SLASH_ROWS
)
def test_slash_handling_plain(
    i: int,
    service_path: str,
    route_path: str | None,
    strip: bool,
    request_path: str,
    expected: str,
) -> None:  # spec line 4234: "(i-j) plain, ..."
    host = f"localbin-{i}.com"
    route: dict[str, Any] = {"strip_path": strip, "path_handling": "v0", "hosts": [host]}
    if route_path is not None:
        route["paths"] = [route_path]
    slash_check(service_path, route, host, request_path, expected)


@pytest.mark.parametrize(
    ("i", "service_path", "route_path", "strip", "request_path", "expected"),
    [p for p in SLASH_ROWS if p.values[2] is not None],
)
def test_slash_handling_regex(
    i: int,
    service_path: str,
    route_path: str,
    strip: bool,
    request_path: str,
    expected: str,
) -> None:  # spec line 4279: "(i-j) regex, ..."
    host = f"localbin-{i}.com"
    route = {
        "strip_path": strip,
        "path_handling": "v0",
        "hosts": [host],
        "paths": ["~/[0]?" + route_path[1:]],
    }
    slash_check(service_path, route, host, request_path, expected)


# --- special characters, invalid utf-8 ---------------------------------------------------------


def test_works_with_special_characters() -> None:  # spec line 4314: ('"', '\')
    router = SpecRouter(
        [
            {
                "service": service(host="example.org", protocol="http"),
                "route": {"id": ID1, "paths": [r"/\d"]},
            },
            {
                "service": service(host="example.org", protocol="https"),
                "route": {"id": ID2, "paths": [r'~/\d+"']},
            },
        ]
    )
    # Kong's 443 for the https service is the raw table's missing port (see the docstring).
    for uri, route_id in ((r"/\d", ID1), ('/123"', ID2)):
        m = routed(router, "GET", uri, "domain.org")
        assert m.route_id == route_id
        assert m.service_host == "example.org"
        assert m.service_port == 80
        assert m.upstream_host is None  # only when preserve_host = true
        assert m.upstream_uri == kong_escape(uri)


def test_gracefully_handles_invalid_utf8_sequences() -> None:  # spec line 4375
    router = SpecRouter(
        [
            {
                "service": service(host="example.org", protocol="http"),
                "route": {"id": ID1, "paths": ["/hello"]},
            }
        ]
    )
    invalid = "\xfc\x80\x80\x80\x80\xaf"  # the request's bytes, one character per byte
    assert router.exec("GET", invalid, "example.org") is None
    # What reaches a router: nginx refuses a target without "/" (400); behind a "/" the
    # invalid sequence is the router's error, answered 404 (kong/router/atc.lua:477-484).
    assert decide(router.runtime, "GET", "example.org", 80, invalid, "http", None) == BAD_PATH
    assert decide(router.runtime, "GET", "example.org", 80, "/" + invalid, "http", None) == NO_ROUTE
