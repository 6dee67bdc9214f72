"""A fake LLM provider on loopback playing Gemini (and Google's OAuth token endpoint), Cohere,
Hugging Face and Amazon Bedrock for the ai-proxy tests, with the answer shapes of their APIs
(and of Kong's spec fixtures, Kong 3.9.1).

Each request is recorded. Auth is checked as the provider checks it: Gemini's API key (query
``key`` or ``x-goog-api-key``) or a bearer token this fake's token endpoint issued, which in turn
verifies the service account's RS256 JWT with the account's public key; Cohere's and Hugging
Face's bearer keys; Bedrock's SigV4 signature, verified with the tests' own signer
(:func:`tests.plugins.aws_fakes.verify`). Streams go out chunked, cut at places that split
events (and, for Bedrock, binary event-stream messages, framed here by :func:`event_message`,
written from AWS's description of the encoding).
"""

from __future__ import annotations

import asyncio
import base64
import json
import struct
import zlib
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.helpers import LoopServer, read_request
from tests.plugins.aws_fakes import Received, verify

GEMINI_KEY = "gemini-key"
COHERE_KEY = "cohere-key"
HF_KEY = "hf-key"
AWS_REGION = "eu-west-1"
AWS_KEYS = {"AKIDFAKE": ("fake/secret", None), "ASIATEMP": ("temp/secret", "session-token")}

# Gemini: generateContent's answer (the shape of Kong's unit real-responses/gemini fixture).
GEMINI_ANSWER = {
    "candidates": [
        {
            "content": {"parts": [{"text": "The sum of 1 + 1 is 2."}], "role": "model"},
            "finishReason": "STOP",
            "index": 0,
            "safetyRatings": [
                {"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"}
            ],
        }
    ],
    "usageMetadata": {"promptTokenCount": 14, "candidatesTokenCount": 9, "totalTokenCount": 23},
}
GEMINI_TOOL_ANSWER = {
    "candidates": [
        {
            "content": {
                "parts": [{"functionCall": {"name": "add", "args": {"a": 1, "b": 1}}}],
                "role": "model",
            },
            "finishReason": "STOP",
        }
    ],
    "usageMetadata": {"promptTokenCount": 20, "candidatesTokenCount": 5, "totalTokenCount": 25},
}
GEMINI_BAD_KEY = {
    "error": {
        "code": 400,
        "message": "API key not valid. Please pass a valid API key.",
        "status": "INVALID_ARGUMENT",
    }
}


def _gemini_element(text: str, prompt: int, completion: int, finish: str | None = None) -> Any:
    candidate: dict[str, Any] = {"content": {"parts": [{"text": text}], "role": "model"}}
    if finish:
        candidate["finishReason"] = finish
    return {
        "candidates": [candidate],
        "usageMetadata": {
            "promptTokenCount": prompt,
            "candidatesTokenCount": completion,
            "totalTokenCount": prompt + completion,
        },
    }


def _cut(data: bytes, *at: int) -> list[bytes]:
    """``data`` in pieces, cut at the given offsets."""
    bounds = [0, *at, len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False) if b > a]


# Google streams one JSON array, pretty-printed, element by element ("]" inside a string).
_GEMINI_TEXT = json.dumps(
    [
        _gemini_element("The sum [of]", 14, 3),
        _gemini_element(' 1 + 1 is "2".', 14, 8),
        _gemini_element("", 14, 9, "STOP"),
    ],
    indent=2,
).encode()
GEMINI_STREAM = _cut(_GEMINI_TEXT, 7, 150, 400, len(_GEMINI_TEXT) - 1)

COHERE_CHAT = {
    "response_id": "3ed9cd6c",
    "text": "The sum of 1 + 1 is 2.",
    "generation_id": "f8aabbeb-f745",
    "finish_reason": "COMPLETE",
    "meta": {
        "api_version": {"version": "1"},
        "billed_units": {"input_tokens": 81, "output_tokens": 9},
    },
}
COHERE_GENERATE = {
    "id": "c14c80c3",
    "generations": [{"id": "g1", "text": " Because it is undefined.", "finish_reason": "COMPLETE"}],
    "prompt": "Why can't you divide by zero?",
    "meta": {
        "api_version": {"version": "1"},
        "billed_units": {"input_tokens": 7, "output_tokens": 5},
    },
}
_COHERE_LINES = b"".join(
    json.dumps(line).encode() + b"\n"
    for line in [
        {"is_finished": False, "event_type": "stream-start", "generation_id": "gen-1"},
        {"is_finished": False, "event_type": "text-generation", "text": "The sum"},
        {"is_finished": False, "event_type": "text-generation", "text": " is 2."},
        {
            "is_finished": True,
            "event_type": "stream-end",
            "finish_reason": "COMPLETE",
            "response": {
                "generation_id": "gen-1",
                "text": "The sum is 2.",
                "meta": {"billed_units": {"input_tokens": 12, "output_tokens": 4}},
            },
        },
    ]
)
COHERE_STREAM = _cut(_COHERE_LINES, 40, 120)
COHERE_UNAUTHORIZED = {"message": "invalid api token"}

