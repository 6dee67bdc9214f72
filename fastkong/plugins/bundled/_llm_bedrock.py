"""ai-proxy's Amazon Bedrock driver (Kong 3.9's ``kong/llm/drivers/bedrock.lua``), llm/v1/chat
over the Converse API.

Requests go to ``https://bedrock-runtime.{region}.amazonaws.com/model/{model}/converse`` (a
stream to ``.../converse-stream``), the region being ``model.options.bedrock.aws_region``, else
the node's ``AWS_REGION``/``AWS_DEFAULT_REGION`` (none: Kong's ``500 LLM request failed before
proxying``); ``upstream_url`` and ``upstream_path`` replace the URL and path. Each request is
signed with SigV4 for the ``bedrock`` service (:mod:`._aws_sigv4`: ``Host``, ``X-Amz-Date``,
the session token of temporary credentials, over the translated body), with the config's
``aws_access_key_id``/``aws_secret_access_key`` or else the node's credential chain
(:func:`._aws_credentials.default_chain`, as aws-lambda's); the config's ``auth`` header and
query parameter are not sent (Kong's Bedrock driver does not send them either).

The request: system messages become ``system`` text blocks, the others ``messages`` with text
content blocks (or the client's content array as it is), assistant tool calls ``toolUse``
blocks and tool results (JSON) ``toolResult`` blocks in a ``user`` message; the tuning options
``inferenceConfig`` (``maxTokens``, ``stopSequences``, ``temperature``, ``topP``); OpenAI tools
``toolConfig.tools``; the client's ``guardrailConfig`` and ``bedrock.toolConfig`` /
``bedrock.additionalModelRequestFields`` pass; ``anthropic_version`` is set as Kong sets it.

The answer: the output message's first text and its ``toolUse`` blocks as ``tool_calls``,
``stopReason`` mapped to OpenAI's finish reasons, ``usage`` and ``trace``. A streamed answer is
AWS's binary event stream (``application/vnd.amazon.eventstream``: length-prefixed messages
with typed headers and CRC32 checksums), split by :class:`EventStreamParser` across chunk
boundaries; ``messageStart``, ``contentBlockStart``/``contentBlockDelta`` (text and tool
input), ``messageStop`` (the finish reason) become OpenAI chunks and ``metadata`` (the token
counts) ``[DONE]``.
"""

from __future__ import annotations

import logging
import os
import re
import struct
import zlib
from typing import Any, Final

import msgspec

from fastkong.plugins.bundled import _aws_credentials as creds
from fastkong.plugins.bundled._aws_sigv4 import sign
from fastkong.plugins.bundled._llm_openai import Driver
from fastkong.plugins.bundled._llm_shared import (
    SSE_TERMINATOR,
    JsonObject,
    LlmError,
    ModelInfo,
    SignedRequest,
    StreamEvent,
    StreamResult,
    Target,
    merge_config_defaults,
    no_transformer,
    parse_url,
)

log = logging.getLogger("fastkong.plugins.ai-proxy")

EVENT_STREAM: Final = "application/vnd.amazon.eventstream"
BASE_URL: Final = "https://bedrock-runtime.{}.amazonaws.com"
PATH: Final = "/model/{}/{}"
SERVICE: Final = "bedrock"
FAILED: Final = "LLM request failed before proxying"
_ROLES: Final = {"system": "assistant", "user": "user", "assistant": "assistant", "tool": "user"}
_STOP_REASONS: Final = {
    "max_tokens": "length",
    "end_turn": "stop",
    "tool_use": "tool_calls",
    "guardrail_intervened": "guardrail_intervened",
}
#: Kong's ``bedrock_unsupported_system_role_patterns`` (Lua patterns, unanchored) as regexes.
_NO_SYSTEM: Final = tuple(
    re.compile(p)
    for p in (
        r"amazon.titan",
        r"cohere.command.*?text",
        r"cohere.command.*?light.*?text",
        r"mistral.mistral.*?7b.*?instruct",
        r"mistral.mixtral.*?8x7b.*?instruct",
    )
)


