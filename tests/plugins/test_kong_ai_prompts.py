"""Kong's integration specs of ai-prompt-decorator, ai-prompt-guard and ai-prompt-template,
against one real gateway in front of a twin of Kong's ``mock_upstream``
(tests/plugins/kong_ai_mocks.py: it answers what it received as ``post_data.text`` and, for
JSON, ``post_data.params``).

Ported (Kong's mirror HEAD; unchanged since 3.9.1):

- spec/03-plugins/41-ai-prompt-decorator/02-integration_spec.lua 163-244 (3 cases): the body
  that reached the upstream. Left out of them: the ``ctx-checker-last`` header asserts (a
  custom test plugin showing Kong's internal ``ai_namespaced_ctx``; nothing of it reaches the
  client or the upstream);
- spec/03-plugins/42-ai-prompt-guard/02-integration_spec.lua 182-464 (8 cases). Its bad-regex
  cases (467-510) cannot be in this gateway's config: fastkong refuses such a pattern at config
  time (a documented difference), asserted in test_kong_ai_plugins_units;
- spec/03-plugins/43-ai-prompt-template/02-integration_spec.lua 123-423 (11 cases).

test_ai_prompt_gateway covers the same features with its own data; these keep Kong's.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.helpers import Gateway
from tests.plugins.kong_ai_mocks import MockUpstream

pytestmark = pytest.mark.integration


def prompt(role: str, content: str) -> dict[str, str]:
    return {"role": role, "content": content}


# -- the config: 41's routes by host, 42's by regex path, 43's by host -------------------------
def decorator(prepend: list[dict[str, str]], append: list[dict[str, str]]) -> dict[str, Any]:
    prompts = {k: v for k, v in (("prepend", prepend), ("append", append)) if v}
    return {"name": "ai-prompt-decorator", "config": {"prompts": prompts}}


DECORATORS = {
    "prepend.decorate.local": decorator(
        [prompt("system", "Prepend text 1 here."), prompt("system", "Prepend text 2 here.")], []
    ),
    "append.decorate.local": decorator(
        [], [prompt("assistant", "Append text 1 here."), prompt("user", "Append text 2 here.")]
    ),
    "both.decorate.local": decorator(
        [prompt("system", "Prepend text 1 here."), prompt("assistant", "Prepend text 2 here.")],
        [prompt("assistant", "Append text 3 here."), prompt("user", "Append text 4 here.")],
    ),
}
ALLOW = [".*cheddar.*", ".*brie.*"]
DENY = [".*leicester.*", ".*edam.*"]
#: regex path -> (allow_patterns, deny_patterns, allow_all_conversation_history)
GUARDS: dict[str, tuple[list[str] | None, list[str] | None, bool]] = {
    "~/permit-history$": (ALLOW, DENY, True),
    "~/block-history$": (ALLOW, DENY, False),
    "~/allow-only-permit-history$": (ALLOW, None, True),
    "~/allow-only-block-history$": (ALLOW, None, False),
    "~/deny-only-permit-history$": (None, DENY, True),
    "~/deny-only-block-history$": (None, DENY, False),
}
# Kong's templates, less their source indentation
CHAT_TEMPLATE = """
{
  "messages": [
    {
      "role": "system",
      "content": "You are a {{program}} expert, in {{language}} programming language."
    },
    {
      "role": "user",
      "content": "Write me a {{program}} program."
    }
  ]
}
"""
COMPLETIONS_TEMPLATE = """
{
  "prompt": "You are a {{language}} programming expert. Make me a {{program}} program."
}
"""
TEMPLATES = [
    {"name": "developer-chat", "template": CHAT_TEMPLATE},
    {"name": "developer-completions", "template": COMPLETIONS_TEMPLATE},
]


def guard(allow: list[str] | None, deny: list[str] | None, history: bool) -> dict[str, Any]:
    config: dict[str, Any] = {"allow_all_conversation_history": history}
    if allow:
        config["allow_patterns"] = allow
    if deny:
        config["deny_patterns"] = deny
    return {"name": "ai-prompt-guard", "config": config}


def config_routes() -> list[dict[str, Any]]:
    routes: list[dict[str, Any]] = [
        {"name": host, "hosts": [host], "plugins": [plugin]} for host, plugin in DECORATORS.items()
    ]
    routes += [
        {"name": path.strip("~/$"), "paths": [path], "plugins": [guard(*settings)]}
        for path, settings in GUARDS.items()
    ]
    for host, untemplated in (("test1.com", True), ("test2.com", False)):
        config = {"templates": TEMPLATES}
        if not untemplated:
            config["allow_untemplated_requests"] = False  # type: ignore[assignment]
        plugin = {"name": "ai-prompt-template", "config": config}
        routes.append({"name": host, "hosts": [host], "plugins": [plugin]})
    return routes


@pytest.fixture(scope="module")
def upstream() -> Iterator[MockUpstream]:
    server = MockUpstream().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gateway(gateway_with: Callable[[str], Gateway], upstream: MockUpstream) -> Gateway:
    config = {
        "_format_version": "3.0",
        "services": [
            {
                "name": "mock-upstream",
                "url": f"http://127.0.0.1:{upstream.port}",
                "routes": config_routes(),
            }
        ],
    }
    return gateway_with(json.dumps(config))


def send(
    gateway: Gateway,
    path: str,
    body: Any,
    host: str | None = None,
    content_type: str = "application/json",
) -> httpx.Response:
    """The specs' ``client:get(path, {headers = {host, Content-Type}, body, method})``."""
    content = body if isinstance(body, str) else json.dumps(body)
    headers = {"content-type": content_type}
    if host is not None:
        headers["host"] = host
    return httpx.post(gateway.url(path), headers=headers, content=content.encode())


