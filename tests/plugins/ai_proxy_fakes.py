"""A fake LLM provider on loopback for the ai-proxy tests, answering like OpenAI, Azure OpenAI
and Anthropic, with the shapes of Kong's spec fixtures (``spec/fixtures/ai-proxy``, Kong 3.9.1).
"""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.helpers import LoopServer, read_request

# Kong's spec/fixtures/ai-proxy/openai/llm-v1-chat/responses/good.json
OPENAI_CHAT = {
    "choices": [
        {
            "finish_reason": "stop",
            "index": 0,
            "message": {"content": "The sum of 1 + 1 is 2.", "role": "assistant"},
        }
    ],
    "created": 1701947430,
    "id": "chatcmpl-8T6YwgvjQVVnGbJ2w8hpOA17SeNy2",
    "model": "gpt-3.5-turbo-0613",
    "object": "chat.completion",
    "system_fingerprint": None,
    "usage": {"completion_tokens": 12, "prompt_tokens": 25, "total_tokens": 37},
}
# .../openai/llm-v1-completions/responses/good.json: id, model, object and text as there,
# the other fields filled in
OPENAI_COMPLETIONS = {
    "choices": [
        {
            "finish_reason": "length",
            "index": 0,
            "logprobs": None,
            "text": "\n\nI am a language model AI created by OpenAI. I can answer questions",
        }
    ],
    "created": 1701967000,
    "id": "cmpl-8TBeaJVQIhE9kHEJbk1RnKzgFxIqN",
    "model": "gpt-3.5-turbo-instruct",
    "object": "text_completion",
    "usage": {"completion_tokens": 16, "prompt_tokens": 4, "total_tokens": 20},
}
OPENAI_UNAUTHORIZED = {
    "error": {
        "code": "invalid_api_key",
        "message": "Incorrect API key provided: wro****ey.",
        "param": None,
        "type": "invalid_request_error",
    }
}
# .../anthropic/llm-v1-chat/responses/good.json
ANTHROPIC_CHAT = {
    "content": [{"text": "The sum of 1 + 1 is 2.", "type": "text"}],
    "model": "claude-2.1",
    "stop_reason": "end_turn",
    "stop_sequence": "string",
    "usage": {"input_tokens": 0, "output_tokens": 0},
}
# .../anthropic/llm-v1-completions/responses/good.json
ANTHROPIC_COMPLETE = {
    "completion": " Hello! My name is Claude.",
    "stop_reason": "stop_sequence",
    "model": "claude-2.1",
}
ANTHROPIC_UNAUTHORIZED = {
    "type": "error",
    "error": {"type": "authentication_error", "message": "Invalid API Key"},
}
# .../openai/llm-v1-chat/requests/good.json
CHAT_REQUEST = {
    "messages": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What is 1 + 1?"},
    ],
    "stream": False,
}

OPENAI_STREAM = [
    b'data: {"id":"c1","object":"chat.completion.chunk","model":"gpt-4","choices":'
    b'[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}\n\n',
    b'data: {"id":"c1","object":"chat.completion.chunk","model":"gpt-4","choices":'
    b'[{"index":0,"delta":{"content":"The answer"},"finish_reason":null}]}\n\n',
    b'data: {"id":"c1","object":"chat.completion.chunk","model":"gpt-4","choices":'
    b'[{"index":0,"delta":{"content":" is 2."},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n',
]
ANTHROPIC_STREAM = [
    b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","type":'
    b'"message","role":"assistant","content":[],"model":"claude-2.1","stop_reason":null,'
    b'"usage":{"input_tokens":25,"output_tokens":1}}}\n\n'
    b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
    b'"content_block":{"type":"text","text":""}}\n\n'
    b'event: ping\ndata: {"type": "ping"}\n\n',
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":'
    b'{"type":"text_delta","text":"The sum"}}\n\n',
    # One event cut across two chunks.
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"del',
    b'ta":{"type":"text_delta","text":" is 2."}}\n\n'
    b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
    b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn",'
    b'"stop_sequence":null},"usage":{"output_tokens":11}}\n\n'
    b'event: message_stop\ndata: {"type":"message_stop"}\n\n',
]


class FakeProvider(LoopServer):
    """Answers by path like the providers do, checking their auth; keeps every request (method,
    target, headers, decoded JSON body). A stream waits, after its first part, until the test
    sets :attr:`release` (so that a test can see the first part arrive alone)."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[dict[str, Any]] = []
        self.release = threading.Event()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                got = await read_request(reader)
                raw = got.body
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode()
                request = {
                    "method": got.method,
                    "target": got.target,
                    "headers": got.lowered,
                    "body": body,
                }
                self.requests.append(request)
                await self._answer(request, writer)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass  # (cancelled: the server is stopping)
        finally:
            writer.close()

    async def _answer(self, request: dict[str, Any], writer: asyncio.StreamWriter) -> None:
        parts = urlsplit(request["target"])
        path = parts.path
        query = parse_qs(parts.query)
        headers = request["headers"]
        body = request["body"] if isinstance(request["body"], dict) else {}
        anthropic = path.startswith("/v1/messages") or path.startswith("/v1/complete")
        if anthropic:
            authorized = headers.get("x-api-key") == "anthropic-key"
        elif path.startswith("/openai/deployments/"):
            authorized = headers.get("api-key") == "azure-key"
        else:
            authorized = (
                headers.get("authorization") == "Bearer openai-key"
                or query.get("apikey") == ["openai-key"]
                or body.get("apikey") == "openai-key"
            )
        if not authorized:
            await self._json(
                writer, 401, ANTHROPIC_UNAUTHORIZED if anthropic else OPENAI_UNAUTHORIZED
            )
            return
        if path.endswith("/bad"):
            await self._json(writer, 200, {"nothing": "here"}, b"set-cookie: a=b\r\n")
        elif body.get("stream"):
            await self._stream(writer, ANTHROPIC_STREAM if anthropic else OPENAI_STREAM)
        elif path.startswith("/v1/messages"):
            await self._json(writer, 200, ANTHROPIC_CHAT)
        elif path.startswith("/v1/complete"):
            await self._json(writer, 200, ANTHROPIC_COMPLETE)
        elif path.endswith("/completions") and "chat" not in path:
            await self._json(writer, 200, OPENAI_COMPLETIONS)
        else:
            await self._json(writer, 200, OPENAI_CHAT, b"set-cookie: a=b\r\n")

    @staticmethod
    async def _json(
        writer: asyncio.StreamWriter, status: int, payload: Any, extra: bytes = b""
    ) -> None:
        data = json.dumps(payload, indent=2).encode()
        reason = b"OK" if status == 200 else b"Unauthorized"
        writer.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\n%scontent-length: %d\r\n\r\n%s"
            % (status, reason, extra, len(data), data)
        )
        await writer.drain()

    async def _stream(self, writer: asyncio.StreamWriter, parts: list[bytes]) -> None:
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
        )
        for i, part in enumerate(parts):
            writer.write(b"%x\r\n%s\r\n" % (len(part), part))
            await writer.drain()
            if i == 0:
                loop = asyncio.get_running_loop()
                await loop.run_in_executor(None, self.release.wait, 10)
        writer.write(b"0\r\n\r\n")
        await writer.drain()
