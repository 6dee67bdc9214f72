"""Kong's router spec, flavor ``traditional_compatible``: ``spec/01-unit/08-router_spec.lua``
lines 1742-3313, the part that runs on the ``select()`` section's shared use_case (spec
153-397), and ``#benchmarks``; through the harness :mod:`tests.kong_router_spec`. The rest of
the range is in ``test_router_kong_spec_edges.py``.

Ported here: ``edge-cases`` > ``root / [uri]`` (spec 2772) and ``multiple routes of same
category with conflicting values`` (spec 2813), which add routes to the shared use_case;
``misses`` (spec 2917), which asks the shared router; and the routing assertions of
``#benchmarks`` (spec 2970) with the same shapes of routes at small counts, no timing.

Left out:

* ``#benchmarks`` > ``[headers]`` > ``10^4 keys`` (spec 3108): ``flavor == "traditional"`` only.
* the spec's ``mock_ngx`` / ``router._set_ngx`` calls ("let atc-router happy"): Lua plumbing.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.kong_router_spec import SpecRouter, UseCase

ID = "e8fb37f1-102d-461e-9c51-6608a6bb"
#: the spec's shared ``service`` (``protocol = "http"``).
SERVICE: dict[str, Any] = {"protocol": "http"}
#: route counts for the benchmark shapes (the spec's are 10^5).
N = 300


def route_id(use_case: UseCase, i: int) -> str:
    """The id of the spec's ``use_case[i]`` (1-based, as in Lua; negative from the end)."""
    return str(use_case[i - 1 if i > 0 else i]["route"]["id"])


def select_use_case() -> list[dict[str, Any]]:
    """The ``select()`` section's use_case (spec 156-389), 15 routes."""
    hosts_12 = ["domain-1.org", "domain-2.org"]
    ppp = ["POST", "PUT", "PATCH"]
    locations = ["my-location-1", "my-location-2"]
    routes: list[dict[str, Any]] = [
        {"id": ID + "8101", "hosts": hosts_12},  # 1. host
        {"id": ID + "8102", "methods": ["TRACE"]},  # 2. method
        {"id": ID + "8103", "paths": ["/my-route"]},  # 3. uri
        {"id": ID + "8104", "paths": ["/route-4"], "hosts": hosts_12},  # 4. host + uri
        {"id": ID + "8105", "hosts": hosts_12, "methods": ppp},  # 5. host + method
        {"id": ID + "8106", "methods": ppp, "paths": ["/route-6"]},  # 6. uri + method
        {  # 7. host + uri + method
            "id": ID + "8107",
            "hosts": ["domain-with-uri-1.org", "domain-with-uri-2.org"],
            "methods": ppp,
            "paths": ["/my-route-uri"],
        },
        {"id": ID + "8108", "paths": ["/serviceless"]},  # 8. serviceless-route
        {"id": ID + "8109", "headers": {"location": locations}},  # 9. headers (single)
        {  # 10. headers (multiple)
            "id": ID + "8110",
            "headers": {"location": ["my-location-1"], "version": ["v1", "v2"]},
        },
        {  # 11. headers + uri
            "id": ID + "8111",
            "headers": {"location": locations},
            "paths": ["/headers-uri"],
        },
        {  # 12. host + headers + uri + method
            "id": ID + "8112",
            "hosts": ["domain-with-headers-1.org", "domain-with-headers-2.org"],
            "headers": {"location": locations},
            "methods": ppp,
            "paths": ["/headers-host-uri-method"],
        },
        {"id": ID + "8113", "hosts": ["domain-1.org:321", "domain-2.org"]},  # 13. host + port
        {"id": ID + "8114", "hosts": ["domain-3.org:321"]},  # 14. no "any-port" route
        {  # 15. headers (regex)
            "id": ID + "8115",
            "headers": {"user_agent": ["~*windows|linux|os\\s+x\\s*[\\d\\._]+|solaris|bsd"]},
        },
    ]
    return [
        {"route": route} if route["id"] == ID + "8108" else {"service": SERVICE, "route": route}
        for route in routes
    ]


@pytest.fixture(scope="module")
def select_router() -> SpecRouter:
    return SpecRouter(select_use_case())


# -- edge-cases > root / [uri] (spec 2772) --------------------------------------------------------


@pytest.fixture(scope="module")
def root_use_case() -> list[dict[str, Any]]:
    """The shared use_case with a catch-all ``/`` route inserted first (spec 2774)."""
    root = {"service": SERVICE, "route": {"id": ID + "810f", "paths": ["/"]}}
    return [root, *select_use_case()]


@pytest.fixture(scope="module")
def root_router(root_use_case: UseCase) -> SpecRouter:
    return SpecRouter(root_use_case)


@pytest.mark.parametrize(
    ("path", "winner"),
    [
        pytest.param("/", 1, id="request with [method]"),  # spec 2787
        pytest.param("/my-route", 4, id="does not supersede another route"),  # spec 2794
        pytest.param("/my-route/hello/world", 4, id="does not supersede another route (2)"),
        pytest.param("/foobar/baz", 1, id="acts as a catch-all route"),  # spec 2805
    ],
)
def test_root_uri(root_router: SpecRouter, root_use_case: UseCase, path: str, winner: int) -> None:
    assert root_router.select("GET", path, "domain.org") == route_id(root_use_case, winner)


# -- edge-cases > multiple routes of same category with conflicting values (spec 2813) ------------


