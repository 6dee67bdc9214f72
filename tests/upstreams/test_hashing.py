"""Kong's consistent hashing: xxHash32 vectors, the wheel, key movement when targets change."""

from __future__ import annotations

from collections import Counter

from fastkong.upstreams.balancers import ConsistentHashing
from fastkong.upstreams.hashing import Continuum, continuum_size, xxh32
from tests.upstreams._configs import targets, upstream


def test_xxh32_reference_vectors() -> None:
    assert xxh32(b"") == 0x02CC5D05
    assert xxh32(b"a") == 0x550D7456
    assert xxh32(b"abc") == 0x32D153FF
    assert xxh32(b"Nobody inspects the spammish repetition") == 0xE2293B2F
    assert xxh32(b"abc", seed=1) != xxh32(b"abc")


def test_continuum_size_is_kongs() -> None:
    assert continuum_size(10) == 1000  # below Kong's minimum: its default
    assert continuum_size(10000) == 10000
    assert continuum_size(65536) == 65536


def test_entries_follow_weights() -> None:
    wheel = Continuum([("10.0.0.1", 80, 100), ("10.0.0.2", 80, 300)], 2, 10000)
    # Kong: floor(weight / total * targets * 160) entries per address
    assert wheel.entries == [80, 240]
    assert repr(wheel).startswith("<Continuum points=10000 used=320")


def balancer(n: int, slots: int = 10000) -> ConsistentHashing:
    u = upstream(
        hash_on="header", hash_on_header="x-user", algorithm="consistent-hashing", slots=slots
    )
    specs = [(f"10.0.0.{i}:80", 100) for i in range(1, n + 1)]
    return ConsistentHashing(upstream=u, targets=targets(u, *specs))


def one_target(**fields: object) -> ConsistentHashing:
    """A consistent-hashing balancer over one target, with these upstream fields."""
    u = upstream(algorithm="consistent-hashing", **fields)
    return ConsistentHashing(upstream=u, targets=targets(u, ("10.0.0.1:80", 100)))


def test_same_key_same_peer_whatever_the_order() -> None:
    u = upstream(hash_on="header", hash_on_header="x-user", algorithm="consistent-hashing")
    ts = targets(u, *[(f"10.0.0.{i}:80", 100) for i in range(1, 5)])
    a = ConsistentHashing(upstream=u, targets=ts)
    b = ConsistentHashing(upstream=u, targets=list(reversed(ts)))
    for i in range(500):
        key = f"user-{i}"
        pa, pb = a.pick((), key), b.pick((), key)
        assert pa is not None and pb is not None
        assert (pa.host, pa.port) == (pb.host, pb.port)
        assert a.pick((), key) is pa


def test_adding_a_target_moves_about_one_in_n_keys() -> None:
    before, after = balancer(4), balancer(5)
    keys = [f"k{i}" for i in range(5000)]
    moved = 0
    for k in keys:
        p, q = before.pick((), k), after.pick((), k)
        assert p is not None and q is not None
        if p.host != q.host:
            moved += 1
            assert q.host == "10.0.0.5"  # keys only move to the new target
    assert 0.12 < moved / len(keys) < 0.28  # ideal: 1/5


def test_spread_over_targets() -> None:
    b = balancer(4)
    counts = Counter(p.host for k in range(8000) if (p := b.pick((), f"key{k}")) is not None)
    assert len(counts) == 4
    assert min(counts.values()) > 8000 / 4 * 0.6


def test_unavailable_owner_walks_to_the_next_peer_and_back() -> None:
    b = balancer(3)
    first = b.pick((), "alice")
    assert first is not None
    first.st.state = 2  # unhealthy
    b.refresh()
    other = b.pick((), "alice")
    assert other is not None and other is not first
    assert b.pick((first,), "alice") is other
    first.st.state = 1
    b.refresh()
    assert b.pick((), "alice") is first


def test_a_retry_goes_back_to_the_same_peer() -> None:
    # Kong's consistent_hashing getPeer keeps the handle's hash point: a retry starts from the
    # same slot, so it reaches the same peer while that peer is available.
    b = balancer(3)
    first = b.pick((), "alice")
    assert first is not None
    assert b.pick((first,), "alice") is first
    assert b.pick((first, first), "alice") is first


def test_hash_value_sources_and_fallback() -> None:
    b = one_target(
        hash_on="header",
        hash_on_header="X-User",
        hash_fallback="query_arg",
        hash_fallback_query_arg="u",
    )
    headers = [(b"x-user", b"alice"), (b"x-user", b"bob")]
    assert b.hash_value(headers, "1.2.3.4", "/p", b"", None, None) == ("alice, bob", None)
    assert b.hash_value([], "1.2.3.4", "/p", b"u=z&u=a&x=1", None, None) == ("a,z", None)
    assert b.hash_value([], "1.2.3.4", "/p", b"u", None, None) == ("true", None)
    assert b.hash_value([], "1.2.3.4", "/p", b"", None, None) == ("", None)


