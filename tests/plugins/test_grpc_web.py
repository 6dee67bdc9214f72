"""grpc-web: gRPC-Web clients through the gateway to a real gRPC server (grpc.aio, loopback).

Most tests run the gateway in this process as an ASGI app, driven by :func:`call`, which
records each body part with the time it went out (httpx's ASGI transport would hand the body
over only at the end); its upstream connections are real HTTP/2. The last tests run a real
gateway process (Granian) in front of the same server.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import struct
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import httpx
import pytest

from fastkong.config import load_config
from fastkong.proxy.app import Gateway
from fastkong.proxy.h2upstream import H2Pool
from fastkong.proxy.upstream import UpstreamError
from fastkong.proxy.upstream_tls import TlsProfile
from fastkong.runtime import compile_runtime
from tests.grpc_server import GrpcServer
from tests.helpers import Gateway as GatewayProcess
from tests.helpers import (
    HttpRequest,
    LoopServer,
    eventually,
    free_port,
    plugin_config,
    plugin_config_errors,
    read_request,
)
from tests.pki import Pki

GRPC_WEB = "application/grpc-web+proto"
TEXT = "application/grpc-web-text"


# -- a gRPC-Web client's side ------------------------------------------------------------------


def frame(payload: bytes, flags: int = 0) -> bytes:
    return struct.pack(">BI", flags, len(payload)) + payload


def unframe(body: bytes) -> list[tuple[int, bytes]]:
    """The frames of a gRPC-Web answer body: ``(flags, payload)``; the body must end with one."""
    frames = []
    while body:
        flags, size = struct.unpack(">BI", body[:5])
        assert len(body) >= 5 + size, "a frame cut short"
        frames.append((flags, body[5 : 5 + size]))
        body = body[5 + size :]
    return frames


def unbase64(text: bytes) -> bytes:
    """A grpc-web-text answer: base64 segments, each padded on its own, one after another."""
    out, rest = b"", text
    while rest:
        cut = len(rest)
        pad = rest.find(b"=")
        if pad >= 0:
            cut = pad
            while cut < len(rest) and rest[cut : cut + 1] == b"=":
                cut += 1
        out += base64.b64decode(rest[:cut])
        rest = rest[cut:]
    return out


class Answer:
    def __init__(self) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self.parts: list[tuple[float, bytes]] = []
        self.ended = False

    @property
    def body(self) -> bytes:
        return b"".join(p for _, p in self.parts)


async def call(
    gw: Gateway,
    path: str,
    body: bytes = b"",
    content_type: str | None = GRPC_WEB,
    *,
    method: str = "POST",
    pieces: int = 1,
    http_version: str = "1.1",
    on_part: Callable[[Answer], Any] | None = None,
) -> Answer:
    """One request through the gateway app; ``pieces``: the body arrives in that many parts."""
    headers = [(b"host", b"gw.test"), (b"content-length", str(len(body)).encode())]
    if content_type is not None:
        headers.append((b"content-type", content_type.encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": http_version,
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }
    size = max(1, -(-len(body) // pieces))
    parts = [body[i : i + size] for i in range(0, len(body), size)] or [b""]
    answer = Answer()

    async def receive() -> dict[str, Any]:
        if parts:
            part = parts.pop(0)
            return {"type": "http.request", "body": part, "more_body": bool(parts)}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer.status = message["status"]
            for k, v in message["headers"]:
                answer.headers[k.decode().lower()] = v.decode()
        else:
            answer.parts.append((time.monotonic(), message.get("body", b"")))
            answer.ended = not message.get("more_body", False)
            if on_part is not None:
                await on_part(answer)

    await asyncio.wait_for(gw(scope, receive, send), 30)
    return answer


def config(
    port: int, protocol: str = "grpc", plugin: str = "{name: grpc-web}", **service: Any
) -> str:
    extra = "".join(f"  {k}: {v}\n" for k, v in service.items())
    return f"""
