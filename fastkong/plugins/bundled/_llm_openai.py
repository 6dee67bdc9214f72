"""ai-proxy's drivers for the providers that speak OpenAI's format (or Ollama's): ``openai``
(and any OpenAI-compatible server through ``upstream_url``), ``azure``, ``mistral`` and
``llama2`` (Kong 3.9's ``kong/llm/drivers/{openai,azure,mistral,llama2}.lua``).

A driver turns an llm/v1 request into the provider's body (:meth:`Driver.to_format`), the
provider's answer back into llm/v1 (:meth:`Driver.from_format`, and
:meth:`Driver.stream_event` per streamed event), and says where the request goes
(:meth:`Driver.target`) with which extra headers and query arguments.
"""

from __future__ import annotations

from typing import Any, ClassVar, Final

import msgspec

from fastkong.plugins.bundled._llm_shared import (
    SSE_TERMINATOR,
    JsonObject,
    LlmError,
    ModelInfo,
    SignedRequest,
    StreamEvent,
    StreamResult,
    Target,
    from_ollama,
    merge_config_defaults,
    normalized_path,
    ollama_stream_event,
    parse_url,
    to_ollama,
)


class Driver:
    """A provider (the base is OpenAI's format, unchanged)."""

    name: ClassVar[str] = "openai"
    #: Kong's ``upstream_url_format`` and ``operation_map`` paths.
    base_url: ClassVar[str] = "https://api.openai.com:443"
    paths: ClassVar[dict[str, str]] = {
        "llm/v1/completions": "/v1/completions",
        "llm/v1/chat": "/v1/chat/completions",
    }
    #: Kong's ``clear_response_headers``: ``Set-Cookie`` is dropped from transformed answers.
    clears_cookies: ClassVar[bool] = True
    #: Kong's ``streaming_has_token_counts``: the provider counts tokens in its streams (else
    #: the prompt's tokens are estimated from the request).
    counts_stream_tokens: ClassVar[bool] = False
    #: Kong's ``pre_request`` asks for ``Accept-Encoding: gzip, identity`` (no brotli).
    asks_gzip: ClassVar[bool] = True
    #: The config's ``auth`` header and query parameter are sent (Bedrock signs instead).
    plain_auth: ClassVar[bool] = True
    #: ``preserve`` sends the client's path (Kong's ``override_upstream_url``; Hugging Face's
    #: driver does not call it).
    preserve_client_path: ClassVar[bool] = True
    #: A streamed event's token counts are totals so far, not increments (Gemini's).
    cumulative_stream_counts: ClassVar[bool] = False
    #: Set on a driver an AI transformer plugin asks through (Gemini then refuses an answer
    #: its content safety stopped, as Kong's driver does for the transformers only).
    for_transformer: bool = False

    def setup(self, config: Any) -> None:
        """Per plugin instance state from the whole config (credentials, region)."""

    def accept_encoding(self, stream: bool) -> str:
        """What the provider is asked to encode with: a stream is translated chunk by chunk,
        so it comes uncompressed."""
        return "identity" if stream else "gzip, identity"

    async def authorize(self, request: SignedRequest) -> list[tuple[str, str]]:
        """Headers proving who is asking, computed over the final request (Bedrock's SigV4,
        Gemini's service account token); none by default. Raises :class:`LlmError`."""
        return []

    def format_name(self, model: ModelInfo) -> str | None:
        """The upstream format option (mistral_format, llama2_format), None for fixed ones."""
        return None

    def to_format(
        self, request: dict[str, Any], model: ModelInfo, route_type: str
    ) -> dict[str, Any]:
        if route_type not in self.paths and route_type not in ("llm/v1/chat", "llm/v1/completions"):
            raise LlmError(f"no transformer for {model.provider}://{route_type}")
        merge_config_defaults(request, model.options)
        request["model"] = model.name if model.name is not None else request.get("model")
        request["stream"] = request.get("stream") or False
        request.pop("top_k", None)
        return request

    def from_format(self, body: bytes, model: ModelInfo, route_type: str) -> bytes:
        """The provider's answer as llm/v1 (:meth:`answer`), a failure in Kong's words."""
        try:
            return self.answer(body, model, route_type)
        except LlmError as exc:
            raise LlmError(
                f"transformation failed from type {model.provider}://{route_type}: {exc}"
            ) from None

    def answer(self, body: bytes, model: ModelInfo, route_type: str) -> bytes:
        """The provider's answer translated (the drivers' own part of :meth:`from_format`)."""
        return self._from_openai(body, route_type)

    @staticmethod
    def _from_openai(body: bytes, route_type: str) -> bytes:
        response = JsonObject.decode(body, f"failed to decode {route_type} response")
        if "choices" not in response or response["choices"] is None:
            raise LlmError(f"'choices' not in {route_type} response")
        return body

    def stream_event(
        self, event: StreamEvent, model: ModelInfo, route_type: str, state: dict[str, Any]
    ) -> StreamResult:
        """An OpenAI stream event goes out as it came."""
        return StreamResult(event.data)

    def target(self, model: ModelInfo, route_type: str, stream: bool = False) -> Target:
        """Kong's ``configure_request``: ``upstream_url`` whole, else the provider's URL with
        ``upstream_path`` or the operation's path."""
        url = model.options.get("upstream_url")
        if url is not None:
            target = parse_url(url)
        else:
            target = parse_url(self.base_url)
            target.path = model.options.get("upstream_path") or self.paths.get(route_type) or "/"
        return target

    def headers(self, model: ModelInfo) -> list[tuple[str, str]]:
        return []

    def query(self, model: ModelInfo, client: dict[str, list[str]]) -> dict[str, str] | None:
        """Query arguments the provider needs (Azure's ``api-version``)."""
        return None

    def extra_meta(self, model: ModelInfo) -> dict[str, Any] | None:
        """Provider fields of the log's ``ai.proxy.meta`` (Azure's)."""
        return None


