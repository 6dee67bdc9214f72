"""Kong's spec/03-plugins/38-ai-proxy/00-config_spec.lua (identical in Kong 3.9.1 and 3.10),
in process: each config goes through fastkong's declarative config loader, as Kong's
``validate_plugin_config_schema`` runs the plugin schema.

Ported: lines 62-87 (no auth needed for self-hosted mistral and llama2), 192-214 (header pair
set), 240-263 (param triple set), 265-290 (header and param together), 292-346
(``allow_override`` refused for bedrock and gemini), 348-404 (native ``llm_format`` needs
``llm/v1/chat``), 406-510 (native ``llm_format`` needs its own provider).

Covered by test_ai_proxy_units (same checks, same messages): lines 29-60 for llama2
(``test_providers_need_their_options``), 91-114 and 144-167 (``anthropic_version``,
``azure_instance``: same test), 116-142, 169-190 and 216-238 (statistics on anthropic
completions, the header pair, the param triple: ``test_entity_checks``).

Left out: lines 29-60 for mistral (``pending`` in Kong: mistral.ai has a managed service).

fastkong implements no native ``llm_format`` (docs/plugins.md, "ai-proxy": "An ``llm_format``
other than ``openai`` ... is refused at load"): where Kong accepts a native format, the
documented refusal is asserted.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from fastkong.config import ConfigError, load_config

OPTIONS = {"max_tokens": 256, "temperature": 1.0, "upstream_url": "http://nowhere"}
ALL_AUTH = {
    "param_name": "apikey",
    "param_value": "key",
    "param_location": "query",
    "header_name": "Authorization",
    "header_value": "Bearer token",
}


def validate(config: dict[str, Any]) -> dict[str, Any] | None:
    """Kong's ``validate``: None when the config is valid, else the plugin's errors."""
    doc = {"_format_version": "3.0", "plugins": [{"name": "ai-proxy", "config": config}]}
    try:
        load_config(yaml.safe_dump(doc))
    except ConfigError as exc:
        found: dict[str, Any] = exc.fields()["plugins"][0]
        return found
    return None


def chat(provider: str, name: str | None = None, **extra: Any) -> dict[str, Any]:
    config = {
        "route_type": "llm/v1/chat",
        "model": {"name": name or provider, "provider": provider, "options": dict(OPTIONS)},
    }
    config.update(extra)
    return config


@pytest.mark.parametrize(
    ("provider", "option"),
    [("mistral", {"mistral_format": "ollama"}), ("llama2", {"llama2_format": "raw"})],
)
def test_does_not_require_api_auth_for_self_hosted_model(
    provider: str, option: dict[str, str]
) -> None:
    config = chat(provider, "llama-2-7b-chat-hf")
    config["model"]["options"].update(option)
    assert validate(config) is None


@pytest.mark.parametrize(
    "auth",
    [
        {"header_name": "Authorization", "header_value": "Bearer token"},
        {"param_name": "apikey", "param_value": "key", "param_location": "query"},
        ALL_AUTH,
    ],
    ids=["header", "param", "header-and-param"],
)
def test_complete_auth_is_accepted(auth: dict[str, str]) -> None:
    assert validate(chat("openai", auth=auth)) is None


@pytest.mark.parametrize("provider", ["bedrock", "gemini"])
def test_model_can_not_support_auth_allow_override(provider: str) -> None:
    err = validate(chat(provider, auth={**ALL_AUTH, "allow_override": True}))
    assert err is not None
    # Kong's message (kong/llm/schemas/init.lua:258-263 in 3.9.1)
    assert err["config"]["@entity"] == [
        "bedrock and gemini only support auth.allow_override = false"
    ]


def test_native_llm_format_can_only_use_llm_v1_chat_route_type() -> None:
    config = chat("gemini", auth={**ALL_AUTH, "allow_override": False}, llm_format="gemini")
    config["route_type"] = "llm/v1/completions"
    err = validate(config)
    assert err is not None
    assert err["@entity"][0] == (
        "native provider options in llm_format can only be used with the 'llm/v1/chat' route_type"
    )
    assert err["config"]["route_type"] == "value must be llm/v1/chat"
    # Kong accepts it on llm/v1/chat; fastkong refuses every native llm_format at load
    # (docs/plugins.md, "ai-proxy").
    config["route_type"] = "llm/v1/chat"
    assert validate(config) == {
        "config": {
            "llm_format": "llm_format 'gemini' is not implemented by fastkong's ai-proxy "
            "(implemented: openai)"
        }
    }


@pytest.mark.parametrize("native", ["bedrock", "gemini"])
def test_native_llm_format_can_only_use_its_provider(native: str) -> None:
    err = validate(chat("openai", auth={**ALL_AUTH, "allow_override": False}, llm_format=native))
    assert err is not None
    assert err["@entity"][0] == (
        f"native llm_format '{native}' can only be used with the '{native}' model.provider"
    )
    assert err["config"]["model"]["provider"] == f"value must be {native}"
    # Kong accepts it with its own provider; fastkong refuses every native llm_format at load
    # (docs/plugins.md, "ai-proxy").
    err = validate(chat(native, auth={"allow_override": False}, llm_format=native))
    assert err == {
        "config": {
            "llm_format": f"llm_format '{native}' is not implemented by fastkong's ai-proxy "
            "(implemented: openai)"
        }
    }
