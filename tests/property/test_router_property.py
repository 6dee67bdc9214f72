"""Hypothesis: compiled router == twin == the naive reference (tests/router_reference.py).

Routes and requests are drawn from small alphabets so that hosts, prefixes, regexes, headers
and snis collide often and priorities decide. The uri kernels get the same twin check.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastkong._core import NO_EXTENSIONS
from fastkong._core.routespec import RouteSpec


def _load_reference() -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "router_reference.py"
    spec = importlib.util.spec_from_file_location("router_reference", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


reference = _load_reference()
ROUTERS = [importlib.import_module("fastkong._core._router_py")]
URIS = [importlib.import_module("fastkong._core._uri_py")]
if not NO_EXTENSIONS:
    ROUTERS.append(importlib.import_module("fastkong._core.router"))
    URIS.append(importlib.import_module("fastkong._core.uri"))

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

PREFIXES = st.text(alphabet="/ab", min_size=0, max_size=4).map(lambda s: "/" + s)
REGEXES = st.sampled_from(
    [
        "~/a",
        "~/ab?",
        "~/a$",
        r"~/(?<x>a+)/b",
        "~/a(b)?",
        "~/a|/b",
        "~/(a|b)b",
        "~(?i)/A",
        "~/[ab]+$",
        "~/b*a",
        r"~/a\/",
        "~.",
        r"~/(?:a)(b)b",
        "~/(?:ab|a)b",
        "~/(?P<n>ab)+",
        "~/(a(b)?)a",
        r"~/(?<v>a\d*)/b",
    ]
)
HOSTS = st.sampled_from(
    ["a.com", "b.com", "*.a.com", "a.*", "*a.com", "a.com:8000", "*.com:80", "x.a.com", "b*"]
)
HEADERS = st.lists(
    st.tuples(
        st.sampled_from(["x-a", "x-b", "X_A"]),
        st.lists(st.sampled_from(["1", "2", "B", "~*^1", "~*b"]), min_size=1, max_size=2).map(
            tuple
        ),
    ),
    min_size=1,
    max_size=2,
).map(tuple)
SNIS = st.lists(st.sampled_from(["a.com", "*.a.com", "a.*", "b.com."]), min_size=1, max_size=2).map(
    tuple
)


# Few distinct ids, so that equal-priority routes tie on them and split routes' derived ids
# interleave with them; an id may repeat across routes (then the earlier route wins).
IDS = st.sampled_from(
    [
        "10000000-0000-4000-8000-000000000000",
        "80000000-0000-4000-8000-000000000000",
        "F0000000-0000-4000-8000-000000000000",
    ]
)


def _sometimes(strategy: Any) -> Any:
    """Empty two times out of three, so that most drawn routes can still match."""
    return st.one_of(st.just(()), st.just(()), strategy)


@st.composite
def route_sets(draw: Any) -> list[RouteSpec]:
    count = draw(st.integers(min_value=0, max_value=8))
    specs = []
    for key in range(count):
        paths = draw(st.lists(st.one_of(PREFIXES, REGEXES), max_size=3, unique=True))
        methods = st.lists(st.sampled_from(["GET", "POST"]), min_size=1, max_size=2)
        specs.append(
            RouteSpec(
                key=key,
                hosts=tuple(draw(_sometimes(st.lists(HOSTS, min_size=1, max_size=2)))),
                paths=tuple(paths),
                methods=tuple(draw(_sometimes(methods))),
                headers=draw(_sometimes(HEADERS)),
                snis=draw(_sometimes(SNIS)),
                regex_priority=draw(st.integers(min_value=-2, max_value=2)),
                id=draw(st.one_of(st.none(), IDS)),
            )
        )
    return specs


REQUEST_PATHS = st.tuples(
    st.sampled_from(["/", "/a", "/ab", "/a/b", "/aa/b", "/b", "/ba", "/abb", "/A"]),
    st.text(alphabet="/abAB1", max_size=4),
).map("".join)

REQUESTS = st.fixed_dictionaries(
    {
        "method": st.sampled_from(["GET", "POST", "PUT"]),
        "host": st.sampled_from(["", "a.com", "x.a.com", "y.x.a.com", "a.org", "b.com", "ba.com"]),
        "port": st.sampled_from([80, 8000]),
        "path": REQUEST_PATHS,
        "headers": st.one_of(
            st.none(),
            st.dictionaries(
                st.sampled_from(["x-a", "x-b"]),
                st.lists(st.sampled_from(["1", "2", "b", "B1", "12"]), min_size=1, max_size=2),
                max_size=2,
            ),
        ),
        "sni": st.one_of(st.none(), st.sampled_from(["", "a.com", "x.a.com", "a.org", "b.com"])),
    }
)


def _view(found: Any) -> Any:
    if found is None:
        return None
    return (found.key, found.path, found.matched_len, found.captures)


@SETTINGS
@given(specs=route_sets(), requests=st.lists(REQUESTS, min_size=1, max_size=6))
def test_router_agrees_with_twin_and_reference(
    specs: list[RouteSpec], requests: list[dict[str, Any]]
) -> None:
    # Eager and lazy_regex builds (regexes compiled at first use) of each implementation.
    routers = [mod.Router(specs, lazy_regex=lazy) for mod in ROUTERS for lazy in (False, True)]
    for request in requests:
        expected = reference.reference_match(specs, **request)
        for router in routers:
            assert _view(router.match(**request)) == expected, (router, request)


TIE_PATHS = st.sampled_from(["/a", "/b", "/ab", "/aa", "~/a", "~/(?<x>a)b"])


@st.composite
def tied_route_sets(draw: Any) -> list[RouteSpec]:
    """Paths only, from a handful: equal priorities everywhere, routes split into groups."""
    count = draw(st.integers(min_value=1, max_value=6))
    return [
        RouteSpec(
            key=key,
            paths=tuple(draw(st.lists(TIE_PATHS, min_size=1, max_size=4, unique=True))),
            id=draw(st.one_of(st.none(), IDS)),
        )
        for key in range(count)
    ]


@SETTINGS
@given(specs=tied_route_sets(), path=st.sampled_from(["/a", "/ab", "/aab", "/b", "/ba"]))
def test_priority_ties_agree_with_reference(specs: list[RouteSpec], path: str) -> None:
    expected = reference.reference_match(specs, "GET", "", 80, path)
    for mod in ROUTERS:
        assert _view(mod.Router(specs).match("GET", "", 80, path)) == expected


RAW_PATHS = st.text(alphabet="/.%2eEfF0a \xe9\u0101", max_size=12)


@SETTINGS
@given(raw=RAW_PATHS)
def test_normalize_path_twins_agree(raw: str) -> None:
    results = {mod.normalize_path(raw) for mod in URIS}
    assert len(results) == 1


@SETTINGS
@given(
    service=st.one_of(st.none(), st.sampled_from(["/", "/s", "/s/", "/a b"])),
    path=st.text(alphabet="/.ab \xe9", max_size=8).map(lambda s: "/" + s),
    matched=st.integers(min_value=0, max_value=9),
    strip=st.booleans(),
    handling=st.sampled_from(["v0", "v1"]),
)
def test_upstream_path_twins_agree(
    service: str | None, path: str, matched: int, strip: bool, handling: str
) -> None:
    results = {mod.upstream_path(service, path, matched, strip, handling) for mod in URIS}
    assert len(results) == 1
    assert next(iter(results)).isascii()
