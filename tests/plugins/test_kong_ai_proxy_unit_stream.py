"""The stream parsers of Kong's spec/03-plugins/38-ai-proxy/01-unit_spec.lua (identical in Kong
3.9.1 and 3.10), in process, against Kong's ``unit/real-stream-frames`` and
``unit/streaming-chunk-formats`` fixtures (copied in tests/plugins/kong_ai_fixtures/unit).

Kong's ``frame_to_events`` (kong/llm/drivers/shared.lua) is fastkong's
:class:`StreamParser` (SSE, JSON lines, or Gemini's JSON array, told apart by the stream's
first character where Kong is told by the ``Content-Type``) and :class:`EventStreamParser`
(AWS); Kong's ``json_array_iterator`` is :class:`JsonArraySplitter`, which keeps its own state
(Kong's ``gemini_state``) and adds ``[DONE]`` when the array closes (Kong's ``frame_to_events``
adds it then), left out of the element lists compared here.

Ported (the spec's second ``describe`` block, lines 1366-2259, runs the same cases again):
lines 775-806 (a real stream frame of openai and cohere, chat and completions, through the
driver), 857-993 (Gemini's array split over two and three chunks, its beginning and end,
JSON lines, SSE, AWS event stream), 2261-2505 (``json_array_iterator``).

Adapted: fastkong ends an SSE event at its blank line and a JSON line at its newline, and
joins one cut across chunks rather than guessing it whole (docs/plugins.md, "ai-proxy": "a
stream event cut across chunks is joined rather than guessed at"): where Kong takes an
unterminated line for a whole event (the openai real-stream frames, complete-json's last
line), the parser is told the stream has ended (``last=True``). Kong's AWS events are
``{"headers", "body"}`` encoded; fastkong's carry the ``:event-type`` header as the event and
the body as the data, compared field by field. Kong's iterator raises on a text that is not
an array; fastkong's splitter takes nothing from it, which is asserted.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fastkong.plugins.bundled._llm_bedrock import EventStreamParser
from fastkong.plugins.bundled._llm_drivers import ALL_DRIVERS
from fastkong.plugins.bundled._llm_shared import (
    SSE_TERMINATOR,
    JsonArraySplitter,
    ModelInfo,
    StreamEvent,
    StreamParser,
)

UNIT = Path(__file__).parent / "kong_ai_fixtures" / "unit"
CHUNKS = UNIT / "streaming-chunk-formats"


def as_kong(events: list[StreamEvent]) -> list[dict[str, str]]:
    """Events as Kong's tables: ``event`` and ``data``, nil ones left out."""
    return [
        {k: v for k, v in (("event", e.event), ("data", e.data)) if v is not None} for e in events
    ]


# -- STREAMS (lines 393-426, test 775-806) -----------------------------------------------------

STREAMS = {
    ("openai", "llm/v1/chat"): "gpt-4",
    ("openai", "llm/v1/completions"): "gpt-3.5-turbo-instruct",
    ("cohere", "llm/v1/chat"): "command",
    ("cohere", "llm/v1/completions"): "command-light",
}
EXPECTED_STREAM_CHOICES = {
    "llm/v1/chat": [
        {"delta": {"content": "the answer"}, "finish_reason": None, "index": 0, "logprobs": None}
    ],
    "llm/v1/completions": [
        {"text": "the answer", "finish_reason": None, "index": 0, "logprobs": None}
    ],
}


@pytest.mark.parametrize("key", list(STREAMS), ids=["-".join(k) for k in STREAMS])
def test_converts_a_real_stream_frame(key: tuple[str, str]) -> None:
    provider, route_type = key
    frame = (
        UNIT / f"real-stream-frames/{provider}/{route_type.replace('/', '-')}.txt"
    ).read_bytes()
    # The openai frames end without the SSE blank line (see the module's docstring).
    events = StreamParser().feed(frame, last=True)
    driver = ALL_DRIVERS[provider]()
    result = driver.stream_event(events[0], ModelInfo(provider, STREAMS[key], {}), route_type, {})
    assert json.loads(result.data or "")["choices"] == EXPECTED_STREAM_CHOICES[route_type]


# -- streaming transformer tests (lines 857-993) -----------------------------------------------


@pytest.mark.parametrize("parts", [2, 3], ids=["two-parts", "three-parts"])
def test_transforms_gemini_type_split_into_parts(parts: int) -> None:
    name = "partial-json-split" if parts == 2 else "partial-json-split-three-parts"
    parser = StreamParser()
    text = ""
    for i in range(1, parts + 1):
        for event in parser.feed((CHUNKS / f"{name}/input-{i}.bin").read_bytes()):
            if event.data != SSE_TERMINATOR:
                text += json.loads(event.data or "")["candidates"][0]["content"]["parts"][0]["text"]
    assert text == (CHUNKS / f"{name}/expected-output.bin").read_text()


def test_transforms_gemini_type_beginning_of_stream() -> None:
    events = StreamParser().feed((CHUNKS / "partial-json-beginning/input.bin").read_bytes())
    expected = json.loads((CHUNKS / "partial-json-beginning/expected-output.json").read_text())
    assert as_kong(events) == expected


