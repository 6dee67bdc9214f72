"""ldap-auth's LDAP client (:mod:`fastkong.plugins.bundled._ldap`): its BER, and its edge cases
against a loopback server that speaks LDAP with this file's own few bytes of BER (the real
server, OpenLDAP's slapd, is in tests/plugins/test_ldap_auth.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastkong.plugins.bundled import _ldap as L
from tests.helpers import LoopServer

# -- BER ---------------------------------------------------------------------------------------


def walk(data: bytes, start: int, end: int) -> list[tuple[int, bytes]]:
    """The elements between ``start`` and ``end``, as (tag, content)."""
    found = []
    while start < end:
        tag, a, b = L.read_element(data, start, end)
        found.append((tag, data[a:b]))
        start = b
    return found


@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_lengths_round_trip(n: int) -> None:
    encoded = L.encode_length(n)
    assert len(encoded) == (1 if n < 128 else 2 + (n.bit_length() - 1) // 8)
    header = b"\x30" + encoded
    if n + len(header) <= L.MAX_MESSAGE:
        assert L.frame_size(header) == len(header) + n
    else:
        with pytest.raises(L.BerError, match="a message of"):
            L.frame_size(header)


@given(st.binary(max_size=1000), st.binary(max_size=3))
def test_elements_round_trip(content: bytes, tail: bytes) -> None:
    data = L.tlv(0x04, content) + tail
    tag, a, b = L.read_element(data, 0, len(data))
    assert (tag, data[a:b], b) == (0x04, content, len(data) - len(tail))
    with pytest.raises(L.BerError, match="truncated"):
        L.read_element(data, 0, b - 1)


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_integers_round_trip_in_their_shortest_form(value: int) -> None:
    encoded = L.encode_integer(value)
    tag, a, b = L.read_element(encoded, 0, len(encoded))
    assert tag == L.INTEGER and b == len(encoded)
    assert L.decode_integer(encoded[a:b]) == value
    if b - a > 1:  # not one byte shorter: the first nine bits are not all equal
        assert encoded[a] not in (0, 0xFF) or (encoded[a] ^ encoded[a + 1]) & 0x80


def test_integer_vectors() -> None:
    # Kong's decode spec: 02 01 02 is 2; a padded integer is refused.
    assert L.decode_integer(bytes.fromhex("02")) == 2
    assert L.encode_integer(128) == bytes.fromhex("02020080")
    assert L.encode_integer(-128) == bytes.fromhex("020180")
    assert L.encode_integer(49, L.ENUMERATED) == bytes.fromhex("0a0131")
    for bad in ("", "0001", "ff80", "010203040506070809"):
        with pytest.raises(L.BerError):
            L.decode_integer(bytes.fromhex(bad))


dns = st.binary(max_size=300)
passwords = st.binary(min_size=1, max_size=300)
ids = st.integers(min_value=1, max_value=L.MAX_MESSAGE_ID)


@given(ids, dns, passwords)
def test_bind_request_reads_back(message_id: int, dn: bytes, password: bytes) -> None:
    data = L.bind_request(message_id, dn, password)
    assert L.frame_size(data) == len(data)
    ((tag, envelope),) = walk(data, 0, len(data))
    assert tag == L.SEQUENCE
    (id_tag, raw_id), (op, body) = walk(envelope, 0, len(envelope))
    assert (id_tag, L.decode_integer(raw_id), op) == (L.INTEGER, message_id, L.BIND_REQUEST)
    version, name, auth = walk(body, 0, len(body))
    assert version == (L.INTEGER, b"\x03")
    assert name == (L.OCTET_STRING, dn)
    assert auth == (L.SIMPLE_AUTH, password)


def test_start_tls_and_unbind_requests_are_rfc_4511s() -> None:
    oid = b"1.3.6.1.4.1.1466.20037"
    assert L.start_tls_request(2) == bytes.fromhex("301d020102771880") + bytes((22,)) + oid
    assert L.unbind_request(7) == bytes.fromhex("30050201074200")


optional_fields = st.lists(
    st.sampled_from([(0xA3, b"\x04\x03ldap"), (0x87, b"sasl"), (0x8A, b"1.2.3"), (0x8B, b"v")]),
    max_size=3,
)


@given(
    ids | st.just(0),
    st.sampled_from([L.BIND_RESPONSE, L.EXTENDED_RESPONSE, 0x65]),
    st.integers(min_value=0, max_value=200),
    dns,
    st.binary(max_size=2000),
    optional_fields,
    st.booleans(),
)
def test_responses_read_back(
    message_id: int,
    op: int,
    code: int,
    matched: bytes,
    text: bytes,
    extra: list[tuple[int, bytes]],
    controls: bool,
) -> None:
    body = L.encode_integer(code, L.ENUMERATED) + L.tlv(0x04, matched) + L.tlv(0x04, text)
    body += b"".join(L.tlv(tag, value) for tag, value in extra)
    data = L.message(message_id, L.tlv(op, body) + (L.tlv(0xA0, b"\x30\x00") if controls else b""))
    response = L.parse_response(data)
    names = [value for tag, value in extra if tag == L.RESPONSE_NAME]
    assert response == L.Response(message_id, op, code, matched, text, names[0] if names else None)
    # Framing: every prefix is "not yet" (or, past the header, the whole size).
    for cut in range(len(data)):
        size = L.frame_size(data[:cut])
        assert size is None or size == len(data)
    assert L.frame_size(data + b"\x30\x00") == len(data)


@pytest.mark.parametrize(
    ("hex_body", "message"),
    [
        # Kong's decode spec (03-decode_spec.lua), wrapped in the LDAPMessage envelope.
        ("04010161070a010004000400", "message id that is not an integer"),
        ("02010161090a010004000400", "truncated"),
        ("020101610704010004000400", "result code that is not an enumerated"),
        ("02010161080a01000201010400", "matched DN that is not an octet string"),
        ("02010161080a01000400020101", "diagnostic message that is not an octet string"),
        ("0202000161070a010004000400", "shortest form"),
        ("02010161060a0100040004", "truncated"),
        ("02010161030a0100", "fewer than three"),
        ("020101040100", "protocol operation"),
        ("0201016180", "indefinite"),
    ],
)
def test_malformed_responses(hex_body: str, message: str) -> None:
    body = bytes.fromhex(hex_body)
    with pytest.raises(L.BerError, match=message):
        L.parse_response(L.tlv(L.SEQUENCE, body))


def test_kongs_bind_response_vectors() -> None:
    ok = L.parse_response(bytes.fromhex("300c02010161070a010004000400"))
    assert (ok.message_id, ok.op, ok.code) == (1, L.BIND_RESPONSE, 0)
    refused = L.parse_response(bytes.fromhex("300c02010161070a013104000400"))
    assert refused.code == 49 and L.describe(refused) == "49 (invalidCredentials)"


def test_frame_size_refuses_what_ldap_does_not_send() -> None:
    for bad in ("0400", "3080", "3085", "3084ffffffff"):
        with pytest.raises(L.BerError):
            L.frame_size(bytes.fromhex(bad))
    assert L.frame_size(b"") is None
    assert L.frame_size(b"\x30") is None
    assert L.frame_size(b"\x30\x82\x01") is None
    assert L.frame_size(b"\x30\x82\x01\x00") == 260


# -- against a loopback server -----------------------------------------------------------------


def result(message_id: int, op: int = 0x61, code: int = 0) -> bytes:
    """An LDAPResult response, spelt out (one-byte id and code): the test's own BER."""
    return bytes([0x30, 0x0C, 0x02, 0x01, message_id, op, 0x07, 0x0A, 0x01, code]) + bytes(
        [0x04, 0x00, 0x04, 0x00]
    )


