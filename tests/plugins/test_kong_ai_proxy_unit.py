"""Kong's spec/03-plugins/38-ai-proxy/01-unit_spec.lua (identical in Kong 3.9.1 and 3.10), in
process: the translations of fastkong's drivers, the model templates, the request defaults,
the word count and the Gemini and Bedrock helpers. The stream parsers of the same spec are in
test_kong_ai_proxy_unit_stream.py.

The spec's two ``describe(PLUGIN_NAME .. ": (unit)")`` blocks (lines 468-1364 and 1366-2259)
run the same cases; the second only differs in its ``merge_model_options`` cases (1377-1536),
which are ported here next to the first's. Ported: lines 479-640 and 1377-1536 (templates
resolved from the request, Kong's errors), 672-771 (each provider and format: Kong's
``unit/requests`` through ``to_format`` equal ``unit/expected-requests``, ``unit/real-responses``
through ``from_format`` give the ``unit/expected-responses`` message and model; fixtures copied
in tests/plugins/kong_ai_fixtures/unit), 809-833 (no transformer for an unknown route type),
835-855 (config defaults merged), 995-1036 (word count), 1038-1216 (Gemini multimodal parts),
1218-1281 (Gemini tools), 1283-1363 (Bedrock tools and guardrails).

Covered by test_ai_proxy_units (``test_request_checks_and_estimate``: the same three
``is_compatible`` messages): lines 642-668.

Left out: spec/03-plugins/38-ai-proxy/12-native_unit_spec.lua (its 4 cases: Kong's native
``kong/llm/adapters`` for bedrock and gemini, turning their native requests into llm/v1):
fastkong implements no native ``llm_format`` and refuses them at load (docs/plugins.md,
"ai-proxy", "Not done"; asserted in test_kong_ai_proxy_config).

Kong's driver helpers return ``nil, err``; fastkong's raise :class:`LlmError` with the same
message, which is what is asserted. fastkong's tool list builders give an empty list where
Kong's give nil (both: no tools).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from fastkong.plugins.bundled import _llm_bedrock, _llm_gemini
from fastkong.plugins.bundled._llm_drivers import ALL_DRIVERS
from fastkong.plugins.bundled._llm_openai import Mistral
from fastkong.plugins.bundled._llm_shared import (
    LlmError,
    ModelInfo,
    count_words,
    merge_config_defaults,
)
from fastkong.plugins.bundled.ai_proxy import _resolve

UNIT = Path(__file__).parent / "kong_ai_fixtures" / "unit"


def fixture(path: str) -> Any:
    return json.loads((UNIT / path).read_text())


# -- the spec's samples (lines 9-211) ----------------------------------------------------------

SAMPLE_LLM_V1_CHAT: dict[str, Any] = {
    "messages": [
        {"role": "system", "content": "You are a mathematician."},
        {"role": "assistant", "content": "What is 1 + 1?"},
    ]
}
SAMPLE_LLM_V1_CHAT_WITH_SOME_OPTS: dict[str, Any] = {
    **SAMPLE_LLM_V1_CHAT,
    "max_tokens": 256,
    "temperature": 0.1,
    "top_p": 0.2,
    "some_extra_param": "string_val",
    "another_extra_param": 0.5,
}
SAMPLE_LLM_V1_CHAT_WITH_GUARDRAILS: dict[str, Any] = {
    **SAMPLE_LLM_V1_CHAT,
    "guardrailConfig": {
        "guardrailIdentifier": "yu5xwvfp4sud",
        "guardrailVersion": "1",
        "trace": "enabled",
    },
}
CAT: list[dict[str, Any]] = [
    {"role": "assistant", "content": [{"type": "text", "text": "A picture of a cat."}]},
    {"role": "user", "content": [{"type": "text", "text": "Now draw it wearing a party-hat."}]},
]


def multimodal(url: str) -> dict[str, Any]:
    """SAMPLE_LLM_V2_CHAT_MULTIMODAL_IMAGE_URL / _B64: the first part's image at ``url``."""
    question = [
        {"type": "text", "text": "What is in this picture?"},
        {"type": "image_url", "image_url": {"url": url}},
    ]
    return {"messages": [{"role": "user", "content": question}, *copy.deepcopy(CAT)]}


