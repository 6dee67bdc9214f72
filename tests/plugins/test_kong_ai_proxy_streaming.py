"""Kong's ai-proxy streaming integration spec through one real gateway, against a twin of its
mock LLM server on loopback: ``spec/03-plugins/38-ai-proxy/09-streaming_integration_spec.lua``
(Kong 3.9.1; the mirror's HEAD differs only in the mock port's setup and the bedrock auth).

Ported (line numbers are 3.9.1's): the mock's locations (lines 82-399) as :class:`StreamMock`,
each ``ngx.print`` a chunk of its own; the routes and plugins (401-779, with
``AWS_REGION=us-east-1`` in the gateway's environment as Kong's ``helpers.setenv``); the cases
of "stream llm/v1/chat" (808):

- good stream request openai (809), with partial split chunks (874, with its log entry);
- good stream request cohere (964), anthropic (1028);
- bad request is returned to the client not-streamed (1092);
- good stream request gemini with function calls (1144), bedrock with function calls (1210).

The client reads the whole body, then splits it into lines as Kong's spec splits each read
(``[^\r\n]+``). fastkong ends ``data: [DONE]`` with a blank line (docs/plugins.md, "ai-proxy",
"Where fastkong differs from Kong"); blank lines are not counted, so the counts are Kong's.

Left out:

- "good stream request gemini with function calls and native format" (1283) and
  "... bedrock ... native format" (1338): the native ``llm_format``s are not implemented
  (docs/plugins.md, "ai-proxy": "An ``llm_format`` other than ``openai`` ... is refused at
  load"; "Not done: the native ``llm_format``s");
- each case's ``assert.logfile().has.no.line("/kong_buffered_http")``: a Kong internal (the nginx
  location ``enable_buffering`` goes through); fastkong's streams are relayed as they arrive;
- the ``file-log`` plugins writing to ``/dev/stdout``: nothing asserts their output.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import Gateway, LoopServer, free_port, read_request
from tests.plugins.kong_ai_mocks import fixture

pytestmark = pytest.mark.integration

PLUGIN_ID = "6e7c40f6-ce96-48e4-a366-d109c169e444"


def _openai_chunk(delta: str, finish: str = "null") -> str:
    """One of the spec's OpenAI events (its spacing kept)."""
    return (
        'data: {    "choices": [        {            "delta": ' + delta + ",            "
        '"finish_reason": ' + finish + ',            "index": 0,            "logprobs": null'
        '        }    ],    "created": 1712538905,    '
        '"id": "chatcmpl-9BXtBvU8Tsw1U7CarzV71vQEjvYwq",    "model": "gpt-4-0613",    '
        '"object": "chat.completion.chunk",    "system_fingerprint": null}'
    )


def _content(text: str) -> str:
    return '{                "content": "' + text + '"            }'


_ROLE = '{                "content": "",                "role": "assistant"            }'
_OPENAI_EVENTS = [
    _openai_chunk(_ROLE),
    _openai_chunk(_content("The ")) + "\n\n" + _openai_chunk(_content("answer ")),
    _openai_chunk(_content("to 1 + ")),
    _openai_chunk(_content("1 is ")) + "\n\n" + _openai_chunk(_content("2.")),
    _openai_chunk("{}", '"stop"'),
    "data: [DONE]",
]
# The partial location's chunks: its third event cut in two (lines 139-147).
_cut = _OPENAI_EVENTS[2].index("BXtBvU8Ts") + len("BXtBvU8Ts")
_PARTIAL_EVENTS = [
    *_OPENAI_EVENTS[:2],
    _OPENAI_EVENTS[2][:_cut],
    _OPENAI_EVENTS[2][_cut:],
    *_OPENAI_EVENTS[3:],
]

