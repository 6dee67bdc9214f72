"""Router priority ties as Kong 3.x's traditional_compatible router breaks them.

Kong hands each matcher to atc-router with ``(priority, route uuid)``; atc-router keeps them in a
``BTreeMap`` ordered by that pair and tries them from the largest down
(``atc-router:src/router.rs`` ``try_match``), so of two matchers of equal priority the one with
the larger UUID wins. A route whose paths fall into several priority groups (regexes, and each
prefix length) is split into one matcher per group, each with the UUIDv5 of
``"<route id>#<group number>"`` (``kong/router/transform.lua``,
``split_routes_and_services_by_path``).
"""

from __future__ import annotations

import uuid
from types import ModuleType

import pytest
from _impls import impl_params, key_of, load

from fastkong._core.routespec import RouteSpec


@pytest.fixture(params=impl_params("router"))
def mod(request: pytest.FixtureRequest) -> ModuleType:
    return load(request.param)


LOW = "10000000-0000-4000-8000-000000000000"
HIGH = "20000000-0000-4000-8000-000000000000"
TOP = "ffffffff-ffff-4fff-bfff-ffffffffffff"
SPLIT_NAMESPACE = uuid.UUID("7f145bf9-0dce-4f91-98eb-debbce4b9f6b")


def test_tie_goes_to_the_larger_route_uuid(mod: ModuleType) -> None:
    router = mod.Router(
        [
            RouteSpec(0, id=LOW, paths=("/users",)),
            RouteSpec(1, id=HIGH, paths=("/users",)),
        ]
    )
    assert key_of(router, "/users/1") == 1
    reversed_order = mod.Router(
        [
            RouteSpec(0, id=HIGH, paths=("/users",)),
            RouteSpec(1, id=LOW, paths=("/users",)),
        ]
    )
    assert key_of(reversed_order, "/users/1") == 0


def test_overlapping_regexes_of_equal_regex_priority_tie_on_uuid(mod: ModuleType) -> None:
    router = mod.Router(
        [
            RouteSpec(0, id=LOW, paths=(r"~/users/\d+",)),
            RouteSpec(1, id=HIGH, paths=("~/users/.*",)),
        ]
    )
    assert key_of(router, "/users/42") == 1


def test_uuid_comparison_ignores_case(mod: ModuleType) -> None:
    router = mod.Router(
        [
            RouteSpec(0, id="A0000000-0000-4000-8000-000000000000", paths=("/x",)),
            RouteSpec(1, id="b0000000-0000-4000-8000-000000000000", paths=("/x",)),
        ]
    )
    assert key_of(router, "/x") == 1


def test_split_route_groups_tie_on_their_derived_uuids(mod: ModuleType) -> None:
    group1 = uuid.uuid5(SPLIT_NAMESPACE, TOP + "#1")  # the "/ab" group (length 3)
    group2 = uuid.uuid5(SPLIT_NAMESPACE, TOP + "#2")  # the "/c" group (length 2)
    below1 = "30000000-0000-4000-8000-000000000000"
    below2 = "e0000000-0000-4000-8000-000000000000"
    # The fixture is only meaningful with these orders (the route's own id is the largest).
    assert str(group1) < below1 < TOP
    assert below2 < str(group2) < TOP
    router = mod.Router(
        [
            RouteSpec(0, id=TOP, paths=("/ab", "/c")),
            RouteSpec(1, id=below1, paths=("/ab",)),
            RouteSpec(2, id=below2, paths=("/c",)),
        ]
    )
    assert key_of(router, "/ab") == 1
    assert key_of(router, "/c") == 0


def test_route_with_one_path_group_keeps_its_own_uuid(mod: ModuleType) -> None:
    # "/ab" and "/cd" have one length: one group, no split, the route's id decides.
    router = mod.Router(
        [
            RouteSpec(0, id=TOP, paths=("/ab", "/cd")),
            RouteSpec(1, id="30000000-0000-4000-8000-000000000000", paths=("/ab",)),
        ]
    )
    assert key_of(router, "/ab") == 0


def test_paths_of_one_group_are_tried_in_order(mod: ModuleType) -> None:
    router = mod.Router([RouteSpec(0, id=TOP, paths=("~/a(?<x>b)?", "~/(?<y>a)b"))])
    found = router.match("GET", "", 80, "/ab", None, None)
    assert found is not None
    assert found.path == "~/a(?<x>b)?"


def test_without_ids_ties_go_to_the_earlier_route(mod: ModuleType) -> None:
    router = mod.Router([RouteSpec(0, paths=("/users",)), RouteSpec(1, paths=("/users",))])
    assert key_of(router, "/users") == 0
