"""Kong's upstream-path table (``spec/fixtures/router_path_handling_tests.lua``), v0 rows.

Kong's router spec runs every row whose ``path_handling`` is v0 against traditional_compatible,
once with the route's plain path and once with it turned into a regex (``~/[0]?`` + the path
without its leading slash). Each row here goes the same way through fastkong: normalize the
request path, match it, join the upstream path.
"""

from __future__ import annotations

import importlib
from types import ModuleType

import pytest
from _impls import impl_params

from fastkong._core.routespec import RouteSpec


@pytest.fixture(params=impl_params("router"))
def kernels(request: pytest.FixtureRequest) -> tuple[ModuleType, ModuleType]:
    router = importlib.import_module(request.param)
    uri = importlib.import_module(request.param.replace("router", "uri"))
    return router, uri


# service.path, route path (None: the route matches on its host), strip_path, request, upstream
ROWS = [
    ("/", "/", False, "/", "/"),
    ("/", "/", True, "/", "/"),
    ("/", "/", False, "/route", "/route"),
    ("/", "/", True, "/route", "/route"),
    ("/", "/", False, "/route/", "/route/"),
    ("/", "/", True, "/route/", "/route/"),
    ("/", "/", False, "/routereq", "/routereq"),
    ("/", "/", True, "/routereq", "/routereq"),
    ("/", "/", False, "/route/req", "/route/req"),
    ("/", "/", True, "/route/req", "/route/req"),
    ("/", "/route", False, "/route", "/route"),
    ("/", "/route", False, "/route/", "/route/"),
    ("/", "/route", False, "/routereq", "/routereq"),
    ("/", "/route", True, "/route", "/"),
    ("/", "/route", True, "/route/", "/"),
    ("/", "/route", True, "/routereq", "/req"),
    ("/", "/route/", False, "/route/", "/route/"),
    ("/", "/route/", False, "/route/req", "/route/req"),
    ("/", "/route/", True, "/route/", "/"),
    ("/", "/route/", True, "/route/req", "/req"),
    ("/srv", "/rou", False, "/roureq", "/srv/roureq"),
    ("/srv", "/rou", True, "/roureq", "/srv/req"),
    ("/srv/", "/rou", False, "/rou", "/srv/rou"),
    ("/srv/", "/rou", True, "/rou", "/srv"),
    ("/service", "/", False, "/", "/service"),
    ("/service", "/", True, "/", "/service"),
    ("/service", "/", False, "/route", "/service/route"),
    ("/service", "/", True, "/route", "/service/route"),
    ("/service", "/", False, "/route/", "/service/route/"),
    ("/service", "/", True, "/route/", "/service/route/"),
    ("/service", "/", False, "/routereq", "/service/routereq"),
    ("/service", "/", True, "/routereq", "/service/routereq"),
    ("/service", "/", False, "/route/req", "/service/route/req"),
    ("/service", "/", True, "/route/req", "/service/route/req"),
    ("/service", "/route", False, "/route", "/service/route"),
    ("/service", "/route", False, "/route/", "/service/route/"),
    ("/service", "/route", False, "/routereq", "/service/routereq"),
    ("/service", "/route", True, "/route", "/service"),
    ("/service", "/route", True, "/route/", "/service/"),
    ("/service", "/route", True, "/routereq", "/service/req"),
    ("/service", "/route/", False, "/route/", "/service/route/"),
    ("/service", "/route/", False, "/route/req", "/service/route/req"),
    ("/service", "/route/", True, "/route/", "/service/"),
    ("/service", "/route/", True, "/route/req", "/service/req"),
    ("/service/", "/", False, "/route/", "/service/route/"),
    ("/service/", "/", True, "/route/", "/service/route/"),
    ("/service/", "/", False, "/", "/service/"),
    ("/service/", "/", True, "/", "/service/"),
    ("/service/", "/", False, "/route", "/service/route"),
    ("/service/", "/", True, "/route", "/service/route"),
    ("/service/", "/", False, "/routereq", "/service/routereq"),
    ("/service/", "/", True, "/routereq", "/service/routereq"),
    ("/service/", "/", False, "/route/req", "/service/route/req"),
    ("/service/", "/", True, "/route/req", "/service/route/req"),
    ("/service/", "/route", False, "/route", "/service/route"),
    ("/service/", "/route", False, "/route/", "/service/route/"),
    ("/service/", "/route", False, "/routereq", "/service/routereq"),
    ("/service/", "/route", True, "/route", "/service"),
    ("/service/", "/route", True, "/route/", "/service/"),
    ("/service/", "/route", True, "/routereq", "/service/req"),
    ("/service/", "/route/", False, "/route/", "/service/route/"),
    ("/service/", "/route/", False, "/route/req", "/service/route/req"),
    ("/service/", "/route/", True, "/route/", "/service/"),
    ("/service/", "/route/", True, "/route/req", "/service/req"),
    ("/", None, False, "/", "/"),
    ("/", None, True, "/", "/"),
    ("/", None, False, "/route", "/route"),
    ("/", None, True, "/route", "/route"),
    ("/", None, False, "/route/", "/route/"),
    ("/", None, True, "/route/", "/route/"),
    ("/service", None, False, "/", "/service"),
    ("/service", None, True, "/", "/service"),
    ("/service", None, False, "/route", "/service/route"),
    ("/service", None, True, "/route", "/service/route"),
    ("/service", None, False, "/route/", "/service/route/"),
    ("/service", None, True, "/route/", "/service/route/"),
    ("/service/", None, False, "/", "/service/"),
    ("/service/", None, True, "/", "/service/"),
    ("/service/", None, False, "/route", "/service/route"),
    ("/service/", None, True, "/route", "/service/route"),
    ("/service/", None, False, "/route/", "/service/route/"),
    ("/service/", None, True, "/route/", "/service/route/"),
    ("/service", "/route", True, "/route./req", "/service/req"),
    ("/service/", "/route", True, "/route./req", "/service/req"),
    ("/service", "/route", True, "/route%2E/req", "/service/req"),
    ("/service/", "/route", True, "/route%2E/req", "/service/req"),
    ("/service", "/route", True, "/route%2e/req", "/service/req"),
    ("/service/", "/route", True, "/route%2e/req", "/service/req"),
    ("/service", "/route", True, "/route../req", "/service/req"),
    ("/service/", "/route", True, "/route../req", "/service/req"),
    ("/service", "/route", True, "/route%2E%2E/req", "/service/req"),
    ("/service/", "/route", True, "/route%2E%2E/req", "/service/req"),
    ("/service", "/route", True, "/route%2e%2E/req", "/service/req"),
    ("/service/", "/route", True, "/route%2e%2E/req", "/service/req"),
    ("/service", "/route", False, "/route./req", "/service/route./req"),
    ("/service/", "/route", False, "/route./req", "/service/route./req"),
    ("/service", "/route", False, "/route%2E/req", "/service/route./req"),
    ("/service/", "/route", False, "/route%2E/req", "/service/route./req"),
    ("/service", "/route", False, "/route%2e/req", "/service/route./req"),
    ("/service/", "/route", False, "/route%2e/req", "/service/route./req"),
    ("/service", "/route", False, "/route../req", "/service/route../req"),
    ("/service/", "/route", False, "/route../req", "/service/route../req"),
    ("/service", "/route", False, "/route%2E%2E/req", "/service/route../req"),
    ("/service/", "/route", False, "/route%2E%2E/req", "/service/route../req"),
    ("/service", "/route", False, "/route%2e%2E/req", "/service/route../req"),
    ("/service/", "/route", False, "/route%2e%2E/req", "/service/route../req"),
]


