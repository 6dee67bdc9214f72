"""Kong's own router spec for the expressions flavor (spec/01-unit/08-router_spec.lua, the
cases under ``flavor = "expressions"``), ported: the same routes, requests and winners."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from fastkong.expression_router import ExpressionRoute, ExpressionRouter
from fastkong.expressions import Facts, parse, route_expression


def router(*routes: tuple[str, str, int]) -> ExpressionRouter:
    """``(id suffix, expression, priority)``: Kong's use_case tables, ids e8fb37f1-...-81NN."""
    return ExpressionRouter(
        [
            ExpressionRoute(
                i,
                parse(route_expression(text, ["http", "https"])),
                priority,
                f"e8fb37f1-102d-461e-9c51-6608a6bb81{suffix}",
            )
            for i, (suffix, text, priority) in enumerate(routes)
        ]
    )


def select(
    r: ExpressionRouter,
    path: str,
    *,
    headers: Mapping[str, Sequence[str]] | None = None,
    query: bytes = b"",
) -> int | None:
    """Kong's ``router:select("GET", path, ...)``: the index of the route in the use case."""
    found = r.match(
        Facts("GET", "", path, "http", None, 80, headers=lambda: headers or {}, query=query)
    )
    return found.key if found is not None else None


def test_http_queries() -> None:
    r = router(
        ("01", 'http.path == "/foo/bar" && http.queries.a == "1"', 100),
        ("02", 'http.path == "/foo/bar" && http.queries.a == ""', 100),
        ("03", 'http.path == "/foo/bar" && any(http.queries.a) == "2"', 100),
    )
    assert select(r, "/foo/bar", query=b"a=1") == 0
    assert select(r, "/foo/bar", query=b"a=") == 1
    assert select(r, "/foo/bar", query=b"a") == 1  # no value: Lua's true, read as ""
    assert select(r, "/foo/bar", query=b"a=2&a=10") == 2
    assert select(r, "/foo/bar", query=b"a=x") is None


def test_header_case_sensitivity_and_lower() -> None:
    r = router(
        ("01", 'http.path == "/foo/bar" && http.headers.test1 == "Quote"', 100),
        ("02", 'http.path == "/foo/bar" && lower(http.headers.test2) == "quote"', 100),
    )
    assert select(r, "/foo/bar", headers={"test1": ["quote"]}) is None
    assert select(r, "/foo/bar", headers={"test1": ["quoTe"]}) is None
    assert select(r, "/foo/bar", headers={"test1": ["Quote"]}) == 0
    assert select(r, "/foo/bar", headers={"test2": ["QuoTe"]}) == 1
    assert select(r, "/foo/bar", headers={"test2": ["QUOTE"]}) == 1


def test_single_segments() -> None:
    r = router(
        ("01", 'http.path.segments.0 == "foo" && http.path.segments.1 == "bar"', 100),
        ("02", 'http.path.segments.0 == "foo" && http.path.segments.2 ^= "baz"', 200),
        ("03", 'http.path.segments.0 == "foo" && http.path.segments.3 ~ r#"\\d+"#', 300),
    )
    assert select(r, "/foo/bar") == 0
    assert select(r, "/foo/bar/bazxxx") == 1
    assert select(r, "/foo/bar/baz/12345") == 2
    assert select(r, "/foo/xxx") is None


def test_segments_len() -> None:
    r = router(("01", 'http.path.segments.0 == "foo" && http.path.segments.len == 1', 100))
    assert select(r, "/foo") == 0
    assert select(r, "/foo/") == 0
    assert select(r, "/foo/xxx") is None


def test_segment_ranges() -> None:
    r = router(
        ("01", 'http.path.segments.0_1 ~ r#"\\d+/\\w+"#', 100),
        ("02", 'http.path.segments.1_3 == r#"xxx/yyy/zzz"#', 100),
        ("03", 'http.path.segments.1_2 == r#"xxx/yyy"# && http.path.segments.len == 3', 100),
    )
    assert select(r, "/123/foo/bar") == 0
    assert select(r, "/123/hello-world/bar") == 0
    assert select(r, "/foo/xxx/yyy/zzz/bar") == 1
    assert select(r, "/foo/xxx/yyy") == 2
    assert select(r, "/foo/xxx/yyy/") == 2


def test_not_expression() -> None:
    r = router(("01", '!(http.path ^= r#"/foo"#)', 100))
    assert select(r, "/123/foo/bar") == 0
    assert select(r, "/xyz/hello-world/bar") == 0
    assert select(r, "/foo/bar") is None


def test_priority_near_2_to_the_46() -> None:
    first = ("01", 'http.path ^= r#"/foo"#', 2**46 - 3)
    assert select(router(first), "/foo/bar") == 0
    assert select(router(first, ("02", 'http.path ^= r#"/foo"#', 2**46 - 2)), "/foo/bar") == 1