# Hugging Face: Kong's huggingface fixtures' shapes.
HF_CHAT = {
    "object": "chat.completion",
    "id": "",
    "created": 1722866733,
    "model": "mistralai/Mistral-7B-Instruct-v0.2",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": " The sum of 1 + 1 is 2."},
            "logprobs": None,
            "finish_reason": "eos_token",
        }
    ],
    "usage": {"prompt_tokens": 26, "completion_tokens": 40, "total_tokens": 66},
}
HF_GENERATED = [{"generated_text": "I am a language model AI created by Mistral AI"}]
HF_LOADING = {
    "error": "Model mistralai/Mistral-7B-Instruct-v0.2 is currently loading",
    "estimated_time": 305.6863708496094,
}
HF_UNAUTHORIZED = {"error": "Authorization header is correct, but the token seems invalid"}
_HF_SSE = (
    b"".join(
        b"data: " + json.dumps(event).encode() + b"\n\n"
        for event in [
            {
                "object": "chat.completion.chunk",
                "model": "tgi",
                "choices": [{"delta": {"role": "assistant", "content": "The sum"}}],
            },
            {
                "object": "chat.completion.chunk",
                "model": "tgi",
                "choices": [{"delta": {"content": " is 2."}}],
            },
        ]
    )
    + b"data: [DONE]\n\n"
)
HF_STREAM = _cut(_HF_SSE, 30, 140)

BEDROCK_ANSWER = {
    "metrics": {"latencyMs": 1200},
    "output": {"message": {"content": [{"text": "The sum of 1 + 1 is 2."}], "role": "assistant"}},
    "stopReason": "end_turn",
    "usage": {"inputTokens": 19, "outputTokens": 11, "totalTokens": 30},
}
BEDROCK_DENIED = {
    "message": "The request signature we calculated does not match the signature you provided."
}


def event_message(headers: list[tuple[str, str]], payload: bytes) -> bytes:
    """One ``application/vnd.amazon.eventstream`` message with string headers: the total and
    headers lengths and their CRC32, the headers, the payload, the CRC32 of everything."""
    head = b"".join(
        bytes([len(k.encode())])
        + k.encode()
        + b"\x07"
        + struct.pack(">H", len(v.encode()))
        + v.encode()
        for k, v in headers
    )
    total = 12 + len(head) + len(payload) + 4
    prelude = struct.pack(">II", total, len(head))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    message = prelude + head + payload
    return message + struct.pack(">I", zlib.crc32(message))


def bedrock_event(kind: str, body: dict[str, Any]) -> bytes:
    headers = [
        (":event-type", kind),
        (":content-type", "application/json"),
        (":message-type", "event"),
    ]
    return event_message(headers, json.dumps({**body, "p": "abcdef"}).encode())


_BEDROCK_EVENTS = b"".join(
    [
        bedrock_event("messageStart", {"role": "assistant"}),
        bedrock_event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "The sum"}}),
        bedrock_event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": " is 2."}}),
        bedrock_event("contentBlockStop", {"contentBlockIndex": 0}),
        bedrock_event("messageStop", {"stopReason": "max_tokens"}),
        bedrock_event(
            "metadata",
            {"usage": {"inputTokens": 15, "outputTokens": 6, "totalTokens": 21}, "metrics": {}},
        ),
    ]
)
# Cut inside a prelude, inside headers and inside a payload.
BEDROCK_STREAM = _cut(_BEDROCK_EVENTS, 5, 100, 250, 251, 400)


