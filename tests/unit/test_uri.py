"""uri: Kong's path normalization and upstream path (kong.md 2.3), compiled and twin."""

from __future__ import annotations

from types import ModuleType

import pytest
from _impls import impl_params, load

from fastkong._core import NO_EXTENSIONS, is_compiled


@pytest.fixture(params=impl_params("uri"))
def mod(request: pytest.FixtureRequest) -> ModuleType:
    return load(request.param)


if not NO_EXTENSIONS:

    def test_compiled_uri_is_an_extension() -> None:
        assert is_compiled(load("fastkong._core.uri"))


# -- upstream_path: the strip_path table of kong.md 2.3 --------------------------------------------

# service.path, route path, request path, strip_path, v0, v1
TABLE = [
    ("/s", "/fit", "/fit/foo", True, "/s/foo", "/s/foo"),
    ("/s", "/fit", "/fitfoo", True, "/s/foo", "/sfoo"),
    ("/s", "/fit", "/fit", True, "/s", "/s"),
    ("/s", "/fit", "/fit/", True, "/s/", "/s/"),
    ("/s/", "/fit", "/fit", True, "/s", "/s/"),
    (None, "/fit", "/fit", True, "/", "/"),
    ("/s", "/fit", "/fit/foo", False, "/s/fit/foo", "/sfit/foo"),
    ("/s/", "/fit", "/fit/foo", False, "/s/fit/foo", "/s/fit/foo"),
]


@pytest.mark.parametrize(("service", "route", "request_path", "strip", "v0", "v1"), TABLE)
def test_strip_path_table(
    mod: ModuleType,
    service: str | None,
    route: str,
    request_path: str,
    strip: bool,
    v0: str,
    v1: str,
) -> None:
    assert request_path.startswith(route)
    assert mod.upstream_path(service, request_path, len(route), strip, "v0") == v0
    assert mod.upstream_path(service, request_path, len(route), strip, "v1") == v1


@pytest.mark.parametrize(
    ("request_path", "expected"),
    [("/fit./x", "/s/x"), ("/fit../x", "/s/x"), ("/fit.", "/s"), ("/fit..", "/s")],
)
def test_stripped_postfix_drops_leading_dot_segments(
    mod: ModuleType, request_path: str, expected: str
) -> None:
    assert mod.upstream_path("/s", request_path, 4, True, "v0") == expected


def test_regex_match_is_stripped_whole(mod: ModuleType) -> None:
    # ~/v\d+ matched "/v12" of "/v12/users"
    assert mod.upstream_path("/api", "/v12/users", 4, True, "v0") == "/api/users"


def test_route_without_path_strips_nothing(mod: ModuleType) -> None:
    assert mod.upstream_path("/s", "/a/b", 0, True, "v0") == "/s/a/b"
    assert mod.upstream_path(None, "/a/b", 0, True, "v0") == "/a/b"
    assert mod.upstream_path(None, "/", 0, True, "v0") == "/"


def test_no_strip_with_root_request(mod: ModuleType) -> None:
    assert mod.upstream_path("/s", "/", 1, False, "v0") == "/s"
    assert mod.upstream_path(None, "/", 1, False, "v0") == "/"


def test_upstream_path_is_escaped_like_kong(mod: ModuleType) -> None:
    # kong.tools.uri.escape: reserved characters and '%' pass, the rest goes out as %XX bytes.
    assert mod.upstream_path(None, "/a b/café", 0, False, "v0") == "/a%20b/caf%C3%A9"
    assert mod.upstream_path(None, "/a%2Fb/x:y@z", 0, False, "v0") == "/a%2Fb/x:y@z"
    assert mod.upstream_path(None, "/\udcff", 0, False, "v0") == "/%FF"  # byte kept
    assert mod.upstream_path("/s p", "/x", 0, False, "v0") == "/s%20p/x"


# -- normalize_path -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("/", "/"),
        ("/plain/path", "/plain/path"),
        ("/a/./b", "/a/b"),
        ("/a/b/../c", "/a/c"),
        ("/a/b/..", "/a/"),
        ("/a/.", "/a/"),
        ("/a/b/../../c/", "/c/"),
        ("/.hidden/x..y", "/.hidden/x..y"),
    ],
)
def test_normalize_resolves_dot_segments(mod: ModuleType, raw: str, expected: str) -> None:
    assert mod.normalize_path(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"), [("//a", "/a"), ("/a//b///c", "/a/b/c"), ("/a//", "/a/")]
)
def test_normalize_merges_slashes(mod: ModuleType, raw: str, expected: str) -> None:
    assert mod.normalize_path(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("/%41%62%7E%2d%5F%2E", "/Ab~-_."),  # unreserved: decoded
        ("/a%20b", "/a b"),  # "other" characters: decoded (escaped again going upstream)
        ("/a%2fb%3F%25", "/a%2Fb%3F%25"),  # reserved: kept, hex upper-cased
        ("/x/%2e%2E/y", "/y"),  # decoded dots are dot segments
        ("/caf%C3%A9", "/café"),  # decoded bytes read as UTF-8
        ("/caf\xc3\xa9", "/café"),  # raw bytes arrive latin-1 decoded
        ("/%FF", "/\udcff"),  # not UTF-8: kept as a surrogate
    ],
)
def test_normalize_percent_decoding(mod: ModuleType, raw: str, expected: str) -> None:
    assert mod.normalize_path(raw) == expected


@pytest.mark.parametrize(
    "raw", ["/%zz", "/a%4", "/a%", "/%g0", "/%00", "/../a", "/a/../..", "/%2e%2e/"]
)
def test_normalize_invalid_is_none(mod: ModuleType, raw: str) -> None:
    # nginx refuses these request lines with 400 before Kong's router runs.
    assert mod.normalize_path(raw) is None


def test_normalize_returns_a_clean_path_unchanged(mod: ModuleType) -> None:
    raw = "/api/v1/users"
    assert mod.normalize_path(raw) is raw


def test_normalized_path_upstream_round_trip(mod: ModuleType) -> None:
    path = mod.normalize_path("/a%20b/%C3%A9%FF/%2F")
    assert path is not None
    assert mod.upstream_path(None, path, 0, False, "v0") == "/a%20b/%C3%A9%FF/%2F"
