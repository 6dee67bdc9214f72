"""ai-proxy's Hugging Face driver (Kong 3.9's ``kong/llm/drivers/huggingface.lua``).

Requests go to the serverless Inference API, ``https://api-inference.huggingface.co/models/
{model}`` for llm/v1/completions and that URL plus ``/v1/chat/completions`` (its OpenAI-style
endpoint) for llm/v1/chat; ``upstream_url`` replaces the model's URL (the chat suffix is still
added, ``upstream_path`` is not read, and ``preserve`` does not send the client's path, as in
Kong).

The request keeps the client's fields; the tuning options move into ``parameters`` (``top_k``,
``top_p``, ``temperature``, and ``max_tokens`` as ``max_new_tokens``, or ``max_length`` for
chat), a completion's ``prompt`` becomes ``inputs``, and ``options`` carries
``model.options.huggingface``'s ``use_cache`` and ``wait_for_model`` (false when unset).

Answers: a text-generation answer (``[{"generated_text": ...}]``) or a chat answer
(``choices``) becomes choices with a ``message`` each and ``finish_reason`` ``complete``, the
answer's ``usage`` (or ``{}``) kept; an answer with ``error`` or ``message`` is Kong's 500
``API error: ...``. Streamed events (SSE) become OpenAI chunks: a chat event's
``choices[0].delta.content``, a text-generation event's ``token.text``.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from fastkong.plugins.bundled._llm_openai import Driver
from fastkong.plugins.bundled._llm_shared import (
    SSE_TERMINATOR,
    LlmError,
    ModelInfo,
    StreamEvent,
    StreamResult,
    Target,
    merge_config_defaults,
    parse_url,
)

BASE_URL: Final = "https://api-inference.huggingface.co/models/{}"
CHAT_SUFFIX: Final = "/v1/chat/completions"


class HuggingfaceUrlError(LlmError):
    """No URL for the request (no ``upstream_url`` and no model name): Kong's 400."""


class Huggingface(Driver):
    name = "huggingface"
    paths = {}
    clears_cookies = False
    preserve_client_path = False

    def target(self, model: ModelInfo, route_type: str, stream: bool = False) -> Target:
        base = model.options.get("upstream_url")
        if base is None:
            if model.name is None:
                raise HuggingfaceUrlError("Could not parse the Hugging Face model endponit")
            base = BASE_URL.format(model.name)
        url = base if route_type == "llm/v1/completions" else base + CHAT_SUFFIX
        return parse_url(url)

    def to_format(
        self, request: dict[str, Any], model: ModelInfo, route_type: str
    ) -> dict[str, Any]:
        if route_type not in ("llm/v1/chat", "llm/v1/completions"):
            raise LlmError(f"no transformer for {model.provider}://{route_type}")
        merge_config_defaults(request, model.options)
        try:
            return to_huggingface(request, model, route_type)
        except (AttributeError, KeyError, TypeError):
            raise LlmError(f"error transforming to {model.provider}://{route_type}") from None

    def answer(self, body: bytes, model: ModelInfo, route_type: str) -> bytes:
        return from_huggingface(body, model, route_type)

    def stream_event(
        self, event: StreamEvent, model: ModelInfo, route_type: str, state: dict[str, Any]
    ) -> StreamResult:
        return huggingface_stream_event(event, model, route_type)


def to_huggingface(request: dict[str, Any], model: ModelInfo, route_type: str) -> dict[str, Any]:
    """Kong's ``to_huggingface``: the request table, changed in place."""
    parameters = request.get("parameters")
    if not isinstance(parameters, dict):
        parameters = {}
    for key in ("top_k", "top_p", "temperature"):
        if parameters.get(key) is None and request.get(key) is not None:
            parameters[key] = request[key]
    if parameters.get("max_tokens") is None and request.get("max_tokens") is not None:
        # Kong writes the conversational task's parameter as "max_lenght" (a typo the
        # API ignores): see docs/plugins.md.
        name = "max_length" if request.get("messages") is not None else "max_new_tokens"
        parameters[name] = request["max_tokens"]
    for key in ("top_k", "top_p", "temperature", "max_tokens"):
        request.pop(key, None)
    if route_type == "llm/v1/completions":
        request["inputs"] = request.pop("prompt", None)
    settings = model.options.get("huggingface") or {}
    request["options"] = {
        "use_cache": settings.get("use_cache") or False,
        "wait_for_model": settings.get("wait_for_model") or False,
    }
    request["parameters"] = parameters
    request["model"] = model.name if model.name is not None else request.get("model")
    return request


def from_huggingface(body: bytes, model: ModelInfo, route_type: str) -> bytes:
    """Kong's ``from_huggingface``."""
    try:
        response = msgspec.json.decode(body)
    except msgspec.DecodeError:
        raise LlmError("Failed to decode response") from None
    fields = response if isinstance(response, dict) else {}
    problem = fields.get("error") or fields.get("message")
    if problem:
        text = problem if isinstance(problem, str) else msgspec.json.encode(problem).decode()
        raise LlmError(f"API error: {text}")
    first = response[0] if isinstance(response, list) and response else None
    generated = first.get("generated_text") if isinstance(first, dict) else None
    choices: list[dict[str, Any]] = []
    if generated:
        choices.append({"message": {"content": generated}, "index": 0, "finish_reason": "complete"})
    elif isinstance(fields.get("choices"), list):
        for i, choice in enumerate(fields["choices"]):
            message = choice.get("message") if isinstance(choice, dict) else None
            content = message.get("content") if isinstance(message, dict) else None
            choices.append(
                {"message": {"content": content or ""}, "index": i, "finish_reason": "complete"}
            )
    else:
        raise LlmError("Invalid response format")
    usage = fields.get("usage")
    out = {
        "model": model.name,
        "object": fields.get("object") or route_type,
        "choices": choices,
        "usage": usage if usage else {},
    }
    return msgspec.json.encode({k: v for k, v in out.items() if v is not None})


def huggingface_stream_event(event: StreamEvent, model: ModelInfo, route_type: str) -> StreamResult:
    """Kong's ``handle_huggingface_stream``; the final ``[DONE]`` passes (Kong fails to decode
    it as JSON and drops it)."""
    data = event.data
    if not data:
        return StreamResult()
    if data == SSE_TERMINATOR:
        return StreamResult(SSE_TERMINATOR)
    try:
        frame = msgspec.json.decode(data)
    except msgspec.DecodeError:
        raise LlmError("failed to decode stream event frame from Hugging Face") from None
    frame = frame if isinstance(frame, dict) else {}
    chunk: dict[str, Any]
    if route_type == "llm/v1/chat":
        content = _dig(frame, "choices", 0, "delta", "content") or ""
        chunk = {
            "choices": [{"delta": {"content": content, "role": "assistant"}, "index": 0}],
            "model": frame.get("model") or model.name,
            "object": "chat.completion.chunk",
        }
    else:
        chunk = {
            "choices": [{"text": _dig(frame, "token", "text") or "", "index": 0}],
            "model": model.name,
            "object": "text_completion",
        }
    return StreamResult(
        msgspec.json.encode({k: v for k, v in chunk.items() if v is not None}).decode()
    )


def _dig(value: Any, *keys: str | int) -> Any:
    for key in keys:
        if isinstance(key, int):
            value = value[key] if isinstance(value, list) and len(value) > key else None
        else:
            value = value.get(key) if isinstance(value, dict) else None
        if not value:
            return None
    return value
