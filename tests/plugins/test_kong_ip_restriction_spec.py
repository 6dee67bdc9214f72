"""Kong's ``spec/03-plugins/17-ip-restriction/02-access_spec.lua`` (DB-less run) against real
``fastkong start`` gateways, the echo upstream and loopback line-echo stream upstreams.

The client is always 127.0.0.1 here; as in Kong's spec, other client addresses come from a
header believed from every peer (``trusted_ips = 0.0.0.0/0, ::/0``, ``real_ip_recursive = on``;
fastkong's ``--trusted-ips``, ``--real-ip-header``, ``--real-ip-recursive``, docs/settings.md).
Kong's ``mock_upstream`` reports ``vars.remote_addr`` from the ``X-Real-IP`` Kong sends it
(``set_real_ip_from 127.0.0.1`` in spec/fixtures/template_inject/nginx_kong_test_custom_inject_
http.lua; ``proxy_set_header X-Real-IP $remote_addr`` in kong/templates/nginx_kong.lua): here the
echo's view of that header.

Ported, two gateways:

- 6-641 (``real_ip_header = X-Forwarded-For``): 353-364, 414-435, 437-475, 501-524, 536-546,
  557-567, 571-627 (config change: Kong PATCHes ``/plugins/{id}`` of its database; DB-less, the
  whole config is ``POST``ed to ``/config``), 629-640; #grpc 326-336 and 525-535 (refused before
  any upstream: the gateway's own error as gRPC status, README "Kong compatibility notes");
  #tcp 338-351 (a ``tls`` stream route) and 377-390 (a ``tcp`` route to a line echo, Kong's
  ``mock_upstream_stream_port`` server: ``ngx.say`` of the line read). Kong's log asserts map to
  fastkong's log, which has no level tag: the refusal's warning is there, no ``Traceback``.
- 974-1136 (IPv6 through ``X-Forwarded-For``): on the same gateway (same settings), its two
  hosts renamed ``xff6-1.test``/``xff6-2.test`` (Kong's start a fresh Kong with
  ``ip-restriction1/2.test``).
- 643-972 (IPv6 through the default ``X-Real-IP``): a second gateway, all cases.

Left out:

- 299-309 (route 1), 311-324 (route 12: 401 "Forbidden"), 392-402 (route 5: CIDR deny),
  403-413 (route 10: deny inside an allowed CIDR), 478-489 (route 3), 490-499 (route 4):
  covered by ``test_ip_restriction.py`` (``test_refused``, ``test_allowed``,
  ``test_custom_status_and_message``), the same configs and the peer's own address.
- 366-375 and 547-556 (#grpc allowed): the call must be proxied to grpcbin, and fastkong cannot
  proxy a plain gRPC call (README "Kong compatibility notes": Granian's ASGI carries no HTTP/2
  trailers).
"""

from __future__ import annotations

import asyncio
import copy
import json
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from tests.helpers import Echo, Gateway, LoopServer, echoed_headers, eventually, free_port

pytestmark = pytest.mark.integration

MESSAGE = b"echo, ping, pong. echo, ping, pong. echo, ping, pong.\n"
TRUST_ALL = ("--trusted-ips", "0.0.0.0/0, ::/0", "--real-ip-recursive", "on")


class LineEcho(LoopServer):
    """Kong's stream mock upstream: reads a line, says it back, closes."""

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            writer.write(line.rstrip(b"\n") + b"\n")
            await writer.drain()
        finally:
            writer.close()


def restrict(**config: Any) -> list[dict[str, Any]]:
    return [{"name": "ip-restriction", "config": config}]


