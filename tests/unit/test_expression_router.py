"""The expression routes' order (priority, then larger id) and the per-first-segment lists that
spare a request the routes that cannot match it: they must pick what trying every route in
order picks."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from fastkong.expression_router import ExpressionRoute, ExpressionRouter, first_segment
from fastkong.expressions import Facts, Result, evaluate, parse, route_expression

PATH_TESTS = [
    'http.path ^= "/a/"',
    'http.path ^= "/a"',
    'http.path == "/a"',
    'http.path ^= "/b/c"',
    'http.path == "/b"',
    'http.path ~ "^/a"',
    'http.path ~ "^/a/"',
    'http.path ~ "^/b$"',
    'http.path ~ "^/b/c?"',
    'http.path ~ "/a/"',
    'http.path ~ "(?i)^/a/"',
    'http.path ~ "^/a/|^/b"',
    'lower(http.path) ^= "/b/"',
    'http.path ^= "/"',
]
OTHER_TESTS = ['http.method == "GET"', 'http.host == "x"', 'http.path =^ "z"']


@st.composite
def expressions(draw: st.DrawFn) -> str:
    first = draw(st.sampled_from(PATH_TESTS + OTHER_TESTS))
    shape = draw(st.sampled_from(["one", "and", "or", "not"]))
    second = draw(st.sampled_from(PATH_TESTS + OTHER_TESTS))
    if shape == "one":
        return first
    if shape == "and":
        return f"{first} && {second}"
    if shape == "or":
        return f"({first} || {second})"
    return f"!({first}) && {second}"


routes_strategy = st.lists(st.tuples(expressions(), st.integers(0, 3)), min_size=1, max_size=12)
paths = st.sampled_from(["/a", "/a/", "/a/x", "/ab", "/b", "/b/", "/b/c", "/b/cz", "/", "/z"])


def naive(routes: list[ExpressionRoute], facts: Facts) -> int | None:
    for route in sorted(routes, key=lambda r: (r.priority, r.id), reverse=True):
        if evaluate(route.node, facts, Result()):
            return route.key
    return None


@settings(max_examples=300, deadline=None)
@given(routes_strategy, paths, st.sampled_from(["GET", "POST"]), st.sampled_from(["x", "y"]))
def test_the_lists_pick_what_trying_every_route_picks(
    specs: list[tuple[str, int]], path: str, method: str, host: str
) -> None:
    routes = [
        ExpressionRoute(i, parse(route_expression(text, ["http", "https"])), prio, f"id-{i:02d}")
        for i, (text, prio) in enumerate(specs)
    ]
    router = ExpressionRouter(routes)
    facts = Facts(method, host, path, "http", None, 80)
    found = router.match(Facts(method, host, path, "http", None, 80))
    assert (found.key if found else None) == naive(routes, facts)


def test_which_tests_pin_a_segment() -> None:
    def pinned(text: str) -> str | None:
        return first_segment(parse(route_expression(text, ["http"])))

    assert pinned('http.path ^= "/users/" && http.method == "GET"') == "users"
    assert pinned('http.method == "GET" && http.path == "/users"') == "users"
    assert pinned('http.path ^= "/users/7/orders"') == "users"
    assert pinned('http.path ^= "/user"') is None  # "/users" matches too
    assert pinned('http.path ^= "/users/" || http.host == "x"') is None
    assert pinned('!(http.path ^= "/users/")') is None
    assert pinned('lower(http.path) ^= "/users/"') is None
    assert pinned('http.path ~ "^/users/"') == "users"
    assert pinned('http.path ~ "^/users$"') == "users"
    assert pinned('http.path ~ "^/users"') is None
    assert pinned('http.path ~ "^/us.rs/"') is None  # regex syntax in the segment
    assert pinned('http.path ~ "/users/"') is None  # not anchored
    assert pinned('http.path ~ "(?i)^/users/"') is None
    assert pinned('http.path ~ "^/users/|^/admin/"') is None


def test_priority_then_the_larger_id() -> None:
    routes = [
        ExpressionRoute(0, parse('http.path ^= "/"'), 1, "id-a"),
        ExpressionRoute(1, parse('http.path ^= "/"'), 1, "id-b"),
        ExpressionRoute(2, parse('http.path ^= "/"'), 0, "id-c"),
    ]
    found = ExpressionRouter(routes).match(Facts("GET", "h", "/x", "http", None, 80))
    assert found is not None and found.key == 1
