"""ai-proxy through a real gateway, against a fake provider on loopback (Kong's
spec/03-plugins/38-ai-proxy/02-openai, 03-anthropic, 05-azure and 09-streaming integration
specs, their fixtures' shapes)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import Gateway, free_port
from tests.plugins.ai_proxy_fakes import CHAT_REQUEST, FakeProvider

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def provider() -> Iterator[FakeProvider]:
    server = FakeProvider().start()
    yield server
    server.release.set()
    server.stop()


def plugin(route_type: str, provider: str, url: str, **extra: Any) -> dict[str, Any]:
    options = {"upstream_url": url, **extra.pop("options", {})}
    config = {
        "route_type": route_type,
        "model": {"provider": provider, "options": options, **extra.pop("model", {})},
        **extra,
    }
    return {"name": "ai-proxy", "config": config}


OPENAI_AUTH = {"header_name": "Authorization", "header_value": "Bearer openai-key"}
ANTHROPIC_AUTH = {"header_name": "x-api-key", "header_value": "anthropic-key"}


@pytest.fixture(scope="module")
def log_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ai-log") / "file.log"


@pytest.fixture(scope="module")
def gateway(
    gateway_with: Callable[[str], Gateway], provider: FakeProvider, log_path: Path
) -> Gateway:
    base = f"http://127.0.0.1:{provider.port}"
    chat = f"{base}/v1/chat/completions"
    cost = {"input_cost": 10.0, "output_cost": 10.0}
    routes: dict[str, list[dict[str, Any]]] = {
        "openai-chat": [
            plugin(
                "llm/v1/chat",
                "openai",
                chat,
                model={"name": "gpt-3.5-turbo"},
                auth=OPENAI_AUTH,
                options=cost,
                logging={"log_statistics": True, "log_payloads": True},
            ),
            {"name": "file-log", "config": {"path": str(log_path)}},
        ],
        "openai-any-model": [plugin("llm/v1/chat", "openai", chat, auth=OPENAI_AUTH)],
        "openai-completions": [
            plugin(
                "llm/v1/completions",
                "openai",
                f"{base}/v1/completions",
                model={"name": "gpt-3.5-turbo-instruct"},
                auth={
                    "param_name": "apikey",
                    "param_value": "openai-key",
                    "param_location": "query",
                },
            )
        ],
        "openai-body-auth": [
            plugin(
                "llm/v1/completions",
                "openai",
                f"{base}/v1/completions",
                model={"name": "gpt-3.5-turbo-instruct"},
                auth={
                    "param_name": "apikey",
                    "param_value": "openai-key",
                    "param_location": "body",
                },
            )
        ],
        "openai-override": [
            plugin(
                "llm/v1/chat",
                "openai",
                chat,
                model={"name": "gpt-3.5-turbo"},
                auth={**OPENAI_AUTH, "allow_override": True},
            )
        ],
        "openai-bad": [
            plugin("llm/v1/chat", "openai", f"{base}/v1/bad", model={"name": "m"}, auth=OPENAI_AUTH)
        ],
        "openai-nostream": [
            plugin(
                "llm/v1/chat",
                "openai",
                chat,
                model={"name": "m"},
                auth=OPENAI_AUTH,
                response_streaming="deny",
            )
        ],
        "anthropic-chat": [
            plugin(
                "llm/v1/chat",
                "anthropic",
                f"{base}/v1/messages",
                model={"name": "claude-2.1"},
                auth=ANTHROPIC_AUTH,
                options={"anthropic_version": "2023-06-01", "max_tokens": 256},
                logging={"log_statistics": True},
            ),
            {"name": "file-log", "config": {"path": str(log_path)}},
        ],
        "anthropic-completions": [
            plugin(
                "llm/v1/completions",
                "anthropic",
                f"{base}/v1/complete",
                model={"name": "claude-2.1"},
                auth=ANTHROPIC_AUTH,
                options={"anthropic_version": "2023-06-01"},
            )
        ],
        "preserve": [plugin("preserve", "openai", base, auth=OPENAI_AUTH, model={"name": "gpt-4"})],
        "azure-chat": [
            {
                "name": "ai-proxy",
                "config": {
                    "route_type": "llm/v1/chat",
                    "auth": {"header_name": "api-key", "header_value": "azure-key"},
                    "model": {
                        "provider": "azure",
                        "name": "gpt-4",
                        "options": {
                            "azure_instance": "unused",
                            "azure_deployment_id": "dep",
                            "upstream_url": f"{base}/openai/deployments/dep/chat/completions",
                        },
                    },
                },
            }
        ],
    }
    dead = free_port()
    config = {
        "_format_version": "3.0",
        # The service is never asked (nothing listens there): the plugin sets the target.
        "services": [
            {
                "name": "unused",
                "url": f"http://127.0.0.1:{dead}/elsewhere",
                "routes": [
                    {"name": name, "paths": [f"/{name}"], "plugins": plugins}
                    for name, plugins in routes.items()
                ],
            }
        ],
    }
    return gateway_with(json.dumps(config))


def post(gateway: Gateway, path: str, body: Any, **kw: Any) -> httpx.Response:
    return httpx.post(gateway.url(path), json=body, timeout=10, **kw)


def log_entries(path: Path, route: str) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    entries = [json.loads(line) for line in path.read_text().splitlines()]
    return [e for e in entries if e["route"]["name"] == route]


def next_log(path: Path, route: str, before: int) -> dict[str, Any]:
    """The log entry for ``route`` written after the ``before`` ones already there."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        entries = log_entries(path, route)
        if len(entries) > before:
            return entries[before]
        time.sleep(0.05)
    raise AssertionError(f"no new log entry for {route}")