def host_routes(plugins: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return [{"name": host, "hosts": [host], "plugins": p} for host, p in plugins.items()]


#: 6-641's HTTP routes (Kong's numbering) and 974-1136's two, renamed.
XFF_ROUTES = {
    "ip-restriction2.test": restrict(deny=["127.0.0.2"]),
    "ip-restriction6.test": restrict(allow=["127.0.0.4"]),
    "ip-restriction7.test": restrict(deny=["127.0.0.4"]),
    "ip-restriction8.test": restrict(allow=["0.0.0.0/0"]),
    "ip-restriction9.test": restrict(allow=["127.0.0.1"], deny=["127.0.0.1"]),
    "ip-restriction11.test": restrict(allow=["127.0.0.0/24"], deny=["127.0.0.0/24"]),
    "xff6-1.test": restrict(deny=["::4"]),
    "xff6-2.test": restrict(allow=["::4"]),
}

#: 643-972's routes.
REAL_IP_ROUTES = {
    "ip-restriction1.test": restrict(deny=["::1", "::2"]),
    "ip-restriction2.test": restrict(deny=["::2"]),
    "ip-restriction3.test": restrict(deny=["fe80::/8"]),
    "ip-restriction4.test": restrict(allow=["::2"]),
    "ip-restriction5.test": restrict(allow=["::1"]),
    "ip-restriction6.test": restrict(allow=["::/0"]),
    "ip-restriction7.test": restrict(allow=["::1"], deny=["::1"]),
    "ip-restriction8.test": restrict(allow=["::1/128"], deny=["::1"]),
    "ip-restriction9.test": restrict(allow=["::1/128"], deny=["::1/128"]),
}

GRPC_ROUTES = {
    "ip-restriction-grpc1.test": restrict(deny=["127.0.0.0/24"]),
    "ip-restriction-grpc3.test": restrict(allow=["127.0.0.4/32"]),
}


class Node:
    """The X-Forwarded-For gateway (HTTP, gRPC and stream routes) and its upstreams."""

    def __init__(self, tmp: Path, echo: Echo) -> None:
        self.echo = echo
        self.line_echo = LineEcho().start()
        self.tcp_port, self.tls_port = free_port(), free_port()
        self.nowhere = free_port()  # the gRPC service's: never reached, every call is refused
        self.gateway = Gateway(
            tmp,
            json.dumps(self.config()),
            1,
            "--stream-listen",
            f"127.0.0.1:{self.tcp_port}, 127.0.0.1:{self.tls_port} ssl",
            "--real-ip-header",
            "X-Forwarded-For",
            *TRUST_ALL,
        )
        self.gateway.port_flags = "http2"  # Kong's gRPC client speaks h2c (prior knowledge)
        self.gateway.stderr_path = tmp / "stderr.log"

    def config(self) -> dict[str, Any]:
        grpc_routes = [
            {**route, "protocols": ["grpc"], "paths": ["/hello.HelloService/"]}
            for route in host_routes(GRPC_ROUTES)
        ]
        stream = {"protocol": "tcp", "host": "127.0.0.1", "port": self.line_echo.port}
        return {
            "_format_version": "3.0",
            "services": [
                {"name": "echo", "url": self.echo.url, "routes": host_routes(XFF_ROUTES)},
                {"name": "grpc1", "url": f"grpc://127.0.0.1:{self.nowhere}", "routes": grpc_routes},
                {
                    "name": "tcp",
                    **stream,
                    "routes": [
                        {
                            "name": "tcp-allow",
                            "protocols": ["tcp"],
                            "destinations": [{"port": self.tcp_port}],
                            "plugins": restrict(allow=["127.0.0.0/24"]),
                        }
                    ],
                },
                {
                    "name": "tls",
                    **stream,
                    "protocol": "tls",
                    "routes": [
                        {
                            "name": "tls-deny",
                            "protocols": ["tls"],
                            "destinations": [{"port": self.tls_port}],
                            "plugins": restrict(deny=["127.0.0.0/24"]),
                        }
                    ],
                },
            ],
        }

    def log(self) -> str:
        assert self.gateway.stderr_path is not None
        return self.gateway.stderr_path.read_text(errors="replace")


def post_config(gateway: Gateway, config: dict[str, Any]) -> None:
    """DB-less Kong's way to change entities: the whole config to ``POST /config``."""
    r = httpx.post(f"http://127.0.0.1:{gateway.admin_port}/config", json=config, timeout=30)
    assert r.status_code == 201, r.text


def real_ip_config(echo: Echo) -> dict[str, Any]:
    return {
        "_format_version": "3.0",
        "services": [{"name": "echo", "url": echo.url, "routes": host_routes(REAL_IP_ROUTES)}],
    }


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, echo: Echo) -> Iterator[Node]:
    node = Node(tmp_path_factory.mktemp("ip-xff"), echo)
    try:
        node.gateway.start()
        yield node
    finally:
        node.gateway.stop()
        node.line_echo.stop()


