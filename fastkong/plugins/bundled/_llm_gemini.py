"""ai-proxy's Gemini driver (Kong 3.9's ``kong/llm/drivers/gemini.lua``), llm/v1/chat only.

Where requests go: Google AI Studio's
``https://generativelanguage.googleapis.com/v1beta/models/{model}:generateContent`` (an API key
in the ``auth`` header or query parameter), or, when ``model.options.gemini`` names an
``api_endpoint``, ``project_id`` and ``location_id``, Vertex AI's
``https://{api_endpoint}/v1/projects/{project}/locations/{location}/publishers/google/models/
{model}:generateContent``; a stream asks for ``streamGenerateContent`` instead (Google then
sends one JSON array, element by element, which :class:`._llm_shared.StreamParser` splits).
``upstream_url`` replaces the URL, ``upstream_path`` its path. With
``auth.gcp_use_service_account`` the request carries a bearer token obtained for the service
account (:mod:`._gcp_token`).

The request: system messages become ``systemInstruction`` (their texts joined), the others
``contents`` with roles ``user`` and ``model``, text and image parts (a ``data:`` URL as
``inlineData``, any other URL as ``fileData``); tool results and tool calls become
``function_response`` and ``function_call`` parts; the tuning options ``generationConfig``
(``maxOutputTokens``, ``stopSequences``, ``temperature``, ``topK``, ``topP``); OpenAI tools
one ``function_declarations`` list. The answer: the first candidate's first text part (or its
function calls as ``tool_calls``), ``finishReason`` lower-cased, ``usageMetadata`` as
``usage``. A streamed element becomes a ``chat.completion.chunk`` whose token counts are the
totals so far.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from fastkong.plugins.bundled._gcp_token import ServiceAccount
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

_ROLES: Final = {"system": "system", "user": "user", "assistant": "model"}
PUBLIC_URL: Final = "https://generativelanguage.googleapis.com"
PUBLIC_PATH: Final = "/v1beta/models/{}:{}"
VERTEX_PATH: Final = "/v1/projects/{}/locations/{}/publishers/google/models/{}:{}"


class Gemini(Driver):
    name = "gemini"
    paths = {}
    counts_stream_tokens = True
    cumulative_stream_counts = True

    def __init__(self) -> None:
        self.account: ServiceAccount | None = None

    def setup(self, config: Any) -> None:
        auth = config.auth
        if auth is not None and auth.gcp_use_service_account:
            self.account = ServiceAccount.from_config(auth.gcp_service_account_json)

    def accept_encoding(self, stream: bool) -> str:
        return "identity"  # Kong: gzip breaks Gemini's streams

    def target(self, model: ModelInfo, route_type: str, stream: bool = False) -> Target:
        options = model.options
        operation = "streamGenerateContent" if stream else "generateContent"
        vertex = options.get("gemini") or {}
        if options.get("upstream_url") is not None:
            target = parse_url(options["upstream_url"])
        elif all(vertex.get(k) for k in ("api_endpoint", "project_id", "location_id")):
            path = VERTEX_PATH.format(
                vertex["project_id"], vertex["location_id"], model.name, operation
            )
            target = parse_url(f"https://{vertex['api_endpoint']}{path}")
        else:
            target = parse_url(PUBLIC_URL + PUBLIC_PATH.format(model.name, operation))
        if options.get("upstream_path") is not None:
            target.path = options["upstream_path"]
        return target

    async def authorize(self, request: SignedRequest) -> list[tuple[str, str]]:
        if self.account is None:
            return []
        token = await self.account.token()
        return [("Authorization", f"Bearer {token}")]

    def to_format(
        self, request: dict[str, Any], model: ModelInfo, route_type: str
    ) -> dict[str, Any]:
        if route_type != "llm/v1/chat":
            raise LlmError(f"no transformer for {model.provider}://{route_type}")
        merge_config_defaults(request, model.options)
        try:
            return to_gemini(request, model)
        except LlmError as exc:
            raise LlmError(
                f"error transforming to {model.provider}://{route_type}: {exc}"
            ) from None
        except (AttributeError, KeyError, TypeError, IndexError, msgspec.DecodeError):
            raise LlmError(f"error transforming to {model.provider}://{route_type}: nil") from None

    def answer(self, body: bytes, model: ModelInfo, route_type: str) -> bytes:
        if route_type != "llm/v1/chat":
            raise no_transformer(model, route_type)
        return from_gemini(body, model, safety_is_failure=self.for_transformer)

    def stream_event(
        self, event: StreamEvent, model: ModelInfo, route_type: str, state: dict[str, Any]
    ) -> StreamResult:
        return gemini_stream_event(event)


# -- request -----------------------------------------------------------------------------------


def to_gemini(request: dict[str, Any], model: ModelInfo) -> dict[str, Any]:
    """Kong's ``to_gemini_chat_openai``."""
    body: dict[str, Any] = {}
    messages = request.get("messages")
    if isinstance(messages, list) and messages:
        contents: list[dict[str, Any]] = []
        system: list[str] | None = None
        # Tool results name the function they answer (Kong names every one
        # "get_product_info"): the assistant's tool call with the same id says which.
        names: dict[Any, Any] = {}
        for i, message in enumerate(messages, 1):
            role = message.get("role")
            if role == "system":
                system = system or []
                content = message.get("content")
                system.append(content if isinstance(content, str) else "")
            elif role == "tool":
                response = {"content": [message.get("content")]}
                name = names.get(message.get("tool_call_id"), message.get("name"))
                part = {"function_response": _without_none({"response": response, "name": name})}
                contents.append({"role": "function", "parts": [part]})
            elif role == "assistant" and isinstance(message.get("tool_calls"), list):
                calls = message["tool_calls"]
                parts = []
                for call in calls:
                    function = call["function"]
                    names[call.get("id")] = function.get("name")
                    arguments = function.get("arguments")
                    args = msgspec.json.decode(arguments) if isinstance(arguments, str) else None
                    parts.append(
                        {
                            "function_call": _without_none(
                                {"name": function.get("name"), "args": args}
                            )
                        }
                    )
                contents.append({"role": "function", "parts": parts})
            else:
                # An unknown role is left out (Kong's nil), Gemini then reading it as the user's.
                turn = {"role": _ROLES.get(role or "user"), "parts": _parts(message, i)}
                contents.append(_without_none(turn))
        if system is not None and (model.name or "")[:10] == "gemini-1.0":
            raise LlmError("system prompts aren't supported on gemini-1.0 models")
        if contents:
            body["contents"] = contents
        if system is not None:
            body["systemInstruction"] = {"parts": [{"text": "".join(system)}]}
    config = {
        "maxOutputTokens": request.get("max_tokens"),
        "stopSequences": request.get("stop"),
        "temperature": request.get("temperature"),
        "topK": request.get("top_k"),
        "topP": request.get("top_p"),
    }
    body["generationConfig"] = _without_none(config)
    tools = _tools(request.get("tools"))
    if tools is not None:
        body["tools"] = tools
    if request.get("tool_config") is not None:
        body["tool_config"] = request["tool_config"]
    return body


