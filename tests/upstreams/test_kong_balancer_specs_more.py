"""Kong's balancer specs, continued: wheel manipulation of consistent-hashing and round-robin.

Ported: ``spec/01-unit/09-balancer/03-consistent_hashing_spec.lua`` lines 641-983 and
``04-round_robin_spec.lua`` lines 831-1176 (the entries each address gets in the wheel, DNS
record and target order, weight changes, renewed records). How Kong's mocks translate (fake
DNS answers, round-robin wheel counts as picks per cycle, ttl=0 addresses) and what was left
out: see the docstring of ``tests/upstreams/test_kong_balancer_specs.py``.
"""

from __future__ import annotations

import socket

import pytest

from fastkong.upstreams.balancers import Balancer, ConsistentHashing
from tests.upstreams.test_kong_balancer_specs import (
    CH,
    RR,
    Answers,
    Spec,
    build,
    indices,
    label,
    resolve,
)

TEN = [f"1.2.3.{i}" for i in range(1, 11)]
SHUFFLED = [f"1.2.3.{i}" for i in (8, 3, 1, 2, 4, 5, 6, 9, 10, 7)]


@pytest.mark.parametrize(("algorithm", "slots"), [(CH, 1000), (RR, 19)])
def test_dns_record_order_has_no_effect(algorithm: str, slots: int) -> None:
    # 03 l.641-679, 04 l.846-884
    a = build(algorithm, ("mashape.test:80", 100), slots=slots, dns={"mashape.test": TEN})
    b = build(algorithm, ("mashape.test:80", 100), slots=slots, dns={"mashape.test": SHUFFLED})
    expected = indices(a)
    assert len(expected) == 10
    assert indices(b) == expected
    if isinstance(a, ConsistentHashing) and isinstance(b, ConsistentHashing):
        assert a.wheel is not None and b.wheel is not None
        assert [label(p) for p in a.order] == [label(p) for p in b.order]
        assert a.wheel.owners == b.wheel.owners


@pytest.mark.parametrize(("algorithm", "slots"), [(CH, 1000), (RR, 3)])
def test_changing_hostname_order_has_no_effect(algorithm: str, slots: int) -> None:
    # 03 l.680-699, 04 l.885-904
    dns = {"mashape.test": ["1.2.3.1"], "getkong.test": ["1.2.3.2"]}
    one, two = ("mashape.test:80", 100), ("getkong.test:80", 100)
    expected = indices(build(algorithm, one, two, slots=slots, dns=dns))
    assert indices(build(algorithm, two, one, slots=slots, dns=dns)) == expected