@pytest.fixture(scope="module")
def real_ip(tmp_path_factory: pytest.TempPathFactory, echo: Echo) -> Iterator[Gateway]:
    config = json.dumps(real_ip_config(echo))
    gateway = Gateway(tmp_path_factory.mktemp("ip-real"), config, 1, *TRUST_ALL)
    try:
        yield gateway.start()
    finally:
        gateway.stop()


def check(
    gateway: Gateway, host: str, header: tuple[str, str] | None, client: str, allowed: bool
) -> None:
    """A request to ``host`` (with ``header`` naming the client) is proxied, the upstream told
    ``client`` in X-Real-IP, or refused with Kong's 403 naming ``client``."""
    headers = {"host": host, **dict([header] if header else [])}
    r = httpx.get(gateway.url("/request"), headers=headers)
    if allowed:
        assert r.status_code == 200, r.text
        assert echoed_headers(r.json())["x-real-ip"] == [client]
    else:
        assert r.status_code == 403, r.text
        message = f"IP address not allowed: {client}"
        assert r.json() == {"message": message, "request_id": r.headers["x-kong-request-id"]}
        assert "x-echo-server" not in r.headers


def xff(value: str) -> tuple[str, str]:
    return ("X-Forwarded-For", value)


def real(value: str) -> tuple[str, str]:
    return ("X-Real-IP", value)


LOCAL = "127.0.0.1"

#: (spec line, host, header, client address, allowed) on the X-Forwarded-For gateway.
XFF_CASES = [
    (353, "ip-restriction2.test", None, LOCAL, True),
    (414, "ip-restriction9.test", None, LOCAL, False),
    (425, "ip-restriction11.test", None, LOCAL, False),
    (438, "ip-restriction7.test", None, LOCAL, True),
    (450, "ip-restriction7.test", xff("127.0.0.3"), "127.0.0.3", True),
    (463, "ip-restriction7.test", xff("127.0.0.4"), "127.0.0.4", False),
    (502, "ip-restriction6.test", None, LOCAL, False),
    (513, "ip-restriction6.test", xff("127.0.0.3"), "127.0.0.3", False),
    (536, "ip-restriction6.test", xff("127.0.0.4"), "127.0.0.4", True),
    # Recursive, every address trusted: the leftmost one is the client (nginx's realip).
    (557, "ip-restriction6.test", xff("127.0.0.4, 127.0.0.3"), "127.0.0.4", True),
    (630, "ip-restriction8.test", None, LOCAL, True),
    (1032, "xff6-1.test", xff("::3"), "::3", True),
    (1045, "xff6-1.test", xff("::4"), "::4", False),
    (1057, "xff6-1.test", xff("::4, ::3"), "::4", False),
    (1069, "xff6-1.test", xff("::3, ::4"), "::3", True),
    (1085, "xff6-2.test", xff("::3"), "::3", False),
    (1097, "xff6-2.test", xff("::4"), "::4", True),
    (1110, "xff6-2.test", xff("::4, ::3"), "::4", True),
    (1123, "xff6-2.test", xff("::3, ::4"), "::3", False),
]

#: (spec line, host, header, client address, allowed) on the X-Real-IP gateway.
REAL_IP_CASES = [
    (790, "ip-restriction1.test", real("::1"), "::1", False),
    (802, "ip-restriction2.test", real("::1"), "::1", True),
    (815, "ip-restriction3.test", real("fe80::1"), "fe80::1", False),
    (827, "ip-restriction8.test", real("::1"), "::1", False),
    (839, "ip-restriction7.test", real("::1"), "::1", False),
    (851, "ip-restriction9.test", None, LOCAL, False),
    (865, "ip-restriction4.test", real("::1"), "::1", False),
    (877, "ip-restriction5.test", real("::1"), "::1", True),
    (958, "ip-restriction6.test", real("::1"), "::1", True),
]


@pytest.mark.parametrize(("line", "host", "header", "client", "allowed"), XFF_CASES)
def test_forwarded_for(
    node: Node, line: int, host: str, header: tuple[str, str] | None, client: str, allowed: bool
) -> None:
    check(node.gateway, host, header, client, allowed)


@pytest.mark.parametrize(("line", "host", "header", "client", "allowed"), REAL_IP_CASES)
def test_real_ip_v6(
    real_ip: Gateway,
    line: int,
    host: str,
    header: tuple[str, str] | None,
    client: str,
    allowed: bool,
) -> None:
    check(real_ip, host, header, client, allowed)


