"""ai-proxy: the route's requests go to an LLM provider, translated between Kong's llm/v1
formats (OpenAI's chat and completions) and the provider's (Kong 3.9's
``kong/plugins/ai-proxy`` and ``kong/llm``).

Priority 770. In the access phase the request body is read and checked as Kong checks it
(``400 {"error":{"message":...}}`` for a body without prompts, a request of the other route
type, a model other than the configured one, a stream the config denies); the model's
``$(headers.x)``, ``$(query_params.x)`` and ``$(uri_captures.x)`` templates are resolved; the body
is rewritten into the provider's format, and the request is sent to the provider's URL (or
``upstream_url``) instead of the service's host (:meth:`RequestContext.set_upstream_target`, the
service's timeouts, retries and TLS settings still applying), with the configured auth header or
query parameter (the client's own kept when ``allow_override``), Anthropic's
``anthropic-version`` and Azure's ``api-version``; a driver may then prove the request itself,
over its final body, path and query (Bedrock's SigV4 signature, a Gemini service account's
token: :meth:`Driver.authorize`).

A non-streamed answer is read whole (Kong's ``enable_buffering``); a 200 is translated back to
llm/v1 (an answer that cannot be is Kong's ``500 {"error":{"message":...}}``), its
``Content-Length`` fixed, and ``X-Kong-LLM-Model: provider/model`` added (``model_name_header``).
Other statuses go back as they came. A streamed answer (``"stream": true`` or
``response_streaming: always``) goes out as Server-Sent Events chunk by chunk as it arrives,
each provider event translated to an OpenAI ``chat.completion.chunk`` (OpenAI-format events
pass unchanged, the others are translated); events come as SSE, JSON lines, one JSON array
(Gemini) or AWS's binary event stream (Bedrock, :class:`EventStreamParser`).

``logging.log_statistics`` adds Kong's ``ai.proxy`` section (``meta``: provider, request and
response model, latency; ``usage``: tokens, time per token, cost; ``payload`` with
``log_payloads``) to what the logging plugins serialize (and prometheus's ``ai_metrics`` count).
A request refused before its model is settled is logged with provider ``UNSPECIFIED`` and the
body's ``model`` (else ``UNSPECIFIED``), what Kong's parse-request filter had recorded. The
route type ``preserve`` passes body and answer through, only the target and auth being set.
"""

from __future__ import annotations

import gzip
import math
import re
import time
import zlib
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qsl, urlencode

import msgspec

from fastkong.plugins.base import Exit, Plugin, kong_exit
from fastkong.plugins.bundled._llm_bedrock import EVENT_STREAM, EventStreamParser
from fastkong.plugins.bundled._llm_drivers import ALL_DRIVERS
from fastkong.plugins.bundled._llm_openai import Driver
from fastkong.plugins.bundled._llm_schema import AiProxyConfig, check, model_options
from fastkong.plugins.bundled._llm_shared import (
    SSE_TERMINATOR,
    STREAM_CONTENT_TYPES,
    LlmError,
    ModelInfo,
    SignedRequest,
    StreamParser,
    StreamResult,
    Target,
    compatibility_error,
    content_type_of,
    estimate_tokens,
    has_prompts,
    normalized_path,
)
from fastkong.plugins.bundled._serializer import AI_LOG_KEY
from fastkong.plugins.registry import register_plugin

if TYPE_CHECKING:
    from fastkong.plugins.context import RequestContext
    from fastkong.runtime import Runtime

Headers = list[tuple[bytes, bytes]]

_STATE: Final = "ai-proxy"
_TEMPLATE = re.compile(r"\$\((.*?)\)")
#: nginx's client_body_buffer_size default: Kong parses a body this size whatever
#: ``max_request_body_size`` says (a larger one only up to ``max_request_body_size``).
_BODY_BUFFER: Final = 8192