def upstream_body(r: httpx.Response) -> Any:
    """The request body the upstream got (``post_data.text``), decoded."""
    assert r.status_code == 200, r.text
    return json.loads(r.json()["post_data"]["text"])


# -- 41-ai-prompt-decorator/02-integration_spec.lua --------------------------------------------
OPENAI_FLAT_CHAT = {
    "messages": [
        prompt("user", "I think that cheddar is the best cheese."),
        prompt("assistant", "No, brie is the best cheese."),
        prompt("user", "Why brie?"),
    ]
}


def decorated(gateway: Gateway, host: str) -> list[dict[str, str]]:
    r = httpx.request(
        "GET",
        gateway.url("/"),
        headers={"host": host, "content-type": "application/json"},
        content=json.dumps(OPENAI_FLAT_CHAT).encode(),
    )
    messages: list[dict[str, str]] = upstream_body(r)["messages"]
    return messages


def test_decorator_prepend(gateway: Gateway) -> None:
    """41: 163."""
    messages = decorated(gateway, "prepend.decorate.local")
    assert messages[0] == prompt("system", "Prepend text 1 here.")
    assert messages[1] == prompt("system", "Prepend text 2 here.")


def test_decorator_append(gateway: Gateway) -> None:
    """41: 189."""
    messages = decorated(gateway, "append.decorate.local")
    assert messages[-2] == prompt("assistant", "Append text 1 here.")
    assert messages[-1] == prompt("user", "Append text 2 here.")


def test_decorator_both(gateway: Gateway) -> None:
    """41: 216."""
    messages = decorated(gateway, "both.decorate.local")
    assert messages[0] == prompt("system", "Prepend text 1 here.")
    assert messages[1] == prompt("assistant", "Prepend text 2 here.")
    assert messages[-2] == prompt("assistant", "Append text 3 here.")
    assert messages[-1] == prompt("user", "Append text 4 here.")


# -- 42-ai-prompt-guard/02-integration_spec.lua ------------------------------------------------
def cheese_chat(first: str, reply: str, last: str) -> dict[str, Any]:
    return {
        "messages": [
            prompt("system", "You run a cheese shop."),
            prompt("user", first),
            prompt("assistant", reply),
            prompt("user", last),
        ]
    }


CHEDDAR_BRIE = cheese_chat(
    "I think that cheddar is the best cheese.", "No, brie is the best cheese.", "Why brie?"
)
BRIE_CHEDDAR = cheese_chat(
    "I think that brie is the best cheese.", "No, cheddar is the best cheese.", "Why cheddar?"
)
LEICESTER_CHEDDAR = cheese_chat(
    "I think that leicester is the best cheese.", "No, cheddar is the best cheese.", "Why cheddar?"
)


