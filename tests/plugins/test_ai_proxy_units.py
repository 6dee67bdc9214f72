"""ai-proxy's schema and provider translations, in process (Kong's
spec/03-plugins/38-ai-proxy/00-config_spec.lua and 01-unit_spec.lua, with the shapes of its
``spec/fixtures/ai-proxy/unit`` requests and expected requests/responses)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import yaml

from fastkong.config import ConfigError, load_config
from fastkong.plugins.bundled._llm_anthropic import Anthropic
from fastkong.plugins.bundled._llm_openai import DRIVERS, Azure, Llama2, Mistral, OpenAI
from fastkong.plugins.bundled._llm_shared import (
    LlmError,
    ModelInfo,
    StreamEvent,
    StreamParser,
    compatibility_error,
    estimate_tokens,
)


def load(config: dict[str, Any]) -> dict[str, Any]:
    doc = {"_format_version": "3.0", "plugins": [{"name": "ai-proxy", "config": config}]}
    loaded: dict[str, Any] = load_config(yaml.safe_dump(doc)).config.plugins[0].config
    return loaded


def errors(config: dict[str, Any]) -> dict[str, Any]:
    with pytest.raises(ConfigError) as info:
        load(config)
    fields: dict[str, Any] = info.value.fields()["plugins"][0]
    return fields


# -- schema ------------------------------------------------------------------------------------


def test_defaults() -> None:
    config = load({"route_type": "llm/v1/chat", "model": {"provider": "openai"}})
    assert config == {
        "route_type": "llm/v1/chat",
        "auth": None,
        "model": {"provider": "openai", "name": None, "options": None},
        "logging": {"log_statistics": False, "log_payloads": False},
        "response_streaming": "allow",
        "max_request_body_size": 8192,
        "model_name_header": True,
        "llm_format": "openai",
    }
    options = load({"route_type": "llm/v1/chat", "model": {"provider": "openai", "options": {}}})[
        "model"
    ]["options"]
    assert options["azure_api_version"] == "2023-05-15"
    auth = load({"route_type": "preserve", "auth": {}, "model": {"provider": "openai"}})["auth"]
    assert auth["allow_override"] is False and auth["gcp_use_service_account"] is False


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (
            {"provider": "llama2", "options": {"llama2_format": "raw"}},
            "must set 'model.options.upstream_url' for self-hosted providers/models",
        ),
        (
            {"provider": "anthropic", "options": {"max_tokens": 256}},
            "must set 'model.options.anthropic_version' for anthropic provider",
        ),
        (
            {"provider": "azure", "options": {"azure_deployment_id": "d"}},
            "must set 'model.options.azure_instance' for azure provider",
        ),
        (
            {"provider": "mistral", "options": {"upstream_url": "http://x"}},
            "must set 'model.options.mistral_format' for mistral provider",
        ),
    ],
)
def test_providers_need_their_options(config: dict[str, Any], expected: str) -> None:
    found = errors({"route_type": "llm/v1/chat", "model": config})
    assert found == {"config": {"@entity": [expected]}}


def test_entity_checks() -> None:
    base = {"route_type": "llm/v1/chat", "model": {"provider": "openai"}}
    assert errors({**base, "auth": {"header_name": "x"}})["config"]["@entity"] == [
        "all or none of these fields must be set: 'auth.header_name', 'auth.header_value'"
    ]
    assert errors({**base, "auth": {"param_name": "x", "param_value": "y"}})["config"][
        "@entity"
    ] == [
        "all or none of these fields must be set: "
        "'auth.param_name', 'auth.param_value', 'auth.param_location'"
    ]
    found = errors(
        {
            "route_type": "llm/v1/completions",
            "model": {"provider": "anthropic", "options": {"anthropic_version": "v"}},
            "logging": {"log_statistics": True},
        }
    )
    assert found["config"]["@entity"] == [
        "anthropic does not support statistics when route_type is llm/v1/completions"
    ]
    found = errors({**base, "route_type": "llm/v1/completions", "llm_format": "gemini"})
    assert found["@entity"] == [
        "native provider options in llm_format can only be used with the 'llm/v1/chat' route_type",
        "native llm_format 'gemini' can only be used with the 'gemini' model.provider",
    ]
    assert found["config"] == {
        "route_type": "value must be llm/v1/chat",
        "model": {"provider": "value must be gemini"},
    }


def test_field_errors_have_paths() -> None:
    found = errors(
        {
            "route_type": "llm/v2",
            "model": {"provider": "openai", "options": {"temperature": 6, "top_k": 501}},
            "response_streaming": "sometimes",
            "max_request_body_size": 0,
            "unknown": 1,
        }
    )
    config = found["config"]
    assert config["route_type"] == "expected one of: llm/v1/chat, llm/v1/completions, preserve"
    assert config["model"]["options"] == {
        "temperature": "value should be between 0 and 5",
        "top_k": "value should be between 0 and 500",
    }
    assert config["response_streaming"] == "expected one of: allow, deny, always"
    assert config["max_request_body_size"] == "value must be greater than 0"
    assert config["unknown"] == "unknown field"
    assert errors({"route_type": "preserve"})["config"]["model"] == "required field missing"
    assert errors({"route_type": "preserve", "model": {"provider": "openai"}, "logging": None})[
        "config"
    ] == {"logging": "required field missing"}


@pytest.mark.parametrize("provider", ["cohere", "gemini", "bedrock", "huggingface"])
def test_every_provider_loads(provider: str) -> None:
    config = load({"route_type": "llm/v1/chat", "model": {"provider": provider, "name": "m"}})
    assert config["model"]["provider"] == provider


@pytest.mark.parametrize("native", ["bedrock", "gemini"])
def test_native_llm_format_is_refused(native: str) -> None:
    found = errors(
        {"route_type": "llm/v1/chat", "llm_format": native, "model": {"provider": native}}
    )
    assert found["config"] == {
        "llm_format": f"llm_format '{native}' is not implemented by fastkong's ai-proxy "
        "(implemented: openai)"
    }


# -- translations ------------------------------------------------------------------------------

# Kong's spec/fixtures/ai-proxy/unit/requests/llm-v1-chat.json
CHAT = {
    "messages": [
        {"role": "system", "content": "You are a mathematician."},
        {"role": "user", "content": "What is 1 + 2?"},
        {"role": "assistant", "content": "The sum of 1 + 2 is 3."},
        {"role": "user", "content": "Multiply that by 2"},
        {"role": "assistant", "content": "Certainly! The result is 6."},
        {"role": "user", "content": "Why can't you divide by zero?"},
    ]
}
COMPLETIONS = {"prompt": "Explain why you can't divide by zero?"}
OPTIONS = {"max_tokens": 512, "temperature": 0.5}


def model(provider: str, name: str, **options: Any) -> ModelInfo:
    return ModelInfo(provider, name, {**OPTIONS, **options})


def test_openai_request_and_response() -> None:
    body = OpenAI().to_format(
        {**copy.deepcopy(CHAT), "top_k": 3, "temperature": 2},
        model("openai", "gpt-4"),
        "llm/v1/chat",
    )
    # Kong's expected-requests/openai/llm-v1-chat.json: the config's options win.
    assert body == {
        **CHAT,
        "model": "gpt-4",
        "max_tokens": 512,
        "stream": False,
        "temperature": 0.5,
    }
    answer = json.dumps({"choices": [{"message": {"content": "x"}}]}).encode()
    assert OpenAI().from_format(answer, model("openai", "gpt-4"), "llm/v1/chat") == answer
    with pytest.raises(LlmError, match="^transformation failed from type openai://llm/v1/chat: "):
        OpenAI().from_format(b"{}", model("openai", "gpt-4"), "llm/v1/chat")
    with pytest.raises(LlmError, match="failed to decode llm/v1/completions response"):
        OpenAI().from_format(b"<html>", model("openai", "gpt-4"), "llm/v1/completions")


def test_anthropic_request() -> None:
    info = model("anthropic", "claude-2.1")
    body = Anthropic().to_format(copy.deepcopy(CHAT), info, "llm/v1/chat")
    # Kong's expected-requests/anthropic/llm-v1-chat.json
    assert body == {
        "model": "claude-2.1",
        "messages": CHAT["messages"][1:],
        "system": "You are a mathematician.",
        "max_tokens": 512,
        "temperature": 0.5,
        "stream": False,
    }
    body = Anthropic().to_format(copy.deepcopy(COMPLETIONS), info, "llm/v1/completions")
    # Kong's expected-requests/anthropic/llm-v1-completions.json
    assert body == {
        "model": "claude-2.1",
        "prompt": "Human: Explain why you can't divide by zero?\n\nAssistant:",
        "max_tokens_to_sample": 512,
        "temperature": 0.5,
        "stream": False,
    }
    assert Anthropic().headers(model("anthropic", "c", anthropic_version="2023-06-01")) == [
        ("anthropic-version", "2023-06-01")
    ]


def test_anthropic_tools() -> None:
    request = {
        "messages": [
            {"role": "user", "content": "weather?"},
            {
                "role": "assistant",
                "tool_calls": [
                    {"id": "t1", "function": {"name": "weather", "arguments": '{"city":"Paris"}'}}
                ],
            },
            {"role": "tool", "tool_call_id": "t1", "content": "sunny"},
        ],
        "tools": [{"type": "function", "function": {"name": "weather", "parameters": {"a": 1}}}],
    }
    body = Anthropic().to_format(request, ModelInfo("anthropic", "c", {}), "llm/v1/chat")
    assert body["messages"][1:] == [
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "t1", "name": "weather", "input": {"city": "Paris"}}
            ],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "sunny"}],
        },
    ]
    assert body["tools"] == [{"name": "weather", "input_schema": {"a": 1}}]
    assert "max_tokens" not in body  # Kong 3.9 sets no default


def test_anthropic_response() -> None:
    info = ModelInfo("anthropic", "claude-2.1", {})
    # Kong's real-responses/anthropic/llm-v1-chat.json -> expected-responses/...
    real = {
        "content": [{"text": "You cannot divide by zero.", "type": "text"}],
        "stop_reason": "stop_sequence",
        "model": "claude-2.1",
        "usage": {"input_tokens": 3, "output_tokens": 5},
    }
    out = json.loads(Anthropic().from_format(json.dumps(real).encode(), info, "llm/v1/chat"))
    assert out == {
        "choices": [
            {
                "finish_reason": "stop_sequence",
                "index": 0,
                "message": {"content": "You cannot divide by zero.", "role": "assistant"},
            }
        ],
        "model": "claude-2.1",
        "object": "chat.completion",
        "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8},
    }
    no_usage = {k: v for k, v in real.items() if k != "usage"}
    out = json.loads(Anthropic().from_format(json.dumps(no_usage).encode(), info, "llm/v1/chat"))
    assert out["usage"] == "no usage data returned from upstream"
    odd = {
        **real,
        "usage": {"foo": 0},
        "content": [{"text": "a"}, {"type": "tool_use", "id": "i", "name": "f", "input": {}}],
    }
    out = json.loads(Anthropic().from_format(json.dumps(odd).encode(), info, "llm/v1/chat"))
    assert out["usage"] == {}
    assert out["choices"][0]["message"]["tool_calls"] == [
        {"id": "i", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    ]
    with pytest.raises(LlmError) as info_err:
        Anthropic().from_format(b'{"type":"error"}', info, "llm/v1/chat")
    assert str(info_err.value) == (
        "transformation failed from type anthropic://llm/v1/chat: "
        "'content' not in anthropic://llm/v1/chat response"
    )
    complete = {"completion": " Hello!", "stop_reason": "stop_sequence", "model": "claude-2.1"}
    out = json.loads(
        Anthropic().from_format(json.dumps(complete).encode(), info, "llm/v1/completions")
    )
    assert out == {
        "choices": [{"index": 0, "text": " Hello!", "finish_reason": "stop_sequence"}],
        "model": "claude-2.1",
        "object": "text_completion",
    }


def test_azure_target_and_query() -> None:
    info = ModelInfo(
        "azure",
        "gpt-4",
        {"azure_instance": "inst", "azure_deployment_id": "dep", "azure_api_version": "2024-01-01"},
    )
    target = Azure().target(info, "llm/v1/chat")
    assert (target.scheme, target.host, target.port, target.path) == (
        "https",
        "inst.openai.azure.com",
        443,
        "/openai/deployments/dep/chat/completions",
    )
    assert Azure().query(info, {}) == {"api-version": "2024-01-01"}
    assert Azure().query(info, {"api-version": ["x"]}) == {"api-version": "x"}
    assert Azure().extra_meta(info) == {
        "azure_instance_id": "inst",
        "azure_deployment_id": "dep",
        "azure_api_version": "2024-01-01",
    }


def test_default_targets() -> None:
    for driver, route, expected in [
        (OpenAI(), "llm/v1/chat", ("https", "api.openai.com", 443, "/v1/chat/completions")),
        (OpenAI(), "llm/v1/completions", ("https", "api.openai.com", 443, "/v1/completions")),
        (Anthropic(), "llm/v1/chat", ("https", "api.anthropic.com", 443, "/v1/messages")),
        (Anthropic(), "llm/v1/completions", ("https", "api.anthropic.com", 443, "/v1/complete")),
        (Mistral(), "llm/v1/chat", ("https", "api.mistral.ai", 443, "v1/chat/completions")),
    ]:
        t = driver.target(ModelInfo(driver.name, "m", {}), route)
        assert (t.scheme, t.host, t.port, t.path) == expected
    t = OpenAI().target(ModelInfo("openai", "m", {"upstream_path": "/x"}), "llm/v1/chat")
    assert t.path == "/x"
    t = OpenAI().target(ModelInfo("openai", "m", {"upstream_url": "http://h:81/p?q"}), "x")
    assert (t.scheme, t.host, t.port, t.path) == ("http", "h", 81, "/p")
    assert set(DRIVERS) == {"openai", "azure", "mistral", "llama2"}


def test_ollama_formats() -> None:
    info = ModelInfo("llama2", "llama2", {**OPTIONS, "llama2_format": "ollama"})
    body = Llama2().to_format(copy.deepcopy(CHAT), info, "llm/v1/chat")
    # Kong's expected-requests/llama2/ollama/llm-v1-chat.json
    assert body == {
        "model": "llama2",
        "messages": CHAT["messages"],
        "stream": False,
        "options": {"num_predict": 512, "temperature": 0.5},
    }
    answer = {
        "model": "llama2",
        "created_at": "2024-01-01",
        "message": {"role": "assistant", "content": "Because."},
        "done": True,
        "prompt_eval_count": 26,
        "eval_count": 298,
    }
    out = json.loads(Llama2().from_format(json.dumps(answer).encode(), info, "llm/v1/chat"))
    assert out["choices"] == [
        {
            "finish_reason": "stop",
            "index": 0,
            "message": {"role": "assistant", "content": "Because."},
        }
    ]
    assert out["usage"] == {"completion_tokens": 298, "prompt_tokens": 26, "total_tokens": 324}
    frame = Llama2().stream_event(
        StreamEvent(data='{"model":"llama2","message":{"content":"Be"},"done":false}'),
        info,
        "llm/v1/chat",
        {},
    )
    assert json.loads(frame.data or "") == {
        "choices": [{"delta": {"content": "Be"}, "index": 0}],
        "model": "llama2",
        "object": "chat.completion.chunk",
    }
    done = Llama2().stream_event(
        StreamEvent(data='{"done":true,"prompt_eval_count":3,"eval_count":4}'), info, "x", {}
    )
    assert (done.data, done.prompt_tokens, done.completion_tokens) == ("[DONE]", 3, 4)
    mistral = ModelInfo("mistral", "m", {"mistral_format": "openai"})
    assert Mistral().to_format({"messages": [1]}, mistral, "llm/v1/chat") == {
        "messages": [1],
        "model": "m",
        "stream": False,
    }


def test_llama2_raw() -> None:
    info = ModelInfo(
        "llama2", "llama2", {**OPTIONS, "llama2_format": "raw", "top_k": 40, "top_p": 1}
    )
    body = Llama2().to_format(copy.deepcopy(CHAT), info, "llm/v1/chat")
    # Kong's expected-requests/llama2/raw/llm-v1-chat.json (assistant turns left out)
    assert body == {
        "inputs": "<s>[INST] <<SYS>> You are a mathematician. <</SYS>> What is 1 + 2? [/INST] "
        "<s>[INST] Multiply that by 2 [/INST] <s>[INST] Why can't you divide by zero? [/INST]",
        "parameters": {
            "max_new_tokens": 512,
            "temperature": 0.5,
            "top_k": 40,
            "top_p": 1,
            "stream": False,
        },
    }
    answer = {"data": [{"generated_text": "[INST] q [/INST]  Because.  "}]}
    out = json.loads(Llama2().from_format(json.dumps(answer).encode(), info, "llm/v1/completions"))
    assert out == {"choices": [{"index": 0, "text": "Because."}], "object": "text_completion"}


def test_request_checks_and_estimate() -> None:
    assert compatibility_error(CHAT, "llm/v1/chat") is None
    assert compatibility_error(CHAT, "llm/v1/completions") == (
        "[llm/v1/chat] message format is not compatible with [llm/v1/completions] route type"
    )
    assert compatibility_error({**CHAT, **COMPLETIONS}, "llm/v1/chat") == (
        "request matches multiple LLM request formats"
    )
    assert compatibility_error({}, "preserve") is None
    assert estimate_tokens({"messages": [{"content": "a b c"}, {"content": "d"}]}, 1.8) == 7
    assert estimate_tokens({"prompt": ["a b", 1, [1, 2]]}, 1.0) == 5


def test_stream_parser_joins_cut_events() -> None:
    parser = StreamParser()
    assert parser.feed(b'event: a\ndata: {"x"') == []
    events = parser.feed(b":1}\n\ndata: [DONE]\n\n")
    assert [(e.event, e.data) for e in events] == [("a", '{"x":1}'), (None, "[DONE]")]
    lines = StreamParser()
    assert [e.data for e in lines.feed(b'{"a":1}\n{"b"')] == ['{"a":1}']
    assert [e.data for e in lines.feed(b":2}\n", last=True)] == ['{"b":2}']