def test_openai_chat(gateway: Gateway, provider: FakeProvider, log_path: Path) -> None:
    before = len(log_entries(log_path, "openai-chat"))
    r = post(gateway, "/openai-chat", CHAT_REQUEST)
    assert r.status_code == 200
    body = r.json()
    assert body["id"] == "chatcmpl-8T6YwgvjQVVnGbJ2w8hpOA17SeNy2"
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {
        "content": "The sum of 1 + 1 is 2.",
        "role": "assistant",
    }
    assert r.headers["x-kong-llm-model"] == "openai/gpt-3.5-turbo"
    assert "set-cookie" not in r.headers
    assert int(r.headers["content-length"]) == len(r.content)
    sent = provider.requests[-1]
    assert sent["target"] == "/v1/chat/completions"
    assert sent["headers"]["authorization"] == "Bearer openai-key"
    assert sent["headers"]["host"] == "127.0.0.1"
    assert sent["body"]["model"] == "gpt-3.5-turbo"
    assert sent["body"]["stream"] is False
    assert "top_k" not in sent["body"]
    # The statistics, as Kong's spec expects them (latency and time per token vary).
    entry = next_log(log_path, "openai-chat", before)
    stats = entry["ai"]["proxy"]
    latency = stats["meta"].pop("llm_latency")
    assert latency >= 0
    assert stats["usage"].pop("time_per_token") == pytest.approx(latency / 12)
    assert stats["meta"] == {
        "plugin_id": stats["meta"]["plugin_id"],
        "provider_name": "openai",
        "request_model": "gpt-3.5-turbo",
        "response_model": "gpt-3.5-turbo-0613",
    }
    assert stats["usage"] == {
        "prompt_tokens": 25,
        "completion_tokens": 12,
        "total_tokens": 37,
        "cost": pytest.approx(0.00037),
    }
    assert '"content":"What is 1 + 1?"' in stats["payload"]["request"]
    assert '"id":"chatcmpl-8T6YwgvjQVVnGbJ2w8hpOA17SeNy2"' in stats["payload"]["response"].replace(
        " ", ""
    )
    assert entry["upstream_uri"] == "/v1/chat/completions"


