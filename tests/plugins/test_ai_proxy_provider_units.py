"""ai-proxy's Cohere, Hugging Face and Bedrock drivers in process (Kong's
spec/03-plugins/38-ai-proxy/01-unit_spec.lua cases and ``spec/fixtures/ai-proxy/unit`` shapes),
AWS's event-stream framing (hypothesis over messages and cuts), and Bedrock's SigV4 signature
checked with the tests' own signer."""

from __future__ import annotations

import asyncio
import copy
import json
import struct
import zlib
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastkong.plugins.bundled._llm_bedrock import Bedrock, EventStreamParser
from fastkong.plugins.bundled._llm_cohere import Cohere
from fastkong.plugins.bundled._llm_huggingface import Huggingface, HuggingfaceUrlError
from fastkong.plugins.bundled._llm_shared import (
    LlmError,
    ModelInfo,
    SignedRequest,
    StreamEvent,
    parse_url,
)
from tests.plugins.ai_provider_fakes import bedrock_event, event_message
from tests.plugins.aws_fakes import Received, verify
from tests.plugins.test_ai_proxy_units import CHAT, COMPLETIONS

OPTIONS = {"max_tokens": 512, "temperature": 0.5}

# -- Cohere ------------------------------------------------------------------------------------


def test_cohere_requests() -> None:
    info = ModelInfo("cohere", "command", {**OPTIONS, "top_p": 1.0})
    body = Cohere().to_format(copy.deepcopy(CHAT), info, "llm/v1/chat")
    # Kong's expected-requests/cohere/llm-v1-chat.json
    assert body == {
        "chat_history": [
            {"role": "CHATBOT" if m["role"] == "assistant" else "USER", "message": m["content"]}
            for m in CHAT["messages"][:-1]
        ],
        "message": "Why can't you divide by zero?",
        "model": "command",
        "max_tokens": 512,
        "temperature": 0.5,
        "p": 1.0,
        "stream": False,
    }
    info = ModelInfo("cohere", "command", {**OPTIONS, "top_p": 0.75, "top_k": 5})
    body = Cohere().to_format(copy.deepcopy(COMPLETIONS), info, "llm/v1/completions")
    # Kong's expected-requests/cohere/llm-v1-completions.json
    assert body == {
        "prompt": "Explain why you can't divide by zero?",
        "model": "command",
        "max_tokens": 512,
        "temperature": 0.5,
        "p": 0.75,
        "k": 5,
        "stream": False,
    }
    tools = {"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]}
    body = Cohere().to_format(copy.deepcopy(tools), info, "llm/v1/chat")
    assert body == {**tools, "model": "command", "stream": False, **OPTIONS, "top_p": 0.75}
    with pytest.raises(LlmError, match="^error transforming to cohere://llm/v1/chat$"):
        Cohere().to_format({"messages": ["not an object"]}, info, "llm/v1/chat")


# Kong's real-responses/cohere/llm-v1-chat.json shape
COHERE_REAL = {
    "generation_id": "f8aabbeb",
    "meta": {"billed_units": {"input_tokens": 81, "output_tokens": 258}},
    "text": "You cannot divide by zero.",
    "token_count": {"prompt_tokens": 102, "response_tokens": 258, "total_tokens": 360},
}


def test_cohere_answers() -> None:
    info = ModelInfo("cohere", "command", {})
    message = {"content": "You cannot divide by zero.", "role": "assistant"}
    chat = json.loads(Cohere().from_format(json.dumps(COHERE_REAL).encode(), info, "llm/v1/chat"))
    assert chat == {
        "choices": [{"finish_reason": "stop", "index": 0, "message": message}],
        "id": "f8aabbeb",
        "model": "command",
        "object": "chat.completion",
        "usage": {"completion_tokens": 258, "prompt_tokens": 81, "total_tokens": 339},
    }
    # On completions a chat answer's usage is its token_count (Kong's expected-responses).
    out = Cohere().from_format(json.dumps(COHERE_REAL).encode(), info, "llm/v1/completions")
    assert json.loads(out)["usage"] == {
        "completion_tokens": 258,
        "prompt_tokens": 102,
        "total_tokens": 360,
    }
    v2 = {
        "id": "c1",
        "finish_reason": "TOOL_CALL",
        "message": {"role": "assistant", "tool_plan": "I will add.", "tool_calls": [{"id": "t"}]},
        "usage": {"billed_units": {"input_tokens": 3, "output_tokens": 4}},
    }
    out = json.loads(Cohere().from_format(json.dumps(v2).encode(), info, "llm/v1/chat"))
    assert out["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "I will add.", "tool_calls": [{"id": "t"}]},
            "finish_reason": "TOOL_CALL",
        }
    ]
    assert out["usage"] == {"completion_tokens": 4, "prompt_tokens": 3, "total_tokens": 7}
    prefix = "transformation failed from type cohere://llm/v1/chat: "
    for body, why in [
        (b'{"message_id": 1}', "'text' or 'generations' missing from cohere response body"),
        (b"oops", "failed to decode cohere response"),
    ]:
        with pytest.raises(LlmError) as exc:
            Cohere().from_format(body, info, "llm/v1/chat")
        assert str(exc.value) == prefix + why


