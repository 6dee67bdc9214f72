"""Router: one test per Kong rule (kong.md 2.1-2.2), run on the compiled router and its twin."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest
from _impls import impl_params, key_of, load

from fastkong._core import NO_EXTENSIONS, is_compiled
from fastkong._core.routespec import RouteSpec


@pytest.fixture(params=impl_params("router"))
def mod(request: pytest.FixtureRequest) -> ModuleType:
    return load(request.param)


def R(key: int, **fields: Any) -> RouteSpec:
    return RouteSpec(key, **fields)


if not NO_EXTENSIONS:

    def test_compiled_router_is_an_extension() -> None:
        compiled = load("fastkong._core.router")
        assert is_compiled(compiled)
        assert compiled.__file__.endswith(".so") or compiled.__file__.endswith(".pyd")


# -- hosts ----------------------------------------------------------------------------------------


def test_host_exact_is_case_insensitive(mod: ModuleType) -> None:
    router = mod.Router([R(0, hosts=("Example.COM",))])
    assert key_of(router, host="example.com") == 0
    assert key_of(router, host="www.example.com") is None
    assert key_of(router, host="example.co") is None


def test_host_wildcard_suffix_matches_one_or_more_labels(mod: ModuleType) -> None:
    router = mod.Router([R(0, hosts=("*.example.com",))])
    assert key_of(router, host="a.example.com") == 0
    assert key_of(router, host="a.b.example.com") == 0
    assert key_of(router, host="example.com") is None
    assert key_of(router, host="aexample.com") is None


def test_host_wildcard_prefix(mod: ModuleType) -> None:
    router = mod.Router([R(0, hosts=("example.*",))])
    assert key_of(router, host="example.org") == 0
    assert key_of(router, host="example.co.uk") == 0
    assert key_of(router, host="www.example.org") is None


def test_host_wildcard_not_cut_at_a_dot(mod: ModuleType) -> None:
    # Kong's schema accepts "*example.com"; ATC reads it as "ends with example.com".
    router = mod.Router([R(0, hosts=("*example.com",)), R(1, hosts=("api*",))])
    assert key_of(router, host="myexample.com") == 0
    assert key_of(router, host="example.com") == 0
    assert key_of(router, host="api2.local") == 1


def test_host_with_port_requires_the_port(mod: ModuleType) -> None:
    router = mod.Router([R(0, hosts=("example.com:8000",)), R(1, hosts=("*.example.com:8443",))])
    assert key_of(router, host="example.com", port=8000) == 0
    assert key_of(router, host="example.com", port=80) is None
    assert key_of(router, host="a.example.com", port=8443) == 1
    assert key_of(router, host="a.example.com", port=8000) is None


def test_host_without_port_matches_any_port(mod: ModuleType) -> None:
    router = mod.Router([R(0, hosts=("example.com",))])
    assert key_of(router, host="example.com", port=8000) == 0
    assert key_of(router, host="example.com", port=443) == 0


def test_hosts_are_ored(mod: ModuleType) -> None:
    router = mod.Router([R(0, hosts=("a.com", "*.b.com", "c.*"))])
    assert [key_of(router, host=h) for h in ("a.com", "x.b.com", "c.net", "d.com")] == [
        0,
        0,
        0,
        None,
    ]


def test_absent_host_matches_only_routes_without_hosts(mod: ModuleType) -> None:
    router = mod.Router([R(0, hosts=("*.com",)), R(1, paths=("/",))])
    assert key_of(router, host="") == 1


# -- paths ----------------------------------------------------------------------------------------


def test_plain_path_is_a_character_prefix(mod: ModuleType) -> None:
    router = mod.Router([R(0, paths=("/foo",))])
    for path in ("/foo", "/foo/bar", "/foobar"):
        found = router.match("GET", "", 80, path)
        assert found is not None and found.key == 0 and found.path == "/foo"
        assert found.matched_len == 4 and found.captures is None
    assert key_of(router, "/fo") is None
    assert key_of(router, "/bar/foo") is None


def test_regex_path_is_anchored_at_the_start_only(mod: ModuleType) -> None:
    router = mod.Router([R(0, paths=(r"~/v\d+",))])
    found = router.match("GET", "", 80, "/v12/users")
    assert found is not None and found.key == 0 and found.matched_len == 4
    assert key_of(router, "/api/v12") is None


def test_regex_path_with_dollar_is_exact(mod: ModuleType) -> None:
    router = mod.Router([R(0, paths=("~/foo$",))])
    assert key_of(router, "/foo") == 0
    assert key_of(router, "/foo/") is None


def test_regex_top_level_alternation_is_only_anchored_in_its_first_branch(
    mod: ModuleType,
) -> None:
    # Kong only prepends "^": "^/a|/b" finds "/b" anywhere (ATC semantics, kept on purpose).
    router = mod.Router([R(0, paths=("~/a|/b",))])
    found = router.match("GET", "", 80, "/x/b")
    assert found is not None and found.key == 0 and found.matched_len == 2


def test_regex_named_captures_are_kongs_uri_captures(mod: ModuleType) -> None:
    router = mod.Router([R(0, paths=(r"~/users/(?<id>\d+)(/(?<tab>\w+))?",))])
    found = router.match("GET", "", 80, "/users/42/posts")
    assert found is not None
    assert found.captures == {
        0: "/users/42/posts",
        1: "42",
        2: "/posts",
        3: "posts",
        "id": "42",
        "tab": "posts",
    }
    assert found.matched_len == len("/users/42/posts")
    found = router.match("GET", "", 80, "/users/42")
    assert found is not None
    assert found.captures == {0: "/users/42", 1: "42", "id": "42"}  # unmatched groups omitted


def test_regex_without_groups_has_no_captures(mod: ModuleType) -> None:
    # Kong's has_capture(): uri_captures is nil unless a group besides the whole match exists.
    router = mod.Router([R(0, paths=(r"~/v\d+",))])
    found = router.match("GET", "", 80, "/v1")
    assert found is not None and found.captures is None


def test_regex_index_keeps_optional_literals(mod: ModuleType) -> None:
    router = mod.Router([R(0, paths=("~/ab?c",)), R(1, paths=("~/x*y",)), R(2, paths=("~/q{0}",))])
    assert key_of(router, "/ac") == 0
    assert key_of(router, "/y") == 1
    assert key_of(router, "/") == 2


def test_regex_inline_flags_are_honoured(mod: ModuleType) -> None:
    router = mod.Router([R(0, paths=("~(?i)/API",))])
    assert key_of(router, "/api/x") == 0


def test_invalid_regex_path_raises_value_error_naming_it(mod: ModuleType) -> None:
    with pytest.raises(ValueError, match=r"~/\(unclosed"):
        mod.Router([R(0, paths=("~/(unclosed",))])


def test_invalid_header_regex_raises_value_error(mod: ModuleType) -> None:
    with pytest.raises(ValueError, match="x-a"):
        mod.Router([R(0, headers=(("x-a", ("~*[",)),))])


def test_path_with_undecodable_bytes_matches_nothing(mod: ModuleType) -> None:
    # normalize_path keeps non-UTF-8 bytes as surrogates; Kong's ATC refuses such a path.
    router = mod.Router([R(0, paths=("/",))])
    assert key_of(router, "/caf\udce9") is None
    assert key_of(router, "/café") == 0


# -- methods, headers, snis -----------------------------------------------------------------------


def test_methods_are_exact_and_ored(mod: ModuleType) -> None:
    router = mod.Router([R(0, methods=("GET", "POST"))])
    assert key_of(router, method="GET") == 0
    assert key_of(router, method="POST") == 0
    assert key_of(router, method="PUT") is None
    assert key_of(router, method="get") is None


def test_headers_are_anded_across_names(mod: ModuleType) -> None:
    router = mod.Router([R(0, headers=(("x-a", ("1",)), ("x-b", ("2",))))])
    assert key_of(router, headers={"x-a": ["1"], "x-b": ["2"]}) == 0
    assert key_of(router, headers={"x-a": ["1"]}) is None
    assert key_of(router, headers=None) is None


def test_header_values_are_ored_and_any_request_value_may_match(mod: ModuleType) -> None:
    router = mod.Router([R(0, headers=(("x-a", ("1", "2")),))])
    assert key_of(router, headers={"x-a": ["2"]}) == 0
    assert key_of(router, headers={"x-a": ["9", "1"]}) == 0
    assert key_of(router, headers={"x-a": ["9"]}) is None


def test_header_values_compare_lower_cased(mod: ModuleType) -> None:
    router = mod.Router([R(0, headers=(("x-a", ("Beta",)),))])
    assert key_of(router, headers={"x-a": ["BETA"]}) == 0
    assert key_of(router, headers={"x-a": ["beta"]}) == 0


def test_header_regex_is_searched_not_anchored(mod: ModuleType) -> None:
    router = mod.Router([R(0, headers=(("user-agent", (r"~*Mobile\d",)),))])
    assert key_of(router, headers={"user-agent": ["Foo MOBILE7 bar"]}) == 0
    assert key_of(router, headers={"user-agent": ["desktop"]}) is None


def test_header_names_lists_what_routes_test(mod: ModuleType) -> None:
    router = mod.Router(
        [R(0, headers=(("X-Version", ("1",)),)), R(1, headers=(("x_env", ("a",)),))]
    )
    # Kong reads header x_env as x-env (nginx maps '_' to '-' in header lookups).
    assert router.header_names == frozenset({"x-version", "x-env"})
    assert key_of(router, headers={"x-env": ["a"]}) == 1


def test_sni_is_ignored_on_plain_http(mod: ModuleType) -> None:
    router = mod.Router([R(0, snis=("a.com",), paths=("/",))])
    assert key_of(router, sni=None) == 0


def test_sni_is_enforced_on_tls(mod: ModuleType) -> None:
    router = mod.Router([R(0, snis=("a.com",), paths=("/",))])
    assert key_of(router, sni="a.com") == 0
    assert key_of(router, sni="b.com") is None
    assert key_of(router, sni="") is None  # TLS without SNI


def test_sni_trailing_dot_is_dropped_and_wildcards_work(mod: ModuleType) -> None:
    router = mod.Router([R(0, snis=("a.com.",)), R(1, snis=("*.b.com",)), R(2, snis=("c.*",))])
    assert key_of(router, sni="a.com") == 0
    assert key_of(router, sni="x.b.com") == 1
    assert key_of(router, sni="c.org") == 2


# -- priority -------------------------------------------------------------------------------------


def test_more_criteria_beat_longer_prefix(mod: ModuleType) -> None:
    router = mod.Router([R(0, paths=("/foo/bar/baz",)), R(1, paths=("/",), methods=("GET",))])
    assert key_of(router, "/foo/bar/baz") == 1


def test_plain_host_beats_wildcard_host(mod: ModuleType) -> None:
    specs = [
        R(0, hosts=("*.example.com",), paths=("/long/path",)),
        R(1, hosts=("api.example.com",), paths=("/",)),
    ]
    assert key_of(mod.Router(specs), "/long/path", host="api.example.com") == 1
    assert key_of(mod.Router(specs[::-1]), "/long/path", host="api.example.com") == 1


def test_more_headers_win(mod: ModuleType) -> None:
    specs = [
        R(0, headers=(("x-a", ("1",)),), paths=("/long",)),
        R(1, headers=(("x-a", ("1",)), ("x-b", ("2",))), paths=("/",)),
    ]
    assert key_of(mod.Router(specs), "/long", headers={"x-a": ["1"], "x-b": ["2"]}) == 1


def test_regex_beats_prefix(mod: ModuleType) -> None:
    specs = [R(0, paths=("/foo/bar/baz",)), R(1, paths=("~/foo",))]
    assert key_of(mod.Router(specs), "/foo/bar/baz") == 1


def test_higher_regex_priority_wins(mod: ModuleType) -> None:
    specs = [R(0, paths=("~/a",), regex_priority=1), R(1, paths=("~/a",), regex_priority=5)]
    assert key_of(mod.Router(specs), "/a") == 1


def test_negative_regex_priority_sorts_below_zero(mod: ModuleType) -> None:
    specs = [
        R(0, paths=("~/a",), regex_priority=-1),
        R(1, paths=("~/a",), regex_priority=0),
        R(2, paths=("~/a",), regex_priority=-5),
    ]
    assert key_of(mod.Router(specs), "/a") == 1
    assert key_of(mod.Router([specs[0], specs[2]]), "/a") == 0
    # Still a regex: it keeps beating plain prefixes of equal weight.
    assert key_of(mod.Router([R(0, paths=("/a",)), specs[2]]), "/a") == 2


def test_regex_priority_is_ignored_for_prefix_paths(mod: ModuleType) -> None:
    specs = [R(0, paths=("/a",), regex_priority=100), R(1, paths=("/ab",))]
    assert key_of(mod.Router(specs), "/abc") == 1


def test_longer_prefix_wins(mod: ModuleType) -> None:
    specs = [R(0, paths=("/a",)), R(1, paths=("/a/b",)), R(2, paths=("/a/b/c",))]
    router = mod.Router(specs)
    assert key_of(router, "/a/b/c/d") == 2
    assert key_of(router, "/a/b/x") == 1
    assert key_of(router, "/a/x") == 0


def test_multi_path_route_is_ranked_per_path(mod: ModuleType) -> None:
    router = mod.Router([R(0, paths=("/a", "/abc/def")), R(1, paths=("/abc",))])
    found = router.match("GET", "", 80, "/abc/def/x")
    assert found is not None and (found.key, found.path, found.matched_len) == (0, "/abc/def", 8)
    found = router.match("GET", "", 80, "/abc/x")
    assert found is not None and (found.key, found.path) == (1, "/abc")
    found = router.match("GET", "", 80, "/ax")
    assert found is not None and (found.key, found.path) == (0, "/a")


def test_multi_path_route_reports_first_matching_path_of_equal_rank(mod: ModuleType) -> None:
    router = mod.Router([R(0, paths=("~/a", "~/(?<x>a)b"))])
    found = router.match("GET", "", 80, "/ab")
    assert found is not None and found.path == "~/a"


def test_ties_go_to_the_earlier_route(mod: ModuleType) -> None:
    a, b = R(0, paths=("/x",)), R(1, paths=("/x",))
    assert key_of(mod.Router([a, b]), "/x") == 0
    assert key_of(mod.Router([b, a]), "/x") == 1


def test_route_found_through_two_host_buckets_is_tested_once(mod: ModuleType) -> None:
    router = mod.Router(
        [R(0, hosts=("a.b.com", "*.b.com", "a.*"), paths=("/",)), R(1, paths=("/",))]
    )
    assert key_of(router, host="a.b.com") == 0
    assert key_of(router, host="z.com") == 1


def test_route_without_criteria_matches_everything(mod: ModuleType) -> None:
    router = mod.Router([R(7)])
    found = router.match("DELETE", "x.y", 1, "/anything")
    assert found is not None and (found.key, found.path, found.matched_len) == (7, None, 0)


def test_priority_value_follows_kongs_bit_layout() -> None:
    from fastkong._core._router_py import route_priority

    value = route_priority(
        methods=True, hosts=("a.com",), header_count=2, snis=False, path="/abc", regex_priority=9
    )
    assert value == (4 << 61) | (1 << 60) | (2 << 52) | 4  # regex_priority only for regexes
    value = route_priority(
        methods=False, hosts=("*.a.com",), header_count=300, snis=True, path="~/x", regex_priority=3
    )
    assert value == (4 << 61) | (255 << 52) | (1 << 51) | ((3 + 2**31) << 19)


# -- shape ----------------------------------------------------------------------------------------


def test_empty_router_matches_nothing(mod: ModuleType) -> None:
    router = mod.Router([])
    assert len(router) == 0
    assert key_of(router, "/") is None
    assert router.header_names == frozenset()


def test_router_len_and_repr_show_state(mod: ModuleType) -> None:
    router = mod.Router(
        [R(0, paths=("/a", "~/b")), R(1, hosts=("x.com", "*.y.com")), R(2, paths=("/c",))]
    )
    assert len(router) == 3
    assert repr(router) == "<Router routes=3 matchers=4 regex=1 hosts=2>"


def test_route_match_repr(mod: ModuleType) -> None:
    router = mod.Router([R(3, paths=("/foo",)), R(4, paths=(r"~/v(?<n>\d+)",))])
    assert repr(router.match("GET", "", 80, "/foo/x")) == (
        "<RouteMatch key=3 path='/foo' matched_len=4>"
    )
    assert repr(router.match("GET", "", 80, "/v7")) == (
        "<RouteMatch key=4 path='~/v(?<n>\\\\d+)' matched_len=3 "
        "captures={0: '/v7', 1: '7', 'n': '7'}>"
    )


def test_many_routes_deep_paths_and_many_candidates(mod: ModuleType) -> None:
    # More candidate lists than the compiled router keeps on its stack (32).
    specs = [R(i, paths=("/" + "a" * i,)) for i in range(1, 80)]
    specs += [R(100 + i, hosts=(f"h{i}.com",), paths=("/" + "a" * i,)) for i in range(1, 80)]
    router = mod.Router(specs)
    assert key_of(router, "/" + "a" * 100) == 79
    assert key_of(router, "/" + "a" * 100, host="h5.com") == 105
    assert key_of(router, "/aaab", method="GET") == 3


# -- building beside a serving thread, and tearing down --------------------------------------


def test_release_empties_the_router_and_hands_over_its_matchers(mod: ModuleType) -> None:
    router = mod.Router(
        [R(0, paths=("/a", "~/b")), R(1, hosts=("x.com",), headers=(("h", ("v",)),))]
    )
    assert key_of(router, "/a") == 0
    matchers = router.release()
    assert len(matchers) == 3  # one per path, one for the pathless route
    assert len(router) == 0
    assert router.header_names == frozenset()
    assert key_of(router, "/a") is None
    assert key_of(router, "/b") is None
    assert key_of(router, "/", host="x.com", headers={"h": ["v"]}) is None
    assert router.release() == []


def test_priority_order_survives_many_routes_and_paths(mod: ModuleType) -> None:
    # The sort key packs (priority, route position, path index) into one integer.
    specs = [R(i, paths=(f"/p/{i % 7}", f"/q/{i % 5}/x")) for i in range(300)]
    router = mod.Router(specs)
    for j in range(7):
        assert key_of(router, f"/p/{j}/tail") == j  # equal priority: the first route wins
    for j in range(5):
        assert key_of(router, f"/q/{j}/x") == j


if not NO_EXTENSIONS:  # the compiled router's loops (the twin is plain Python)

    def test_compiled_build_gives_other_threads_their_turn(monkeypatch: pytest.MonkeyPatch) -> None:
        # Compiled loops never return to the interpreter; the build must call into Python now and
        # then (where the interpreter hands the GIL over to a waiting thread), or a worker's event
        # loop would stall for the whole build.
        compiled = load("fastkong._core.router")
        calls = 0

        def checkpoint() -> None:
            nonlocal calls
            calls += 1

        monkeypatch.setattr(compiled, "_checkpoint", checkpoint)
        compiled.Router([R(i, paths=(f"/svc{i}/api", f"/other{i}")) for i in range(3000)])
        assert calls >= 6000 // 256  # at least once per few hundred matchers and tree nodes


def test_lazy_regex_build_compiles_at_first_use_and_matches_alike(mod: ModuleType) -> None:
    specs = [
        R(0, paths=(r"~/users/(?<id>\d+)$",)),
        R(1, paths=("/users",)),
        R(2, paths=(r"~/files/(?<name>[a-z]+)\.txt",), methods=("GET",)),
    ]
    eager, lazy = mod.Router(specs), mod.Router(specs, lazy_regex=True)
    for method, path in [("GET", "/users/42"), ("GET", "/users/x"), ("GET", "/files/ab.txt")]:
        expected, found = eager.match(method, "", 80, path), lazy.match(method, "", 80, path)
        assert repr(found) == repr(expected)
        assert repr(lazy.match(method, "", 80, path)) == repr(expected)  # compiled, reused
    assert key_of(lazy, "/files/ab.txt", method="POST") is None


def test_lazy_regex_build_does_not_check_regexes(mod: ModuleType) -> None:
    # For validated configs only: an invalid regex is not reported, and matches nothing.
    router = mod.Router([R(0, paths=("~/a(",)), R(1, paths=("/a",))], lazy_regex=True)
    assert key_of(router, "/a(") == 1
    with pytest.raises(ValueError, match="invalid regex path"):
        mod.Router([R(0, paths=("~/a(",))])
