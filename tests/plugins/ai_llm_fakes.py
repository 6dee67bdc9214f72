"""A fake LLM on loopback for the AI transformer tests: ai-proxy's fake provider
(:class:`~tests.plugins.ai_proxy_fakes.FakeProvider`: request log, auth checks, OpenAI and
Anthropic answers), plus answers chosen by path, under ``/llm/<case>``, each derived from the
request's ``user`` message so that a test sees what the plugin sent:

``/llm/upper``          OpenAI chat: the user message upper-cased (its usage: 25 + 12 tokens)
``/llm/padded``         the same, between a sentence before and one after (extract patterns)
``/llm/instructions``   JSON instructions: status 201, two headers, the upper-cased message
``/llm/object``         JSON instructions whose body is an object
``/llm/bare``           a JSON object without ``body`` (the whole object is the body)
``/llm/prose``          text that is not JSON
``/llm/badstatus``      JSON instructions whose status is not a number
``/llm/status500``      a 500 with OpenAI's error shape
``/llm/bad``            a 200 whose JSON has no ``choices``
``/llm/slow``           answers after 2 s
``/llm/anthropic/...``  Anthropic's Messages API: its text block is the upper-cased message
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tests.plugins.ai_proxy_fakes import OPENAI_CHAT, FakeProvider

OPENAI_KEY = "Bearer openai-key"
ANTHROPIC_KEY = "anthropic-key"
PADDING = ("Sure! Here is the result:\n", "\nAnything else?")
INSTRUCTION_HEADERS = {"x-llm-said": "yes", "content-type": "text/plain"}


def user_message(body: Any) -> str:
    """The ``user`` message of an OpenAI or Anthropic chat request."""
    for message in (body or {}).get("messages", []):
        if message.get("role") == "user":
            return str(message.get("content"))
    return ""


def chat_answer(content: str) -> dict[str, Any]:
    answer = json.loads(json.dumps(OPENAI_CHAT))
    answer["choices"][0]["message"]["content"] = content
    return answer


class FakeLlm(FakeProvider):
    def __init__(self, ssl: Any = None) -> None:
        super().__init__()
        self.ssl = ssl  # (read when the server starts)

    def last(self, case: str) -> dict[str, Any]:
        """The last request that asked for ``/llm/<case>``."""
        return next(r for r in reversed(self.requests) if r["target"].startswith(f"/llm/{case}"))

    async def _answer(self, request: dict[str, Any], writer: asyncio.StreamWriter) -> None:
        path = request["target"].split("?", 1)[0]
        if not path.startswith("/llm/"):
            await super()._answer(request, writer)
            return
        headers = request["headers"]
        case = path[len("/llm/") :]
        body = request["body"] if isinstance(request["body"], dict) else {}
        text = user_message(body).upper()
        if case.startswith("anthropic/"):
            if headers.get("x-api-key") != ANTHROPIC_KEY:
                await self._json(writer, 401, {"type": "error"})
                return
            answer = {
                "content": [{"text": text, "type": "text"}],
                "model": "claude-2.1",
                "stop_reason": "end_turn",
                "usage": {"input_tokens": 7, "output_tokens": 3},
            }
            await self._json(writer, 200, answer)
            return
        if (
            headers.get("authorization") != OPENAI_KEY
            and "apikey=openai-key" not in (request["target"])
        ):
            await self._json(writer, 401, {"error": {"message": "no key"}})
            return
        if case == "slow":
            await asyncio.sleep(2)
        if case == "status500":
            await self._json(writer, 500, {"error": {"message": "overloaded"}})
        elif case == "bad":
            await self._json(writer, 200, {"nothing": "here"})
        elif case == "padded":
            await self._json(writer, 200, chat_answer(PADDING[0] + text + PADDING[1]))
        elif case == "instructions":
            instructions = {"status": 201, "headers": INSTRUCTION_HEADERS, "body": text}
            await self._json(writer, 200, chat_answer(json.dumps(instructions)))
        elif case == "object":
            instructions = {"status": 202, "body": {"length": len(text)}}
            await self._json(writer, 200, chat_answer(json.dumps(instructions)))
        elif case == "bare":
            await self._json(writer, 200, chat_answer(json.dumps({"length": len(text)})))
        elif case == "badstatus":
            await self._json(writer, 200, chat_answer(json.dumps({"status": "teapot"})))
        elif case == "prose":
            await self._json(writer, 200, chat_answer("I would rather not."))
        else:
            await self._json(writer, 200, chat_answer(text))


def llm_config(url: str, provider: str = "openai", **extra: Any) -> dict[str, Any]:
    """An ``llm`` record for the fake: OpenAI's auth header, or Anthropic's key and version."""
    options: dict[str, Any] = {"upstream_url": url, **extra.pop("options", {})}
    if provider == "anthropic":
        auth: dict[str, Any] = {"header_name": "x-api-key", "header_value": ANTHROPIC_KEY}
        options.setdefault("anthropic_version", "2023-06-01")
    else:
        auth = {"header_name": "Authorization", "header_value": OPENAI_KEY}
    return {
        "route_type": "llm/v1/chat",
        "auth": extra.pop("auth", auth),
        "model": {"provider": provider, "name": extra.pop("name", "gpt-4"), "options": options},
        **extra,
    }


def transformer(name: str, url: str, provider: str = "openai", **config: Any) -> dict[str, Any]:
    """A plugin entry of ``ai-request-transformer`` or ``ai-response-transformer``."""
    llm = llm_config(url, provider, **config.pop("llm", {}))
    prompt = config.pop("prompt", "Rewrite this in capitals.")
    return {"name": name, "config": {"prompt": prompt, "llm": llm, **config}}
