"""nginx's realip walk (fastkong/proxy/trust.py), without sockets."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastkong.proxy.trust import RealIp, TrustedIps, forwarded_address

TRUSTED = TrustedIps.parse("127.0.0.1,10.0.0.0/8,::1")
PEER = "127.0.0.1"


@pytest.mark.parametrize(
    ("values", "recursive", "expected"),
    [
        ([b"1.1.1.1, 10.0.0.2, 10.0.0.3"], False, "10.0.0.3"),
        ([b"1.1.1.1, 10.0.0.2, 10.0.0.3"], True, "1.1.1.1"),
        ([b"2.2.2.2, 1.1.1.1, 10.0.0.2"], True, "1.1.1.1"),
        ([b"10.0.0.9, 10.0.0.2"], True, "10.0.0.9"),  # all trusted: the leftmost
        ([b"1.1.1.1", b"10.0.0.2"], True, "1.1.1.1"),  # earlier headers continue the list
        ([b"1.1.1.1", b"2.2.2.2"], True, "2.2.2.2"),  # an untrusted hop ends it
        ([b"1.1.1.1", b"10.0.0.2"], False, "10.0.0.2"),  # without recursion: the last header
        ([b"junk, 10.0.0.2"], True, "10.0.0.2"),  # a non-address stops the walk where it is
        ([b"10.0.0.2, junk"], True, PEER),  # ... and taken first, changes nothing
        ([b"1.2.3.4:8080"], False, "1.2.3.4"),  # a port is allowed
        ([b"[2001:db8::1]:443"], False, "2001:db8::1"),
        ([b"2001:db8::1"], False, "2001:db8::1"),
        ([b"1.1.1.1,,  10.0.0.2 , "], True, "1.1.1.1"),  # empty entries and spaces skipped
        ([b""], True, PEER),
        ([b"1.1.1.1"], True, "1.1.1.1"),
    ],
)
def test_the_walk(values: list[bytes], recursive: bool, expected: str) -> None:
    assert forwarded_address(values, PEER, TRUSTED, recursive) == expected


def test_an_untrusted_peer_changes_nothing() -> None:
    assert forwarded_address([b"1.1.1.1"], "8.8.8.8", TRUSTED, True) == "8.8.8.8"


addresses = st.one_of(
    st.sampled_from(["10.0.0.1", "10.2.3.4", "127.0.0.1"]),  # trusted
    st.sampled_from(["1.1.1.1", "203.0.113.7", "2001:db8::5"]),  # untrusted
)


@given(st.lists(addresses, min_size=1, max_size=8), st.booleans())
def test_agrees_with_the_documented_rule(chain: list[str], recursive: bool) -> None:
    # The rule as the realip module documents it, for a list of addresses only.
    if not recursive:
        expected = chain[-1]
    else:
        expected = chain[0]
        for address in reversed(chain):
            if address not in TRUSTED:
                expected = address
                break
    value = ", ".join(chain).encode()
    assert forwarded_address([value], PEER, TRUSTED, recursive) == expected
    # Split over several headers, the walk is the same.
    parts = [a.encode() for a in chain]
    if recursive:
        assert forwarded_address(parts, PEER, TRUSTED, True) == expected


def test_settings() -> None:
    assert repr(RealIp.parse("X-Forwarded-For", "on")) == (
        "<RealIp header=x-forwarded-for recursive=True>"
    )
    # proxy_protocol: the PROXY header's source, when the connection had one (nginx's realip).
    from_header = RealIp("proxy_protocol")
    assert from_header.remote_addr([(b"x-real-ip", b"9.9.9.9")], PEER, TRUSTED, None) == PEER
    assert from_header.remote_addr([], PEER, TRUSTED, ("203.0.113.9", 4711)) == "203.0.113.9"
    assert RealIp().remote_addr([], PEER, TRUSTED, ("203.0.113.9", 4711)) == PEER
    with pytest.raises(ValueError, match="is not a header name"):
        RealIp("X Real")
    with pytest.raises(ValueError, match="real_ip_recursive: expected on or off"):
        RealIp.parse("X-Real-IP", "yes")


def test_the_header_read() -> None:
    headers = [(b"x-real-ip", b"1.1.1.1"), (b"x-real-ip", b"2.2.2.2")]
    assert RealIp().remote_addr(headers, PEER, TRUSTED) == "1.1.1.1"  # the first X-Real-IP
    assert RealIp("CF-Connecting-IP").remote_addr(headers, PEER, TRUSTED) == PEER
    xff = [(b"x-forwarded-for", b"1.1.1.1"), (b"x-forwarded-for", b"10.0.0.2")]
    assert RealIp("X-Forwarded-For", True).remote_addr(xff, PEER, TRUSTED) == "1.1.1.1"
