"""ai-prompt-guard's schema and decisions (Kong's spec/03-plugins/42-ai-prompt-guard)."""

from __future__ import annotations

from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from fastkong.plugins.bundled.ai_prompt_guard import (
    BAD_FORMAT,
    BLOCKED,
    NOT_ALLOWED,
    AiPromptGuardConfig,
    Guard,
    collect_prompts,
)
from tests.helpers import plugin_config, plugin_config_errors


def load(config: dict[str, Any]) -> dict[str, Any]:
    loaded: dict[str, Any] = plugin_config("ai-prompt-guard", config)
    return loaded


def errors(config: dict[str, Any]) -> list[str]:
    return plugin_config_errors("ai-prompt-guard", config)


def guard(**config: Any) -> Guard:
    return Guard(msgspec.convert(config, AiPromptGuardConfig))


def chat(*messages: tuple[str, Any]) -> dict[str, Any]:
    return {"messages": [{"role": role, "content": content} for role, content in messages]}


# -- schema ------------------------------------------------------------------------------------
def test_defaults() -> None:
    assert load({"deny_patterns": ["a"]}) == {
        "allow_patterns": None,
        "deny_patterns": ["a"],
        "allow_all_conversation_history": False,
        "max_request_body_size": 8192,
        "match_all_roles": False,
        "llm_format": "openai",
    }


def test_entity_checks() -> None:
    at_least_one = (
        "plugins[0]: at least one of these fields must be non-empty: "
        "'config.allow_patterns', 'config.deny_patterns'"
    )
    assert errors({}) == [at_least_one]
    assert errors({"allow_patterns": [], "deny_patterns": []}) == [at_least_one]
    assert errors(
        {"deny_patterns": ["a"], "match_all_roles": True, "allow_all_conversation_history": True}
    ) == [
        "plugins[0].config.allow_all_conversation_history: value must be false",
        "plugins[0]: failed conditional validation given value of field 'config.match_all_roles'",
    ]


def test_field_errors() -> None:
    assert errors(
        {
            "allow_patterns": ["", "x" * 501, "(?R)", "a("],
            "deny_patterns": ["a"] * 11,
            "max_request_body_size": 0,
            "llm_format": "gemini",
            "match_all_roles": None,
            "extra": 1,
        }
    ) == [
        "plugins[0].config.allow_patterns[0]: length must be at least 1",
        "plugins[0].config.allow_patterns[1]: length must be at most 500",
        "plugins[0].config.allow_patterns[2]: not a valid regex: (?R) (fastkong: recursion and "
        "subroutine calls are not supported)",
        "plugins[0].config.allow_patterns[3]: not a valid regex: a(",
        "plugins[0].config.deny_patterns: length must be at most 10",
        "plugins[0].config.max_request_body_size: value must be greater than 0",
        "plugins[0].config.llm_format: fastkong implements llm_format 'openai' only",
        "plugins[0].config.match_all_roles: required field missing",
        "plugins[0].config.extra: unknown field",
    ]
    assert errors({"deny_patterns": ["a"], "llm_format": "x"}) == [
        "plugins[0].config.llm_format: expected one of: openai, bedrock, gemini"
    ]


# -- what is checked ---------------------------------------------------------------------------
def test_collect_latest_first_with_separators() -> None:
    request = chat(("system", "s"), ("user", "one"), ("assistant", "a"), ("user", "two"))
    assert collect_prompts(request, False, False) == "two one "
    assert collect_prompts(request, True, False) == "two"
    assert collect_prompts(request, False, True) == "two a one s "
    assert collect_prompts(chat(("system", "s")), False, False) == ""
    assert collect_prompts({"messages": {"a": 1}}, False, False) == ""


