"""grpc-web's JSON transcoding (``proto``): the .proto reader, the protobuf <-> JSON codec checked
against the reference protobuf library (descriptors built from what the reader read, so both
sides use the same schema), and JSON calls through the gateway to a real gRPC server that
answers with messages the protobuf library encodes.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory

from fastkong.plugins.bundled import _proto, _proto_json
from fastkong.proxy.app import Gateway
from tests.grpc_server import GrpcServer
from tests.helpers import plugin_config_errors
from tests.plugins.test_grpc_web import call, frame, make_gateway, unbase64, unframe

PROTOS = Path(__file__).parent / "protos"
GREETER = str(PROTOS / "greeter.proto")

# -- descriptors for the reference library, from what the reader read ---------------------------

_TYPES = {
    "double": 1,
    "float": 2,
    "int64": 3,
    "uint64": 4,
    "int32": 5,
    "fixed64": 6,
    "fixed32": 7,
    "bool": 8,
    "string": 9,
    "message": 11,
    "bytes": 12,
    "uint32": 13,
    "enum": 14,
    "sfixed32": 15,
    "sfixed64": 16,
    "sint32": 17,
    "sint64": 18,
}


def _entry_name(field: _proto.Field) -> str:
    return "".join(p[:1].upper() + p[1:] for p in field.name.split("_")) + "Entry"


def _field(out: Any, field: _proto.Field, parent: str) -> None:
    fd = out.field.add(name=field.name, number=field.number, json_name=field.json_name)
    fd.label = 3 if field.repeated else 1
    fd.type = _TYPES[field.kind]
    if field.map is not None:
        fd.type_name = f".{parent}.{_entry_name(field)}"
        entry = out.nested_type.add(name=_entry_name(field))
        entry.options.map_entry = True
        for part in field.map:
            _field(entry, part, f"{parent}.{_entry_name(field)}")
    elif field.message is not None:
        fd.type_name = "." + field.message.full_name
    elif field.enum is not None:
        fd.type_name = "." + field.enum.full_name
    if not field.packed:
        fd.options.packed = False


def _message(out: Any, message: _proto.Message, protos: _proto.ProtoSet) -> None:
    oneofs: dict[str, int] = {}
    for field in message.fields:
        _field(out, field, message.full_name)
        fd = out.field[-1]
        if field.oneof is not None:
            if field.oneof not in oneofs:
                oneofs[field.oneof] = len(out.oneof_decl)
                out.oneof_decl.add(name=field.oneof)
            fd.oneof_index = oneofs[field.oneof]
    for field in message.fields:  # proto3 optional: synthetic oneofs, after the real ones
        if field.presence and field.oneof is None:
            fd = next(f for f in out.field if f.name == field.name)
            fd.proto3_optional = True
            fd.oneof_index = len(out.oneof_decl)
            out.oneof_decl.add(name="_" + field.name)
    prefix = message.full_name + "."
    for name, nested in protos.messages.items():
        if name.startswith(prefix) and "." not in name[len(prefix) :]:
            _message(out.nested_type.add(name=name[len(prefix) :]), nested, protos)
    for name, enum in protos.enums.items():
        if name.startswith(prefix) and "." not in name[len(prefix) :]:
            _enum(out.enum_type.add(name=name[len(prefix) :]), enum)


def _enum(out: Any, enum: _proto.Enum) -> None:
    if len(set(enum.numbers.values())) < len(enum.numbers):
        out.options.allow_alias = True
    for name, number in enum.numbers.items():
        out.value.add(name=name, number=number)


def reference_classes(protos: _proto.ProtoSet) -> dict[str, Any]:
    """Message classes of the reference library for every message the reader read."""
    pool = descriptor_pool.DescriptorPool()
    files: dict[str, Any] = {}
    names = list(protos.messages) + list(protos.enums)
    top = [n for n in names if not any(n.startswith(o + ".") for o in protos.messages)]
    for name in top:
        package = name.rpartition(".")[0]
        if package not in files:
            files[package] = descriptor_pb2.FileDescriptorProto(
                name=f"{package or 'root'}.proto", package=package, syntax="proto3"
            )
    for name in top:
        package, _, short = name.rpartition(".")
        if name in protos.messages:
            _message(files[package].message_type.add(name=short), protos.messages[name], protos)
        else:
            _enum(files[package].enum_type.add(name=short), protos.enums[name])
    for package, fdp in files.items():
        text = str(fdp)
        fdp.dependency.extend(
            f"{p or 'root'}.proto" for p in files if p != package and f'"{"." + p}.' in text
        )
    pending = list(files.values())
    while pending:  # add each file once the ones it depends on are in
        for fdp in list(pending):
            try:
                pool.Add(fdp)
                pending.remove(fdp)
            except TypeError:
                continue
    return {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(name))
        for name in protos.messages
    }


@pytest.fixture(scope="module")
def protos() -> _proto.ProtoSet:
    return _proto.load(GREETER)


@pytest.fixture(scope="module")
def classes(protos: _proto.ProtoSet) -> dict[str, Any]:
    return reference_classes(protos)


# -- the reader -----------------------------------------------------------------------------------


def test_reader_finds_methods_types_and_imports(protos: _proto.ProtoSet) -> None:
    request = protos.messages["demo.v1.HelloRequest"]
    reply = protos.messages["demo.v1.HelloReply"]
    assert protos.methods == {
        "/demo.v1.Greeter/SayHello": (request, reply),
        "/demo.v1.Greeter/Count": (request, reply),
        "/demo.v1.Greeter/Absolute": (request, reply),
    }
    fields = request.by_json
    assert fields["meta"].message is protos.messages["common.Meta"]  # from the import
    assert fields["byId"] is fields["by_id"] and fields["byId"].map is not None
    assert fields["inner"].message is protos.messages["demo.v1.HelloRequest.Inner"]
    assert reply.by_json["echo"].message is protos.messages["demo.v1.HelloRequest.Inner"]
    assert [f.name for f in request.fields if f.oneof == "choice"] == ["text", "number", "nested"]
    assert fields["maybe"].presence and not fields["times"].presence
    assert not fields["loose"].packed and fields["numbers"].packed
    inner = protos.messages["demo.v1.HelloRequest.Inner"]
    assert inner.by_json["customName"].name == "weird_json"
    assert protos.enums["demo.v1.Mood"].numbers == {
        "MOOD_UNSPECIFIED": 0,
        "HAPPY": 1,
        "GLAD": 1,
        "SAD": 2,
    }


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ('syntax = "proto2";', "only proto3 is read"),
        ('syntax = "proto3";\nmessage A { Missing b = 1; }', "unknown type 'Missing'"),
        ('syntax = "proto3";\n\nmessage A { int32 b = 1; int32 c = 1; }', ":3: field number 1"),
        ('syntax = "proto3";\nimport "nowhere.proto";', "cannot read"),
        ('syntax = "proto3";\nmessage A { required int32 b = 1; }', "unsupported 'required'"),
        ('syntax = "proto3";\nmessage A { int32 b = 1 }', "expected ';'"),
        ('syntax = "proto3";\nmessage A { map<float, int32> m = 1; }', "map key type"),
    ],
)
def test_reader_refuses_with_file_and_line(tmp_path: Path, text: str, error: str) -> None:
    path = tmp_path / "bad.proto"
    path.write_text(text)
    with pytest.raises(_proto.ProtoError) as info:
        _proto.load(str(path))
    assert error in str(info.value)


def test_config_names_a_bad_proto_with_its_path(tmp_path: Path) -> None:
    errors = plugin_config_errors("grpc-web", {"proto": str(tmp_path / "missing.proto")})
    assert errors == [
        f"plugins[0].config.proto: cannot load the .proto file: cannot read "
        f"{tmp_path / 'missing.proto'}: No such file or directory"
    ]


# -- the codec against the reference library ------------------------------------------------------

SAMPLE: dict[str, Any] = {
    "name": "Zoë",
    "times": -3,
    "big": "-9007199254740993",
    "ubig": "18446744073709551615",
    "s32": -17,
    "s64": "-5000000000",
    "f32": 4000000000,
    "f64": "12345678901234",
    "sf32": -2,
    "sf64": "-3",
    "flag": True,
    "ratio": 0.1,
    "precise": 2.5e-300,
    "blob": base64.b64encode(b"\x00\xffbytes").decode(),
    "mood": "SAD",
    "numbers": [1, -1, 300],
    "tags": ["a", "", "c"],
    "counts": {"x": 1, "y": 0},
    "byId": {"-7": {"firstName": "n", "moods": ["HAPPY", "SAD"]}},
    "inner": {"firstName": "inner", "mood": "HAPPY", "customName": 7},
    "inners": [{}, {"firstName": "second"}],
    "nested": {"firstName": "in the oneof"},
    "maybe": 0,
    "meta": {"key": "k", "values": ["v1", "v2"]},
    "loose": [5, 6],
    "switches": {"true": "on", "false": "off"},
    "samples": [1.5, "NaN", "-Infinity"],
}


def _same(a: Any, b: Any) -> bool:
    """Equal, NaN equal to NaN."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(a == b)