NOTICE = (
    bytes([0x30, 0x24, 0x02, 0x01, 0x00, 0x78, 0x1F, 0x0A, 0x01, 0x34, 0x04, 0x00, 0x04, 0x00])
    + bytes([0x8A, 0x16])
    + b"1.3.6.1.4.1.1466.20036"
)

Behave = Callable[["FakeLdap", int, int, int], bytes | None]


class FakeLdap(LoopServer):
    """Reads LDAP requests (its own framing) and answers each with ``behave(server, connection
    number, message id, operation tag)``: bytes to send, ``b""`` for silence, None to close."""

    def __init__(self, behave: Behave) -> None:
        super().__init__()
        self.behave = behave
        self.connections = 0
        self.requests: list[tuple[int, int, int]] = []  # (connection, message id, op)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        try:
            while True:
                head = await reader.readexactly(2)
                assert head[0] == 0x30
                size = head[1]
                if size & 0x80:
                    size = int.from_bytes(await reader.readexactly(size & 0x7F), "big")
                body = await reader.readexactly(size)
                assert body[0] == 0x02
                id_size = body[1]
                message_id = int.from_bytes(body[2 : 2 + id_size], "big")
                op = body[2 + id_size]
                self.requests.append((number, message_id, op))
                if op == 0x42:  # unbind: the client closes
                    continue
                reply = self.behave(self, number, message_id, op)
                if reply is None:
                    break
                writer.write(reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    def binds(self) -> int:
        return sum(1 for _, _, op in self.requests if op == 0x60)


@pytest.fixture
async def clean() -> AsyncIterator[None]:
    """The connections this test's event loop made end with it."""
    yield
    L.CLIENTS.close_idle(abort=True)
    for _ in range(2):
        await asyncio.sleep(0)


def serve(behave: Behave) -> FakeLdap:
    return FakeLdap(behave).start()


async def bind(
    server: FakeLdap, password: bytes = b"pw", tls: str = "", keepalive: float | None = 60
) -> L.Response:
    target = L.Target("127.0.0.1", server.port, tls, False)
    return await L.simple_bind(target, b"uid=a,dc=x", password, 2.0, keepalive)


async def test_connections_are_kept_and_message_ids_advance(clean: None) -> None:
    server = serve(lambda s, n, i, op: result(i, code=0 if i % 2 else 49))
    try:
        codes = [(await bind(server)).code for _ in range(4)]
        assert codes == [0, 49, 0, 49]
        assert server.connections == 1
        assert [i for _, i, _ in server.requests] == [1, 2, 3, 4]
    finally:
        server.stop()


async def test_a_kept_connection_the_server_dropped_is_retried_once(clean: None) -> None:
    # The first request of each connection is answered; the next one closes it unanswered, as
    # a server that closed an idle connection just as it was reused.
    server = serve(lambda s, n, i, op: result(i) if i == 1 else None)
    try:
        assert (await bind(server)).code == 0
        assert (await bind(server)).code == 0
        assert server.connections == 2
    finally:
        server.stop()


async def test_a_notice_of_disconnection_on_a_kept_connection_is_retried(clean: None) -> None:
    server = serve(lambda s, n, i, op: result(i) if i == 1 else NOTICE)
    try:
        assert (await bind(server)).code == 0
        assert (await bind(server)).code == 0
        assert server.connections == 2
    finally:
        server.stop()


async def test_a_new_connection_closed_unanswered_is_unavailable(clean: None) -> None:
    server = serve(lambda s, n, i, op: None)
    try:
        with pytest.raises(L.LdapUnavailable, match="no bind response"):
            await bind(server)
        assert server.connections == 1
    finally:
        server.stop()


async def test_a_silent_server_times_out(clean: None) -> None:
    server = serve(lambda s, n, i, op: b"")
    try:
        target = L.Target("127.0.0.1", server.port, "", False)
        started = asyncio.get_running_loop().time()
        with pytest.raises(L.LdapUnavailable, match="timeout"):
            await L.simple_bind(target, b"uid=a", b"pw", 0.2, 60)
        assert asyncio.get_running_loop().time() - started < 1.5
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (lambda i: b"\x04\x00", "starting with tag"),
        (lambda i: result(i, op=0x65), "operation 0x65"),
        (lambda i: result(i + 1), "a response to message 2, not 1"),
        (lambda i: b"\x30\x03\x02\x01" + bytes([i]), "protocol operation|truncated"),
    ],
)
async def test_unreadable_answers_are_refusals(
    clean: None, reply: Callable[[int], bytes], message: str
) -> None:
    server = serve(lambda s, n, i, op: reply(i))
    try:
        with pytest.raises(L.LdapRefused, match=message):
            await bind(server)
        assert not L.CLIENTS.pool(L.Target("127.0.0.1", server.port, "", False)).idle
    finally:
        server.stop()


