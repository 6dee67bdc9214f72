"""The LDAP client of ldap-auth: an LDAPv3 simple bind over asyncio, nothing else.

Kong's plugin (``kong:kong/plugins/ldap-auth/ldap.lua``) sends exactly two operations, and so
does this client (RFC 4511):

- a **BindRequest**, version 3, simple authentication: the DN and the password;
- with ``start_tls``, on a new connection, the **StartTLS** ExtendedRequest
  (``1.3.6.1.4.1.1466.20037``), then the TLS handshake on the same connection.

With ``ldaps`` the TLS handshake comes right after the TCP connect. The server's certificate is
verified, and must name ``ldap_host``, only with ``verify_ldap_host`` (against the node's
trusted roots, Kong's ``lua_ssl_trusted_certificate``); ``ldap_host`` is the TLS server name
either way, as in Kong.

Connections are kept for the next bind, as Kong puts its socket back into OpenResty's pool:
per worker, per server (host, port, TLS mode, verification), at most :data:`POOL_SIZE` idle
(Kong's ``lua_socket_pool_size``), each closed after ``keepalive`` idle (below 1 ms: no limit,
as OpenResty reads 0). A StartTLS connection stays TLS in the pool, so the next bind skips the
upgrade, as Kong's does. A kept connection the server has closed meanwhile is noticed (the
bind gets no answer on it) and the bind is sent once more on a new one, where Kong's socket
would fail the request.

Responses are read as BER with definite lengths (LDAP's rule), framed by the LDAPMessage
envelope, at most :data:`MAX_MESSAGE` bytes, with the message id checked. The errors raised say
which of Kong's outcomes applies: :class:`LdapUnavailable` (the server could not be asked: Kong's
500), :class:`LdapRefused` (a TLS handshake or a bind answer that failed: Kong's 401).
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from collections.abc import Callable
from typing import Final, NamedTuple, cast

from fastkong.proxy.upstream_tls import verifying_context
from fastkong.upstreams.dns import DnsSettings, Resolver, dns_settings

log = logging.getLogger("fastkong.plugins.ldap-auth")

#: Idle connections kept per server and worker (Kong's default ``lua_socket_pool_size``).
POOL_SIZE: Final = 256
#: The largest response read; a bind or StartTLS response is a few dozen bytes.
MAX_MESSAGE: Final = 256 * 1024
#: nginx's default socket timeouts, which OpenResty uses for a ``settimeout`` below 1 ms.
DEFAULT_TIMEOUT: Final = 60.0

START_TLS_OID: Final = b"1.3.6.1.4.1.1466.20037"
NOTICE_OF_DISCONNECTION_OID: Final = b"1.3.6.1.4.1.1466.20036"

# Universal tags.
INTEGER: Final = 0x02
OCTET_STRING: Final = 0x04
ENUMERATED: Final = 0x0A
SEQUENCE: Final = 0x30
# LDAP's protocol operations: [APPLICATION n], constructed unless said.
BIND_REQUEST: Final = 0x60
BIND_RESPONSE: Final = 0x61
UNBIND_REQUEST: Final = 0x42  # primitive, NULL content
EXTENDED_REQUEST: Final = 0x77
EXTENDED_RESPONSE: Final = 0x78
# Context-specific tags used inside them.
SIMPLE_AUTH: Final = 0x80  # AuthenticationChoice simple [0]
REQUEST_NAME: Final = 0x80  # ExtendedRequest requestName [0]
RESPONSE_NAME: Final = 0x8A  # ExtendedResponse responseName [10]

#: RFC 4511's names of the result codes a bind or StartTLS commonly answers, for log lines.
RESULT_NAMES: Final = {
    0: "success",
    1: "operationsError",
    2: "protocolError",
    7: "authMethodNotSupported",
    8: "strongerAuthRequired",
    13: "confidentialityRequired",
    32: "noSuchObject",
    34: "invalidDNSyntax",
    48: "inappropriateAuthentication",
    49: "invalidCredentials",
    50: "insufficientAccessRights",
    51: "busy",
    52: "unavailable",
    53: "unwillingToPerform",
    80: "other",
}

MAX_MESSAGE_ID: Final = 2**31 - 1


class BerError(ValueError):
    """Bytes that are not the BER LDAP uses."""


class LdapError(Exception):
    """A bind that did not get a result code."""


class LdapUnavailable(LdapError):
    """The server could not be asked: no connection, no answer in time, a refused StartTLS."""


class LdapRefused(LdapError):
    """The TLS handshake failed, or the server's answer to the bind could not be read."""


