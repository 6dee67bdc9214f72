"""Kong's ``spec/03-plugins/28-grpc-gateway/01-proxy_spec.lua`` (lines 4-327), through a real
gateway process to a real gRPC server on loopback (``tests/grpc_server.py``).

Kong's ``spec/fixtures/grpc/targetservice.proto`` is used as Kong has it (its imports resolve to
fastkong's own ``google/api`` and ``google/protobuf`` include files); Kong's Go target
(``spec/fixtures/grpc/target/grpc-target.go``: ``SayHello``, ``BounceIt``, ``GrowTail``, ``Echo``,
``UnknownMethod`` not implemented) is a ``grpc.aio`` server doing the same, its messages built
by the reference protobuf library from what fastkong's reader read. Kong's ``http_mock`` server
block on 8765 (answering the ``TE`` it got as ``received-te``) is the grpc-web spec port's peer.
One gateway holds both routes.

Where fastkong documents a difference, the test asserts fastkong's behaviour with a comment
(docs/plugins.md "grpc-gateway"): ``Timestamp`` is printed in RFC 3339 with a ``Z``.

Also covered in-process by ``test_grpc_gateway.py`` on its own .proto file (boolean query rule,
additional bindings, 400 refusals, status mapping); ported here as Kong writes them, with Kong's
.proto file, against a real process. Nothing of the spec is left out.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from fastkong.plugins.bundled import _proto
from tests.grpc_server import GrpcServer, MockGrpc
from tests.helpers import Gateway
from tests.plugins.test_grpc_web_json import reference_classes

pytestmark = pytest.mark.integration

#: Kong's spec/fixtures/grpc/targetservice.proto.
TARGET_PROTO = """\
syntax = "proto3";

package targetservice;

import "google/api/annotations.proto";
import "google/protobuf/timestamp.proto";

option go_package = "./targetservice";

service Bouncer {
  rpc SayHello(HelloRequest) returns (HelloResponse) {
    option (google.api.http) = {
      // https://github.com/googleapis/googleapis/blob/master/google/api/http.proto
      // HTTP | gRPC
      // -----|-----
      // `GET /v1/messages/123456`  | `HelloRequest(greeting: "123456")`
      get: "/v1/messages/{greeting}"
      additional_bindings {
        get: "/v1/messages/legacy/{greeting=**}"
        additional_bindings {
          post: "/v1/messages/"
        }
      }
      body: "*"
    };
  };

  // define a gRPC method that's not implemented in the target
  rpc UnknownMethod(HelloRequest) returns (HelloResponse) {
    option (google.api.http) = {
      get: "/v1/unknown/{greeting}"
    };
  };

  rpc BounceIt (BallIn) returns (BallOut) {
    option (google.api.http) = {
      post: "/bounce"
      body: "*"
    };
  }

  rpc GrowTail(Body) returns (Body) {
    option (google.api.http) = {
      get: "/v1/grow/tail"
    };
  }

  rpc Echo(EchoMsg) returns (EchoMsg) {
    option (google.api.http) = {
      post: "/v1/echo"
      body: "*"
    };
  }
}


message HelloRequest {
  string greeting = 1;
  bool boolean_test = 2;
}

message HelloResponse {
  string reply = 1;
  bool boolean_test = 2;
}


message BallIn {
  string message = 1;
  google.protobuf.Timestamp when = 2;
  google.protobuf.Timestamp now = 3;
}

message BallOut {
  string reply = 1;
  string time_message = 2;
  google.protobuf.Timestamp now = 3;
}

message Limb {
  int32 count = 1;
  string endings = 2;
}

message Body {
  string name = 1;
  Limb hands = 2;
  Limb legs = 3;
  Limb tail = 4;
}

message EchoMsg {
  repeated string array = 1;
  string nullable = 2;
}
"""

MOCK_HOST = "grpc_mock.example"


def rfc3339(seconds: int) -> str:
    """Go's ``time.Format(time.RFC3339)`` of a UTC time."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def go_duration(seconds: int) -> str:
    """Go's ``time.Duration.String()`` of whole seconds (``5m15s``, ``1h0m0s``, ``0s``)."""
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


