"""Kong's ai-proxy provider integration specs through one real gateway, against twins of the
specs' mock LLM servers (one loopback server per spec, answering by exact path what its Lua
``location`` answers, with Kong's JSON fixtures copied to ``kong_ai_fixtures/``).

Ported (Kong 3.10 mirror, ``spec/03-plugins/38-ai-proxy/``; each case's id names its ``it``
line):

- ``03-anthropic_integration_spec.lua`` 578-868 (the 3.10 ``tool_choice conversion`` case,
  795, is a fix of the OpenAI to Anthropic translation, Kong #14694: ported, as what a user
  expects); ``good request`` (chat, 611) is covered by ``test_ai_proxy.test_anthropic_chat``,
  ``good request`` (completions, 833) by ``test_ai_proxy.test_anthropic_completions_and_errors``.
- ``04-cohere_integration_spec.lua`` 401-625; ``unauthorized request`` (415) and the chat and
  completions ``good request`` (433, 587) are covered by ``test_ai_proxy_providers``
  (``test_cohere_chat``, ``test_cohere_completions_and_errors``).
- ``05-azure_integration_spec.lua`` 571-803 (``azure preserve`` left out, below).
- ``06-mistral_integration_spec.lua`` 355-514 (all 6).
- ``07-llama2_integration_spec.lua`` 203-443: the 6 ``llama2 general`` cases; the 3
  ``one-shot request`` cases (300-443) call the driver's ``subrequest`` (Kong internals): ported
  through what calls it, ``ai-request-transformer`` with the same llama2 ``raw`` model (its
  answer is the body the upstream gets; a failed call is its 400 ``failed to introspect
  request with AI service: status code N``).
- ``10-huggingface_integration_spec.lua`` 319-450; ``good request`` chat and completions
  (320, 346) and ``bad chat response`` (model loading, 425) are covered by
  ``test_ai_proxy_providers`` (``test_huggingface_chat``,
  ``test_huggingface_completions_and_errors``).
- ``11-gemini_integration_spec.lua`` 204-265 (the 3.10 ``good request with model name from
  variable``, 252, is a fix of the answer's ``model``, Kong #14751: ported).

Left out:

- 05-azure ``azure preserve`` (805-843, 3 cases): they reach ``001-kong-t.openai.azure.com``
  through Kong's ``OPENAI_TEST_PORT`` test hook (http on the mock's port) and a DNS mock;
  fastkong has neither (names go to the system resolver, the provider on https port 443).

Two cases assert Kong's behaviour where fastkong differs (they fail until it is fixed):
``test_anthropic_tool_choice_conversion`` and the logged request payload of
``test_gemini_good_request_and_its_statistics``.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import pytest

from tests.helpers import Gateway, HttpRequest, LoopServer, free_port, read_request
from tests.plugins.kong_ai_mocks import fixture
from tests.plugins.test_ai_proxy import log_entries, next_log

pytestmark = pytest.mark.integration

GEMINI_PLUGIN_ID = "17434c15-2c7c-4c2f-b87a-58880533a3c1"
GEMINI_ROUTE = "gemini-llm-v1-chat-good"


# -- the mock LLM servers ----------------------------------------------------------------------

Answer = tuple[int, bytes, dict[str, str]]
Handler = Callable[[HttpRequest], Answer]
_ABSENT = object()


def _decoded(request: HttpRequest) -> Any:
    """cjson.safe's ``json.decode`` of the body: the value, or ``_ABSENT`` on an error."""
    try:
        return json.loads(request.body)
    except ValueError:
        return _ABSENT


def guarded(
    header: str, token: str, valid: Callable[[dict[str, Any]], bool], ok: str, bad: str, unauth: str
) -> Handler:
    """The specs' usual ``location``: the right token and a valid body get the ``ok`` fixture,
    an invalid body a 400 with ``bad``, another token a 401 with ``unauth``."""

    def handle(request: HttpRequest) -> Answer:
        if request.lowered.get(header) != token:
            return 401, fixture(unauth), {}
        body = _decoded(request)
        if not isinstance(body, dict) or not valid(body):
            return 400, fixture(bad), {}
        return 200, fixture(ok), {}

    return handle


def fixed(status: int, rel: str, content_type: str | None = None) -> Handler:
    headers = {"content-type": content_type} if content_type else {}
    return lambda request: (status, fixture(rel), headers)


def present(key: str) -> Callable[[dict[str, Any]], bool]:
    """Lua's ``not body.<key>`` fails: an absent key (a JSON null is a truthy userdata)."""
    return lambda body: key in body and body[key] is not False


def not_null(key: str) -> Callable[[dict[str, Any]], bool]:
    """Lua's ``body.<key> == ngx.null`` fails: only an explicit null."""
    return lambda body: not (key in body and body[key] is None)


def tool_choice(request: HttpRequest) -> Answer:
    """03-anthropic's ``/llm/v1/chat/tool_choice``: the body's ``tool_choice`` in a header."""
    body = _decoded(request)
    choice = body.get("tool_choice") if isinstance(body, dict) else None
    headers = {"tool-choice": json.dumps(choice, separators=(",", ":"))}
    return 200, fixture("anthropic/llm-v1-chat/responses/good.json"), headers