def _parts(message: dict[str, Any], position: int) -> list[dict[str, Any]]:
    content = message.get("content")
    if isinstance(content, str):
        return [{"text": content}]
    if not isinstance(content, list):
        return []
    if not content:
        raise LlmError(f"message at position {position} does not match expected array format")
    parts = []
    for j, part in enumerate(content, 1):
        converted = _part(part)
        if converted is None:
            raise LlmError(
                f"message at position {position}, part at position {j} "
                "does not match expected OpenAI format"
            )
        parts.append(converted)
    return parts


def _part(part: Any) -> dict[str, Any] | None:
    """Kong's ``openai_part_to_gemini_part``: a text or image part, else an error."""
    if not isinstance(part, dict):
        return None
    kind = part.get("type")
    if kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else None
        if not isinstance(url, str):
            raise LlmError("message part type is 'image_url' but is missing .image_url.url block")
        return _image(url)
    if kind == "text":
        if part.get("text") is None:
            raise LlmError("message part type is 'text' but is missing .text block")
        return {"text": part["text"]}
    raise LlmError(f"cannot transform part of type '{kind}' to Gemini format")


def _image(url: str) -> dict[str, Any]:
    """A ``data:`` URL's bytes inline; any other URL (a bucket, an https link) by reference."""
    if len(url) < 10:
        raise LlmError(
            "could not decode OpenAI image-part, "
            "image URL is less than 10 bytes, which is not parsable"
        )
    if url[:6].split(":")[0] != "data":
        return {"fileData": {"fileUri": url, "mimeType": "image/generic"}}
    mimetype, _, rest = url[5:].partition(";")
    encoding, _, data = rest.partition(",")
    del encoding  # Gemini takes base64 only: the data goes as it came
    return {"inlineData": _without_none({"data": data or None, "mimeType": mimetype})}


