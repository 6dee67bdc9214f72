"""What ai-proxy's provider drivers share (Kong 3.9's ``kong/llm/drivers/shared.lua`` and
``kong/llm/init.lua``): the llm/v1 request checks, the model's tuning defaults, the rough token
estimate, the SSE (and newline-delimited JSON) stream parser, the Ollama format, and upstream
URLs."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final
from urllib.parse import urlsplit

import msgspec

SSE_TERMINATOR: Final = "[DONE]"
#: Kong's ``_SUPPORTED_STREAMING_CONTENT_TYPES`` (fastkong parses the SSE and JSON-lines ones).
STREAM_CONTENT_TYPES: Final = frozenset(
    {
        "text/event-stream",
        "application/vnd.amazon.eventstream",
        "application/json",
        "application/stream+json",
        "application/x-ndjson",
    }
)
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
_WORD = re.compile(r"\S+")
#: What the JSON array splitter stops at inside a string, and outside one.
_IN_STRING = re.compile(r'["\\]')
_STRUCTURE = re.compile(r'["\\{}\[\],]')


class LlmError(Exception):
    """A request or response that cannot be translated; the message is Kong's."""


@dataclass
class ModelInfo:
    """The model a request runs on: the configured one with ``$(...)`` templates resolved and
    the name taken from the request when the config has none (Kong's ``model_t``)."""

    provider: str
    name: str | None
    options: dict[str, Any] = field(default_factory=dict)


def no_transformer(model: ModelInfo, route_type: str) -> LlmError:
    """Kong's error for a route type a driver does not translate answers of."""
    return LlmError(f"no transformer available from format {model.provider}://{route_type}")


@dataclass
class StreamEvent:
    event: str | None = None
    data: str | None = None


@dataclass
class StreamResult:
    """One translated stream event: the SSE ``data`` to send (None: nothing) and token counts
    the provider reported (None: none)."""

    data: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


# -- request checks (kong/llm/init.lua) --------------------------------------------------------


def has_prompts(request: dict[str, Any]) -> bool:
    """Kong's ``validate_incoming``: a non-empty ``messages`` array or a string ``prompt``."""
    messages = request.get("messages")
    return (isinstance(messages, list) and len(messages) > 0) or isinstance(
        request.get("prompt"), str
    )


def compatibility_error(request: dict[str, Any], route_type: str) -> str | None:
    """Kong's ``is_compatible``: why ``request`` is not of ``route_type``'s format, or None."""
    if route_type == "preserve":
        return None
    formats = []
    messages = request.get("messages")
    if isinstance(messages, list) and messages:
        formats.append("llm/v1/chat")
    if isinstance(request.get("prompt"), str):
        formats.append("llm/v1/completions")
    if len(formats) > 1:
        return "request matches multiple LLM request formats"
    if not formats:
        return "request format not recognised"
    if formats[0] != route_type:
        return f"[{formats[0]}] message format is not compatible with [{route_type}] route type"
    return None


def merge_config_defaults(request: dict[str, Any], options: dict[str, Any]) -> None:
    """Kong's ``merge_config_defaults``: the configured tuning options win over the request's."""
    for key in ("temperature", "max_tokens", "top_p", "top_k"):
        value = options.get(key)
        if value is not None:
            request[key] = value


# -- token estimate ----------------------------------------------------------------------------


def count_words(value: Any) -> int:
    """Whitespace-separated words in a string, or in the ``text`` parts of a multi-modal
    content array."""
    if isinstance(value, str):
        return len(_WORD.findall(value))
    count = 0
    if isinstance(value, list):
        for item in value:
            if isinstance(item, dict) and item.get("type") == "text":
                text = item.get("text")
                if isinstance(text, str):
                    count += len(_WORD.findall(text))
    return count


def estimate_tokens(body: dict[str, Any], factor: float) -> int:
    """Kong's ``calculate_cost``: words times ``factor``, rounded (Kong's estimate for providers
    that do not count prompt tokens in streams)."""
    cost = 0.0
    choices = body.get("choices")
    messages = body.get("messages")
    if isinstance(choices, list):
        for choice in choices:
            if not isinstance(choice, dict):
                continue
            message = choice.get("message")
            if isinstance(message, dict) and message.get("content"):
                cost += count_words(message["content"]) * factor
            elif choice.get("text"):
                cost += count_words(choice["text"]) * factor
    elif isinstance(messages, list):
        for message in messages:
            if isinstance(message, dict):
                cost += count_words(message.get("content")) * factor
    elif "prompt" in body:
        cost = _prompt_cost(body["prompt"], factor)
    return math.floor(cost + 0.5)


def _prompt_cost(prompt: Any, factor: float) -> float:
    if isinstance(prompt, str):
        return count_words(prompt) * factor
    if not isinstance(prompt, list):
        raise LlmError("Invalid request format")
    cost = 0.0
    for item in prompt:
        if isinstance(item, str):
            cost += count_words(item) * factor
        elif isinstance(item, (int, float)) and not isinstance(item, bool):
            cost += 1
        elif isinstance(item, list) and all(isinstance(x, (int, float)) for x in item):
            cost += len(item)
        else:
            raise LlmError("Invalid request format")
    return cost


