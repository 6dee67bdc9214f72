"""The PROXY protocol header parser (fastkong/stream/proxy_protocol.py): versions 1 and 2,
partial input, broken input, and the access log's stream line and setting."""

from __future__ import annotations

import ipaddress
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastkong.stream.access_log import StreamAccessLog, stream_access_log_setting
from fastkong.stream.proxy_protocol import (
    V2_SIGNATURE,
    BrokenHeader,
    ProxyHeader,
    encode_v1,
    encode_v2,
    parse_proxy_header,
)

SRC4 = ("203.0.113.7", 51234)
DST4 = ("192.0.2.10", 5432)
SRC6 = ("2001:db8::7", 40000)
DST6 = ("2001:db8::1", 443)


def test_v1_tcp4() -> None:
    data = b"PROXY TCP4 203.0.113.7 192.0.2.10 51234 5432\r\nhello"
    header = parse_proxy_header(data)
    assert header == ProxyHeader(len(data) - 5, 1, SRC4, DST4)
    assert data[header.length :] == b"hello"


def test_v1_tcp6_is_normalised() -> None:
    data = b"PROXY TCP6 2001:0db8::7 2001:db8::1 40000 443\r\n"
    assert parse_proxy_header(data) == ProxyHeader(len(data), 1, SRC6, DST6)


def test_v1_unknown_names_no_client() -> None:
    data = b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\nrest"
    assert parse_proxy_header(data) == ProxyHeader(len(data) - 4, 1)


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\n\r\n",
        b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
        b"PROXY TCP4 2001:db8::1 5.6.7.8 1 2\r\n",  # an IPv6 address in a TCP4 line
        b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",  # LF alone
        b"PROXY TCP4 " + b"1" * 120,  # longer than 107 bytes without its CRLF
        b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",  # two spaces
        b"\x16\x03\x01\x02\x00\x01",  # a ClientHello where the header should be
        b"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
    ],
)
def test_broken_headers_are_refused(data: bytes) -> None:
    with pytest.raises(BrokenHeader):
        parse_proxy_header(data)


def test_v2_inet_with_tlvs_and_payload() -> None:
    tlvs = b"\x04\x00\x03abc"  # a TLV (PP2_TYPE_NOOP): skipped over
    data = encode_v2(SRC4, DST4, tlvs) + b"payload"
    header = parse_proxy_header(data)
    assert header == ProxyHeader(16 + 12 + len(tlvs), 2, SRC4, DST4)
    assert data[header.length :] == b"payload"


def test_v2_inet6() -> None:
    data = encode_v2(SRC6, DST6)
    assert parse_proxy_header(data) == ProxyHeader(16 + 36, 2, SRC6, DST6)


def test_v2_local_and_unspec_name_no_client() -> None:
    assert parse_proxy_header(encode_v2(None, None)) == ProxyHeader(16, 2)
    unix = V2_SIGNATURE + bytes((0x21, 0x31)) + (216).to_bytes(2, "big") + b"\0" * 216
    assert parse_proxy_header(unix) == ProxyHeader(16 + 216, 2)


@pytest.mark.parametrize(
    "data",
    [
        V2_SIGNATURE + bytes((0x11, 0x11)) + b"\x00\x0c" + b"\0" * 12,  # version 1 in a v2 head
        V2_SIGNATURE + bytes((0x22, 0x11)) + b"\x00\x0c" + b"\0" * 12,  # command 2
        V2_SIGNATURE + bytes((0x21, 0x11)) + b"\x00\x04" + b"\0" * 4,  # too short for IPv4
        V2_SIGNATURE + bytes((0x21, 0x11)) + (5000).to_bytes(2, "big"),  # over 4096 bytes
        b"\r\n\r\n\x01",  # not the signature
    ],
)
def test_broken_v2_headers_are_refused(data: bytes) -> None:
    with pytest.raises(BrokenHeader):
        parse_proxy_header(data)


def _address(version: int) -> st.SearchStrategy[str]:
    if version == 4:
        return st.ip_addresses(v=4).map(str)
    return st.ip_addresses(v=6).map(lambda a: str(ipaddress.IPv6Address(a)))


@st.composite
def _endpoints(draw: st.DrawFn) -> tuple[tuple[str, int], tuple[str, int]]:
    version = draw(st.sampled_from((4, 6)))
    port = st.integers(0, 65535)
    return (draw(_address(version)), draw(port)), (draw(_address(version)), draw(port))


@given(_endpoints(), st.booleans(), st.binary(max_size=40))
def test_every_header_round_trips_and_every_proper_prefix_asks_for_more(
    ends: tuple[tuple[str, int], tuple[str, int]], v2: bool, payload: bytes
) -> None:
    source, destination = ends
    encoded = encode_v2(source, destination) if v2 else encode_v1(source, destination)
    header = parse_proxy_header(encoded + payload)
    assert header is not None
    assert (header.length, header.source, header.destination) == (
        len(encoded),
        source,
        destination,
    )
    for cut in range(len(encoded)):
        assert parse_proxy_header(encoded[:cut]) is None


@given(st.binary(max_size=200))
def test_any_bytes_give_a_header_more_or_broken_never_another_error(data: bytes) -> None:
    try:
        header = parse_proxy_header(data)
    except BrokenHeader:
        return
    if header is not None:
        assert 0 < header.length <= len(data)


def test_stream_access_log_line_is_kongs_basic_format() -> None:
    log = StreamAccessLog("/dev/null")
    now = 1_800_000_000.0
    line = log.line_for("203.0.113.7", 200, 1024, 17, 1.23456, now)
    stamp = time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime(now))
    assert line == f"203.0.113.7 [{stamp}] TCP 200 1024 17 1.235\n"
    udp = log.line_for("203.0.113.7", 200, 7, 5, 0.6, now, "UDP")
    assert udp == f"203.0.113.7 [{stamp}] UDP 200 7 5 0.600\n"


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ("off", "off"),
        ("", "off"),
        ("/dev/stdout", "/dev/stdout"),
        ("logs/a.log basic", "logs/a.log"),
    ],
)
def test_stream_access_log_setting(value: str, path: str) -> None:
    assert stream_access_log_setting(value) == path


@pytest.mark.parametrize("value", ["logs/a.log main", "a b c"])
def test_stream_access_log_setting_refuses_other_formats(value: str) -> None:
    with pytest.raises(ValueError, match="proxy_stream_access_log: only Kong's 'basic'"):
        stream_access_log_setting(value)