def test_bad_requests_get_kongs_errors(gateway: Gateway, provider: FakeProvider) -> None:
    asked = len(provider.requests)
    cases = [
        ("/openai-chat", {"messages": []}, "request body doesn't contain valid prompts"),
        ("/openai-chat", {"prompt": "hi"}, None),
        (
            "/openai-chat",
            {**CHAT_REQUEST, "model": "gpt-4"},
            "cannot use own model - must be: gpt-3.5-turbo",
        ),
        ("/openai-any-model", CHAT_REQUEST, None),
        ("/openai-nostream", {**CHAT_REQUEST, "stream": True}, None),
    ]
    messages = {
        1: "[llm/v1/completions] message format is not compatible with [llm/v1/chat] route type",
        3: "model parameter not found in request, nor in gateway configuration",
        4: "response streaming is not enabled for this LLM",
    }
    for i, (path, body, message) in enumerate(cases):
        r = post(gateway, path, body)
        assert r.status_code == 400, (path, r.text)
        assert r.json() == {"error": {"message": message or messages[i]}}
    r = httpx.post(gateway.url("/openai-chat"), content=b"{not json", timeout=10)
    assert r.json() == {"error": {"message": "request body doesn't contain valid prompts"}}
    assert len(provider.requests) == asked  # none went upstream


def test_model_from_the_request_when_the_config_has_none(
    gateway: Gateway, provider: FakeProvider
) -> None:
    r = post(gateway, "/openai-any-model", {**CHAT_REQUEST, "model": "try-to-override-the-model"})
    assert r.status_code == 200
    assert r.headers["x-kong-llm-model"] == "openai/try-to-override-the-model"
    assert provider.requests[-1]["body"]["model"] == "try-to-override-the-model"


def test_a_bad_upstream_answer_is_kongs_500(gateway: Gateway) -> None:
    r = post(gateway, "/openai-bad", CHAT_REQUEST)
    assert r.status_code == 500
    assert r.json() == {
        "error": {
            "message": "transformation failed from type openai://llm/v1/chat: "
            "'choices' not in llm/v1/chat response"
        }
    }


def test_upstream_errors_pass_through(gateway: Gateway) -> None:
    r = post(gateway, "/openai-override", CHAT_REQUEST, headers={"authorization": "Bearer wrong"})
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "invalid_api_key"
    # Without allow_override the configured key replaces the client's.
    r = post(gateway, "/openai-chat", CHAT_REQUEST, headers={"authorization": "Bearer wrong"})
    assert r.status_code == 200


def test_completions_with_query_and_body_auth(gateway: Gateway, provider: FakeProvider) -> None:
    r = post(gateway, "/openai-completions?x=1", {"prompt": "What are you?"})
    assert r.status_code == 200, r.text
    assert r.json()["id"] == "cmpl-8TBeaJVQIhE9kHEJbk1RnKzgFxIqN"
    assert r.json()["object"] == "text_completion"
    assert provider.requests[-1]["target"] == "/v1/completions?apikey=openai-key&x=1"
    r = post(gateway, "/openai-body-auth", {"prompt": "What are you?"})
    assert r.status_code == 200, r.text
    assert provider.requests[-1]["body"]["apikey"] == "openai-key"


def test_anthropic_chat(gateway: Gateway, provider: FakeProvider, log_path: Path) -> None:
    before = len(log_entries(log_path, "anthropic-chat"))
    r = post(gateway, "/anthropic-chat", CHAT_REQUEST)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body == {
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "The sum of 1 + 1 is 2."},
                "finish_reason": "end_turn",
            }
        ],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        "model": "claude-2.1",
        "object": "chat.completion",
    }
    assert r.headers["x-kong-llm-model"] == "anthropic/claude-2.1"
    sent = provider.requests[-1]
    assert sent["target"] == "/v1/messages"
    assert sent["headers"]["x-api-key"] == "anthropic-key"
    assert sent["headers"]["anthropic-version"] == "2023-06-01"
    assert sent["body"] == {
        "messages": [{"role": "user", "content": "What is 1 + 1?"}],
        "system": "You are a helpful assistant.",
        "max_tokens": 256,
        "model": "claude-2.1",
        "stream": False,
    }
    stats = next_log(log_path, "anthropic-chat", before)["ai"]["proxy"]
    assert stats["meta"]["provider_name"] == "anthropic"
    assert "payload" not in stats