class _State:
    """One request's ai-proxy state, from the access phase to the log phase."""

    __slots__ = (
        "driver",
        "model",
        "stream",
        "preserve",
        "started",
        "latency_ms",
        "prompt_tokens",
        "completion_tokens",
        "cost",
        "parser",
        "text",
        "finish_reason",
        "stream_state",
        "request_body",
        "response_body",
        "settled",
        "asked",
    )

    def __init__(self, driver: Driver, model: ModelInfo, started: float, body: bytes) -> None:
        self.driver = driver
        self.model = model
        self.stream = False
        self.preserve = False
        self.started = started
        self.latency_ms = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.cost: float = 0
        #: Set when a streamed 200 is translated event by event.
        self.parser: StreamParser | EventStreamParser | None = None
        self.text: list[str] = []
        self.finish_reason: Any = None
        self.stream_state: dict[str, Any] = {}
        self.request_body = body
        self.response_body: bytes | None = None
        #: Kong's normalize-request ``set_ctx("model")``: the request passed the model checks.
        #: A request refused before is logged as Kong's parse-request saw it: provider
        #: ``UNSPECIFIED``, model the body's ``model`` (:meth:`AiProxy.log`).
        self.settled = False
        self.asked: str | None = None


def _bail(status: int, message: str | None = None) -> Exit:
    """Kong's ``bail``: ``kong.response.exit`` with ``{"error":{"message":...}}``."""
    return kong_exit(status, {"error": {"message": message}} if message is not None else None)