def test_cookie_hash_sets_the_cookie_when_absent() -> None:
    b = one_target(hash_on="cookie", hash_on_cookie="sticky", hash_on_cookie_path="/app")
    value, cookie = b.hash_value([(b"cookie", b"a=1; sticky=xyz")], "ip", "/", b"", None, None)
    assert (value, cookie) == ("xyz", None)
    value, cookie = b.hash_value([], "ip", "/", b"", None, None)
    assert cookie == value and len(value) == 36
    assert b.cookie_header(value) == (
        f"sticky={value}; Path=/app; Same-Site=Lax; HttpOnly".encode()
    )


def test_ip_consumer_path_and_uri_capture() -> None:
    class Ctx:
        consumer = type("C", (), {"id": "consumer-1"})()
        credential = None

    for hash_on, extra, expect in (
        ("ip", {}, "9.9.9.9"),
        ("consumer", {}, "consumer-1"),
        ("path", {}, "/orders/7"),
        ("uri_capture", {"hash_on_uri_capture": "id"}, "7"),
    ):
        b = one_target(hash_on=hash_on, **extra)
        value, _ = b.hash_value([], "9.9.9.9", "/orders/7", b"", Ctx(), {0: "/orders/7", "id": "7"})
        assert value == expect


def test_a_numbered_uri_capture_never_hashes_as_in_kong() -> None:
    # atc-router's context.lua turns numbered capture names into integer keys while
    # hash_on_uri_capture is a string, so Kong's captures["1"] is nil: it uses the fallback.
    b = one_target(
        hash_on="uri_capture",
        hash_on_uri_capture="1",
        hash_fallback="header",
        hash_fallback_header="x-user",
    )
    captures = {0: "/orders/7", 1: "7", "id": "7"}
    headers = [(b"x-user", b"alice")]
    assert b.hash_value(headers, "ip", "/orders/7", b"", None, captures) == ("alice", None)
    assert b.hash_value([], "ip", "/orders/7", b"", None, captures) == ("", None)


def test_an_empty_value_is_hashed_not_skipped_for_the_fallback() -> None:
    # get_value_to_hash returns any non-nil identifier, and "" is true in Lua: an empty header
    # or "?arg=" is hashed as "" (03-consistent-hashing_spec "when the arg has an empty value");
    # only a missing one moves to hash_fallback.
    b = one_target(
        hash_on="header",
        hash_on_header="x-user",
        hash_fallback="query_arg",
        hash_fallback_query_arg="u",
    )
    assert b.hash_value([(b"x-user", b"")], "ip", "/", b"u=alice", None, None) == ("", None)
    assert b.hash_value([], "ip", "/", b"u=", None, None) == ("", None)
    assert b.hash_value([], "ip", "/", b"u=alice", None, None) == ("alice", None)
    assert b.hash_value([], "ip", "/", b"u=s&u&u=1&u=", None, None) == (",1,s,true", None)


def test_a_header_name_with_underscores_names_the_dashed_header() -> None:
    # Kong hashes on ngx.var["http_" .. replace_dashes_lower(hash_on_header)]: nginx's variable
    # for "X_User" is the request header "X-User".
    b = one_target(hash_on="header", hash_on_header="X_User")
    assert b.hash_value([(b"x-user", b"alice")], "ip", "/", b"", None, None) == ("alice", None)


def test_two_addresses_of_one_name_fit_160_entries() -> None:
    # 03-consistent_hashing_spec "equal weights and 'fitting' indices": one target, two A
    # records: floor(100 / 200 * 1 target * 160) = 80 entries each.
    u = upstream(
        hash_on="header", hash_on_header="x-user", algorithm="consistent-hashing", slots=1000
    )
    b = ConsistentHashing(upstream=u, targets=targets(u, ("mashape.test:80", 100)))
    b.targets[0].set_addresses(["1.2.3.4", "1.2.3.5"], b.upstream_id)
    b.rebuild()
    assert b.wheel is not None and b.wheel.entries == [80, 80]


def test_weights_spread_keys_as_in_kongs_unit_spec() -> None:
    # 03-consistent_hashing_spec "gets an IP address and port number; consistent hashing":
    # weights 10 and 5 over a 1000-point wheel, 1500 keys: about 1000 and 500 (within 10%).
    u = upstream(
        hash_on="header", hash_on_header="x-user", algorithm="consistent-hashing", slots=1000
    )
    b = ConsistentHashing(upstream=u, targets=targets(u, ("1.2.3.4:123", 10), ("5.6.7.8:321", 5)))
    counts = Counter(
        f"{p.host}:{p.port}" for n in range(1, 1501) if (p := b.pick((), str(n))) is not None
    )
    assert 900 < counts["1.2.3.4:123"] < 1100 and 450 < counts["5.6.7.8:321"] < 550
    assert len({b.pick((), "6") for _ in range(15)}) == 1