def test_anthropic_completions_and_errors(gateway: Gateway, provider: FakeProvider) -> None:
    r = post(gateway, "/anthropic-completions", {"prompt": "Hello"})
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["text"] == " Hello! My name is Claude."
    assert r.json()["object"] == "text_completion"
    assert provider.requests[-1]["body"]["prompt"] == "Human: Hello\n\nAssistant:"
    r = post(gateway, "/anthropic-completions", {"prompt": "Hello"}, headers={"x-api-key": "wrong"})
    assert r.status_code == 200  # the configured key wins (no allow_override)


def test_azure_chat(gateway: Gateway, provider: FakeProvider) -> None:
    r = post(gateway, "/azure-chat", CHAT_REQUEST)
    assert r.status_code == 200, r.text
    assert r.headers["x-kong-llm-model"] == "azure/gpt-4"
    sent = provider.requests[-1]
    assert sent["target"] == "/openai/deployments/dep/chat/completions?api-version=2023-05-15"
    assert sent["headers"]["api-key"] == "azure-key"


def _stream(gateway: Gateway, provider: FakeProvider, path: str) -> tuple[bytes, list[bytes]]:
    """The first part the client receives (before the provider sends the rest), then all."""
    provider.release.clear()
    chunks: list[bytes] = []
    with httpx.stream(
        "POST", gateway.url(path), json={**CHAT_REQUEST, "stream": True}, timeout=10
    ) as r:
        assert r.status_code == 200
        assert r.headers["content-type"] == "text/event-stream"
        parts = r.iter_raw()
        first = next(parts)
        while first.count(b"\n\n") < 1:
            first += next(parts)
        provider.release.set()
        chunks = [first, *parts]
    return first, chunks


def test_openai_stream_is_relayed_chunk_by_chunk(gateway: Gateway, provider: FakeProvider) -> None:
    first, chunks = _stream(gateway, provider, "/openai-chat")
    assert first.startswith(b'data: {"id":"c1"')
    events = [e for e in b"".join(chunks).decode().split("\n\n") if e]
    assert events[-1] == "data: [DONE]"
    texts = [json.loads(e[6:])["choices"][0]["delta"].get("content") for e in events[:-1]]
    assert texts == ["", "The answer", " is 2."]
    assert provider.requests[-1]["body"]["stream"] is True


def test_anthropic_stream_becomes_openai_chunks(
    gateway: Gateway, provider: FakeProvider, log_path: Path
) -> None:
    before = len(log_entries(log_path, "anthropic-chat"))
    first, chunks = _stream(gateway, provider, "/anthropic-chat")
    events = [e for e in b"".join(chunks).decode().split("\n\n") if e]
    assert events[-1] == "data: [DONE]"
    frames = [json.loads(e[6:]) for e in events[:-1]]
    assert frames[0]["id"] == "msg_1"
    assert frames[0]["choices"][0]["delta"] == {"content": "", "role": "assistant"}
    assert {f["object"] for f in frames} == {"chat.completion.chunk"}
    text = "".join(f["choices"][0]["delta"]["content"] for f in frames)
    assert text == "The sum is 2."
    assert json.loads(first.split(b"\n\n")[0][6:])["id"] == "msg_1"
    stats = next_log(log_path, "anthropic-chat", before)["ai"]["proxy"]
    assert stats["usage"]["prompt_tokens"] == 25
    assert stats["usage"]["completion_tokens"] == 12  # 1 at the start, 11 at the end


def test_preserve_passes_the_body_and_path_through(
    gateway: Gateway, provider: FakeProvider
) -> None:
    raw = b'{"anything": ["goes"], "model": "gpt-4"}'
    r = httpx.post(gateway.url("/preserve/v1/embeddings?k=v"), content=raw, timeout=10)
    assert r.status_code == 200
    assert r.headers["x-kong-llm-model"] == "openai/gpt-4"
    assert r.json()["id"] == "chatcmpl-8T6YwgvjQVVnGbJ2w8hpOA17SeNy2"  # as the provider sent it
    sent = provider.requests[-1]
    assert sent["target"] == "/preserve/v1/embeddings?k=v"  # Kong: the client's path
    assert sent["body"] == {"anything": ["goes"], "model": "gpt-4"}
    assert sent["headers"]["authorization"] == "Bearer openai-key"