_format_version: "3.0"
services:
- name: grpc
  url: {protocol}://127.0.0.1:{port}
{extra}  routes:
  - name: web
    protocols: [http, https]
    paths: [/]
    plugins: [{plugin}]
  - name: stripped
    protocols: [http]
    paths: [/web]
    plugins: [{{name: grpc-web, config: {{pass_stripped_path: true}}}}]
  - name: unstripped
    protocols: [http]
    paths: [/raw]
    plugins: [{{name: grpc-web}}]
"""


def make_gateway(text: str) -> Gateway:
    return Gateway(compile_runtime(load_config(text.encode()).config, "1"))


@pytest.fixture(scope="module")
def server() -> Iterator[GrpcServer]:
    s = GrpcServer().start()
    yield s
    s.stop()


def run(text: str, test: Callable[[Gateway], Any]) -> None:
    async def main() -> None:
        gw = make_gateway(text)
        await gw.startup()
        try:
            await test(gw)
        finally:
            await gw.shutdown()
            await asyncio.sleep(0.05)  # the closed connections' callbacks run

    asyncio.run(main())


# -- schema ------------------------------------------------------------------------------------


def test_schema_defaults_as_kong() -> None:
    conf = plugin_config("grpc-web", {})
    assert conf == {"allow_origin_header": "*", "pass_stripped_path": None, "proto": None}


def test_unknown_field_is_refused() -> None:
    errors = plugin_config_errors("grpc-web", {"allow_origin": "x"})
    assert errors and errors[0].startswith("plugins[0].config.allow_origin")


# -- translation -------------------------------------------------------------------------------


def test_unary_call_binary(server: GrpcServer) -> None:
    async def test(gw: Gateway) -> None:
        answer = await call(gw, "/test.Echo/Unary", frame(b"hello"))
        assert answer.status == 200
        assert answer.headers["content-type"] == GRPC_WEB
        assert answer.headers["access-control-allow-origin"] == "*"
        assert int(answer.headers["x-kong-upstream-latency"]) >= 0
        assert "x-kong-proxy-latency" in answer.headers
        assert answer.headers["via"].endswith("fastkong/0.1.0")
        assert "content-length" not in answer.headers
        assert unframe(answer.body) == [
            (0, b"echo:hello"),
            (0x80, b"grpc-status:0\r\ngrpc-message:\r\n"),
        ]
        method, metadata = server.calls[-1]
        assert method == "/test.Echo/Unary"
        assert metadata["x-forwarded-for"] == "127.0.0.1"
        assert metadata["x-forwarded-host"] == "gw.test"
        assert len(metadata["x-kong-request-id"]) == 32

    run(config(server.port), test)


def test_text_mode_base64_both_ways_request_in_pieces(server: GrpcServer) -> None:
    async def test(gw: Gateway) -> None:
        body = base64.b64encode(frame(b"text mode payload"))
        # the body arrives in 7 parts cut across base64 quanta
        answer = await call(gw, "/test.Echo/Unary", body, TEXT, pieces=7)
        assert answer.status == 200
        assert answer.headers["content-type"] == TEXT
        raw = answer.body
        assert set(raw) <= set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")
        assert unframe(unbase64(raw)) == [
            (0, b"echo:text mode payload"),
            (0x80, b"grpc-status:0\r\ngrpc-message:\r\n"),
        ]
        # each chunk is encoded on its own (as Kong's body_filter does): the trailer frame is
        # its own padded segment at the end
        trailer = base64.b64encode(frame(b"grpc-status:0\r\ngrpc-message:\r\n", 0x80))
        assert raw.endswith(trailer)

    run(config(server.port), test)


def test_large_request_body_sent_as_windows_allow(server: GrpcServer) -> None:
    async def test(gw: Gateway) -> None:
        payload = bytes(range(256)) * 8192  # 2 MiB: many times a stream window
        answer = await call(gw, "/test.Echo/Unary", frame(payload), pieces=5)
        assert answer.status == 200
        assert unframe(answer.body)[0] == (0, b"echo:" + payload)

    run(config(server.port), test)


def test_text_request_of_several_padded_segments(server: GrpcServer) -> None:
    async def test(gw: Gateway) -> None:
        payload = frame(b"ab")  # 7 bytes: padded
        body = base64.b64encode(payload[:4]) + base64.b64encode(payload[4:])
        assert body.count(b"=") >= 2
        answer = await call(gw, "/test.Echo/Unary", body, "application/grpc-web-text+proto")
        assert unframe(unbase64(answer.body))[0] == (0, b"echo:ab")

    run(config(server.port), test)


def test_bad_base64_is_a_400(server: GrpcServer) -> None:
    async def test(gw: Gateway) -> None:
        answer = await call(gw, "/test.Echo/Unary", b"not*base64!", TEXT)
        assert answer.status == 400
        assert answer.body == b"invalid base64 in the grpc-web-text body"

    run(config(server.port), test)


def test_error_status_in_the_trailer_frame(server: GrpcServer) -> None:
    async def test(gw: Gateway) -> None:
        # trailers-only: the status comes in the response head
        answer = await call(gw, "/test.Echo/Fail", frame(b""))
        assert answer.status == 200
        assert unframe(answer.body) == [
            (0x80, b"grpc-status:3\r\ngrpc-message:bad request: no name\r\n")
        ]
        # one message, then the status in trailers
        answer = await call(gw, "/test.Echo/Late", frame(b""))
        assert unframe(answer.body) == [
            (0, b"first"),
            (0x80, b"grpc-status:5\r\ngrpc-message:gone after one\r\n"),
        ]

    run(config(server.port), test)


def test_unknown_method_is_grpc_unimplemented(server: GrpcServer) -> None:
    async def test(gw: Gateway) -> None:
        answer = await call(gw, "/test.Echo/Nope", frame(b""))
        assert unframe(answer.body)[-1][1].startswith(b"grpc-status:12\r\n")

    run(config(server.port), test)


def test_upstream_path_is_the_client_path_unless_pass_stripped_path(server: GrpcServer) -> None:
    async def test(gw: Gateway) -> None:
        answer = await call(gw, "/web/test.Echo/Unary", frame(b"s"))
        assert unframe(answer.body)[0] == (0, b"echo:s")
        assert server.calls[-1][0] == "/test.Echo/Unary"
        # without it the route's prefix goes up too (grpc_pass sends the request's URI): the
        # server knows no such method
        calls = len(server.calls)
        answer = await call(gw, "/raw/test.Echo/Unary", frame(b"s"))
        assert unframe(answer.body)[-1][1].startswith(b"grpc-status:12\r\n")
        assert len(server.calls) == calls

    run(config(server.port), test)


def test_cors_preflight(server: GrpcServer) -> None:
    text = config(
        server.port, plugin="{name: grpc-web, config: {allow_origin_header: https://a.test}}"
    )

    async def test(gw: Gateway) -> None:
        calls = len(server.calls)
        answer = await call(gw, "/test.Echo/Unary", b"", None, method="OPTIONS")
        assert answer.status == 200
        assert answer.body == b"OK"
        assert answer.headers["content-type"] == "application/grpc-web-text+proto"
        assert answer.headers["access-control-allow-origin"] == "https://a.test"
        assert answer.headers["access-control-allow-methods"] == "POST"
        assert (
            answer.headers["access-control-allow-headers"] == "content-type,x-grpc-web,x-user-agent"
        )
        assert len(server.calls) == calls  # answered by the gateway
        answer = await call(gw, "/test.Echo/Unary", frame(b"o"))
        assert answer.headers["access-control-allow-origin"] == "https://a.test"

    run(text, test)


def test_unknown_content_type_is_kongs_400(server: GrpcServer) -> None:
    async def test(gw: Gateway) -> None:
        for ctype in ("application/json", "application/grpc-web+json", None):
            answer = await call(gw, "/test.Echo/Unary", frame(b"x"), ctype)
            assert answer.status == 400
            assert answer.body == b"transcoding requests require a .proto file defining the service"
            assert answer.headers["access-control-allow-origin"] == "*"
        # an HTTP/2 gRPC-ish request gets it as Kong's gRPC exit: in grpc-status/grpc-message
        answer = await call(gw, "/x", b"", "application/grpc-web+json", http_version="2")
        assert answer.status == 400
        assert answer.headers["grpc-status"] == "3"
        assert answer.headers["grpc-message"] == (
            "transcoding requests require a .proto file defining the service"
        )
        assert answer.body == b""

    run(config(server.port), test)


def test_server_streaming_is_relayed_as_it_comes(server: GrpcServer) -> None:
    async def test(gw: Gateway) -> None:
        started = time.monotonic()
        answer = await call(gw, "/test.Echo/Stream", frame(b"4,300,10"))
        frames = unframe(answer.body)
        assert [f[1][:3] for f in frames[:4]] == [b"m0:", b"m1:", b"m2:", b"m3:"]
        assert frames[-1] == (0x80, b"grpc-status:0\r\ngrpc-message:\r\n")
        # the first message left the gateway long before the last (~0.9 s apart)
        first = next(t for t, p in answer.parts if p)
        last = answer.parts[-1][0]
        assert first - started < 0.6
        assert last - first > 0.7

    run(config(server.port), test)


def test_ten_megabytes_streamed_with_bounded_buffering(server: GrpcServer) -> None:
    """A client that stops reading stops the server: the gateway holds a window, not 10 MB."""

    async def test(gw: Gateway) -> None:
        server.yielded = 0
        paused: dict[str, float] = {}

        async def slow_client(answer: Answer) -> None:
            if len(answer.parts) == 2 and "at" not in paused:
                paused["at"] = server.yielded
                await asyncio.sleep(1.0)  # the client reads nothing for a second
                paused["after"] = server.yielded

        answer = await call(gw, "/test.Echo/Stream", frame(b"160,0,65536"), on_part=slow_client)
        frames = unframe(answer.body)
        assert len(frames) == 161
        assert sum(len(p) for _, p in frames[:-1]) == 160 * 65536
        assert frames[-1] == (0x80, b"grpc-status:0\r\ngrpc-message:\r\n")
        # while the client did not read, the server could not get far ahead (flow control)
        assert paused["after"] < 4 * 1024 * 1024, paused
        assert len(answer.parts) > 20  # relayed in many parts, not one buffered body

    run(config(server.port), test)


def test_connection_reused_across_requests(server: GrpcServer) -> None:
    async def test(gw: Gateway) -> None:
        answers = [await call(gw, "/test.Echo/Peer", frame(b"")) for _ in range(10)]
        answers += await asyncio.gather(
            *(call(gw, "/test.Echo/Peer", frame(b"")) for _ in range(20))
        )
        peers = {unframe(a.body)[0][1] for a in answers}
        assert len(peers) == 1, peers
        assert gw.h2_pool is not None and gw.h2_pool.opened == 1

    run(config(server.port), test)


def test_stream_limit_opens_another_connection() -> None:
    """The server takes 2 streams per connection: 6 calls at once need 3 connections, and a
    later call reuses one of them."""
    limited = GrpcServer(options=[("grpc.max_concurrent_streams", 2)]).start()

    async def test(gw: Gateway) -> None:
        await call(gw, "/test.Echo/Peer", frame(b""))  # one connection, its settings known
        answers = await asyncio.gather(
            *(call(gw, "/test.Echo/Stream", frame(b"2,200,10")) for _ in range(6))
        )
        assert [a.status for a in answers] == [200] * 6
        assert all(unframe(a.body)[-1][1] == b"grpc-status:0\r\ngrpc-message:\r\n" for a in answers)
        assert gw.h2_pool is not None and gw.h2_pool.opened == 3
        assert len(limited.peers) == 3
        await call(gw, "/test.Echo/Peer", frame(b""))
        assert gw.h2_pool.opened == 3

    try:
        run(config(limited.port), test)
    finally:
        limited.stop()


def test_goaway_moves_to_a_new_connection() -> None:
    """The server ends each connection after 300 ms (GOAWAY): later calls go on a new one."""
    aging = GrpcServer(
        options=[("grpc.max_connection_age_ms", 300), ("grpc.max_connection_age_grace_ms", 100)]
    ).start()

    async def test(gw: Gateway) -> None:
        first = await call(gw, "/test.Echo/Peer", frame(b""))
        await asyncio.sleep(1.0)
        second = await call(gw, "/test.Echo/Peer", frame(b""))
        assert first.status == second.status == 200
        assert unframe(first.body)[0][1] != unframe(second.body)[0][1]
        assert gw.h2_pool is not None and gw.h2_pool.opened == 2

    try:
        run(config(aging.port), test)
    finally:
        aging.stop()


def test_upstream_down_is_kongs_502() -> None:
    port = free_port()

    async def test(gw: Gateway) -> None:
        answer = await call(gw, "/test.Echo/Unary", frame(b"x"))
        assert answer.status == 502
        # Kong's error page, negotiated on the request's type (no Accept): JSON here
        assert json.loads(answer.body)["message"] == (
            "An invalid response was received from the upstream server"
        )
        assert "x-kong-upstream-latency" in answer.headers

    run(config(port), test)


def test_upstream_slow_is_kongs_504(server: GrpcServer) -> None:
    async def test(gw: Gateway) -> None:
        started = time.monotonic()
        answer = await call(gw, "/test.Echo/Slow", frame(b"x"))
        assert answer.status == 504
        assert json.loads(answer.body)["message"] == "The upstream server is timing out"
        assert 0.4 < time.monotonic() - started < 2.5

    run(config(server.port, read_timeout=500), test)


def test_balancer_targets_and_passive_health(server: GrpcServer) -> None:
    dead = free_port()
    text = f"""
