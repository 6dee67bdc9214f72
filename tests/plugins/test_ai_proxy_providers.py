"""ai-proxy's Gemini, Cohere, Hugging Face and Bedrock drivers through a real gateway, against
a fake provider on loopback (:mod:`tests.plugins.ai_provider_fakes`): the exact request the
provider gets (path, query, auth, body; Bedrock's SigV4 signature verified by the tests' own
signer; Gemini's service account token obtained from a loopback token endpoint) and the exact
llm/v1 answer the client gets, whole and streamed, with the logged statistics."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import Gateway, free_port
from tests.plugins.ai_provider_fakes import (
    AWS_REGION,
    COHERE_KEY,
    GEMINI_BAD_KEY,
    GEMINI_KEY,
    HF_KEY,
    HF_LOADING,
    FakeAi,
)
from tests.plugins.ai_proxy_fakes import CHAT_REQUEST
from tests.plugins.test_ai_proxy import log_entries, next_log

pytestmark = pytest.mark.integration

CLAUDE = "anthropic.claude-3-sonnet-20240229-v1:0"
SYSTEM_AND_USER = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is 1 + 1?"},
]


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeAi]:
    server = FakeAi().start()
    yield server
    server.stop()


def ai(route_type: str, provider: str, name: str | None, **extra: Any) -> dict[str, Any]:
    model: dict[str, Any] = {"provider": provider, "options": extra.pop("options", {})}
    if name is not None:
        model["name"] = name
    return {"name": "ai-proxy", "config": {"route_type": route_type, "model": model, **extra}}


def _account(fake: FakeAi, token_uri: str) -> str:
    from cryptography.hazmat.primitives import serialization

    pem = fake.account_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return json.dumps(
        {
            "type": "service_account",
            "project_id": "p",
            "private_key_id": "key-1",
            "private_key": pem,
            "client_email": "proxy@p.iam.gserviceaccount.com",
            "token_uri": token_uri,
        }
    )


def _routes(fake: FakeAi, log_path: Path) -> dict[str, list[dict[str, Any]]]:
    base = fake.url
    gemini = f"{base}/v1beta/models/gemini-1.5-pro:generateContent"
    key_query = {"param_name": "key", "param_value": GEMINI_KEY, "param_location": "query"}
    file_log = {"name": "file-log", "config": {"path": str(log_path)}}
    stats = {"log_statistics": True, "log_payloads": False}
    aws_keys = {"aws_access_key_id": "AKIDFAKE", "aws_secret_access_key": "fake/secret"}
    bedrock_options = {"bedrock": {"aws_region": AWS_REGION}, "max_tokens": 100}
    return {
        "gemini-chat": [
            ai(
                "llm/v1/chat",
                "gemini",
                "gemini-1.5-pro",
                auth=key_query,
                logging=stats,
                options={
                    "upstream_url": gemini,
                    "max_tokens": 256,
                    "temperature": 0.5,
                    "input_cost": 1.0,
                    "output_cost": 2.0,
                },
            ),
            file_log,
        ],
        "gemini-stream": [
            ai(
                "llm/v1/chat",
                "gemini",
                "gemini-1.5-pro",
                auth={"header_name": "x-goog-api-key", "header_value": GEMINI_KEY},
                logging=stats,
                options={
                    "upstream_url": f"{base}/v1beta/models/gemini-1.5-pro:streamGenerateContent"
                },
            ),
            file_log,
        ],
        "gemini-account": [
            ai(
                "llm/v1/chat",
                "gemini",
                "gemini-1.5-pro",
                auth={
                    "gcp_use_service_account": True,
                    "gcp_service_account_json": _account(fake, f"{base}/token"),
                },
                options={"upstream_url": gemini},
            )
        ],
        "gemini-account-down": [
            ai(
                "llm/v1/chat",
                "gemini",
                "gemini-1.5-pro",
                auth={
                    "gcp_use_service_account": True,
                    "gcp_service_account_json": _account(
                        fake, f"http://127.0.0.1:{free_port()}/token"
                    ),
                },
                options={"upstream_url": gemini},
            )
        ],
        "gemini-bad-key": [
            ai(
                "llm/v1/chat",
                "gemini",
                "gemini-1.5-pro",
                auth={**key_query, "param_value": "wrong"},
                options={"upstream_url": gemini},
            )
        ],
        "gemini-old": [
            ai(
                "llm/v1/chat",
                "gemini",
                "gemini-1.0-pro",
                auth=key_query,
                options={"upstream_url": gemini},
            )
        ],
        "cohere-chat": [
            ai(
                "llm/v1/chat",
                "cohere",
                "command",
                auth={"header_name": "Authorization", "header_value": f"Bearer {COHERE_KEY}"},
                logging=stats,
                options={"upstream_url": f"{base}/v1/chat", "top_p": 0.75, "max_tokens": 100},
            ),
            file_log,
        ],
        "cohere-completions": [
            ai(
                "llm/v1/completions",
                "cohere",
                "command",
                auth={"header_name": "Authorization", "header_value": f"Bearer {COHERE_KEY}"},
                options={"upstream_url": f"{base}/v1/generate", "top_k": 5},
            )
        ],
        "cohere-bad-key": [
            ai(
                "llm/v1/chat",
                "cohere",
                "command",
                auth={"header_name": "Authorization", "header_value": "Bearer wrong"},
                options={"upstream_url": f"{base}/v1/chat"},
            )
        ],
        "hf-chat": [
            ai(
                "llm/v1/chat",
                "huggingface",
                "mistralai/Mistral-7B-Instruct-v0.2",
                auth={"header_name": "Authorization", "header_value": f"Bearer {HF_KEY}"},
                logging=stats,
                options={
                    "upstream_url": f"{base}/models/mistral",
                    "max_tokens": 64,
                    "huggingface": {"wait_for_model": True},
                },
            ),
            file_log,
        ],
        "hf-completions": [
            ai(
                "llm/v1/completions",
                "huggingface",
                "mistral",
                auth={"header_name": "Authorization", "header_value": f"Bearer {HF_KEY}"},
                options={"upstream_url": f"{base}/models/mistral", "max_tokens": 64},
            )
        ],
        "hf-loading": [
            ai(
                "llm/v1/completions",
                "huggingface",
                "loading",
                auth={"header_name": "Authorization", "header_value": f"Bearer {HF_KEY}"},
                options={"upstream_url": f"{base}/models/loading"},
            )
        ],
        "hf-preserve": [ai("preserve", "huggingface", None)],
        "bedrock-chat": [
            ai(
                "llm/v1/chat",
                "bedrock",
                CLAUDE,
                auth=aws_keys,
                logging=stats,
                options={**bedrock_options, "upstream_url": f"{base}/model/{CLAUDE}/converse"},
            ),
            file_log,
        ],
        "bedrock-stream": [
            ai(
                "llm/v1/chat",
                "bedrock",
                CLAUDE,
                auth=aws_keys,
                logging=stats,
                options={
                    **bedrock_options,
                    "upstream_url": f"{base}/model/{CLAUDE}/converse-stream",
                },
            ),
            file_log,
        ],
        "bedrock-env": [
            ai(
                "llm/v1/chat",
                "bedrock",
                CLAUDE,
                options={**bedrock_options, "upstream_url": f"{base}/model/{CLAUDE}/converse"},
            )
        ],
        "bedrock-wrong-secret": [
            ai(
                "llm/v1/chat",
                "bedrock",
                CLAUDE,
                auth={**aws_keys, "aws_secret_access_key": "not/it"},
                options={**bedrock_options, "upstream_url": f"{base}/model/{CLAUDE}/converse"},
            )
        ],
        "bedrock-no-region": [
            ai(
                "llm/v1/chat",
                "bedrock",
                CLAUDE,
                auth=aws_keys,
                options={"upstream_url": f"{base}/model/{CLAUDE}/converse"},
            )
        ],
        "gemini-completions": [
            ai("llm/v1/completions", "gemini", "gemini-1.5-pro", options={"upstream_url": gemini})
        ],
    }


@pytest.fixture(scope="module")
def log_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ai-providers-log") / "file.log"


@pytest.fixture(scope="module")
def gateway(
    gateway_with: Callable[[str], Gateway], fake: FakeAi, log_path: Path
) -> Iterator[Gateway]:
    routes = _routes(fake, log_path)
    config = {
        "_format_version": "3.0",
        "services": [
            {
                "name": "unused",
                "url": f"http://127.0.0.1:{free_port()}/elsewhere",
                "routes": [
                    {"name": name, "paths": [f"/{name}"], "plugins": plugins}
                    for name, plugins in routes.items()
                ],
            }
        ],
    }
    with pytest.MonkeyPatch.context() as patch:
        for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "GCP_SERVICE_ACCOUNT"):
            patch.delenv(name, raising=False)
        patch.setenv("AWS_ACCESS_KEY_ID", "ASIATEMP")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "temp/secret")
        patch.setenv("AWS_SESSION_TOKEN", "session-token")
        patch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        yield gateway_with(json.dumps(config))


def post(gateway: Gateway, path: str, body: Any, **kw: Any) -> httpx.Response:
    return httpx.post(gateway.url(path), json=body, timeout=10, **kw)


def stream(gateway: Gateway, path: str, body: Any) -> list[Any]:
    """The SSE events the client gets (JSON decoded, ``[DONE]`` as is)."""
    with httpx.stream("POST", gateway.url(path), json=body, timeout=10) as r:
        assert r.status_code == 200
        assert r.headers["content-type"] == "text/event-stream"
        raw = b"".join(r.iter_raw()).decode()
    events = [e.removeprefix("data: ") for e in raw.split("\n\n") if e]
    return [e if e == "[DONE]" else json.loads(e) for e in events]


# -- Gemini ------------------------------------------------------------------------------------


def test_gemini_chat(gateway: Gateway, fake: FakeAi, log_path: Path) -> None:
    before = len(log_entries(log_path, "gemini-chat"))
    r = post(gateway, "/gemini-chat?x=1", {"messages": SYSTEM_AND_USER, "temperature": 2})
    assert r.status_code == 200, r.text
    assert r.json() == {
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "The sum of 1 + 1 is 2."},
                "finish_reason": "stop",
            }
        ],
        "object": "chat.completion",
        "model": "gemini-1.5-pro",
        "usage": {"prompt_tokens": 14, "completion_tokens": 9, "total_tokens": 23},
    }
    assert r.headers["x-kong-llm-model"] == "gemini/gemini-1.5-pro"
    assert "set-cookie" not in r.headers
    sent = fake.requests[-1]
    assert sent.target == "/v1beta/models/gemini-1.5-pro:generateContent?key=gemini-key&x=1"
    assert sent.header("accept-encoding") == "identity"
    assert sent.header("content-type") == "application/json"
    assert sent.json() == {
        "contents": [{"role": "user", "parts": [{"text": "What is 1 + 1?"}]}],
        "systemInstruction": {"parts": [{"text": "You are a helpful assistant."}]},
        "generationConfig": {"maxOutputTokens": 256, "temperature": 0.5},
    }
    stats = next_log(log_path, "gemini-chat", before)["ai"]["proxy"]
    assert stats["meta"]["provider_name"] == "gemini"
    assert stats["meta"]["response_model"] == "gemini-1.5-pro"
    assert stats["usage"]["prompt_tokens"] == 14
    assert stats["usage"]["completion_tokens"] == 9
    assert stats["usage"]["cost"] == pytest.approx((14 * 1.0 + 9 * 2.0) / 1e6)


def test_gemini_tool_call_answer(gateway: Gateway, fake: FakeAi) -> None:
    tools = [{"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}]
    r = post(gateway, "/gemini-chat", {"messages": SYSTEM_AND_USER, "tools": tools})
    assert r.status_code == 200, r.text
    assert r.json()["choices"] == [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "tool_calls": [{"function": {"name": "add", "arguments": '{"a":1,"b":1}'}}],
            },
        }
    ]
    assert fake.requests[-1].json()["tools"] == [
        {"function_declarations": [{"name": "add", "parameters": {"type": "object"}}]}
    ]


def test_gemini_stream(gateway: Gateway, fake: FakeAi, log_path: Path) -> None:
    before = len(log_entries(log_path, "gemini-stream"))
    events = stream(gateway, "/gemini-stream", {"messages": SYSTEM_AND_USER, "stream": True})
    delta = {"role": "assistant"}
    assert events == [
        {"choices": [{"delta": {**delta, "content": "The sum [of]"}, "index": 0}]},
        {"choices": [{"delta": {**delta, "content": ' 1 + 1 is "2".'}, "index": 0}]},
        {"choices": [{"delta": {**delta, "content": ""}, "index": 0, "finish_reason": "STOP"}]},
        "[DONE]",
    ]
    sent = fake.requests[-1]
    assert sent.path == "/v1beta/models/gemini-1.5-pro:streamGenerateContent"
    assert sent.header("x-goog-api-key") == GEMINI_KEY
    assert sent.header("accept-encoding") == "identity"
    usage = next_log(log_path, "gemini-stream", before)["ai"]["proxy"]["usage"]
    # Gemini's counts are totals so far: the last ones, not their sum.
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (14, 9)


def test_gemini_service_account(gateway: Gateway, fake: FakeAi) -> None:
    issued = len(fake.tokens_issued)
    for _ in range(2):
        r = post(gateway, "/gemini-account", {"messages": SYSTEM_AND_USER})
        assert r.status_code == 200, r.text
        sent = fake.requests[-1]
        assert sent.header("authorization") == f"Bearer {fake.tokens_issued[-1]}"
        assert "key=" not in sent.target
    assert len(fake.tokens_issued) == issued + 1  # kept for the second request
    claims = fake.assertions[-1]["claims"]
    assert claims["iss"] == "proxy@p.iam.gserviceaccount.com"
    assert claims["scope"] == "https://www.googleapis.com/auth/cloud-platform"
    assert claims["exp"] - claims["iat"] == 3600
    assert fake.assertions[-1]["header"] == {"alg": "RS256", "typ": "JWT", "kid": "key-1"}


def test_gemini_errors(gateway: Gateway, fake: FakeAi) -> None:
    asked = len(fake.requests)
    r = post(gateway, "/gemini-account-down", {"messages": SYSTEM_AND_USER})
    assert (r.status_code, r.json()) == (
        500,
        {"error": {"message": "LLM request failed before proxying"}},
    )
    r = post(gateway, "/gemini-old", {"messages": SYSTEM_AND_USER})
    assert (r.status_code, r.json()) == (
        400,
        {
            "error": {
                "message": "error transforming to gemini://llm/v1/chat: "
                "system prompts aren't supported on gemini-1.0 models"
            }
        },
    )
    r = post(gateway, "/gemini-completions", {"prompt": "hi"})
    assert (r.status_code, r.json()) == (
        400,
        {"error": {"message": "no transformer for gemini://llm/v1/completions"}},
    )
    assert len(fake.requests) == asked
    # The provider's own errors pass as they came.
    r = post(gateway, "/gemini-chat", {"messages": SYSTEM_AND_USER}, params={"key": "wrong"})
    assert r.status_code == 200  # the configured key replaced the client's
    r = post(gateway, "/gemini-bad-key", {"messages": CHAT_REQUEST["messages"]})
    assert (r.status_code, r.json()) == (400, GEMINI_BAD_KEY)
    assert "x-kong-llm-model" not in r.headers
    # An answer that is not Gemini's is Kong's 500.
    r = post(gateway, "/gemini-stream", {"messages": CHAT_REQUEST["messages"]})
    assert (r.status_code, r.json()) == (
        500,
        {
            "error": {
                "message": "transformation failed from type gemini://llm/v1/chat: "
                "failed to decode response from Gemini"
            }
        },
    )


# -- Cohere ------------------------------------------------------------------------------------


def test_cohere_chat(gateway: Gateway, fake: FakeAi, log_path: Path) -> None:
    before = len(log_entries(log_path, "cohere-chat"))
    messages = [
        *SYSTEM_AND_USER,
        {"role": "assistant", "content": "2."},
        {"role": "user", "content": "Sure?"},
    ]
    r = post(gateway, "/cohere-chat", {"messages": messages, "top_k": 3})
    assert r.status_code == 200, r.text
    assert r.json() == {
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "The sum of 1 + 1 is 2."},
                "finish_reason": "stop",
            }
        ],
        "object": "chat.completion",
        "model": "command",
        "id": "f8aabbeb-f745",
        "usage": {"completion_tokens": 9, "prompt_tokens": 81, "total_tokens": 90},
    }
    assert r.headers["x-kong-llm-model"] == "cohere/command"
    assert r.headers["set-cookie"] == "c=1"  # Kong clears no Cohere headers
    sent = fake.requests[-1]
    assert sent.target == "/v1/chat"
    assert sent.json() == {
        "chat_history": [
            {"role": "USER", "message": "You are a helpful assistant."},
            {"role": "USER", "message": "What is 1 + 1?"},
            {"role": "CHATBOT", "message": "2."},
        ],
        "message": "Sure?",
        "model": "command",
        "max_tokens": 100,
        "p": 0.75,
        "k": 3,
        "stream": False,
    }
    usage = next_log(log_path, "cohere-chat", before)["ai"]["proxy"]["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (81, 9)


def test_cohere_completions_and_errors(gateway: Gateway, fake: FakeAi) -> None:
    r = post(gateway, "/cohere-completions", {"prompt": "Why can't you divide by zero?"})
    assert r.status_code == 200, r.text
    assert r.json() == {
        "choices": [{"index": 0, "text": " Because it is undefined.", "finish_reason": "stop"}],
        "object": "text_completion",
        "model": "command",
        "id": "c14c80c3",
        "usage": {"completion_tokens": 5, "prompt_tokens": 7, "total_tokens": 12},
    }
    assert fake.requests[-1].target == "/v1/generate"
    assert fake.requests[-1].json() == {
        "prompt": "Why can't you divide by zero?",
        "model": "command",
        "k": 5,
        "stream": False,
    }
    r = post(gateway, "/cohere-bad-key", {"messages": SYSTEM_AND_USER})
    assert (r.status_code, r.json()) == (401, {"message": "invalid api token"})


def test_cohere_stream(gateway: Gateway, fake: FakeAi, log_path: Path) -> None:
    before = len(log_entries(log_path, "cohere-chat"))
    events = stream(gateway, "/cohere-chat", {"messages": SYSTEM_AND_USER, "stream": True})
    chunk = {"id": "gen-1", "model": "command", "object": "chat.completion.chunk"}
    text = {"index": 0, "finish_reason": None, "logprobs": None}
    assert events == [
        {"choices": [{"delta": {"content": "", "role": "assistant"}, "index": 0}], **chunk},
        {"choices": [{"delta": {"content": "The sum"}, **text}], **chunk},
        {"choices": [{"delta": {"content": " is 2."}, **text}], **chunk},
        "[DONE]",
    ]
    assert fake.requests[-1].json()["stream"] is True
    usage = next_log(log_path, "cohere-chat", before)["ai"]["proxy"]["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (12, 4)


# -- Hugging Face ------------------------------------------------------------------------------


def test_huggingface_chat(gateway: Gateway, fake: FakeAi) -> None:
    r = post(gateway, "/hf-chat", {"messages": SYSTEM_AND_USER, "top_p": 0.9})
    assert r.status_code == 200, r.text
    assert r.json() == {
        "model": "mistralai/Mistral-7B-Instruct-v0.2",
        "object": "chat.completion",
        "choices": [
            {
                "message": {"content": " The sum of 1 + 1 is 2."},
                "index": 0,
                "finish_reason": "complete",
            }
        ],
        "usage": {"prompt_tokens": 26, "completion_tokens": 40, "total_tokens": 66},
    }
    sent = fake.requests[-1]
    assert sent.target == "/models/mistral/v1/chat/completions"
    assert sent.header("authorization") == f"Bearer {HF_KEY}"
    assert sent.json() == {
        "messages": SYSTEM_AND_USER,
        "options": {"use_cache": False, "wait_for_model": True},
        "parameters": {"top_p": 0.9, "max_length": 64},
        "model": "mistralai/Mistral-7B-Instruct-v0.2",
    }


def test_huggingface_completions_and_errors(gateway: Gateway, fake: FakeAi) -> None:
    r = post(gateway, "/hf-completions", {"prompt": "Who are you?", "temperature": 0.1})
    assert r.status_code == 200, r.text
    assert r.json() == {
        "model": "mistral",
        "object": "llm/v1/completions",
        "choices": [
            {
                "message": {"content": "I am a language model AI created by Mistral AI"},
                "index": 0,
                "finish_reason": "complete",
            }
        ],
        "usage": {},
    }
    sent = fake.requests[-1]
    assert sent.target == "/models/mistral"
    assert sent.json() == {
        "inputs": "Who are you?",
        "options": {"use_cache": False, "wait_for_model": False},
        "parameters": {"temperature": 0.1, "max_new_tokens": 64},
        "model": "mistral",
    }
    r = post(gateway, "/hf-loading", {"prompt": "Who are you?"})
    assert (r.status_code, r.json()) == (503, HF_LOADING)
    # No model and no upstream_url: no URL to send to (Kong's exit with a bare message).
    asked = len(fake.requests)
    r = post(gateway, "/hf-preserve", {"anything": 1})
    assert (r.status_code, r.json()) == (
        400,
        {"message": "Could not parse the Hugging Face model endponit"},
    )
    assert len(fake.requests) == asked


def test_huggingface_stream(gateway: Gateway, fake: FakeAi, log_path: Path) -> None:
    before = len(log_entries(log_path, "hf-chat"))
    events = stream(gateway, "/hf-chat", {"messages": SYSTEM_AND_USER, "stream": True})
    chunk = {"model": "tgi", "object": "chat.completion.chunk"}
    assert events == [
        {"choices": [{"delta": {"content": "The sum", "role": "assistant"}, "index": 0}], **chunk},
        {"choices": [{"delta": {"content": " is 2.", "role": "assistant"}, "index": 0}], **chunk},
        "[DONE]",
    ]
    assert fake.requests[-1].json()["stream"] is True
    usage = next_log(log_path, "hf-chat", before)["ai"]["proxy"]["usage"]
    # Hugging Face counts nothing in streams: Kong's estimates (words x 1.8, text / 4).
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (18, 4)


# -- Bedrock -----------------------------------------------------------------------------------


def test_bedrock_chat(gateway: Gateway, fake: FakeAi, log_path: Path) -> None:
    before = len(log_entries(log_path, "bedrock-chat"))
    r = post(gateway, "/bedrock-chat?trace=1", {"messages": SYSTEM_AND_USER, "stop": ["Human:"]})
    assert r.status_code == 200, r.text
    assert fake.signature_errors[-1] is None
    assert fake.requests[-1].signed_by == "AKIDFAKE"
    assert r.json() == {
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "The sum of 1 + 1 is 2."},
                "finish_reason": "stop",
            }
        ],
        "object": "chat.completion",
        "model": CLAUDE,
        "usage": {"prompt_tokens": 19, "completion_tokens": 11, "total_tokens": 30},
    }
    assert "set-cookie" not in r.headers
    sent = fake.requests[-1]
    assert sent.target == f"/model/{CLAUDE}/converse?trace=1"
    assert sent.header("x-amz-security-token") is None
    assert sent.json() == {
        "anthropic_version": "bedrock-2023-05-31",
        "system": [{"text": "You are a helpful assistant."}],
        "messages": [{"role": "user", "content": [{"text": "What is 1 + 1?"}]}],
        "inferenceConfig": {"maxTokens": 100, "stopSequences": ["Human:"]},
    }
    stats = next_log(log_path, "bedrock-chat", before)["ai"]["proxy"]
    assert stats["meta"]["response_model"] == CLAUDE
    assert (stats["usage"]["prompt_tokens"], stats["usage"]["completion_tokens"]) == (19, 11)


def test_bedrock_stream(gateway: Gateway, fake: FakeAi, log_path: Path) -> None:
    before = len(log_entries(log_path, "bedrock-stream"))
    events = stream(gateway, "/bedrock-stream", {"messages": SYSTEM_AND_USER, "stream": True})
    assert fake.signature_errors[-1] is None
    frame = {"model": CLAUDE, "object": "chat.completion.chunk", "system_fingerprint": None}
    choice = {"index": 0, "logprobs": None}
    assert events == [
        {"choices": [{"delta": {"content": "", "role": "assistant"}, **choice}], **frame},
        {"choices": [{"delta": {"content": "The sum"}, **choice}], **frame},
        {"choices": [{"delta": {"content": " is 2."}, **choice}], **frame},
        {
            "choices": [{"delta": {}, "finish_reason": "length", **choice}],
            "model": CLAUDE,
            "object": "chat.completion.chunk",
        },
        "[DONE]",
    ]
    assert fake.requests[-1].path == f"/model/{CLAUDE}/converse-stream"
    usage = next_log(log_path, "bedrock-stream", before)["ai"]["proxy"]["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (15, 6)
    # A stream the provider sends with a length: the translation goes out without it.
    body = {"messages": SYSTEM_AND_USER, "stream": True}
    assert stream(gateway, "/bedrock-stream?whole=1", body) == events
    assert fake.signature_errors[-1] is None


def test_bedrock_credentials_and_errors(gateway: Gateway, fake: FakeAi) -> None:
    # No keys in the config: the node's chain (here its environment's temporary credentials).
    r = post(gateway, "/bedrock-env", {"messages": SYSTEM_AND_USER})
    assert r.status_code == 200, r.text
    assert fake.requests[-1].signed_by == "ASIATEMP"
    assert fake.requests[-1].header("x-amz-security-token") == "session-token"
    # The signature covers the method and query as they go (the client's).
    r = httpx.put(
        gateway.url("/bedrock-chat?a=b%20c&z="), json={"messages": SYSTEM_AND_USER}, timeout=10
    )
    assert r.status_code == 200, r.text
    assert (fake.requests[-1].method, fake.signature_errors[-1]) == ("PUT", None)
    r = post(gateway, "/bedrock-wrong-secret", {"messages": SYSTEM_AND_USER})
    assert r.status_code == 403
    assert fake.signature_errors[-1] == "signature mismatch"
    asked = len(fake.requests)
    r = post(gateway, "/bedrock-no-region", {"messages": SYSTEM_AND_USER})
    assert (r.status_code, r.json()) == (
        500,
        {"error": {"message": "LLM request failed before proxying"}},
    )
    r = post(gateway, "/bedrock-chat", {"messages": [{"role": "tool", "content": "{"}]})
    assert (r.status_code, r.json()) == (
        400,
        {
            "error": {
                "message": "error transforming to bedrock://llm/v1/chat: "
                "failed to decode function response arguments, not JSON format"
            }
        },
    )
    assert len(fake.requests) == asked
