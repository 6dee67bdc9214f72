"""ai-response-transformer through a real gateway, in front of the echo upstream, with a fake LLM
on loopback (Kong's spec/03-plugins/40-ai-response-transformer integration spec, its cases made
to fail when the plugin does not do its part)."""

from __future__ import annotations

import gzip
import hashlib
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import Echo, FixedPeer, Gateway, free_port
from tests.plugins.ai_llm_fakes import INSTRUCTION_HEADERS, FakeLlm, transformer, user_message

pytestmark = pytest.mark.integration

NAME = "ai-response-transformer"
INTROSPECT = "failed to introspect request with AI service: "


@pytest.fixture(scope="module")
def llm() -> Iterator[FakeLlm]:
    server = FakeLlm().start()
    yield server
    server.stop()


ZIPPED = gzip.compress(b'{"msg": "zipped"}')


@pytest.fixture(scope="module")
def gzip_upstream() -> Iterator[FixedPeer]:
    head = (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-encoding: gzip\r\n"
        b"content-length: %d\r\n\r\n" % len(ZIPPED)
    )
    server = FixedPeer(head + ZIPPED).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def log_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ai-log") / "file.log"


def instructed(url: str) -> dict[str, Any]:
    return transformer(NAME, url, parse_llm_response_json_instructions=True)


def routes(llm: FakeLlm, log_path: Path) -> dict[str, list[dict[str, Any]]]:
    def url(case: str) -> str:
        return f"http://127.0.0.1:{llm.port}/llm/{case}"

    return {
        "resp": [
            transformer(
                NAME, url("upper"), llm={"logging": {"log_statistics": True, "log_payloads": True}}
            ),
            {"name": "file-log", "config": {"path": str(log_path)}},
        ],
        "resp-extract": [
            transformer(NAME, url("upper"), transformation_extract_pattern='"path": "[^"]*"')
        ],
        "resp-instructions": [
            instructed(url("instructions")),
            {"name": "response-transformer", "config": {"add": {"headers": ["x-after:1"]}}},
        ],
        "resp-object": [instructed(url("object"))],
        "resp-bare": [instructed(url("bare"))],
        "resp-prose": [instructed(url("prose"))],
        "resp-badstatus": [instructed(url("badstatus"))],
        "resp-500": [transformer(NAME, url("status500"))],
        "resp-down": [transformer(NAME, f"http://127.0.0.1:{free_port()}/v1/chat/completions")],
        "resp-limit": [transformer(NAME, url("upper"), max_request_body_size=10_000)],
        "resp-anthropic": [
            transformer(
                NAME,
                url("anthropic/v1/messages"),
                provider="anthropic",
                llm={"name": "claude-2.1", "options": {"max_tokens": 256}},
            )
        ],
        "both": [
            transformer("ai-request-transformer", url("upper")),
            transformer(NAME, url("upper")),
        ],
    }


@pytest.fixture(scope="module")
def gateway(
    gateway_with: Callable[[str], Gateway],
    echo: Echo,
    llm: FakeLlm,
    log_path: Path,
    gzip_upstream: FixedPeer,
) -> Gateway:
    config = {
        "_format_version": "3.0",
        "services": [
            {
                "name": "echo",
                "url": echo.url,
                "routes": [
                    {"name": name, "paths": [f"/{name}"], "plugins": plugins}
                    for name, plugins in routes(llm, log_path).items()
                ],
            },
            {
                "name": "down",
                "url": f"http://127.0.0.1:{free_port()}",
                "routes": [
                    {
                        "name": "upstream-down",
                        "paths": ["/upstream-down"],
                        "plugins": [transformer(NAME, f"http://127.0.0.1:{llm.port}/llm/upper")],
                    }
                ],
            },
            {
                "name": "gzipped",
                "url": f"http://127.0.0.1:{gzip_upstream.port}",
                "routes": [
                    {
                        "name": "gzipped",
                        "paths": ["/gzipped"],
                        "plugins": [transformer(NAME, f"http://127.0.0.1:{llm.port}/llm/upper")],
                    }
                ],
            },
        ],
    }
    return gateway_with(json.dumps(config))


def get(gateway: Gateway, path: str, body: bytes | None = None) -> httpx.Response:
    if body is None:
        return httpx.get(gateway.url(path), timeout=10)
    return httpx.post(gateway.url(path), content=body, timeout=10)


def upstream_answer(llm: FakeLlm, case: str = "upper") -> str:
    """What the upstream answered, as the LLM received it."""
    return user_message(llm.last(case)["body"])


def test_the_llm_answer_is_the_response(gateway: Gateway, llm: FakeLlm) -> None:
    r = get(gateway, "/resp/some/where?q=1", b"client body")
    assert r.status_code == 200, r.text
    answered = json.loads(upstream_answer(llm))
    # the upstream got the request (path, query, body) as proxied ...
    assert answered["path"] == "/some/where" and answered["query"] == "q=1"
    assert answered["body_md5"] == hashlib.md5(b"client body").hexdigest()
    # ... and the client gets the LLM's rewrite of its answer, with the upstream's headers
    assert r.text == upstream_answer(llm).upper()
    assert r.headers["content-length"] == str(len(r.content))
    assert r.headers["content-type"] == "application/json"
    assert r.headers["x-echo-server"] == "echo-1"
    # Kong's exit: its own Server and latency, not the proxied response's Via
    assert "via" not in r.headers and "x-kong-upstream-latency" not in r.headers
    assert "x-kong-response-latency" in r.headers
    sent = llm.last("upper")["body"]
    assert sent["messages"][0] == {"role": "system", "content": "Rewrite this in capitals."}