def test_cohere_stream_events() -> None:
    info = ModelInfo("cohere", "command", {})
    state: dict[str, Any] = {}

    def event(frame: Any, route: str = "llm/v1/completions") -> Any:
        result = Cohere().stream_event(StreamEvent(data=json.dumps(frame)), info, route, state)
        return result.data, result.prompt_tokens, result.completion_tokens

    start, _, _ = event({"event_type": "stream-start", "generation_id": "g"})
    assert json.loads(start)["id"] == "g"
    text, _, _ = event({"event_type": "text-generation", "text": "Hi"})
    assert json.loads(text) == {
        "choices": [{"text": "Hi", "index": 0, "finish_reason": None, "logprobs": None}],
        "id": "g",
        "model": "command",
        "object": "text_completion",
    }
    # stream-end: billed units, else (where Kong looks in the wrong place) the token counts
    end = {
        "event_type": "stream-end",
        "response": {"token_count": {"prompt_tokens": 5, "response_tokens": 6}},
    }
    assert event(end) == ("[DONE]", 5, 6)
    assert event({"event_type": "search-results"}) == (None, None, None)
    with pytest.raises(LlmError, match="failed to decode event frame from cohere"):
        Cohere().stream_event(StreamEvent(data="{"), info, "llm/v1/chat", state)


# -- Hugging Face ------------------------------------------------------------------------------


def test_huggingface_requests_and_targets() -> None:
    info = ModelInfo("huggingface", "org/model", {**OPTIONS, "top_k": 3})
    body = Huggingface().to_format(copy.deepcopy(COMPLETIONS), info, "llm/v1/completions")
    assert body == {
        "inputs": "Explain why you can't divide by zero?",
        "options": {"use_cache": False, "wait_for_model": False},
        "parameters": {"top_k": 3, "temperature": 0.5, "max_new_tokens": 512},
        "model": "org/model",
    }
    request = {**copy.deepcopy(CHAT), "parameters": {"temperature": 0.1, "max_tokens": 9}}
    options = {"huggingface": {"use_cache": True}}
    body = Huggingface().to_format(request, ModelInfo("huggingface", "m", options), "llm/v1/chat")
    assert body["parameters"] == {"temperature": 0.1, "max_tokens": 9}
    assert body["options"] == {"use_cache": True, "wait_for_model": False}
    hf = Huggingface()
    t = hf.target(info, "llm/v1/chat")
    assert (t.scheme, t.host, t.port, t.path) == (
        "https",
        "api-inference.huggingface.co",
        443,
        "/models/org/model/v1/chat/completions",
    )
    assert hf.target(info, "llm/v1/completions").path == "/models/org/model"
    assert hf.target(info, "preserve").path == "/models/org/model/v1/chat/completions"
    with_url = ModelInfo(
        "huggingface", None, {"upstream_url": "http://tgi:8080", "upstream_path": "/x"}
    )
    t = hf.target(with_url, "llm/v1/chat")
    assert (t.host, t.port, t.path) == ("tgi", 8080, "/v1/chat/completions")
    with pytest.raises(
        HuggingfaceUrlError, match="Could not parse the Hugging Face model endponit"
    ):
        hf.target(ModelInfo("huggingface", None, {}), "preserve")


def test_huggingface_answers_and_stream() -> None:
    info = ModelInfo("huggingface", "m", {})
    prefix = "transformation failed from type huggingface://llm/v1/chat: "
    for body, why in [
        (b'{"error": "Model m is currently loading"}', "API error: Model m is currently loading"),
        (b'{"message": {"x": 1}}', 'API error: {"x":1}'),
        (b"[]", "Invalid response format"),
        (b"<", "Failed to decode response"),
    ]:
        with pytest.raises(LlmError) as exc:
            Huggingface().from_format(body, info, "llm/v1/chat")
        assert str(exc.value) == prefix + why
    out = json.loads(
        Huggingface().from_format(
            b'{"choices": [{}, {"message": {"content": "b"}}]}', info, "llm/v1/chat"
        )
    )
    assert out["choices"] == [
        {"message": {"content": ""}, "index": 0, "finish_reason": "complete"},
        {"message": {"content": "b"}, "index": 1, "finish_reason": "complete"},
    ]
    token = StreamEvent(data='{"token": {"id": 1, "text": " a"}, "generated_text": null}')
    result = Huggingface().stream_event(token, info, "llm/v1/completions", {})
    assert json.loads(result.data or "") == {
        "choices": [{"text": " a", "index": 0}],
        "model": "m",
        "object": "text_completion",
    }
    done = Huggingface().stream_event(StreamEvent(data="[DONE]"), info, "llm/v1/chat", {})
    assert done.data == "[DONE]"


