"""The generic all-errors walker, on ad-hoc Structs (as plugin config schemas will be)."""

from __future__ import annotations

import datetime
import enum
from typing import Annotated, Any, Literal

import msgspec
import pytest
from msgspec import Meta

from fastkong.config.validate import Issues, convert, walk_struct


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Inner(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    required: int
    label: str = "x"


class Shape(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    ge_only: Annotated[int, Meta(ge=1)] = 1
    le_only: Annotated[int, Meta(le=10)] = 1
    lt_only: Annotated[float, Meta(lt=1)] = 0.5
    gt_only: Annotated[float, Meta(gt=0)] = 1.0
    even: Annotated[int, Meta(multiple_of=2)] = 2
    short: Annotated[str, Meta(max_length=3)] = "a"
    maybe_empty: Annotated[str, Meta(min_length=0)] = ""
    code: Literal[3, 1, 2] = 3
    words: Annotated[list[str], Meta(min_length=1, max_length=2)] = msgspec.field(
        default_factory=lambda: ["a"]
    )
    unique: set[int] = set()
    mapping: dict[str, int] = {}
    inner: Inner | None = None
    inners: list[Inner] = []
    either: int | str = 0
    anything: Any = None
    color: Color = Color.RED
    when: datetime.date | None = None


def walk(raw: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    issues = Issues()
    walked = walk_struct(Shape, raw, ("cfg",), issues)
    return walked.data, [f"{e.path}: {e.message}" for e in issues.errors]


def test_defaults_and_normalization() -> None:
    data, problems = walk({"ge_only": 5.0, "unique": [1, 2, 1], "either": "s", "code": 1.0})
    assert problems == []
    assert data["ge_only"] == 5 and isinstance(data["ge_only"], int)
    assert data["unique"] == [1, 2]
    assert data["code"] == 1
    assert data["color"] == "red"
    shape = msgspec.convert(data, Shape)
    assert shape.unique == {1, 2} and shape.either == "s"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"ge_only": 0}, "cfg.ge_only: value must be greater than or equal to 1"),
        ({"le_only": 11}, "cfg.le_only: value must be less than or equal to 10"),
        ({"lt_only": 1}, "cfg.lt_only: value must be less than 1"),
        ({"gt_only": 0}, "cfg.gt_only: value must be greater than 0"),
        ({"even": 3}, "cfg.even: value must be a multiple of 2"),
        ({"ge_only": True}, "cfg.ge_only: expected an integer"),
        ({"ge_only": 1.5}, "cfg.ge_only: expected an integer"),
        ({"gt_only": "1"}, "cfg.gt_only: expected a number"),
        ({"short": "abcd"}, "cfg.short: length must be at most 3"),
        ({"short": ""}, "cfg.short: length must be at least 1"),
        ({"code": 4}, "cfg.code: expected one of: 3, 1, 2"),
        ({"code": "3"}, "cfg.code: expected an integer"),
        ({"words": []}, "cfg.words: length must be at least 1"),
        ({"words": ["a", "b", "c"]}, "cfg.words: length must be at most 2"),
        ({"words": "a"}, "cfg.words: expected an array"),
        ({"unique": "a"}, "cfg.unique: expected a set"),
        ({"mapping": {"a": "x"}}, "cfg.mapping: expected an integer"),
        ({"mapping": [1]}, "cfg.mapping: expected a string"),  # Lua reads a list as {1: ...}
        ({"mapping": 1}, "cfg.mapping: expected a map"),
        ({"inner": {}}, "cfg.inner.required: required field missing"),
        ({"inner": 1}, "cfg.inner: expected a record"),
        ({"inners": [{"required": 1}, {"required": "x", "extra": 1}]}, None),
        ({"either": [1]}, "cfg.either: expected an integer"),
        ({"color": "green"}, "cfg.color: expected one of: red, blue"),
        ({"words": [None]}, "cfg.words[0]: required field missing"),
        ({"nope": 1}, "cfg.nope: unknown field"),
    ],
)
def test_messages(raw: dict[str, Any], expected: str | None) -> None:
    _, problems = walk(raw)
    if expected is None:
        assert problems == [
            "cfg.inners[1].required: expected an integer",
            "cfg.inners[1].extra: unknown field",
        ]
    else:
        assert problems == [expected]


def test_every_error_is_collected() -> None:
    _, problems = walk({"ge_only": 0, "short": "abcd", "inner": {"label": 1}, "x": 1})
    assert problems == [
        "cfg.ge_only: value must be greater than or equal to 1",
        "cfg.short: length must be at most 3",
        "cfg.inner.label: expected a string",
        "cfg.inner.required: required field missing",
        "cfg.x: unknown field",
    ]


def test_null_takes_the_default_or_none() -> None:
    data, problems = walk({"ge_only": None, "inner": None})
    assert problems == []
    assert (data["ge_only"], data["inner"]) == (1, None)
    issues = Issues()
    walk_struct(Inner, {"required": None}, (), issues)
    assert [e.path for e in issues.errors] == ["required"]


def test_convert_reports_what_the_walker_cannot_see() -> None:
    data, problems = walk({"when": "not a date"})
    assert problems == []
    issues = Issues()
    assert convert(data, Shape, ("cfg",), issues) is None
    assert [(e.path, e.message) for e in issues.errors] == [
        ("cfg.when", "Invalid RFC3339 encoded date")
    ]


def test_issues_keep_one_copy_and_relocate() -> None:
    issues = Issues()
    issues.field(("a",), "m")
    issues.field(("a",), "m")
    mark = len(issues)
    issues.field(("s", "host"), "bad")
    issues.entity(("s",), "whole")
    issues.relocate(mark, {("s", "host"): ("s", "url")})
    assert [(e.path, e.message, e.entity) for e in issues.errors] == [
        ("a", "m", False),
        ("s.url", "bad", False),
        ("s", "whole", True),
    ]
    assert repr(issues) == "<Issues 3>"