SAMPLE_OPENAI_TOOLS_REQUEST: dict[str, Any] = {
    "messages": [{"role": "user", "content": "Is the NewPhone in stock?"}],
    "tools": [
        {
            "function": {
                "parameters": {
                    "type": "object",
                    "properties": {"product_name": {"type": "string"}},
                    "required": ["product_name"],
                },
                "name": "check_stock",
                "description": "Check a product is in stock.",
            },
            "type": "function",
        }
    ],
}
SAMPLE_GEMINI_TOOLS_RESPONSE: dict[str, Any] = {
    "candidates": [
        {
            "content": {
                "role": "model",
                "parts": [
                    {"functionCall": {"name": "sql_execute", "args": {"product_name": "NewPhone"}}}
                ],
            },
            "finishReason": "STOP",
        }
    ]
}
SAMPLE_BEDROCK_TOOLS_RESPONSE: dict[str, Any] = {
    "metrics": {"latencyMs": 3781},
    "output": {
        "message": {
            "content": [
                {
                    "text": "Certainly! To calculate the sum of 121, 212, and 313, we can use the "
                    '"sumArea" function that\'s available to us.'
                },
                {
                    "toolUse": {
                        "input": {"areas": [121, 212, 313]},
                        "name": "sumArea",
                        "toolUseId": "tooluse_4ZakZPY9SiWoKWrAsY7_eg",
                    }
                },
            ],
            "role": "assistant",
        }
    },
    "stopReason": "tool_use",
    "usage": {"inputTokens": 410, "outputTokens": 115, "totalTokens": 525},
}


# -- merge_model_options (lines 479-640, 1377-1536) --------------------------------------------


def fake_request() -> Any:
    """The spec's ``fake_request``: two headers, two named URI captures, two query args."""
    headers = {"from_header_1": "header_value_here_1", "from_header_2": "header_value_here_2"}
    return SimpleNamespace(
        header=headers.get,
        match=SimpleNamespace(
            captures={"uri_cap_1": "cap_value_here_1", "uri_cap_2": "cap_value_here_2"}
        ),
        query={"arg_1": ["arg_value_here_1"], "arg_2": ["arg_value_here_2"]},
    )


def azure_config(name: str, **options: Any) -> dict[str, Any]:
    return {
        "route_type": "llm/v1/chat",
        "auth": {"header_name": "api-key", "header_value": "azure-key"},
        "model": {
            "name": name,
            "provider": "azure",
            "options": {"max_tokens": 256, "temperature": 1.0, **options},
        },
    }


TEMPLATED = {
    "azure_instance": "$(uri_captures.uri_cap_1)",
    "azure_deployment_id": "$(headers.from_header_1)",
    "azure_api_version": "$(query_params.arg_1)",
}
RESOLVED = {
    "azure_api_version": "arg_value_here_1",
    "azure_deployment_id": "header_value_here_1",
    "azure_instance": "cap_value_here_1",
    "max_tokens": 256,
    "temperature": 1,
}


def test_resolves_referenceable_plugin_configuration_from_request_context() -> None:
    # lines 479-544
    config = azure_config(
        "$(headers.from_header_1)",
        **TEMPLATED,
        upstream_url="https://$(uri_captures.uri_cap_1).example.com",
        bedrock={"aws_region": "$(uri_captures.uri_cap_1)"},
    )
    result = _resolve(config, fake_request())
    assert result["model"]["name"] == "header_value_here_1"
    assert result["model"]["options"] == {
        **RESOLVED,
        "upstream_url": "https://cap_value_here_1.example.com",
        "bedrock": {"aws_region": "cap_value_here_1"},
    }
    # lines 1377-1433: the same without templates in the name, the URL or the bedrock options
    result = _resolve(azure_config("gpt-3.5-turbo", **TEMPLATED), fake_request())
    assert result["model"]["options"] == RESOLVED