# -- streams -----------------------------------------------------------------------------------


class StreamParser:
    """Splits a response stream, chunk by chunk, into events: SSE (``event:``/``data:`` lines,
    an event ending at a blank line); a stream of JSON objects one per line (Ollama, Cohere):
    one event per line; or one JSON array sent element by element (Gemini's
    ``streamGenerateContent``, Kong's ``json_array_iterator``): one event per element, and
    ``[DONE]`` at the array's end. A part that has not ended yet waits for the next chunk."""

    __slots__ = ("pending", "mode", "array")

    def __init__(self) -> None:
        self.pending = ""
        #: "sse", "lines" or "array", from the stream's first character.
        self.mode: str | None = None
        self.array: JsonArraySplitter | None = None

    def feed(self, chunk: bytes, last: bool = False) -> list[StreamEvent]:
        text = self.pending + chunk.decode("utf-8", "replace")
        if self.mode is None and text.strip():
            first = text.lstrip()[0]
            self.mode = "lines" if first == "{" else "array" if first == "[" else "sse"
        if self.mode == "array":
            self.pending = ""
            if self.array is None:
                self.array = JsonArraySplitter()
            return [StreamEvent(data=element) for element in self.array.feed(text)]
        if self.mode == "lines":
            lines = text.replace("\r\n", "\n").split("\n")
            self.pending = "" if last else lines.pop()
            return [StreamEvent(data=line) for line in lines if line.strip()]
        text = text.replace("\r\n", "\n")
        blocks = text.split("\n\n")
        self.pending = "" if last else blocks.pop()
        events = []
        for block in blocks:
            event = StreamEvent()
            for line in block.split("\n"):
                name, colon, value = line.partition(":")
                if not colon or not name:
                    continue
                value = value.lstrip()
                if name == "event":
                    event.event = value
                elif name == "data":
                    event.data = value if event.data is None else event.data + "\n" + value
            if event.event is not None or event.data is not None:
                events.append(event)
        return events


class JsonArraySplitter:
    """The elements of a JSON array arriving in pieces, each as its own JSON text, and
    ``[DONE]`` after the closing bracket (what follows it is ignored). Brackets and braces
    inside strings do not count.

    As Kong's ``json_array_iterator``: an element ends at a top-level ``,`` or ``]``, or where
    a piece ends after it at the top level on anything but a bracket, brace or comma (Gemini
    ends each element's piece with a line break, and the element goes out with it, not with
    the next piece); a backslash outside a string also takes the next character as it is."""

    __slots__ = ("started", "done", "depth", "in_string", "escaped", "current")

    def __init__(self) -> None:
        self.started = False
        self.done = False
        self.depth = 0
        self.in_string = False
        self.escaped = False
        self.current: list[str] = []

    def feed(self, text: str) -> list[str]:
        out: list[str] = []
        pos = 0
        if not self.started:
            opening = text.find("[")
            if opening < 0:
                return out
            self.started = True
            pos = opening + 1
        size = len(text)
        # From one character that matters to the next (a quote or backslash inside a string,
        # a bracket, brace, quote or comma outside): the text between is copied whole.
        while pos < size and not self.done:
            if self.escaped:
                self.current.append(text[pos])
                self.escaped = False
                pos += 1
                continue
            if self.in_string:
                found = _IN_STRING.search(text, pos)
                if found is None:
                    self.current.append(text[pos:])
                    break
                self.current.append(text[pos : found.end()])
                if found.group() == "\\":
                    self.escaped = True
                else:
                    self.in_string = False
                pos = found.end()
                continue
            found = _STRUCTURE.search(text, pos)
            if found is None:
                self.current.append(text[pos:])
                break
            char = found.group()
            self.current.append(text[pos : found.start()])
            pos = found.end()
            if self.depth == 0 and char in ",]":
                self._flush(out)
                if char == "]":
                    self.done = True
                    out.append(SSE_TERMINATOR)
                continue
            if char == '"':
                self.in_string = True
            elif char == "\\":
                self.escaped = True
            elif char in "{[":
                self.depth += 1
            elif char in "}]":
                self.depth -= 1
            self.current.append(char)
        if (
            size
            and not self.done
            and self.depth == 0
            and not self.in_string
            and text[-1] not in "{}[],"
        ):
            self._flush(out)
        return out

    def _flush(self, out: list[str]) -> None:
        element = "".join(self.current).strip()
        self.current = []
        if element:
            out.append(element)


def content_type_of(value: str | None) -> str | None:
    """The media type of a ``Content-Type`` value, parameters cut off."""
    if value is None:
        return None
    return value.split(";", 1)[0].strip().lower()


# -- Ollama ------------------------------------------------------------------------------------


