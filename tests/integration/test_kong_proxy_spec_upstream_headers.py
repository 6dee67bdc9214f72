"""Port of Kong's ``spec/02-integration/05-proxy/03-upstream_headers_spec.lua`` (the whole file,
one DB-less run): the headers Kong sends upstream (``X-Real-IP``, ``X-Forwarded-*``, ``Host``)
under the default, trusted, non-trusted, recursive, proxy protocol and port-maps settings, and
hop-by-hop headers on the way back. A real ``fastkong start`` per group of settings (one at a
time: the ``gw`` fixture is parametrized per group), in front of a loopback peer that answers
as Kong's ``mock_upstream`` does for these paths.

Ported: lines 118-244 (hop-by-hop), 246-322 (charset), 324-549 (defaults), 551-694 (trusted),
696-849 (non-trusted), 851-911 (recursive trusted), 913-974 (recursive non-trusted), 976-1080
(trusted proxy protocol), 1082-1186 (non-trusted proxy protocol), 1188-1218 (port maps),
1221-1293 (host_header on retries).

Left out:
- "are removed from request" (l. 127): covered by test_proxy_kong_headers
  (``test_hop_by_hop_request_headers_as_kong_spec``).
- "should take a port from X-Forwarded-For header" (l. 899): ``pending`` in Kong.
- ``nginx_http_charset = off`` (l. 286) is an nginx directive fastkong has no setting for: the
  charset tests run with fastkong's defaults, which add no charset either.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.helpers import Gateway, LoopServer, echoed_headers, read_request

pytestmark = pytest.mark.integration

#: What mock_upstream's /hop-by-hop location answers (spec/fixtures/template_inject/
#: nginx_kong_test_custom_inject_http.lua): hop-by-hop headers, a chunked body.
HOP_BY_HOP = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: text/plain\r\n"
    b"Transfer-Encoding: chunked\r\n"
    b"Connection: keep-alive\r\n"
    b"Keep-Alive: timeout=5, max=1000\r\n"
    b"Proxy: Remove-Me\r\n"
    b"Proxy-Connection: close\r\n"
    b"Proxy-Authenticate: Basic\r\n"
    b"Proxy-Authorization: Basic YWxhZGRpbjpvcGVuc2VzYW1l\r\n"
    b"TE: trailers, deflate;q=0.5\r\n"
    b"Trailer: Expires\r\n"
    b"Upgrade: example/1, foo/2\r\n"
    b"\r\n"
)
HOP_BODY = b"hello\r\n\r\nExpires: Wed, 21 Oct 2015 07:28:00 GMT\r\n\r\n"


class MockUpstream(LoopServer):
    """Kong's mock_upstream for this spec: ``/hop-by-hop``, ``/nocharset``, ``/charset``;
    any other path a JSON echo of the request (``headers`` as ``[name, value]`` pairs)."""

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request = await read_request(reader)
                path = request.target.partition("?")[0]
                if path == "/hop-by-hop":
                    chunk = b"%x\r\n%s\r\n0\r\n\r\n" % (len(HOP_BODY), HOP_BODY)
                    writer.write(HOP_BY_HOP + chunk)
                elif path in ("/nocharset", "/charset"):
                    ctype = b"text/plain" + (b"; charset=utf-8" if path == "/charset" else b"")
                    writer.write(
                        b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: 13\r\n\r\n"
                        b"Hello World!\n" % ctype
                    )
                else:
                    body = json.dumps(
                        {
                            "url": request.target,
                            "headers": [[n.lower(), v] for n, v in request.headers],
                        }
                    ).encode()
                    writer.write(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
                    )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


class FlakyHost(LoopServer):
    """The spec's server on 62351 (l. 1255): closes the connection on every odd request, and
    answers the even ones with nginx's ``$host`` (the Host header without its port)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request = await read_request(reader)
                self.count += 1
                if self.count % 2:
                    break  # ngx.exit(ngx.HTTP_CLOSE)
                body = request.lowered.get("host", "").rpartition(":")[0].encode() + b"\n"
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def config(mock: int) -> str:
    """The spec's ``start_kong`` routes (l. 45-95), each on its own service at the mock."""
    routes = [
        ("inspect", "hosts: [headers-inspect.test]"),
        ("preserved", "hosts: [preserved.test]\n    preserve_host: true"),
        ("foo", "paths: [/foo]\n    strip_path: true"),
        ("status", "paths: [/status/200]\n    strip_path: false"),
        ("root", "paths: [/]\n    strip_path: true"),
        ("charset", "hosts: [headers-charset.test]"),
        (
            "proxy-authorization",
            "paths: [/proxy-authorization]\n    strip_path: true\n    plugins:\n"
            "    - name: request-transformer\n      config:\n"
            '        add: {headers: ["Proxy-Authorization:Basic ZGVtbzp0ZXN0"]}\n'
            '        replace: {headers: ["Proxy-Authorization:Basic ZGVtbzp0ZXN0"]}',
        ),
    ]
    text = '_format_version: "3.0"\nservices:\n'
    for name, route in routes:
        text += (
            f"- name: {name}\n  url: http://127.0.0.1:{mock}\n  routes:\n"
            f"  - name: {name}\n    protocols: [http]\n    {route}\n"
        )
    return text


