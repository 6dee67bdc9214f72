"""ai-proxy's Anthropic driver (Kong 3.9's ``kong/llm/drivers/anthropic.lua``).

llm/v1/chat goes to the Messages API (``/v1/messages``): system messages become the top-level
``system`` (the last one wins), OpenAI tool calls and tool results become ``tool_use`` and
``tool_result`` blocks, OpenAI tools become Anthropic tools (``parameters`` is
``input_schema``); ``max_tokens`` and ``temperature`` come from the model options, else from the
request (Kong 3.9 sets no default ``max_tokens``). llm/v1/completions goes to the legacy Text
Completions API (``/v1/complete``) with Claude's ``Human:``/``Assistant:`` prompt.

Answers come back as OpenAI's: the text blocks joined by newlines, ``tool_use`` blocks as
``tool_calls``, ``stop_reason`` as ``finish_reason`` and ``input_tokens``/``output_tokens`` as
``prompt_tokens``/``completion_tokens``. Streams (chat only) are translated event by event:
``message_start`` opens the chunk stream (role, id), ``content_block_*`` carry the text,
``message_delta`` the output token count, ``message_stop`` ends it with ``[DONE]``.
"""

from __future__ import annotations

from typing import Any

import msgspec

from fastkong.plugins.bundled._llm_openai import Driver
from fastkong.plugins.bundled._llm_shared import (
    SSE_TERMINATOR,
    JsonObject,
    LlmError,
    ModelInfo,
    StreamEvent,
    StreamResult,
    merge_config_defaults,
    no_transformer,
)

_STREAM_ID = "anthropic_stream_id"


class Anthropic(Driver):
    name = "anthropic"
    base_url = "https://api.anthropic.com:443"
    paths = {"llm/v1/completions": "/v1/complete", "llm/v1/chat": "/v1/messages"}
    clears_cookies = False
    counts_stream_tokens = True
    asks_gzip = False

    def headers(self, model: ModelInfo) -> list[tuple[str, str]]:
        version = model.options.get("anthropic_version")
        return [("anthropic-version", version)] if isinstance(version, str) else []

    def to_format(
        self, request: dict[str, Any], model: ModelInfo, route_type: str
    ) -> dict[str, Any]:
        merge_config_defaults(request, model.options)
        try:
            if route_type == "llm/v1/chat":
                return self._to_messages(request, model)
            if route_type == "llm/v1/completions":
                return self._to_complete(request, model)
        except (LlmError, AttributeError, KeyError, TypeError, msgspec.DecodeError):
            pass
        else:
            raise LlmError(f"no transformer for {model.provider}://{route_type}")
        raise LlmError(f"error transforming to {model.provider}://{route_type}")

    @staticmethod
    def _common(request: dict[str, Any], model: ModelInfo, body: dict[str, Any]) -> None:
        options = model.options
        temperature = options.get("temperature")
        body["temperature"] = temperature if temperature is not None else request.get("temperature")
        body["model"] = model.name if model.name is not None else request.get("model")
        body["stream"] = request.get("stream") or False

    def _to_messages(self, request: dict[str, Any], model: ModelInfo) -> dict[str, Any]:
        messages = request.get("messages")
        if not isinstance(messages, list):
            raise LlmError("request is missing .messages command")
        out: list[Any] = []
        system = None
        for message in messages:
            role = message.get("role")
            if role not in ("assistant", "user", "tool"):
                system = message.get("content")
            elif role == "assistant" and message.get("tool_calls"):
                out.append({"role": role, "content": _tool_uses(message["tool_calls"])})
            elif role == "tool":
                result = {
                    "type": "tool_result",
                    "tool_use_id": message.get("tool_call_id"),
                    "content": message.get("content"),
                }
                out.append({"role": "user", "content": [_without_none(result)]})
            else:
                out.append(message)
        body: dict[str, Any] = {"messages": out, "system": system}
        max_tokens = model.options.get("max_tokens")
        body["max_tokens"] = max_tokens if max_tokens is not None else request.get("max_tokens")
        self._common(request, model, body)
        tools = request.get("tools")
        if tools:
            body["tools"] = [_tool(t["function"]) for t in tools if t.get("function")]
        body["tool_choice"] = _tool_choice(request.get("tool_choice"))
        return _without_none(body)

    def _to_complete(self, request: dict[str, Any], model: ModelInfo) -> dict[str, Any]:
        prompt = request.get("prompt")
        if prompt is not None:
            text = f"Human: {prompt}\n\nAssistant:"
        elif isinstance(request.get("messages"), list):
            text = claude_prompt(request["messages"])
        else:
            raise LlmError("request is missing .prompt and .messages commands")
        body: dict[str, Any] = {"prompt": text}
        max_tokens = model.options.get("max_tokens")
        body["max_tokens_to_sample"] = (
            max_tokens if max_tokens is not None else request.get("max_tokens")
        )
        self._common(request, model, body)
        return _without_none(body)

    def answer(self, body: bytes, model: ModelInfo, route_type: str) -> bytes:
        if route_type == "llm/v1/chat":
            return _from_messages(body)
        if route_type == "llm/v1/completions":
            return _from_complete(body)
        raise no_transformer(model, route_type)

    def stream_event(
        self, event: StreamEvent, model: ModelInfo, route_type: str, state: dict[str, Any]
    ) -> StreamResult:
        kind = event.event
        try:
            data = msgspec.json.decode(event.data or "")
        except msgspec.DecodeError:
            data = None
        if not kind or not isinstance(data, dict):
            raise LlmError("transformation to stream event failed or empty stream event received")
        if kind == "message_start":
            meta = data.get("message")
            if not isinstance(meta, dict):
                raise LlmError("message_start is missing the metadata block")
            state[_STREAM_ID] = meta.get("id")
            start_usage = meta.get("usage")
            if not isinstance(start_usage, dict):
                start_usage = {}
            delta: dict[str, Any] = {"content": ""}
            if meta.get("role") is not None:
                delta["role"] = meta["role"]
            chunk = {
                "choices": [{"delta": delta, "index": 0, "logprobs": None}],
                "id": meta.get("id"),
                "model": model.name,
                "object": "chat.completion.chunk",
                "system_fingerprint": None,
            }
            return StreamResult(
                _encode_chunk(chunk),
                start_usage.get("input_tokens"),
                start_usage.get("output_tokens"),
            )
        if kind == "message_delta":
            usage = data.get("usage")
            if not isinstance(usage, dict):
                raise LlmError("message_delta is missing the metadata block")
            return StreamResult(None, None, usage.get("output_tokens"))
        if kind in ("content_block_start", "content_block_delta"):
            delta_in = data.get("delta")
            text = delta_in.get("text") if isinstance(delta_in, dict) else None
            chunk = {
                "choices": [
                    {
                        "delta": {"content": text if isinstance(text, str) else ""},
                        "index": 0,
                        "finish_reason": None,
                        "logprobs": None,
                    }
                ],
                "id": state.get(_STREAM_ID),
                "model": model.name,
                "object": "chat.completion.chunk",
            }
            return StreamResult(_encode_chunk(_without_none(chunk)))
        if kind == "message_stop":
            return StreamResult(SSE_TERMINATOR)
        return StreamResult()  # ping, content_block_stop, anything else: nothing to send