def to_ollama(request: dict[str, Any], model: ModelInfo) -> dict[str, Any]:
    """Kong's ``to_ollama``: llm/v1 to Ollama's ``/api/chat`` or ``/api/generate`` body."""
    body: dict[str, Any] = {}
    if request.get("messages") is not None:
        body["messages"] = request["messages"]
    elif request.get("prompt") is not None:
        body["prompt"] = request["prompt"]
    body["stream"] = request.get("stream") or False
    body["model"] = model.name if model.name is not None else request.get("name")
    for key in ("tools", "tool_choice"):
        if request.get(key) is not None:
            body[key] = request[key]
    if model.options:
        options = {
            "num_predict": request.get("max_tokens"),
            "temperature": request.get("temperature"),
            "top_p": request.get("top_p"),
            "top_k": request.get("top_k"),
        }
        body["options"] = {k: v for k, v in options.items() if v is not None}
    return {k: v for k, v in body.items() if v is not None}


def from_ollama(body: bytes, model: ModelInfo, route_type: str) -> bytes:
    """Kong's ``from_ollama`` for a whole response."""
    try:
        response = msgspec.json.decode(body)
    except msgspec.DecodeError:
        raise LlmError("failed to decode ollama response") from None
    if not isinstance(response, dict):
        raise LlmError("failed to decode ollama response")
    stop_length = model.options.get("max_tokens") or -1
    eval_count = response.get("eval_count")
    prompt_count = response.get("prompt_eval_count")
    out: dict[str, Any] = {
        "model": response.get("model"),
        "created": response.get("created_at"),
        "usage": {
            "completion_tokens": eval_count or 0,
            "prompt_tokens": prompt_count or 0,
            "total_tokens": (eval_count or 0) + (prompt_count or 0),
        },
    }
    if route_type == "llm/v1/chat":
        out["object"] = "chat.completion"
        reason = response.get("finish_reason") or (
            "length" if eval_count is not None and eval_count == stop_length else "stop"
        )
        choice: dict[str, Any] = {"finish_reason": reason, "index": 0}
        if response.get("message") is not None:
            choice["message"] = response["message"]
        out["choices"] = [choice]
    elif route_type == "llm/v1/completions":
        out["object"] = "text_completion"
        choice = {"index": 0}
        if response.get("response") is not None:
            choice["text"] = response["response"]
        out["choices"] = [choice]
    else:
        raise LlmError(f"no ollama-format transformer for response type {route_type}")
    return msgspec.json.encode({k: v for k, v in out.items() if v is not None})


def ollama_stream_event(event: StreamEvent, route_type: str) -> StreamResult:
    """One line of an Ollama stream as an OpenAI chunk; the last one (``done``) carries the
    token counts and becomes ``[DONE]``."""
    try:
        frame = msgspec.json.decode(event.data or "")
    except msgspec.DecodeError:
        raise LlmError("failed to decode ollama response") from None
    if not isinstance(frame, dict):
        raise LlmError("failed to decode ollama response")
    if frame.get("done"):
        return StreamResult(
            SSE_TERMINATOR, frame.get("prompt_eval_count") or 0, frame.get("eval_count") or 0
        )
    chunk: dict[str, Any]
    if route_type == "llm/v1/chat":
        message = frame.get("message")
        content = message.get("content") if isinstance(message, dict) else None
        chunk = {
            "choices": [{"delta": {"content": content or ""}, "index": 0}],
            "object": "chat.completion.chunk",
        }
    else:
        chunk = {
            "choices": [{"text": frame.get("response") or "", "index": 0}],
            "object": "text_completion",
        }
    if frame.get("model") is not None:
        chunk["model"] = frame["model"]
    return StreamResult(msgspec.json.encode(chunk).decode())


# -- upstream URLs -----------------------------------------------------------------------------


@dataclass
class Target:
    """Where a request goes: ``kong.service.set_target``, ``set_scheme`` and ``set_path``."""

    scheme: str
    host: str
    port: int
    path: str


@dataclass
class SignedRequest:
    """The request as it goes to the provider, for a driver that signs it."""

    method: str
    target: Target
    #: The path and the decoded query arguments as sent.
    path: str
    query: list[tuple[str, str]]
    body: bytes


def parse_url(url: str) -> Target:
    """A URL's parts; a missing port is the scheme's (see docs/plugins.md: Kong takes 443)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or _DEFAULT_PORTS.get(scheme, 443)
    return Target(scheme, parts.hostname or "", port, parts.path)


def normalized_path(path: str | None) -> str:
    """Kong's ``gsub(path, "^/*", "/")``: exactly one leading slash."""
    return "/" + (path or "").lstrip("/")


class JsonObject:
    """Decoding helpers for the drivers."""

    decoder: ClassVar[msgspec.json.Decoder[Any]] = msgspec.json.Decoder()

    @classmethod
    def decode(cls, data: bytes | str, error: str) -> dict[str, Any]:
        try:
            value = cls.decoder.decode(data)
        except msgspec.DecodeError:
            raise LlmError(error) from None
        if not isinstance(value, dict):
            raise LlmError(error)
        return value
