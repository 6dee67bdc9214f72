"""Kong's integration specs of ai-request-transformer and ai-response-transformer, against one
real gateway, a twin of Kong's ``mock_upstream`` and a twin of the specs' LLM ``http_mock``
answering Kong's fixture files (tests/plugins/kong_ai_mocks.py, kong_ai_fixtures/).

Ported (Kong's mirror HEAD; both files differ from 3.9.1 only in how the mock's port is chosen):

- spec/03-plugins/39-ai-request-transformer/02-integration_spec.lua 387-517 (6 cases);
- spec/03-plugins/40-ai-response-transformer/02-integration_spec.lua 432-571 (8 cases).

test_ai_request_transformer / test_ai_response_transformer cover the same features with their
own fake LLM; these cases keep Kong's fixtures and exact expectations (the statistics logged,
Gemini's content-safety refusal, the instructions' parsing).

Left out: nothing (the specs' Postgres strategy is the same cases; DB-less runs them here).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import Gateway, eventually
from tests.plugins.kong_ai_mocks import DOUBLED, REQUEST_BODY, XML_BODY, MockLlm, MockUpstream

pytestmark = pytest.mark.integration

REQ = "ai-request-transformer"
RESP = "ai-response-transformer"
EXPECTED_RESULT_FLAT = DOUBLED
REQ_PROMPT = "You are a mathematician. Multiply all numbers in my JSON request, by 2."
RESP_PROMPT = (
    "You are a mathematician. Multiply all numbers in my JSON request, by 2. Return me this "
    'message: {"status": 400, "headers: {"content-type": "application/xml"}, "body": "OUTPUT"} '
    "where 'OUTPUT' is the result but transformed into XML format."
)
REQ_PLUGIN_ID = "71083e79-4921-4f9f-97a4-ee7810b6cd8a"
REQ_GEMINI_PLUGIN_ID = "71083e79-4921-4f9f-97a4-ee7810b6cd8b"
RESP_PLUGIN_ID = "da587462-a802-4c22-931a-e6a92c5866d1"
STATS = {"log_payloads": False, "log_statistics": True}


def openai(url: str, **extra: Any) -> dict[str, Any]:
    """The specs' OPENAI_* llm records (``extra``: ``logging``, more model options)."""
    options = {"max_tokens": 512, "temperature": 0.5, "upstream_url": url}
    options.update(extra.pop("options", {}))
    return {
        "route_type": "llm/v1/chat",
        "model": {"name": "gpt-4", "provider": "openai", "options": options},
        "auth": {"header_name": "Authorization", "header_value": "Bearer openai-key"},
        **extra,
    }


def gemini(url: str, temperature: float, cost: float) -> dict[str, Any]:
    """The specs' GEMINI_* llm records."""
    options = {
        "max_tokens": 512,
        "temperature": temperature,
        "upstream_url": url,
        "input_cost": cost,
        "output_cost": cost,
    }
    return {
        "route_type": "llm/v1/chat",
        "logging": STATS,
        "model": {"name": "gemini-1.5-flash", "provider": "gemini", "options": options},
        "auth": {"header_name": "x-goog-api-key", "header_value": "123"},
    }


