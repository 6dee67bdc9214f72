"""Regex paths as Kong's ATC router runs them: the Rust ``regex`` crate, not Python's ``re``.

Kong builds ``http.path ~ "^<regex>"`` (``kong/router/transform.lua`` ``path_val_transform``);
atc-router compiles it with ``regex::Regex``. Where the two engines read one pattern
differently, the router must answer as Rust does.
"""

from __future__ import annotations

from types import ModuleType

import pytest
from _impls import impl_params, key_of, load

from fastkong._core.routespec import RouteSpec


@pytest.fixture(params=impl_params("router"))
def mod(request: pytest.FixtureRequest) -> ModuleType:
    return load(request.param)


@pytest.mark.parametrize("lazy", [False, True])
def test_dollar_does_not_match_before_a_trailing_newline(mod: ModuleType, lazy: bool) -> None:
    # Rust's `$` (no multi-line flag) is the end of the text; Python's also matches before a
    # final "\n", which a request reaches as %0A (normalize_path decodes it).
    router = mod.Router([RouteSpec(0, paths=("~/admin$",))], lazy_regex=lazy)
    assert key_of(router, "/admin") == 0
    assert key_of(router, "/admin\n") is None


def test_dollar_inside_a_group_or_alternation_is_end_of_text(mod: ModuleType) -> None:
    router = mod.Router([RouteSpec(0, paths=("~/(a$|b)",))])
    assert key_of(router, "/a") == 0
    assert key_of(router, "/a\n") is None
    assert key_of(router, "/bc") == 0


def test_escaped_and_bracketed_dollars_stay_literal(mod: ModuleType) -> None:
    router = mod.Router([RouteSpec(0, paths=(r"~/p\$", "~/q[$]"))])
    assert key_of(router, "/p$") == 0
    assert key_of(router, "/q$") == 0
    assert key_of(router, "/p") is None


def test_multi_line_dollar_still_matches_at_a_line_end(mod: ModuleType) -> None:
    # With (?m) both engines read `$` as end of line.
    router = mod.Router([RouteSpec(0, paths=("~(?m)/a$",))])
    assert key_of(router, "/a\nb") == 0


def test_multi_line_flag_does_not_move_the_start_anchor(mod: ModuleType) -> None:
    # Kong writes "^(?m)/admin": the anchor precedes the flag, so it stays the start of the
    # text; a path holding a newline (%0A) must not match from a later line.
    router = mod.Router([RouteSpec(0, paths=("~(?m)/admin",))])
    assert key_of(router, "/admin") == 0
    assert key_of(router, "/x\n/admin") is None


def test_posix_character_classes_are_ascii_classes(mod: ModuleType) -> None:
    # Rust's regex reads [[:digit:]] as an ASCII class; Python's re would read a set of the
    # characters "[:digt" followed by a literal "]".
    router = mod.Router(
        [
            RouteSpec(0, paths=("~/users/[[:digit:]]+$",)),
            RouteSpec(1, paths=("~/tags/[[:alpha:]_-]+$",)),
            RouteSpec(2, paths=("~/not/[[:^digit:]]+$",)),
        ]
    )
    assert key_of(router, "/users/123") == 0
    assert key_of(router, "/users/d]") is None
    assert key_of(router, "/tags/a_b-C") == 1
    assert key_of(router, "/tags/a1") is None
    assert key_of(router, "/not/ab") == 2
    assert key_of(router, "/not/a1") is None