_COHERE_EVENTS = [
    '{"is_finished":false,"event_type":"stream-start","generation_id":"3f41d0ea-0d9c-4ecd-990a-88ba46ede663"}',
    *(
        '{"is_finished":false,"event_type":"text-generation","text":"' + t + '"}'
        for t in ("1", " +", " 1", " =", " 2")
    ),
    '{"is_finished":false,"event_type":"text-generation","text":"."}\n\n'
    '{"is_finished":false,"event_type":"text-generation","text":" This"}',
    '{"is_finished":false,"event_type":"text-generation","text":" is"}',
    '{"is_finished":false,"event_type":"text-generation","text":" the"}',
    '{"is_finished":false,"event_type":"text-generation","text":" most"}\n\n'
    '{"is_finished":false,"event_type":"text-generation","text":" basic"}',
    '{"is_finished":false,"event_type":"text-generation","text":" example"}\n\n'
    '{"is_finished":false,"event_type":"text-generation","text":" of"}\n\n'
    '{"is_finished":false,"event_type":"text-generation","text":" addition"}',
    '{"is_finished":false,"event_type":"text-generation","text":"."}',
    '{"is_finished":true,"event_type":"stream-end","response":{"response_id":'
    '"4658c450-4755-4454-8f9e-a98dd376b9ad","text":"1 + 1 = 2. This is the most basic example of '
    'addition.","generation_id":"3f41d0ea-0d9c-4ecd-990a-88ba46ede663","chat_history":[{"role":'
    '"USER","message":"What is 1 + 1?"},{"role":"CHATBOT","message":"1 + 1 = 2. This is the most '
    "basic example of addition, an arithmetic operation that involves combining two or more "
    "numbers together to find their sum. In this case, the numbers being added are both 1, and the "
    "answer is 2, meaning 1 + 1 = 2 is an algebraic equation that shows the relationship between "
    "these two numbers when added together. This equation is often used as an example of the "
    "importance of paying close attention to details when doing math problems, because it is "
    "surprising to some people that something so trivial as adding 1 + 1 could ever equal "
    'anything other than 2."}],"meta":{"api_version":{"version":"1"},"billed_units":'
    '{"input_tokens":57,"output_tokens":123},"tokens":{"input_tokens":68,"output_tokens":123}}},'
    '"finish_reason":"COMPLETE"}',
]

_ANTHROPIC_EVENTS = [
    (
        "message_start",
        '{"type":"message_start","message":{"id":"msg_013NVLwA2ypoPDJAxqC3G7wg",'
        '"type":"message","role":"assistant","model":"claude-2.1","stop_sequence":null,"usage":'
        '{"input_tokens":15,"output_tokens":1},"content":[],"stop_reason":null}          }',
    ),
    (
        "content_block_start",
        '{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}    }',
    ),
    ("ping", '{"type": "ping"}'),
    *(
        (
            "content_block_delta",
            '{"type":"content_block_delta","index":0,"delta":'
            '{"type":"text_delta","text":"' + t + '"}' + pad + "}",
        )
        for t, pad in (
            ("1", "       "),
            (" +", "               "),
            (" 1", "               "),
            (" =", "               "),
            (" 2", "               "),
        )
    ),
    ("content_block_stop", '{"type":"content_block_stop","index":0           }'),
    (
        "message_delta",
        '{"type":"message_delta","delta":{"stop_reason":"end_turn",'
        '"stop_sequence":null},"usage":{"output_tokens":9}}',
    ),
    ("message_stop", '{"type":"message_stop"}'),
]

_GEMINI_CHUNKS = [
    '[{\r\n  "candidates": [\r\n    {\r\n      "content": {\r\n        "role": "model",\r\n'
    '        "parts": [\r\n          {\r\n            "functionCall": {\r\n'
    '              "name": "add",\r\n              "args": {\r\n                "a": 2,\r\n'
    '                "b": 12\r\n              }\r\n            }\r\n          }\r\n        ]\r\n'
    "      },\r\n",
    '      "finishReason": "STOP",\r\n      "safetyRatings": [\r\n'
    + ",\r\n".join(
        "        {\r\n"
        f'          "category": "{cat}",\r\n'
        '          "probability": "NEGLIGIBLE",\r\n'
        f'          "probabilityScore": {ps},\r\n'
        '          "severity": "HARM_SEVERITY_NEGLIGIBLE",\r\n'
        f'          "severityScore": {ss}\r\n'
        "        }"
        for cat, ps, ss in (
            ("HARM_CATEGORY_HATE_SPEECH", "0.10498047", "0.09423828"),
            ("HARM_CATEGORY_DANGEROUS_CONTENT", "0.23535156", "0.13378906"),
            ("HARM_CATEGORY_HARASSMENT", "0.15917969", "0.09814453"),
            ("HARM_CATEGORY_SEXUALLY_EXPLICIT", "0.09033203", "0.087402344"),
        )
    )
    + '\r\n      ]\r\n    }\r\n  ],\r\n  "usageMetadata": {\r\n    "promptTokenCount": 47,\r\n'
    '    "candidatesTokenCount": 3,\r\n    "totalTokenCount": 50,\r\n'
    '    "promptTokensDetails": [\r\n      {\r\n        "modality": "TEXT",\r\n'
    '        "tokenCount": 47\r\n      }\r\n    ],\r\n    "candidatesTokensDetails": [\r\n'
    '      {\r\n        "modality": "TEXT",\r\n        "tokenCount": 3\r\n      }\r\n    ]\r\n'
    '  },\r\n  "modelVersion": "gemini-1.5-pro-001",\r\n'
    '  "createTime": "2025-02-20T21:58:56.381597Z",\r\n'
    '  "responseId": "oKW3Z52lF4762PgP4P6i4Ak"\r\n}',
    "]",
]

