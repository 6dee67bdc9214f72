"""ai-proxy's Gemini driver in process (Kong's spec/03-plugins/38-ai-proxy/01-unit_spec.lua
Gemini cases, with the shapes of its ``spec/fixtures/ai-proxy/unit`` Gemini request and
answer), the streamed-array splitter (hypothesis over arrays and cuts), the service account
JWT, and the schema checks."""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import re
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from fastkong.plugins.bundled import _gcp_token
from fastkong.plugins.bundled._llm_gemini import Gemini
from fastkong.plugins.bundled._llm_shared import LlmError, ModelInfo, StreamEvent, StreamParser
from tests.plugins.test_ai_proxy_units import CHAT, errors, load

OPTIONS = {"max_tokens": 8192, "temperature": 0.8, "top_k": 1, "top_p": 0.6}


def info(name: str = "gemini-pro", **options: Any) -> ModelInfo:
    return ModelInfo("gemini", name, {**OPTIONS, **options})


def test_chat_request() -> None:
    body = Gemini().to_format(copy.deepcopy(CHAT), info(), "llm/v1/chat")
    # Kong's expected-requests/gemini/llm-v1-chat.json (with this module's CHAT's texts)
    turns = [m for m in CHAT["messages"] if m["role"] != "system"]
    assert body == {
        "contents": [
            {
                "role": "model" if m["role"] == "assistant" else "user",
                "parts": [{"text": m["content"]}],
            }
            for m in turns
        ],
        "generationConfig": {"temperature": 0.8, "topK": 1, "topP": 0.6, "maxOutputTokens": 8192},
        "systemInstruction": {"parts": [{"text": "You are a mathematician."}]},
    }
    with pytest.raises(LlmError, match="^no transformer for gemini://llm/v1/completions$"):
        Gemini().to_format({"prompt": "x"}, info(), "llm/v1/completions")
    with pytest.raises(LlmError) as exc:
        Gemini().to_format(copy.deepcopy(CHAT), info("gemini-1.0-pro"), "llm/v1/chat")
    assert str(exc.value) == (
        "error transforming to gemini://llm/v1/chat: "
        "system prompts aren't supported on gemini-1.0 models"
    )


