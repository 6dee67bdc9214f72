"""What Kong 3.9's ``ai-request-transformer`` and ``ai-response-transformer`` share: their
schema, and Kong's ``LLM:ai_introspect_body`` (``kong/llm/init.lua``), the one-shot LLM call
that rewrites a body.

How a body is introspected (:meth:`Introspector.introspect`), as Kong does it:

1. an llm/v1/chat request is built: the plugin's ``prompt`` as the ``system`` message, the body
   (as text) as the ``user`` message, ``stream: false``; the provider's driver (ai-proxy's,
   :mod:`._llm_openai`, :mod:`._llm_anthropic`) turns it into the provider's format, with the
   model's tuning options (``temperature``, ``max_tokens``, ``top_p``, ``top_k``);
2. it is POSTed to the provider by the plugin itself (not through the proxy), on the small
   client aws-lambda uses (:mod:`._aws_http`): ``http_timeout`` bounds connecting, sending and
   each read; ``https_verify`` checks the provider's certificate against the node's trusted
   roots (Kong's ``lua_ssl_trusted_certificate``); ``http(s)_proxy_host``/``_port`` send it
   through a forward proxy (a ``CONNECT`` tunnel for https); connections are kept 60 s, as
   lua-resty-http's ``request_uri`` keeps them;
3. a status above 299 is a failure; an answer is translated back to OpenAI's format by the
   driver, and its ``choices[0].message.content`` is the new body, cut to the first match of
   ``transformation_extract_pattern`` when set (PCRE, Kong's ``ijom`` flags: caseless,
   multiline; :mod:`._pcre`).

Any failure is an :class:`IntrospectionError` carrying Kong's message (``failed to introspect
request with AI service: status code 500``...), which the plugins answer with Kong's 400
``{"error":{"message":...}}``. ``logging`` adds Kong's ``ai.<plugin name>`` log section
(``payload.request`` before the call with ``log_payloads``; ``meta``, ``usage``, ``cache`` with
``log_statistics`` and ``payload.response`` with ``log_payloads`` after a translated answer).

Where fastkong differs (docs/plugins.md): the URL is Kong's (``upstream_url``, else the
provider's, Azure's with ``api-version``), except that mistral without ``upstream_url`` goes to
Mistral's API (Kong fails); an auth ``param_location: query`` parameter is sent (Kong's
transformers leave it out); an invalid ``transformation_extract_pattern`` is a config error
(Kong: a 400 per request); an answer whose content is not a string is refused with the "no
'choices'" message (Kong fails with a 500).
"""

from __future__ import annotations

import os
import re
import time
from typing import TYPE_CHECKING, Annotated, Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit

import msgspec
from msgspec import Meta

from fastkong.config.schema import Host, Port
from fastkong.kong_conf import DEFAULT_CLIENT_BODY_BUFFER, client_body_buffer_size, parse_size
from fastkong.plugins.base import REQUIRED, Exit, kong_exit
from fastkong.plugins.bundled import _aws_http
from fastkong.plugins.bundled._ai_prompt import REQUEST_TABLE
from fastkong.plugins.bundled._llm_drivers import ALL_DRIVERS
from fastkong.plugins.bundled._llm_openai import Driver
from fastkong.plugins.bundled._llm_schema import (
    PLUGIN_ENTITY,
    LlmConfig,
    check_llm,
    model_options,
)
from fastkong.plugins.bundled._llm_shared import (
    LlmError,
    ModelInfo,
    SignedRequest,
    Target,
    normalized_path,
)
from fastkong.plugins.bundled._pcre import check_regex, translate
from fastkong.plugins.bundled._serializer import set_serialize_value
from fastkong.proxy.tracing import trace_of
from fastkong.proxy.upstream_tls import NO_VERIFY, PLAIN_VERIFY

if TYPE_CHECKING:
    from fastkong.plugins.context import RequestContext

ROUTE_TYPE: Final = "llm/v1/chat"
#: Kong's entity check of both transformers (on the plugin entity).
ROUTE_TYPE_ERROR: Final = "'config.llm.route_type' must be 'llm/v1/chat' for AI transformer plugins"
#: Providers whose LLM call goes to the driver's own target (the others: :func:`provider_url`).
_TARGETED: Final = frozenset({"gemini", "cohere", "huggingface", "bedrock"})
#: lua-resty-http's ``request_uri`` keeps its connection for nginx's
#: ``lua_socket_keepalive_timeout`` (60 s).
_KEEPALIVE_MS: Final = 60_000
_INTROSPECT: Final = "failed to introspect request with AI service: "
_JSON_HEADERS: Final = (("Accept", "application/json"), ("Content-Type", "application/json"))
_decoder: Final = msgspec.json.Decoder()

