"""Kong's ai-proxy OpenAI and encoding integration specs, through one real gateway against a
twin of their mock LLM server on loopback (Kong 3.9.1's specs; the mirror's HEAD differs only in
where the mock port is chosen). Line numbers are 3.9.1's.

Ported from ``spec/03-plugins/38-ai-proxy/02-openai_integration_spec.lua``:

- setup, lines 69-815: the ``http_mock`` locations (77-226) are :class:`KongMock`; the
  services, certificate, SNI, routes and plugins (228-804) are the gateway's config;
- "openai general" (838-1050): logs statistics, does not log statistics, logs payloads,
  internal_server_error request, unauthorized request, authorized request with client header
  auth, authorized request with client right header auth with no allow_override;
- "openai llm/v1/chat" (1052-1240): good request, good request with http2 (curl, as Kong's
  spec runs it), good request parses model of cjson.null, bad request, #REGRESSION user
  defined model doesn't pollute long lived config table;
- "openai llm/v1/completions" (1242-1282), "openai preserve mode" (1284-1308);
- "openai different auth methods" (1310-1554): all ten cases;
- "openai multi-modal requests" (1556-1646): logs statistics, logs payloads.

Ported from ``spec/03-plugins/38-ai-proxy/08-encoding_integration_spec.lua``: all five cases
(253-369), its mock (136-203) in :class:`KongMock` (``/v1/chat/completions``, answering
gzip). fastkong documents that the client always gets an identity-encoded answer
(docs/plugins.md, "ai-proxy", "Where fastkong differs from Kong": "an answer the provider
gzipped is decoded (Kong re-compresses it for a client that accepts gzip)"), so these cases
assert the body Kong's inflated one holds, with no gzip ``Content-Encoding``. Kong's plugin
there has no ``upstream_url`` and reaches the mock through a DNS mock of api.openai.com and
``OPENAI_TEST_PORT``; here ``upstream_url`` names the mock.

Left out:

- "unauthorized request with client header auth" (993) and "authorized request with wrong
  client header auth with no allow_override" (1037): covered by
  test_ai_proxy.test_upstream_errors_pass_through;
- "tries to override configured model" (1129): covered by
  test_ai_proxy.test_bad_requests_get_kongs_errors;
- "bad upstream response" (1144): covered by test_ai_proxy.test_a_bad_upstream_answer_is_kongs_500;
- "good request setting model from client body" (1178): covered by
  test_ai_proxy.test_model_from_the_request_when_the_config_has_none (and the REGRESSION case
  here asserts the same header for ten models on the same route);
- "one-shot request" (1648-1745, success and 404): calls Kong's Lua driver API in-process
  (``ai_driver.subrequest``), a Kong internal; fastkong's one-shot LLM call is the AI
  transformers' and is covered by test_ai_request_transformer / test_ai_transformers_units;
- the ``ctx-checker-last`` plugins (a custom Lua test plugin checking
  ``kong.ctx.shared.llm_model_requested``): the model requested is observed as
  ``X-Kong-LLM-Model`` and the log's ``meta.request_model`` instead;
- the ``file-log`` plugins writing to ``/dev/stdout``: nothing asserts their output.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.helpers import Gateway, LoopServer, free_port, read_request
from tests.pki import Pki
from tests.plugins.kong_ai_mocks import FIXTURES, fixture

pytestmark = pytest.mark.integration

PLUGIN_ID = "6e7c40f6-ce96-48e4-a366-d109c169e444"


CHAT_GOOD = fixture("openai/llm-v1-chat/requests/good.json")
CHAT_MULTI_MODAL = fixture("openai/llm-v1-chat/requests/good_multi_modal.json")
CHAT_OWN_MODEL = fixture("openai/llm-v1-chat/requests/good_own_model.json")
COMPLETIONS_GOOD = fixture("openai/llm-v1-completions/requests/good.json")

# 08-encoding's format_stencils (its lines 10-98): the provider's answers, gzipped by the mock.
ENCODING_USER_REQUEST = {
    "messages": [
        {"role": "system", "content": "You are a scientist."},
        {"role": "user", "content": "Why can't you divide by zero?"},
    ]
}
ENCODING_ANSWERS: dict[str, tuple[int, dict[str, Any]]] = {
    "200": (
        200,
        {
            "choices": [
                {
                    "finish_reason": "stop",
                    "index": 0,
                    "messages": {
                        "role": "assistant",
                        "content": "Dividing by zero is undefined in mathematics because it "
                        "leads to results that are contradictory or nonsensical.",
                    },
                }
            ],
            "created": 1702325640,
            "id": "chatcmpl-8Ugx63a79wKACVkaBbKnR2C2HPcxT",
            "model": "gpt-4-0613",
            "object": "chat.completion",
            "usage": {"completion_tokens": 139, "prompt_tokens": 130, "total_tokens": 269},
        },
    ),
    "200_FAULTY": (
        200,
        {"your_request": {"was_not": "correct but for some reason i return 200 anyway"}},
    ),
    "401": (401, {"error": {"message": "bad API key"}}),
    "500": (500, {"error": {"message": "some failure"}}),
    "500_FAULTY": (
        500,
        {"bad_message": {"bad_error": {"unauthorized": "some failure with weird json"}}},
    ),
}

_REASONS = {200: b"OK", 400: b"Bad Request", 401: b"Unauthorized", 404: b"Not Found"}


class KongMock(LoopServer):
    """The spec's ``http_mock`` server: nginx locations answering with Kong's fixture files
    (``Content-Type: application/json`` by default, chunked, as ``ngx.print`` sends them)."""

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                got = await read_request(reader)
                status, body, extra = self.answer(got.target, got.lowered, got.body)
                reason = _REASONS.get(status, b"Internal Server Error")
                head = b"HTTP/1.1 %d %s\r\n" % (status, reason)
                if not any(h.lower().startswith(b"content-type:") for h in extra):
                    head += b"Content-Type: application/json\r\n"
                head += b"".join(h + b"\r\n" for h in extra)
                head += b"Transfer-Encoding: chunked\r\n\r\n"
                chunk = b"%x\r\n%s\r\n" % (len(body), body) if body else b""
                writer.write(head + chunk + b"0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    @staticmethod
    def answer(target: str, headers: dict[str, str], raw: bytes) -> tuple[int, bytes, list[bytes]]:
        parts = urlsplit(target)
        path, query = parts.path, parse_qs(parts.query)
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = None
        fields = body if isinstance(body, dict) else {}
        bad_json = not isinstance(body, dict)
        token = headers.get("authorization")
        authorized = (
            token == "Bearer openai-key"
            or query.get("apikey", [None])[0] == "openai-key"
            or fields.get("apikey") == "openai-key"
        )
        # Lua's ``body.messages == ngx.null``: a JSON null, not a missing key.
        no_messages = bad_json or ("messages" in fields and fields["messages"] is None)
        chat, comp = "openai/llm-v1-chat/responses/", "openai/llm-v1-completions/responses/"
        if path in ("/llm/v1/chat/good", "/llm/v1/completions/good"):
            files = chat if "chat" in path else comp
            if not authorized:
                return 401, fixture(files + "unauthorized.json"), []
            if no_messages:
                return 400, fixture(files + "bad_request.json"), []
            return 200, fixture(files + "good.json"), []
        if path == "/llm/v1/chat/bad_upstream_response":
            if token != "Bearer openai-key":
                return 401, fixture(chat + "unauthorized.json"), []
            if no_messages:
                return 400, fixture(chat + "bad_request.json"), []
            return 200, fixture(chat + "bad_upstream_response.json"), []
        if path == "/llm/v1/chat/bad_request":
            return 400, fixture(chat + "bad_request.json"), []
        if path == "/llm/v1/completions/bad_request":
            return 400, fixture(comp + "bad_request.json"), []
        if path == "/llm/v1/chat/internal_server_error":
            html = fixture(chat + "internal_server_error.html")
            return 500, html, [b"Content-Type: text/html"]
        if path == "/llm/v1/embeddings/good":
            if not authorized:
                return 401, fixture(chat + "unauthorized.json"), []
            if bad_json:
                return 400, fixture(chat + "bad_request.json"), []
            if (
                fields.get("input") == "The food was delicious and the waiter"
                and fields.get("model") == "text-embedding-ada-002"
            ):
                return 200, fixture("openai/llm-v1-embeddings/responses/good.json"), []
            return 200, b"", []
        if path == "/v1/chat/completions":  # 08-encoding's mock
            if not authorized:
                return 401, b"", []
            if no_messages:
                return 400, b"", []
            found = ENCODING_ANSWERS.get(headers.get("x-test-type", ""))
            if found is None:
                return 200, b"", []
            status, payload = found
            return status, gzip.compress(json.dumps(payload).encode()), [b"Content-Encoding: gzip"]
        return 404, b"<html>404 Not Found</html>", [b"Content-Type: text/html"]


@pytest.fixture(scope="module")
def mock() -> Iterator[KongMock]:
    server = KongMock().start()
    yield server
    server.stop()


def ai_proxy(
    route_type: str,
    url: str,
    name: str | None,
    auth: dict[str, Any],
    logging: dict[str, bool] | None = None,
    costs: bool = False,
    **extra: Any,
) -> dict[str, Any]:
    options: dict[str, Any] = {"max_tokens": 256, "temperature": 1.0, "upstream_url": url}
    if costs:
        options.update(input_cost=10.0, output_cost=10.0)
    model: dict[str, Any] = {"provider": "openai", "options": options}
    if name is not None:
        model["name"] = name
    config: dict[str, Any] = {"route_type": route_type, "auth": auth, "model": model}
    if logging is not None:
        config["logging"] = logging
    return {"name": "ai-proxy", "config": config, **extra}


HEADER_AUTH = {"header_name": "Authorization", "header_value": "Bearer openai-key"}


def query_auth(location: str, allow_override: bool) -> dict[str, Any]:
    return {
        "param_name": "apikey",
        "param_value": "openai-key",
        "param_location": location,
        "allow_override": allow_override,
    }


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ai-logs")


@pytest.fixture(scope="module")
def gateway(
    mock: KongMock, logs: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    base = f"http://127.0.0.1:{mock.port}/llm/v1"
    chat, comp = f"{base}/chat/good", f"{base}/completions/good"
    stats = {"log_payloads": False, "log_statistics": True}

    def file_log(name: str) -> dict[str, Any]:
        return {"name": "file-log", "config": {"path": str(logs / f"{name}.log")}}

    routes: dict[str, list[dict[str, Any]]] = {
        "/openai/llm/v1/chat/good": [
            ai_proxy(
                "llm/v1/chat",
                chat,
                "gpt-3.5-turbo",
                {**HEADER_AUTH, "allow_override": True},
                stats,
                costs=True,
                id=PLUGIN_ID,
            ),
            file_log("stats-only"),
        ],
        "/openai/llm/v1/chat/good-no-allow-override": [
            ai_proxy(
                "llm/v1/chat",
                chat,
                "gpt-3.5-turbo",
                {**HEADER_AUTH, "allow_override": False},
                stats,
                costs=True,
            )
        ],
        "/openai/llm/v1/chat/good-without-stats": [
            ai_proxy(
                "llm/v1/chat",
                chat,
                "gpt-3.5-turbo",
                HEADER_AUTH,
                {"log_payloads": False, "log_statistics": False},
            ),
            file_log("no-logs"),
        ],
        "/openai/llm/v1/chat/good-with-payloads": [
            ai_proxy(
                "llm/v1/chat",
                chat,
                "gpt-3.5-turbo",
                HEADER_AUTH,
                {"log_payloads": True, "log_statistics": True},
            ),
            file_log("with-payloads"),
        ],
        "/openai/llm/v1/completions/good": [
            ai_proxy("llm/v1/completions", comp, "gpt-3.5-turbo-instruct", HEADER_AUTH)
        ],
        "/openai/llm/v1/completions/query-param-auth": [
            ai_proxy(
                "llm/v1/completions", comp, "gpt-3.5-turbo-instruct", query_auth("query", True)
            )
        ],
        "/openai/llm/v1/completions/query-param-auth-no-allow-override": [
            ai_proxy(
                "llm/v1/completions", comp, "gpt-3.5-turbo-instruct", query_auth("query", False)
            )
        ],
        "/openai/llm/v1/chat/good-no-model-param": [
            ai_proxy("llm/v1/chat", chat, None, HEADER_AUTH)
        ],
        "/openai/llm/v1/completions/post-body-auth": [
            ai_proxy("llm/v1/completions", comp, "gpt-3.5-turbo-instruct", query_auth("body", True))
        ],
        "/openai/llm/v1/completions/post-body-auth-no-allow-override": [
            ai_proxy(
                "llm/v1/completions", comp, "gpt-3.5-turbo-instruct", query_auth("body", False)
            )
        ],
        "/openai/llm/v1/chat/unauthorized": [
            ai_proxy(
                "llm/v1/chat",
                chat,
                "gpt-3.5-turbo",
                {"header_name": "Authorization", "header_value": "Bearer wrong-key"},
            )
        ],
        "/openai/llm/v1/chat/bad_request": [
            ai_proxy("llm/v1/chat", f"{base}/chat/bad_request", "gpt-3.5-turbo", HEADER_AUTH)
        ],
        "/openai/llm/v1/completions/bad_request": [
            ai_proxy(
                "llm/v1/completions",
                f"{base}/completions/bad_request",
                "gpt-3.5-turbo-instruct",
                HEADER_AUTH,
            )
        ],
        "/openai/llm/v1/chat/internal_server_error": [
            ai_proxy(
                "llm/v1/chat", f"{base}/chat/internal_server_error", "gpt-3.5-turbo", HEADER_AUTH
            )
        ],
    }
    route_list: list[dict[str, Any]] = [
        {
            "name": path.strip("/").replace("/", "-"),
            "paths": [path],
            "protocols": ["http", "https"],
            "strip_path": True,
            "snis": ["example.test"],
            "plugins": plugins,
        }
        for path, plugins in routes.items()
    ]
    # preserve mode (its route keeps the default strip_path)
    preserve = {
        "name": "preserve-embeddings",
        "paths": ["/llm/v1/embeddings/good"],
        "protocols": ["http", "https"],
        "snis": ["example.test"],
        "plugins": [
            {
                "name": "ai-proxy",
                "config": {
                    "route_type": "preserve",
                    "auth": HEADER_AUTH,
                    "model": {
                        "provider": "openai",
                        "options": {
                            "upstream_url": f"http://127.0.0.1:{mock.port}/whatever/doesnt/matter"
                        },
                    },
                },
            }
        ],
    }
    # 08-encoding's route and plugin_conf (its lines 100-112, 225-238)
    encoding = {
        "name": "encoding",
        "paths": ["/openai/llm/v1/chat"],
        "protocols": ["http"],
        "strip_path": True,
        "plugins": [
            {
                "name": "ai-proxy",
                "config": {
                    "route_type": "llm/v1/chat",
                    "auth": HEADER_AUTH,
                    "model": {
                        "name": "gpt-4",
                        "provider": "openai",
                        "options": {
                            "max_tokens": 256,
                            "temperature": 1.0,
                            "upstream_url": f"http://127.0.0.1:{mock.port}/v1/chat/completions",
                        },
                    },
                },
            }
        ],
    }
    cert, key = Pki("ai-proxy test CA").issue("example.test", dns="example.test")
    config = {
        "_format_version": "3.0",
        "certificates": [{"cert": cert, "key": key, "snis": [{"name": "example.test"}]}],
        # Kong's empty_service (localhost:8080): never asked, the plugin sets the target.
        "services": [
            {
                "name": "empty_service",
                "url": f"http://127.0.0.1:{free_port()}/",
                "routes": [*route_list, preserve, encoding],
            }
        ],
    }
    gw = Gateway(tmp_path_factory.mktemp("gateway"), json.dumps(config))
    gw.ssl_port = free_port()
    try:
        gw.start()
        yield gw
    finally:
        gw.stop()


JSON_HEADERS = {"content-type": "application/json", "accept": "application/json"}


def get(gateway: Gateway, path: str, body: bytes, **headers: str) -> httpx.Response:
    """Kong's ``client:get(path, {headers = ..., body = ...})``."""
    return httpx.request(
        "GET", gateway.url(path), content=body, headers={**JSON_HEADERS, **headers}, timeout=10
    )


