"""ai-prompt-decorator's schema and decoration (Kong's spec/03-plugins/41-ai-prompt-decorator)."""

from __future__ import annotations

from typing import Any

from fastkong.plugins.bundled.ai_prompt_decorator import decorate
from tests.helpers import plugin_config, plugin_config_errors


def load(config: dict[str, Any]) -> dict[str, Any]:
    loaded: dict[str, Any] = plugin_config("ai-prompt-decorator", config)
    return loaded


def errors(config: dict[str, Any]) -> list[str]:
    return plugin_config_errors("ai-prompt-decorator", config)


AT_LEAST_ONE = (
    "plugins[0]: at least one of these fields must be non-empty: "
    "'config.prompts.prepend', 'config.prompts.append'"
)


def test_defaults() -> None:
    assert load({"prompts": {"append": [{"content": "be brief"}]}}) == {
        "prompts": {"prepend": None, "append": [{"role": "system", "content": "be brief"}]},
        "max_request_body_size": 8192,
        "llm_format": "openai",
    }


def test_errors() -> None:
    assert errors({}) == [AT_LEAST_ONE]
    assert errors({"prompts": {"prepend": [], "append": []}}) == [AT_LEAST_ONE]
    many = [{"content": "x"}] * 16
    assert errors(
        {
            "prompts": {
                "prepend": many,
                "append": [
                    {"role": "tool", "content": ""},
                    {"role": None, "content": "x" * 501},
                    {"content": "x", "name": "n"},
                ],
            },
            "llm_format": "bedrock",
        }
    ) == [
        "plugins[0].config.prompts.prepend: length must be at most 15",
        "plugins[0].config.prompts.append[0].role: expected one of: system, assistant, user",
        "plugins[0].config.prompts.append[0].content: length must be at least 1",
        "plugins[0].config.prompts.append[1].role: required field missing",
        "plugins[0].config.prompts.append[1].content: length must be at most 500",
        "plugins[0].config.prompts.append[2].name: unknown field",
        "plugins[0].config.llm_format: fastkong implements llm_format 'openai' only",
    ]
    assert errors({"prompts": {"append": [{"role": "user"}]}}) == [
        "plugins[0].config.prompts.append[0].content: required field missing"
    ]


def m(role: str, content: str) -> dict[str, str]:
    return {"role": role, "content": content}


def test_order_and_other_fields() -> None:
    prepend = [m("system", "p1"), m("assistant", "p2")]
    append = [m("user", "a1"), m("system", "a2")]
    request = {"model": "gpt", "messages": [m("user", "q1"), m("assistant", "r1")], "n": 2}
    decorated = decorate(request, prepend, append)
    assert decorated == {
        "model": "gpt",
        "messages": [
            m("system", "p1"),
            m("assistant", "p2"),
            m("user", "q1"),
            m("assistant", "r1"),
            m("user", "a1"),
            m("system", "a2"),
        ],
        "n": 2,
    }
    assert request["messages"] == [m("user", "q1"), m("assistant", "r1")]  # left as it was
    assert decorate(request, [], append) == {**request, "messages": [*request["messages"], *append]}
    assert decorate(request, prepend, []) == {
        **request,
        "messages": [*prepend, *request["messages"]],
    }
    # the added messages are fresh per request
    assert decorated is not None
    assert decorated["messages"][0] is not prepend[0]


def test_not_a_chat_request() -> None:
    for request in ({}, {"prompt": "p"}, {"messages": []}, {"messages": {}}, {"messages": "x"}):
        assert decorate(request, [m("system", "s")], []) is None, request
