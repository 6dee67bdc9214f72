"""Kong's ``spec/03-plugins/32-grpc-web/01-proxy_spec.lua`` (lines 13-247), through a real
gateway process to a real gRPC server on loopback (``tests/grpc_server.py``).

Kong's fixture service ``grpcbin`` answers ``hello.HelloService/SayHello`` with
``hello <greeting>``: here a ``grpc.aio`` method does the same. Kong's ``http_mock`` server
block on 8765 (which answers the ``Host`` and ``TE`` it received as ``received-host`` and
``received-te`` headers) is a small HTTP/1.1 peer of this module's own. One gateway holds
every route of the spec, with an ``ssl`` listener for the HTTPS cases.

Differences from Kong's fixtures:

- Kong's ``spec/fixtures/grpc/hello.proto`` is proto2 (``optional``/``required`` fields), which
  fastkong's proto reader refuses (docs/plugins.md "grpc-web": "proto2 and groups are refused",
  a config error at ``plugins[..].config.proto``): the routes use the same file in proto3
  (the wire format and JSON names are the same), and
  :func:`test_kongs_proto2_hello_proto_is_a_config_error` asserts the documented refusal.

Also covered in-process by ``test_grpc_web.py``/``test_grpc_web_json.py`` (binary, text and
JSON calls, ``pass_stripped_path``); ported here as Kong writes them, against a real process.
Nothing of the spec is left out.
"""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from fastkong.plugins.bundled import _proto
from tests.grpc_server import GrpcServer, MockGrpc
from tests.helpers import Gateway, free_port, plugin_config_errors
from tests.plugins.test_grpc_web_json import reference_classes

pytestmark = pytest.mark.integration

#: Kong's spec/fixtures/grpc/hello.proto, as Kong has it (proto2).
HELLO_PROTO2 = """\
syntax = "proto2";

package hello;

service HelloService {
  rpc SayHello(HelloRequest) returns (HelloResponse);
  rpc LotsOfReplies(HelloRequest) returns (stream HelloResponse);
  rpc LotsOfGreetings(stream HelloRequest) returns (HelloResponse);
  rpc BidiHello(stream HelloRequest) returns (stream HelloResponse);
}

message HelloRequest {
  optional string greeting = 1;
}

message HelloResponse {
  required string reply = 1;
}
"""
#: The same file in proto3, which fastkong reads.
HELLO_PROTO3 = (
    HELLO_PROTO2.replace('"proto2"', '"proto3"')
    .replace("optional string", "string")
    .replace("required string", "string")
)

HELLO_REQUEST_TEXT_BODY = b"AAAAAAYKBGhleWE="
HELLO_REQUEST_BODY = base64.b64decode(HELLO_REQUEST_TEXT_BODY)
#: The message and the trailer frame, each base64-encoded on its own.
HELLO_RESPONSE_SEGMENTS = (
    b"AAAAAAwKCmhlbGxvIGhleWE=",
    b"gAAAAB5ncnBjLXN0YXR1czowDQpncnBjLW1lc3NhZ2U6DQo=",
)
HELLO_RESPONSE_TEXT_BODY = b"".join(HELLO_RESPONSE_SEGMENTS)
HELLO_RESPONSE_BODY = b"".join(base64.b64decode(s) for s in HELLO_RESPONSE_SEGMENTS)
SAY_HELLO = "/hello.HelloService/SayHello"
MOCK_HOST = "grpc_mock.example"


def frame(payload: bytes, flags: int = 0) -> bytes:
    """A gRPC(-Web) frame, as the spec's ``string.char(0, be_bytes(#req)) .. req``."""
    return struct.pack(">BI", flags, len(payload)) + payload


