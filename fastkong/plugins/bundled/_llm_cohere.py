"""ai-proxy's Cohere driver (Kong 3.9's ``kong/llm/drivers/cohere.lua``).

llm/v1/chat goes to ``https://api.cohere.com/v1/chat``, llm/v1/completions to ``/v1/generate``
(``upstream_url`` and ``upstream_path`` as for every provider). The request keeps the client's
fields, with ``top_p``/``top_k`` renamed ``p``/``k`` and, for chat, the last message's content
as ``message`` and the ones before it as ``chat_history`` (``role`` ``CHATBOT`` for the
assistant's, ``USER`` for the others, the text as ``message``). A request with ``tools`` goes
in OpenAI's format, as Kong sends it (Cohere's v2 API reads that).

Answers: a ``generate`` answer (``prompt`` and ``generations``) becomes a ``text_completion``
with one choice per generation, a v1 ``chat`` answer (``text``) a ``chat.completion`` (``id``
the ``generation_id``), a v2 answer (``message``) a ``chat.completion`` with its ``tool_plan``
or ``content`` and ``tool_calls``; the billed units are the usage (on completions, a chat
answer's ``token_count``). Streams (one JSON object per line) are translated per event:
``stream-start`` opens the chunk stream, ``text-generation`` carries the text, ``stream-end``
the token counts and ``[DONE]``.
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

_STREAM_ID = "cohere_stream_id"


class Cohere(Driver):
    name = "cohere"
    base_url = "https://api.cohere.com:443"
    paths = {"llm/v1/completions": "/v1/generate", "llm/v1/chat": "/v1/chat"}
    clears_cookies = False
    counts_stream_tokens = True

    def to_format(
        self, request: dict[str, Any], model: ModelInfo, route_type: str
    ) -> dict[str, Any]:
        if request.get("tools"):
            return super().to_format(request, model, route_type)
        if route_type not in self.paths:
            raise LlmError(f"no transformer for {model.provider}://{route_type}")
        merge_config_defaults(request, model.options)
        try:
            return to_cohere(request, model)
        except (AttributeError, KeyError, TypeError, IndexError):
            raise LlmError(f"error transforming to {model.provider}://{route_type}") from None

    def answer(self, body: bytes, model: ModelInfo, route_type: str) -> bytes:
        if route_type == "llm/v1/chat":
            return _from_chat(body, model)
        if route_type == "llm/v1/completions":
            return _from_completions(body, model)
        raise no_transformer(model, route_type)

    def stream_event(
        self, event: StreamEvent, model: ModelInfo, route_type: str, state: dict[str, Any]
    ) -> StreamResult:
        return cohere_stream_event(event, model, route_type, state)


def to_cohere(request: dict[str, Any], model: ModelInfo) -> dict[str, Any]:
    """Kong's ``handle_json_inference_event``: the request table, changed in place."""
    for old, new in (("top_p", "p"), ("top_k", "k")):
        value = request.pop(old, None)
        if value is not None:
            request[new] = value
    request["model"] = model.name if model.name is not None else request.get("model")
    request["stream"] = request.get("stream") or False
    messages = request.get("messages")
    if messages is not None:
        if len(messages) > 1:
            request["chat_history"] = [
                {
                    "role": "CHATBOT" if m.get("role") in ("assistant", "CHATBOT") else "USER",
                    "message": m.get("content"),
                }
                for m in messages[:-1]
            ]
        request["message"] = messages[-1].get("content")
        del request["messages"]
    return request


def _billed(units_of: Any) -> dict[str, Any]:
    units = units_of.get("billed_units") if isinstance(units_of, dict) else None
    if not isinstance(units, dict):
        return {}
    out: Any = units.get("output_tokens")
    prompt: Any = units.get("input_tokens")
    usage = {"completion_tokens": out, "prompt_tokens": prompt}
    if _number(out) and _number(prompt):
        usage["total_tokens"] = out + prompt
    return _without_none(usage)


def _generations(response: dict[str, Any], model: ModelInfo, meta: Any) -> dict[str, Any]:
    generations = response["generations"]
    choices = [
        {"index": i, "text": g.get("text"), "finish_reason": "stop"}
        for i, g in enumerate(generations if isinstance(generations, list) else [])
        if isinstance(g, dict)
    ]
    out = {
        "choices": [_without_none(c) for c in choices],
        "object": "text_completion",
        "model": model.name,
        "id": response.get("id"),
        "usage": _billed(meta),
    }
    return _without_none(out)


