"""The AI transformers' schemas and the parts of their work that need no network: the LLM
request, the provider URL, the JSON instructions (Kong's 00-config_spec and 01-unit specs of
ai-request-transformer and ai-response-transformer)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from fastkong.plugins.bundled._ai_transformer import Introspector, provider_url
from fastkong.plugins.bundled.ai_response_transformer import (
    InstructionError,
    NotInstructions,
    instructed,
)
from tests.helpers import plugin_config, plugin_config_errors

TRANSFORMERS = ["ai-request-transformer", "ai-response-transformer"]
OPENAI = {"route_type": "llm/v1/chat", "model": {"provider": "openai", "name": "gpt-4"}}


@pytest.mark.parametrize("name", TRANSFORMERS)
def test_defaults(name: str) -> None:
    config = plugin_config(name, {"prompt": "p", "llm": OPENAI})
    expected = {
        "prompt": "p",
        "transformation_extract_pattern": None,
        "http_timeout": 60000,
        "https_verify": True,
        "max_request_body_size": 8192,
        "http_proxy_host": None,
        "http_proxy_port": None,
        "https_proxy_host": None,
        "https_proxy_port": None,
        "llm": {
            "route_type": "llm/v1/chat",
            "auth": None,
            "model": {"provider": "openai", "name": "gpt-4", "options": None},
            "logging": {"log_statistics": False, "log_payloads": False},
        },
    }
    if name == "ai-response-transformer":
        expected["parse_llm_response_json_instructions"] = False
    assert config == expected


@pytest.mark.parametrize("name", TRANSFORMERS)
def test_config_errors_have_paths(name: str) -> None:
    assert plugin_config_errors(name, {"llm": OPENAI}) == [
        "plugins[0].config.prompt: required field missing"
    ]
    assert plugin_config_errors(name, {"prompt": "p"}) == [
        "plugins[0].config.llm: required field missing"
    ]
    for route_type in ("llm/v1/completions", "preserve"):
        assert plugin_config_errors(
            name, {"prompt": "p", "llm": {**OPENAI, "route_type": route_type}}
        ) == [
            "plugins[0].config.llm.route_type: value must be llm/v1/chat",
            "plugins[0]: 'config.llm.route_type' must be 'llm/v1/chat' for AI transformer plugins",
        ]
    assert sorted(
        plugin_config_errors(
            name,
            {
                "prompt": "p",
                "http_timeout": None,
                "max_request_body_size": 0,
                "transformation_extract_pattern": "(unclosed",
                "https_proxy_port": 70000,
                "llm": OPENAI,
            },
        )
    ) == [
        "plugins[0].config.http_timeout: required field missing",
        "plugins[0].config.https_proxy_port: value should be between 0 and 65535",
        "plugins[0].config.max_request_body_size: value must be greater than 0",
        "plugins[0].config.transformation_extract_pattern: not a valid regex: (unclosed",
        # Kong runs the plugin's entity checks over fields that failed their own rules too
        # (their dotted names never match its errors table): the lone port is reported.
        "plugins[0]: all or none of these fields must be set: "
        "'config.https_proxy_host', 'config.https_proxy_port'",
    ]


@pytest.mark.parametrize("name", TRANSFORMERS)
def test_entity_checks(name: str) -> None:
    anthropic = {"route_type": "llm/v1/chat", "model": {"provider": "anthropic"}}
    assert plugin_config_errors(
        name, {"prompt": "p", "http_proxy_host": "proxy", "llm": anthropic}
    ) == [
        # the llm record's own check, on the record
        "plugins[0].config.llm: must set 'model.options.anthropic_version' for anthropic provider",
        "plugins[0]: all or none of these fields must be set: "
        "'config.http_proxy_host', 'config.http_proxy_port'",
    ]
    assert plugin_config_errors(name, {"prompt": "p", "https_proxy_port": 3128, "llm": OPENAI}) == [
        "plugins[0]: all or none of these fields must be set: "
        "'config.https_proxy_host', 'config.https_proxy_port'"
    ]
    gemini = {
        "route_type": "llm/v1/chat",
        "auth": {"allow_override": True},
        "model": {"provider": "gemini"},
    }
    assert plugin_config_errors(name, {"prompt": "p", "llm": gemini}) == [
        "plugins[0].config.llm.auth.allow_override: value must be false",
        "plugins[0].config.llm: bedrock and gemini only support auth.allow_override = false",
    ]


def test_scopes() -> None:
    doc: dict[str, Any] = {
        "_format_version": "3.0",
        "consumers": [{"username": "alice", "plugins": []}],
    }
    from fastkong.config import ConfigError, load_config  # noqa: PLC0415

    for name, refused in (("ai-request-transformer", True), ("ai-response-transformer", False)):
        doc["consumers"][0]["plugins"] = [{"name": name, "config": {"prompt": "p", "llm": OPENAI}}]
        if refused:  # Kong's typedefs.no_consumer
            with pytest.raises(ConfigError):
                load_config(json.dumps(doc))
        else:
            load_config(json.dumps(doc))


def introspector(name: str = "ai-request-transformer", **config: Any) -> Introspector:
    loaded = plugin_config(name, {"prompt": "Be brief.", **config})
    from fastkong.plugins.registry import lookup  # noqa: PLC0415

    spec = lookup(name)
    assert spec is not None
    import msgspec  # noqa: PLC0415

    return Introspector(msgspec.convert(loaded, spec.config_type), name, "plugin-id")


def test_the_llm_request_is_kongs_layout() -> None:
    llm = {
        **OPENAI,
        "auth": {"param_name": "key", "param_value": "secret", "param_location": "body"},
        "model": {"provider": "openai", "name": "gpt-4", "options": {"top_p": 0.5}},
    }
    body = json.loads(introspector(llm=llm).llm_request("the body"))
    assert body == {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "the body"},
        ],
        "stream": False,
        "model": "gpt-4",
        "top_p": 0.5,
        "key": "secret",  # Kong's pre_request: a body auth parameter
    }
    anthropic = {
        "route_type": "llm/v1/chat",
        "model": {"provider": "anthropic", "name": "claude", "options": {"anthropic_version": "v"}},
    }
    body = json.loads(introspector(llm=anthropic).llm_request("the body"))
    assert body == {
        "messages": [{"role": "user", "content": "the body"}],
        "system": "Be brief.",
        "model": "claude",
        "stream": False,
    }


@pytest.mark.parametrize(
    ("model", "url"),
    [
        ({"provider": "openai"}, "https://api.openai.com:443/v1/chat/completions"),
        (
            # Kong's transformers ignore upstream_path for OpenAI (only upstream_url counts)
            {"provider": "openai", "options": {"upstream_path": "/elsewhere"}},
            "https://api.openai.com:443/v1/chat/completions",
        ),
        (
            {"provider": "anthropic", "options": {"anthropic_version": "v"}},
            "https://api.anthropic.com:443/v1/messages",
        ),
        (
            {
                "provider": "azure",
                "options": {"azure_instance": "inst", "azure_deployment_id": "dep"},
            },
            "https://inst.openai.azure.com:443/openai/deployments/dep/chat/completions"
            "?api-version=2023-05-15",
        ),
        (
            {"provider": "mistral", "options": {"mistral_format": "openai"}},
            "https://api.mistral.ai:443/v1/chat/completions",
        ),
        (
            {
                "provider": "llama2",
                "options": {"llama2_format": "ollama", "upstream_url": "http://ollama:11434/api"},
            },
            "http://ollama:11434/api",
        ),
    ],
)
def test_provider_urls(model: dict[str, Any], url: str) -> None:
    found = introspector(llm={"route_type": "llm/v1/chat", "model": model})
    assert provider_url(found.driver, found.model) == url


def test_the_introspector_shows_its_target() -> None:
    found = introspector(
        llm={
            "route_type": "llm/v1/chat",
            "auth": {"param_name": "k", "param_value": "v w", "param_location": "query"},
            "model": {
                "provider": "openai",
                "name": "m",
                "options": {"upstream_url": "http://h/p?a=1"},
            },
        }
    )
    assert repr(found) == "<Introspector ai-request-transformer openai/m http://h:80/p?a=1&k=v+w>"


def test_instructions() -> None:
    headers = [(b"content-type", b"application/json"), (b"x-up", b"1")]
    found = instructed(
        b'{"status": 418, "headers": {"X-Up": ["a", 2]}, "body": "tea"}', list(headers)
    )
    assert (found.status, found.body) == (418, b"tea")
    assert found.headers == [
        (b"content-type", b"application/json"),
        (b"x-up", b"a"),
        (b"x-up", b"2"),
    ]
    found = instructed(b'{"body": {"a": [1]}}', [])
    assert (found.status, found.body) == (200, b'{"a":[1]}')
    assert found.headers == [(b"content-type", b"application/json; charset=utf-8")]
    found = instructed(b"[1, 2]", [])  # a table without body: the table itself
    assert (found.status, found.body) == (200, b"[1,2]")
    found = instructed(b'{"status": 201.0, "body": false, "x": 1}', [])
    assert (found.status, json.loads(found.body)) == (201, {"status": 201.0, "body": False, "x": 1})


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"Sure, here you go", "Expected value but found invalid token at character 1"),
        (b"  \n", "Expected value but found T_END at character 4"),
        (b'"just a string"', "input not table or string"),
        (b"42", "input not table or string"),
    ],
)
def test_content_that_is_not_instructions(content: bytes, reason: str) -> None:
    with pytest.raises(NotInstructions) as info:
        instructed(content, [])
    assert str(info.value) == reason


@pytest.mark.parametrize(
    "content",
    [
        b'{"status": 99}',
        b'{"status": "200"}',
        b'{"status": true}',
        b'{"headers": "x"}',
        b'{"headers": {"x": {"y": 1}}}',
        b'{"body": 12}',
    ],
)
def test_instructions_kong_cannot_send(content: bytes) -> None:
    with pytest.raises(InstructionError):
        instructed(content, [])


def test_the_auth_secret_comes_from_a_vault_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    """The llm record's auth fields are referenceable (Kong's): the worker's plugin sends the
    secret; the config keeps the reference."""
    from fastkong.config import load_config  # noqa: PLC0415
    from fastkong.runtime import compile_runtime  # noqa: PLC0415

    monkeypatch.setenv("LLM_KEY", "Bearer s3cret")
    llm = {
        **OPENAI,
        "auth": {"header_name": "Authorization", "header_value": "{vault://env/llm-key}"},
    }
    doc = {
        "_format_version": "3.0",
        "plugins": [{"name": "ai-response-transformer", "config": {"prompt": "p", "llm": llm}}],
    }
    loaded = load_config(json.dumps(doc)).config
    assert "s3cret" not in json.dumps(loaded.plugins[0].config)
    runtime = compile_runtime(loaded, "1")
    (plugin,) = runtime.plugins.by_name["ai-response-transformer"].values()
    assert ("Authorization", "Bearer s3cret") in plugin.llm.headers  # type: ignore[attr-defined]