def with_apikey(body: bytes, key: str) -> bytes:
    decoded = json.loads(body)
    decoded["apikey"] = key
    return json.dumps(decoded).encode()


def assert_chat_good(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"] == "chatcmpl-8T6YwgvjQVVnGbJ2w8hpOA17SeNy2"
    assert body["model"] == "gpt-3.5-turbo-0613"
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {
        "content": "The sum of 1 + 1 is 2.",
        "role": "assistant",
    }
    return body


def assert_completions_good(r: httpx.Response) -> None:
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"] == "cmpl-8TBeaJVQIhE9kHEJbk1RnKzgFxIqN"
    assert body["model"] == "gpt-3.5-turbo-instruct"
    assert body["object"] == "text_completion"
    assert body["choices"][0]["text"] == (
        "\n\nI am a language model AI created by OpenAI. I can answer questions"
    )


def log_lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def next_log(path: Path, before: int) -> dict[str, Any]:
    """The entry written after the ``before`` lines already in ``path`` (Kong's
    ``wait_for_json_log_entry`` on a truncated file)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        lines = log_lines(path)
        if len(lines) > before:
            return json.loads(lines[before])
        time.sleep(0.05)
    raise AssertionError(f"no new entry in {path}")


def logged(gateway: Gateway, logs: Path, name: str, path: str, body: bytes) -> dict[str, Any]:
    """Send ``body`` to ``path``, check Kong's good chat answer, return the new log entry."""
    log = logs / f"{name}.log"
    before = len(log_lines(log))
    assert_chat_good(get(gateway, path, body))
    entry = next_log(log, before)
    assert entry["client_ip"] == "127.0.0.1"
    assert isinstance(entry["request"]["size"], int)
    assert isinstance(entry["response"]["size"], int)
    return entry


def fmt3(x: float) -> str:
    return f"{x:.3f}"


EXPECTED_CHAT_STATS = {
    "meta": {
        "plugin_id": PLUGIN_ID,
        "provider_name": "openai",
        "request_model": "gpt-3.5-turbo",
        "response_model": "gpt-3.5-turbo-0613",
        "llm_latency": 1,
    },
    "usage": {
        "prompt_tokens": 25,
        "completion_tokens": 12,
        "total_tokens": 37,
        "time_per_token": 1,
        "cost": 0.00037,
    },
}


@pytest.mark.parametrize("body", [CHAT_GOOD, CHAT_MULTI_MODAL], ids=["text", "multi-modal"])
def test_logs_statistics(gateway: Gateway, logs: Path, body: bytes) -> None:
    """02-openai 839 ("openai general") and 1557 ("openai multi-modal requests")."""
    entry = logged(gateway, logs, "stats-only", "/openai/llm/v1/chat/good", body)
    got = next(iter(entry["ai"].values()))
    latency = got["meta"]["llm_latency"]
    time_per_token = got["usage"]["time_per_token"]
    got["meta"]["llm_latency"] = 1
    got["usage"]["time_per_token"] = 1
    assert got == EXPECTED_CHAT_STATS
    assert latency >= 0
    assert fmt3(time_per_token) == fmt3(latency / got["usage"]["completion_tokens"])


def test_does_not_log_statistics(gateway: Gateway, logs: Path) -> None:
    """02-openai 885."""
    path = "/openai/llm/v1/chat/good-without-stats"
    entry = logged(gateway, logs, "no-logs", path, CHAT_GOOD)
    assert "ai" not in entry


@pytest.mark.parametrize(
    ("body", "request_part"),
    [
        (CHAT_GOOD, '"content":"What is 1 + 1?"'),
        (CHAT_MULTI_MODAL, '"text":"What\'s in this image?"'),
    ],
    ids=["text", "multi-modal"],
)
def test_logs_payloads(gateway: Gateway, logs: Path, body: bytes, request_part: str) -> None:
    """02-openai 919 and 1603 (multi-modal)."""
    path = "/openai/llm/v1/chat/good-with-payloads"
    entry = logged(gateway, logs, "with-payloads", path, body)
    payload = next(iter(entry["ai"].values()))["payload"]
    # Kong logs ngx.req.get_body_data() after normalize-request's set_body: the body sent to
    # the provider, as cjson encodes it (no spaces), not the client's.
    assert request_part in payload["request"]
    assert '"role":"user"' in payload["request"]
    assert '"content": "The sum of 1 + 1 is 2.",' in payload["response"]
    assert '"role": "assistant"' in payload["response"]
    assert '"id": "chatcmpl-8T6YwgvjQVVnGbJ2w8hpOA17SeNy2"' in payload["response"]


def test_internal_server_error_request(gateway: Gateway) -> None:
    """02-openai 963."""
    r = get(gateway, "/openai/llm/v1/chat/internal_server_error", CHAT_GOOD)
    assert r.status_code == 500
    assert r.content


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/openai/llm/v1/chat/unauthorized", CHAT_GOOD),  # 976
        # 1355 ("works with query param auth with client wrong auth parm")
        ("/openai/llm/v1/completions/query-param-auth?apikey=wrong", COMPLETIONS_GOOD),
        # 1485 ("works with post body auth with client wrong auth body")
        (
            "/openai/llm/v1/completions/post-body-auth",
            with_apikey(COMPLETIONS_GOOD, "wrong"),
        ),
    ],
    ids=["configured-wrong-key", "query-wrong-override", "body-wrong-override"],
)
def test_unauthorized(gateway: Gateway, path: str, body: bytes) -> None:
    r = get(gateway, path, body)
    assert r.status_code == 401, r.text
    assert r.json()["error"]["code"] == "invalid_api_key"