def _chat_v1(response: dict[str, Any], model: ModelInfo, usage: dict[str, Any]) -> dict[str, Any]:
    message = {"role": "assistant", "content": response["text"]}
    out = {
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "object": "chat.completion",
        "model": model.name,
        "id": response.get("generation_id"),
        "usage": usage,
    }
    return _without_none(out)


def _from_chat(body: bytes, model: ModelInfo) -> bytes:
    response = JsonObject.decode(body, "failed to decode cohere response")
    if response.get("prompt") is not None and response.get("generations") is not None:
        out = _generations(response, model, response.get("meta"))
    elif response.get("text") is not None:
        out = _chat_v1(response, model, _billed(response.get("meta")))
    elif response.get("message") is not None:
        # Cohere's v2 chat answer.
        message = response["message"] if isinstance(response["message"], dict) else {}
        content = message.get("tool_plan")
        if content is None:
            content = message.get("content")
        reply = _without_none(
            {"role": "assistant", "content": content, "tool_calls": message.get("tool_calls")}
        )
        choice = _without_none(
            {"index": 0, "message": reply, "finish_reason": response.get("finish_reason")}
        )
        out = _without_none(
            {
                "choices": [choice],
                "object": "chat.completion",
                "model": model.name,
                "id": response.get("id"),
                "usage": _billed(response.get("usage")),
            }
        )
    else:
        raise LlmError("'text' or 'generations' missing from cohere response body")
    return msgspec.json.encode(out)


def _from_completions(body: bytes, model: ModelInfo) -> bytes:
    response = JsonObject.decode(body, "failed to decode cohere response")
    if response.get("prompt") is not None and response.get("generations") is not None:
        out = _generations(response, model, response.get("meta"))
    elif response.get("text") is not None:
        counts = response.get("token_count")
        counts = counts if isinstance(counts, dict) else {}
        usage = {
            "completion_tokens": counts.get("response_tokens"),
            "prompt_tokens": counts.get("prompt_tokens"),
            "total_tokens": counts.get("total_tokens"),
        }
        out = _chat_v1(response, model, _without_none(usage))
    else:
        raise LlmError("'text' or 'generations' missing from cohere response body")
    return msgspec.json.encode(out)


def cohere_stream_event(
    event: StreamEvent, model: ModelInfo, route_type: str, state: dict[str, Any]
) -> StreamResult:
    """Kong's ``handle_stream_event``: one line of Cohere's stream."""
    if not event.data:
        return StreamResult()
    frame = JsonObject.decode(event.data, "failed to decode event frame from cohere")
    kind = frame.get("event_type")
    chunk: dict[str, Any]
    if kind == "stream-start":
        state[_STREAM_ID] = frame.get("generation_id")
        chunk = {
            "choices": [{"delta": {"content": "", "role": "assistant"}, "index": 0}],
            "id": frame.get("generation_id"),
            "model": model.name,
            "object": "chat.completion.chunk",
        }
    elif kind == "text-generation":
        text = frame.get("text") or ""
        choice: dict[str, Any] = {"index": 0, "finish_reason": None, "logprobs": None}
        if route_type == "llm/v1/chat":
            choice["delta"] = {"content": text}
            kind_name = "chat.completion.chunk"
        else:
            choice["text"] = text
            kind_name = "text_completion"
        chunk = {
            "choices": [choice],
            "id": state.get(_STREAM_ID),
            "model": model.name,
            "object": kind_name,
        }
    elif kind == "stream-end":
        return StreamResult(SSE_TERMINATOR, *_end_counts(frame))
    else:
        return StreamResult()
    return StreamResult(msgspec.json.encode(_without_none(chunk)).decode())


def _end_counts(frame: dict[str, Any]) -> tuple[int, int]:
    """``(prompt, completion)`` tokens of ``stream-end``: the billed units, else the token
    counts of the response (Kong looks for the prompt's count on the event itself, where it
    never is, and drops the whole event: see docs/plugins.md)."""
    response = frame.get("response")
    response = response if isinstance(response, dict) else {}
    meta = response.get("meta")
    units = meta.get("billed_units") if isinstance(meta, dict) else None
    units = units if isinstance(units, dict) else {}
    counts = response.get("token_count")
    counts = counts if isinstance(counts, dict) else {}
    completion = units.get("output_tokens") or counts.get("response_tokens") or 0
    prompt = units.get("input_tokens") or counts.get("prompt_tokens") or 0
    return prompt, completion


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _without_none(value: dict[str, Any]) -> dict[str, Any]:
    """Lua tables have no nil values: Kong leaves unset fields out of what it encodes."""
    return {k: v for k, v in value.items() if v is not None}
