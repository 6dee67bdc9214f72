"""ai-response-transformer: an LLM rewrites the upstream's response before the client gets it
(Kong 3.9's ``kong/plugins/ai-response-transformer``, over ``kong/llm``).

Priority 768. The access phase checks the request body's size (the limit
ai-request-transformer has: a larger body is a 413) and asks for the upstream's whole answer
(``ctx.buffer_response``). The proxy then makes the upstream request as it makes any (peers,
retries, TLS) and hands the buffered answer to :meth:`AiResponseTransformer.buffered`: the body
(inflated when ``Content-Encoding: gzip``) goes to the LLM with ``prompt`` as the system message
(:class:`~._ai_transformer.Introspector`), and the client gets, as Kong's
``kong.response.exit(status, body, headers)``:

- the upstream's status and headers (without ``Content-Length``, ``Content-Encoding``,
  ``Transfer-Encoding``) and the LLM's content as the body, cut to the first match of
  ``transformation_extract_pattern`` when set;
- with ``parse_llm_response_json_instructions``, the content read as JSON instructions:
  ``status`` (default 200), ``headers`` (over the upstream's), ``body`` (a string as it is, an
  object or array as JSON; without ``body``, the whole instructions object as JSON).

Kong's errors: a failed LLM call is 400 ``{"error":{"message":"failed to introspect request with
AI service: ..."}}``, content that is not JSON instructions is 500 ``{"error":{"message":"failed
to parse JSON response instructions from AI backend: ..."}}``; instructions Kong's
``kong.response.exit`` refuses (a status that is not a number from 100 to 599, headers that are
not an object, a body that is not a string, object or array) are Kong's 500 "An unexpected error
occurred".

Where Kong differs: Kong's plugin makes the upstream request itself, in the access phase, to the
service's host and port (no balancer, no retries) with the client's headers and no
``X-Forwarded-*``; an upstream it cannot reach is its 500 ``failed to connect to upstream``
where fastkong's proxy answers 502/504 as for any request; and plugins of a lower priority than
768 do not run their access phase in Kong (they do here).
"""

from __future__ import annotations

import gzip
import json
import logging
import zlib
from typing import TYPE_CHECKING, Annotated, Any, Final

import msgspec

from fastkong.plugins.base import REQUIRED, Exit, Plugin, kong_error
from fastkong.plugins.bundled._ai_prompt import read_limited
from fastkong.plugins.bundled._ai_transformer import (
    IntrospectionError,
    Introspector,
    TransformerConfig,
    bad_request,
    body_limit,
    check,
    check_invalid,
    internal_error,
    too_large,
)
from fastkong.plugins.registry import register_plugin

if TYPE_CHECKING:
    from fastkong.plugins.context import RequestContext
    from fastkong.runtime import Runtime

Headers = list[tuple[bytes, bytes]]

log = logging.getLogger("fastkong.plugins.ai-response-transformer")

#: Dropped from the upstream's headers before the exit (Kong's three; ``Server`` is Kong's own
#: on an exit, set by the gateway).
_DROPPED: Final = frozenset({b"content-length", b"content-encoding", b"transfer-encoding"})
_EXIT_OWN: Final = frozenset({b"server"})
_JSON_TYPE: Final = b"application/json; charset=utf-8"
_UNEXPECTED: Final = "An unexpected error occurred"
_INSTRUCTIONS: Final = "failed to parse JSON response instructions from AI backend: "


class AiResponseTransformerConfig(TransformerConfig, kw_only=True, frozen=True):
    parse_llm_response_json_instructions: Annotated[bool, REQUIRED] = False


class NotInstructions(Exception):
    """The LLM's content is not JSON instructions; the message is Kong's reason."""


class InstructionError(Exception):
    """Instructions ``kong.response.exit`` would refuse (Kong's generic 500)."""