@pytest.mark.parametrize(
    ("path", "authorization"),
    [
        ("/openai/llm/v1/chat/good", "Bearer openai-key"),  # 1011
        ("/openai/llm/v1/chat/good-no-allow-override", "Bearer openai-key"),  # 1024
    ],
    ids=["allow-override", "no-allow-override"],
)
def test_authorized_with_client_header_auth(
    gateway: Gateway, path: str, authorization: str
) -> None:
    r = get(gateway, path, CHAT_GOOD, authorization=authorization)
    assert r.status_code == 200, r.text


def test_chat_good_request(gateway: Gateway) -> None:
    """02-openai 1053."""
    r = get(gateway, "/openai/llm/v1/chat/good", CHAT_GOOD)
    assert_chat_good(r)
    assert r.headers["X-Kong-LLM-Model"] == "openai/gpt-3.5-turbo"


def test_chat_good_request_with_http2(gateway: Gateway) -> None:
    """02-openai 1080: curl over TLS (HTTP/2 offered by ALPN) with the route's SNI."""
    port = gateway.ssl_port
    out = subprocess.run(
        [
            "curl",
            "-sS",
            "-X",
            "GET",
            "-k",
            "--resolve",
            f"example.test:{port}:127.0.0.1",
            "-H",
            "Content-Type: application/json",
            f"https://example.test:{port}/openai/llm/v1/chat/good",
            "--data-binary",
            "@" + str(FIXTURES / "openai/llm-v1-chat/requests/good.json"),
        ],
        capture_output=True,
        timeout=30,
        check=True,
    )
    body = json.loads(out.stdout)
    assert body.get("message") is None
    assert body["id"] == "chatcmpl-8T6YwgvjQVVnGbJ2w8hpOA17SeNy2"
    assert body["model"] == "gpt-3.5-turbo-0613"
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {
        "content": "The sum of 1 + 1 is 2.",
        "role": "assistant",
    }