def plugin(name: str, llm: dict[str, Any], **config: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": name}
    if "id" in config:
        entry["id"] = config.pop("id")
    prompt = REQ_PROMPT if name == REQ else RESP_PROMPT
    entry["config"] = {"prompt": prompt, "llm": llm, **config}
    return entry


def file_log(path: Path) -> dict[str, Any]:
    return {"name": "file-log", "config": {"path": str(path)}}


def routes(llm: str, logs: Path) -> dict[str, list[dict[str, Any]]]:
    """Path prefix -> plugins: 39-*/02-integration_spec.lua 283-359 under /req, 40-*'s
    304-404 under /resp."""
    costs = {"input_cost": 10.0, "output_cost": 10.0}
    flat = openai(f"{llm}/flat", logging=STATS, options=costs)
    return {
        "/req/echo-flat": [plugin(REQ, flat, id=REQ_PLUGIN_ID), file_log(logs / "req.log")],
        "/req/gemini-echo-flat": [
            plugin(REQ, gemini(f"{llm}/geminiflat", 0.6, 20.0), id=REQ_GEMINI_PLUGIN_ID),
            file_log(logs / "req-gemini.log"),
        ],
        "/req/echo-bad-request": [plugin(REQ, openai(f"{llm}/badrequest"))],
        "/req/echo-fails-safety": [plugin(REQ, gemini(f"{llm}/failssafety", 0.5, 10.0))],
        "/req/echo-internal-server-error": [plugin(REQ, openai(f"{llm}/internalservererror"))],
        "/resp/echo-parse-instructions": [
            plugin(RESP, openai(f"{llm}/instructions"), parse_llm_response_json_instructions=True)
        ],
        "/resp/echo-flat": [
            plugin(RESP, flat, id=RESP_PLUGIN_ID, parse_llm_response_json_instructions=False),
            file_log(logs / "resp.log"),
        ],
        "/resp/echo-bad-instructions": [
            plugin(
                RESP, openai(f"{llm}/badinstructions"), parse_llm_response_json_instructions=True
            )
        ],
        "/resp/echo-bad-instructions-parse-out": [
            plugin(
                RESP,
                openai(f"{llm}/badinstructions"),
                parse_llm_response_json_instructions=True,
                transformation_extract_pattern="\\{((.|\n)*)\\}",
            )
        ],
        "/resp/echo-bad-request": [plugin(RESP, openai(f"{llm}/badrequest"))],
        "/resp/echo-fails-safety": [plugin(RESP, gemini(f"{llm}/failssafety", 0.5, 10.0))],
        "/resp/echo-internal-server-error": [plugin(RESP, openai(f"{llm}/internalservererror"))],
    }


@pytest.fixture(scope="module")
def llm() -> Iterator[MockLlm]:
    server = MockLlm().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def upstream() -> Iterator[MockUpstream]:
    server = MockUpstream().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ai-logs")


@pytest.fixture(scope="module")
def gateway(
    gateway_with: Callable[[str], Gateway], llm: MockLlm, upstream: MockUpstream, logs: Path
) -> Gateway:
    table = routes(f"http://127.0.0.1:{llm.port}", logs)
    config = {
        "_format_version": "3.0",
        "services": [
            {
                "name": "mock-upstream",
                "url": f"http://127.0.0.1:{upstream.port}",
                "routes": [
                    {"name": path.strip("/").replace("/", "-"), "paths": [path], "plugins": plugins}
                    for path, plugins in table.items()
                ],
            }
        ],
    }
    return gateway_with(json.dumps(config))


def get(gateway: Gateway, path: str) -> httpx.Response:
    """The specs' ``client:get(path, {headers = {content-type, accept json}, body = ...})``."""
    headers = {"content-type": "application/json", "accept": "application/json"}
    return httpx.request("GET", gateway.url(path), headers=headers, content=REQUEST_BODY)


def log_entry(path: Path) -> dict[str, Any]:
    """The specs' ``wait_for_json_log_entry``: the first JSON entry of the file."""
    eventually(lambda: path.exists() and path.read_text().strip() != "")
    entry: dict[str, Any] = json.loads(path.read_text().splitlines()[0])
    return entry


def stats(
    plugin_id: str, provider: str, model: str, tokens: tuple[int, int, int], cost: float
) -> dict[str, Any]:
    prompt, completion, total = tokens
    return {
        "meta": {
            "plugin_id": plugin_id,
            "provider_name": provider,
            "request_model": "UNSPECIFIED",
            "response_model": model,
            "llm_latency": 1,
        },
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": total,
            "time_per_token": 1,
            "cost": cost,
        },
        "cache": {},
    }


def assert_logged_stats(path: Path, name: str, expected: dict[str, Any]) -> None:
    entry = log_entry(path)
    assert entry["client_ip"] == "127.0.0.1"
    assert isinstance(entry["request"]["size"], int)
    assert isinstance(entry["response"]["size"], int)
    section = entry["ai"][name]
    latency = section["meta"]["llm_latency"]
    time_per_token = section["usage"]["time_per_token"]
    assert latency >= 0
    assert time_per_token == latency // section["usage"]["completion_tokens"]
    section["meta"]["llm_latency"] = 1
    section["usage"]["time_per_token"] = 1
    assert entry["ai"] == {name: expected}