def test_collect_completions_and_bad_shapes() -> None:
    assert collect_prompts({"prompt": "p"}, False, False) == "p"
    # messages wins over prompt when it is an array or an object
    assert collect_prompts({"messages": [], "prompt": "p"}, False, False) == ""
    assert collect_prompts({"messages": "x", "prompt": "p"}, False, False) == "p"
    for bad in (
        {},
        {"prompt": 1},
        {"messages": [{"content": "no role"}]},
        {"messages": [{"role": "system", "content": 1}, {"role": 1, "content": "x"}]},
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "parts"}]}]},
        {"messages": ["text"]},
        {"messages": [None]},
    ):
        assert collect_prompts(bad, False, False) is None, bad
    # a non-string content of a role that is not checked does not matter
    assert collect_prompts(chat(("system", 1), ("user", "u")), False, False) == "u "
    assert guard(deny_patterns=["x"]).refusal({}) == BAD_FORMAT


def test_deny_then_allow() -> None:
    g = guard(allow_patterns=["pa..ern"], deny_patterns=["deny match"])
    assert g.refusal(chat(("user", "a pattern"))) is None
    assert g.refusal(chat(("user", "no match"))) == NOT_ALLOWED
    assert g.refusal(chat(("user", "pattern deny match"))) == BLOCKED
    assert g.refusal({"prompt": "this pattern"}) is None
    # history: an old allowed message lets a new one through, unless only the latest counts
    history = chat(("user", "pattern"), ("user", "no match"))
    assert g.refusal(history) is None
    latest = guard(allow_patterns=["pa..ern"], allow_all_conversation_history=True)
    assert latest.refusal(history) == NOT_ALLOWED
    # other roles count only with match_all_roles
    system = chat(("system", "pattern"), ("user", "no match"))
    assert g.refusal(system) == NOT_ALLOWED
    assert guard(allow_patterns=["pa..ern"], match_all_roles=True).refusal(system) is None


def test_patterns_are_pcre_on_the_utf8_bytes() -> None:
    # the separator joins messages, so a pattern can span two of them
    assert guard(deny_patterns=["two one"]).refusal(chat(("user", "one"), ("user", "two")))
    assert guard(deny_patterns=["^b $"]).refusal(chat(("user", "b"))) == BLOCKED
    assert guard(deny_patterns=[r"\Aa\z"]).refusal(chat(("user", "a"))) is None
    # byte mode: 'é' is two bytes, '.' one of them
    assert guard(deny_patterns=["^caf..$"]).refusal({"prompt": "café"}) == BLOCKED
    assert guard(deny_patterns=["^caf.$"]).refusal({"prompt": "café"}) is None
    assert guard(deny_patterns=["é"]).refusal({"prompt": "café"}) == BLOCKED
    assert guard(deny_patterns=["(?i)IGNORE previous"]).refusal({"prompt": "ignore Previous"})


# -- against a naive reference ----------------------------------------------------------------
ROLES = ("user", "system", "assistant")
words = st.text(alphabet="abc", min_size=1, max_size=3)
messages = st.lists(
    st.tuples(st.sampled_from(ROLES), st.text(alphabet="abc ", max_size=8)), max_size=6
)


def reference(
    msgs: list[tuple[str, str]], allow: list[str], deny: list[str], latest: bool, all_roles: bool
) -> bool:
    """Allowed? Patterns are literal words without spaces, so none spans two messages."""
    checked = [content for role, content in msgs if role == "user" or all_roles]
    if latest:
        checked = checked[-1:]
    if any(w in c for c in checked for w in deny):
        return False
    return not allow or any(w in c for c in checked for w in allow)


@settings(max_examples=300, deadline=None)
@given(
    msgs=messages,
    allow=st.lists(words, max_size=3),
    deny=st.lists(words, max_size=3),
    history=st.sampled_from([(False, False), (True, False), (False, True)]),
)
def test_matches_the_reference(
    msgs: list[tuple[str, str]], allow: list[str], deny: list[str], history: tuple[bool, bool]
) -> None:
    latest, all_roles = history
    g = guard(
        allow_patterns=allow,
        deny_patterns=deny,
        allow_all_conversation_history=latest,
        match_all_roles=all_roles,
    )
    refusal = g.refusal(chat(*msgs))
    assert (refusal is None) == reference(msgs, allow, deny, latest, all_roles)
    assert refusal in (None, BLOCKED, NOT_ALLOWED)
