"""The AI transformers' own LLM call with the providers whose requests a driver proves itself
or sends to its own URL: Gemini (an API key, or a service account's token), Cohere, Hugging
Face, and Bedrock (SigV4). A gateway in this process, the echo upstream and the fake
providers on loopback; the fake checks each provider's auth as the provider does, so a call
without the right key, token or signature is refused and the test sees Kong's 400."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from fastkong.config import load_config
from fastkong.plugins.bundled import _aws_http
from fastkong.proxy.app import Gateway
from fastkong.runtime import compile_runtime
from tests.helpers import Echo
from tests.plugins.ai_provider_fakes import AWS_REGION, COHERE_KEY, GEMINI_KEY, HF_KEY, FakeAi
from tests.plugins.test_ai_proxy_providers import CLAUDE, _account

ANSWER = "The sum of 1 + 1 is 2."


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeAi]:
    server = FakeAi().start()
    yield server
    server.stop()


def transformer(provider: str, name: str, auth: dict[str, Any], **options: Any) -> dict[str, Any]:
    llm = {
        "route_type": "llm/v1/chat",
        "auth": auth,
        "model": {"provider": provider, "name": name, "options": options},
    }
    return {"name": "ai-request-transformer", "config": {"prompt": "Add up.", "llm": llm}}


def cases(fake: FakeAi) -> dict[str, dict[str, Any]]:
    base = fake.url
    bearer = "Bearer "
    return {
        "gemini-key": transformer(
            "gemini",
            "gemini-1.5-pro",
            {"param_name": "key", "param_value": GEMINI_KEY, "param_location": "query"},
            upstream_url=f"{base}/v1beta/models/gemini-1.5-pro:generateContent",
        ),
        "gemini-account": transformer(
            "gemini",
            "gemini-1.5-pro",
            {
                "gcp_use_service_account": True,
                "gcp_service_account_json": _account(fake, f"{base}/token"),
            },
            upstream_url=f"{base}/v1beta/models/gemini-1.5-pro:generateContent",
        ),
        "cohere": transformer(
            "cohere",
            "command",
            {"header_name": "Authorization", "header_value": bearer + COHERE_KEY},
            upstream_url=f"{base}/v1/chat",
        ),
        "huggingface": transformer(
            "huggingface",
            "mistral",
            {"header_name": "Authorization", "header_value": bearer + HF_KEY},
            upstream_url=f"{base}/models/mistral/v1/chat/completions",
        ),
        "bedrock": transformer(
            "bedrock",
            CLAUDE,
            {"aws_access_key_id": "AKIDFAKE", "aws_secret_access_key": "fake/secret"},
            upstream_url=f"{base}/model/{CLAUDE}/converse",
            bedrock={"aws_region": AWS_REGION},
        ),
        "bedrock-wrong-secret": transformer(
            "bedrock",
            CLAUDE,
            {"aws_access_key_id": "AKIDFAKE", "aws_secret_access_key": "not/the/secret"},
            upstream_url=f"{base}/model/{CLAUDE}/converse",
            bedrock={"aws_region": AWS_REGION},
        ),
    }


def send(echo: Echo, fake: FakeAi, case: str) -> httpx.Response:
    config = {
        "_format_version": "3.0",
        "services": [
            {
                "name": "svc",
                "url": f"http://127.0.0.1:{echo.port}",
                "routes": [{"name": case, "paths": ["/"]}],
                "plugins": [cases(fake)[case]],
            }
        ],
    }
    runtime = compile_runtime(load_config(json.dumps(config)).config, "1")

    async def main() -> httpx.Response:
        gw = Gateway(runtime)
        await gw.startup()
        try:
            transport = httpx.ASGITransport(app=gw)
            async with httpx.AsyncClient(transport=transport, timeout=10) as client:
                return await client.post("http://gw.test/sum", json={"a": 1, "b": 1})
        finally:
            await gw.shutdown()
            # the LLM calls' kept-alive connections belong to this test's event loop
            for pool in _aws_http._POOLS.pools.values():
                pool.close()

    return asyncio.run(main())


@pytest.mark.parametrize(
    "case", ["gemini-key", "gemini-account", "cohere", "huggingface", "bedrock"]
)
def test_the_llms_answer_goes_upstream(echo: Echo, fake: FakeAi, case: str) -> None:
    before = len(fake.requests)
    reply = send(echo, fake, case)
    assert reply.status_code == 200, reply.text
    seen = reply.json()
    expected = ANSWER.encode() if case != "huggingface" else b" " + ANSWER.encode()
    assert seen["body_md5"] == hashlib.md5(expected).hexdigest()
    calls = [r for r in fake.requests[before:] if r.path != "/token"]
    assert len(calls) == 1
    sent = calls[0].json()
    # Kong's layout, in the provider's own format: the prompt and the client's body
    assert "Add up." in json.dumps(sent) and '{\\"a\\":1' in json.dumps(sent)


def test_a_wrong_signature_is_refused_by_the_provider(echo: Echo, fake: FakeAi) -> None:
    before = len(fake.signature_errors)
    reply = send(echo, fake, "bedrock-wrong-secret")
    assert reply.status_code == 400
    assert reply.json()["error"]["message"] == (
        "failed to introspect request with AI service: status code 403"
    )
    assert fake.signature_errors[before:] != [None]