_BAD_REQUEST = fixture("openai/llm-v1-chat/responses/bad_request.json")
_UNAUTHORIZED = fixture("openai/llm-v1-chat/responses/unauthorized.json")


class StreamMock(LoopServer):
    """The spec's ``http_mock`` ``streams`` server: each ``ngx.print`` is a chunk of its own."""

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                got = await read_request(reader)
                status, ctype, chunks = self.answer(got.target, got.lowered, got.body)
                head = b"HTTP/1.1 %d X\r\nContent-Type: %s\r\nTransfer-Encoding: chunked\r\n\r\n"
                writer.write(head % (status, ctype))
                for chunk in chunks:
                    if chunk:
                        writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                        await writer.drain()
                writer.write(b"0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    @staticmethod
    def answer(path: str, headers: dict[str, str], raw: bytes) -> tuple[int, bytes, list[bytes]]:
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = None
        fields = body if isinstance(body, dict) else {}
        no_messages = not isinstance(body, dict) or (
            "messages" in fields and fields["messages"] is None
        )
        sse = b"text/event-stream"
        if path == "/gemini/llm/v1/chat/functions/good":
            return 200, b"application/json", [f"{c}\n\n".encode() for c in _GEMINI_CHUNKS]
        if path == "/bedrock/llm/v1/chat/functions/good":
            chunks = [base64.b64decode(fixture(f"bedrock/chunks/chunk-{i}.txt")) for i in (1, 2, 3)]
            return 200, b"application/vnd.amazon.eventstream", chunks
        keys = {
            "/openai/llm/v1/chat/good": ("authorization", "Bearer openai-key", "openai-key"),
            "/openai/llm/v1/chat/partial": ("authorization", "Bearer openai-key", "openai-key"),
            "/openai/llm/v1/chat/bad": ("authorization", "Bearer openai-key", "openai-key"),
            "/cohere/llm/v1/chat/good": ("authorization", "Bearer cohere-key", "cohere-key"),
            "/anthropic/llm/v1/chat/good": ("api-key", "anthropic-key", "anthropic-key"),
        }
        if path not in keys:
            return 404, b"text/html", [b"<html>404 Not Found</html>"]
        header, value, key = keys[path]
        if headers.get(header) != value and fields.get("apikey") != key:
            return 401, b"application/json", [_UNAUTHORIZED]
        if no_messages:
            return 400, b"application/json", [_BAD_REQUEST]
        if path == "/openai/llm/v1/chat/good":
            return 200, sse, [f"{e}\n\n".encode() for e in _OPENAI_EVENTS]
        if path == "/openai/llm/v1/chat/partial":
            nexts = [*_PARTIAL_EVENTS[1:], "data:"]
            return (
                200,
                sse,
                [
                    (e if not n.startswith("data:") else f"{e}\n\n").encode()
                    for e, n in zip(_PARTIAL_EVENTS, nexts, strict=True)
                ],
            )
        if path == "/cohere/llm/v1/chat/good":
            return 200, sse, [f"{e}\n\n".encode() for e in _COHERE_EVENTS]
        if path == "/anthropic/llm/v1/chat/good":
            return (
                200,
                sse,
                [f"event: {name}\ndata: {data}\n\n".encode() for name, data in _ANTHROPIC_EVENTS],
            )
        # /openai/llm/v1/chat/bad: ngx.say
        return 400, b"application/json", [b'{"error": { "message": "failure of some kind" }}\n']


@pytest.fixture(scope="module")
def mock() -> Iterator[StreamMock]:
    server = StreamMock().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def log_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ai-stream-log") / "with-payloads.log"


def ai_proxy(
    provider: str, name: str, url: str, auth: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    options = {"max_tokens": 256, "temperature": 1.0, "upstream_url": url}
    options.update(extra.pop("options", {}))
    config = {
        "route_type": "llm/v1/chat",
        "auth": auth,
        "model": {"name": name, "provider": provider, "options": options},
        **extra,
    }
    return {"name": "ai-proxy", "config": config}


@pytest.fixture(scope="module")
def gateway(
    mock: StreamMock, log_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    base = f"http://127.0.0.1:{mock.port}"
    openai_auth = {"header_name": "Authorization", "header_value": "Bearer openai-key"}
    costs = {"input_cost": 10.0, "output_cost": 10.0}
    stats = {"log_payloads": False, "log_statistics": True}
    tools = {"max_tokens": 512, "temperature": 0.6, "input_cost": 20.0, "output_cost": 20.0}
    partial = ai_proxy(
        "openai",
        "gpt-3.5-turbo",
        f"{base}/openai/llm/v1/chat/partial",
        openai_auth,
        options=costs,
        logging={"log_payloads": True, "log_statistics": True},
    )
    partial["id"] = PLUGIN_ID
    routes: dict[str, list[dict[str, Any]]] = {
        "/openai/llm/v1/chat/good": [
            ai_proxy(
                "openai",
                "gpt-3.5-turbo",
                f"{base}/openai/llm/v1/chat/good",
                openai_auth,
                options=costs,
            )
        ],
        "/openai/llm/v1/chat/partial": [
            partial,
            {"name": "file-log", "config": {"path": str(log_path)}},
        ],
        "/cohere/llm/v1/chat/good": [
            ai_proxy(
                "cohere",
                "command",
                f"{base}/cohere/llm/v1/chat/good",
                {"header_name": "Authorization", "header_value": "Bearer cohere-key"},
                options=costs,
            )
        ],
        "/anthropic/llm/v1/chat/good": [
            ai_proxy(
                "anthropic",
                "claude-2.1",
                f"{base}/anthropic/llm/v1/chat/good",
                {"header_name": "api-key", "header_value": "anthropic-key"},
                options={**costs, "anthropic_version": "2023-06-01"},
            )
        ],
        "/openai/llm/v1/chat/bad": [
            ai_proxy(
                "openai",
                "gpt-3.5-turbo",
                f"{base}/openai/llm/v1/chat/bad",
                openai_auth,
                options=costs,
            )
        ],
        "/gemini/llm/v1/chat/functions/good": [
            ai_proxy(
                "gemini",
                "gemini-1.5-flash",
                f"{base}/gemini/llm/v1/chat/functions/good",
                {"header_name": "x-goog-api-key", "header_value": "123", "allow_override": False},
                options=tools,
                logging=stats,
            )
        ],
        "/bedrock/llm/v1/chat/functions/good": [
            ai_proxy(
                "bedrock",
                "aws-titan-v1:0",
                f"{base}/bedrock/llm/v1/chat/functions/good",
                {
                    "allow_override": False,
                    "aws_access_key_id": "mock-key",
                    "aws_secret_access_key": "mock-secret",
                },
                options=tools,
                logging=stats,
            )
        ],
    }
    config = {
        "_format_version": "3.0",
        # Kong's empty_service (localhost:8080): never asked, the plugin sets the target.
        "services": [
            {
                "name": "empty_service",
                "url": f"http://127.0.0.1:{free_port()}/",
                "routes": [
                    {
                        "name": path.strip("/").replace("/", "-"),
                        "paths": [path],
                        "protocols": ["http"],
                        "strip_path": True,
                        "plugins": plugins,
                    }
                    for path, plugins in routes.items()
                ],
            }
        ],
    }
    gw = Gateway(tmp_path_factory.mktemp("gateway"), json.dumps(config))
    try:
        with pytest.MonkeyPatch.context() as env:
            env.setenv("AWS_REGION", "us-east-1")  # Kong's helpers.setenv, read at start
            gw.start()
        yield gw
    finally:
        gw.stop()


def stream(gateway: Gateway, path: str, fixture_path: str) -> tuple[httpx.Response, list[str]]:
    """Kong's resty.http request (a GET with the fixture as body); the answer's non-empty
    lines."""
    with httpx.stream(
        "GET",
        gateway.url(path),
        content=fixture(fixture_path),
        headers={"content-type": "application/json", "accept": "application/json"},
        timeout=10,
    ) as r:
        body = b"".join(r.iter_raw()).decode()
    return r, re.findall(r"[^\r\n]+", body)


def decode_event(line: str) -> Any:
    """``cjson.safe.decode(string.sub(s, 7))``: None for what is not JSON."""
    try:
        return json.loads(line[6:])
    except ValueError:
        return None


def delta_text(lines: list[str]) -> str:
    out = ""
    for line in lines:
        event = decode_event(line)
        try:
            out += event["choices"][0]["delta"]["content"] or ""
        except (TypeError, KeyError, IndexError):
            pass
    return out


OPENAI_STREAM = "openai/llm-v1-chat/requests/good-stream.json"


def test_good_stream_request_openai(gateway: Gateway) -> None:
    _, lines = stream(gateway, "/openai/llm/v1/chat/good", OPENAI_STREAM)
    assert len(lines) == 8, lines
    assert delta_text(lines) == "The answer to 1 + 1 is 2."


def test_good_stream_request_openai_with_partial_split_chunks(
    gateway: Gateway, log_path: Path
) -> None:
    before = len(log_path.read_text().splitlines()) if log_path.exists() else 0
    _, lines = stream(gateway, "/openai/llm/v1/chat/partial", OPENAI_STREAM)
    assert len(lines) == 8, lines
    assert delta_text(lines) == "The answer to 1 + 1 is 2."
    deadline = time.monotonic() + 10
    while not (log_path.exists() and len(log_path.read_text().splitlines()) > before):
        assert time.monotonic() < deadline, "no log entry"
        time.sleep(0.05)
    entry = json.loads(log_path.read_text().splitlines()[before])
    assert entry["client_ip"] == "127.0.0.1"
    assert isinstance(entry["request"]["size"], int)
    assert isinstance(entry["response"]["size"], int)
    stats = entry["ai"]["proxy"]
    latency = stats["meta"]["llm_latency"]
    time_per_token = stats["usage"]["time_per_token"]
    payload = stats.pop("payload")
    stats["meta"]["llm_latency"] = 1
    stats["usage"]["time_per_token"] = 1
    assert stats == {
        "meta": {
            "plugin_id": PLUGIN_ID,
            "provider_name": "openai",
            "request_model": "gpt-3.5-turbo",
            "response_model": "gpt-3.5-turbo",
            "llm_latency": 1,
        },
        "usage": {
            "prompt_tokens": 18,
            # Kong's spec expects 13 (and 31, 0.00031): its streaming filters run again on the
            # last, empty body chunk and add the previous chunk's text to the count a second
            # time (a Kong bug whose figure depends on how the stream was cut). fastkong counts
            # the answer's 25 characters once: ceil(25 / 4) = 7 (docs/plugins.md, ai-proxy).
            "completion_tokens": 7,
            "total_tokens": 25,
            "time_per_token": 1,
            "cost": 0.00025,
        },
    }
    assert latency >= 0
    assert f"{time_per_token:.3f}" == f"{latency / 7:.3f}"
    assert re.match(r".*content.*What is 1 \+ 1.*", payload["request"], re.S)
    assert re.match(r".*content.*The answer.*", payload["response"], re.S)


@pytest.mark.parametrize(
    ("path", "fixture_path", "count", "text"),
    [
        (
            "/cohere/llm/v1/chat/good",
            "cohere/llm-v1-chat/requests/good-stream.json",
            17,
            "1 + 1 = 2. This is the most basic example of addition.",
        ),
        (
            "/anthropic/llm/v1/chat/good",
            "anthropic/llm-v1-chat/requests/good-stream.json",
            8,
            "1 + 1 = 2",
        ),
    ],
    ids=["cohere", "anthropic"],
)
def test_good_stream_request_translated(
    gateway: Gateway, path: str, fixture_path: str, count: int, text: str
) -> None:
    _, lines = stream(gateway, path, fixture_path)
    assert len(lines) == count, lines
    assert delta_text(lines) == text


def test_bad_request_is_returned_to_the_client_not_streamed(gateway: Gateway) -> None:
    r, lines = stream(gateway, "/openai/llm/v1/chat/bad", OPENAI_STREAM)
    assert len(lines) == 1, lines
    assert r.status_code == 400


FUNCTIONS = "openai/llm-v1-chat/requests/good-stream-with-functions.json"


def test_good_stream_request_gemini_with_function_calls(gateway: Gateway) -> None:
    r, lines = stream(gateway, "/gemini/llm/v1/chat/functions/good", FUNCTIONS)
    assert r.status_code == 200
    name = args = None
    for line in lines:
        event = decode_event(line)
        if isinstance(event, dict) and event.get("choices"):
            # Kong's spec indexes these without a check: every such event has a tool call.
            call = event["choices"][0]["delta"]["tool_calls"][0]["function"]
            name, args = call["name"], call["arguments"]
    assert name == "add"
    assert isinstance(args, str)
    assert json.loads(args) == {"a": 2, "b": 12}


def test_good_stream_request_bedrock_with_function_calls(gateway: Gateway) -> None:
    _, lines = stream(gateway, "/bedrock/llm/v1/chat/functions/good", FUNCTIONS)
    name, args = None, ""
    for line in lines:
        event = decode_event(line)
        try:
            call = event["choices"][0]["delta"]["tool_calls"][0]["function"]
        except (TypeError, KeyError, IndexError):
            continue
        name = call.get("name") or name
        args += call.get("arguments") or ""
    assert name == "add"
    assert json.loads(args) == {"a": 2, "b": 12}