class OpenAI(Driver):
    pass


class Azure(Driver):
    """Azure OpenAI: OpenAI's format on ``{instance}.openai.azure.com``, under
    ``/openai/deployments/{deployment}``, with ``api-version`` in the query."""

    name = "azure"
    base_url = "https://{}.openai.azure.com:443/openai/deployments/{}"
    paths = {"llm/v1/completions": "/completions", "llm/v1/chat": "/chat/completions"}

    def target(self, model: ModelInfo, route_type: str, stream: bool = False) -> Target:
        options = model.options
        if options.get("upstream_url") is not None:
            return parse_url(options["upstream_url"])
        base = self.base_url.format(
            options.get("azure_instance"), options.get("azure_deployment_id")
        )
        path = options.get("upstream_path") or self.paths.get(route_type) or "/"
        return parse_url(base + path)

    def query(self, model: ModelInfo, client: dict[str, list[str]]) -> dict[str, str] | None:
        given = client.get("api-version")
        version = given[0] if given else model.options.get("azure_api_version")
        return {"api-version": version} if version is not None else None

    def extra_meta(self, model: ModelInfo) -> dict[str, Any] | None:
        options = model.options
        return {
            "azure_instance_id": options.get("azure_instance"),
            "azure_deployment_id": options.get("azure_deployment_id"),
            "azure_api_version": options.get("azure_api_version"),
        }


class _OllamaCapable(Driver):
    """A provider whose upstream format is chosen by an option: OpenAI's passes through,
    Ollama's is translated."""

    option: ClassVar[str]
    asks_gzip = False

    def format_name(self, model: ModelInfo) -> str | None:
        value = model.options.get(self.option)
        return value if isinstance(value, str) else None

    def to_format(
        self, request: dict[str, Any], model: ModelInfo, route_type: str
    ) -> dict[str, Any]:
        kind = self.format_name(model)
        if kind == "openai":
            return super().to_format(request, model, route_type)
        if kind == "ollama" and route_type in ("llm/v1/chat", "llm/v1/completions"):
            merge_config_defaults(request, model.options)
            return to_ollama(request, model)
        raise LlmError(f"no transformer available to format {model.provider}://{route_type}/{kind}")

    def answer(self, body: bytes, model: ModelInfo, route_type: str) -> bytes:
        kind = self.format_name(model)
        if kind == "openai":
            return super().answer(body, model, route_type)
        if kind == "ollama":
            return from_ollama(body, model, route_type)
        return self.from_other(body, kind, route_type)

    def from_other(self, body: bytes, kind: str | None, route_type: str) -> bytes:
        raise LlmError(f"no transformer available from format {route_type}/{kind}")

    def stream_event(
        self, event: StreamEvent, model: ModelInfo, route_type: str, state: dict[str, Any]
    ) -> StreamResult:
        kind = self.format_name(model)
        if kind == "openai":
            return StreamResult(event.data)
        if kind == "ollama":
            return ollama_stream_event(event, route_type)
        raise LlmError(f"no transformer available from format {model.provider}://stream/{kind}")


