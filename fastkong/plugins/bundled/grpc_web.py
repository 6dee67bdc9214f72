"""grpc-web: gRPC-Web clients in front of a gRPC service (``kong:kong/plugins/grpc-web``, 3.9).

Priority 3. A gRPC-Web client (a browser) speaks HTTP/1.1 or HTTP/2 without trailers: its bodies
are ``application/grpc-web`` (binary) or ``application/grpc-web-text`` (the same, base64), and
the answer's gRPC status travels in the body, as a last frame with flag ``0x80`` holding
``grpc-status:<n>\\r\\ngrpc-message:<text>\\r\\n``. This plugin translates, as Kong's does:

* access: ``Access-Control-Allow-Origin`` set from ``allow_origin_header`` on the answer; an
  ``OPTIONS`` request answered at once (200 ``OK``, Kong's CORS headers); otherwise the body
  read whole and decoded (base64 in text mode; JSON to protobuf with ``proto``), sent up with
  ``Content-Type: application/grpc`` and ``TE: trailers``, to the gRPC method path the client
  named (or, with ``pass_stripped_path``, to the path the route computes).
* When the service is ``grpc``/``grpcs`` the request goes over HTTP/2 (``ctx.upstream_http2``,
  see :mod:`fastkong.proxy.h2exchange`), as nginx's ``grpc_pass`` sends it; any other service
  gets the translated request over HTTP/1.1, as Kong's ``proxy_pass`` does.
* response: ``Content-Type`` becomes the client's; each body chunk is passed on as it comes
  (base64-encoded on its own in text mode, as Kong encodes each chunk nginx hands it; with
  JSON, each whole message converted as soon as its last byte came), and the last one is
  followed by the trailer frame, its status and message from the upstream's trailers, else its
  headers (a trailers-only answer), else ``0`` and empty.

The content types are Kong's table (``deco.lua``): binary, text, ``+proto``, ``+json``,
``-text+json`` and ``application/json`` (JSON without framing, no trailer frame). The JSON ones
need ``proto``, the .proto file describing the service (read at config load by
:mod:`._proto`, converted by :mod:`._proto_json`); without it, or for a type Kong's table does
not name, the request is refused with Kong's 400.
"""

from __future__ import annotations

import binascii
import logging
import os
import re
import struct
from typing import TYPE_CHECKING, Any, Final

import msgspec

from fastkong._core import load as load_core
from fastkong.plugins.base import Exit, Plugin
from fastkong.plugins.bundled import _proto, _proto_json
from fastkong.plugins.registry import ALL_PROTOCOLS, register_plugin

if TYPE_CHECKING:
    from fastkong._core import _uri_py as uri
    from fastkong.plugins.context import RequestContext
    from fastkong.runtime import Runtime
else:
    uri = load_core("uri")

log = logging.getLogger("fastkong.plugins")

#: Kong's deco.lua tables, as (base64, gRPC framing, message encoding) per content type.
MODES: Final = {
    "application/grpc-web": (False, True, "proto"),
    "application/grpc-web-text": (True, True, "proto"),
    "application/grpc-web+proto": (False, True, "proto"),
    "application/grpc-web-text+proto": (True, True, "proto"),
    "application/grpc-web+json": (False, True, "json"),
    "application/grpc-web-text+json": (True, True, "json"),
    "application/json": (False, False, "json"),
}
#: A type Kong's tables do not name: no base64, no framing, no encoding (nil in Lua).
_UNNAMED: Final = (False, False, None)
TRANSCODING: Final = "transcoding requests require a .proto file defining the service"
BAD_BASE64: Final = "invalid base64 in the grpc-web-text body"
_STATE: Final = "grpc-web"
_ORIGIN: Final = b"access-control-allow-origin"
_PREFLIGHT_TYPE: Final = "application/grpc-web-text+proto"
_GRPC_SCHEMES: Final = frozenset({"grpc", "grpcs"})
#: Kong's ``kong.response.exit`` on a gRPC request (HTTP/2, ``application/grpc*``): the status
#: goes in ``grpc-status``/``grpc-message`` headers (its ``HTTP_TO_GRPC_STATUS`` for 400).
_GRPC_INVALID_ARGUMENT: Final = b"3"
#: Padding ends a base64 segment: a text body may be several, each padded on its own.
_SEGMENT: Final = re.compile(rb"[^=]*=*")
_json_decode = msgspec.json.Decoder().decode
_json_encode = msgspec.json.Encoder().encode