def test_encode_is_read_back_by_the_reference(protos: _proto.ProtoSet, classes: dict) -> None:
    request = protos.messages["demo.v1.HelloRequest"]
    data = _proto_json.encode(request, SAMPLE)
    reference = classes["demo.v1.HelloRequest"]()
    reference.ParseFromString(data)
    expected = json_format.MessageToDict(reference)
    assert _same(expected, _proto_json.decode(request, data))
    # what the client sent comes back in canonical form
    assert expected["name"] == "Zoë" and expected["mood"] == "SAD"
    assert expected["big"] == "-9007199254740993" and expected["f32"] == 4000000000
    assert expected["maybe"] == 0  # optional: kept at its default
    assert expected["nested"] == {"firstName": "in the oneof"}
    assert expected["inner"]["customName"] == 7
    assert "counts" in expected and expected["counts"] == {"x": 1, "y": 0}


def test_decode_reads_the_references_encoding(protos: _proto.ProtoSet, classes: dict) -> None:
    request = protos.messages["demo.v1.HelloRequest"]
    reference = json_format.ParseDict(SAMPLE, classes["demo.v1.HelloRequest"]())
    data = reference.SerializeToString()
    assert _same(_proto_json.decode(request, data), json_format.MessageToDict(reference))


def test_defaults_are_left_out_and_names_are_json_names(protos: _proto.ProtoSet) -> None:
    request = protos.messages["demo.v1.HelloRequest"]
    value = {"first_name": "x"}
    inner = protos.messages["demo.v1.HelloRequest.Inner"]
    assert _proto_json.decode(inner, _proto_json.encode(inner, value)) == {"firstName": "x"}
    zero = {"name": "", "times": 0, "big": "0", "flag": False, "mood": "MOOD_UNSPECIFIED"}
    assert _proto_json.encode(request, zero) == b""
    assert _proto_json.decode(request, b"") == {}


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ({"nope": 1}, "has no field 'nope'"),
        ({"times": 2**31}, "out of range for int32"),
        ({"times": 1.5}, "is not an integer"),
        ({"mood": "ANGRY"}, "is not a value of demo.v1.Mood"),
        ({"blob": "***"}, "invalid base64"),
        ({"text": "a", "number": 1}, "oneof choice is already set"),
        ({"numbers": 3}, "expected an array"),
        ([1], "expected an object"),
    ],
)
def test_encode_refuses(protos: _proto.ProtoSet, value: Any, error: str) -> None:
    with pytest.raises(_proto_json.TranscodeError) as info:
        _proto_json.encode(protos.messages["demo.v1.HelloRequest"], value)
    assert error in str(info.value)