def test_the_extract_pattern(gateway: Gateway) -> None:
    r = get(gateway, "/resp-extract/a/b")
    assert r.status_code == 200, r.text
    assert r.text == '"PATH": "/A/B"'  # the first match of a caseless pattern


def test_json_instructions(gateway: Gateway, llm: FakeLlm) -> None:
    r = get(gateway, "/resp-instructions")
    assert r.status_code == 201, r.text
    assert r.text == upstream_answer(llm, "instructions").upper()
    assert r.headers["x-llm-said"] == INSTRUCTION_HEADERS["x-llm-said"]
    assert r.headers["content-type"] == "text/plain"  # over the upstream's
    assert r.headers["x-echo-server"] == "echo-1"  # the upstream's others kept
    assert r.headers["x-after"] == "1"  # the response hooks run on the answer
    r = get(gateway, "/resp-object")
    assert (r.status_code, r.json()) == (202, {"length": len(upstream_answer(llm, "object"))})
    assert r.headers["content-type"] == "application/json"  # the upstream's
    r = get(gateway, "/resp-bare")
    assert (r.status_code, r.json()) == (200, {"length": len(upstream_answer(llm, "bare"))})
    r = get(gateway, "/resp-prose")
    assert r.status_code == 500
    assert r.json() == {
        "error": {
            "message": "failed to parse JSON response instructions from AI backend: "
            "Expected value but found invalid token at character 1"
        }
    }
    # instructions kong.response.exit refuses: the plugin fails, Kong's generic 500
    r = get(gateway, "/resp-badstatus")
    assert r.status_code == 500
    assert r.json() == {
        "message": "An unexpected error occurred",
        "request_id": r.headers["x-kong-request-id"],
    }


def refused(r: httpx.Response, status: int, message: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json; charset=utf-8"
    assert r.json() == {"error": {"message": message}}
    assert "x-echo-server" not in r.headers


def test_llm_failures_are_kongs_400(gateway: Gateway) -> None:
    refused(get(gateway, "/resp-500"), 400, INTROSPECT + "status code 500")
    refused(
        get(gateway, "/resp-down"),
        400,
        INTROSPECT + "request to ai service failed: request failed: connection refused",
    )


def test_the_request_body_limit(gateway: Gateway, llm: FakeLlm) -> None:
    asked = len(llm.requests)
    refused(
        get(gateway, "/resp-limit", b"x" * 10_001), 413, "request body is larger than 10000 bytes"
    )
    assert len(llm.requests) == asked
    r = get(gateway, "/resp-limit", b"x" * 10_000)
    assert r.status_code == 200
    assert json.loads(upstream_answer(llm))["body_length"] == 10_000


def test_an_unreachable_upstream_is_the_proxys_502(gateway: Gateway) -> None:
    r = get(gateway, "/upstream-down")
    assert r.status_code == 502


def test_a_gzipped_answer_is_inflated_for_the_llm(gateway: Gateway, llm: FakeLlm) -> None:
    r = httpx.get(gateway.url("/gzipped"), headers={"accept-encoding": "identity"}, timeout=10)
    assert r.status_code == 200, r.text
    assert upstream_answer(llm) == '{"msg": "zipped"}'
    assert r.content == b'{"MSG": "ZIPPED"}'
    assert "content-encoding" not in r.headers


def test_an_anthropic_llm(gateway: Gateway, llm: FakeLlm) -> None:
    r = get(gateway, "/resp-anthropic")
    assert r.status_code == 200, r.text
    sent = llm.last("anthropic")
    assert r.text == user_message(sent["body"]).upper()
    assert sent["body"]["system"] == "Rewrite this in capitals."


def test_both_transformers(gateway: Gateway, llm: FakeLlm) -> None:
    r = get(gateway, "/both", b"lower case")
    assert r.status_code == 200, r.text
    answered = json.loads(upstream_answer(llm))
    assert answered["body_md5"] == hashlib.md5(b"LOWER CASE").hexdigest()
    assert r.text == upstream_answer(llm).upper()


def logged(path: Path, request_body: str) -> dict[str, Any]:
    """The log entry of the request whose logged body is ``request_body``."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if path.exists():
            for line in path.read_text().splitlines():
                entry: dict[str, Any] = json.loads(line)
                if entry["ai"][NAME]["payload"]["request"] == request_body:
                    return entry
        time.sleep(0.05)
    raise AssertionError(f"no log entry for {request_body!r}")


def test_statistics_and_payloads_are_logged(gateway: Gateway, log_path: Path) -> None:
    r = get(gateway, "/resp", b"the request")
    assert r.status_code == 200
    entry = logged(log_path, "the request")
    section = entry["ai"][NAME]
    assert section["meta"]["provider_name"] == "openai"
    assert section["usage"]["total_tokens"] == 37
    answer = json.loads(section["payload"]["response"])
    assert answer["choices"][0]["message"]["content"] == r.text
    assert entry["response"]["status"] == 200