#: group -> (fastkong flags, Kong environment settings, proxy listener flags)
GROUPS: dict[str, tuple[list[str], dict[str, str], str]] = {
    "default": ([], {}, ""),
    "trusted": (["--trusted-ips", "127.0.0.1"], {}, ""),
    "untrusted": (["--trusted-ips", "10.0.0.1"], {}, ""),
    "recursive-trusted": (
        [
            "--real-ip-header",
            "X-Forwarded-For",
            "--real-ip-recursive",
            "on",
            "--trusted-ips",
            "127.0.0.1,172.16.0.1,192.168.0.1",
        ],
        {},
        "",
    ),
    "recursive-untrusted": (
        [
            "--real-ip-header",
            "X-Forwarded-For",
            "--real-ip-recursive",
            "on",
            "--trusted-ips",
            "10.0.0.1,172.16.0.1,192.168.0.1",
        ],
        {},
        "",
    ),
    "pp-trusted": (
        [
            "--real-ip-header",
            "proxy_protocol",
            "--real-ip-recursive",
            "on",
            "--trusted-ips",
            "127.0.0.1,172.16.0.1,192.168.0.1",
        ],
        {},
        "proxy_protocol",
    ),
    "pp-untrusted": (
        [
            "--real-ip-header",
            "proxy_protocol",
            "--real-ip-recursive",
            "on",
            "--trusted-ips",
            "10.0.0.1,172.16.0.1,192.168.0.1",
        ],
        {},
        "proxy_protocol",
    ),
    # Kong's port_maps = "80:<proxy port>": the port filled in below.
    "port-maps": ([], {"KONG_PORT_MAPS": "80:{port}"}, ""),
}


@pytest.fixture(scope="module")
def mock() -> Iterator[MockUpstream]:
    server = MockUpstream().start()
    yield server
    server.stop()


def start(gw: Gateway, env: dict[str, str]) -> Gateway:
    """Start ``gw`` with the Kong settings ``env`` in its environment (for this start only)."""
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update({name: value.format(port=gw.port) for name, value in env.items()})
    try:
        return gw.start()
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(scope="module")
def gw(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, mock: MockUpstream
) -> Iterator[Gateway]:
    group: str = request.param
    flags, env, port_flags = GROUPS[group]
    gateway = Gateway(tmp_path_factory.mktemp(f"upstream-headers-{group}"), config(mock.port))
    gateway.extra = tuple(flags)
    gateway.port_flags = port_flags
    start(gateway, env)
    yield gateway
    assert gateway.stop() == 0


def in_group(*groups: str) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("gw", groups, indirect=True, scope="module")