# Each step: target specs (None: re-resolve the previous snapshot) with the DNS answers, and
# Kong's count_indices after it. A changed weight is a new config snapshot in fastkong.
MASHAPE2 = {"mashape.test": ["1.2.3.4", "1.2.3.5"], "getkong.test": ["::1"]}
UNRESOLVED = "really.really.really.does.not.exist.hostname.test"
GONE = {UNRESOLVED: ["1.2.3.4"], "getkong.test": ["::1"]}
Step = tuple[tuple[Spec, ...] | None, Answers, dict[str, int]]
WHEEL_CASES = [
    pytest.param(
        RR,
        10,
        [((("mashape.test:80", 100),), MASHAPE2, {"1.2.3.4:80": 1, "1.2.3.5:80": 1})],
        id="04-l831-equal-weights-fitting-indices",
    ),
    pytest.param(
        CH,
        2000,
        [
            (
                (("mashape.test:80", 5), ("getkong.test:8080", 10)),
                MASHAPE2,
                {"1.2.3.4:80": 80, "1.2.3.5:80": 80, "[::1]:8080": 160},
            )
        ],
        id="03-l700-adding-a-host",
    ),
    pytest.param(
        RR,
        10,
        [
            (
                (("mashape.test:80", 5), ("getkong.test:8080", 10)),
                MASHAPE2,
                {"1.2.3.4:80": 1, "1.2.3.5:80": 1, "[::1]:8080": 2},
            )
        ],
        id="04-l905-adding-a-host",
    ),
    pytest.param(
        CH,
        1000,
        [
            (
                (("mashape.test:80", 10), ("getkong.test:80", 10)),
                MASHAPE2,
                {"1.2.3.4:80": 106, "1.2.3.5:80": 106, "[::1]:80": 106},
            ),
            (
                (("mashape.test:80", 25), ("getkong.test:80", 10)),
                MASHAPE2,
                {"1.2.3.4:80": 133, "1.2.3.5:80": 133, "[::1]:80": 53},
            ),
        ],
        id="03-l738-weight-change",
    ),
    pytest.param(
        RR,
        60,
        [
            (
                (("mashape.test:80", 10), ("getkong.test:80", 10)),
                MASHAPE2,
                {"1.2.3.4:80": 1, "1.2.3.5:80": 1, "[::1]:80": 1},
            ),
            (
                (("mashape.test:80", 25), ("getkong.test:80", 10)),
                MASHAPE2,
                {"1.2.3.4:80": 5, "1.2.3.5:80": 5, "[::1]:80": 2},
            ),
        ],
        id="04-l943-weight-change",
    ),
    pytest.param(
        CH,
        100,
        [
            (
                (("mashape.test:80", 50), ("9.9.9.9:123", 50)),
                {},
                {"mashape.test:80": 160, "9.9.9.9:123": 160},
            ),
            (
                (("mashape.test:80", 150), ("9.9.9.9:123", 50)),
                {},
                {"mashape.test:80": 240, "9.9.9.9:123": 80},
            ),
        ],
        id="03-l772-weight-change-ttl0",
    ),
    pytest.param(
        RR,
        100,
        [
            (
                (("mashape.test:80", 50), ("9.9.9.9:123", 50)),
                {},
                {"mashape.test:80": 1, "9.9.9.9:123": 1},
            ),
            (
                (("mashape.test:80", 150), ("9.9.9.9:123", 50)),
                {},
                {"mashape.test:80": 3, "9.9.9.9:123": 1},
            ),
        ],
        id="04-l972-weight-change-ttl0",
    ),
    pytest.param(
        CH,
        1000,
        [
            (
                ((f"{UNRESOLVED}:80", 10), ("getkong.test:80", 10)),
                GONE,
                {"1.2.3.4:80": 160, "[::1]:80": 160},
            ),
            (None, {**GONE, UNRESOLVED: socket.EAI_NONAME}, {"[::1]:80": 320}),
            (
                ((f"{UNRESOLVED}:80", 20), ("getkong.test:80", 10)),
                GONE,
                {"1.2.3.4:80": 213, "[::1]:80": 106},
            ),
        ],
        id="03-l831-weight-change-unresolved",
    ),
    pytest.param(
        RR,
        60,
        [
            (
                ((f"{UNRESOLVED}:80", 10), ("getkong.test:80", 10)),
                GONE,
                {"1.2.3.4:80": 1, "[::1]:80": 1},
            ),
            (None, {**GONE, UNRESOLVED: socket.EAI_NONAME}, {"[::1]:80": 1}),
            (
                ((f"{UNRESOLVED}:80", 20), ("getkong.test:80", 10)),
                GONE,
                {"1.2.3.4:80": 2, "[::1]:80": 1},
            ),
        ],
        id="04-l1028-weight-change-unresolved",
    ),
]


@pytest.mark.parametrize(("algorithm", "slots", "steps"), WHEEL_CASES)
def test_wheel_indices(algorithm: str, slots: int, steps: list[Step]) -> None:
    b: Balancer | None = None
    for specs, answers, expected in steps:
        if specs is None:
            assert b is not None
            resolve(b, answers)
        else:
            b = build(algorithm, *specs, slots=slots, dns=answers)
        assert indices(b) == expected


@pytest.mark.parametrize("algorithm", [CH, RR])
@pytest.mark.parametrize(
    "first, renewed",
    [
        pytest.param(["1.2.3.4", "1.2.3.5"], ["1.2.3.5", "1.2.3.4"], id="A"),
        pytest.param(["::1", "::2"], ["::2", "::1"], id="AAAA"),
    ],
)
def test_renewed_dns_record_no_changes(
    algorithm: str, first: list[str], renewed: list[str]
) -> None:
    # 03 l.921-983, 04 l.1114-1176: the same record again leaves the wheel as it was
    specs = (("mashape.test:80", 5), ("getkong.test:123", 10))
    b = build(
        algorithm, *specs, slots=100, dns={"mashape.test": first, "getkong.test": ["9.9.9.9"]}
    )
    peers = list(b.peers)
    wheel = list(b.wheel.owners) if isinstance(b, ConsistentHashing) and b.wheel else None
    resolve(b, {"mashape.test": renewed, "getkong.test": ["9.9.9.9"]})
    assert b.peers == peers and all(p is q for p, q in zip(b.peers, peers, strict=True))
    if isinstance(b, ConsistentHashing):
        assert b.wheel is not None and b.wheel.owners == wheel
    # the same state as a balancer built fresh from the renewed record
    fresh = build(
        algorithm, *specs, slots=100, dns={"mashape.test": renewed, "getkong.test": ["9.9.9.9"]}
    )
    assert indices(b) == indices(fresh)