def refused(r: httpx.Response, message: str) -> None:
    assert r.status_code == 400, r.text
    assert r.json() == {"error": {"message": message}}


SAFETY = re.compile(".*transformation generation candidate breached Gemini content safety.*")


# -- 39-ai-request-transformer/02-integration_spec.lua ----------------------------------------
def test_request_transforms_properly_from_llm(gateway: Gateway) -> None:
    """39: 388."""
    r = get(gateway, "/req/echo-flat")
    assert r.status_code == 200, r.text
    assert r.json()["post_data"]["params"] == EXPECTED_RESULT_FLAT


def test_request_logs_statistics_openai_format(gateway: Gateway, logs: Path) -> None:
    """39: 404."""
    r = get(gateway, "/req/echo-flat")
    assert r.status_code == 200, r.text
    r.json()
    expected = stats(REQ_PLUGIN_ID, "openai", "gpt-3.5-turbo-0613", (25, 12, 37), 0.00037)
    assert_logged_stats(logs / "req.log", REQ, expected)


def test_request_logs_statistics_non_openai_format(gateway: Gateway, logs: Path) -> None:
    """39: 437."""
    r = get(gateway, "/req/gemini-echo-flat")
    assert r.status_code == 200, r.text
    r.json()
    expected = stats(REQ_GEMINI_PLUGIN_ID, "gemini", "gemini-1.5-flash", (2, 11, 13), 0.00026)
    assert_logged_stats(logs / "req-gemini.log", REQ, expected)


@pytest.mark.parametrize("prefix", ["/req", "/resp"])
def test_bad_request_from_llm(gateway: Gateway, prefix: str) -> None:
    """39: 470; 40: 524."""
    r = get(gateway, f"{prefix}/echo-bad-request")
    refused(r, "failed to introspect request with AI service: status code 400")


@pytest.mark.parametrize("prefix", ["/req", "/resp"])
def test_fails_gemini_content_safety(gateway: Gateway, prefix: str) -> None:
    """39: 486; 40: 540."""
    r = get(gateway, f"{prefix}/echo-fails-safety")
    assert r.status_code == 400, r.text
    assert SAFETY.match(r.json()["error"]["message"]), r.text


@pytest.mark.parametrize("prefix", ["/req", "/resp"])
def test_internal_server_error_from_llm(gateway: Gateway, prefix: str) -> None:
    """39: 502; 40: 556."""
    r = get(gateway, f"{prefix}/echo-internal-server-error")
    refused(r, "failed to introspect request with AI service: status code 500")


# -- 40-ai-response-transformer/02-integration_spec.lua ---------------------------------------
def test_response_with_transformation_instructions(gateway: Gateway) -> None:
    """40: 433."""
    r = get(gateway, "/resp/echo-parse-instructions")
    assert r.status_code == 209, r.text
    assert r.text == XML_BODY
    assert r.headers["content-type"] == "application/xml"


def test_response_without_instructions(gateway: Gateway) -> None:
    """40: 447."""
    r = get(gateway, "/resp/echo-flat")
    assert r.status_code == 200, r.text
    assert r.json() == EXPECTED_RESULT_FLAT


def test_response_logs_statistics(gateway: Gateway, logs: Path) -> None:
    """40: 462."""
    r = get(gateway, "/resp/echo-flat")
    assert r.status_code == 200, r.text
    r.json()
    expected = stats(RESP_PLUGIN_ID, "openai", "gpt-3.5-turbo-0613", (25, 12, 37), 0.00037)
    assert_logged_stats(logs / "resp.log", RESP, expected)


def test_response_fails_when_json_instructions_are_bad(gateway: Gateway) -> None:
    """40: 495."""
    r = get(gateway, "/resp/echo-bad-instructions")
    assert r.status_code == 500, r.text
    assert r.json() == {
        "error": {
            "message": "failed to parse JSON response instructions from AI backend: "
            "Expected value but found invalid token at character 1"
        }
    }


def test_response_extracts_bad_json_instructions(gateway: Gateway) -> None:
    """40: 510."""
    r = get(gateway, "/resp/echo-bad-instructions-parse-out")
    assert r.status_code == 209, r.text
    assert r.text == XML_BODY
    assert r.headers["content-type"] == "application/xml"
