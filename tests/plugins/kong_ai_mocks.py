"""Loopback twins of the servers Kong's AI plugin specs (spec/03-plugins/39..43) run, for
``test_kong_ai_*``: Kong's ``mock_upstream`` (the parts those specs read: ``post_data.text``,
``post_data.params``) and the specs' ``http_mock`` LLM servers, answering Kong's own fixture
files (``spec/fixtures/ai-proxy/**``, copied under ``kong_ai_fixtures/`` with Kong's names)."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

from tests.helpers import HttpRequest, LoopServer, read_request

#: The request body the transformer specs (39, 40) send, and what doubling its numbers gives.
REQUEST_BODY = b"""
  {
    "persons": [
      {
        "name": "Kong A",
        "age": 31
      },
      {
        "name": "Kong B",
        "age": 42
      }
    ]
  }
"""
DOUBLED = {"persons": [{"age": 62, "name": "Kong A"}, {"age": 84, "name": "Kong B"}]}
#: What the response-transformer specs' LLM asks the gateway to answer (as XML).
XML_BODY = """<persons>
  <person>
    <name>Kong A</name>
    <age>62</age>
  </person>
  <person>
    <name>Kong B</name>
    <age>84</age>
  </person>
</persons>"""
FIXTURES = Path(__file__).parent / "kong_ai_fixtures"

REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 500: "Internal Server Error"}


def fixture(name: str) -> bytes:
    """Kong's ``spec/fixtures/ai-proxy/<name>``."""
    return (FIXTURES / name).read_bytes()


async def _write(writer: asyncio.StreamWriter, status: int, content_type: str, body: bytes) -> None:
    writer.write(
        f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}\r\ncontent-type: {content_type}\r\n"
        f"content-length: {len(body)}\r\n\r\n".encode()
        + body
    )
    await writer.drain()


class _Peer(LoopServer):
    """Answers each request of a kept-alive connection with :meth:`answer`; keeps them all."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[HttpRequest] = []

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request = await read_request(reader)
                self.requests.append(request)
                await _write(writer, *self.answer(request))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def answer(self, request: HttpRequest) -> tuple[int, str, bytes]:
        raise NotImplementedError


class MockUpstream(_Peer):
    """Kong's ``mock_upstream`` echo, as far as these specs read it: the request's method,
    path and headers, and ``post_data``: its body as ``text`` and, when it is JSON, decoded as
    ``params``."""

    def answer(self, request: HttpRequest) -> tuple[int, str, bytes]:
        text = request.body.decode("utf-8", "replace")
        try:
            params = json.loads(text) if text else None
        except ValueError:
            params = None
        echoed = {
            "method": request.method,
            "uri": request.target,
            "headers": request.lowered,
            "post_data": {"text": text, "params": params},
        }
        return 200, "application/json", json.dumps(echoed).encode()


#: The LLM answers of 39/40-*/02-integration_spec.lua's ``http_mock``: location -> (status,
#: content type, fixture). ``/flat`` and ``/instructions`` are nginx's ``~`` (regex) locations.
INTEGRATION_ANSWERS: dict[str, tuple[int, str, str]] = {
    "/flat": (200, "application/json", "openai/request-transformer/response-in-json.json"),
    "/geminiflat": (200, "application/json", "gemini/request-transformer/response-in-json.json"),
    "/instructions": (
        200,
        "application/json",
        "openai/request-transformer/response-with-instructions.json",
    ),
    "/badinstructions": (
        200,
        "application/json",
        "openai/request-transformer/response-with-bad-instructions.json",
    ),
    "/badrequest": (400, "application/json", "openai/llm-v1-chat/responses/bad_request.json"),
    "/failssafety": (200, "application/json", "gemini/llm-v1-chat/responses/fails_safety.json"),
    "/internalservererror": (
        500,
        "text/html",
        "openai/llm-v1-chat/responses/internal_server_error.html",
    ),
}

_CHAT = re.compile(r"/chat/(?P<provider>[a-z0-9]+)")


class MockLlm(_Peer):
    """The specs' LLM: :data:`INTEGRATION_ANSWERS` by path, and 39-*/01-transformer_spec.lua's
    ``~/chat/<provider>`` (an auth check, then the provider's ``response-in-json.json``) and
    ``~/not-json``."""

    def answer(self, request: HttpRequest) -> tuple[int, str, bytes]:
        path = request.target.split("?", 1)[0]
        if path in INTEGRATION_ANSWERS:
            status, content_type, name = INTEGRATION_ANSWERS[path]
            return status, content_type, fixture(name)
        if "/not-json" in path:
            return (
                200,
                "application/json",
                fixture("openai/request-transformer/response-not-json.json"),
            )
        found = _CHAT.search(path)
        if found is None:
            return 404, "text/plain", b"not found"
        provider = found["provider"]
        body: Any = None
        try:
            body = json.loads(request.body)
        except ValueError:
            pass
        if request.lowered.get("authorization") != f"Bearer {provider}-key":
            return 401, "application/json", b'{"error": "unauthorized"}'
        if not isinstance(body, dict) or ("messages" in body and body["messages"] is None):
            return 400, "application/json", b'{"error": "bad request"}'
        return (
            200,
            "application/json",
            fixture(f"{provider}/request-transformer/response-in-json.json"),
        )