def _upstream(
    kernels: tuple[ModuleType, ModuleType],
    service_path: str,
    route_path: str | None,
    strip: bool,
    request_path: str,
) -> str:
    router_mod, uri = kernels
    spec = RouteSpec(
        0,
        hosts=("localbin.test",) if route_path is None else (),
        paths=() if route_path is None else (route_path,),
    )
    path = uri.normalize_path(request_path)
    assert path is not None
    found = router_mod.Router([spec]).match("GET", "localbin.test", 80, path, None, None)
    assert found is not None
    joined: str = uri.upstream_path(service_path, path, found.matched_len, strip, "v0")
    return joined


@pytest.mark.parametrize(("service_path", "route_path", "strip", "request_path", "expected"), ROWS)
def test_plain_route(
    kernels: tuple[ModuleType, ModuleType],
    service_path: str,
    route_path: str | None,
    strip: bool,
    request_path: str,
    expected: str,
) -> None:
    assert _upstream(kernels, service_path, route_path, strip, request_path) == expected


@pytest.mark.parametrize(
    ("service_path", "route_path", "strip", "request_path", "expected"),
    [row for row in ROWS if row[1] is not None],
)
def test_regex_route(
    kernels: tuple[ModuleType, ModuleType],
    service_path: str,
    route_path: str,
    strip: bool,
    request_path: str,
    expected: str,
) -> None:
    regex = "~/[0]?" + route_path[1:]
    assert _upstream(kernels, service_path, regex, strip, request_path) == expected