def claude_prompt(messages: list[Any]) -> str:
    """Claude 2's flat prompt of a chat history (system text first, unlabelled)."""
    parts = []
    for message in messages:
        role = message.get("role")
        if role == "assistant":
            parts.append("Assistant: ")
        elif role == "user":
            parts.append("Human: ")
        parts.append(f"{message.get('content')}\n\n")
    parts.append("Assistant:")
    return "".join(parts)


def _tool_uses(tool_calls: list[Any]) -> list[dict[str, Any]]:
    out = []
    for call in tool_calls:
        function = call["function"]
        out.append(
            {
                "type": "tool_use",
                "id": call.get("id"),
                "name": function.get("name"),
                "input": msgspec.json.decode(function.get("arguments") or "null"),
            }
        )
    return out


def _tool(function: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in function.items() if k != "parameters"}
    if function.get("parameters") is not None:
        out["input_schema"] = function["parameters"]
    return out


def _tool_choice(choice: Any) -> dict[str, Any] | None:
    """OpenAI's ``tool_choice`` in Anthropic's words (Kong 3.10's ``to_tool_choice``):
    ``required`` is ``any``, ``auto``/``none`` keep their names, a named function is a named
    tool; anything else is left out (Kong warns in its log)."""
    if isinstance(choice, str):
        if choice == "required":
            return {"type": "any"}
        return {"type": choice} if choice in ("auto", "none") else None
    if isinstance(choice, dict) and choice.get("type") == "function":
        function = choice.get("function")
        if isinstance(function, dict) and function.get("name"):
            return {"type": "tool", "name": function["name"]}
    return None


def _from_messages(body: bytes) -> bytes:
    response = JsonObject.decode(body, "failed to decode anthropic response")
    content = response.get("content")
    if content is None:
        raise LlmError("'content' not in anthropic://llm/v1/chat response")
    blocks = content if isinstance(content, list) else []
    texts = []
    tools = []
    for i, block in enumerate(blocks):
        if not isinstance(block, dict):
            continue
        if block.get("text") is not None:
            texts.append(("\n" if i else "") + str(block["text"]))
        if block.get("type") == "tool_use":
            tools.append(
                {
                    "id": block.get("id"),
                    "type": "function",
                    "function": {
                        "name": block.get("name"),
                        "arguments": msgspec.json.encode(block.get("input")).decode(),
                    },
                }
            )
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts)}
    if tools:
        message["tool_calls"] = tools
    choice: dict[str, Any] = {"index": 0, "message": message}
    if response.get("stop_reason") is not None:
        choice["finish_reason"] = response["stop_reason"]
    usage_in = response.get("usage")
    usage: Any
    if isinstance(usage_in, dict):
        prompt, completion = usage_in.get("input_tokens"), usage_in.get("output_tokens")
        usage = {"prompt_tokens": prompt, "completion_tokens": completion}
        if isinstance(prompt, (int, float)) and isinstance(completion, (int, float)):
            usage["total_tokens"] = prompt + completion
        usage = _without_none(usage)
    else:
        usage = "no usage data returned from upstream"
    out = {"choices": [choice], "usage": usage, "model": response.get("model")}
    out["object"] = "chat.completion"
    return msgspec.json.encode(_without_none(out))


def _from_complete(body: bytes) -> bytes:
    response = JsonObject.decode(body, "failed to decode anthropic response")
    completion = response.get("completion")
    if completion is None:
        raise LlmError("'completion' not in anthropic://llm/v1/chat response")
    choice: dict[str, Any] = {"index": 0, "text": completion}
    if response.get("stop_reason") is not None:
        choice["finish_reason"] = response["stop_reason"]
    out = {"choices": [choice], "model": response.get("model"), "object": "text_completion"}
    return msgspec.json.encode(_without_none(out))


def _encode_chunk(chunk: dict[str, Any]) -> str:
    return msgspec.json.encode(chunk).decode()


def _without_none(value: dict[str, Any]) -> dict[str, Any]:
    """Lua tables have no nil values: Kong leaves unset fields out of what it encodes."""
    return {k: v for k, v in value.items() if v is not None}