class FakeAi(LoopServer):
    """The providers on one port, told apart by path."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[Received] = []
        #: Bedrock signature problems (None for a request that verified).
        self.signature_errors: list[str | None] = []
        self.account_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.tokens_issued: list[str] = []
        self.assertions: list[dict[str, Any]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                got = await read_request(reader)
                request = Received(got.method, got.target, got.headers, got.body)
                self.requests.append(request)
                await self._answer(request, writer)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _answer(self, request: Received, writer: asyncio.StreamWriter) -> None:
        path = request.path
        if path == "/token":
            await _send(writer, *self._token(request))
        elif ":generateContent" in path or ":streamGenerateContent" in path:
            await self._gemini(request, writer)
        elif path in ("/v1/chat", "/v1/generate"):
            await self._cohere(request, writer)
        elif path.startswith("/models/"):
            await self._huggingface(request, writer)
        elif path.startswith("/model/"):
            await self._bedrock(request, writer)
        else:
            await _send(writer, 404, {"message": "no such path"})

    # -- Google --------------------------------------------------------------------------------

    def _token(self, request: Received) -> tuple[int, Any]:
        form = parse_qs(request.body.decode())
        if form.get("grant_type") != ["urn:ietf:params:oauth:grant-type:jwt-bearer"]:
            return 400, {"error": "unsupported_grant_type"}
        header_b64, claims_b64, signature_b64 = form["assertion"][0].split(".")
        try:
            self.account_key.public_key().verify(
                _unb64(signature_b64),
                f"{header_b64}.{claims_b64}".encode(),
                padding.PKCS1v15(),
                hashes.SHA256(),
            )
        except InvalidSignature:
            return 400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
        header = json.loads(_unb64(header_b64))
        claims = json.loads(_unb64(claims_b64))
        self.assertions.append({"header": header, "claims": claims})
        if header.get("alg") != "RS256" or claims.get("aud") != f"{self.url}/token":
            return 400, {"error": "invalid_grant"}
        token = f"ya29.token-{len(self.tokens_issued) + 1}"
        self.tokens_issued.append(token)
        return 200, {"access_token": token, "expires_in": 3599, "token_type": "Bearer"}

    async def _gemini(self, request: Received, writer: asyncio.StreamWriter) -> None:
        query = parse_qs(urlsplit(request.target).query)
        bearer = (request.header("authorization") or "").removeprefix("Bearer ")
        if not (
            query.get("key") == [GEMINI_KEY]
            or request.header("x-goog-api-key") == GEMINI_KEY
            or bearer in self.tokens_issued
        ):
            await _send(writer, 400, GEMINI_BAD_KEY)
        elif ":streamGenerateContent" in request.path:
            await _stream(writer, "application/json; charset=UTF-8", GEMINI_STREAM)
        elif "tools" in request.json():
            await _send(writer, 200, GEMINI_TOOL_ANSWER, (("Set-Cookie", "g=1"),))
        else:
            await _send(writer, 200, GEMINI_ANSWER, (("Set-Cookie", "g=1"),))

    # -- Cohere, Hugging Face ------------------------------------------------------------------

    async def _cohere(self, request: Received, writer: asyncio.StreamWriter) -> None:
        if request.header("authorization") != f"Bearer {COHERE_KEY}":
            await _send(writer, 401, COHERE_UNAUTHORIZED)
        elif request.json().get("stream"):
            await _stream(writer, "application/stream+json", COHERE_STREAM)
        else:
            answer = COHERE_CHAT if request.path == "/v1/chat" else COHERE_GENERATE
            await _send(writer, 200, answer, (("Set-Cookie", "c=1"),))

    async def _huggingface(self, request: Received, writer: asyncio.StreamWriter) -> None:
        if request.header("authorization") != f"Bearer {HF_KEY}":
            await _send(writer, 401, HF_UNAUTHORIZED)
        elif "loading" in request.path:
            await _send(writer, 503, HF_LOADING)
        elif request.json().get("stream"):
            await _stream(writer, "text/event-stream", HF_STREAM)
        elif request.path.endswith("/v1/chat/completions"):
            await _send(writer, 200, HF_CHAT)
        else:
            await _send(writer, 200, HF_GENERATED)

    # -- Bedrock -------------------------------------------------------------------------------

    async def _bedrock(self, request: Received, writer: asyncio.StreamWriter) -> None:
        problem = verify(request, AWS_KEYS, AWS_REGION, "bedrock")
        self.signature_errors.append(problem)
        if problem is not None:
            await _send(
                writer, 403, BEDROCK_DENIED, (("x-amzn-ErrorType", "InvalidSignatureException"),)
            )
        elif request.path.endswith("/converse-stream") and "whole" in request.query:
            # The same stream sent with a length, not chunked.
            data = b"".join(BEDROCK_STREAM)
            head = "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.amazon.eventstream\r\n"
            writer.write(f"{head}Content-Length: {len(data)}\r\n\r\n".encode() + data)
            await writer.drain()
        elif request.path.endswith("/converse-stream"):
            await _stream(writer, "application/vnd.amazon.eventstream", BEDROCK_STREAM)
        else:
            await _send(writer, 200, BEDROCK_ANSWER, (("Set-Cookie", "b=1"),))


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


async def _send(
    writer: asyncio.StreamWriter,
    status: int,
    payload: Any,
    extra: tuple[tuple[str, str], ...] = (),
) -> None:
    data = json.dumps(payload, indent=2).encode()
    head = [
        f"HTTP/1.1 {status} X",
        "Content-Type: application/json",
        *(f"{k}: {v}" for k, v in extra),
    ]
    head.append(f"Content-Length: {len(data)}")
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + data)
    await writer.drain()


async def _stream(writer: asyncio.StreamWriter, content_type: str, parts: list[bytes]) -> None:
    head = f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nTransfer-Encoding: chunked"
    writer.write(head.encode() + b"\r\n\r\n")
    for part in parts:
        writer.write(b"%x\r\n%s\r\n" % (len(part), part))
        await writer.drain()
        await asyncio.sleep(0.01)  # each part its own read on the gateway's side
    writer.write(b"0\r\n\r\n")
    await writer.drain()