def test_resolves_referenceable_model_name_from_request_context() -> None:
    # lines 1435-1485
    config = azure_config(
        "$(uri_captures.uri_cap_2)",
        azure_instance="string-1",
        azure_deployment_id="string-2",
        azure_api_version="string-3",
    )
    assert _resolve(config, fake_request())["model"]["name"] == "cap_value_here_2"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {**TEMPLATED, "azure_instance": "$(uri_captures.uri_cap_3)"},
            "uri_captures key uri_cap_3 was not provided",
        ),
        (
            {**TEMPLATED, "bedrock": {"aws_region": "$(uri_captures.uri_cap_3)"}},
            "uri_captures key uri_cap_3 was not provided",
        ),
        (
            {"azure_instance": "$(uri_captures_uri_cap_1)"},
            "cannot parse expression for field '$(uri_captures_uri_cap_1)'",
        ),
    ],
    ids=["missing-capture", "missing-nested-capture", "unparsable"],
)
def test_returns_error_when_referenceable_configuration_is_missing(
    options: dict[str, Any], message: str
) -> None:
    # lines 546-640 (the first case again at 1487-1536)
    with pytest.raises(LlmError) as exc:
        _resolve(azure_config("gpt-3.5-turbo", **options), fake_request())
    assert str(exc.value) == message


# -- FORMATS (lines 213-437, tests 672-771) ----------------------------------------------------

#: (FORMATS key, route type) -> (model name, provider, options, fixture sub-directory)
FORMATS: dict[tuple[str, str], tuple[str, str, dict[str, Any], str | None]] = {
    ("openai", "llm/v1/chat"): ("gpt-4", "openai", {}, None),
    ("openai", "llm/v1/completions"): ("gpt-3.5-turbo-instruct", "openai", {}, None),
    ("cohere", "llm/v1/chat"): ("command", "cohere", {"top_p": 1.0}, None),
    ("cohere", "llm/v1/completions"): ("command", "cohere", {"top_p": 0.75, "top_k": 5}, None),
    ("anthropic", "llm/v1/chat"): ("claude-2.1", "anthropic", {"top_p": 1.0}, None),
    ("anthropic", "llm/v1/completions"): ("claude-2.1", "anthropic", {"top_p": 1.0}, None),
    ("azure", "llm/v1/chat"): ("gpt-4", "azure", {"top_p": 1.0}, None),
    ("azure", "llm/v1/completions"): ("gpt-3.5-turbo-instruct", "azure", {"top_p": 1.0}, None),
    ("llama2_raw", "llm/v1/chat"): (
        "llama2",
        "llama2",
        {"llama2_format": "raw", "top_p": 1, "top_k": 40},
        "raw",
    ),
    ("llama2_raw", "llm/v1/completions"): ("llama2", "llama2", {"llama2_format": "raw"}, "raw"),
    ("llama2_ollama", "llm/v1/chat"): ("llama2", "llama2", {"llama2_format": "ollama"}, "ollama"),
    ("llama2_ollama", "llm/v1/completions"): (
        "llama2",
        "llama2",
        {"llama2_format": "ollama"},
        "ollama",
    ),
    ("mistral_openai", "llm/v1/chat"): (
        "mistral-tiny",
        "mistral",
        {"mistral_format": "openai"},
        "openai",
    ),
    ("mistral_ollama", "llm/v1/chat"): (
        "mistral-tiny",
        "mistral",
        {"mistral_format": "ollama"},
        "ollama",
    ),
    ("gemini", "llm/v1/chat"): ("gemini-pro", "gemini", {}, None),
    ("bedrock", "llm/v1/chat"): ("bedrock", "bedrock", {}, None),
}
#: Every FORMATS entry has max_tokens 512 and temperature 0.5 but gemini's and bedrock's.
BIG = {"max_tokens": 8192, "temperature": 0.8, "top_k": 1, "top_p": 0.6}


def format_case(key: tuple[str, str]) -> tuple[Any, ModelInfo, str]:
    """The driver, the model and the fixture path (``<provider>[/<format>]/<route>.json``)."""
    name, provider, options, sub = FORMATS[key]
    base = BIG if provider in ("gemini", "bedrock") else {"max_tokens": 512, "temperature": 0.5}
    model = ModelInfo(provider, name, {**base, **options})
    route = key[1].replace("/", "-")
    path = f"{provider}/{sub}/{route}.json" if sub else f"{provider}/{route}.json"
    return ALL_DRIVERS[provider](), model, path