class Bedrock(Driver):
    name = "bedrock"
    paths = {}
    counts_stream_tokens = True
    plain_auth = False

    def __init__(self) -> None:
        self.region: str | None = None
        self.credentials: creds.Provider = creds.default_chain()

    def setup(self, config: Any) -> None:
        options = config.model.options
        bedrock = options.bedrock if options is not None else None
        env = os.environ
        self.region = (
            (bedrock.aws_region if bedrock is not None else None)
            or env.get("AWS_REGION")
            or env.get("AWS_DEFAULT_REGION")
        )
        auth = config.auth
        if auth is not None and auth.aws_access_key_id and auth.aws_secret_access_key:
            self.credentials = creds.Static(auth.aws_access_key_id, auth.aws_secret_access_key)

    def target(self, model: ModelInfo, route_type: str, stream: bool = False) -> Target:
        options = model.options
        if options.get("upstream_url") is not None:
            target = parse_url(options["upstream_url"])
        else:
            operation = "converse-stream" if stream else "converse"
            target = parse_url(BASE_URL.format(self.region) + PATH.format(model.name, operation))
        if options.get("upstream_path") is not None:
            target.path = options["upstream_path"]
        return target

    async def authorize(self, request: SignedRequest) -> list[tuple[str, str]]:
        if self.region is None:
            log.error(
                "error authenticating with bedrock using native provider auth, "
                "AWS region not specified anywhere"
            )
            raise LlmError(FAILED)
        try:
            credentials = await self.credentials.get()
        except creds.CredentialsError as exc:
            log.error(
                "failed to configure request for AI service: failed to sign AWS request: %s", exc
            )
            raise LlmError() from None
        signed = sign(
            method=request.method,
            host=request.target.host,
            path=request.path,
            query=request.query,
            headers=[],
            body=request.body,
            credentials=credentials,
            region=self.region,
            service=SERVICE,
        )
        return [(k, v) for k, v in signed if k != "Host"]

    def to_format(
        self, request: dict[str, Any], model: ModelInfo, route_type: str
    ) -> dict[str, Any]:
        if route_type != "llm/v1/chat":
            raise LlmError(f"no transformer for {model.provider}://{route_type}")
        merge_config_defaults(request, model.options)
        try:
            return to_bedrock(request, model)
        except LlmError as exc:
            raise LlmError(
                f"error transforming to {model.provider}://{route_type}: {exc}"
            ) from None
        except (AttributeError, KeyError, TypeError, IndexError):
            raise LlmError(f"error transforming to {model.provider}://{route_type}: nil") from None

    def answer(self, body: bytes, model: ModelInfo, route_type: str) -> bytes:
        if route_type != "llm/v1/chat":
            raise no_transformer(model, route_type)
        return from_bedrock(body, model)

    def stream_event(
        self, event: StreamEvent, model: ModelInfo, route_type: str, state: dict[str, Any]
    ) -> StreamResult:
        return bedrock_stream_event(event, model)


# -- request -----------------------------------------------------------------------------------


def _tool_result(message: dict[str, Any]) -> dict[str, Any]:
    try:
        result = msgspec.json.decode(message.get("content") or "")
    except (msgspec.DecodeError, TypeError):
        raise LlmError("failed to decode function response arguments, not JSON format") from None
    literal = {"json": result if isinstance(result, (dict, list)) else {"result": result}}
    block = {"toolUseId": message.get("tool_call_id"), "content": [literal]}
    if message.get("status") is not None:
        block["status"] = message["status"]
    return {"role": "user", "content": [{"toolResult": block}]}


def _tool_uses(calls: list[Any]) -> list[dict[str, Any]]:
    blocks = []
    for call in calls:
        function = call["function"]
        try:
            inputs = msgspec.json.decode(function.get("arguments") or "")
        except (msgspec.DecodeError, TypeError):
            raise LlmError(
                "failed to decode function response arguments from assistant's message, "
                "not JSON format"
            ) from None
        use = {"toolUseId": call.get("id"), "name": function.get("name"), "input": inputs}
        blocks.append({"toolUse": {k: v for k, v in use.items() if v is not None}})
    return blocks


def to_bedrock(request: dict[str, Any], model: ModelInfo) -> dict[str, Any]:
    """Kong's ``to_bedrock_chat_openai``."""
    body: dict[str, Any] = {
        "anthropic_version": model.options.get("anthropic_version") or "bedrock-2023-05-31"
    }
    messages = request.get("messages")
    if isinstance(messages, list) and messages:
        system = []
        out: list[dict[str, Any]] = []
        for message in messages:
            role = message.get("role")
            if role == "system":
                system.append({"text": message.get("content")})
                continue
            if role == "tool":
                out.append(_tool_result(message))
                continue
            content = message.get("content")
            if isinstance(content, (list, dict)):
                blocks = content
            elif isinstance(message.get("tool_calls"), list) and message["tool_calls"]:
                blocks = _tool_uses(message["tool_calls"])
            else:
                blocks = [{"text": content if content is not None else ""}]
            entry = {"role": _ROLES.get(role or "user"), "content": blocks}
            out.append({k: v for k, v in entry.items() if v is not None})
        if system:
            name = model.name or ""
            if any(p.search(name) for p in _NO_SYSTEM):
                raise LlmError(f"system prompts are unsupported for model '{name}")
            body["system"] = system
        if out:
            body["messages"] = out
    inference = {
        "maxTokens": request.get("max_tokens"),
        "stopSequences": request.get("stop"),
        "temperature": request.get("temperature"),
        "topP": request.get("top_p"),
    }
    body["inferenceConfig"] = {k: v for k, v in inference.items() if v is not None}
    if request.get("guardrailConfig") is not None:
        body["guardrailConfig"] = request["guardrailConfig"]
    native = request.get("bedrock")
    native = native if isinstance(native, dict) else {}
    tool_config = native.get("toolConfig")
    if isinstance(tool_config, dict):
        body["toolConfig"] = dict(tool_config)
    tools = _tools(request.get("tools"))
    if tools:
        body.setdefault("toolConfig", {})["tools"] = tools
    if native.get("additionalModelRequestFields") is not None:
        body["additionalModelRequestFields"] = native["additionalModelRequestFields"]
    return body