def gemini_good(request: HttpRequest) -> Answer:
    """11-gemini's ``/v1/chat/completions``: the good answer for the right token, else the
    empty 200 nginx sends when the Lua handler prints nothing."""
    if request.lowered.get("authorization") == "Bearer gemini-key":
        return 200, fixture("gemini/llm-v1-chat/responses/good.json"), {}
    return 200, b"", {}


def sink(request: HttpRequest) -> Answer:
    """Not Kong's: the upstream of the transformer routes, answering the body it got."""
    return 200, request.body, {"content-type": "text/plain"}


class MockLlm(LoopServer):
    """A spec's ``http_mock`` server: exact paths (``location =``, the query aside) to
    handlers; ``default_type 'application/json'``; nginx's 404 elsewhere."""

    def __init__(self, locations: dict[str, Handler]) -> None:
        super().__init__()
        self.locations = locations
        self.requests: list[HttpRequest] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request = await read_request(reader)
                self.requests.append(request)
                handler = self.locations.get(request.target.split("?", 1)[0])
                if handler is None:
                    html = {"content-type": "text/html"}
                    status, body, extra = 404, b"<html>404 Not Found</html>", html
                else:
                    status, body, extra = handler(request)
                headers = {"content-type": "application/json", **extra}
                head = f"HTTP/1.1 {status} X\r\n" + "".join(
                    f"{k}: {v}\r\n" for k, v in headers.items()
                )
                writer.write(f"{head}content-length: {len(body)}\r\n\r\n".encode() + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()


def _chat_and_completions(
    provider: str, header: str, token: str, valid_chat: Any, valid_prompt: Any, chat_ok: str
) -> dict[str, Handler]:
    """The locations 03-anthropic, 04-cohere and 05-azure share (fixtures under ``provider``)."""
    chat, comp = f"{provider}/llm-v1-chat/responses", f"{provider}/llm-v1-completions/responses"

    def chat_guard(ok: str) -> Handler:
        return guarded(
            header, token, valid_chat, f"{chat}/{ok}", f"{chat}/bad_request.json",
            f"{chat}/unauthorized.json",
        )  # fmt: skip

    return {
        "/llm/v1/chat/good": chat_guard(chat_ok),
        "/llm/v1/chat/bad_upstream_response": chat_guard("bad_upstream_response.json"),
        "/llm/v1/chat/bad_request": fixed(400, f"{chat}/bad_request.json"),
        "/llm/v1/chat/internal_server_error": fixed(
            500, f"{chat}/internal_server_error.html", "text/html"
        ),
        "/llm/v1/completions/good": guarded(
            header,
            token,
            valid_prompt,
            f"{comp}/good.json",
            f"{comp}/bad_request.json",
            f"{comp}/unauthorized.json",
        ),  # fmt: skip
        "/llm/v1/completions/bad_request": fixed(400, f"{comp}/bad_request.json"),
    }


def mock_locations() -> dict[str, dict[str, Handler]]:
    anthropic = _chat_and_completions(
        "anthropic", "x-api-key", "anthropic-key", present("messages"), present("prompt"),
        "good.json",
    )  # fmt: skip
    a_chat = "anthropic/llm-v1-chat/responses"
    for case, ok in [
        ("no_usage_upstream_response", "no_usage_response.json"),
        ("malformed_usage_upstream_response", "malformed_usage_response.json"),
    ]:
        anthropic[f"/llm/v1/chat/{case}"] = guarded(
            "x-api-key", "anthropic-key", present("messages"), f"{a_chat}/{ok}",
            f"{a_chat}/bad_request.json", f"{a_chat}/unauthorized.json",
        )  # fmt: skip
    anthropic["/llm/v1/chat/tool_choice"] = tool_choice
    cohere = _chat_and_completions(
        "cohere", "authorization", "Bearer cohere-key", present("message"), present("prompt"),
        "good.json",
    )  # fmt: skip
    # Azure's mock answers OpenAI's fixtures; its completions check is on "messages" too.
    azure = _chat_and_completions(
        "openai", "api-key", "azure-key", not_null("messages"), not_null("messages"), "good.json"
    )
    openai_chat, openai_comp = "openai/llm-v1-chat/responses", "openai/llm-v1-completions/responses"
    mistral = {
        "/v1/chat/completions": guarded(
            "authorization", "Bearer mistral-key", not_null("messages"),
            "mistral/llm-v1-chat/responses/good.json", f"{openai_chat}/bad_request.json",
            f"{openai_chat}/unauthorized.json",
        ),
        "/v1/completions": guarded(
            "authorization", "Bearer mistral-key", not_null("prompt"),
            "mistral/llm-v1-completions/responses/good.json", f"{openai_comp}/bad_request.json",
            f"{openai_comp}/unauthorized.json",
        ),
    }  # fmt: skip
    raw = "llama2/raw/responses"

    def inst(body: dict[str, Any]) -> bool:
        inputs = body.get("inputs")
        return isinstance(inputs, str) and "INST" in inputs

    llama_guard = guarded(
        "authorization", "Bearer llama2-key", inst, f"{raw}/good.json", f"{raw}/bad_request.json",
        f"{raw}/unauthorized.json",
    )  # fmt: skip
    llama2 = {
        "/raw/llm/v1/chat": llama_guard,
        "/raw/llm/v1/completions": llama_guard,
        "/sink": sink,
    }
    hf_chat, hf_comp = (
        "huggingface/llm-v1-chat/responses",
        "huggingface/llm-v1-completions/responses",
    )
    huggingface = {
        "/v1/chat/completions": guarded(
            "authorization", "Bearer huggingface-key", not_null("messages"), f"{hf_chat}/good.json",
            f"{hf_chat}/bad_request.json", f"{hf_chat}/unauthorized.json",
        ),
        "/": guarded(
            "authorization", "Bearer huggingface-key", not_null("prompt"), f"{hf_comp}/good.json",
            f"{hf_comp}/bad_request.json", f"{hf_comp}/unauthorized.json",
        ),
        "/model-loading/v1/chat/completions": fixed(503, f"{hf_chat}/bad_response_model_load.json"),
        "/model-timeout/v1/chat/completions": fixed(504, f"{hf_chat}/bad_response_timeout.json"),
    }  # fmt: skip
    return {
        "anthropic": anthropic,
        "cohere": cohere,
        "azure": azure,
        "mistral": mistral,
        "llama2": llama2,
        "huggingface": huggingface,
        "gemini": {"/v1/chat/completions": gemini_good},
    }


@pytest.fixture(scope="module")
def mocks() -> Iterator[dict[str, MockLlm]]:
    started: dict[str, MockLlm] = {}
    try:
        for name, locations in mock_locations().items():
            started[name] = MockLlm(locations).start()
        yield started
    finally:
        for server in started.values():
            server.stop()


# -- the gateway -------------------------------------------------------------------------------


def _ai(
    route_type: str,
    provider: str,
    name: str,
    url: str | None,
    auth: dict[str, Any],
    **extra: Any,
) -> dict[str, Any]:
    options = {"max_tokens": 256, "temperature": 1.0, **extra.pop("options", {})}
    if url is not None:
        options["upstream_url"] = url
    model = {"name": name, "provider": provider, "options": options}
    plugin: dict[str, Any] = {
        "name": "ai-proxy",
        "config": {"route_type": route_type, "auth": auth, "model": model, **extra},
    }
    return plugin


def _header_auth(name: str, value: str, override: bool | None = None) -> dict[str, Any]:
    auth: dict[str, Any] = {"header_name": name, "header_value": value}
    if override is not None:
        auth["allow_override"] = override
    return auth


def routes(mocks: dict[str, MockLlm], log_path: Path) -> dict[str, list[dict[str, Any]]]:
    """Route path -> plugins: the specs' ``bp.routes``/``bp.plugins`` inserts."""
    out: dict[str, list[dict[str, Any]]] = {}
    chat, comp = "llm/v1/chat", "llm/v1/completions"

    # 03-anthropic and 04-cohere: routes /<p>/llm/v1/<kind>/<case> to the mock's
    # /llm/v1/<kind>/<upstream case>.
    for provider, model, header, key, wrong in [
        ("anthropic", "claude-2.1", "x-api-key", "anthropic-key", "wrong-key"),
        ("cohere", "command", "Authorization", "Bearer cohere-key", "Bearer wrong-key"),
    ]:
        base = mocks[provider].url
        extra_options = {"anthropic_version": "2023-06-01"} if provider == "anthropic" else {}
        cases = [
            (chat, "good", "good", _header_auth(header, key, True)),
            (chat, "good-no-allow-override", "good", _header_auth(header, key, False)),
            (chat, "bad_upstream_response", "bad_upstream_response", _header_auth(header, key)),
            (comp, "good", "good", _header_auth(header, key)),
            (chat, "unauthorized", "good", _header_auth(header, wrong)),
            (chat, "bad_request", "bad_request", _header_auth(header, key)),
            (comp, "bad_request", "bad_request", _header_auth(header, key)),
            (chat, "internal_server_error", "internal_server_error", _header_auth(header, key)),
        ]  # fmt: skip
        if provider == "anthropic":
            cases += [
                (chat, case, case, _header_auth(header, key))
                for case in (
                    "no_usage_upstream_response",
                    "malformed_usage_upstream_response",
                    "tool_choice",
                )
            ]
        for route_type, case, upstream, auth in cases:
            kind = route_type.rsplit("/", 1)[1]
            extra: dict[str, Any] = {}
            if provider == "anthropic" and route_type == comp:
                extra["logging"] = {"log_statistics": False}
            out[f"/{provider}/llm/v1/{kind}/{case}"] = [
                _ai(
                    route_type,
                    provider,
                    model,
                    f"{base}/llm/v1/{kind}/{upstream}",
                    auth,
                    options=extra_options,
                    **extra,
                )
            ]

    # 05-azure (the preserve routes left out).
    base = mocks["azure"].url
    azure_ids = {"azure_instance": "001-kong-t", "azure_deployment_id": "gpt-3.5-custom"}
    for route_type, case, upstream, model, auth in [
        (chat, "good", "good", "gpt-3.5-turbo", _header_auth("api-key", "azure-key", True)),
        (chat, "good-no-allow-override", "good", "gpt-3.5-turbo",
         _header_auth("api-key", "azure-key", False)),
        (chat, "bad_upstream_response", "bad_upstream_response", "gpt-3.5-turbo",
         _header_auth("api-key", "azure-key")),
        (comp, "good", "good", "gpt-3.5-turbo-instruct", _header_auth("api-key", "azure-key")),
        (chat, "unauthorized", "good", "gpt-3.5-turbo", _header_auth("api-key", "wrong-key")),
        (chat, "bad_request", "bad_request", "gpt-3.5-turbo", _header_auth("api-key", "azure-key")),
        (comp, "bad_request", "bad_request", "gpt-3.5-turbo-instruct",
         _header_auth("api-key", "azure-key")),
        (chat, "internal_server_error", "internal_server_error", "gpt-3.5-turbo",
         _header_auth("api-key", "azure-key")),
    ]:  # fmt: skip
        kind = route_type.rsplit("/", 1)[1]
        out[f"/azure/llm/v1/{kind}/{case}"] = [
            _ai(route_type, "azure", model, f"{base}/llm/v1/{kind}/{upstream}", auth,
                options=azure_ids)
        ]  # fmt: skip

    # 06-mistral.
    base = mocks["mistral"].url
    mistral_key = "Bearer mistral-key"
    for route_type, case, auth in [
        (chat, "good", _header_auth("Authorization", mistral_key, True)),
        (chat, "good-no-allow-override", _header_auth("Authorization", mistral_key, False)),
        (chat, "bad_upstream_response", _header_auth("Authorization", mistral_key)),
        (comp, "good", _header_auth("Authorization", mistral_key)),
        (chat, "unauthorized", _header_auth("Authorization", "Bearer wrong-key")),
        (chat, "bad_request", _header_auth("Authorization", mistral_key)),
        (comp, "bad_request", _header_auth("Authorization", mistral_key)),
        (chat, "internal_server_error", _header_auth("Authorization", mistral_key)),
    ]:
        kind = route_type.rsplit("/", 1)[1]
        upstream = "/v1/chat/completions" if route_type == chat else "/v1/completions"
        out[f"/mistral/llm/v1/{kind}/{case}"] = [
            _ai(
                route_type,
                "mistral",
                "mistralai/Mistral-7B-Instruct-v0.1-instruct",
                base + upstream,
                auth,
                options={"mistral_format": "openai"},
            )
        ]

    # 07-llama2, and the one-shot cases' models in ai-request-transformer.
    base = mocks["llama2"].url
    llama_key = "Bearer llama2-key"
    for path, route_type, upstream, auth in [
        ("/raw/llm/v1/chat/completions", chat, "chat", _header_auth("Authorization", llama_key)),
        ("/raw/llm/v1/completions", comp, "completions",
         _header_auth("Authorization", llama_key, True)),
        ("/raw/llm/v1/completions-no-allow-override", comp, "completions",
         _header_auth("Authorization", llama_key, False)),
    ]:  # fmt: skip
        out[path] = [
            _ai(route_type, "llama2", "llama-2-7b-chat-hf", f"{base}/raw/llm/v1/{upstream}", auth,
                options={"llama2_format": "raw"})
        ]  # fmt: skip
    for case, upstream, key in [
        ("success", "chat", llama_key),
        ("404", "nowhere", llama_key),
        ("401", "chat", "Bearer wrong-key"),
    ]:
        llm = {
            "route_type": chat,
            "auth": _header_auth("Authorization", key),
            "model": {
                "name": "llama-2-7b-chat-hf",
                "provider": "llama2",
                "options": {
                    "max_tokens": 1024,
                    "upstream_url": f"{base}/raw/llm/v1/{upstream}",
                    "llama2_format": "raw",
                },
            },
        }
        out[f"/one-shot/{case}"] = [
            {
                "name": "ai-request-transformer",
                "config": {"prompt": "Some system prompt", "llm": llm},
            }
        ]

    # 10-huggingface.
    base = mocks["huggingface"].url
    hf_options = {"huggingface": {"use_cache": False, "wait_for_model": True}}
    hf_key = _header_auth("Authorization", "Bearer huggingface-key")
    wrong = _header_auth("api-key", "wrong-key")
    hf_right = _header_auth("api-key", "huggingface-key")
    no_wait = {"huggingface": {"use_cache": False, "wait_for_model": False}}
    for path, route_type, url, auth, options in [
        ("/huggingface/llm/v1/chat/good", chat, base, hf_key, hf_options),
        ("/huggingface/llm/v1/completions/good", comp, base, hf_key, hf_options),
        ("/huggingface/llm/v1/chat/unauthorized", chat, base, wrong, hf_options),
        ("/huggingface/llm/v1/completions/unauthorized", comp, base, wrong, hf_options),
        ("/huggingface/llm/v1/chat/bad-response/model-loading", chat, f"{base}/model-loading",
         hf_right, no_wait),
        ("/huggingface/llm/v1/chat/bad-response/model-timeout", chat, f"{base}/model-timeout",
         hf_right, no_wait),
    ]:  # fmt: skip
        out[path] = [
            _ai(route_type, "huggingface", "mistralai/Mistral-7B-Instruct-v0.2", url, auth,
                options=options)
        ]  # fmt: skip

    # 11-gemini.
    gemini_url = f"{mocks['gemini'].url}/v1/chat/completions"
    gemini_auth = _header_auth("Authorization", "Bearer gemini-key")
    payloads = {"log_payloads": True, "log_statistics": True}
    good = _ai(chat, "gemini", "gemini-1.5-pro", gemini_url, gemini_auth, logging=payloads,
               options={"input_cost": 15.0, "output_cost": 15.0})  # fmt: skip
    good["id"] = GEMINI_PLUGIN_ID
    out["/gemini/llm/v1/chat/good"] = [
        good,
        {"name": "file-log", "config": {"path": str(log_path)}},
    ]
    variable = _ai(chat, "gemini", "$(uri_captures.model)", gemini_url, gemini_auth,
                   logging=payloads)  # fmt: skip
    del variable["config"]["model"]["options"]["max_tokens"]
    del variable["config"]["model"]["options"]["temperature"]
    out["~/gemini/llm/v1/chat/good/(?<model>[^/]+)"] = [variable]
    return out


def route_name(path: str) -> str:
    """A route's name from its path (``/gemini/llm/v1/chat/good``: ``gemini-llm-v1-chat-good``)."""
    return re.sub(r"[^A-Za-z0-9._~-]+", "-", path.strip("~/")).strip("-")


@pytest.fixture(scope="module")
def log_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("kong-ai-log") / "file.log"


@pytest.fixture(scope="module")
def gateway(
    gateway_with: Callable[[str], Gateway], mocks: dict[str, MockLlm], log_path: Path
) -> Gateway:
    table = routes(mocks, log_path)
    route_entries = [
        {"name": route_name(path), "paths": [path], "strip_path": True, "plugins": plugins}
        for path, plugins in table.items()
        if not path.startswith("/one-shot/")
    ]
    # The specs' "empty_service" is never asked (ai-proxy sets the target); the transformer
    # routes' service is the llama2 mock's body sink.
    config = {
        "_format_version": "3.0",
        "services": [
            {
                "name": "empty_service",
                "url": f"http://127.0.0.1:{free_port()}/",
                "routes": route_entries,
            },
            {
                "name": "sink",
                "url": f"{mocks['llama2'].url}/sink",
                "routes": [
                    {"name": f"one-shot-{path.rsplit('/', 1)[1]}", "paths": [path],
                     "plugins": plugins}
                    for path, plugins in table.items()
                    if path.startswith("/one-shot/")
                ],
            },
        ],
    }  # fmt: skip
    return gateway_with(json.dumps(config))


# -- the cases ---------------------------------------------------------------------------------


def request(gateway: Gateway, path: str, body: str | bytes | Any, **headers: str) -> httpx.Response:
    """The specs' ``client:get(path, {headers = ..., body = ...})``: a GET with a JSON body (a
    fixture's name, raw bytes, or a value to encode)."""
    if isinstance(body, str):
        content = fixture(body)
    elif isinstance(body, bytes):
        content = body
    else:
        content = json.dumps(body).encode()
    sent = {"content-type": "application/json", "accept": "application/json", **headers}
    return httpx.request("GET", gateway.url(path), content=content, headers=sent, timeout=15)


def dig(value: Any, path: str) -> Any:
    for part in path.split("."):
        value = value[int(part)] if isinstance(value, list) else value[part]
    return value


class Case(NamedTuple):
    path: str
    body: str | bytes | Any
    headers: dict[str, str]
    status: int
    #: Dotted paths into the JSON answer -> the value Kong's spec asserts.
    expect: dict[str, Any]
    model_header: str | None = None


ANSWER_MESSAGE = {"content": "The sum of 1 + 1 is 2.", "role": "assistant"}
A_CHAT = "anthropic/llm-v1-chat/requests/good.json"
C_CHAT = "cohere/llm-v1-chat/requests/good.json"
O_CHAT = "openai/llm-v1-chat/requests/good.json"
O_COMP = "openai/llm-v1-completions/requests/good.json"
LLAMA_COMP = "llama2/raw/requests/good-completions.json"
HF_CHAT = "huggingface/llm-v1-chat/requests/good.json"
HF_COMP = "huggingface/llm-v1-completions/requests/good.json"


def _good_chat(model: str, **more: Any) -> dict[str, Any]:
    return {
        "model": model,
        "object": "chat.completion",
        "choices.0.message": ANSWER_MESSAGE,
        **more,
    }


_ANTHROPIC_GOOD = _good_chat("claude-2.1")
_COHERE_GOOD = _good_chat("command")
_OPENAI_ID = {"id": "chatcmpl-8T6YwgvjQVVnGbJ2w8hpOA17SeNy2"}
_AZURE_GOOD = _good_chat("gpt-3.5-turbo-0613", **_OPENAI_ID)
_MISTRAL_MODEL = "mistralai/Mistral-7B-Instruct-v0.1-instruct"
_MISTRAL_GOOD = _good_chat(_MISTRAL_MODEL, **_OPENAI_ID)
_OPENAI_TEXT = "\n\nI am a language model AI created by OpenAI. I can answer questions"
_NO_PROMPTS = {"error.message": "request body doesn't contain valid prompts"}
_FONT = "Is a well known font."

CASES: dict[str, Case] = {
    # 03-anthropic
    "anthropic-internal_server_error (03:579)": Case(
        "/anthropic/llm/v1/chat/internal_server_error", A_CHAT, {}, 500, {}
    ),
    "anthropic-unauthorized (03:592)": Case(
        "/anthropic/llm/v1/chat/unauthorized", A_CHAT, {}, 401,
        {"error.type": "authentication_error"},
    ),
    "anthropic-chat-client-right-header-auth (03:637)": Case(
        "/anthropic/llm/v1/chat/good", A_CHAT, {"x-api-key": "anthropic-key"}, 200,
        _ANTHROPIC_GOOD, "anthropic/claude-2.1",
    ),
    "anthropic-chat-client-wrong-header-auth (03:664)": Case(
        "/anthropic/llm/v1/chat/good", A_CHAT, {"x-api-key": "wrong"}, 401,
        {"error.type": "authentication_error"},
    ),
    "anthropic-chat-client-right-header-auth-no-allow-override (03:682)": Case(
        "/anthropic/llm/v1/chat/good-no-allow-override", A_CHAT, {"x-api-key": "anthropic-key"},
        200, _ANTHROPIC_GOOD, "anthropic/claude-2.1",
    ),
    "anthropic-chat-client-wrong-header-auth-no-allow-override (03:709)": Case(
        "/anthropic/llm/v1/chat/good-no-allow-override", A_CHAT, {"x-api-key": "wrong"}, 200,
        _ANTHROPIC_GOOD, "anthropic/claude-2.1",
    ),
    "anthropic-chat-bad-upstream-response (03:736)": Case(
        "/anthropic/llm/v1/chat/bad_upstream_response", A_CHAT, {}, 500,
        {"error.message": "transformation failed from type anthropic://llm/v1/chat: "
         "'content' not in anthropic://llm/v1/chat response"},
    ),
    "anthropic-chat-bad-request (03:751)": Case(
        "/anthropic/llm/v1/chat/bad_request", "anthropic/llm-v1-chat/requests/bad_request.json",
        {}, 400, _NO_PROMPTS,
    ),
    "anthropic-chat-no-usage-response (03:767)": Case(
        "/anthropic/llm/v1/chat/no_usage_upstream_response", A_CHAT, {}, 200,
        {"usage": "no usage data returned from upstream"},
    ),
    "anthropic-chat-malformed-usage-response (03:781)": Case(
        "/anthropic/llm/v1/chat/malformed_usage_upstream_response", A_CHAT, {}, 200,
        {"usage": {}},
    ),
    "anthropic-completions-bad-request (03:854)": Case(
        "/anthropic/llm/v1/completions/bad_request",
        "anthropic/llm-v1-completions/requests/bad_request.json", {}, 400, _NO_PROMPTS,
    ),
    # 04-cohere
    "cohere-internal_server_error (04:402)": Case(
        "/cohere/llm/v1/chat/internal_server_error", C_CHAT, {}, 500, {}
    ),
    "cohere-chat-right-client-auth (04:458)": Case(
        "/cohere/llm/v1/chat/good", C_CHAT, {"authorization": "Bearer cohere-key"}, 200,
        _COHERE_GOOD, "cohere/command",
    ),
    "cohere-chat-wrong-client-auth (04:484)": Case(
        "/cohere/llm/v1/chat/good", C_CHAT, {"authorization": "Bearer wrong"}, 401,
        {"message": "invalid api token"},
    ),
    "cohere-chat-right-client-auth-no-allow-override (04:502)": Case(
        "/cohere/llm/v1/chat/good-no-allow-override", C_CHAT,
        {"authorization": "Bearer cohere-key"}, 200, _COHERE_GOOD, "cohere/command",
    ),
    "cohere-chat-wrong-client-auth-no-allow-override (04:528)": Case(
        "/cohere/llm/v1/chat/good-no-allow-override", C_CHAT, {"authorization": "Bearer wrong"},
        200, _COHERE_GOOD, "cohere/command",
    ),
    "cohere-chat-bad-upstream-response (04:554)": Case(
        "/cohere/llm/v1/chat/bad_upstream_response", C_CHAT, {}, 500,
        {"error.message": "transformation failed from type cohere://llm/v1/chat: "
         "'text' or 'generations' missing from cohere response body"},
    ),
    "cohere-chat-bad-request (04:569)": Case(
        "/cohere/llm/v1/chat/bad_request", "cohere/llm-v1-chat/requests/bad_request.json", {},
        400, _NO_PROMPTS,
    ),
    "cohere-completions-bad-request (04:608)": Case(
        "/cohere/llm/v1/completions/bad_request",
        "cohere/llm-v1-completions/requests/bad_request.json", {}, 400, _NO_PROMPTS,
    ),
    # 05-azure
    "azure-internal_server_error (05:572)": Case(
        "/azure/llm/v1/chat/internal_server_error", O_CHAT, {}, 500, {}
    ),
    "azure-unauthorized (05:585)": Case(
        "/azure/llm/v1/chat/unauthorized", O_CHAT, {}, 401, {"error.code": "invalid_api_key"}
    ),
    "azure-chat-good (05:604)": Case("/azure/llm/v1/chat/good", O_CHAT, {}, 200, _AZURE_GOOD),
    "azure-chat-client-right-auth (05:630)": Case(
        "/azure/llm/v1/chat/good", O_CHAT, {"api-key": "azure-key"}, 200, _AZURE_GOOD
    ),
    "azure-chat-client-wrong-auth (05:657)": Case(
        "/azure/llm/v1/chat/good", O_CHAT, {"api-key": "wrong"}, 401,
        {"error.code": "invalid_api_key"},
    ),
    "azure-chat-client-right-auth-no-allow-override (05:675)": Case(
        "/azure/llm/v1/chat/good-no-allow-override", O_CHAT, {"api-key": "azure-key"}, 200,
        _AZURE_GOOD,
    ),
    "azure-chat-client-wrong-auth-no-allow-override (05:702)": Case(
        "/azure/llm/v1/chat/good-no-allow-override", O_CHAT, {"api-key": "wrong"}, 200,
        _AZURE_GOOD,
    ),
    "azure-chat-bad-upstream-response (05:729)": Case(
        "/azure/llm/v1/chat/bad_upstream_response", O_CHAT, {}, 500,
        {"error.message": "transformation failed from type azure://llm/v1/chat: "
         "'choices' not in llm/v1/chat response"},
    ),
    "azure-chat-bad-request (05:744)": Case(
        "/azure/llm/v1/chat/bad_request", "openai/llm-v1-chat/requests/bad_request.json", {}, 400,
        _NO_PROMPTS,
    ),
    "azure-completions-good (05:763)": Case(
        "/azure/llm/v1/completions/good", O_COMP, {}, 200,
        {"id": "cmpl-8TBeaJVQIhE9kHEJbk1RnKzgFxIqN", "model": "gpt-3.5-turbo-instruct",
         "object": "text_completion", "choices.0.text": _OPENAI_TEXT},
        "azure/gpt-3.5-turbo-instruct",
    ),
    "azure-completions-bad-request (05:787)": Case(
        "/azure/llm/v1/completions/bad_request",
        "openai/llm-v1-completions/requests/bad_request.json", {}, 400, _NO_PROMPTS,
    ),
    # 06-mistral
    "mistral-chat-good (06:356)": Case(
        "/mistral/llm/v1/chat/good", O_CHAT, {}, 200, _MISTRAL_GOOD,
        f"mistral/{_MISTRAL_MODEL}",
    ),
    "mistral-chat-client-right-auth (06:383)": Case(
        "/mistral/llm/v1/chat/good", O_CHAT, {"authorization": "Bearer mistral-key"}, 200,
        _MISTRAL_GOOD, f"mistral/{_MISTRAL_MODEL}",
    ),
    "mistral-chat-client-wrong-auth (06:412)": Case(
        "/mistral/llm/v1/chat/good", O_CHAT, {"authorization": "Bearer wrong"}, 401,
        {"error.code": "invalid_api_key"},
    ),
    "mistral-chat-client-right-auth-no-allow-override (06:432)": Case(
        "/mistral/llm/v1/chat/good-no-allow-override", O_CHAT,
        {"authorization": "Bearer mistral-key"}, 200, _MISTRAL_GOOD, f"mistral/{_MISTRAL_MODEL}",
    ),
    "mistral-chat-client-wrong-auth-no-allow-override (06:461)": Case(
        "/mistral/llm/v1/chat/good-no-allow-override", O_CHAT,
        {"authorization": "Bearer wrong"}, 200, _MISTRAL_GOOD, f"mistral/{_MISTRAL_MODEL}",
    ),
    "mistral-completions-good (06:491)": Case(
        "/mistral/llm/v1/completions/good", O_COMP, {}, 200,
        {"id": "cmpl-8TBeaJVQIhE9kHEJbk1RnKzgFxIqN", "model": _MISTRAL_MODEL,
         "object": "text_completion", "choices.0.text": _OPENAI_TEXT},
    ),
    # 07-llama2
    "llama2-chat-format (07:204)": Case(
        "/raw/llm/v1/chat/completions", "llama2/raw/requests/good-chat.json", {}, 200,
        {"choices.0.message.content": _FONT},
    ),
    "llama2-completions-format (07:219)": Case(
        "/raw/llm/v1/completions", LLAMA_COMP, {}, 200, {"choices.0.text": _FONT}
    ),
    "llama2-completions-client-right-auth (07:234)": Case(
        "/raw/llm/v1/completions", LLAMA_COMP, {"authorization": "Bearer llama2-key"}, 200,
        {"choices.0.text": _FONT},
    ),
    "llama2-completions-client-wrong-auth (07:250)": Case(
        "/raw/llm/v1/completions", LLAMA_COMP, {"authorization": "Bearer wrong"}, 401,
        {"error": "Model requires a Pro subscription."},
    ),
    "llama2-completions-client-right-auth-no-allow-override (07:266)": Case(
        "/raw/llm/v1/completions-no-allow-override", LLAMA_COMP,
        {"authorization": "Bearer llama2-key"}, 200, {"choices.0.text": _FONT},
    ),
    "llama2-completions-client-wrong-auth-no-allow-override (07:282)": Case(
        "/raw/llm/v1/completions-no-allow-override", LLAMA_COMP,
        {"authorization": "Bearer wrong"}, 200, {"choices.0.text": _FONT},
    ),
    # 10-huggingface
    "huggingface-unauthorized-chat (10:369)": Case(
        "/huggingface/llm/v1/chat/unauthorized", HF_CHAT, {}, 401,
        {"error": "Authorization header is correct, but the token seems invalid"},
    ),
    "huggingface-unauthorized-completions (10:382)": Case(
        "/huggingface/llm/v1/completions/unauthorized", HF_COMP, {}, 401,
        {"error": "Authorization header is correct, but the token seems invalid"},
    ),
    "huggingface-bad-chat-request (10:397)": Case(
        "/huggingface/llm/v1/chat/good", {"messages": None}, {}, 400, _NO_PROMPTS
    ),
    "huggingface-bad-completions-request (10:410)": Case(
        "/huggingface/llm/v1/completions/good", {"prompt": None}, {}, 400, _NO_PROMPTS
    ),
    "huggingface-bad-response-model-timeout (10:438)": Case(
        "/huggingface/llm/v1/chat/bad-response/model-timeout", HF_CHAT, {}, 504,
        {"error": "Model mistralai/Mistral-7B-Instruct-v0.2 time out"},
    ),
    # 11-gemini (3.10: Kong #14751)
    "gemini-model-name-from-variable (11:252)": Case(
        "/gemini/llm/v1/chat/good/gemni-2.0-flash", O_CHAT, {}, 200,
        {"model": "gemni-2.0-flash"},
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", list(CASES))
def test_kong_spec_case(gateway: Gateway, name: str) -> None:
    case = CASES[name]
    r = request(gateway, case.path, case.body, **case.headers)
    assert r.status_code == case.status, r.text
    assert r.content  # Kong's assert.res_status: a body
    if case.expect:
        answer = r.json()
        for path, value in case.expect.items():
            assert dig(answer, path) == value, (path, answer)
    if case.model_header is not None:
        assert r.headers.get("x-kong-llm-model") == case.model_header


def test_anthropic_tool_choice_conversion(gateway: Gateway) -> None:
    """03-anthropic 795 (Kong 3.10, #14694): OpenAI's ``tool_choice`` becomes Anthropic's
    (Kong's ``to_tool_choice``, kong/llm/drivers/anthropic.lua 131-155; 3.9.1 passed it as
    it came, as fastkong's ``_llm_anthropic.py`` does)."""
    requests = "openai/llm-v1-chat/requests"
    got = {}
    for name in ("auto", "none", "required", "object_function"):
        body = json.loads(fixture(f"{requests}/tool_choice_{name}.json"))
        body["model"] = "claude-2.1"
        r = httpx.post(
            gateway.url("/anthropic/llm/v1/chat/tool_choice"),
            json=body,
            headers={"accept": "application/json"},
            timeout=15,
        )
        sent = r.headers.get("tool-choice")
        got[name] = None if sent is None else json.loads(sent)
    assert got == {
        "auto": {"type": "auto"},
        "none": {"type": "none"},
        "required": {"type": "any"},
        "object_function": {"type": "tool", "name": "my_function"},
    }


def test_gemini_good_request_and_its_statistics(gateway: Gateway, log_path: Path) -> None:
    """11-gemini 205: the answer, then the file-log entry's ``ai.proxy`` section."""
    before = len(log_entries(log_path, GEMINI_ROUTE))
    r = request(gateway, "/gemini/llm/v1/chat/good", O_CHAT)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["model"] == "gemini-1.5-pro"
    assert answer["object"] == "chat.completion"
    assert answer["choices"][0]["finish_reason"] == "stop"
    assert answer["choices"][0]["message"]["content"] == "Everything is okay."
    entry = next_log(log_path, GEMINI_ROUTE, before)
    assert entry["client_ip"] == "127.0.0.1"
    assert isinstance(entry["request"]["size"], int)
    assert isinstance(entry["response"]["size"], int)
    stats = entry["ai"]["proxy"]
    payload = stats.pop("payload")
    latency = stats["meta"]["llm_latency"]
    assert latency >= 0
    per_token = stats["usage"]["time_per_token"]
    assert round(per_token, 3) == round(latency / stats["usage"]["completion_tokens"], 3)
    stats["meta"]["llm_latency"] = 1
    stats["usage"]["time_per_token"] = 1
    assert stats == {
        "meta": {
            "plugin_id": GEMINI_PLUGIN_ID,
            "provider_name": "gemini",
            "request_model": "gemini-1.5-pro",
            "response_model": "gemini-1.5-pro",
            "llm_latency": 1,
        },
        "usage": {
            "prompt_tokens": 2,
            "completion_tokens": 11,
            "total_tokens": 13,
            "time_per_token": 1,
            "cost": pytest.approx(0.000195),
        },
    }
    # Kong's assert.match_re: the request as sent to Gemini (Kong logs ngx.req.get_body_data(),
    # the body normalize-request set for the upstream: 3.9.1 serialize-analytics.lua 86), the
    # answer as translated.
    assert re.search(r".*contents.*What is 1 \+ 1.*", payload["request"], re.S), payload
    assert re.search(r".*content.*Everything is okay.*", payload["response"], re.S), payload


@pytest.mark.parametrize(
    ("case", "status", "expect"),
    [
        ("success", 200, _FONT),
        ("404", 400, "failed to introspect request with AI service: status code 404"),
        ("401", 400, "failed to introspect request with AI service: status code 401"),
    ],
)
def test_llama2_one_shot_request(gateway: Gateway, case: str, status: int, expect: str) -> None:
    """07-llama2 300-443: the llama2 ``raw`` driver's one-shot call, made by
    ai-request-transformer (system prompt, then the body as the user's question); its answer
    is the body the upstream (the sink) gets and echoes."""
    r = httpx.post(
        gateway.url(f"/one-shot/{case}"),
        content=b"Some question",
        headers={"content-type": "text/plain"},
        timeout=15,
    )
    assert r.status_code == status, r.text
    if status == 200:
        assert r.text == expect
    else:
        assert r.json() == {"error": {"message": expect}}