# -- Bedrock -----------------------------------------------------------------------------------


def bedrock(name: str = "anthropic.claude-3-sonnet", **options: Any) -> ModelInfo:
    return ModelInfo(
        "bedrock", name, {"max_tokens": 8192, "temperature": 0.8, "top_p": 0.6, **options}
    )


def test_bedrock_request() -> None:
    body = Bedrock().to_format(copy.deepcopy(CHAT), bedrock(), "llm/v1/chat")
    # Kong's expected-requests/bedrock/llm-v1-chat.json
    assert body == {
        "system": [{"text": "You are a mathematician."}],
        "messages": [
            {"content": [{"text": m["content"]}], "role": m["role"]} for m in CHAT["messages"][1:]
        ],
        "inferenceConfig": {"maxTokens": 8192, "temperature": 0.8, "topP": 0.6},
        "anthropic_version": "bedrock-2023-05-31",
    }
    with pytest.raises(LlmError) as exc:
        Bedrock().to_format(
            copy.deepcopy(CHAT), bedrock("amazon.titan-text-express-v1"), "llm/v1/chat"
        )
    assert str(exc.value) == (
        "error transforming to bedrock://llm/v1/chat: "
        "system prompts are unsupported for model 'amazon.titan-text-express-v1"
    )


def test_bedrock_tools() -> None:
    request = {
        "messages": [
            {"role": "user", "content": "add"},
            {
                "role": "assistant",
                "tool_calls": [
                    {"id": "t1", "function": {"name": "add", "arguments": '{"a": 1}'}},
                    {"id": "t2", "function": {"name": "sub", "arguments": "{}"}},
                ],
            },
            {"role": "tool", "tool_call_id": "t1", "content": "2"},
            {"role": "tool", "tool_call_id": "t2", "content": '{"r": 0}', "status": "success"},
        ],
        "tools": [
            {
                "type": "function",
                "function": {"name": "add", "description": "+", "parameters": {"type": "object"}},
            }
        ],
        "bedrock": {
            "toolConfig": {"toolChoice": {"auto": {}}},
            "additionalModelRequestFields": {"top_k": 5},
        },
        "guardrailConfig": {"guardrailIdentifier": "g"},
    }
    body = Bedrock().to_format(request, ModelInfo("bedrock", "m", {}), "llm/v1/chat")
    assert body["messages"][1:] == [
        {
            "role": "assistant",
            "content": [
                {"toolUse": {"toolUseId": "t1", "name": "add", "input": {"a": 1}}},
                {"toolUse": {"toolUseId": "t2", "name": "sub", "input": {}}},
            ],
        },
        {
            "role": "user",
            "content": [{"toolResult": {"toolUseId": "t1", "content": [{"json": {"result": 2}}]}}],
        },
        {
            "role": "user",
            "content": [
                {
                    "toolResult": {
                        "toolUseId": "t2",
                        "content": [{"json": {"r": 0}}],
                        "status": "success",
                    }
                }
            ],
        },
    ]
    assert body["toolConfig"] == {
        "toolChoice": {"auto": {}},
        "tools": [
            {
                "toolSpec": {
                    "name": "add",
                    "description": "+",
                    "inputSchema": {"json": {"type": "object"}},
                }
            }
        ],
    }
    assert body["additionalModelRequestFields"] == {"top_k": 5}
    assert body["guardrailConfig"] == {"guardrailIdentifier": "g"}
    assert body["inferenceConfig"] == {}