def target_handlers(classes: dict[str, Any]) -> dict[str, grpc.RpcMethodHandler]:
    """grpc-target.go's methods (``UnknownMethod`` is not implemented: UNIMPLEMENTED)."""
    c = {name.rpartition(".")[2]: cls for name, cls in classes.items()}

    async def say_hello(data: bytes, context: grpc.aio.ServicerContext) -> bytes:
        req = c["HelloRequest"].FromString(data)
        reply = c["HelloResponse"](reply=f"hello {req.greeting}", boolean_test=req.boolean_test)
        return bytes(reply.SerializeToString())

    async def bounce_it(data: bytes, context: grpc.aio.ServicerContext) -> bytes:
        req = c["BallIn"].FromString(data)
        when, now = req.when.seconds, req.now.seconds
        out = c["BallOut"](
            reply=f"hello {req.message}",
            time_message=f"{rfc3339(when)} was {go_duration(now - when)} ago",
        )
        out.now.seconds = now
        return bytes(out.SerializeToString())

    async def grow_tail(data: bytes, context: grpc.aio.ServicerContext) -> bytes:
        body = c["Body"].FromString(data)
        body.tail.count += 1
        return bytes(body.SerializeToString())

    async def echo(data: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return data

    return {
        f"/targetservice.Bouncer/{name}": grpc.unary_unary_rpc_method_handler(fn)
        for name, fn in (
            ("SayHello", say_hello),
            ("BounceIt", bounce_it),
            ("GrowTail", grow_tail),
            ("Echo", echo),
        )
    }


@pytest.fixture(scope="module")
def target_proto(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("protos") / "targetservice.proto"
    path.write_text(TARGET_PROTO)
    return path


@pytest.fixture(scope="module")
def target(target_proto: Path) -> Iterator[GrpcServer]:
    classes = reference_classes(_proto.load(str(target_proto)))
    server = GrpcServer(extra=target_handlers(classes)).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def mock() -> Iterator[MockGrpc]:
    server = MockGrpc().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(
    tmp_path_factory: pytest.TempPathFactory, target: GrpcServer, mock: MockGrpc, target_proto: Path
) -> Iterator[httpx.Client]:
    plugin = f"{{name: grpc-gateway, config: {{proto: {json.dumps(str(target_proto))}}}}}"
    config = f"""
_format_version: "3.0"
services:
- name: grpc
  protocol: grpc
  host: 127.0.0.1
  port: {target.port}
  routes:
  - name: route1
    protocols: [http, https]
    paths: [/]
    plugins: [{plugin}]
- name: mock_grpc_service
  url: http://127.0.0.1:{mock.port}
  routes:
  - name: mock_grpc_route
    protocols: [http]
    hosts: [{MOCK_HOST}]
    preserve_host: true
    plugins: [{plugin}]
"""
    gw = Gateway(tmp_path_factory.mktemp("grpc-gateway-spec"), config)
    try:
        gw.start()
        with httpx.Client(base_url=f"http://127.0.0.1:{gw.port}", timeout=10) as http:
            yield http
    finally:
        gw.stop()


@pytest.mark.parametrize(
    "te",
    [
        None,  # spec line 106: Sets 'TE: trailers'
        "chunked",  # spec line 118: Ignores user-agent TE
    ],
)
def test_sets_te_trailers(client: httpx.Client, te: str | None) -> None:
    headers = {"Host": MOCK_HOST, "Content-Type": "application/json"}
    if te is not None:
        headers["TE"] = te
    res = client.post("/v1/echo", headers=headers)
    assert res.headers["received-te"] == "trailers"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        # spec line 134: main entrypoint
        ("/v1/messages/john_doe", False),
        # spec line 146: additional binding
        ("/v1/messages/legacy/john_doe", False),
        # spec line 157: removes unbound query args
        ("/v1/messages/john_doe?arg1=1&arg2.test=2", False),
        # spec lines 169-214: boolean behavior (true, false, zero, non-zero)
        ("/v1/messages/legacy/john_doe?boolean_test=true", True),
        ("/v1/messages/legacy/john_doe?boolean_test=false", False),
        ("/v1/messages/legacy/john_doe?boolean_test=0", False),
        ("/v1/messages/legacy/john_doe?boolean_test=1", True),
    ],
)
def test_say_hello(client: httpx.Client, path: str, expected: bool) -> None:
    res = client.get(path)
    assert res.status_code == 200, res.text
    assert res.json() == {"reply": "hello john_doe", "boolean_test": expected}