def test_multimodal_parts() -> None:
    content = [
        {"type": "text", "text": "What is in this picture?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "gs://bucket/cat.png"}},
    ]
    body = Gemini().to_format(
        {"messages": [{"role": "user", "content": content}]}, info(), "llm/v1/chat"
    )
    assert body["contents"] == [
        {
            "role": "user",
            "parts": [
                {"text": "What is in this picture?"},
                {"inlineData": {"data": "iVBORw0KGgo=", "mimeType": "image/png"}},
                {"fileData": {"fileUri": "gs://bucket/cat.png", "mimeType": "image/generic"}},
            ],
        }
    ]
    bad = [
        ([{"type": "audio"}], "cannot transform part of type 'audio' to Gemini format"),
        ([{"type": "text"}], "message part type is 'text' but is missing .text block"),
        (
            [{"type": "image_url", "image_url": {}}],
            "message part type is 'image_url' but is missing .image_url.url block",
        ),
        (
            [{"type": "image_url", "image_url": {"url": "x:y"}}],
            "could not decode OpenAI image-part, "
            "image URL is less than 10 bytes, which is not parsable",
        ),
        ([], "message at position 1 does not match expected array format"),
        (
            ["text"],
            "message at position 1, part at position 1 does not match expected OpenAI format",
        ),
    ]
    for parts, message in bad:
        with pytest.raises(LlmError) as exc:
            Gemini().to_format(
                {"messages": [{"role": "user", "content": parts}]}, info(), "llm/v1/chat"
            )
        assert str(exc.value) == f"error transforming to gemini://llm/v1/chat: {message}"


def test_tools_and_tool_turns() -> None:
    request = {
        "messages": [
            {"role": "user", "content": "1 + 1?"},
            {
                "role": "assistant",
                "tool_calls": [{"id": "c1", "function": {"name": "add", "arguments": '{"a":1}'}}],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "2"},
            {"role": "developer", "content": "Be brief."},
        ],
        "tools": [{"type": "function", "function": {"name": "add", "parameters": {}}}, {"x": 1}],
        "tool_config": {"function_calling_config": {"mode": "ANY"}},
        "stop": ["\n"],
    }
    body = Gemini().to_format(request, ModelInfo("gemini", "gemini-pro", {}), "llm/v1/chat")
    assert body == {
        "contents": [
            {"role": "user", "parts": [{"text": "1 + 1?"}]},
            {"role": "function", "parts": [{"function_call": {"name": "add", "args": {"a": 1}}}]},
            {
                "role": "function",
                "parts": [{"function_response": {"response": {"content": ["2"]}, "name": "add"}}],
            },
            {"parts": [{"text": "Be brief."}]},
        ],
        "generationConfig": {"stopSequences": ["\n"]},
        "tools": [{"function_declarations": [{"name": "add", "parameters": {}}]}],
        "tool_config": {"function_calling_config": {"mode": "ANY"}},
    }


def test_targets() -> None:
    g = Gemini()
    t = g.target(info("gemini-1.5-pro"), "llm/v1/chat")
    assert (t.scheme, t.host, t.port, t.path) == (
        "https",
        "generativelanguage.googleapis.com",
        443,
        "/v1beta/models/gemini-1.5-pro:generateContent",
    )
    vertex = {"api_endpoint": "eu-aiplatform.googleapis.com", "project_id": "p", "location_id": "l"}
    t = g.target(info("gemini-1.5-pro", gemini=vertex), "llm/v1/chat", stream=True)
    assert (t.host, t.path) == (
        "eu-aiplatform.googleapis.com",
        "/v1/projects/p/locations/l/publishers/google/models/gemini-1.5-pro:streamGenerateContent",
    )
    t = g.target(info(upstream_url="http://h:8080/a", upstream_path="/b"), "llm/v1/chat")
    assert (t.scheme, t.host, t.port, t.path) == ("http", "h", 8080, "/b")
    assert g.accept_encoding(False) == g.accept_encoding(True) == "identity"


# Kong's real-responses/gemini/llm-v1-chat.json shape
REAL = {
    "candidates": [
        {
            "content": {"parts": [{"text": "Le double de 2 est **4**. \n"}], "role": "model"},
            "finishReason": "STOP",
            "index": 0,
        }
    ],
    "usageMetadata": {"promptTokenCount": 14, "candidatesTokenCount": 128, "totalTokenCount": 142},
}


def test_answers() -> None:
    out = json.loads(Gemini().from_format(json.dumps(REAL).encode(), info(), "llm/v1/chat"))
    assert out == {
        "choices": [
            {
                "finish_reason": "stop",
                "index": 0,
                "message": {"content": "Le double de 2 est **4**. \n", "role": "assistant"},
            }
        ],
        "model": "gemini-pro",
        "object": "chat.completion",
        "usage": {"prompt_tokens": 14, "completion_tokens": 128, "total_tokens": 142},
    }
    # Kong's fails_safety.json shape: a candidate without content, no choices.
    safety = {"candidates": [{"finishReason": "SAFETY", "index": 0}]}
    out = json.loads(Gemini().from_format(json.dumps(safety).encode(), info(), "llm/v1/chat"))
    assert out == {"choices": []}
    prefix = "transformation failed from type gemini://llm/v1/chat: "
    for body, message in [
        (
            b'{"candidates": []}',
            "no generation candidates received from Gemini, or max_tokens too short",
        ),
        (b"<html>", "failed to decode response from Gemini"),
    ]:
        with pytest.raises(LlmError) as exc:
            Gemini().from_format(body, info(), "llm/v1/chat")
        assert str(exc.value) == prefix + message


def test_stream_events() -> None:
    g = Gemini()

    def event(data: str) -> Any:
        result = g.stream_event(StreamEvent(data=data), info(), "llm/v1/chat", {})
        return result.data, result.prompt_tokens, result.completion_tokens

    element = {**REAL, "candidates": [{**REAL["candidates"][0], "finishReason": "MAX_TOKENS"}]}
    data, prompt, completion = event(json.dumps(element))
    assert json.loads(data or "") == {
        "choices": [
            {
                "delta": {"content": "Le double de 2 est **4**. \n", "role": "assistant"},
                "index": 0,
                "finish_reason": "MAX_TOKENS",
            }
        ]
    }
    assert (prompt, completion) == (14, 128)
    call = {"candidates": [{"content": {"parts": [{"functionCall": {"name": "f", "args": {}}}]}}]}
    data, prompt, completion = event(json.dumps(call))
    assert json.loads(data or "")["choices"][0]["delta"] == {
        "tool_calls": [{"function": {"name": "f", "arguments": "{}"}, "type": "function"}]
    }
    assert (prompt, completion) == (0, 0)
    assert event("[DONE]") == ("[DONE]", None, None)
    assert event('{"candidates": []}') == (None, None, None)
    with pytest.raises(LlmError, match="failed to decode stream event frame from gemini"):
        event("{")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='ab[]{},"\\ \n'),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=150, deadline=None)