def test_bedrock_answers() -> None:
    real = {
        "output": {
            "message": {
                "content": [
                    {"text": "Let me add."},
                    {"toolUse": {"toolUseId": "t", "name": "add", "input": {"a": 1}}},
                    {"toolUse": {"toolUseId": "u", "name": "now", "input": {}}},
                ],
                "role": "assistant",
            }
        },
        "stopReason": "tool_use",
        "usage": {"inputTokens": 19, "outputTokens": 119, "totalTokens": 138},
        "trace": {"guardrail": {}},
    }
    out = json.loads(Bedrock().from_format(json.dumps(real).encode(), bedrock("m"), "llm/v1/chat"))
    assert out == {
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Let me add.",
                    "tool_calls": [
                        {
                            "function": {"name": "add", "arguments": '{"a":1}'},
                            "id": "t",
                            "type": "function",
                        },
                        {"function": {"name": "now"}, "id": "u", "type": "function"},
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "object": "chat.completion",
        "model": "m",
        "usage": {"prompt_tokens": 19, "completion_tokens": 119, "total_tokens": 138},
        "trace": {"guardrail": {}},
    }
    prefix = "transformation failed from type bedrock://llm/v1/chat: "
    for body, why in [
        (
            b'{"output": {"message": {"content": []}}}',
            "no generation candidates received from Bedrock, or max_tokens too short",
        ),
        (b"<", "failed to decode response from Bedrock"),
    ]:
        with pytest.raises(LlmError) as exc:
            Bedrock().from_format(body, bedrock(), "llm/v1/chat")
        assert str(exc.value) == prefix + why


def test_bedrock_tool_stream_events() -> None:
    parser = EventStreamParser()
    stream = b"".join(
        [
            bedrock_event(
                "contentBlockStart",
                {"contentBlockIndex": 1, "start": {"toolUse": {"name": "add", "toolUseId": "t"}}},
            ),
            bedrock_event(
                "contentBlockDelta",
                {"contentBlockIndex": 1, "delta": {"toolUse": {"input": '{"a"'}}},
            ),
            event_message(
                [(":message-type", "exception"), (":exception-type", "throttlingException")],
                b'{"message": "slow down"}',
            ),
        ]
    )
    events = parser.feed(stream)
    out = [Bedrock().stream_event(e, bedrock("m"), "llm/v1/chat", {}).data for e in events]
    assert [json.loads(d)["choices"][0]["delta"] for d in out[:2] if d] == [
        {"tool_calls": [{"index": 1, "id": "t", "function": {"name": "add", "arguments": ""}}]},
        {"tool_calls": [{"index": 1, "function": {"arguments": '{"a"'}}]},
    ]
    assert out[2] is None  # an exception message: nothing to send


messages = st.lists(
    st.tuples(
        st.lists(st.tuples(st.text(min_size=1, max_size=8), st.text(max_size=20)), max_size=3),
        st.binary(max_size=60),
    ),
    max_size=5,
)


@settings(max_examples=150, deadline=None)
@given(messages=messages, cuts=st.lists(st.integers(min_value=0, max_value=600), max_size=8))
def test_event_stream_round_trips(messages: list[Any], cuts: list[int]) -> None:
    """Messages framed per AWS's encoding and cut anywhere come back whole, in order."""
    frames = [event_message([(":message-type", "event"), *h], p) for h, p in messages]
    data = b"".join(frames)
    bounds = sorted({0, len(data), *(c for c in cuts if c < len(data))})
    parser = EventStreamParser()
    events = []
    for a, b in zip(bounds, bounds[1:], strict=False):
        events += parser.feed(data[a:b])
    assert [e.data for e in events] == [p.decode("utf-8", "replace") for _, p in messages]
    assert not parser.broken and parser.buffer == b""


def test_event_stream_corruption_stops_parsing() -> None:
    good = bedrock_event("messageStart", {"role": "assistant"})
    bad = bytearray(good)
    bad[-1] ^= 1  # the message checksum
    parser = EventStreamParser()
    assert [e.event for e in parser.feed(good + bytes(bad) + good)] == ["messageStart"]
    assert parser.broken and parser.feed(good) == []
    prelude = bytearray(good)
    prelude[0:4] = struct.pack(">I", 5)  # a length no message has, its CRC fixed
    prelude[8:12] = struct.pack(">I", zlib.crc32(bytes(prelude[:8])))
    assert EventStreamParser().feed(bytes(prelude)) == []


def test_bedrock_signs_the_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-west-2")
    config = SimpleNamespace(
        model=SimpleNamespace(options=None),
        auth=SimpleNamespace(aws_access_key_id="AKID", aws_secret_access_key="s/ecret"),
    )
    driver = Bedrock()
    driver.setup(config)
    assert driver.region == "us-west-2"
    target = driver.target(bedrock("anthropic.claude-v2:1"), "llm/v1/chat", stream=True)
    assert (target.host, target.path) == (
        "bedrock-runtime.us-west-2.amazonaws.com",
        "/model/anthropic.claude-v2:1/converse-stream",
    )
    body = b'{"messages": []}'
    request = SignedRequest("POST", target, target.path, [("a", "b c"), ("x", "")], body)
    headers = asyncio.run(driver.authorize(request))
    assert [k for k, _ in headers] == ["X-Amz-Date", "Authorization"]
    received = Received(
        "POST",
        f"{target.path}?a=b%20c&x=",
        [("Host", target.host), *headers, ("Content-Type", "application/json")],
        body,
    )
    assert verify(received, {"AKID": ("s/ecret", None)}, "us-west-2", "bedrock") is None
    assert "SignedHeaders=host;x-amz-date," in dict(headers)["Authorization"]
    no_region = Bedrock()
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    no_region.setup(config)
    with pytest.raises(LlmError, match="^LLM request failed before proxying$"):
        asyncio.run(no_region.authorize(request))
    assert parse_url("https://h/p").port == 443