def test_unknown_path(client: httpx.Client) -> None:
    """Spec line 216."""
    res = client.get("/v1/messages/john_doe/bai")
    assert res.status_code == 400
    assert res.reason_phrase == "Bad Request"


def test_transforms_grpc_status_to_http_status_code(client: httpx.Client) -> None:
    """Spec line 222: UNIMPLEMENTED (12) is a 500."""
    res = client.get("/v1/unknown/john_doe")
    assert res.status_code == 500
    assert res.headers["grpc-status"] == "12"


def test_known_types_timestamp(client: httpx.Client) -> None:
    """Spec line 232."""
    now = int(time.time())
    now_8601 = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
    ago_8601 = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 315))
    res = client.post(
        "/bounce",
        headers={"Content-Type": "application/json"},
        content=json.dumps({"message": "hi", "when": ago_8601, "now": now_8601}),
    )
    assert res.status_code == 200, res.text
    assert res.json() == {
        # Kong prints ``now_8601`` (no zone); fastkong prints RFC 3339 with a ``Z`` (docs/plugins.md
        # "grpc-gateway": "Timestamp as RFC 3339 with a Z"; a zone-less input is read as UTC).
        "now": now_8601 + "Z",
        "reply": "hello hi",
        "time_message": ago_8601 + " was 5m15s ago",
    }


def test_structured_uri_args(client: httpx.Client) -> None:
    """Spec line 252 (Kong's client encodes the nested ``query`` table as ``hands.count=0``)."""
    limbs = {
        "hands": {"count": 0, "endings": "fingers"},
        "legs": {"count": 4, "endings": "toes"},
        "tail": {"count": 0, "endings": "tip"},
    }
    query = [("name", "lizard")] + [
        (f"{limb}.{field}", str(value))
        for limb, fields in limbs.items()
        for field, value in fields.items()
    ]
    res = client.get("/v1/grow/tail", params=query)
    assert res.status_code == 200, res.text
    assert res.json() == {
        "name": "lizard",
        "hands": {"count": 0, "endings": "fingers"},
        "legs": {"count": 4, "endings": "toes"},
        "tail": {"count": 1, "endings": "tip"},
    }


@pytest.mark.parametrize(
    ("body", "text"),
    [
        # spec line 271: null in json
        (b'{"message":null}', None),
        # spec line 279: invalid json. Kong's reason is lua-cjson's ("Expected value but found
        # unexpected end of string at character 21"); fastkong's is its JSON decoder's
        # (docs/plugins.md, grpc-gateway: "The decode json err: reason is msgspec's")
        (b'{"message":"invalid}', "decode json err: Input data was truncated"),
        # spec line 288: field type mismatch
        (b'{"message":1}', "failed to encode payload"),
    ],
)
def test_bounce_refusals(client: httpx.Client, body: bytes, text: str | None) -> None:
    res = client.post("/bounce", headers={"Content-Type": "application/json"}, content=body)
    assert res.status_code == 400
    if text is not None:
        assert res.text == text


@pytest.mark.parametrize(
    "nullable",
    [
        "ahaha",  # spec line 298: empty array in json #10801
        "",  # spec line 313: empty message #10802
    ],
)
def test_echo_keeps_an_empty_array(client: httpx.Client, nullable: str) -> None:
    req_body = {"array": [], "nullable": nullable}
    res = client.post("/v1/echo", headers={"Content-Type": "application/json"}, json=req_body)
    assert res.status_code == 200, res.text
    assert res.json() == req_body
    assert "[]" in res.text  # an empty array, not null or {}