def test_transforms_gemini_type_end_of_stream() -> None:
    # Kong's gemini_state {started = true}: the array began in an earlier chunk.
    parser = StreamParser()
    parser.mode = "array"
    parser.array = JsonArraySplitter()
    parser.array.started = True
    events = parser.feed((CHUNKS / "partial-json-end/input.bin").read_bytes())
    expected = json.loads((CHUNKS / "partial-json-end/expected-output.json").read_text())
    assert as_kong(events) == expected


def test_transforms_complete_json_type() -> None:
    parser = StreamParser()
    events = parser.feed((CHUNKS / "complete-json/input.bin").read_bytes())
    # The last JSON line has no newline: it comes at the stream's end (module's docstring).
    events += parser.feed(b"", last=True)
    expected = json.loads((CHUNKS / "complete-json/expected-output.json").read_text())
    assert as_kong(events) == expected


def test_transforms_text_event_stream_type() -> None:
    # The last line, "data: [DONE]" without its blank line, waits (Kong's truncated_frame).
    events = StreamParser().feed((CHUNKS / "text-event-stream/input.bin").read_bytes())
    expected = json.loads((CHUNKS / "text-event-stream/expected-output.json").read_text())
    assert as_kong(events) == expected


def test_transforms_aws_eventstream_type() -> None:
    events = EventStreamParser().feed((CHUNKS / "aws/input.bin").read_bytes())
    expected = json.loads((CHUNKS / "aws/expected-output.json").read_text())
    assert len(events) == len(expected)
    for event, kong in zip(events, expected, strict=True):
        message = json.loads(kong["data"])
        assert event.event == message["headers"][":event-type"]
        assert json.loads(event.data or "") == json.loads(message["body"])


# -- json_array_iterator (lines 2261-2505) -----------------------------------------------------


def split(*chunks: str) -> list[list[str]]:
    """The elements each chunk completes, fed in turn to one splitter, ``[DONE]`` left out."""
    splitter = JsonArraySplitter()
    return [[e for e in splitter.feed(chunk) if e != SSE_TERMINATOR] for chunk in chunks]


@pytest.mark.parametrize(
    ("text", "elements"),
    [
        ("[1, 2, 3, 4]", ["1", "2", "3", "4"]),
        ('["hello", "world"]', ['"hello"', '"world"']),
        ('[{"name": "John"}, {"name": "Jane"}]', ['{"name": "John"}', '{"name": "Jane"}']),
        ("[[1, 2], [3, 4]]", ["[1, 2]", "[3, 4]"]),
        ("  [  1  ,  2  ]  ", ["1", "2"]),
        ("[]", []),
        # Kong's Lua literal '["{\"special\": \"\\\"quoted\\\"\"}", "[1,2]"]'
        ('["{"special": "\\"quoted\\""}", "[1,2]"]', ['"{"special": "\\"quoted\\""}"', '"[1,2]"']),
        (
            '[{"users": [{"id": 1, "name": "John"}, {"id": 2, "name": "Jane"}]}, '
            '{"status": "active"}]',
            [
                '{"users": [{"id": 1, "name": "John"}, {"id": 2, "name": "Jane"}]}',
                '{"status": "active"}',
            ],
        ),
    ],
    ids=[
        "flat",
        "strings",
        "nested-objects",
        "nested-arrays",
        "whitespace",
        "empty",
        "special-characters",
        "complex-nested",
    ],
)
def test_json_array_iterator(text: str, elements: list[str]) -> None:
    assert split(text) == [elements]


@pytest.mark.parametrize(
    ("chunks", "elements"),
    [
        (['["hel', 'lo"]'], [[], ['"hello"']]),
        (['["he\\', '\\nllo"]'], [[], ['"he\\\\nllo"']]),
        (['[{"name": "Jo', 'hn"}, {"age": 30}]'], [[], ['{"name": "John"}', '{"age": 30}']]),
        (["[[1, 2", "], [3, 4]]"], [[], ["[1, 2]", "[3, 4]"]]),
        (["[1,", " 2]"], [["1"], ["2"]]),
        (
            ['[{"message":"hello world"}, {"message":"goodbye,', ' world"}]'],
            [['{"message":"hello world"}'], ['{"message":"goodbye, world"}']],
        ),
        (
            ['[{"users": [{"id": 1', ', "name": "John"}]}, {"status": "', 'active"}]'],
            [[], ['{"users": [{"id": 1, "name": "John"}]}'], ['{"status": "active"}']],
        ),
    ],
    ids=[
        "split-within-string",
        "split-within-escape",
        "split-between-object-braces",
        "split-between-array-brackets",
        "split-at-comma",
        "no-split-at-literal-comma",
        "split-within-complex-nested-structure",
    ],
)
def test_json_array_iterator_incremental_parsing(
    chunks: list[str], elements: list[list[Any]]
) -> None:
    assert split(*chunks) == elements


def test_json_array_iterator_invalid_start() -> None:
    assert split("{1, 2, 3}") == [[]]