_format_version: "3.0"
upstreams:
- name: grpc-up
  targets:
  - {{target: "127.0.0.1:{dead}"}}
  - {{target: "127.0.0.1:{server.port}"}}
services:
- name: grpc
  protocol: grpc
  host: grpc-up
  retries: 1
  routes:
  - {{name: web, paths: [/], plugins: [{{name: grpc-web}}]}}
"""

    async def test(gw: Gateway) -> None:
        for _ in range(4):
            answer = await call(gw, "/test.Echo/Unary", frame(b"lb"))
            assert answer.status == 200
            assert unframe(answer.body)[0] == (0, b"echo:lb")

    run(text, test)


def test_grpc_service_without_grpc_web_keeps_http1(server: GrpcServer) -> None:
    text = f"""
_format_version: "3.0"
services:
- name: grpc
  url: grpc://127.0.0.1:{server.port}
  routes:
  - {{name: plain, paths: [/]}}
"""

    async def test(gw: Gateway) -> None:
        answer = await call(gw, "/test.Echo/Unary", frame(b"x"), "application/grpc")
        # an HTTP/1.1 request to an HTTP/2-only server: as before, Kong's 502
        assert answer.status == 502
        assert gw.h2_pool is None

    run(text, test)


class Http1Peer(LoopServer):
    """An HTTP/1.1 upstream answering one gRPC message and ``grpc-status: 7`` in its head."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[HttpRequest] = []

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                self.requests.append(await read_request(reader))
                body = frame(b"from h1")
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/grpc\r\ngrpc-status: 7\r\n"
                    b"grpc-message: denied\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass


