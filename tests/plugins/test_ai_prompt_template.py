"""ai-prompt-template's schema and rendering (Kong's spec/03-plugins/43-ai-prompt-template)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from fastkong.plugins.bundled._ai_prompt import cjson_escape
from fastkong.plugins.bundled.ai_prompt_template import render, template_name
from tests.helpers import plugin_config, plugin_config_errors


def load(config: dict[str, Any]) -> dict[str, Any]:
    loaded: dict[str, Any] = plugin_config("ai-prompt-template", config)
    return loaded


def errors(config: dict[str, Any]) -> list[str]:
    return plugin_config_errors("ai-prompt-template", config)


def test_schema() -> None:
    assert load({"templates": [{"name": "a", "template": "b"}]}) == {
        "templates": [{"name": "a", "template": "b"}],
        "allow_untemplated_requests": True,
        "log_original_request": False,
        "max_request_body_size": 8192,
    }
    assert load({"templates": []})["templates"] == []
    assert errors({}) == ["plugins[0].config.templates: required field missing"]
    assert errors(
        {
            "templates": [{"name": "", "x": 1}, "t"],
            "allow_untemplated_requests": None,
            "max_request_body_size": -1,
        }
    ) == [
        "plugins[0].config.templates[0].name: length must be at least 1",
        "plugins[0].config.templates[0].x: unknown field",
        "plugins[0].config.templates[0].template: required field missing",
        "plugins[0].config.templates[1]: expected a record",
        "plugins[0].config.allow_untemplated_requests: required field missing",
        "plugins[0].config.max_request_body_size: value must be greater than 0",
    ]


def test_template_name() -> None:
    assert template_name("{template://chat}") == "chat"
    assert template_name("{template://}") == ""
    assert template_name("{template://a}}") == "a}"
    for not_one in ("template://a", "{template://a", "{template:/a}", " {template://a}", 1, None):
        assert template_name(not_one) is None


CHAT = '{"messages":[{"role":"user","content":"Explain {{thing}} to a {{level}} in {{ lang }}"}]}'


def test_render() -> None:
    out, err = render(CHAT, {"thing": "JSON", "level": "child", "unused": "x"})
    assert err is None
    assert out == (
        '{"messages":[{"role":"user","content":"Explain JSON to a child in {{ lang }}"}]}'
    )
    # a placeholder used twice is filled twice; {{{x}}} keeps its extra braces
    assert render("{{a}}-{{a}}-{{{a}}}", {"a": "1"}) == ("1-1-{1}", None)


def test_missing_parameters_named_once_in_order() -> None:
    assert render("{{b}} {{a}} {{b}} {{c}}", {"c": "1"}) == (
        None,
        "missing template parameters: [b], [a]",
    )
    # a value that brings a placeholder in is missing too
    assert render("{{a}}", {"a": "{{z}}"}) == (None, "missing template parameters: [z]")


def test_properties_must_be_an_object_of_strings() -> None:
    assert render("x", {}) == ("x", None)
    assert render("x", []) == ("x", None)  # an empty array is an empty Lua table
    for bad in (None, "s", 1, True, ["a"]):
        assert render("x", bad) == (None, "properties must be an object"), bad
    for value, lua in ((1, "number"), (1.5, "number"), (True, "boolean"), (None, "userdata")):
        assert render("x", {"a": value}) == (None, f"property values must be a string, got {lua}")
    assert render("x", {"a": {}}) == (None, "property values must be a string, got table")
    assert render("x", {"a": []}) == (None, "property values must be a string, got table")


def test_values_are_escaped_as_cjson_does() -> None:
    value = 'say "hi"\\ / \n\t\r\b\f \x00\x1f\x7f é ☃ \u2028'
    out, err = render('{"content":"{{v}}"}', {"v": value})
    assert err is None
    assert out == (
        '{"content":"say \\"hi\\"\\\\ \\/ \\n\\t\\r\\b\\f \\u0000\\u001f\\u007f é ☃ \u2028"}'
    )
    assert out is not None
    assert json.loads(out)["content"] == value


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_escaped_values_stay_inside_their_json_string(value: str) -> None:
    assert json.loads(f'"{cjson_escape(value)}"') == value
    assert cjson_escape(value) == json.dumps(value, ensure_ascii=False)[1:-1].replace(
        "/", "\\/"
    ).replace("\x7f", "\\u007f")
