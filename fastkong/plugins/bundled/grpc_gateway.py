"""grpc-gateway: REST/JSON clients in front of a gRPC service (``kong:kong/plugins/grpc-gateway``,
3.9).

Priority 998. The .proto file named by ``proto`` carries ``option (google.api.http) = {...}`` on
its rpc methods; it is read at config load (:mod:`._proto`, with fastkong's include files for
``google/api/annotations.proto`` and the well-known types) and its rules compiled into
bindings (:mod:`._http_rule`). Per request, as Kong's ``handler.lua`` and ``deco.lua`` do:

* ``Access-Control-Allow-Origin: *`` on every answer; an ``OPTIONS`` request answered at once
  (200 ``OK`` with Kong's CORS headers).
* The request's method and path pick the first binding that matches; none: Kong's 400 (``failed
  to transcode .proto file Unknown method "put"`` or ``... Unknown path "/x"``).
* The request message is built from the path variables, the JSON body or the query arguments
  (:func:`._http_rule.build_request`), encoded, framed, and sent as ``POST /pkg.Service/Method``
  with ``Content-Type: application/grpc`` and ``TE: trailers`` and no query string; over HTTP/2
  when the service is ``grpc``/``grpcs`` (``ctx.upstream_http2``, as grpc-web asks).
* The answer: ``Content-Type: application/json``; a ``grpc-status`` in the response head (a
  trailers-only answer, which is how a gRPC error comes) sets the HTTP status by Kong's table,
  500 for a code it does not name; each whole message is printed as JSON the way Kong's
  lua-protobuf + cjson print it (:data:`._proto_json.KONG_GATEWAY`), one after the other.
"""

from __future__ import annotations

import logging
import weakref
from typing import TYPE_CHECKING, Any, Final

import msgspec

from fastkong.plugins.base import Exit, Plugin
from fastkong.plugins.bundled import _http_rule, _proto, _proto_json
from fastkong.plugins.bundled.grpc_web import frame, load_proto, whole_messages
from fastkong.plugins.registry import ALL_PROTOCOLS, register_plugin

if TYPE_CHECKING:
    from fastkong.plugins.context import RequestContext
    from fastkong.runtime import Runtime

log = logging.getLogger("fastkong.plugins")

TRANSCODING: Final = "transcoding requests require a .proto file defining the service"
ENCODE_FAILED: Final = "failed to encode payload"
#: Kong's map from gRPC status codes to HTTP statuses (``handler.lua``); others give 500.
GRPC_TO_HTTP: Final = {
    0: 200,
    1: 499,
    2: 500,
    3: 400,
    4: 504,
    5: 404,
    6: 409,
    7: 403,
    8: 429,
    9: 400,
    10: 409,
    11: 400,
    12: 500,
    13: 500,
    14: 503,
    15: 500,
    16: 401,
}
#: Kong's CORS_HEADERS for the OPTIONS answer (its Content-Type too).
_PREFLIGHT: Final = [
    (b"access-control-allow-origin", b"*"),
    (b"access-control-allow-methods", b"GET,POST,PATCH,DELETE"),
    (b"access-control-allow-headers", b"content-type"),
]
_ORIGIN: Final = b"access-control-allow-origin"
_STATE: Final = "grpc-gateway"
_GRPC_SCHEMES: Final = frozenset({"grpc", "grpcs"})
_DROPPED: Final = frozenset({b"content-type", b"content-length", _ORIGIN})
_json_decode = msgspec.json.Decoder().decode
_json_encode = msgspec.json.Encoder().encode