def _tools(tools: Any) -> list[dict[str, Any]] | None:
    if not isinstance(tools, list):
        return None
    declarations = [t["function"] for t in tools if isinstance(t, dict) and t.get("function")]
    return [{"function_declarations": declarations}] if declarations else None


# -- answer ------------------------------------------------------------------------------------


def _first_parts(response: dict[str, Any]) -> list[Any]:
    candidates = response.get("candidates")
    if not isinstance(candidates, list) or not candidates:
        return []
    first = candidates[0] if isinstance(candidates[0], dict) else {}
    content = first.get("content")
    parts = content.get("parts") if isinstance(content, dict) else None
    return parts if isinstance(parts, list) else []


def _finish_reason(response: dict[str, Any]) -> Any:
    candidates = response.get("candidates")
    if isinstance(candidates, list) and candidates and isinstance(candidates[0], dict):
        return candidates[0].get("finishReason")
    return None


def _text(parts: list[Any]) -> Any:
    first = parts[0] if parts and isinstance(parts[0], dict) else {}
    return first.get("text")


def _calls(parts: list[Any]) -> list[dict[str, Any]] | None:
    first = parts[0] if parts and isinstance(parts[0], dict) else {}
    if not first.get("functionCall"):
        return None
    calls = []
    for part in parts:
        call = part.get("functionCall") if isinstance(part, dict) else None
        call = call if isinstance(call, dict) else {}
        arguments = msgspec.json.encode(call.get("args")).decode()
        calls.append({"function": {"name": call.get("name"), "arguments": arguments}})
    return calls


def from_gemini(body: bytes, model: ModelInfo, safety_is_failure: bool = False) -> bytes:
    """Kong's ``from_gemini_chat_openai``; ``safety_is_failure`` for the AI transformers, whose
    new body must not be a candidate Gemini's content safety stopped."""
    response = JsonObject.decode(body, "failed to decode response from Gemini")
    candidates = response.get("candidates")
    if not isinstance(candidates, list) or not candidates:
        raise LlmError("no generation candidates received from Gemini, or max_tokens too short")
    if safety_is_failure and _finish_reason(response) == "SAFETY":
        raise LlmError("transformation generation candidate breached Gemini content safety")
    out: dict[str, Any] = {"choices": []}
    parts = _first_parts(response)
    text = _text(parts)
    calls = _calls(parts)
    if text is not None:
        reason = _finish_reason(response)
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "finish_reason": reason.lower() if isinstance(reason, str) else None,
        }
        out["choices"] = [_without_none(choice)]
        out["object"] = "chat.completion"
        out["model"] = model.name
    elif calls is not None:
        message = {"role": "assistant", "tool_calls": calls}
        out["choices"] = [{"index": 0, "message": message}]
    usage = response.get("usageMetadata")
    if isinstance(usage, dict):
        out["usage"] = _without_none(
            {
                "prompt_tokens": usage.get("promptTokenCount"),
                "completion_tokens": usage.get("candidatesTokenCount"),
                "total_tokens": usage.get("totalTokenCount"),
            }
        )
    return msgspec.json.encode(_without_none(out))


def gemini_stream_event(event: StreamEvent) -> StreamResult:
    """Kong's ``handle_stream_event``: one element of the streamed array as an OpenAI chunk."""
    data = event.data
    if not data:
        return StreamResult()
    if data == SSE_TERMINATOR:
        return StreamResult(SSE_TERMINATOR)
    frame = JsonObject.decode(data, "failed to decode stream event frame from gemini")
    parts = _first_parts(frame)
    text = _text(parts)
    calls = _calls(parts)
    reason = _finish_reason(frame)
    delta: dict[str, Any]
    if text is not None:
        delta = {"content": text, "role": "assistant"}
    elif calls is not None:
        delta = {"tool_calls": [{**call, "type": "function"} for call in calls]}
    else:
        return StreamResult()
    choice = _without_none({"delta": delta, "index": 0, "finish_reason": reason})
    usage = frame.get("usageMetadata")
    usage = usage if isinstance(usage, dict) else {}
    return StreamResult(
        msgspec.json.encode({"choices": [choice]}).decode(),
        usage.get("promptTokenCount") or 0,
        usage.get("candidatesTokenCount") or 0,
    )


def _without_none(value: dict[str, Any]) -> dict[str, Any]:
    """Lua tables have no nil values: Kong leaves unset fields out of what it encodes."""
    return {k: v for k, v in value.items() if v is not None}