@register_plugin
class AiProxy(Plugin):
    name = "ai-proxy"
    priority = 770
    Config = AiProxyConfig

    def __init__(self, config: AiProxyConfig, runtime: Runtime, entity: Any) -> None:
        super().__init__(config, runtime, entity)
        self.driver = ALL_DRIVERS[config.model.provider]()
        self.driver.setup(config)
        self.options = model_options(config)
        self.templated = (
            "$("
            in msgspec.json.encode(
                [config.model.name, self.options, config.model.provider]
            ).decode()
        )
        auth = config.auth
        self.auth = auth
        self.body_limit = max(_BODY_BUFFER, config.max_request_body_size)

    @classmethod
    def check(cls, config: Any) -> list[tuple[str, str]]:
        return check(config)

    # -- access --------------------------------------------------------------------------------

    async def access(self, ctx: RequestContext) -> Exit | None:
        config = self.config
        started = time.monotonic()
        raw = await ctx.read_body()
        request = self._parse(ctx, raw)
        refusal: Exit | None = None
        try:
            model = self._model(ctx)
        except LlmError as exc:
            model, refusal = ModelInfo(config.model.provider, None), _bail(400, str(exc))
        state = _State(self.driver, model, started, raw)
        ctx.plugin_data[_STATE] = state
        if request is not None and isinstance(request.get("model"), str):
            state.asked = request["model"]
        if refusal is not None:
            return refusal
        preserve = state.preserve = config.route_type == "preserve"
        if request is None:
            request = {}
        if not preserve and not has_prompts(request):
            return _bail(400, "request body doesn't contain valid prompts")
        given = request.get("model")
        if model.name is None and isinstance(given, str):
            model.name = given
        if isinstance(given, str) and given and given != model.name:
            return _bail(400, f"cannot use own model - must be: {model.name}")
        if model.name is None and not preserve:
            return _bail(400, "model parameter not found in request, nor in gateway configuration")
        state.settled = True
        problem = compatibility_error(request, config.route_type)
        if problem is not None:
            return _bail(400, problem)
        # Lua's truth: a JSON null is true, only an absent key or false is not.
        if ("stream" in request and request["stream"] is not False) or (
            config.response_streaming == "always"
        ):
            request["stream"] = True
            if config.response_streaming == "deny":
                return _bail(400, "response streaming is not enabled for this LLM")
            state.stream = True
        driver = self.driver
        if not preserve:
            try:
                body = driver.to_format(request, model, config.route_type)
            except LlmError as exc:
                return _bail(400, str(exc))
            auth = self.auth
            if (
                auth is not None
                and auth.param_location == "body"
                and auth.param_name is not None
                and body is request  # as in Kong: only a body built on the request's table
                and (request.get(auth.param_name) is None or not auth.allow_override)
            ):
                body[auth.param_name] = auth.param_value
            # The log's payload.request is this body, as sent (Kong logs the request body
            # after its normalize-request filter has replaced it with the provider's format).
            ctx.body = state.request_body = msgspec.json.encode(body)
            ctx.set_upstream_header("content-type", "application/json")
        if not driver.counts_stream_tokens:
            try:
                state.prompt_tokens = estimate_tokens(request, 1.8 if state.stream else 1.0)
            except LlmError:
                return _bail(500)
        try:
            target = self._configure(ctx, state)
        except LlmError as exc:  # Hugging Face without a model URL: Kong's exit with a text
            return kong_exit(400, {"message": str(exc)})
        try:
            proof = await driver.authorize(self._signed(ctx, target, raw))
        except LlmError as exc:
            return _bail(500, str(exc) or None)
        for name, value in proof:
            ctx.set_upstream_header(name, value)
        ctx.buffer_response = not state.stream
        return None

    @staticmethod
    def _signed(ctx: RequestContext, target: Target, raw: bytes) -> SignedRequest:
        """The request as the provider gets it (its body, path and query as sent)."""
        query = ctx.upstream_query if ctx.upstream_query is not None else ctx.query_string
        pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
        body = ctx.body if ctx.body is not None else raw
        # The method as sent: the client's (Kong signs POST whatever goes).
        method = ctx.upstream_method or ctx.method
        return SignedRequest(method, target, ctx.upstream_path or "/", pairs, body)

    def _parse(self, ctx: RequestContext, raw: bytes) -> dict[str, Any] | None:
        """Kong's ``kong.request.get_body``: JSON (the default type) within the size limit."""
        content_type = (ctx.header("content-type") or "application/json").lower()
        if "application/json" not in content_type or len(raw) > self.body_limit:
            return None
        try:
            value = msgspec.json.decode(raw)
        except msgspec.DecodeError:
            return None
        return value if isinstance(value, dict) else None

    def _model(self, ctx: RequestContext) -> ModelInfo:
        """Kong's ``merge_model_options``: ``$(source.key)`` templates resolved per request."""
        model = self.config.model
        options = self.options
        name = model.name
        if self.templated:
            options = _resolve(options, ctx)
            name = _resolve(name, ctx)
        return ModelInfo(model.provider, name, dict(options))

    def _configure(self, ctx: RequestContext, state: _State) -> Target:
        """Kong's ``configure_request``: target, path, query, auth and provider headers."""
        config = self.config
        driver = state.driver
        model = state.model
        target = driver.target(model, config.route_type, state.stream)
        if (
            state.preserve
            and driver.preserve_client_path
            and model.options.get("upstream_path") is None
        ):
            target.path = ctx.raw_path.decode("latin-1")
        ctx.upstream_path = normalized_path(target.path)
        ctx.set_upstream_target(target.scheme, target.host, target.port)
        for name, value in driver.headers(model):
            ctx.set_upstream_header(name, value)
        ctx.set_upstream_header("accept-encoding", driver.accept_encoding(state.stream))
        auth = self.auth if driver.plain_auth else None
        args: dict[str, str] = {}
        provider_args = driver.query(model, ctx.query)
        if provider_args:
            args.update(provider_args)
        if auth is not None:
            if auth.header_name is not None and auth.header_value is not None:
                if ctx.header(auth.header_name) is None or not auth.allow_override:
                    ctx.set_upstream_header(auth.header_name, auth.header_value)
            if (
                auth.param_location == "query"
                and auth.param_name is not None
                and auth.param_value is not None
                and (auth.param_name not in ctx.query or not auth.allow_override)
            ):
                args[auth.param_name] = auth.param_value
        if args:
            query: dict[str, list[str]] = {k: list(v) for k, v in ctx.query.items()}
            for key, value in args.items():
                query[key] = [value]
            ctx.upstream_query = urlencode(sorted(query.items()), doseq=True).encode("latin-1")
        return target

    # -- response ------------------------------------------------------------------------------

    def response(self, ctx: RequestContext, status: int, headers: Headers) -> None:
        state: _State | None = ctx.plugin_data.get(_STATE)
        if state is None:
            return
        state.latency_ms = int((time.monotonic() - state.started) * 1000)
        if not ctx.proxied:
            return
        if state.stream:
            upstream_type = _header(headers, b"content-type")
            _set(headers, b"content-type", b"text/event-stream")
            if status == 200 and not state.preserve:
                media = content_type_of(upstream_type)
                if media in STREAM_CONTENT_TYPES:
                    state.parser = EventStreamParser() if media == EVENT_STREAM else StreamParser()
                    _clear(headers, b"content-length")  # the body is rewritten
        else:
            body = ctx.response_body or b""
            if (_header(headers, b"content-encoding") or "").lower() == "gzip":
                body = _gunzip(body)
                _clear(headers, b"content-encoding")
            state.response_body = body
            self._count(state, body)
        if status != 200:
            self._send(ctx, state, headers)
            return
        config = self.config
        if state.model.name is not None and (
            config.model_name_header or ctx.header("kong-debug") is not None
        ):
            value = f"{config.model.provider}/{state.model.name}"
            _set(headers, b"x-kong-llm-model", value.encode("latin-1"))
        if state.preserve or state.stream:
            self._send(ctx, state, headers)
            return
        driver = state.driver
        if driver.clears_cookies:
            _clear(headers, b"set-cookie")
        try:
            out = driver.from_format(state.response_body or b"", state.model, config.route_type)
        except LlmError as exc:
            ctx.status = 500
            out = msgspec.json.encode({"error": {"message": str(exc)}})
        state.response_body = out
        self._count(state, out)
        state.cost = self._cost(state)
        self._send(ctx, state, headers)

    @staticmethod
    def _send(ctx: RequestContext, state: _State, headers: Headers) -> None:
        """The (maybe rewritten) buffered body goes out with its own length."""
        if state.stream or state.response_body is None:
            return
        if state.response_body != ctx.response_body:
            ctx.response_body = state.response_body
            _set(headers, b"content-length", b"%d" % len(state.response_body))

    @staticmethod
    def _count(state: _State, body: bytes) -> None:
        """Token counts from an OpenAI-format ``usage`` (Kong's parse/normalize filters)."""
        try:
            value = msgspec.json.decode(body)
        except msgspec.DecodeError:
            return
        usage = value.get("usage") if isinstance(value, dict) else None
        if not isinstance(usage, dict):
            return
        prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
        if isinstance(prompt, (int, float)) and not isinstance(prompt, bool):
            state.prompt_tokens = prompt  # type: ignore[assignment]
        if isinstance(completion, (int, float)) and not isinstance(completion, bool):
            state.completion_tokens = completion  # type: ignore[assignment]

    def _cost(self, state: _State) -> float:
        options = state.model.options
        input_cost, output_cost = options.get("input_cost"), options.get("output_cost")
        if input_cost is None or output_cost is None:
            return 0
        return float(state.prompt_tokens * input_cost + state.completion_tokens * output_cost) / (
            1_000_000
        )

    def body(self, ctx: RequestContext, chunk: bytes, last: bool) -> bytes:
        state: _State | None = ctx.plugin_data.get(_STATE)
        if state is None or state.parser is None:
            return chunk
        out = []
        route_type = self.config.route_type
        for event in state.parser.feed(chunk, last):
            try:
                result = state.driver.stream_event(
                    event, state.model, route_type, state.stream_state
                )
            except LlmError:
                continue  # as Kong: the client has its 200 already; the event is skipped
            self._add_counts(state, result)
            data = result.data
            if data is None:
                continue
            out.append(f"data: {data}\n\n")
            if data != SSE_TERMINATOR:
                self._collect(state, data)
        if last:
            self._finish(state)
        return "".join(out).encode()

    @staticmethod
    def _add_counts(state: _State, result: StreamResult) -> None:
        """A streamed event's token counts: increments, or (Gemini) the totals so far."""
        if state.driver.cumulative_stream_counts:
            if result.prompt_tokens is not None:
                state.prompt_tokens = result.prompt_tokens
            if result.completion_tokens is not None:
                state.completion_tokens = result.completion_tokens
            return
        if result.prompt_tokens:
            state.prompt_tokens += result.prompt_tokens
        if result.completion_tokens:
            state.completion_tokens += result.completion_tokens

    @staticmethod
    def _collect(state: _State, data: str) -> None:
        try:
            frame = msgspec.json.decode(data)
        except msgspec.DecodeError:
            return
        choices = frame.get("choices") if isinstance(frame, dict) else None
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            return
        choice = choices[0]
        state.finish_reason = choice.get("finish_reason")
        delta = choice.get("delta")
        text = delta.get("content") if isinstance(delta, dict) else None
        if text is None:
            text = choice.get("text")
        if isinstance(text, str):
            state.text.append(text)

    def _finish(self, state: _State) -> None:
        """The end of a translated stream: the completion estimate when the provider counted
        none (a token per 4 characters), the cost, and the whole answer for the log."""
        text = "".join(state.text)
        if not state.completion_tokens:
            state.completion_tokens = math.ceil(len(text.strip()) / 4)
        state.cost = self._cost(state)
        composite = {
            "choices": [
                {
                    "finish_reason": state.finish_reason,
                    "index": 0,
                    "logprobs": None,
                    "message": {"role": "assistant", "content": text},
                }
            ],
            "object": "chat.completion",
            "usage": {
                "prompt_tokens": state.prompt_tokens,
                "completion_tokens": state.completion_tokens,
                "total_tokens": state.prompt_tokens + state.completion_tokens,
            },
        }
        if self.config.logging.log_payloads:
            composite["response"] = text
        state.response_body = msgspec.json.encode(composite)

    # -- log -----------------------------------------------------------------------------------

    def log(self, ctx: RequestContext) -> None:
        state: _State | None = ctx.plugin_data.get(_STATE)
        config = self.config
        if state is None or not config.logging.log_statistics:
            return
        if state.settled:
            provider, request_model = state.model.provider, state.model.name or "UNSPECIFIED"
        else:
            asked = state.asked
            provider, request_model = "UNSPECIFIED", "UNSPECIFIED" if asked is None else asked
        response_model = None
        if state.response_body:
            try:
                decoded = msgspec.json.decode(state.response_body)
            except msgspec.DecodeError:
                decoded = None
            if isinstance(decoded, dict) and isinstance(decoded.get("model"), str):
                response_model = decoded["model"]
        meta: dict[str, Any] = {
            "plugin_id": self.id,
            "provider_name": provider,
            "request_model": request_model,
            "response_model": response_model or request_model,
            "llm_latency": state.latency_ms,
        }
        extra = state.driver.extra_meta(state.model) if state.settled else None
        if extra:
            meta.update(extra)
        completion = state.completion_tokens
        usage = {
            "time_per_token": state.latency_ms / completion if completion > 0 else 0,
            "prompt_tokens": state.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": state.prompt_tokens + completion,
            "cost": state.cost,
        }
        section: dict[str, Any] = {"meta": meta, "usage": usage}
        if config.logging.log_payloads:
            section["payload"] = {
                "request": state.request_body.decode("utf-8", "replace"),
                "response": (state.response_body or b"").decode("utf-8", "replace"),
            }
        ctx.plugin_data.setdefault(AI_LOG_KEY, {})["proxy"] = section