class GrpcGatewayConfig(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    proto: str | None = None


class Transcoding:
    """One request's answer side: the output message and the bytes of a message not whole
    yet."""

    __slots__ = ("output", "pending")

    def __init__(self, output: _proto.Message) -> None:
        self.output = output
        self.pending = b""

    def __repr__(self) -> str:
        return f"<Transcoding {self.output.full_name} pending={len(self.pending)}>"

    def to_json(self, chunk: bytes, last: bool) -> bytes:
        """The whole messages received so far as JSON, one after the other (Kong concatenates
        a stream's); at the end, bytes that are no whole message go out as they are (Kong's
        ``get_raw_downstream_body``)."""
        messages, body = whole_messages(self.pending + chunk)
        out = []
        for message in messages:
            try:
                value = _proto_json.decode(self.output, message, _proto_json.KONG_GATEWAY)
            except _proto_json.TranscodeError as exc:
                log.error("grpc-gateway: the upstream's message does not decode: %s", exc)
                continue
            out.append(_json_encode(value))
        self.pending = b"" if last else body
        if last:
            out.append(body)
        return b"".join(out)


def grpc_to_http(value: bytes) -> int:
    """Kong's HTTP status for a ``grpc-status`` header value (500 for one it does not map)."""
    try:
        return GRPC_TO_HTTP.get(int(value), 500)
    except ValueError:
        return 500


#: Compiled bindings per read .proto (grpc-web's cache keeps the ProtoSet per file version).
_BINDINGS: weakref.WeakKeyDictionary[_proto.ProtoSet, _http_rule.Bindings] = (
    weakref.WeakKeyDictionary()
)


def load_bindings(path: str) -> _http_rule.Bindings:
    """The .proto at ``path`` (cached by version) and its compiled bindings."""
    protos = load_proto(path)
    found = _BINDINGS.get(protos)
    if found is None:
        found = _BINDINGS[protos] = _http_rule.compile_bindings(protos)
    return found


@register_plugin
class GrpcGateway(Plugin):
    name = "grpc-gateway"
    priority = 998
    allowed_protocols = ALL_PROTOCOLS
    Config = GrpcGatewayConfig

    def __init__(self, config: GrpcGatewayConfig, runtime: Runtime, entity: Any) -> None:
        super().__init__(config, runtime, entity)
        self.bindings = load_bindings(config.proto) if config.proto is not None else None

    def __repr__(self) -> str:
        return f"<GrpcGateway id={self.id} bindings={self.bindings!r}>"

    @classmethod
    def check(cls, config: Any) -> list[tuple[str, str]]:
        if config.proto is not None:
            try:
                load_bindings(config.proto)
            except _proto.ProtoError as exc:
                return [("proto", f"cannot load the .proto file: {exc}")]
        return []

    async def access(self, ctx: RequestContext) -> Exit | None:
        if ctx.method == "OPTIONS":
            return Exit(200, b"OK", list(_PREFLIGHT), "application/json")
        if self.bindings is None:
            return Exit(400, TRANSCODING.encode())
        try:
            binding, variables = self.bindings.match(ctx.method, ctx.path)
            body = await self._request_body(ctx, binding)
            payload = _http_rule.build_request(binding, variables, ctx.query, body)
        except _http_rule.RequestError as exc:
            return Exit(400, str(exc).encode())
        try:
            message = _proto_json.encode(binding.rpc.input, payload)
        except _proto_json.TranscodeError as exc:
            log.error("grpc-gateway: %s", exc)
            return Exit(400, ENCODE_FAILED.encode())
        ctx.body = frame(0, message)
        ctx.plugin_data[_STATE] = Transcoding(binding.rpc.output)
        ctx.set_upstream_raw(b"content-type", b"application/grpc")
        ctx.set_upstream_raw(b"te", b"trailers")
        ctx.upstream_method = "POST"
        ctx.upstream_path = binding.rpc.path
        ctx.upstream_query = b""
        service = ctx.service
        if service is not None and service.scheme in _GRPC_SCHEMES:
            ctx.upstream_http2 = True
        return None

    async def _request_body(self, ctx: RequestContext, binding: _http_rule.Binding) -> Any:
        """The parsed JSON body for a binding with ``body`` (None when empty or not used)."""
        raw = await ctx.read_body()
        if binding.body is None or not raw:
            return None
        try:
            return _json_decode(raw)
        except msgspec.DecodeError as exc:
            raise _http_rule.RequestError(f"decode json err: {exc}") from None

    def response(
        self, ctx: RequestContext, status: int, headers: list[tuple[bytes, bytes]]
    ) -> None:
        state = ctx.plugin_data.get(_STATE)
        transcoded = state is not None and ctx.proxied
        kept = []
        for name, value in headers:
            lower = name.lower()
            if lower == b"grpc-status" and ctx.method != "OPTIONS":
                ctx.status = grpc_to_http(value)
            if lower == _ORIGIN or (transcoded and lower in _DROPPED):
                continue
            kept.append((name, value))
        kept.append((_ORIGIN, b"*"))
        if transcoded:
            kept.append((b"content-type", b"application/json"))
        headers[:] = kept

    def body(self, ctx: RequestContext, chunk: bytes, last: bool) -> bytes:
        state: Transcoding | None = ctx.plugin_data.get(_STATE)
        if state is None or not ctx.proxied:
            return chunk
        return state.to_json(chunk, last)


__all__ = ["GRPC_TO_HTTP", "GrpcGateway", "GrpcGatewayConfig", "grpc_to_http"]
