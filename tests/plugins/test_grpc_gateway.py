"""grpc-gateway: REST/JSON requests transcoded to gRPC calls on a real ``grpc.aio`` server.

The server decodes each request with the reference protobuf library (message classes built from
what fastkong's reader read, as the grpc-web JSON tests do) and records it, so the tests see the
message the gateway built; its answers are encoded by the same library. The gateway runs
in-process (``httpx.ASGITransport``), and once as a real Granian process.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import json_format

from fastkong.plugins.bundled import _http_rule, _proto, _proto_json
from fastkong.plugins.bundled.grpc_gateway import GRPC_TO_HTTP, GrpcGateway, grpc_to_http
from fastkong.proxy.app import Gateway
from tests.grpc_server import GrpcServer
from tests.helpers import Gateway as GatewayProcess
from tests.helpers import plugin_config, plugin_config_errors
from tests.pki import Pki
from tests.plugins.test_grpc_web import make_gateway
from tests.plugins.test_grpc_web_json import reference_classes

PROTO = str(Path(__file__).parent / "protos" / "gateway.proto")


@pytest.fixture(scope="module")
def protos() -> _proto.ProtoSet:
    return _proto.load(PROTO)


@pytest.fixture(scope="module")
def classes(protos: _proto.ProtoSet) -> dict[str, Any]:
    return reference_classes(protos)


# -- schema and config -------------------------------------------------------------------------


def test_schema_and_priority_as_kong() -> None:
    assert plugin_config("grpc-gateway", {}) == {"proto": None}
    assert GrpcGateway.priority == 998
    assert plugin_config_errors("grpc-gateway", {"nope": 1}) == [
        "plugins[0].config.nope: unknown field"
    ]


def _proto_error(tmp_path: Path, text: str) -> str:
    path = tmp_path / "svc.proto"
    path.write_text(text)
    (error,) = plugin_config_errors("grpc-gateway", {"proto": str(path)})
    assert error.startswith("plugins[0].config.proto: ")
    return error.removeprefix("plugins[0].config.proto: ")


_HEAD = (
    'syntax = "proto3";\nimport "google/api/annotations.proto";\nmessage R { string name = 1; }\n'
)


@pytest.mark.parametrize(
    ("rpc", "error"),
    [
        ('get: "/v1/{name"', "svc.proto:5: invalid path template '/v1/{name': unclosed '{'"),
        ('get: "v1/x"', "invalid path template 'v1/x': a path template starts with '/'"),
        ('get: "/v1//x"', "an empty segment"),
        ('get: "/v1/{nope}"', "svc.proto:5: path template '/v1/{nope}': 'nope' is not a scalar"),
        ('post: "/v1" body: "nope"', "body 'nope' is not a field of R"),
        ('get: "/v1/{name}/{name}"', "a variable appears twice"),
        ('get: "/v1/x" body', "expected ':' or '{' after 'body'"),
    ],
)
def test_bad_rules_are_config_errors_with_file_and_line(
    tmp_path: Path, rpc: str, error: str
) -> None:
    text = _HEAD + "service S {\n  rpc M (R) returns (R) {\n    option (google.api.http) = {"
    text += rpc + "};\n  }\n}\n"
    message = _proto_error(tmp_path, text)
    assert message.startswith("cannot load the .proto file: ")
    assert error in message
    assert "svc.proto:" in message


def test_missing_file_syntax_error_and_unsupported_import(tmp_path: Path) -> None:
    (error,) = plugin_config_errors("grpc-gateway", {"proto": str(tmp_path / "none.proto")})
    assert error.startswith("plugins[0].config.proto: cannot load the .proto file: cannot read ")
    assert "none.proto" in error
    assert "svc.proto:3: " in _proto_error(tmp_path, 'syntax = "proto3";\n\nmessage {')
    message = _proto_error(tmp_path, 'syntax = "proto3";\nimport "google/protobuf/struct.proto";\n')
    assert "svc.proto:2: import 'google/protobuf/struct.proto'" in message
    assert "well-known type is not supported" in message


def test_reader_keeps_rules_and_includes(protos: _proto.ProtoSet) -> None:
    rpcs = {rpc.path: rpc for rpc in protos.rpcs}
    get = rpcs["/shop.v1.Shop/GetItem"].http
    assert get is not None
    assert get["get"] == ["/v1/shelves/{shelf}/items/{name}"]
    assert [b["get"] for b in get["additional_bindings"]] == [
        ["/v1/legacy/{name=items/**}"],
        ["/v1/by-owner/{owner.id}/{owner.region}"],
    ]
    assert rpcs["/shop.v1.Shop/NoHttp"].http is None
    assert "google.api.HttpRule" in protos.messages
    assert rpcs["/shop.v1.Shop/DeleteItem"].output.full_name == "google.protobuf.Empty"


def test_reader_takes_the_option_field_by_field(tmp_path: Path) -> None:
    path = tmp_path / "fields.proto"
    path.write_text(
        _HEAD + "service S {\n  rpc M (R) returns (R) {\n"
        '    option (google.api.http).post = "/v1/m";\n'
        '    option (google.api.http).body = "*";\n  }\n}\n'
    )
    (rpc,) = _proto.load(str(path)).rpcs
    assert rpc.http == {"post": ["/v1/m"], "body": ["*"]}


def test_reader_takes_text_format_literals(tmp_path: Path) -> None:
    path = tmp_path / "lit.proto"
    path.write_text(
        _HEAD
        + "service S {\n  rpc M (R) returns (R) {\n    option deprecated = true;\n"
        + '    option (.google.api.http) = { post: "/v1/" "join"; body: \'*\',\n'
        + '      additional_bindings: [{ get: "/a" }, < put: "/b" >]\n'
        + '      additional_bindings { custom: { kind: "HEAD" path: "/c" } } };\n  }\n}\n'
    )
    (rpc,) = _proto.load(str(path)).rpcs
    assert rpc.http == {
        "post": ["/v1/join"],
        "body": ["*"],
        "additional_bindings": [
            {"get": ["/a"]},
            {"put": ["/b"]},
            {"custom": [{"kind": ["HEAD"], "path": ["/c"]}]},
        ],
    }
    bindings = _http_rule.compile_bindings(_proto.load(str(path)))
    # custom is not bound (Kong reads get/put/post/delete/patch only)
    assert {v: [b.template for b in bs] for v, bs in bindings.by_verb.items()} == {
        "post": ["/v1/join"],
        "get": ["/a"],
        "put": ["/b"],
    }


# -- templates ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "path", "values"),
    [
        ("/v1/{name}", "/v1/abc", ["abc"]),
        ("/v1/{name}", "/v1/a/b", None),
        ("/v1/{name}", "/v1/", None),
        ("/v1/{name=shelves/*}", "/v1/shelves/3", ["shelves/3"]),
        ("/v1/{name=shelves/*}", "/v1/shelves/3/x", None),
        ("/v1/{name=**}", "/v1/a/b/c", ["a/b/c"]),
        ("/v1/*/x/{id}", "/v1/any/x/7", ["7"]),
        ("/v1/*/x/{id}", "/v1/x/7", None),
        ("/v1/**", "/v1/a/b", []),
        ("/v1/{a.b}:run", "/v1/9:run", ["9"]),
        ("/v1/{a.b}:run", "/v1/9", None),
        ("/v1.x/{id}", "/v1Ax/2", None),
        ("/", "/", []),
    ],
)
def test_templates_match_as_the_grammar_says(
    template: str, path: str, values: list[str] | None
) -> None:
    regex, _ = _http_rule.compile_template(template)
    m = regex.match(path)
    assert (list(m.groups()) if m else None) == values


def test_lua_q_quotes_as_lua() -> None:
    assert _http_rule.lua_q('a"b\\c\nd\x01') == '"a\\"b\\\\c\\\nd\\1"'


def test_status_map_is_kongs() -> None:
    assert [GRPC_TO_HTTP[i] for i in range(17)] == [
        200, 499, 500, 400, 504, 404, 409, 403, 429, 400, 409, 400, 500, 500, 503, 500, 401
    ]  # fmt: skip
    assert grpc_to_http(b"99") == 500
    assert grpc_to_http(b"x") == 500


# -- well-known types against the reference library -------------------------------------------


def test_known_types_canonical_json_both_ways(
    protos: _proto.ProtoSet, classes: dict[str, Any]
) -> None:
    item = classes["shop.v1.Item"]()
    item.created.FromJsonString("2024-02-29T23:59:58.120Z")
    item.ttl.FromJsonString("-3.000001s")
    item.note.value = "hi"
    item.price = 2**40
    data = item.SerializeToString()
    ours = _proto_json.decode(protos.messages["shop.v1.Item"], data)
    reference = json_format.MessageToDict(item)
    # (the test pool's wrappers are not in google/protobuf/wrappers.proto: printed as messages)
    assert reference["note"] == {"value": "hi"}
    assert ours == {**reference, "note": "hi"}
    assert ours["created"] == "2024-02-29T23:59:58.120Z"
    assert ours["ttl"] == "-3.000001s"
    back = classes["shop.v1.Item"].FromString(
        _proto_json.encode(protos.messages["shop.v1.Item"], ours)
    )
    assert back == item
    # 0, 3, 6 or 9 digits, as the reference prints them
    for ttl in ("0.000000120s", "7.000120s", "1.100s", "0s"):
        small = classes["shop.v1.Item"](name="x")
        small.ttl.FromJsonString(ttl)
        small.created.FromJsonString("1999-12-31T23:59:59.000000005Z")
        printed = _proto_json.decode(protos.messages["shop.v1.Item"], small.SerializeToString())
        assert printed == json_format.MessageToDict(small)
        assert printed["ttl"] == ttl
    # an offset is converted to UTC; a zone-less time is read as UTC
    for text, seconds in (("1970-01-01T01:00:00+01:00", 0), ("1970-01-01T00:00:05", 5)):
        got = classes["shop.v1.Item"].FromString(
            _proto_json.encode(protos.messages["shop.v1.Item"], {"created": text})
        )
        assert got.created.seconds == seconds
    with pytest.raises(_proto_json.TranscodeError, match="RFC 3339"):
        _proto_json.encode(protos.messages["shop.v1.Item"], {"created": "yesterday"})
    with pytest.raises(_proto_json.TranscodeError, match="duration"):
        _proto_json.encode(protos.messages["shop.v1.Item"], {"ttl": "3m"})


def test_kong_gateway_style_prints_proto_names_and_defaults(
    protos: _proto.ProtoSet, classes: dict[str, Any]
) -> None:
    item = classes["shop.v1.Item"](name="n", price=5)
    out = _proto_json.decode(
        protos.messages["shop.v1.Item"], item.SerializeToString(), _proto_json.KONG_GATEWAY
    )
    assert out == {
        "name": "n",
        "price": 5,
        "kind": "KIND_UNSPECIFIED",
        "labels": [],
        "sold": False,
        "stock": {},
        "data": "",
    }


# -- through the gateway -----------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, Any]]] = []


def _handlers(classes: dict[str, Any], seen: Recorder) -> dict[str, grpc.RpcMethodHandler]:
    get_class, item_class = classes["shop.v1.GetItemRequest"], classes["shop.v1.Item"]
    create_class = classes["shop.v1.CreateItemRequest"]

    def record(method: str, message: Any) -> None:
        seen.requests.append((method, json_format.MessageToDict(message, True)))

    async def get_item(data: bytes, context: grpc.aio.ServicerContext) -> bytes:
        request = get_class.FromString(data)
        record("GetItem", request)
        item = item_class(name=request.name, price=2**53 + 1, kind=2, labels=["a", "b"])
        item.created.FromJsonString("2024-01-02T03:04:05Z")
        item.ttl.FromJsonString("1.5s")
        item.note.value = "fragile"
        item.stock["x"] = 3
        item.owner.id = request.owner.id
        return bytes(item.SerializeToString())

    async def create_item(data: bytes, context: grpc.aio.ServicerContext) -> bytes:
        request = create_class.FromString(data)
        record("CreateItem", request)
        request.item.name = f"{request.shelf}/{request.item.name}"
        return bytes(request.item.SerializeToString())

    async def update_item(data: bytes, context: grpc.aio.ServicerContext) -> bytes:
        request = item_class.FromString(data)
        record("UpdateItem", request)
        return bytes(request.SerializeToString())

    async def delete_item(data: bytes, context: grpc.aio.ServicerContext) -> bytes:
        record("DeleteItem", get_class.FromString(data))
        return b""

    async def fail(data: bytes, context: grpc.aio.ServicerContext) -> bytes:
        await context.abort(grpc.StatusCode.NOT_FOUND, "no such item")
        return b""  # pragma: no cover - abort raises

    async def watch(data: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        request = get_class.FromString(data)
        for i in range(3):
            yield bytes(item_class(name=f"{request.name}-{i}", price=i).SerializeToString())
            await asyncio.sleep(0.01)

    return {
        "/shop.v1.Shop/GetItem": grpc.unary_unary_rpc_method_handler(get_item),
        "/shop.v1.Shop/CreateItem": grpc.unary_unary_rpc_method_handler(create_item),
        "/shop.v1.Shop/UpdateItem": grpc.unary_unary_rpc_method_handler(update_item),
        "/shop.v1.Shop/DeleteItem": grpc.unary_unary_rpc_method_handler(delete_item),
        "/shop.v1.Shop/Fail": grpc.unary_unary_rpc_method_handler(fail),
        "/shop.v1.Shop/Watch": grpc.unary_stream_rpc_method_handler(watch),
    }


@pytest.fixture(scope="module")
def seen() -> Recorder:
    return Recorder()


@pytest.fixture(scope="module")
def server(classes: dict[str, Any], seen: Recorder) -> Iterator[GrpcServer]:
    s = GrpcServer(extra=_handlers(classes, seen)).start()
    yield s
    s.stop()


def gateway_config(port: int, protocol: str = "grpc", proto: str | None = PROTO) -> str:
    config = {"proto": proto} if proto is not None else {}
    return json.dumps(
        {
            "_format_version": "3.0",
            "services": [
                {
                    "name": "shop",
                    "protocol": protocol,
                    "host": "127.0.0.1",
                    "port": port,
                    "retries": 0,
                    "routes": [
                        {
                            "name": "rest",
                            "paths": ["/"],
                            "protocols": ["http", "https"],
                            "plugins": [{"name": "grpc-gateway", "config": config}],
                        }
                    ],
                }
            ],
        }
    )


def run(text: str, test: Callable[[httpx.AsyncClient], Any]) -> None:
    async def main() -> None:
        gw: Gateway = make_gateway(text)
        await gw.startup()
        try:
            transport = httpx.ASGITransport(app=gw)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://gw.test", timeout=10
            ) as client:
                await test(client)
        finally:
            await gw.shutdown()
            await asyncio.sleep(0.05)

    asyncio.run(main())


def last(seen: Recorder) -> tuple[str, dict[str, Any]]:
    return seen.requests[-1]


GET_ANSWER = {
    "price": 2**53 + 1,
    "kind": "TOOL",
    "labels": ["a", "b"],
    "sold": False,
    "created": "2024-01-02T03:04:05Z",
    "ttl": "1.500s",
    "note": "fragile",
    "stock": {"x": 3},
    "data": "",
}


def test_get_with_path_variables_and_query_arguments(server: GrpcServer, seen: Recorder) -> None:
    async def test(client: httpx.AsyncClient) -> None:
        r = await client.get(
            "/v1/shelves/s1/items/pen%2Fcil%20x",
            params=[
                ("revision", "7"),
                ("verbose", "yes"),
                ("tags", "1"),
                ("tags", "2"),
                ("owner.region", "eu"),
                ("kind", "BOOK"),
                ("limit", "5"),
                ("unbound", "x"),
                ("owner.nope", "x"),
            ],
        )
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "application/json"
        assert r.headers["access-control-allow-origin"] == "*"
        assert r.json() == {"name": "pen/cil x", "owner": {"id": "", "region": ""}, **GET_ANSWER}
        assert last(seen) == (
            "GetItem",
            {
                "shelf": "s1",
                "name": "pen/cil x",
                "revision": "7",
                "verbose": True,
                "tags": [1, 2],
                "owner": {"id": "", "region": "eu"},
                "kind": "BOOK",
                "limit": {"value": 5},
            },
        )
        # Kong's boolean rule for query arguments: only "0" and "false" are false
        for value, expected in (("0", False), ("false", False), ("true", True), ("1", True)):
            r = await client.get(f"/v1/shelves/s/items/n?verbose={value}")
            assert r.status_code == 200
            assert last(seen)[1]["verbose"] is expected
        # a single value for a repeated field; a number for an enum
        r = await client.get("/v1/shelves/s/items/n?tags=9&kind=2")
        assert last(seen)[1]["tags"] == [9] and last(seen)[1]["kind"] == "TOOL"

    run(gateway_config(server.port), test)


def test_additional_bindings_and_nested_variables(server: GrpcServer, seen: Recorder) -> None:
    async def test(client: httpx.AsyncClient) -> None:
        r = await client.get("/v1/legacy/items/a/b?revision=3")
        assert r.status_code == 200
        assert last(seen)[1]["name"] == "items/a/b" and last(seen)[1]["revision"] == "3"
        r = await client.get("/v1/by-owner/o-7/us")
        assert r.status_code == 200
        assert last(seen)[1]["owner"] == {"id": "o-7", "region": "us"}
        assert r.json()["owner"] == {"id": "o-7", "region": ""}
        r = await client.delete("/v1/shelves/3/items/9")
        assert (r.status_code, r.json()) == (200, {})
        assert last(seen) == ("DeleteItem", {**_empty_get(), "name": "shelves/3/items/9"})

    run(gateway_config(server.port), test)


def _empty_get() -> dict[str, Any]:
    return {
        "shelf": "",
        "name": "",
        "revision": "0",
        "verbose": False,
        "tags": [],
        "kind": "KIND_UNSPECIFIED",
    }


def test_post_with_a_body_field_and_patch_with_the_whole_body(
    server: GrpcServer, seen: Recorder
) -> None:
    async def test(client: httpx.AsyncClient) -> None:
        body = {"name": "lamp", "price": "12", "labels": ["x"], "created": "2020-01-01T00:00:00Z"}
        r = await client.post("/v1/shelves/s9/items?shelf=ignored", json=body)
        assert r.status_code == 200, r.text
        assert r.json()["name"] == "s9/lamp" and r.json()["price"] == 12
        assert r.json()["created"] == "2020-01-01T00:00:00Z"
        assert last(seen)[1]["shelf"] == "s9"
        # body "*": the body's fields over the path's; query arguments are not read
        r = await client.patch(
            "/v1/items/old:update?price=99", json={"price": 4, "kind": "BOOK", "stock": {"k": 1}}
        )
        assert r.status_code == 200, r.text
        assert r.json()["name"] == "old" and r.json()["price"] == 4
        assert r.json()["kind"] == "BOOK" and r.json()["stock"] == {"k": 1}
        r = await client.patch("/v1/items/old:update", json={"name": "new", "unknown": 1})
        assert r.json()["name"] == "new"
        # no body at all: the path's fields only
        r = await client.patch("/v1/items/only:update")
        assert (r.status_code, r.json()["name"]) == (200, "only")

    run(gateway_config(server.port), test)


def test_error_status_mapped_and_kongs_refusals(server: GrpcServer, seen: Recorder) -> None:
    async def test(client: httpx.AsyncClient) -> None:
        r = await client.get("/v1/fail/x")
        assert r.status_code == 404
        assert r.headers["grpc-status"] == "5"
        assert r.headers["grpc-message"] == "no such item"
        assert r.headers["content-type"] == "application/json"
        assert r.content == b""
        before = len(seen.requests)
        refusals = [
            ("GET", "/v1/nope", None, 'failed to transcode .proto file Unknown path "/v1/nope"'),
            ("PUT", "/v1/x", None, 'failed to transcode .proto file Unknown method "put"'),
            ("POST", "/v1/shelves/s/items", b'{"name": ', "decode json err: "),
            ("POST", "/v1/shelves/s/items", b'{"price": "x"}', "failed to encode payload"),
            ("POST", "/v1/shelves/s/items", b'{"name": null}', "failed to encode payload"),
            ("PATCH", "/v1/items/a:update", b'"text"', "body must be a table"),
            (
                "GET",
                "/v1/shelves/s/items/n?revision=1&revision=2",
                None,
                "failed to encode payload",
            ),
            ("GET", "/v1/shelves/s/items/n?revision=abc", None, "failed to encode payload"),
        ]
        for method, path, content, text in refusals:
            r = await client.request(method, path, content=content)
            assert r.status_code == 400, (path, r.text)
            assert r.text.startswith(text), (path, r.text)
            assert r.headers["access-control-allow-origin"] == "*"
        assert len(seen.requests) == before  # none reached the server

    run(gateway_config(server.port), test)


def test_options_preflight_and_no_proto(server: GrpcServer) -> None:
    async def test(client: httpx.AsyncClient) -> None:
        r = await client.options("/anything")
        assert (r.status_code, r.content) == (200, b"OK")
        assert r.headers["content-type"] == "application/json"
        assert r.headers["access-control-allow-methods"] == "GET,POST,PATCH,DELETE"
        assert r.headers["access-control-allow-headers"] == "content-type"
        assert r.headers.get_list("access-control-allow-origin") == ["*"]
        r = await client.get("/v1/shelves/s/items/n")
        assert r.status_code == 400
        assert r.text == "transcoding requests require a .proto file defining the service"

    run(gateway_config(server.port, proto=None), test)


def test_server_streaming_answers_concatenated_json(server: GrpcServer) -> None:
    async def test(client: httpx.AsyncClient) -> None:
        r = await client.get("/v1/watch/any/w")
        assert r.status_code == 200
        decoder = json.JSONDecoder()
        text, items = r.text, []
        while text:
            item, end = decoder.raw_decode(text)
            items.append((item["name"], item["price"]))
            text = text[end:]
        assert items == [("w-0", 0), ("w-1", 1), ("w-2", 2)]

    run(gateway_config(server.port), test)


# -- grpcs ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_server(classes: dict[str, Any], seen: Recorder) -> Iterator[GrpcServer]:
    pki = Pki("grpc-gateway test CA")
    cert, key = pki.issue("localhost", dns="localhost", ip="127.0.0.1")
    creds = grpc.ssl_server_credentials([(key.encode(), cert.encode())])
    s = GrpcServer(creds, extra=_handlers(classes, seen)).start()
    yield s
    s.stop()


def test_grpcs_service(tls_server: GrpcServer, seen: Recorder) -> None:
    async def test(client: httpx.AsyncClient) -> None:
        r = await client.get("/v1/shelves/tls/items/t")
        assert r.status_code == 200, r.text
        assert r.json()["name"] == "t"
        assert last(seen)[1]["shelf"] == "tls"

    run(gateway_config(tls_server.port, protocol="grpcs"), test)


# -- a real gateway process ----------------------------------------------------------------------


def test_process_get_post_and_error(
    server: GrpcServer, seen: Recorder, tmp_path_factory: pytest.TempPathFactory
) -> None:
    gw = GatewayProcess(
        tmp_path_factory.mktemp("grpc-gateway"), gateway_config(server.port)
    ).start()
    try:
        r = httpx.get(gw.url("/v1/shelves/p/items/granian?revision=5"), timeout=10)
        assert r.status_code == 200, r.text
        assert r.json() == {"name": "granian", "owner": {"id": "", "region": ""}, **GET_ANSWER}
        assert last(seen)[1]["revision"] == "5"
        r = httpx.post(gw.url("/v1/shelves/p/items"), json={"name": "x"}, timeout=10)
        assert (r.status_code, r.json()["name"]) == (200, "p/x")
        r = httpx.get(gw.url("/v1/fail/x"), timeout=10)
        assert (r.status_code, r.content) == (404, b"")
        r = httpx.get(gw.url("/v2/none"), timeout=10)
        assert r.status_code == 400
        assert r.text == 'failed to transcode .proto file Unknown path "/v2/none"'
    finally:
        gw.stop()