def _tools(tools: Any) -> list[dict[str, Any]]:
    out = []
    for tool in tools if isinstance(tools, list) else []:
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict):
            continue
        spec = {
            "name": function.get("name"),
            "description": function.get("description"),
            "inputSchema": {"json": function.get("parameters")},
        }
        out.append({"toolSpec": {k: v for k, v in spec.items() if v is not None}})
    return out


# -- answer ------------------------------------------------------------------------------------


def _tool_calls(content: list[Any]) -> list[dict[str, Any]] | None:
    calls = []
    for block in content:
        use = block.get("toolUse") if isinstance(block, dict) else None
        if not isinstance(use, dict):
            continue
        function: dict[str, Any] = {"name": use.get("name")}
        if use.get("input"):
            function["arguments"] = msgspec.json.encode(use["input"]).decode()
        call = {"function": function, "id": use.get("toolUseId"), "type": "function"}
        calls.append({k: v for k, v in call.items() if v is not None})
    return calls or None


def from_bedrock(body: bytes, model: ModelInfo) -> bytes:
    """Kong's ``from_bedrock_chat_openai``."""
    response = JsonObject.decode(body, "failed to decode response from Bedrock")
    output = response.get("output")
    message = output.get("message") if isinstance(output, dict) else None
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, list) or not content:
        raise LlmError("no generation candidates received from Bedrock, or max_tokens too short")
    first = content[0] if isinstance(content[0], dict) else {}
    reply = {"role": "assistant", "content": first.get("text"), "tool_calls": _tool_calls(content)}
    reason = response.get("stopReason")
    choice = {
        "index": 0,
        "message": {k: v for k, v in reply.items() if v is not None},
        "finish_reason": _STOP_REASONS.get(reason, "stop") if isinstance(reason, str) else "stop",
    }
    out: dict[str, Any] = {"choices": [choice], "object": "chat.completion", "model": model.name}
    usage = response.get("usage")
    if isinstance(usage, dict):
        counts = {
            "prompt_tokens": usage.get("inputTokens"),
            "completion_tokens": usage.get("outputTokens"),
            "total_tokens": usage.get("totalTokens"),
        }
        out["usage"] = {k: v for k, v in counts.items() if v is not None}
    if response.get("trace") is not None:
        out["trace"] = response["trace"]
    return msgspec.json.encode({k: v for k, v in out.items() if v is not None})


def _chunk(model: ModelInfo, delta: dict[str, Any], **choice: Any) -> str:
    frame = {
        "choices": [{"delta": delta, "index": 0, "logprobs": None, **choice}],
        "model": model.name,
        "object": "chat.completion.chunk",
        "system_fingerprint": None,
    }
    return msgspec.json.encode(frame).decode()