def test_http_service_gets_the_translated_request_over_http1() -> None:
    """grpc-web in front of an http service: Kong's proxy_pass, HTTP/1.1 to the route's upstream
    path, the body decoded and the answer framed (its status from the response head)."""
    peer = Http1Peer().start()
    text = f"""
_format_version: "3.0"
services:
- name: h1
  url: http://127.0.0.1:{peer.port}/base
  routes:
  - {{name: web, paths: [/h1], plugins: [{{name: grpc-web}}]}}
"""

    async def test(gw: Gateway) -> None:
        answer = await call(gw, "/h1/test.Echo/Unary", base64.b64encode(frame(b"up")), TEXT)
        assert answer.status == 200
        assert answer.headers["content-type"] == TEXT
        assert unframe(unbase64(answer.body)) == [
            (0, b"from h1"),
            (0x80, b"grpc-status:7\r\ngrpc-message:denied\r\n"),
        ]
        request = peer.requests[-1]
        assert request.target == "/base/test.Echo/Unary"
        assert request.lowered["content-type"] == "application/grpc"
        assert request.lowered["te"] == "trailers"
        assert request.body == frame(b"up")
        assert gw.h2_pool is None

    try:
        run(text, test)
    finally:
        peer.stop()


# -- grpcs ---------------------------------------------------------------------------------------