# -- BER -------------------------------------------------------------------------------------
def encode_length(n: int) -> bytes:
    """A definite length: short form below 128, else the long form in as few bytes as fit."""
    if n < 0x80:
        return bytes((n,))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(body),)) + body


def tlv(tag: int, content: bytes) -> bytes:
    """One element: tag, length, content."""
    return bytes((tag,)) + encode_length(len(content)) + content


def encode_integer(value: int, tag: int = INTEGER) -> bytes:
    """An INTEGER (or ENUMERATED) in two's complement, in as few bytes as hold it."""
    size = (value if value >= 0 else ~value).bit_length() // 8 + 1
    return tlv(tag, value.to_bytes(size, "big", signed=True))


def decode_integer(content: bytes) -> int:
    """The value of an INTEGER's content; refuses the empty and the non-minimal forms (X.690
    8.3.2), as OpenSSL's decoder does in Kong."""
    if not content:
        raise BerError("an integer with no content")
    if len(content) > 1 and (
        (content[0] == 0 and content[1] < 0x80) or (content[0] == 0xFF and content[1] >= 0x80)
    ):
        raise BerError("an integer not in its shortest form")
    if len(content) > 8:
        raise BerError("an integer too large")
    return int.from_bytes(content, "big", signed=True)


def read_element(data: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """The element at ``pos`` (which must end by ``end``): (tag, content start, content end)."""
    if pos + 2 > end:
        raise BerError("truncated element")
    tag = data[pos]
    if tag & 0x1F == 0x1F:
        raise BerError("a multi-byte tag")
    first = data[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    elif first == 0x80:
        raise BerError("an indefinite length")
    else:
        count = first & 0x7F
        if count > 4 or pos + count > end:
            raise BerError("a bad length")
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    if pos + length > end:
        raise BerError("truncated element")
    return tag, pos, pos + length


def frame_size(buffer: bytes | bytearray) -> int | None:
    """The size of the LDAPMessage that starts ``buffer``, or None while its header is not all
    there; BerError for anything but a SEQUENCE of definite length up to :data:`MAX_MESSAGE`."""
    if not buffer:
        return None
    if buffer[0] != SEQUENCE:
        raise BerError(f"a message starting with tag {buffer[0]:#04x}")
    if len(buffer) < 2:
        return None
    first = buffer[1]
    if first < 0x80:
        return 2 + first
    count = first & 0x7F
    if count == 0 or count > 4:
        raise BerError("a bad message length")
    if len(buffer) < 2 + count:
        return None
    size = 2 + count + int.from_bytes(buffer[2 : 2 + count], "big")
    if size > MAX_MESSAGE:
        raise BerError(f"a message of {size} bytes")
    return size


# -- LDAP messages ---------------------------------------------------------------------------
def message(message_id: int, operation: bytes) -> bytes:
    """An LDAPMessage: the id and the protocol operation, no controls."""
    return tlv(SEQUENCE, encode_integer(message_id) + operation)


def bind_request(message_id: int, dn: bytes, password: bytes) -> bytes:
    """BindRequest: version 3, ``dn``, simple authentication with ``password``."""
    body = encode_integer(3) + tlv(OCTET_STRING, dn) + tlv(SIMPLE_AUTH, password)
    return message(message_id, tlv(BIND_REQUEST, body))


def start_tls_request(message_id: int) -> bytes:
    """The StartTLS ExtendedRequest (a name, no value)."""
    return message(message_id, tlv(EXTENDED_REQUEST, tlv(REQUEST_NAME, START_TLS_OID)))


def unbind_request(message_id: int) -> bytes:
    return message(message_id, tlv(UNBIND_REQUEST, b""))


class Response(NamedTuple):
    """What an LDAPResult-bearing response says."""

    message_id: int
    op: int  # the protocol operation's tag
    code: int
    matched_dn: bytes
    diagnostic: bytes
    name: bytes | None  # an ExtendedResponse's responseName


def parse_response(data: bytes) -> Response:
    """An LDAPMessage carrying an LDAPResult (BindResponse, ExtendedResponse, ...): its id,
    operation, result code, matched DN, diagnostic message and, when present, responseName.
    Referrals, SASL credentials, response values and controls are skipped."""
    tag, start, end = read_element(data, 0, len(data))
    if tag != SEQUENCE or end != len(data):
        raise BerError("not one LDAPMessage")
    tag, a, b = read_element(data, start, end)
    if tag != INTEGER:
        raise BerError("a message id that is not an integer")
    message_id = decode_integer(data[a:b])
    op, op_start, op_end = read_element(data, b, end)
    if op & 0xE0 != 0x60:
        raise BerError(f"a protocol operation with tag {op:#04x}")
    fields: list[tuple[int, bytes]] = []
    pos = op_start
    while pos < op_end:
        tag, a, b = read_element(data, pos, op_end)
        fields.append((tag, data[a:b]))
        pos = b
    if len(fields) < 3:
        raise BerError("an LDAPResult with fewer than three fields")
    (code_tag, code), (dn_tag, matched_dn), (text_tag, diagnostic) = fields[:3]
    if code_tag != ENUMERATED:
        raise BerError("a result code that is not an enumerated value")
    if dn_tag != OCTET_STRING:
        raise BerError("a matched DN that is not an octet string")
    if text_tag != OCTET_STRING:
        raise BerError("a diagnostic message that is not an octet string")
    name = next((value for tag, value in fields[3:] if tag == RESPONSE_NAME), None)
    return Response(message_id, op, decode_integer(code), matched_dn, diagnostic, name)


def describe(response: Response) -> str:
    """A result for a log line: code, its name, and the server's diagnostic message."""
    name = RESULT_NAMES.get(response.code, "unknown result code")
    text = f"{response.code} ({name})"
    if response.diagnostic:
        text += ": " + response.diagnostic.decode("utf-8", "replace")
    return text


# -- connections -----------------------------------------------------------------------------
class Target(NamedTuple):
    """An LDAP server as one plugin config reaches it (the pool key)."""

    host: str
    port: int
    tls: str  # "", "ldaps" or "starttls"
    verify: bool


class _Closed(Exception):
    """The connection ended (or the server sent its notice of disconnection) before the
    answer came."""


class Connection(asyncio.Protocol):
    """One connection to an LDAP server: sends a request, reads its response."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[None] | None = None
        self.lost = False
        self.next_id = 1
        #: The idle timer while pooled.
        self.idle: asyncio.TimerHandle | None = None
        #: Called once when the connection ends (the pool forgets it).
        self.on_lost: Callable[[Connection], None] | None = None

    def __repr__(self) -> str:
        return f"<ldap Connection lost={self.lost} next_id={self.next_id}>"

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (uvloop's transports are not asyncio.Transport subclasses, but have its methods)
        self.transport = cast("asyncio.Transport", transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._wake()

    def eof_received(self) -> bool:
        self.lost = True
        self._wake()
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._wake()
        if self.on_lost is not None:
            self.on_lost(self)

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    @property
    def usable(self) -> bool:
        """Open, with nothing unread (a kept connection that received anything, such as a
        notice of disconnection, is not reused)."""
        transport = self.transport
        return (
            not self.lost
            and not self.buffer
            and transport is not None
            and not transport.is_closing()
        )

    async def request(self, build: Callable[[int], bytes]) -> Response:
        """Send ``build(message_id)`` and return the response with that id (the caller bounds
        the wait); _Closed when the connection ends first, BerError for bytes that are not a
        response to it."""
        message_id = self.next_id
        self.next_id = message_id % MAX_MESSAGE_ID + 1
        transport = self.transport
        if self.lost or transport is None or transport.is_closing():
            raise _Closed("connection closed")
        transport.write(build(message_id))
        while True:
            size = frame_size(self.buffer)
            if size is not None and len(self.buffer) >= size:
                frame = bytes(self.buffer[:size])
                del self.buffer[:size]
                break
            if self.lost:
                raise _Closed("connection closed by the server")
            self.waiter = self.loop.create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None
        response = parse_response(frame)
        if response.message_id == 0 and response.name == NOTICE_OF_DISCONNECTION_OID:
            raise _Closed(f"notice of disconnection: {describe(response)}")
        if response.message_id != message_id:
            raise BerError(f"a response to message {response.message_id}, not {message_id}")
        return response

    async def start_tls(self, context: ssl.SSLContext, server_name: str, timeout: float) -> None:
        """The TLS handshake on this connection (after ``ldaps``'s connect or StartTLS)."""
        assert self.transport is not None
        transport = await self.loop.start_tls(
            self.transport,
            self,
            context,
            server_hostname=server_name,
            ssl_handshake_timeout=timeout,
        )
        self.transport = cast("asyncio.Transport", transport)

    def close(self) -> None:
        """End a healthy connection: an UnbindRequest, then close."""
        self.cancel_idle()
        transport = self.transport
        if transport is not None and not transport.is_closing() and not self.lost:
            transport.write(unbind_request(self.next_id))
            transport.close()

    def abort(self) -> None:
        """Drop a connection in an unknown state at once."""
        self.cancel_idle()
        self.lost = True
        if self.transport is not None:
            self.transport.abort()

    def cancel_idle(self) -> None:
        if self.idle is not None:
            self.idle.cancel()
            self.idle = None


class Pool:
    """One server's idle connections in one worker (most recently used first)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.idle: list[Connection] = []
        self.opened = 0

    def __repr__(self) -> str:
        return f"<ldap Pool idle={len(self.idle)} opened={self.opened}>"

    def take(self) -> Connection | None:
        while self.idle:
            conn = self.idle.pop()
            conn.cancel_idle()
            conn.on_lost = None
            if conn.usable:
                return conn
            conn.abort()
        return None

    def put(self, conn: Connection, keepalive: float | None) -> None:
        """Keep ``conn`` for ``keepalive`` seconds (None: no limit)."""
        if not conn.usable:
            conn.abort()
            return
        if len(self.idle) >= POOL_SIZE:
            self.idle.pop(0).close()
        conn.on_lost = self.forget
        if keepalive is not None:
            conn.idle = self.loop.call_later(keepalive, self.expire, conn)
        self.idle.append(conn)

    def forget(self, conn: Connection) -> None:
        conn.cancel_idle()
        if conn in self.idle:
            self.idle.remove(conn)

    def expire(self, conn: Connection) -> None:
        conn.idle = None
        self.forget(conn)
        conn.close()

    def clear(self) -> None:
        """Close every idle connection (the server dropped one: the others are suspect)."""
        idle, self.idle = self.idle, []
        for conn in idle:
            conn.on_lost = None
            conn.abort()


def _dns() -> DnsSettings:
    try:
        return dns_settings(os.environ)
    except ValueError:  # refused by ``fastkong start`` already; a plugin outside a node
        return DnsSettings()


def _no_verify_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class _Clients:
    """Per event loop (a worker's): the name cache, the pools and the TLS contexts."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.resolver = Resolver()
        self.pools: dict[Target, Pool] = {}
        self.contexts: dict[bool, ssl.SSLContext] = {}

    def pool(self, target: Target) -> Pool:
        loop = asyncio.get_running_loop()
        if loop is not self.loop:
            self.loop, self.pools = loop, {}
            self.resolver = Resolver(loop, _dns())
        found = self.pools.get(target)
        if found is None:
            found = self.pools[target] = Pool(loop)
        return found

    def context(self, verify: bool) -> ssl.SSLContext:
        found = self.contexts.get(verify)
        if found is None:
            found = verifying_context() if verify else _no_verify_context()
            self.contexts[verify] = found
        return found

    def close_idle(self, abort: bool = False) -> None:
        """Close every pooled connection (``abort``: at once, without the UnbindRequest and a
        TLS close that waits for the peer)."""
        for pool in self.pools.values():
            idle, pool.idle = pool.idle, []
            for conn in idle:
                conn.on_lost = None
                if abort:
                    conn.abort()
                else:
                    conn.close()


CLIENTS: Final = _Clients()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"{exc.reason}: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return exc.reason or str(exc)
    return str(exc) or type(exc).__name__


async def _open(target: Target, pool: Pool, timeout: float) -> Connection:
    """A new connection, TLS set up as ``target`` says."""
    where = f"{target.host}:{target.port}"
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            address = (await CLIENTS.resolver.resolve(target.host))[0]
            _, conn = await loop.create_connection(lambda: Connection(loop), address, target.port)
    except (OSError, TimeoutError) as exc:
        raise LdapUnavailable(f"failed to connect to {where}: {_reason(exc)}") from None
    pool.opened += 1
    try:
        if target.tls == "starttls":
            try:
                async with asyncio.timeout(timeout):
                    response = await conn.request(start_tls_request)
            except (_Closed, TimeoutError, BerError) as exc:
                raise LdapUnavailable(f"StartTLS with {where} failed: {_reason(exc)}") from None
            if response.op != EXTENDED_RESPONSE or response.code != 0:
                raise LdapUnavailable(f"StartTLS with {where} refused: {describe(response)}")
        if target.tls:
            try:
                async with asyncio.timeout(timeout):
                    await conn.start_tls(CLIENTS.context(target.verify), target.host, timeout)
            except (OSError, TimeoutError) as exc:
                raise LdapRefused(
                    f"failed to do SSL handshake with {where}: {_reason(exc)}"
                ) from None
    except BaseException:
        conn.abort()
        raise
    return conn


async def simple_bind(
    target: Target, dn: bytes, password: bytes, timeout: float, keepalive: float | None
) -> Response:
    """Bind as ``dn`` with ``password`` and return the BindResponse (its ``code`` 0: success).

    ``timeout`` (seconds) bounds the connect, the StartTLS exchange, the handshake and the
    bind's answer, each; the connection is then kept ``keepalive`` seconds (None: no limit).
    Raises :class:`LdapUnavailable` or :class:`LdapRefused`.
    """
    pool = CLIENTS.pool(target)
    where = f"{target.host}:{target.port}"
    conn = pool.take()
    reused = conn is not None
    while True:
        if conn is None:
            conn = await _open(target, pool, timeout)
        try:
            async with asyncio.timeout(timeout):
                response = await conn.request(lambda i: bind_request(i, dn, password))
        except _Closed as exc:
            conn.abort()
            if reused:
                # The server closed the kept connection while it was idle: the others may be
                # gone too. Once more on a new connection.
                pool.clear()
                conn, reused = None, False
                continue
            raise LdapUnavailable(f"no bind response from {where}: {exc}") from None
        except TimeoutError:
            conn.abort()
            raise LdapUnavailable(f"no bind response from {where}: timeout") from None
        except BerError as exc:
            conn.abort()
            raise LdapRefused(f"invalid LDAP message from {where}: {exc}") from None
        except BaseException:
            conn.abort()  # cancelled mid-exchange: the connection's state is unknown
            raise
        if response.op != BIND_RESPONSE:
            conn.abort()
            raise LdapRefused(f"{where} answered the bind with operation {response.op:#04x}")
        pool.put(conn, keepalive)
        return response