def bedrock_stream_event(event: StreamEvent, model: ModelInfo) -> StreamResult:
    """Kong's ``handle_stream_event``: one event-stream message (``event`` its
    ``:event-type``, ``data`` its JSON payload) as an OpenAI chunk."""
    kind = event.event
    try:
        body = msgspec.json.decode(event.data or "")
    except msgspec.DecodeError:
        body = None
    if not kind or not isinstance(body, dict):
        return StreamResult()  # exceptions and unknown messages (Kong sends "data: " for them)
    if kind == "messageStart":
        return StreamResult(_chunk(model, {"content": "", "role": body.get("role")}))
    index = body.get("contentBlockIndex")
    if kind == "contentBlockStart":
        start = body.get("start")
        use = start.get("toolUse") if isinstance(start, dict) else None
        if not isinstance(use, dict):
            return StreamResult()
        call = {
            "index": index,
            "id": use.get("toolUseId"),
            "function": {"name": use.get("name"), "arguments": ""},
        }
        return StreamResult(_chunk(model, {"tool_calls": [call]}))
    if kind == "contentBlockDelta":
        delta = body.get("delta")
        delta = delta if isinstance(delta, dict) else {}
        use = delta.get("toolUse")
        if isinstance(use, dict):
            call = {"index": index, "function": {"arguments": use.get("input")}}
            return StreamResult(_chunk(model, {"tool_calls": [call]}))
        return StreamResult(_chunk(model, {"content": delta.get("text") or ""}))
    if kind == "messageStop":
        reason = body.get("stopReason")
        finish = _STOP_REASONS.get(reason, "stop") if isinstance(reason, str) else "stop"
        frame: dict[str, Any] = {
            "choices": [{"delta": {}, "index": 0, "finish_reason": finish, "logprobs": None}],
            "model": model.name,
            "object": "chat.completion.chunk",
        }
        return StreamResult(msgspec.json.encode(frame).decode())
    if kind == "metadata":
        usage = body.get("usage")
        usage = usage if isinstance(usage, dict) else {}
        return StreamResult(
            SSE_TERMINATOR, usage.get("inputTokens") or 0, usage.get("outputTokens") or 0
        )
    return StreamResult()


# -- event stream ------------------------------------------------------------------------------

#: Header value types of the event-stream encoding: fixed sizes, or None for 2-byte-length
#: prefixed (bytes, string).
_FIXED: Final = {0: 0, 1: 0, 2: 1, 3: 2, 4: 4, 5: 8, 8: 8, 9: 16}
_PRELUDE: Final = 12
_MAX_MESSAGE: Final = 16 * 1024 * 1024


class EventStreamParser:
    """AWS's ``application/vnd.amazon.eventstream`` split into messages as bytes arrive: each
    message is its total length and headers length (big-endian 32-bit), a CRC32 of those,
    the headers (name length, name, type, value), the payload, and a CRC32 of all before it.
    A message cut across chunks waits for the rest; a corrupt one (bad checksum or length)
    ends the parsing (what follows cannot be framed)."""

    __slots__ = ("buffer", "broken")

    def __init__(self) -> None:
        self.buffer = b""
        self.broken = False

    def feed(self, chunk: bytes, last: bool = False) -> list[StreamEvent]:
        if self.broken:
            return []
        self.buffer += chunk
        events = []
        while len(self.buffer) >= _PRELUDE:
            total, headers_len, prelude_crc = struct.unpack_from(">III", self.buffer)
            if (
                zlib.crc32(self.buffer[:8]) != prelude_crc
                or total < _PRELUDE + 4 + headers_len
                or total > _MAX_MESSAGE
            ):
                self._break("bad prelude")
                break
            if len(self.buffer) < total:
                break
            message, self.buffer = self.buffer[:total], self.buffer[total:]
            (crc,) = struct.unpack_from(">I", message, total - 4)
            if zlib.crc32(message[:-4]) != crc:
                self._break("bad message checksum")
                break
            headers = _headers(message[_PRELUDE : _PRELUDE + headers_len])
            if headers is None:
                self._break("bad headers")
                break
            payload = message[_PRELUDE + headers_len : -4]
            kind = headers.get(":event-type") if headers.get(":message-type") == "event" else None
            events.append(
                StreamEvent(
                    event=kind if isinstance(kind, str) else None,
                    data=payload.decode("utf-8", "replace"),
                )
            )
        return events

    def _break(self, why: str) -> None:
        log.warning("ai-proxy: unreadable AWS event stream from the provider (%s)", why)
        self.broken = True
        self.buffer = b""


def _headers(data: bytes) -> dict[str, Any] | None:
    out: dict[str, Any] = {}
    pos = 0
    try:
        while pos < len(data):
            size = data[pos]
            name = data[pos + 1 : pos + 1 + size].decode("utf-8")
            pos += 1 + size
            kind = data[pos]
            pos += 1
            value: Any
            if kind in (6, 7):
                (length,) = struct.unpack_from(">H", data, pos)
                raw = data[pos + 2 : pos + 2 + length]
                value = raw.decode("utf-8", "replace") if kind == 7 else raw
                pos += 2 + length
            elif kind in _FIXED:
                value = kind == 0 if kind in (0, 1) else data[pos : pos + _FIXED[kind]]
                pos += _FIXED[kind]
            else:
                return None
            out[name] = value
    except (IndexError, struct.error, UnicodeDecodeError):
        return None
    return out if pos == len(data) else None