CERT_ID = "7c3b1b4e-4a41-4a8e-9d53-5b0b6c0f2a11"


@pytest.fixture(scope="module")
def tls_server() -> Iterator[tuple[GrpcServer, Pki]]:
    """A grpcs server whose certificate a test CA signed, asking for a client certificate from
    the same CA (mutual TLS)."""
    pki = Pki("grpc-web test CA")
    cert, key = pki.issue("localhost", dns="localhost", ip="127.0.0.1")
    creds = grpc.ssl_server_credentials(
        [(key.encode(), cert.encode())],
        root_certificates=pki.pem.encode(),
        require_client_auth=True,
    )
    s = GrpcServer(creds).start()
    yield s, pki
    s.stop()


def tls_config(server: GrpcServer, pki: Pki, client_cert: bool) -> str:
    """A grpcs service through an upstream (Kong forbids tls_verify and ca_certificates on a
    grpcs service: its TLS is not verified), with the upstream's client certificate or not."""
    cert, key = pki.issue("gateway")
    doc: dict[str, Any] = {
        "_format_version": "3.0",
        "certificates": [{"id": CERT_ID, "cert": cert, "key": key}],
        "upstreams": [
            {"name": "grpcs.internal", "targets": [{"target": f"127.0.0.1:{server.port}"}]}
        ],
        "services": [
            {
                "name": "grpcs",
                "protocol": "grpcs",
                "host": "grpcs.internal",
                "port": 443,
                "retries": 0,
                "routes": [{"name": "web", "paths": ["/"], "plugins": [{"name": "grpc-web"}]}],
            }
        ],
    }
    if client_cert:
        doc["upstreams"][0]["client_certificate"] = CERT_ID
    return json.dumps(doc)