@pytest.fixture(scope="module")
def hello_proto(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("protos") / "hello.proto"
    path.write_text(HELLO_PROTO3)
    return path


@pytest.fixture(scope="module")
def grpcbin(hello_proto: Path) -> Iterator[GrpcServer]:
    """grpcbin's ``SayHello``: ``hello <greeting>``."""
    classes = reference_classes(_proto.load(str(hello_proto)))
    request_class, reply_class = classes["hello.HelloRequest"], classes["hello.HelloResponse"]

    async def say_hello(data: bytes, context: grpc.aio.ServicerContext) -> bytes:
        greeting = request_class.FromString(data).greeting
        return bytes(reply_class(reply=f"hello {greeting}").SerializeToString())

    server = GrpcServer(extra={SAY_HELLO: grpc.unary_unary_rpc_method_handler(say_hello)})
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def mock() -> Iterator[MockGrpc]:
    server = MockGrpc().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, grpcbin: GrpcServer, mock: MockGrpc, hello_proto: Path
) -> Iterator[Gateway]:
    proto = json.dumps(str(hello_proto))
    config = f"""
_format_version: "3.0"
services:
- name: grpc
  url: grpc://127.0.0.1:{grpcbin.port}
  routes:
  - name: route1
    protocols: [http, https]
    paths: [/]
    plugins: [{{name: grpc-web, config: {{proto: {proto}}}}}]
  - name: route2
    protocols: [http, https]
    paths: [/prefix]
    plugins: [{{name: grpc-web, config: {{proto: {proto}, pass_stripped_path: true}}}}]
- name: mock_grpc_service
  url: http://127.0.0.1:{mock.port}
  routes:
  - name: mock_grpc_route
    protocols: [http]
    hosts: [{MOCK_HOST}]
    preserve_host: true
    plugins: [{{name: grpc-web}}]
"""
    gw = Gateway(tmp_path_factory.mktemp("grpc-web-spec"), config)
    gw.ssl_port = free_port()
    try:
        yield gw.start()
    finally:
        gw.stop()


@pytest.fixture(scope="module")
def clients(gateway: Gateway) -> Iterator[dict[str, httpx.Client]]:
    assert gateway.ssl_port is not None
    with (
        httpx.Client(base_url=f"http://127.0.0.1:{gateway.port}", timeout=10) as plain,
        httpx.Client(
            base_url=f"https://127.0.0.1:{gateway.ssl_port}", timeout=10, verify=False
        ) as tls,
    ):
        yield {"http": plain, "https": tls}


def test_kongs_proto2_hello_proto_is_a_config_error(tmp_path: Path) -> None:
    """docs/plugins.md "grpc-web": proto2 is refused at config load (Kong reads it)."""
    path = tmp_path / "hello.proto"
    path.write_text(HELLO_PROTO2)
    errors = plugin_config_errors("grpc-web", {"proto": str(path)})
    assert errors == [
        f"plugins[0].config.proto: cannot load the .proto file: {path}:3: syntax 'proto2':"
        " only proto3 is read"
    ]


@pytest.mark.parametrize(
    "te",
    [
        None,  # spec line 123: Sets 'TE: trailers'
        "chunked",  # spec line 135: Ignores user-agent TE
    ],
)
def test_sets_te_trailers(clients: dict[str, httpx.Client], te: str | None) -> None:
    headers = {"Host": MOCK_HOST, "Content-Type": "application/grpc-web-text"}
    if te is not None:
        headers["TE"] = te
    res = clients["http"].post("/", headers=headers)
    assert res.headers["received-te"] == "trailers"


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_call_grpc_base64(clients: dict[str, httpx.Client], scheme: str) -> None:
    """Spec lines 151 and 164: Call gRCP-base64 via HTTP / HTTPS."""
    res = clients[scheme].post(
        SAY_HELLO,
        headers={"Content-Type": "application/grpc-web-text"},
        content=HELLO_REQUEST_TEXT_BODY,
    )
    assert res.content == HELLO_RESPONSE_TEXT_BODY


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_call_binary_grpc(clients: dict[str, httpx.Client], scheme: str) -> None:
    """Spec lines 177 and 190: Call binary gRCP via HTTP / HTTPS."""
    res = clients[scheme].post(
        SAY_HELLO,
        headers={"Content-Type": "application/grpc-web+proto"},
        content=HELLO_REQUEST_BODY,
    )
    assert res.content == HELLO_RESPONSE_BODY


def test_call_grpc_web_json(clients: dict[str, httpx.Client]) -> None:
    """Spec line 203: Call gRPC-Web JSON via HTTP (``{"reply":...}``: the field's JSON name
    and its proto name are the same here)."""
    req = frame(json.dumps({"greeting": "heya"}, separators=(",", ":")).encode())
    res = clients["http"].post(
        SAY_HELLO, headers={"Content-Type": "application/grpc-web+json"}, content=req
    )
    resp = frame(json.dumps({"reply": "hello heya"}, separators=(",", ":")).encode())
    trailer = frame(b"grpc-status:0\r\ngrpc-message:\r\n", 0x80)
    assert res.content == resp + trailer


@pytest.mark.parametrize(
    "path",
    [
        SAY_HELLO,  # spec line 224: Call plain JSON via HTTP
        "/prefix" + SAY_HELLO,  # spec line 236: Pass stripped URI
    ],
)
def test_call_plain_json(clients: dict[str, httpx.Client], path: str) -> None:
    res = clients["http"].post(
        path, headers={"Content-Type": "application/json"}, content=b'{"greeting":"heya"}'
    )
    body: Any = json.loads(res.content)
    assert body == {"reply": "hello heya"}