@pytest.mark.parametrize("host", list(GRPC_ROUTES))
def test_grpc_refused(node: Node, host: str) -> None:
    """326-336 (deny 127.0.0.0/24), 525-535 (allow 127.0.0.4/32, no header): Kong's
    ``kong.response.error(403)`` on a gRPC request is grpc-status 7 and, without a body, the
    status's name as grpc-message (kong/pdk/response.lua 87-120, 695-710, 791-793)."""
    options = [("grpc.default_authority", host)]
    with grpc.insecure_channel(f"127.0.0.1:{node.gateway.port}", options=options) as channel:
        say_hello = channel.unary_unary("/hello.HelloService/SayHello")
        with pytest.raises(grpc.RpcError) as info:
            say_hello(b"", timeout=10)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert info.value.details() == "PermissionDenied"


def read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_tcp_allowed(node: Node) -> None:
    with socket.create_connection(("127.0.0.1", node.tcp_port), timeout=10) as sock:
        sock.sendall(MESSAGE)
        assert read_all(sock) == MESSAGE
    assert "Traceback" not in node.log()


def test_tls_refused(node: Node) -> None:
    """338-351: the connection is closed unanswered. In Kong the TLS handshake completes
    first: its ``ssl`` stream listener only routes on the ClientHello (``ssl_preread``) and
    hands a ``tls`` route's connection to its terminating server (kong/runloop/handler.lua
    1114-1131, "return to second layer proxying"), whose ``preread`` runs the plugins after
    nginx's SSL phase (kong/templates/nginx_kong_stream.lua 89-131; kong/init.lua 1072-1081).

    Deliberately not Kong's: fastkong refuses on the ClientHello it peeked at, before spending
    a handshake on a client it will not serve (README, Kong compatibility notes); the client
    sees the connection closed during its handshake."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    answer = b""
    with socket.create_connection(("127.0.0.1", node.tls_port), timeout=10) as raw:
        try:
            with context.wrap_socket(raw) as sock:
                sock.sendall(MESSAGE)
                answer = read_all(sock)
        except (ConnectionError, ssl.SSLError):
            pass  # closed during the handshake
    assert answer == b""  # closed unanswered: nothing of the upstream's echo
    eventually(lambda: "IP address not allowed: 127.0.0.1" in node.log())
    assert "Traceback" not in node.log()


def change(config: dict[str, Any], host: str, deny: list[str]) -> dict[str, Any]:
    """``config`` with the ip-restriction of route ``host`` (first service) denying ``deny``."""
    changed = copy.deepcopy(config)
    for route in changed["services"][0]["routes"]:
        if route["name"] == host:
            route["plugins"][0]["config"] = {"deny": deny}
    return changed


def status_of(gateway: Gateway, host: str, header: tuple[str, str] | None = None) -> int:
    headers = {"host": host, **dict([header] if header else [])}
    return httpx.get(gateway.url("/request"), headers=headers).status_code


def test_config_change_without_restart(node: Node) -> None:
    """571-627: route 2's deny list changed twice, no restart."""
    host = "ip-restriction2.test"
    original = node.config()
    assert status_of(node.gateway, host) == 200
    try:
        post_config(node.gateway, change(original, host, ["127.0.0.1", "127.0.0.2"]))
        eventually(lambda: status_of(node.gateway, host) == 403)
        post_config(node.gateway, change(original, host, ["127.0.0.2", "127.0.0.3"]))
        eventually(lambda: status_of(node.gateway, host) == 200)
    finally:
        post_config(node.gateway, original)


def test_config_change_without_restart_v6(real_ip: Gateway, echo: Echo) -> None:
    """892-955: the same with X-Real-IP ::1."""
    host = "ip-restriction2.test"
    original = real_ip_config(echo)
    check(real_ip, host, real("::1"), "::1", True)
    try:
        post_config(real_ip, change(original, host, ["::1", "::2"]))
        eventually(lambda: status_of(real_ip, host, real("::1")) == 403)
        check(real_ip, host, real("::1"), "::1", False)
        post_config(real_ip, change(original, host, ["::2", "::3"]))
        eventually(lambda: status_of(real_ip, host, real("::1")) == 200)
        check(real_ip, host, real("::1"), "::1", True)
    finally:
        post_config(real_ip, original)