def test_grpcs_with_the_upstreams_client_certificate(tls_server: tuple[GrpcServer, Pki]) -> None:
    server, pki = tls_server

    async def test(gw: Gateway) -> None:
        answer = await call(gw, "/test.Echo/Unary", frame(b"tls"))
        assert answer.status == 200
        assert unframe(answer.body)[0] == (0, b"echo:tls")

    run(tls_config(server, pki, client_cert=True), test)


def test_grpcs_refused_without_a_client_certificate(tls_server: tuple[GrpcServer, Pki]) -> None:
    server, pki = tls_server

    async def test(gw: Gateway) -> None:
        answer = await call(gw, "/test.Echo/Unary", frame(b"tls"))
        assert answer.status == 502

    run(tls_config(server, pki, client_cert=False), test)


def test_h2_pool_verifies_with_the_profiles_ca(tls_server: tuple[GrpcServer, Pki]) -> None:
    """The TLS profile decides verification as for HTTP/1.1 (the same TlsProfile): the test CA
    verifies the server, another CA does not; ALPN h2 is agreed."""
    server, pki = tls_server
    cert, key = pki.issue("gateway")

    async def main() -> None:
        pool = H2Pool(asyncio.get_running_loop())

        async def resolve() -> str:
            return "127.0.0.1"

        good = TlsProfile(True, [pki.pem], cert, key)
        conn, reused = await pool.connection(
            ("127.0.0.1", server.port, ("localhost", good)), resolve, 5
        )
        assert not reused and not conn.closed
        again, reused = await pool.connection(
            ("127.0.0.1", server.port, ("localhost", good)), resolve, 5
        )
        assert again is conn and reused
        wrong = TlsProfile(True, [Pki("another CA").pem], cert, key)
        with pytest.raises(UpstreamError):
            await pool.connection(("127.0.0.1", server.port, ("localhost", wrong)), resolve, 5)
        pool.close()
        await asyncio.sleep(0.1)  # the transports' closing callbacks run

    asyncio.run(main())