@pytest.mark.parametrize(
    ("line", "path", "body", "status"),
    [
        (182, "/permit-history", CHEDDAR_BRIE, 200),
        (217, "/block-history", CHEDDAR_BRIE, 200),
        (
            251,
            "/permit-history",
            cheese_chat(
                "I think that cheddar or edam are the best cheeses.",
                "No, brie is the best cheese.",
                "Why?",
            ),
            400,
        ),
        (287, "/allow-only-permit-history", BRIE_CHEDDAR, 200),
        (321, "/allow-only-block-history", BRIE_CHEDDAR, 200),
        # the bad phrase only in the history, which the developer "controls"
        (356, "/deny-only-permit-history", LEICESTER_CHEDDAR, 200),
        # the bad phrase in the latest message, which the user "controls"
        (
            393,
            "/deny-only-permit-history",
            cheese_chat(
                "I think that leicester is the best cheese.",
                "No, edam is the best cheese.",
                "Why edam?",
            ),
            400,
        ),
        # the bad phrase in the history, scanned as the Kong admins asked
        (430, "/deny-only-block-history", LEICESTER_CHEDDAR, 400),
    ],
    ids=lambda v: f"line{v}" if isinstance(v, int) and v > 99 else "",
)
def test_guard(gateway: Gateway, line: int, path: str, body: dict[str, Any], status: int) -> None:
    """42: the ``it`` at ``line``."""
    r = send(gateway, path, body)
    assert r.status_code == status, r.text
    if status == 200:
        assert upstream_body(r) == body  # the body is just an echo
    else:
        assert r.json() == {"error": {"message": "bad request"}}


# -- 43-ai-prompt-template/02-integration_spec.lua ---------------------------------------------
def template(
    gateway: Gateway, body: Any, host: str = "test1.com", content_type: str = "application/json"
) -> httpx.Response:
    return send(gateway, "/request", body, host, content_type)


FLASK = {"language": "python", "program": "flask web server"}
ARBITRARY = {"messages": [prompt("system", "Arbitrary content")]}


def refused(r: httpx.Response, message: str) -> None:
    assert r.status_code == 400, r.text
    assert r.json() == {"error": {"message": message}}


def test_templates_a_chat_message(gateway: Gateway) -> None:
    """43: 123."""
    r = template(gateway, {"messages": "{template://developer-chat}", "properties": FLASK})
    assert upstream_body(r) == {
        "messages": [
            prompt("system", "You are a flask web server expert, in python programming language."),
            prompt("user", "Write me a flask web server program."),
        ]
    }


def test_templates_a_completions_message(gateway: Gateway) -> None:
    """43: 159."""
    r = template(gateway, {"messages": "{template://developer-completions}", "properties": FLASK})
    assert upstream_body(r) == {
        "prompt": "You are a python programming expert. Make me a flask web server program."
    }


def test_blocks_when_allow_untemplated_requests_is_off(gateway: Gateway) -> None:
    """43: 186."""
    refused(
        template(gateway, ARBITRARY, "test2.com"), "this LLM route only supports templated requests"
    )


def test_does_not_block_when_allow_untemplated_requests_is_on(gateway: Gateway) -> None:
    """43: 216."""
    r = template(gateway, ARBITRARY)
    assert r.status_code == 200, r.text
    assert r.json()["post_data"]["params"] == ARBITRARY


@pytest.mark.parametrize(
    ("host", "body", "message"),
    [
        # 43: 249
        (
            "test2.com",
            {"messages": "{template://developer-doesnt-exist}", "properties": FLASK},
            "could not find template name [developer-doesnt-exist]",
        ),
        # 43: 278, with allow_untemplated_requests on
        (
            "test1.com",
            {"messages": "{template://not_found}"},
            "could not find template name [not_found]",
        ),
        # 43: 303
        (
            "test1.com",
            {"messages": "{template://developer-chat}", "properties": {"language": "python"}},
            "missing template parameters: [program]",
        ),
        # 43: 376
        (
            "test1.com",
            {"programmer": "hi"},
            "only 'llm/v1/chat' and 'llm/v1/completions' formats are supported for templating",
        ),
        # 43: 399
        (
            "test1.com",
            {
                "messages": "{template://developer-chat}",
                "prompt": "{template://developer-prompt}",
                "properties": {"nothing": "no"},
            },
            "cannot run 'messages' and 'prompt' templates at the same time",
        ),
    ],
)
def test_template_errors(gateway: Gateway, host: str, body: dict[str, Any], message: str) -> None:
    refused(template(gateway, body, host), message)


def test_errors_with_multiple_missing_template_parameters(gateway: Gateway) -> None:
    """43: 331."""
    r = template(
        gateway, {"messages": "{template://developer-chat}", "properties": {"nothing": "no"}}
    )
    assert r.status_code == 400, r.text
    assert re.match(r"^missing template parameters: \[.*\], \[.*\]", r.json()["error"]["message"])


def test_fails_with_non_json_request(gateway: Gateway) -> None:
    """43: 355."""
    r = template(gateway, "template: programmer, property: hi", content_type="text/plain")
    refused(r, "this LLM route only supports application/json requests")