class Mistral(_OllamaCapable):
    name = "mistral"
    option = "mistral_format"
    base_url = "https://api.mistral.ai:443"
    paths = {"llm/v1/chat": "v1/chat/completions"}


class Llama2(_OllamaCapable):
    """Self-hosted Llama 2 (``upstream_url`` is required): OpenAI's format, Ollama's, or
    ``raw`` (Hugging Face text-generation's ``inputs`` with Llama 2's ``[INST]`` markup)."""

    name = "llama2"
    option = "llama2_format"
    clears_cookies = False
    counts_stream_tokens = True

    def target(self, model: ModelInfo, route_type: str, stream: bool = False) -> Target:
        return parse_url(model.options.get("upstream_url") or "")

    def to_format(
        self, request: dict[str, Any], model: ModelInfo, route_type: str
    ) -> dict[str, Any]:
        if self.format_name(model) != "raw":
            return super().to_format(request, model, route_type)
        merge_config_defaults(request, model.options)
        parameters = {
            "max_new_tokens": request.get("max_tokens"),
            "top_p": request.get("top_p"),
            "top_k": request.get("top_k"),
            "temperature": request.get("temperature"),
            "stream": request.get("stream") or False,
        }
        body: dict[str, Any] = {
            "parameters": {k: v for k, v in parameters.items() if v is not None}
        }
        if request.get("messages") is not None:
            body["inputs"] = llama2_inst(request["messages"])
        elif request.get("prompt") is not None:
            body["inputs"] = (
                "<s> [INST] <<SYS>> You are a helpful assistant. <<SYS>> "
                f"{request['prompt']} [/INST]"
            )
        return body

    def from_other(self, body: bytes, kind: str | None, route_type: str) -> bytes:
        if kind != "raw":
            return super().from_other(body, kind, route_type)
        response = JsonObject.decode(body, "failed to decode llama2 response")
        data = response.get("data")
        if not isinstance(data, list) or len(data) > 1:
            raise LlmError("cannot parse response from llama2 endpoint")
        first = data[0] if data and isinstance(data[0], dict) else {}
        generated = first.get("generated_text")
        if not isinstance(generated, str) or not generated:
            raise LlmError("response data is empty from llama2 endpoint")
        reply = generated.split("[/INST]")[-1].strip()
        out: dict[str, Any]
        if route_type == "llm/v1/chat":
            out = {
                "choices": [{"message": {"content": reply, "role": "assistant"}, "index": 0}],
                "object": "chat.completion",
            }
        else:
            out = {"choices": [{"index": 0, "text": reply}], "object": "text_completion"}
        if response.get("usage") is not None:
            out["usage"] = response["usage"]
        return msgspec.json.encode(out)


def llama2_inst(messages: list[Any]) -> str:
    """Llama 2's chat markup, as Kong writes it: the first message is the system prompt, the
    second the first question, then user turns (assistant turns are left out, as in Kong)."""
    parts = []
    for i, message in enumerate(messages):
        content = message.get("content") if isinstance(message, dict) else None
        role = message.get("role") if isinstance(message, dict) else None
        if i == 0:
            parts.append(f"<s>[INST] <<SYS>> {content} <</SYS>>")
        elif i == 1:
            parts.append(f" {content} [/INST]")
        elif role == "system":
            parts.append(f" {content} </s>")
        elif role == "user":
            parts.append(f" <s>[INST] {content} [/INST]")
    return "".join(parts)


DRIVERS: Final[dict[str, type[Driver]]] = {
    "openai": OpenAI,
    "azure": Azure,
    "mistral": Mistral,
    "llama2": Llama2,
}

__all__ = ["DRIVERS", "SSE_TERMINATOR", "Driver", "normalized_path"]