async def test_start_tls_refused_is_unavailable(clean: None) -> None:
    server = serve(lambda s, n, i, op: result(i, op=0x78, code=2))
    try:
        with pytest.raises(L.LdapUnavailable, match=r"StartTLS .* refused: 2 \(protocolError\)"):
            await bind(server, tls="starttls")
        assert server.requests == [(1, 1, 0x77)]  # no bind in the clear after a refusal
    finally:
        server.stop()


async def test_tls_handshake_failure_is_a_refusal(clean: None) -> None:
    # A server that accepts StartTLS and then speaks no TLS.
    server = serve(lambda s, n, i, op: result(i, op=0x78) if op == 0x77 else None)
    try:
        with pytest.raises(L.LdapRefused, match="failed to do SSL handshake"):
            await bind(server, tls="starttls")
    finally:
        server.stop()


async def test_nothing_listening_is_unavailable(clean: None) -> None:
    server = serve(lambda s, n, i, op: None)
    port = server.port
    server.stop()
    with pytest.raises(L.LdapUnavailable, match=f"failed to connect to 127.0.0.1:{port}"):
        await L.simple_bind(L.Target("127.0.0.1", port, "", False), b"uid=a", b"pw", 1, 60)


async def test_idle_connections_close_after_keepalive(clean: None) -> None:
    server = serve(lambda s, n, i, op: result(i))
    try:
        await bind(server, keepalive=0.1)
        pool = L.CLIENTS.pool(L.Target("127.0.0.1", server.port, "", False))
        assert len(pool.idle) == 1
        for _ in range(100):
            if not pool.idle and any(op == 0x42 for _, _, op in server.requests):
                break
            await asyncio.sleep(0.02)
        assert not pool.idle
        assert server.requests[-1][2] == 0x42  # an UnbindRequest before the close
        # No limit (keepalive below 1 ms in the config): kept.
        await bind(server, keepalive=None)
        await asyncio.sleep(0.2)
        assert len(pool.idle) == 1
    finally:
        server.stop()


async def test_a_connection_the_server_closes_while_idle_leaves_the_pool(clean: None) -> None:
    server = serve(lambda s, n, i, op: result(i))
    await bind(server)
    pool = L.CLIENTS.pool(L.Target("127.0.0.1", server.port, "", False))
    assert len(pool.idle) == 1
    server.stop()  # ends the connections it holds
    for _ in range(100):
        if not pool.idle:
            break
        await asyncio.sleep(0.02)
    assert not pool.idle