def sent_up(gw: Gateway, headers: dict[str, str], path: str = "/") -> dict[str, list[str]]:
    """The spec's ``request_headers``: the headers the mock saw (must be a 200)."""
    r = httpx.get(gw.url(path), headers=headers)
    assert r.status_code == 200, r.text
    return echoed_headers(r.json())


def one(headers: dict[str, list[str]], name: str) -> str | None:
    values = headers.get(name)
    if values is None:
        return None
    assert len(values) == 1, (name, values)
    return values[0]


INSPECT = {"Host": "headers-inspect.test"}
#: Stands for the gateway's proxy port in the expectations below.
PORT = "<proxy port>"
#: An expectation that the header is absent.
ABSENT = None


def check(gw: Gateway, seen: dict[str, list[str]], expected: dict[str, Any]) -> None:
    for name, value in expected.items():
        want = str(gw.port) if value == PORT else value
        assert one(seen, name) == want, name


# -- hop-by-hop headers (l. 118-244) ------------------------------------------------------------


@in_group("default")
def test_hop_by_hop_are_removed_from_response(gw: Gateway) -> None:
    # l. 163
    r = httpx.get(gw.url("/hop-by-hop"), headers=INSPECT)
    assert r.status_code == 200
    for name in ("keep-alive", "trailer", "upgrade"):
        assert name not in r.headers, name
    assert r.headers["transfer-encoding"] == "chunked"
    assert r.content == HOP_BODY


@in_group("default")
def test_hop_by_hop_keeps_trailer_when_requested(gw: Gateway) -> None:
    # l. 192: Kong sends the client's TE: trailers up and passes the upstream's Trailer back.
    # fastkong cannot relay trailers (Granian's ASGI carries none, README "Kong compatibility
    # notes"), so it never announces them: Trailer is dropped whatever the client asked.
    r = httpx.get(gw.url("/hop-by-hop"), headers={**INSPECT, "TE": "trailers"})
    assert r.status_code == 200
    assert "trailer" not in r.headers