def test_chat_good_request_parses_model_of_null(gateway: Gateway) -> None:
    """02-openai 1098: ``"model": null`` in the request is no model."""
    body = {**json.loads(CHAT_GOOD), "model": None}
    assert_chat_good(get(gateway, "/openai/llm/v1/chat/good", json.dumps(body).encode()))


@pytest.mark.parametrize(
    ("path", "fixture_path"),
    [
        ("/openai/llm/v1/chat/bad_request", "openai/llm-v1-chat/requests/bad_request.json"),
        (
            "/openai/llm/v1/completions/bad_request",
            "openai/llm-v1-completions/requests/bad_request.json",
        ),
    ],
    ids=["chat", "completions"],
)
def test_bad_request(gateway: Gateway, path: str, fixture_path: str) -> None:
    """02-openai 1160 (chat) and 1266 (completions)."""
    r = get(gateway, path, fixture(fixture_path))
    assert r.status_code == 400
    assert r.json()["error"]["message"] == "request body doesn't contain valid prompts"


def test_user_model_does_not_pollute_the_config(gateway: Gateway) -> None:
    """02-openai 1206 (#REGRESSION): each request's own model, ten times."""
    body = json.loads(CHAT_OWN_MODEL)
    for i in range(1, 11):
        body["model"] = f"random-model-{time.time()}-{i}"
        r = get(gateway, "/openai/llm/v1/chat/good-no-model-param", json.dumps(body).encode())
        assert_chat_good(r)
        assert r.headers["X-Kong-LLM-Model"] == "openai/" + body["model"]