Pattern = Annotated[str, Meta(extra={"kong_check": check_regex})]


class TransformerConfig(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """The fields both transformers have (``kong/plugins/ai-*-transformer/schema.lua``)."""

    prompt: str
    transformation_extract_pattern: Pattern | None = None
    http_timeout: Annotated[int, REQUIRED] = 60000
    https_verify: Annotated[bool, REQUIRED] = True
    max_request_body_size: Annotated[int, Meta(gt=0)] = 8 * 1024
    http_proxy_host: Host | None = None
    http_proxy_port: Port | None = None
    https_proxy_host: Host | None = None
    https_proxy_port: Port | None = None
    llm: LlmConfig


def _quoted(*names: str) -> str:
    return ", ".join(f"'{n}'" for n in names)


def check(config: TransformerConfig) -> list[tuple[str, str]]:
    """Kong's checks of the ``llm`` record and of the plugin entity. ``(sub_path, message)``
    pairs."""
    out = [(f"llm.{sub}", message) for sub, message in check_llm(config.llm)]
    proxies = {name: getattr(config, name) for name in _PROXY_FIELDS}
    return out + _entity_checks(config.llm.route_type, proxies)


def check_invalid(raw: dict[str, Any]) -> list[tuple[str, str]]:
    """The plugin's entity checks over a config whose fields failed their own rules: Kong runs
    them all the same (its entity checks skip a field's errors only for top-level names), so a
    config missing ``prompt`` also hears about its ``route_type``."""
    llm = raw.get("llm")
    route_type = llm.get("route_type") if isinstance(llm, dict) else None
    proxies = {name: raw.get(name) for name in _PROXY_FIELDS}
    return _entity_checks(ROUTE_TYPE if route_type is None else route_type, proxies)


_PROXY_FIELDS = ("http_proxy_host", "http_proxy_port", "https_proxy_host", "https_proxy_port")


def _entity_checks(route_type: Any, proxies: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    if route_type != ROUTE_TYPE:
        out.append(("llm.route_type", f"value must be {ROUTE_TYPE}"))
        out.append((PLUGIN_ENTITY, ROUTE_TYPE_ERROR))
    for scheme in ("http", "https"):
        host, port = proxies[f"{scheme}_proxy_host"], proxies[f"{scheme}_proxy_port"]
        if (host is None) != (port is None):
            fields = _quoted(f"config.{scheme}_proxy_host", f"config.{scheme}_proxy_port")
            out.append((PLUGIN_ENTITY, f"all or none of these fields must be set: {fields}"))
    return out


def body_limit(config: TransformerConfig) -> int:
    """The largest request body read: Kong reads one that fits nginx's client body buffer
    (``client_body_buffer_size``, 8k) whatever ``max_request_body_size`` says, a larger one up
    to ``max_request_body_size``."""
    try:
        buffer = client_body_buffer_size(os.environ)
    except ValueError:  # refused by ``fastkong start``; a worker started otherwise falls back
        buffer = parse_size(DEFAULT_CLIENT_BODY_BUFFER, "client_body_buffer_size")
    return max(buffer, config.max_request_body_size)


def too_large(limit: int) -> Exit:
    """A request body over :func:`body_limit` (Kong sends the request on without its body)."""
    return kong_exit(413, {"error": {"message": f"request body is larger than {limit} bytes"}})


def bad_request(message: str) -> Exit:
    """Kong's ``bad_request``: the transformers' answer to a failed introspection."""
    return kong_exit(400, {"error": {"message": message}})


def internal_error(message: str) -> Exit:
    """Kong's ``internal_server_error`` of the transformers."""
    return kong_exit(500, {"error": {"message": message}})


class IntrospectionError(Exception):
    """The LLM call failed; the message is Kong's."""


class Introspector:
    """One plugin's LLM: where and how it is called, built once per config snapshot."""

    def __init__(self, config: TransformerConfig, plugin_name: str, plugin_id: str) -> None:
        llm = config.llm
        self.plugin_name = plugin_name
        self.plugin_id = plugin_id
        self.prompt = config.prompt
        self.logging = llm.logging
        self.auth = llm.auth
        driver = self.driver = ALL_DRIVERS[llm.model.provider]()
        driver.setup(llm)
        driver.for_transformer = True
        self.model = ModelInfo(llm.model.provider, llm.model.name, model_options(llm))
        if llm.model.provider in _TARGETED:
            # These drivers' subrequests go where their proxied requests go (Kong's drivers).
            target = driver.target(self.model, ROUTE_TYPE)
            url = urlsplit(f"{target.scheme}://{target.host}:{target.port}{target.path}")
            pairs = list((driver.query(self.model, {}) or {}).items())
        else:
            url = urlsplit(provider_url(driver, self.model))
            pairs = parse_qsl(url.query, keep_blank_values=True)
        self.scheme = url.scheme.lower()
        self.host = url.hostname or ""
        self.port = url.port or (443 if self.scheme == "https" else 80)
        self.path = url.path or "/"
        # Bedrock signs its requests and a Gemini service account brings a token: neither sends
        # the configured auth fields as they are (:meth:`Driver.authorize`).
        auth = self.auth if driver.plain_auth else None
        if (
            auth is not None
            and auth.param_location == "query"
            and auth.param_name is not None
            and auth.param_value is not None
        ):
            pairs.append((auth.param_name, auth.param_value))
        self.query = pairs
        self.target = self.path + (f"?{urlencode(pairs)}" if pairs else "")
        headers = [("Host", _aws_http.host_header(self.host, self.port, self.scheme))]
        headers += _JSON_HEADERS
        headers += driver.headers(self.model)
        if auth is not None and auth.header_name is not None and auth.header_value is not None:
            headers.append((auth.header_name, auth.header_value))
        self.headers = headers
        self.timeout = config.http_timeout / 1000
        self.tls = PLAIN_VERIFY if config.https_verify else NO_VERIFY
        proxy_host = getattr(config, f"{self.scheme}_proxy_host", None)
        proxy_port = getattr(config, f"{self.scheme}_proxy_port", None)
        self.proxy = (
            _aws_http.Proxy(proxy_host, proxy_port)
            if proxy_host is not None and proxy_port is not None
            else None
        )
        pattern = config.transformation_extract_pattern
        # (?im): ngx.re's "i" and "m" flags ("j" and "o" only say how PCRE compiles it)
        self.pattern: re.Pattern[str] | None = (
            None if pattern is None else _compile("(?im)" + pattern)
        )

    def __repr__(self) -> str:
        return (
            f"<Introspector {self.plugin_name} {self.model.provider}/{self.model.name} "
            f"{self.scheme}://{self.host}:{self.port}{self.target}>"
        )

    def llm_request(self, text: str) -> bytes:
        """The provider's request body for ``text`` (Kong's message layout); IntrospectionError."""
        request: dict[str, Any] = {
            "messages": [
                {"role": "system", "content": self.prompt},
                {"role": "user", "content": text},
            ],
            "stream": False,
        }
        try:
            body = self.driver.to_format(request, self.model, ROUTE_TYPE)
        except LlmError as exc:
            raise IntrospectionError(str(exc)) from None
        auth = self.auth
        if (
            auth is not None
            and auth.param_location == "body"
            and auth.param_name is not None
            and auth.param_value is not None
        ):
            body[auth.param_name] = auth.param_value
        # A Lua table holds no nil: a field without a value (no model name) is left out.
        return msgspec.json.encode({k: v for k, v in body.items() if v is not None})

    async def introspect(self, ctx: RequestContext, body: bytes) -> bytes:
        """Kong's ``ai_introspect_body``: the LLM's rewrite of ``body``; IntrospectionError."""
        request = self.llm_request(body.decode("utf-8", "replace"))
        prefix = f"ai.{self.plugin_name}"
        if self.logging.log_payloads:
            set_serialize_value(ctx, f"{prefix}.payload.request", _text(ctx.body or b""))
        started = time.monotonic()
        # A signature covers the Host header as this request sends it (with a port that is not
        # the scheme's), so that is the host the driver signs.
        target = Target(self.scheme, self.headers[0][1], self.port, self.path)
        signed = SignedRequest("POST", target, self.path, self.query, request)
        try:
            proof = await self.driver.authorize(signed)
        except LlmError as exc:
            raise IntrospectionError(f"{_INTROSPECT}request to ai service failed: {exc}") from None
        try:
            res = await _aws_http.request(
                "POST",
                self.scheme,
                self.host,
                self.port,
                self.target,
                self.headers + proof,
                request,
                timeout=self.timeout,
                keepalive_ms=_KEEPALIVE_MS,
                proxy=self.proxy,
                tls=self.tls,
                trace=trace_of(ctx),
            )
        except _aws_http.AwsHttpError as exc:
            reason = f"request to ai service failed: request failed: {_reason(exc)}"
            raise IntrospectionError(_INTROSPECT + reason) from None
        if res.status > 299:
            raise IntrospectionError(f"{_INTROSPECT}status code {res.status}")
        try:
            answer = self.driver.from_format(res.body, self.model, ROUTE_TYPE)
        except LlmError as exc:
            message = f"failed to convert AI response to Kong format: {exc}"
            raise IntrospectionError(message) from None
        try:
            decoded = _decoder.decode(answer)
        except msgspec.DecodeError as exc:
            raise IntrospectionError(f"failed to convert AI response to JSON: {exc}") from None
        latency_ms = int((time.monotonic() - started) * 1000)
        self._log(ctx, decoded, answer, latency_ms)
        content = _content(decoded)
        if content is None:
            raise IntrospectionError("no 'choices' in upstream AI service response")
        if self.pattern is None:
            return content.encode("utf-8")
        # PCRE in byte mode (ngx.re without "u"): the pattern runs over the answer's bytes.
        m = self.pattern.search(content.encode("utf-8").decode("latin-1"))
        if m is None:
            raise IntrospectionError("AI response did not match specified regular expression")
        return m.group(0).encode("latin-1")

    def _log(self, ctx: RequestContext, decoded: Any, answer: bytes, latency_ms: int) -> None:
        """Kong's ``post_request``: the ``ai.<plugin name>`` log section."""
        if not isinstance(decoded, dict):
            return
        logging = self.logging
        prefix = f"ai.{self.plugin_name}"
        if logging.log_payloads:
            set_serialize_value(ctx, f"{prefix}.payload.response", _text(answer))
        if not logging.log_statistics:
            return
        meta: dict[str, Any] = {
            "plugin_id": self.plugin_id,
            "provider_name": self.model.provider,
            "request_model": request_model(ctx),
            "llm_latency": latency_ms,
        }
        response_model = decoded.get("model")
        if response_model is None:
            response_model = self.model.name
        if response_model is not None:
            meta["response_model"] = response_model
        set_serialize_value(ctx, f"{prefix}.meta", meta)
        set_serialize_value(ctx, f"{prefix}.usage", self._usage(decoded.get("usage"), latency_ms))
        set_serialize_value(ctx, f"{prefix}.cache", {})

    def _usage(self, usage: Any, latency_ms: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if not isinstance(usage, dict):
            return out
        prompt = _number(usage.get("prompt_tokens"))
        completion = _number(usage.get("completion_tokens"))
        total = _number(usage.get("total_tokens"))
        if completion is not None:
            out["time_per_token"] = int(latency_ms // completion) if completion > 0 else 0
        for key, value in (
            ("prompt_tokens", prompt),
            ("completion_tokens", completion),
            ("total_tokens", total),
        ):
            if value is not None:
                out[key] = value
        options = self.model.options
        input_cost, output_cost = options.get("input_cost"), options.get("output_cost")
        if None not in (prompt, completion, input_cost, output_cost):
            out["cost"] = (prompt * input_cost + completion * output_cost) / 1_000_000  # type: ignore[operator]
        return out


def provider_url(driver: Driver, model: ModelInfo) -> str:
    """Where Kong's transformer drivers send the LLM call (their ``subrequest``)."""
    options = model.options
    url = options.get("upstream_url")
    if url:
        return str(url)
    path = driver.paths.get(ROUTE_TYPE, "/")
    if model.provider == "azure":
        base = driver.base_url.format(
            options.get("azure_instance"), options.get("azure_deployment_id")
        )
        path = options.get("upstream_path") or path
        return f"{base}{path}?api-version={options.get('azure_api_version')}"
    return driver.base_url + normalized_path(path)


def request_model(ctx: RequestContext) -> str:
    """Kong's ``get_request_model_table_inuse().name``: the model ai-proxy resolved for this
    request (when it ran before), else the ``model`` of the request the ai-prompt plugins
    parsed, else ``UNSPECIFIED``."""
    state = ctx.plugin_data.get("ai-proxy")
    name = getattr(getattr(state, "model", None), "name", None)
    if isinstance(name, str):
        return name
    table = ctx.plugin_data.get(REQUEST_TABLE)
    if isinstance(table, dict) and isinstance(table.get("model"), str):
        return str(table["model"])
    return "UNSPECIFIED"


def _compile(pattern: str) -> re.Pattern[str]:
    return re.compile(translate(pattern), re.ASCII)


def _content(decoded: Any) -> str | None:
    """``choices[1].message.content`` of an OpenAI-format answer, when it is text."""
    if not isinstance(decoded, dict):
        return None
    choices = decoded.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return None
    message = choices[0].get("message")
    content = message.get("content") if isinstance(message, dict) else None
    return content if isinstance(content, str) else None


def _number(value: Any) -> int | float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    return None


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def _reason(exc: _aws_http.AwsHttpError) -> str:
    """lua-resty-http's words for the common failures ("timeout", "connection refused"),
    else fastkong's description."""
    if exc.timeout:
        return "timeout"
    # The proxy's connection errors keep the socket's error as their context.
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        cause = cause.__context__
    return str(exc)