# -- a real gateway process ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def process(
    server: GrpcServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(tmp_path_factory.mktemp("grpc-web"), config(server.port)).start()
    yield gw
    gw.stop()


def test_process_unary_and_text(process: GatewayProcess) -> None:
    r = httpx.post(
        process.url("/test.Echo/Unary"),
        content=frame(b"granian"),
        headers={"content-type": GRPC_WEB, "x-grpc-web": "1"},
        timeout=10,
    )
    assert r.status_code == 200
    assert r.headers["content-type"] == GRPC_WEB
    assert unframe(r.content) == [
        (0, b"echo:granian"),
        (0x80, b"grpc-status:0\r\ngrpc-message:\r\n"),
    ]
    r = httpx.post(
        process.url("/test.Echo/Fail"),
        content=base64.b64encode(frame(b"")),
        headers={"content-type": TEXT},
        timeout=10,
    )
    assert unframe(unbase64(r.content)) == [
        (0x80, b"grpc-status:3\r\ngrpc-message:bad request: no name\r\n")
    ]


def test_process_streams_messages_before_the_end(process: GatewayProcess) -> None:
    started = time.monotonic()
    seen: list[tuple[float, bytes]] = []
    with httpx.stream(
        "POST",
        process.url("/test.Echo/Stream"),
        content=frame(b"3,500,10"),
        headers={"content-type": GRPC_WEB},
        timeout=10,
    ) as r:
        assert r.status_code == 200
        for chunk in r.iter_raw():
            seen.append((time.monotonic() - started, chunk))
    body = b"".join(c for _, c in seen)
    frames = unframe(body)
    assert [p[:3] for _, p in frames[:3]] == [b"m0:", b"m1:", b"m2:"]
    # the first message reached the client about a second before the stream ended
    assert seen[0][0] < 0.7
    assert seen[-1][0] - seen[0][0] > 0.8


def test_process_preflight(process: GatewayProcess) -> None:
    r = httpx.options(process.url("/test.Echo/Unary"), timeout=10)
    assert r.status_code == 200
    assert r.text == "OK"
    assert r.headers["access-control-allow-methods"] == "POST"


def test_process_logging_sees_a_proxied_request(
    server: GrpcServer, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """file-log on a grpc-web route: the entry names the upstream, its status and latencies."""
    workdir = tmp_path_factory.mktemp("grpc-web-log")
    log_path = workdir / "requests.log"
    text = f"""
_format_version: "3.0"
services:
- name: grpc
  url: grpc://127.0.0.1:{server.port}
  routes:
  - name: web
    paths: [/]
    plugins:
    - name: grpc-web
    - name: file-log
      config: {{path: "{log_path}"}}
"""
    gw = GatewayProcess(workdir, text).start()
    try:
        r = httpx.post(
            gw.url("/test.Echo/Unary"),
            content=frame(b"logged"),
            headers={"content-type": GRPC_WEB},
            timeout=10,
        )
        assert r.status_code == 200
        eventually(lambda: log_path.exists() and log_path.read_text().strip() != "")
    finally:
        gw.stop()
    entry = json.loads(log_path.read_text().splitlines()[-1])
    assert entry["response"]["status"] == 200
    assert entry["upstream_uri"] == "/test.Echo/Unary"
    assert entry["upstream_status"] == "200"
    assert entry["latencies"]["proxy"] >= 0
    assert entry["service"]["protocol"] == "grpc"
    assert entry["request"]["headers"]["content-type"] == GRPC_WEB


def test_trailer_frame_helpers_match_kong_format() -> None:
    from fastkong.plugins.bundled.grpc_web import decode_text, trailer_frame

    assert trailer_frame(b"0", b"") == b"\x80\x00\x00\x00\x1egrpc-status:0\r\ngrpc-message:\r\n"
    with pytest.raises((binascii.Error, ValueError)):
        decode_text(b"@@@@")
    assert decode_text(b"YQ==Yg==") == b"ab"