def test_completions_good_request(gateway: Gateway) -> None:
    """02-openai 1243."""
    assert_completions_good(get(gateway, "/openai/llm/v1/completions/good", COMPLETIONS_GOOD))


def test_preserve_mode_embeddings(gateway: Gateway) -> None:
    """02-openai 1286: the client's path (not the route-stripped one) goes upstream."""
    body = {
        "model": "text-embedding-ada-002",
        "input": "The food was delicious and the waiter",
        "encoding_format": "float",
    }
    r = get(gateway, "/llm/v1/embeddings/good", json.dumps(body).encode())
    assert r.status_code == 200, r.text
    assert r.json()["data"][0]
    assert r.json()["model"] == "text-embedding-3-large"
    assert r.headers["X-Kong-LLM-Model"] == "openai/text-embedding-ada-002"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/openai/llm/v1/completions/query-param-auth", COMPLETIONS_GOOD),  # 1311
        ("/openai/llm/v1/completions/query-param-auth?apikey=openai-key", COMPLETIONS_GOOD),
        (
            "/openai/llm/v1/completions/query-param-auth-no-allow-override?apikey=openai-key",
            COMPLETIONS_GOOD,
        ),
        (
            "/openai/llm/v1/completions/query-param-auth-no-allow-override?apikey=wrong",
            COMPLETIONS_GOOD,
        ),
        ("/openai/llm/v1/completions/post-body-auth", COMPLETIONS_GOOD),  # twice in the spec
        (
            "/openai/llm/v1/completions/post-body-auth",
            with_apikey(COMPLETIONS_GOOD, "openai-key"),
        ),
        (
            "/openai/llm/v1/completions/post-body-auth-no-allow-override",
            with_apikey(COMPLETIONS_GOOD, "openai-key"),
        ),
        (
            "/openai/llm/v1/completions/post-body-auth-no-allow-override",
            with_apikey(COMPLETIONS_GOOD, "wrong"),
        ),
    ],
    ids=[
        "query",
        "query-client-right",
        "query-client-right-no-override",
        "query-client-wrong-no-override",
        "body",
        "body-client-right",
        "body-client-right-no-override",
        "body-client-wrong-no-override",
    ],
)
def test_different_auth_methods(gateway: Gateway, path: str, body: bytes) -> None:
    """02-openai 1310-1554 ("openai different auth methods"): its 200 cases, in its order
    ("works with post body auth" is there twice, 1416 and 1438)."""
    assert_completions_good(get(gateway, path, body))


@pytest.mark.parametrize("test_type", list(ENCODING_ANSWERS))
def test_encoding_gzipped_llm_answers(gateway: Gateway, test_type: str) -> None:
    """08-encoding 254-368: Kong answers gzip to a client accepting it; fastkong decodes
    (docs/plugins.md, "ai-proxy": "the client always gets an identity-encoded answer")."""
    r = httpx.request(
        "GET",
        gateway.url("/openai/llm/v1/chat"),
        json=ENCODING_USER_REQUEST,
        headers={**JSON_HEADERS, "x-test-type": test_type, "accept-encoding": "gzip, identity"},
        timeout=10,
    )
    status, payload = ENCODING_ANSWERS[test_type]
    if test_type == "200_FAULTY":
        status, payload = (
            500,
            {
                "error": {
                    "message": "transformation failed from type openai://llm/v1/chat: "
                    "'choices' not in llm/v1/chat response"
                }
            },
        )
    assert r.status_code == status
    assert r.headers.get("content-encoding", "identity") == "identity"
    # The bytes as sent (httpx would inflate a gzip body silently).
    assert json.loads(r.content) == payload
