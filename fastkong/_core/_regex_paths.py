"""Regex paths: how a Kong ``~`` path becomes a pattern, and what every match starts with.

Kong anchors a regex path at the start of the request path and reads ``(?<name>`` as a named
group; leading inline flags stay in front of the anchor. The router indexes a regex by the
literal text every match must begin with (``/v1/users/`` for ``~/v1/users/\\d+``), found here by
scanning the pattern's structure without compiling it.

Compiled patterns are cached for two router builds (:class:`_GenerationCache`): a rebuild after
a config change sees mostly the same regexes and takes them from the previous build.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

_NAMED_GROUP = re.compile(r"\(\?<(?![=!])")
_LEADING_FLAGS = re.compile(r"\(\?[aiLmsux]+\)")
_REGEX_META = frozenset(".^$*+?{}[]\\|()")


class _GenerationCache:
    """Compiled regexes of the last two router builds.

    A rebuild after a config change sees mostly the same regexes, so they are taken from the
    previous build instead of being compiled again. Only two generations are kept: a node that
    reloads many different configs holds the regexes it serves, not every regex it ever saw.
    """

    def __init__(self, make: Callable[[str], Any]) -> None:
        self.make = make
        self.current: dict[str, Any] = {}
        self.previous: dict[str, Any] = {}

    def rotate(self) -> None:
        """Start a build: what the last build used becomes the pool to reuse from."""
        if self.current:
            dropped = self.previous
            self.previous = self.current
            self.current = {}
            # One entry at a time: freeing thousands of patterns in one dict deallocation would
            # hold the interpreter for that long (the build runs beside a serving event loop).
            while dropped:
                dropped.popitem()

    def peek(self, key: str) -> Any:
        """The cached value, carried into this build, or None (nothing is made)."""
        found = self.current.get(key)
        if found is None:
            found = self.previous.get(key)
            if found is not None:
                self.current[key] = found
        return found

    def get(self, key: str) -> Any:
        found = self.current.get(key)
        if found is None:
            found = self.previous.get(key)
            if found is None:
                found = self.make(key)
            self.current[key] = found
        return found


_regexes = _GenerationCache(re.compile)


def compile_cached(pattern: str) -> re.Pattern[str]:
    compiled: re.Pattern[str] = _regexes.get(pattern)
    return compiled


def rotate_caches() -> None:
    """Start a router build (see :class:`_GenerationCache`)."""
    _regexes.rotate()
    _path_sources.rotate()


def cached_pattern(source: str) -> re.Pattern[str] | None:
    """The compiled ``source`` if an earlier build has it (carried into this one), else None."""
    found: re.Pattern[str] | None = _regexes.peek(source)
    return found


def compile_path_regex(path: str) -> tuple[re.Pattern[str], str]:
    """``~regex`` -> (compiled ``\\Aregex``, literal prefix every match starts with)."""
    source, index_key = path_regex_source(path)
    try:
        return compile_cached(source), index_key
    except (re.error, OverflowError, RecursionError) as exc:
        raise ValueError(f"invalid regex path {path!r}: {exc}") from None


def path_regex_source(path: str) -> tuple[str, str]:
    """``~regex`` -> (the pattern to compile, ``\\Aregex``; literal prefix of every match)."""
    found: tuple[str, str] = _path_sources.get(path)
    return found


def _make_path_source(path: str) -> tuple[str, str]:
    body = _NAMED_GROUP.sub("(?P<", path[1:])
    flags = ""
    while m := _LEADING_FLAGS.match(body):
        flags += m.group()
        body = body[m.end() :]
    if "[:" in body:
        body = _posix_classes(body)
    if "$" in body and _MULTI_LINE.search(path) is None:
        body = _end_of_text(body)
    # \A, not ^: Kong's "^" comes before any inline flag, so a leading (?m) (moved in front
    # here, as Python requires) must not turn it into a start-of-line anchor.
    return flags + "\\A" + body, "" if flags else literal_prefix(body)


# Any inline flag group that turns on multi-line mode: (?m), (?im), (?m:...), (?sm-i)...
_MULTI_LINE = re.compile(r"\(\?[a-zA-Z]*m[a-zA-Z]*(?:-[a-zA-Z]*)?[:)]")


# Rust's regex ASCII classes ([[:alpha:]] etc.), as Python set items.
_POSIX = {
    "alnum": "0-9A-Za-z",
    "alpha": "A-Za-z",
    "ascii": "\\x00-\\x7f",
    "blank": "\\t ",
    "cntrl": "\\x00-\\x1f\\x7f",
    "digit": "0-9",
    "graph": "!-~",
    "lower": "a-z",
    "print": " -~",
    "punct": "!-/:-@\\[-`{-~",
    "space": "\\t\\n\\v\\f\\r ",
    "upper": "A-Z",
    "word": "0-9A-Za-z_",
    "xdigit": "0-9A-Fa-f",
}
_POSIX_ITEM = re.compile(r"\[:(\^?)([a-z]+):\]")


def _posix_classes(body: str) -> str:
    """Rewrite the ASCII classes Rust's regex reads inside a bracket expression
    (``[[:digit:]_]``), which Python's ``re`` would take as a set of characters. A negated one
    (``[:^digit:]``) is rewritten only when it is the whole expression."""
    out: list[str] = []
    i = 0
    n = len(body)
    while i < n:
        c = body[i]
        if c == "\\":
            out.append(body[i : i + 2])
            i += 2
            continue
        if c != "[":
            out.append(c)
            i += 1
            continue
        head = i + 1
        if head < n and body[head] == "^":
            head += 1
        k = head + 1 if head < n and body[head] == "]" else head
        items: list[str] = []
        last = head
        while k < n and body[k] != "]":
            m = _POSIX_ITEM.match(body, k)
            if m is not None and m.group(2) in _POSIX:
                items.append(body[last:k])
                # A negated class can only be written as a whole bracket expression.
                items.append(m.group() if m.group(1) else _POSIX[m.group(2)])
                k = last = m.end()
                continue
            k += 2 if body[k] == "\\" else 1
        items.append(body[last:k])
        only = _POSIX_ITEM.fullmatch(body, i + 1, k)
        if only is not None and only.group(1) and only.group(2) in _POSIX:
            out.append("[^" + _POSIX[only.group(2)] + "]")
        else:
            out.append(body[i:head] + "".join(items) + body[k : k + 1])
        i = k + 1
    return "".join(out)


def _end_of_text(body: str) -> str:
    """Every unescaped ``$`` outside a character class as ``\\Z``.

    Kong's regexes run in Rust's ``regex`` crate, where ``$`` is the end of the text; Python's
    ``$`` also matches before a final newline (a request path can hold one: ``%0A``).
    """
    ends = [i for i, c in _structural(body) if c == "$"]
    if not ends:
        return body
    parts: list[str] = []
    start = 0
    for i in ends:
        parts.append(body[start:i])
        parts.append("\\Z")
        start = i + 1
    parts.append(body[start:])
    return "".join(parts)


_path_sources = _GenerationCache(_make_path_source)
_NEVER = re.compile(r"(?!)")


def compile_lazily(source: str) -> re.Pattern[str]:
    """A regex path left uncompiled by a ``lazy_regex`` build, compiled at its first use.

    Such builds take validated configs, so this does not fail; if it did, the path would match
    nothing rather than fail the request.
    """
    try:
        return compile_cached(source)
    except (re.error, OverflowError, RecursionError):
        return _NEVER


def _structural(body: str, start: int = 0) -> Iterator[tuple[int, str]]:
    """``(index, char)`` of every regex character outside escapes and character classes: the
    ones that can open or close a group or alternate."""
    n = len(body)
    i = start
    while i < n:
        c = body[i]
        if c == "\\":
            i += 2
            continue
        if c == "[":
            i += 1
            if i < n and body[i] == "^":
                i += 1
            if i < n and body[i] == "]":
                i += 1
            while i < n and body[i] != "]":
                i += 2 if body[i] == "\\" else 1
            i += 1
            continue
        yield i, c
        i += 1


def _has_top_level_alternation(body: str) -> bool:
    depth = 0
    for _, c in _structural(body):
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif c == "|" and depth <= 0:
            return True
    return False


def _group_body(body: str, i: int) -> tuple[int, int] | None:
    """(start, end) of the content of the group opening at ``body[i]``, if it is a plain one.

    Plain: ``(...)``, ``(?:...)`` or ``(?P<name>...)``; look-arounds, flags, comments and
    conditionals give None, as does an unbalanced group.
    """
    if body.startswith("(?:", i):
        start = i + 3
    elif body.startswith("(?P<", i):
        gt = body.find(">", i)
        if gt < 0:
            return None
        start = gt + 1
    elif body.startswith("(?", i):
        return None
    else:
        start = i + 1
    depth = 0
    for j, c in _structural(body, start):
        if c == "(":
            depth += 1
        elif c == ")":
            if depth == 0:
                return start, j
            depth -= 1
    return None


def _literal_run(body: str) -> tuple[str, bool]:
    """The literal text every match of ``body`` starts with, and whether that is all of it."""
    out: list[str] = []
    i = 0
    n = len(body)
    while i < n:
        c = body[i]
        if c == "(":
            span = _group_body(body, i)
            if span is None:
                return "".join(out), False
            inner = body[span[0] : span[1]]
            following = body[span[1] + 1] if span[1] + 1 < n else ""
            if following in ("?", "*", "{") or _has_top_level_alternation(inner):
                return "".join(out), False
            text, complete = _literal_run(inner)
            out.append(text)
            if not complete or following == "+":
                return "".join(out), False
            i = span[1] + 1
            continue
        if c == "\\":
            if i + 1 >= n or not body[i + 1].isascii() or body[i + 1].isalnum():
                return "".join(out), False
            lit, step = body[i + 1], 2
        elif c in _REGEX_META:
            return "".join(out), False
        else:
            lit, step = c, 1
        following = body[i + step] if i + step < n else ""
        if following in ("?", "*", "{"):
            return "".join(out), False
        out.append(lit)
        if following == "+":
            return "".join(out), False
        i += step
    return "".join(out), True


def literal_prefix(body: str) -> str:
    """The literal text every match of ``^body`` must start with ("" when unsure).

    Kong only prepends ``^``, so ``a|b`` leaves ``b`` unanchored: no prefix then. A literal or
    group followed by ``?``, ``*`` or ``{`` is optional and ends the prefix without being part
    of it; plain groups (capturing, ``(?:``, named) without alternation are looked into.
    """
    if _has_top_level_alternation(body):
        return ""
    return _literal_run(body)[0]