@pytest.mark.parametrize("key", list(FORMATS), ids=["-".join(k) for k in FORMATS])
def test_converts_to_provider_request_format_correctly(key: tuple[str, str]) -> None:
    driver, model, path = format_case(key)
    request = fixture(f"requests/{key[1].replace('/', '-')}.json")
    actual = driver.to_format(request, model, key[1])
    assert actual == fixture(f"expected-requests/{path}")


@pytest.mark.parametrize("key", list(FORMATS), ids=["-".join(k) for k in FORMATS])
def test_converts_from_provider_response_format_correctly(key: tuple[str, str]) -> None:
    driver, model, path = format_case(key)
    real = (UNIT / f"real-responses/{path}").read_bytes()
    actual = json.loads(driver.from_format(real, model, key[1]))
    expected = fixture(f"expected-responses/{path}")
    # Kong compares the first choice's message (none for completions) and the model.
    assert actual["choices"][0].get("message") == expected["choices"][0].get("message")
    assert actual.get("model") == expected.get("model")


# -- generic (lines 809-855) -------------------------------------------------------------------


def test_throws_correct_error_when_format_is_not_supported() -> None:
    model = ModelInfo(
        "mistral",
        "mistral-tiny",
        {"max_tokens": 512, "temperature": 0.5, "mistral_format": "ollama"},
    )
    request = fixture("requests/llm-v1-chat.json")
    with pytest.raises(LlmError) as exc:
        Mistral().to_format(request, model, "llm/v1/chatnopenotsupported")
    assert str(exc.value) == (
        "no transformer available to format mistral://llm/v1/chatnopenotsupported/ollama"
    )


def test_produces_a_correct_default_config_merge() -> None:
    formatted = copy.deepcopy(SAMPLE_LLM_V1_CHAT_WITH_SOME_OPTS)
    merge_config_defaults(formatted, {"max_tokens": 1024, "top_p": 0.5})
    del formatted["messages"]
    assert formatted == {
        "max_tokens": 1024,
        "temperature": 0.1,
        "top_p": 0.5,
        "some_extra_param": "string_val",
        "another_extra_param": 0.5,
    }


# -- count_words (lines 995-1036) --------------------------------------------------------------


def test_count_words_normal_prompts() -> None:
    assert count_words("apple " * 10) == 10


def test_count_words_multi_modal_prompts() -> None:
    apples = {"type": "text", "text": "apple " * 10}
    bananas = {"type": "text", "text": "banana " * 10}
    assert count_words([apples]) == 10
    assert count_words([apples, bananas]) == 20
    assert count_words([{**apples, "type": "not_text"}, bananas, {"type": "text"}]) == 10


# -- gemini multimodal (lines 1038-1216) -------------------------------------------------------


@pytest.mark.parametrize(
    ("part", "expected"),
    [
        (
            {"type": "text", "text": "What is in this picture?"},
            {"text": "What is in this picture?"},
        ),
        (
            {"type": "image_url", "image_url": {"url": "https://example.local/image.jpg"}},
            {
                "fileData": {
                    "fileUri": "https://example.local/image.jpg",
                    "mimeType": "image/generic",
                }
            },
        ),
    ],
    ids=["text", "image-url"],
)
def test_transforms_a_prompt_part_to_gemini(part: dict[str, Any], expected: Any) -> None:
    assert _llm_gemini._part(part) == expected


@pytest.mark.parametrize(
    ("part", "message"),
    [
        (
            {"type": "text", "bad_text_field": "What is in this picture?"},
            "message part type is 'text' but is missing .text block",
        ),
        (
            {"type": "image_url", "image_url": "https://example.local/image.jpg"},
            "message part type is 'image_url' but is missing .image_url.url block",
        ),
        (
            {"type": "doesnt_exist", "doesnt_exist": "https://example.local/video.mp4"},
            "cannot transform part of type 'doesnt_exist' to Gemini format",
        ),
    ],
    ids=["missing-text", "missing-image-url", "unmapped-type"],
)
def test_fails_to_transform_a_bad_part_to_gemini(part: dict[str, Any], message: str) -> None:
    with pytest.raises(LlmError) as exc:
        _llm_gemini._part(part)
    assert str(exc.value) == message