def test_multiple_routes_of_same_category_with_conflicting_values() -> None:
    # spec 2849. The spec ids its five [host + uri] routes "...bb811" .. i, the very ids of
    # routes 11-15 of the shared use_case (an accident: Kong's schema refuses a duplicate
    # primary key); they get fresh ids here.
    use_case = select_use_case()
    for i in range(1, 6):
        route = {"id": f"{ID}81a{i}", "hosts": ["domain.org"], "paths": ["/my-uri"]}
        use_case.append({"service": SERVICE, "route": route})
    target = {"id": ID + "8121", "hosts": ["domain.org"], "paths": ["/my-target-uri"]}
    use_case.append({"service": SERVICE, "route": target})
    router = SpecRouter(use_case)
    assert router.select("GET", "/my-target-uri", "domain.org") == route_id(use_case, -1)


# -- misses (spec 2917) ---------------------------------------------------------------------------

MISSES: list[tuple[int, str, str, str, str | None, dict[str, str] | None]] = [
    (2918, "invalid [host]", "GET", "/", "domain-3.org", None),
    (2922, "invalid host in [host + uri]", "GET", "/route-4", "domain-3.org", None),
    (2926, "invalid host in [host + method]", "GET", "/", "domain-3.org", None),
    (
        2930,
        "invalid method in [host + uri + method]",
        "GET",
        "/some-uri",
        "domain-with-uri-2.org",
        None,
    ),
    (
        2934,
        "invalid uri in [host + uri + method]",
        "PUT",
        "/some-uri-foo",
        "domain-with-uri-2.org",
        None,
    ),
    (
        2939,
        "does not match when given [uri] is in URI but not in prefix",
        "GET",
        "/some-other-prefix/my-route",
        "domain.org",
        None,
    ),
    (2945, "invalid [headers]", "GET", "/", None, {"location": "invalid-location"}),
    (
        2950,
        "invalid headers in [headers + uri]",
        "GET",
        "/headers-uri",
        None,
        {"location": "invalid-location"},
    ),
    (
        2956,
        "invalid headers in [headers + uri + method]",
        "PUT",
        "/headers-uri-method",
        None,
        {"location": "invalid-location"},
    ),
    (
        2962,
        "invalid headers in [headers + host + uri + method]",
        "PUT",
        "/headers-host-uri-method",
        None,
        {"location": "invalid-location", "host": "domain-with-headers-1.org"},
    ),
]


@pytest.mark.parametrize(
    ("line", "method", "path", "host", "headers"),
    [pytest.param(line, m, p, h, hd, id=name) for line, name, m, p, h, hd in MISSES],
)
def test_misses(
    select_router: SpecRouter,
    line: int,
    method: str,
    path: str,
    host: str | None,
    headers: dict[str, str] | None,
) -> None:
    assert select_router.select(method, path, host, headers=headers) is None, line


# -- #benchmarks (spec 2970): the same shapes, N routes instead of 10^5, no timing ---------------


def _bench_id(i: int, prefix: str = "6608a1") -> str:
    return f"e8fb37f1-102d-461e-9c51-{prefix}{i:06d}"


def _bench(routes: list[dict[str, Any]]) -> tuple[SpecRouter, str]:
    """A router from ``routes`` (one shared service) and the last route's id."""
    return SpecRouter([{"service": SERVICE, "route": r} for r in routes]), routes[-1]["id"]


def test_benchmarks_plain_host() -> None:
    # spec 2981
    router, last = _bench(
        [{"id": _bench_id(i), "hosts": [f"domain-{i}.org"]} for i in range(1, N + 1)]
    )
    assert router.select("GET", "/", f"domain-{N}.org") == last


def test_benchmarks_method_uri_host() -> None:
    # spec 3014: N-1 [host + uri] routes that conflict with the target, which adds a method
    conflicting = {"hosts": [f"domain-{N}.org"], "paths": [f"/my-route-{N}"]}
    routes = [{"id": _bench_id(i), **conflicting} for i in range(1, N)]
    routes.append({"id": _bench_id(N), **conflicting, "methods": ["POST"]})
    router, last = _bench(routes)
    assert router.select("POST", f"/my-route-{N}", f"domain-{N}.org") == last


def test_benchmarks_headers_single_key() -> None:
    # spec 3067
    router, last = _bench(
        [{"id": _bench_id(i), "headers": {"location": [f"somewhere-{i}"]}} for i in range(1, N + 1)]
    )
    assert router.select("GET", "/", headers={"location": f"somewhere-{N}"}) == last


def test_benchmarks_multiple_routes_of_same_category_with_identical_values() -> None:
    # spec 3152
    routes = [
        {"id": _bench_id(i, "6608a6"), "hosts": ["domain.org"], "paths": [f"/my-route-{N}"]}
        for i in range(1, N)
    ]
    routes.append({"id": ID[:-2] + "ffffff", "hosts": ["domain.org"], "paths": ["/my-real-route"]})
    router, last = _bench(routes)
    assert router.select("GET", "/my-real-route", "domain.org") == last


def test_benchmarks_method_uri_host_headers() -> None:
    # spec 3203
    conflicting = {
        "hosts": [f"domain-{N}.org"],
        "paths": [f"/my-route-{N}"],
        "headers": {"location": [f"somewhere-{N}"]},
    }
    routes = [{"id": _bench_id(i, "6608a6"), **conflicting} for i in range(1, N)]
    routes.append({"id": ID[:-2] + "ffffff", **conflicting, "methods": ["POST"]})
    router, last = _bench(routes)
    found = router.select(
        "POST", f"/my-route-{N}", f"domain-{N}.org", headers={"location": f"somewhere-{N}"}
    )
    assert found == last