# -- through the gateway ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def json_server(classes: dict) -> Iterator[GrpcServer]:
    request_class = classes["demo.v1.HelloRequest"]
    reply_class = classes["demo.v1.HelloReply"]

    async def say_hello(data: bytes, context: grpc.aio.ServicerContext) -> bytes:
        request = request_class.FromString(data)
        reply = reply_class(message=f"hello {request.name}", index=request.times)
        if request.HasField("inner"):
            reply.echo.CopyFrom(request.inner)
        return bytes(reply.SerializeToString())

    async def count(data: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        request = request_class.FromString(data)
        for i in range(request.times):
            yield bytes(reply_class(message=request.name, index=i).SerializeToString())
            await asyncio.sleep(0.01)
        await context.abort(grpc.StatusCode.OUT_OF_RANGE, "counted")

    server = GrpcServer(
        extra={
            "/demo.v1.Greeter/SayHello": grpc.unary_unary_rpc_method_handler(say_hello),
            "/demo.v1.Greeter/Count": grpc.unary_stream_rpc_method_handler(count),
        }
    ).start()
    yield server
    server.stop()


def json_config(port: int) -> str:
    return f"""
_format_version: "3.0"
services:
- name: grpc
  url: grpc://127.0.0.1:{port}
  routes:
  - name: web
    paths: [/]
    plugins: [{{name: grpc-web, config: {{proto: "{GREETER}"}}}}]
  - name: prefixed
    paths: [/api]
    plugins: [{{name: grpc-web, config: {{proto: "{GREETER}", pass_stripped_path: true}}}}]
"""


def run(port: int, test: Any) -> None:
    async def main() -> None:
        gw = make_gateway(json_config(port))
        await gw.startup()
        try:
            await test(gw)
        finally:
            await gw.shutdown()
            await asyncio.sleep(0.05)

    asyncio.run(main())


def jframe(value: Any) -> bytes:
    return frame(json.dumps(value).encode())


def test_grpc_web_json_unary(json_server: GrpcServer) -> None:
    async def test(gw: Gateway) -> None:
        request = {"name": "web", "times": 4, "inner": {"firstName": "f", "mood": "HAPPY"}}
        answer = await call(
            gw, "/demo.v1.Greeter/SayHello", jframe(request), "application/grpc-web+json"
        )
        assert answer.status == 200
        assert answer.headers["content-type"] == "application/grpc-web+json"
        frames = unframe(answer.body)
        assert json.loads(frames[0][1]) == {
            "message": "hello web",
            "index": 4,
            "echo": {"firstName": "f", "mood": "HAPPY"},
        }
        assert frames[1] == (0x80, b"grpc-status:0\r\ngrpc-message:\r\n")

    run(json_server.port, test)


def test_grpc_web_text_json_streaming(json_server: GrpcServer) -> None:
    async def test(gw: Gateway) -> None:
        body = base64.b64encode(jframe({"name": "n", "times": 3}))
        answer = await call(
            gw, "/api/demo.v1.Greeter/Count", body, "application/grpc-web-text+json"
        )
        frames = unframe(unbase64(answer.body))
        assert [json.loads(p) for _, p in frames[:-1]] == [
            {"message": "n"},  # index 0 is the default: left out
            {"message": "n", "index": 1},
            {"message": "n", "index": 2},
        ]
        assert frames[-1] == (0x80, b"grpc-status:11\r\ngrpc-message:counted\r\n")

    run(json_server.port, test)


def test_plain_json_has_no_framing(json_server: GrpcServer) -> None:
    async def test(gw: Gateway) -> None:
        answer = await call(
            gw, "/demo.v1.Greeter/SayHello", b'{"name":"plain"}', "application/json"
        )
        assert answer.headers["content-type"] == "application/json"
        assert json.loads(answer.body) == {"message": "hello plain"}

    run(json_server.port, test)


def test_json_refusals(json_server: GrpcServer) -> None:
    async def test(gw: Gateway) -> None:
        answer = await call(gw, "/demo.v1.Greeter/Nope", b"{}", "application/json")
        assert answer.status == 400
        assert answer.body == b'Unknown path "/demo.v1.Greeter/Nope"'
        answer = await call(gw, "/demo.v1.Greeter/SayHello", b"{not json", "application/json")
        assert answer.status == 400
        assert answer.body.startswith(b"invalid JSON request: ")
        answer = await call(
            gw, "/demo.v1.Greeter/SayHello", jframe({"times": "x"}), "application/grpc-web+json"
        )
        assert answer.status == 400
        assert b"demo.v1.HelloRequest.times" in answer.body
        # binary still passes with proto set
        raw = frame(b"\x0a\x03bin")
        answer = await call(gw, "/demo.v1.Greeter/SayHello", raw, "application/grpc-web")
        assert unframe(answer.body)[0] == (0, b"\x0a\x09hello bin")

    run(json_server.port, test)