@in_group("default")
def test_hop_by_hop_keeps_upgrade_when_upgrading(gw: Gateway) -> None:
    # l. 209: Kong sends Connection "keep-alive, Upgrade" and Upgrade "websocket" up (handler.lua
    # access: upstream_connection/upstream_upgrade for a websocket Upgrade); the mock answers
    # a plain 200 with what it saw.
    # Kong's spec sends no Sec-WebSocket-Key; Granian refuses such an Upgrade (400) before
    # the gateway sees it (README "Kong compatibility notes"), so the handshake here is whole.
    head = (
        b"GET /get HTTP/1.1\r\nHost: headers-inspect.test\r\n"
        b"Connection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as sock:
        sock.sendall(head)
        with sock.makefile("rb") as reader:
            status = reader.readline()
            length = 0
            while (line := reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            body = reader.read(length)
    assert status.startswith(b"HTTP/1.1 200"), status
    seen = echoed_headers(json.loads(body))
    assert one(seen, "connection") == "keep-alive, Upgrade"
    assert one(seen, "upgrade") == "websocket"


@in_group("default")
def test_proxy_authorization_set_by_a_plugin_is_kept(gw: Gateway) -> None:
    # l. 225 and l. 237
    for sent in ("Basic YWxhZGRpbjpvcGVuc2VzYW1l", None, "Basic ZGVtbzp0ZXN0"):
        headers = {"Proxy-Authorization": sent} if sent else {}
        seen = sent_up(gw, headers, "/proxy-authorization")
        assert one(seen, "proxy-authorization") == "Basic ZGVtbzp0ZXN0", sent


# -- (response from upstream) Content-Type (l. 246-322) -----------------------------------------


@in_group("default")
@pytest.mark.parametrize(
    ("path", "ctype"), [("/nocharset", "text/plain"), ("/charset", "text/plain; charset=utf-8")]
)
def test_content_type_charset_is_left_as_the_upstream_sent_it(
    gw: Gateway, path: str, ctype: str
) -> None:
    # l. 296 and l. 309
    r = httpx.get(gw.url(path), headers={"Host": "headers-charset.test"})
    assert r.status_code == 200
    assert r.headers["content-type"] == ctype


# -- X-Real-IP, X-Forwarded-* under default, trusted and non-trusted settings --------------------

#: X-Forwarded-Prefix cases (path, headers sent, expected), defaults and non-trusted
#: (l. 447-473, l. 822-848).
PREFIX_REPLACED = [
    ("/foo/status/200", {}, "/foo"),
    ("/foo", {"X-Forwarded-Prefix": "/replaced"}, "/foo"),
    ("/status/200", {}, ABSENT),
    ("/", {}, ABSENT),
]

#: (case id, headers sent with Host headers-inspect.test, expected) where an untrusted peer's
#: X-* headers are replaced (l. 333-446 defaults, l. 706-820 non-trusted).
REPLACED = [
    ("x-real-ip-added", {}, {"x-real-ip": "127.0.0.1"}),
    ("x-real-ip-replaced", {"X-Real-IP": "10.0.0.1"}, {"x-real-ip": "127.0.0.1"}),
    ("xff-added", {}, {"x-forwarded-for": "127.0.0.1"}),
    ("xff-appended", {"X-Forwarded-For": "10.0.0.1"}, {"x-forwarded-for": "10.0.0.1, 127.0.0.1"}),
    ("proto-added", {}, {"x-forwarded-proto": "http"}),
    ("proto-replaced", {"X-Forwarded-Proto": "https"}, {"x-forwarded-proto": "http"}),
    ("host-added", {}, {"x-forwarded-host": "headers-inspect.test"}),
    (
        "host-replaced",
        {"X-Forwarded-Host": "example.test"},
        {"x-forwarded-host": "headers-inspect.test"},
    ),
    ("port-added", {}, {"x-forwarded-port": PORT}),
    ("port-replaced", {"X-Forwarded-Port": "80"}, {"x-forwarded-port": PORT}),
    ("path-added", {}, {"x-forwarded-path": "/"}),
    ("path-replaced", {"X-Forwarded-Path": "/replaced"}, {"x-forwarded-path": "/"}),
]

#: The same with a trusted peer: its headers are forwarded (l. 561-675).
FORWARDED = [
    ("x-real-ip-added", {}, {"x-real-ip": "127.0.0.1"}),
    ("x-real-ip-forwarded", {"X-Real-IP": "10.0.0.1"}, {"x-real-ip": "10.0.0.1"}),
    ("xff-added", {}, {"x-forwarded-for": "127.0.0.1"}),
    ("xff-appended", {"X-Forwarded-For": "10.0.0.1"}, {"x-forwarded-for": "10.0.0.1, 127.0.0.1"}),
    ("proto-added", {}, {"x-forwarded-proto": "http"}),
    ("proto-forwarded", {"X-Forwarded-Proto": "https"}, {"x-forwarded-proto": "https"}),
    ("host-added", {}, {"x-forwarded-host": "headers-inspect.test"}),
    ("host-forwarded", {"X-Forwarded-Host": "example.test"}, {"x-forwarded-host": "example.test"}),
    ("port-added", {}, {"x-forwarded-port": PORT}),
    ("port-forwarded", {"X-Forwarded-Port": "80"}, {"x-forwarded-port": "80"}),
    ("path-added", {}, {"x-forwarded-path": "/"}),
    (
        "path-forwarded",
        {"X-Forwarded-Path": "/original-path"},
        {"x-forwarded-path": "/original-path"},
    ),
]


@in_group("default", "untrusted")
@pytest.mark.parametrize(("case", "sent", "expected"), REPLACED, ids=[c[0] for c in REPLACED])
def test_untrusted_x_headers_are_set_by_the_gateway(
    gw: Gateway, case: str, sent: dict[str, str], expected: dict[str, Any]
) -> None:
    check(gw, sent_up(gw, {**INSPECT, **sent}), expected)


@in_group("trusted")
@pytest.mark.parametrize(("case", "sent", "expected"), FORWARDED, ids=[c[0] for c in FORWARDED])
def test_trusted_x_headers_are_forwarded(
    gw: Gateway, case: str, sent: dict[str, str], expected: dict[str, Any]
) -> None:
    check(gw, sent_up(gw, {**INSPECT, **sent}), expected)


@in_group("default", "untrusted")
@pytest.mark.parametrize(("path", "sent", "expected"), PREFIX_REPLACED)
def test_x_forwarded_prefix_is_the_stripped_path(
    gw: Gateway, path: str, sent: dict[str, str], expected: str | None
) -> None:
    assert one(sent_up(gw, sent, path), "x-forwarded-prefix") == expected


@in_group("trusted")
@pytest.mark.parametrize("path", ["/foo/status/200", "/status/200"])
def test_trusted_x_forwarded_prefix_is_preserved(gw: Gateway, path: str) -> None:
    # l. 678 and l. 686
    seen = sent_up(gw, {"x-forwarded-prefix": "/preserved"}, path)
    assert one(seen, "x-forwarded-prefix") == "/preserved"


SENT_ALL = {
    "X-Real-IP": "10.0.0.1",
    "X-Forwarded-For": "10.0.0.1",
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Host": "example.test",
    "X-Forwarded-Port": "80",
}


@in_group("default")
@pytest.mark.parametrize("sent", [{}, SENT_ALL], ids=["not-present", "present"])
def test_with_the_downstream_host_preserved(gw: Gateway, sent: dict[str, str]) -> None:
    # l. 476 and l. 490
    seen = sent_up(gw, {"Host": "preserved.test", **sent})
    check(
        gw,
        seen,
        {
            "host": "preserved.test",
            "x-real-ip": "127.0.0.1",
            "x-forwarded-for": "10.0.0.1, 127.0.0.1" if sent else "127.0.0.1",
            "x-forwarded-proto": "http",
            "x-forwarded-host": "preserved.test",
            "x-forwarded-path": "/",
            "x-forwarded-port": PORT,
        },
    )


@in_group("default")
@pytest.mark.parametrize("sent", [{}, SENT_ALL], ids=["not-present", "present"])
def test_with_the_downstream_host_discarded(
    gw: Gateway, mock: MockUpstream, sent: dict[str, str]
) -> None:
    # l. 511 and l. 527
    seen = sent_up(gw, {**INSPECT, **sent})
    check(
        gw,
        seen,
        {
            "host": f"127.0.0.1:{mock.port}",
            "x-real-ip": "127.0.0.1",
            "x-forwarded-for": "10.0.0.1, 127.0.0.1" if sent else "127.0.0.1",
            "x-forwarded-proto": "http",
            "x-forwarded-host": "headers-inspect.test",
            "x-forwarded-port": PORT,
            "x-forwarded-path": "/",
        },
    )


# -- recursive (real_ip_header = X-Forwarded-For, real_ip_recursive = on) -----------------------

CHAIN = "127.0.0.1, 10.0.0.1, 192.168.0.1, 127.0.0.1, 172.16.0.1"
CHAIN_UNTRUSTED = "10.0.0.1, 127.0.0.2, 10.0.0.1, 192.168.0.1, 172.16.0.1"
PORTS_CHAIN = "127.0.0.1:14, 10.0.0.1:15, 192.168.0.1:16, 127.0.0.1:17, 172.16.0.1:18"

#: (group, case id, headers sent, expected)
RECURSIVE: list[tuple[str, str, Any, dict[str, Any]]] = [
    # recursive trusted (l. 863-897)
    (
        "recursive-trusted",
        "added",
        {},
        {"x-real-ip": "127.0.0.1", "x-forwarded-for": "127.0.0.1"},
    ),
    (
        "recursive-trusted",
        "changed",
        {"X-Forwarded-For": CHAIN, "X-Real-IP": "10.0.0.2"},
        {"x-real-ip": "10.0.0.1", "x-forwarded-for": CHAIN + ", 127.0.0.1"},
    ),
    (
        "recursive-trusted",
        "port-forwarded",
        {"X-Forwarded-For": PORTS_CHAIN, "X-Real-IP": "10.0.0.2", "X-Forwarded-Port": "14"},
        {
            "x-real-ip": "10.0.0.1",
            "x-forwarded-for": PORTS_CHAIN + ", 127.0.0.1",
            "x-forwarded-port": "14",
        },
    ),
    # recursive non-trusted (l. 925-971)
    (
        "recursive-untrusted",
        "added",
        {},
        {"x-real-ip": "127.0.0.1", "x-forwarded-for": "127.0.0.1"},
    ),
    (
        "recursive-untrusted",
        "changed",
        {"X-Forwarded-For": CHAIN_UNTRUSTED, "X-Real-IP": "10.0.0.2"},
        {"x-real-ip": "127.0.0.1", "x-forwarded-for": CHAIN_UNTRUSTED + ", 127.0.0.1"},
    ),
    (
        "recursive-untrusted",
        "port-replaced",
        {"X-Forwarded-For": PORTS_CHAIN, "X-Real-IP": "10.0.0.2", "X-Forwarded-Port": "14"},
        {
            "x-real-ip": "127.0.0.1",
            "x-forwarded-for": PORTS_CHAIN + ", 127.0.0.1",
            "x-forwarded-port": PORT,
        },
    ),
    (
        "recursive-untrusted",
        "port-not-from-xff",
        {"X-Forwarded-For": PORTS_CHAIN, "X-Real-IP": "10.0.0.2"},
        {
            "x-real-ip": "127.0.0.1",
            "x-forwarded-for": PORTS_CHAIN + ", 127.0.0.1",
            "x-forwarded-port": PORT,
        },
    ),
]


def cases_of(table: list[tuple[str, str, Any, dict[str, Any]]], group: str) -> list[Any]:
    """The cases of ``group`` in ``table`` as pytest params (case id, what is sent, expected)."""
    return [pytest.param(c[1], c[2], c[3], id=c[1]) for c in table if c[0] == group]


@in_group("recursive-trusted")
@pytest.mark.parametrize(("case", "sent", "expected"), cases_of(RECURSIVE, "recursive-trusted"))
def test_recursive_trusted_real_ip(
    gw: Gateway, case: str, sent: dict[str, str], expected: dict[str, Any]
) -> None:
    check(gw, sent_up(gw, {**INSPECT, **sent}), expected)


@in_group("recursive-untrusted")
@pytest.mark.parametrize(("case", "sent", "expected"), cases_of(RECURSIVE, "recursive-untrusted"))
def test_recursive_untrusted_real_ip(
    gw: Gateway, case: str, sent: dict[str, str], expected: dict[str, Any]
) -> None:
    check(gw, sent_up(gw, {**INSPECT, **sent}), expected)


# -- proxy protocol (real_ip_header = proxy_protocol) -------------------------------------------


def through_proxy_protocol(gw: Gateway, lines: list[str]) -> dict[str, list[str]]:
    """The spec's raw request after ``PROXY TCP4 192.168.0.1 <proxy ip> 56324 <proxy port>``."""
    head = f"PROXY TCP4 192.168.0.1 127.0.0.1 56324 {gw.port}\r\n"
    head += "GET / HTTP/1.1\r\nHost: headers-inspect.test\r\nConnection: close\r\n"
    response = gw.raw((head + "".join(f"{x}\r\n" for x in lines) + "\r\n").encode())
    assert response.startswith(b"HTTP/1.1 200"), response[:300]
    return echoed_headers(json.loads(response.partition(b"\r\n\r\n")[2]))


PROXY_PROTOCOL: list[tuple[str, str, Any, dict[str, Any]]] = [
    # trusted (l. 992-1079)
    (
        "pp-trusted",
        "added",
        [],
        {"x-real-ip": "192.168.0.1", "x-forwarded-for": "192.168.0.1", "x-forwarded-port": PORT},
    ),
    (
        "pp-trusted",
        "changed",
        ["X-Real-IP: 10.0.0.2", f"X-Forwarded-For: {CHAIN_UNTRUSTED}"],
        {"x-real-ip": "192.168.0.1", "x-forwarded-for": CHAIN_UNTRUSTED + ", 127.0.0.1"},
    ),
    (
        "pp-trusted",
        "port-forwarded",
        ["X-Real-IP: 10.0.0.2", f"X-Forwarded-For: {PORTS_CHAIN}", "X-Forwarded-Port: 14"],
        {
            "x-real-ip": "192.168.0.1",
            "x-forwarded-for": PORTS_CHAIN + ", 127.0.0.1",
            "x-forwarded-port": "14",
        },
    ),
    # non-trusted (l. 1098-1185)
    (
        "pp-untrusted",
        "added",
        [],
        {"x-real-ip": "127.0.0.1", "x-forwarded-for": "127.0.0.1", "x-forwarded-port": PORT},
    ),
    (
        "pp-untrusted",
        "changed",
        ["X-Real-IP: 10.0.0.2", f"X-Forwarded-For: {CHAIN_UNTRUSTED}"],
        {"x-real-ip": "127.0.0.1", "x-forwarded-for": CHAIN_UNTRUSTED + ", 127.0.0.1"},
    ),
    (
        "pp-untrusted",
        "port-replaced",
        ["X-Real-IP: 10.0.0.2", f"X-Forwarded-For: {PORTS_CHAIN}", "X-Forwarded-Port: 14"],
        {
            "x-real-ip": "127.0.0.1",
            "x-forwarded-for": PORTS_CHAIN + ", 127.0.0.1",
            "x-forwarded-port": PORT,
        },
    ),
]


@in_group("pp-trusted")
@pytest.mark.parametrize(("case", "lines", "expected"), cases_of(PROXY_PROTOCOL, "pp-trusted"))
def test_trusted_proxy_protocol_real_ip(
    gw: Gateway, case: str, lines: list[str], expected: dict[str, Any]
) -> None:
    check(gw, through_proxy_protocol(gw, lines), expected)


@in_group("pp-untrusted")
@pytest.mark.parametrize(("case", "lines", "expected"), cases_of(PROXY_PROTOCOL, "pp-untrusted"))
def test_untrusted_proxy_protocol_real_ip(
    gw: Gateway, case: str, lines: list[str], expected: dict[str, Any]
) -> None:
    check(gw, through_proxy_protocol(gw, lines), expected)


# -- port maps (l. 1188-1218) -------------------------------------------------------------------


@in_group("port-maps")
@pytest.mark.parametrize("sent", [{}, {"X-Forwarded-Port": "81"}], ids=["added", "replaced"])
def test_port_maps_give_the_forwarded_port(gw: Gateway, sent: dict[str, str]) -> None:
    # Kong's port_maps "80:<proxy port>": handler.lua takes ctx.host_port from
    # kong.configuration.host_ports (l. 933-934, 1103) for X-Forwarded-Port (l. 1240).
    seen = sent_up(gw, {**INSPECT, **sent})
    assert one(seen, "x-forwarded-port") == "80"


# -- host_header should be set correctly (l. 1221-1293) -----------------------------------------


def test_host_header_is_kept_when_retries_to_upstream_happen(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    peer = FlakyHost().start()
    text = f"""
_format_version: "3.0"
upstreams:
- name: foo
  host_header: foo.com
  targets:
  - target: 127.0.0.1:{peer.port}
    weight: 50
services:
- name: retry_service
  host: foo
  retries: 5
  routes:
  - paths: [/hello]
    strip_path: false
"""
    gw = Gateway(tmp_path_factory.mktemp("host-header-retries"), text)
    try:
        gw.start()
        r = httpx.get(gw.url("/hello"))
        assert r.status_code == 200
        assert r.text == "foo.com\n"
    finally:
        assert gw.stop() == 0
        peer.stop()