@given(
    elements=st.lists(st.dictionaries(st.text(max_size=4), json_values, max_size=3), max_size=5),
    indent=st.sampled_from([None, 2]),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=6),
)
def test_json_array_stream_round_trips(
    elements: list[dict[str, Any]], indent: int | None, cuts: list[int]
) -> None:
    """An array cut anywhere gives back its elements, then ``[DONE]``."""
    data = json.dumps(elements, indent=indent).encode()
    bounds = sorted({0, len(data), *(c for c in cuts if c < len(data))})
    parser = StreamParser()
    events = []
    for a, b in zip(bounds, bounds[1:], strict=False):
        events += parser.feed(data[a:b], last=b == len(data))
    assert [json.loads(e.data or "") for e in events[:-1]] == elements
    assert events[-1].data == "[DONE]"


# -- service account ---------------------------------------------------------------------------


def _key_json(key: rsa.RSAPrivateKey, **extra: Any) -> str:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
    return json.dumps(
        {"client_email": "a@p.iam", "private_key": pem, "token_uri": "https://t/token", **extra}
    )


def test_service_account_jwt() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    email, uri, key_id, parsed = _gcp_token.parse_key(_key_json(key, private_key_id="k9"))
    jwt = _gcp_token.assertion(email, uri, key_id, parsed, 1700000000)
    head, claims, signature = jwt.split(".")

    def unb64(text: str) -> bytes:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))

    key.public_key().verify(
        unb64(signature), f"{head}.{claims}".encode(), padding.PKCS1v15(), hashes.SHA256()
    )
    assert json.loads(unb64(head)) == {"alg": "RS256", "typ": "JWT", "kid": "k9"}
    assert json.loads(unb64(claims)) == {
        "iss": "a@p.iam",
        "scope": "https://www.googleapis.com/auth/cloud-platform",
        "aud": "https://t/token",
        "iat": 1700000000,
        "exp": 1700003600,
    }
    for text, why in [
        ("{", "not valid JSON"),
        ("{}", "'client_email' is missing"),
        (_key_json(key, token_uri="file:///x"), "'token_uri' is not an http(s) URL"),
        (_key_json(key, private_key="x"), "'private_key' is not a PEM private key"),
    ]:
        with pytest.raises(_gcp_token.AccountError, match=f"^{re.escape(why)}$"):
            _gcp_token.parse_key(text)


def test_no_service_account_key_is_kongs_500(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GCP_SERVICE_ACCOUNT", raising=False)
    account = _gcp_token.ServiceAccount.from_config(None)
    with pytest.raises(LlmError, match="^LLM request failed before proxying$"):
        asyncio.run(account.token())


def test_schema_checks() -> None:
    base = {"route_type": "llm/v1/chat", "model": {"provider": "gemini", "name": "g"}}
    found = errors({**base, "model": {**base["model"], "options": {"gemini": {"project_id": "p"}}}})
    assert found["config"]["model"]["options"]["gemini"] == {
        "@entity": [
            "all or none of these fields must be set: 'api_endpoint', 'project_id', 'location_id'"
        ]
    }
    found = errors(
        {**base, "auth": {"gcp_use_service_account": True, "gcp_service_account_json": "{}"}}
    )
    assert found["config"]["auth"] == {
        "gcp_service_account_json": "not a usable service account key: 'client_email' is missing"
    }
    found = errors({**base, "auth": {"allow_override": True}})
    assert found["config"]["auth"] == {"allow_override": "value must be false"}
    loaded = load({**base, "auth": {"gcp_use_service_account": True}})
    assert loaded["auth"]["gcp_use_service_account"] is True  # the key may come from the node