class GrpcWebConfig(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    proto: str | None = None
    pass_stripped_path: bool | None = None
    allow_origin_header: str | None = "*"


class Translation:
    """One request's gRPC-Web side: the client's content type and encodings, the output message
    type (JSON), the bytes of a message not whole yet, and the grpc-status/grpc-message the
    response head carried (a trailers-only answer)."""

    __slots__ = ("mimetype", "text", "framing", "output", "pending", "status", "message", "failed")

    def __init__(
        self, mimetype: str, text: bool, framing: bool, output: _proto.Message | None
    ) -> None:
        self.mimetype = mimetype.encode("latin-1")
        self.text = text
        self.framing = framing
        self.output = output
        self.pending = b""
        self.status: bytes | None = None
        self.message: bytes | None = None
        #: An upstream message did not decode: the answer's status is 13 whatever it said.
        self.failed = False

    def __repr__(self) -> str:
        return f"<Translation {self.mimetype.decode()} status={self.status!r}>"

    def to_json(self, chunk: bytes) -> bytes:
        """The whole messages received so far, as JSON (framed for grpc-web+json)."""
        assert self.output is not None
        messages, self.pending = whole_messages(self.pending + chunk)
        out = []
        for message in messages:
            try:
                data = _json_encode(_proto_json.decode(self.output, message))
            except _proto_json.TranscodeError as exc:
                # Kong fails in its body filter; the client gets the status instead.
                log.error("grpc-web: the upstream's message does not decode: %s", exc)
                self.status, self.message = b"13", b"invalid message from upstream"
                self.failed = True
                continue
            out.append(frame(0, data) if self.framing else data)
        return b"".join(out)


def whole_messages(body: bytes) -> tuple[list[bytes], bytes]:
    """The payloads of the whole length-prefixed messages ``body`` starts with, and the bytes
    after them (the start of a message still arriving)."""
    messages = []
    while len(body) >= 5:
        (size,) = struct.unpack_from(">I", body, 1)
        if len(body) < 5 + size:
            break
        messages.append(body[5 : 5 + size])
        body = body[5 + size :]
    return messages, body


def frame(flags: int, payload: bytes) -> bytes:
    """A gRPC length-prefixed message: flags byte, big-endian length, payload."""
    return struct.pack(">BI", flags, len(payload)) + payload


def unframe(body: bytes) -> bytes | None:
    """The first message of a framed body (Kong's ``grpc.unframe``), None when there is none."""
    if len(body) < 5:
        return None
    (size,) = struct.unpack_from(">I", body, 1)
    return body[5 : 5 + size] if len(body) >= 5 + size else None


def trailer_frame(status: bytes, message: bytes) -> bytes:
    """The gRPC-Web trailer frame as Kong writes it (two lines, no space after the colon)."""
    return frame(0x80, b"grpc-status:%s\r\ngrpc-message:%s\r\n" % (status, message))


def decode_text(body: bytes) -> bytes:
    """A grpc-web-text body: base64, possibly several padded segments one after the other (a
    client may encode each message apart). ``binascii.Error`` when it is not base64."""
    body = b"".join(body.split())
    if b"=" not in body.rstrip(b"="):
        return binascii.a2b_base64(body, strict_mode=True) if body else b""
    return b"".join(
        binascii.a2b_base64(part, strict_mode=True) for part in _SEGMENT.findall(body) if part
    )


def encode_text(chunk: bytes) -> bytes:
    return binascii.b2a_base64(chunk, newline=False) if chunk else b""


def _find(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


_PROTOS: dict[tuple[str, int, int], _proto.ProtoSet] = {}


def load_proto(path: str) -> _proto.ProtoSet:
    """The .proto file at ``path`` read (once per version of the file: config load reads it
    to check it, then each snapshot's plugin takes the same)."""
    try:
        stat = os.stat(path)
    except OSError as exc:
        raise _proto.ProtoError(f"cannot read {path}: {exc.strerror or exc}") from None
    key = (os.path.abspath(path), stat.st_mtime_ns, stat.st_size)
    found = _PROTOS.get(key)
    if found is None:
        if len(_PROTOS) > 64:
            _PROTOS.clear()
        found = _PROTOS[key] = _proto.load(path)
    return found


@register_plugin
class GrpcWeb(Plugin):
    name = "grpc-web"
    priority = 3
    allowed_protocols = ALL_PROTOCOLS
    Config = GrpcWebConfig

    def __init__(self, config: GrpcWebConfig, runtime: Runtime, entity: Any) -> None:
        super().__init__(config, runtime, entity)
        origin = config.allow_origin_header
        self.origin = origin.encode("latin-1") if origin is not None else None
        self.pass_stripped_path = bool(config.pass_stripped_path)
        self.protos = load_proto(config.proto) if config.proto is not None else None
        # Kong's CORS_HEADERS, and what kong.response.exit adds to an answer whose type is
        # application/grpc*: grpc-status from the HTTP status (200: 0), its message.
        self.preflight = [
            (b"access-control-allow-methods", b"POST"),
            (b"access-control-allow-headers", b"content-type,x-grpc-web,x-user-agent"),
            (b"grpc-status", b"0"),
            (b"grpc-message", b"OK"),
        ]

    def __repr__(self) -> str:
        return (
            f"<GrpcWeb id={self.id} allow_origin={self.origin!r} "
            f"pass_stripped_path={self.pass_stripped_path} proto={self.protos!r}>"
        )

    @classmethod
    def check(cls, config: Any) -> list[tuple[str, str]]:
        if config.proto is not None:
            try:
                load_proto(config.proto)
            except _proto.ProtoError as exc:
                return [("proto", f"cannot load the .proto file: {exc}")]
        return []

    def _route_path(self, ctx: RequestContext) -> str:
        """``$upstream_uri``'s path (pass_stripped_path), else ``kong.request.get_path()``."""
        if not self.pass_stripped_path:
            return ctx.path
        route = ctx.route
        service = route.service
        return uri.upstream_path(
            service.path if service is not None else None,
            ctx.path,
            ctx.match.matched_len,
            route.strip_path,
            route.path_handling,
        )

    async def access(self, ctx: RequestContext) -> Exit | None:
        if ctx.method == "OPTIONS":
            return Exit(200, b"OK", list(self.preflight), _PREFLIGHT_TYPE)
        mimetype = ctx.header("content-type")
        text, framing, encoding = (
            MODES.get(mimetype, _UNNAMED) if mimetype is not None else _UNNAMED
        )
        input_type = output_type = None
        if encoding != "proto":
            if self.protos is None:
                return self.refuse(ctx, TRANSCODING)
            path = self._route_path(ctx)
            types = self.protos.methods.get(path)
            if types is None:
                return self.refuse(ctx, f'Unknown path "{path}"')
            input_type, output_type = types
        body = await ctx.read_body()
        if text:
            try:
                body = decode_text(body)
            except (binascii.Error, ValueError):
                return self.refuse(ctx, BAD_BASE64)
        if encoding == "json":
            assert input_type is not None
            message = unframe(body) if framing else body
            try:
                value = _json_decode(message or b"null")
                body = frame(0, _proto_json.encode(input_type, value))
            except (msgspec.DecodeError, _proto_json.TranscodeError) as exc:
                return self.refuse(ctx, f"invalid JSON request: {exc}")
        ctx.body = body
        ctx.plugin_data[_STATE] = Translation(mimetype or "", text, framing, output_type)
        ctx.set_upstream_raw(b"content-type", b"application/grpc")
        ctx.set_upstream_raw(b"te", b"trailers")
        service = ctx.service
        if service is not None and service.scheme in _GRPC_SCHEMES:
            # nginx's grpc_pass sends the request's own URI, unless the plugin rewrote it to
            # the route's upstream URI (pass_stripped_path); proxy_pass always sends the latter.
            ctx.upstream_http2 = True
            if not self.pass_stripped_path:
                ctx.upstream_path = ctx.raw_path.decode("latin-1")
        return None

    def refuse(self, ctx: RequestContext, message: str) -> Exit:
        """Kong's ``kong.response.exit(400, message)``: the message as the body, untyped; on a
        gRPC request (HTTP/2 and ``application/grpc*``) in grpc-status/grpc-message instead."""
        mimetype = ctx.header("content-type") or ""
        if ctx.scope.get("http_version") == "2" and mimetype.startswith("application/grpc"):
            return Exit(
                400,
                b"",
                [(b"grpc-status", _GRPC_INVALID_ARGUMENT), (b"grpc-message", message.encode())],
            )
        return Exit(400, message.encode())

    def response(
        self, ctx: RequestContext, status: int, headers: list[tuple[bytes, bytes]]
    ) -> None:
        if self.origin is not None:
            # kong.response.set_header in access: the answer's value, whatever came before.
            headers[:] = [h for h in headers if h[0].lower() != _ORIGIN]
            headers.append((_ORIGIN, self.origin))
        state: Translation | None = ctx.plugin_data.get(_STATE)
        if state is None or not ctx.proxied:
            return
        kept = []
        for name, value in headers:
            lower = name.lower()
            if lower == b"content-type" or lower == b"content-length":
                continue  # the client's type; the body's size changes
            if lower == b"grpc-status":
                state.status = value
            elif lower == b"grpc-message":
                state.message = value
            kept.append((name, value))
        kept.append((b"content-type", state.mimetype))
        headers[:] = kept

    def body(self, ctx: RequestContext, chunk: bytes, last: bool) -> bytes:
        state: Translation | None = ctx.plugin_data.get(_STATE)
        if state is None or not ctx.proxied or ctx.method != "POST":
            return chunk
        if state.output is not None:
            chunk = state.to_json(chunk)
        if state.text:
            chunk = encode_text(chunk)
        if last and state.framing:
            status, message = state.status, state.message
            trailers = ctx.upstream_trailers
            if trailers is not None and not state.failed:
                status = _find(trailers, b"grpc-status") or status
                message = _find(trailers, b"grpc-message") or message
            end = trailer_frame(status or b"0", message or b"")
            chunk += encode_text(end) if state.text else end
        return chunk


__all__ = ["GrpcWeb", "GrpcWebConfig", "decode_text", "frame", "trailer_frame", "unframe"]