@pytest.mark.parametrize(
    ("url", "image"),
    [
        (
            "https://example.local/image.jpg",
            {
                "fileData": {
                    "fileUri": "https://example.local/image.jpg",
                    "mimeType": "image/generic",
                }
            },
        ),
        (
            "data:image/png;base64,Y2F0X3BuZ19oZXJlX2xvbAo=",
            {"inlineData": {"data": "Y2F0X3BuZ19oZXJlX2xvbAo=", "mimeType": "image/png"}},
        ),
    ],
    ids=["url", "base64"],
)
def test_transforms_describe_this_image_from_openai_to_gemini(url: str, image: Any) -> None:
    prompt = _llm_gemini.to_gemini(multimodal(url), ModelInfo("gemini", None, {}))
    del prompt["generationConfig"]  # not needed for comparison
    assert prompt == {
        "contents": [
            {"role": "user", "parts": [{"text": "What is in this picture?"}, image]},
            {"role": "model", "parts": [{"text": "A picture of a cat."}]},
            {"role": "user", "parts": [{"text": "Now draw it wearing a party-hat."}]},
        ]
    }


# -- gemini tools (lines 1218-1281) ------------------------------------------------------------


def test_transforms_openai_tools_to_gemini_tools() -> None:
    assert _llm_gemini._tools(SAMPLE_OPENAI_TOOLS_REQUEST["tools"]) == [
        {
            "function_declarations": [
                {
                    "description": "Check a product is in stock.",
                    "name": "check_stock",
                    "parameters": {
                        "properties": {"product_name": {"type": "string"}},
                        "required": ["product_name"],
                        "type": "object",
                    },
                }
            ]
        }
    ]
    assert _llm_gemini._tools(SAMPLE_LLM_V1_CHAT) is None  # NO_TOOLS
    assert _llm_gemini._tools(None) is None  # NIL


def test_transforms_gemini_tools_to_openai_tools() -> None:
    body = json.dumps(SAMPLE_GEMINI_TOOLS_RESPONSE).encode()
    answer = json.loads(_llm_gemini.from_gemini(body, ModelInfo("gemini", None, {})))
    assert answer["choices"][0]["message"]["tool_calls"][0]["function"] == {
        "name": "sql_execute",
        "arguments": '{"product_name":"NewPhone"}',
    }


# -- bedrock tools (lines 1283-1363) -----------------------------------------------------------


def test_transforms_openai_tools_to_bedrock_tools() -> None:
    assert _llm_bedrock._tools(SAMPLE_OPENAI_TOOLS_REQUEST["tools"]) == [
        {
            "toolSpec": {
                "description": "Check a product is in stock.",
                "inputSchema": {
                    "json": {
                        "properties": {"product_name": {"type": "string"}},
                        "required": ["product_name"],
                        "type": "object",
                    }
                },
                "name": "check_stock",
            }
        }
    ]
    # NO_TOOLS and NIL: Kong's nil, fastkong's empty list
    assert not _llm_bedrock._tools(SAMPLE_LLM_V1_CHAT)
    assert not _llm_bedrock._tools(None)


def test_transforms_bedrock_tools_to_openai_tools() -> None:
    content = SAMPLE_BEDROCK_TOOLS_RESPONSE["output"]["message"]["content"]
    calls = _llm_bedrock._tool_calls(content)
    assert calls is not None
    assert calls[0]["function"] == {"name": "sumArea", "arguments": '{"areas":[121,212,313]}'}


def test_transforms_guardrails_into_bedrock_generation_config() -> None:
    model = ModelInfo("bedrock", "some-model", {})
    body = _llm_bedrock.to_bedrock(copy.deepcopy(SAMPLE_LLM_V1_CHAT_WITH_GUARDRAILS), model)
    assert body["guardrailConfig"] == {
        "guardrailIdentifier": "yu5xwvfp4sud",
        "guardrailVersion": "1",
        "trace": "enabled",
    }