def _resolve(value: Any, ctx: RequestContext) -> Any:
    """Strings with a ``$(source.key)`` template get the request's value in its place."""
    if isinstance(value, dict):
        return {k: _resolve(v, ctx) for k, v in value.items()}
    if not isinstance(value, str):
        return value
    m = _TEMPLATE.search(value)
    if m is None:
        return value
    parts = m.group(1).split(".")
    if len(parts) != 2:
        raise LlmError(f"cannot parse expression for field '{value}'")
    source, key = parts
    found: str | None
    if source == "uri_captures":
        captures = ctx.match.captures or {}
        found = captures.get(key)
    elif source == "headers":
        found = ctx.header(key)
    elif source == "query_params":
        values = ctx.query.get(key)
        found = values[0] if values else None
    else:
        raise LlmError(f"source '{source}' is not supported")
    if found is None:
        raise LlmError(f"{source} key {key} was not provided")
    return value[: m.start()] + found + value[m.end() :]


def _header(headers: Headers, name: bytes) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _clear(headers: Headers, name: bytes) -> None:
    if any(k.lower() == name for k, _ in headers):
        headers[:] = [(k, v) for k, v in headers if k.lower() != name]


def _set(headers: Headers, name: bytes, value: bytes) -> None:
    _clear(headers, name)
    headers.append((name, value))


def _gunzip(body: bytes) -> bytes:
    """A gzip body decoded (as Kong inflates it); one that is not gzip stays as it came."""
    try:
        return gzip.decompress(body)
    except (OSError, EOFError, zlib.error):
        return body