@register_plugin
class AiResponseTransformer(Plugin):
    name = "ai-response-transformer"
    priority = 768
    Config = AiResponseTransformerConfig

    def __init__(self, config: AiResponseTransformerConfig, runtime: Runtime, entity: Any) -> None:
        super().__init__(config, runtime, entity)
        self.llm = Introspector(config, self.name, self.id)
        self.body_limit = body_limit(config)
        self.instructions = config.parse_llm_response_json_instructions

    @classmethod
    def check(cls, config: Any) -> list[tuple[str, str]]:
        return check(config)

    @classmethod
    def check_invalid(cls, raw: dict[str, Any]) -> list[tuple[str, str]]:
        return check_invalid(raw)

    async def access(self, ctx: RequestContext) -> Exit | None:
        # Kong sends the upstream the body it can read (its subrequest): the same limit holds.
        if await read_limited(ctx, self.body_limit) is None:
            return too_large(self.body_limit)
        ctx.buffer_response = True
        return None

    async def buffered(self, ctx: RequestContext, status: int, headers: Headers) -> Exit | None:
        body = ctx.response_body or b""
        if _header(headers, b"content-encoding") == b"gzip":
            body = _gunzip(body)
        try:
            content = await self.llm.introspect(ctx, body)
        except IntrospectionError as exc:
            return bad_request(str(exc))
        kept = [(k, v) for k, v in headers if k.lower() not in _DROPPED | _EXIT_OWN]
        if not self.instructions:
            return Exit(status, content, kept)
        try:
            return instructed(content, kept)
        except NotInstructions as exc:
            log.error("%s%s", _INSTRUCTIONS, exc)  # Kong's internal_server_error logs it
            return internal_error(_INSTRUCTIONS + str(exc))
        except InstructionError as exc:
            # Kong's kong.response.exit raises: the plugin fails with Kong's generic 500.
            log.error("the LLM's JSON instructions cannot be sent: %s", exc)
            return kong_error(500, _UNEXPECTED)


def instructed(content: bytes, headers: Headers) -> Exit:
    """Kong's ``parse_json_instructions`` then ``kong.response.exit``: the exit the LLM's JSON
    asks for. Raises :class:`NotInstructions` or :class:`InstructionError`."""
    try:
        value = msgspec.json.decode(content)
    except msgspec.DecodeError as exc:
        # lua-cjson takes raw control characters inside strings (an LLM writes a multi-line
        # body with real newlines); Python's json does with strict=False.
        try:
            value = json.loads(content, strict=False)
        except ValueError:
            raise NotInstructions(cjson_reason(content, exc)) from None
    if not isinstance(value, (dict, list)):
        raise NotInstructions("input not table or string")
    given = value if isinstance(value, dict) else {}
    # Lua's truth: ``in_body.status or 200``, ``if headers then``, ``in_body.body or in_body``
    status = given.get("status")
    if status is None or status is False:
        status = 200
    if isinstance(status, float) and status.is_integer():
        status = int(status)
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        raise InstructionError("code must be a number between 100 and 599")
    extra = given.get("headers")
    if extra is not None and extra is not False:
        if not isinstance(extra, dict):
            raise InstructionError("headers must be a nil or table")
        for name, value_ in extra.items():
            _override(headers, name, value_)
    body = given.get("body")
    if body is None or body is False:
        body = value
    if isinstance(body, str):
        return Exit(status, body.encode("utf-8"), headers)
    if not isinstance(body, (dict, list)):
        raise InstructionError("body must be a nil, string or table")
    if _header(headers, b"content-type") is None:
        headers.append((b"content-type", _JSON_TYPE))
    return Exit(status, msgspec.json.encode(body), headers)


def cjson_reason(content: bytes, exc: msgspec.DecodeError) -> str:
    """Why ``content`` is not JSON, in lua-cjson's words for the usual case (an answer in prose,
    "Expected value but found invalid token at character 1"), else msgspec's."""
    message = str(exc)
    text = content.decode("utf-8", "replace")
    stripped = text.lstrip(" \t\r\n")
    position = len(text) - len(stripped) + 1
    if not stripped:
        return f"Expected value but found T_END at character {position}"
    if stripped[0] not in '{["-0123456789tfn':
        return f"Expected value but found invalid token at character {position}"
    return message


def _override(headers: Headers, name: Any, value: Any) -> None:
    """``res.headers[name] = value`` (names compared case-insensitively, as lua-resty-http's
    header table does); a list gives one header line per item."""
    if not isinstance(name, str):
        raise InstructionError("header names must be strings")
    values = value if isinstance(value, list) else [value]
    lines = []
    for item in values:
        if isinstance(item, bool):
            item = "true" if item else "false"
        elif isinstance(item, float) and item.is_integer():
            item = int(item)
        if not isinstance(item, (str, int, float)):
            raise InstructionError(f"invalid header value for {name!r}")
        lines.append(str(item).encode("latin-1", "replace"))
    key = name.lower().encode("latin-1", "replace")
    if key in _DROPPED:
        return  # the gateway frames the body it sends
    headers[:] = [(k, v) for k, v in headers if k.lower() != key]
    headers.extend((key, line) for line in lines)


def _header(headers: Headers, name: bytes) -> bytes | None:
    return next((v for k, v in headers if k.lower() == name), None)


def _gunzip(body: bytes) -> bytes:
    """A gzip body inflated (Kong's ``inflate_gzip``); one that is not gzip stays as it came."""
    try:
        return gzip.decompress(body)
    except (OSError, EOFError, zlib.error):
        return body
