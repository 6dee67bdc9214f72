"""Kong's plugin regexes (PCRE2 through ``ngx.re``) as Python ``re`` patterns, same matches.

A Kong plugin that matches a config regex against request text (bot-detection's ``allow`` and
``deny``) calls ``ngx.re.find(subject, regex, "jo")``: PCRE2 10.44 in 8-bit mode without UTF,
so both the pattern and the subject are bytes, ``\\w``, ``\\d``, ``\\s``, ``\\b`` and caseless
matching are ASCII-only, and a non-ASCII character of the pattern is its UTF-8 bytes.
:func:`compile_pcre` gives the Python pattern that matches the same text when the subject is the
header's bytes decoded as latin-1 (one character per byte, as :class:`RequestContext` decodes):

* the pattern is re-read as latin-1 of its UTF-8 bytes and compiled with ``re.ASCII``;
* character classes are rewritten as the explicit set of bytes PCRE means, which also gives
  POSIX classes (``[[:alpha:]]``, that Python reads as a set of ``[:alph`` followed by ``]``),
  ``\\h``/``\\v`` (``\\v`` is a single character in Python) and negated class escapes;
* quantifier braces are read as PCRE2 10.44 reads them: ``{,3}`` is ``{0,3}``, spaces are
  allowed (``{ 1, 3 }``), ``{,}`` stays literal (Python reads it as ``*``);
* option settings inside the pattern (``a(?i)b|c``, ``(?-i)``), which Python only takes at the
  very start, become scoped groups for the rest of their group, per alternative as in PCRE;
* ``(?<name>..)``, ``(?'name'..)``, ``\\k<name>`` and friends, ``\\g{n}``, ``\\z``, ``\\Z``,
  ``\\G``, ``\\Q..\\E``, ``\\e``, ``\\cX``, ``\\x{..}``, ``\\o{..}``, ``\\N``, ``\\R``, ``\\C``
  are spelt the Python way; ``(?x)`` whitespace and comments are removed here.

What Python's engine cannot do is refused with a reason (:class:`Unsupported`): recursion and
subroutine calls, branch reset groups, backtracking verbs, callouts, ``\\K``, ``\\X``, Unicode
properties (``\\p{..}``), condition assertions, the ``n``/``U``/``J``/``xx`` options, and
variable-length look-behind (which PCRE2 10.43 added). Match limits differ: PCRE stops a
runaway match, Python does not, so a catastrophically backtracking pattern costs CPU here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

#: Kong's ``is_regex`` message (``kong/db/schema/init.lua``).
NOT_A_REGEX: Final = "not a valid regex: {}"

_SPACE_X: Final = frozenset(b"\t\n\x0b\x0c\r \x85")  # what (?x) skips (Pattern_White_Space)
_DIGITS: Final = frozenset(range(0x30, 0x3A))
_UPPER: Final = frozenset(range(0x41, 0x5B))
_LOWER: Final = frozenset(range(0x61, 0x7B))
_ALPHA: Final = _UPPER | _LOWER
_WORD: Final = _ALPHA | _DIGITS | {0x5F}
_SPACE: Final = frozenset(b"\t\n\x0b\x0c\r ")
_HSPACE: Final = frozenset(b"\t \xa0")
_VSPACE: Final = frozenset(b"\n\x0b\x0c\r\x85")
_ALL: Final = frozenset(range(256))
_PUNCT: Final = frozenset(range(0x21, 0x7F)) - _ALPHA - _DIGITS

#: POSIX classes as PCRE's default (C locale) tables define them.
_POSIX: Final = {
    "alpha": _ALPHA,
    "digit": _DIGITS,
    "alnum": _ALPHA | _DIGITS,
    "ascii": frozenset(range(0x80)),
    "blank": frozenset(b" \t"),
    "cntrl": frozenset(range(0x20)) | {0x7F},
    "graph": frozenset(range(0x21, 0x7F)),
    "lower": _LOWER,
    "print": frozenset(range(0x20, 0x7F)),
    "punct": _PUNCT,
    "space": _SPACE,
    "upper": _UPPER,
    "word": _WORD,
    "xdigit": _DIGITS | frozenset(b"ABCDEFabcdef"),
}

#: Class escapes: letter -> the set it stands for (upper case: the complement).
_CLASS_ESCAPES: Final = {"d": _DIGITS, "w": _WORD, "s": _SPACE, "h": _HSPACE, "v": _VSPACE}

#: Single-character escapes both engines share, and PCRE's extra ``\e``.
_CHAR_ESCAPES: Final = {"a": 7, "f": 12, "n": 10, "r": 13, "t": 9, "e": 27}

_POSIX_ITEM = re.compile(r"\[([:.=])(\^?)([^\]]*?)\1\]")
_QUANTIFIER = re.compile(r"\{[ \t]*(\d*)[ \t]*(?:(,)[ \t]*(\d*)[ \t]*)?\}", re.ASCII)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,31}")
_GROUP_NAME = re.compile(r"P?<([A-Za-z_][A-Za-z0-9_]{0,31})>|'([A-Za-z_][A-Za-z0-9_]{0,31})'")
_REF_NAME = re.compile(r"<(\w{1,32})>|'(\w{1,32})'|\{(\w{1,32})\}", re.ASCII)
_G_REF = re.compile(r"\{(-?\d+|[A-Za-z_][A-Za-z0-9_]{0,31})\}|(-?\d+)")
_FLAGS = re.compile(r"([A-Za-z]*)(?:-([A-Za-z]*))?([:)])")
_LOOKBEHIND_ERROR = "look-behind requires fixed-width pattern"
_QUANTIFIER_MAX = 65535  # PCRE2's limit on a {n,m} count


class PcreError(ValueError):
    """A pattern PCRE refuses as well (Kong's plain "not a valid regex")."""


class Unsupported(ValueError):
    """A pattern PCRE takes that Python's ``re`` cannot run; the message says what."""


@dataclass(slots=True)
class _Group:
    """One open group: whether ``(?x)`` is on in it, and the option groups opened in it by an
    inline option setting (closed at ``|`` and ``)``, reopened after ``|``)."""

    extended: bool
    multiline: bool
    options: list[str] = field(default_factory=list)


def _char(code: int) -> str:
    """One byte as a Python pattern item that means only that byte."""
    if 0x30 <= code <= 0x39 or 0x41 <= code <= 0x5A or 0x61 <= code <= 0x7A:
        return chr(code)
    return f"\\x{code:02x}"


def _class(codes: frozenset[int] | set[int], negate: bool) -> str:
    """An explicit Python class of byte values (ranges collapsed)."""
    if not codes:
        return "[\\x00-\\xff]" if negate else "(?!)"
    ranges: list[str] = []
    ordered = sorted(codes)
    start = prev = ordered[0]
    for code in [*ordered[1:], -1]:
        if code == prev + 1:
            prev = code
            continue
        ranges.append(_char(start) if start == prev else f"{_char(start)}-{_char(prev)}")
        start = prev = code
    return ("[^" if negate else "[") + "".join(ranges) + "]"


class _Translator:
    """One pass over the pattern (as latin-1 text of its bytes), writing the Python pattern."""

    def __init__(self, source: str) -> None:
        self.src = source
        self.pos = 0
        self.out: list[str] = []
        self.groups = [_Group(extended=False, multiline=False)]
        self.captures = 0

    # -- helpers ---------------------------------------------------------------------------------
    def peek(self, offset: int = 0) -> str:
        at = self.pos + offset
        return self.src[at] if at < len(self.src) else ""

    def startswith(self, text: str) -> bool:
        return self.src.startswith(text, self.pos)

    def run(self) -> str:
        while self.pos < len(self.src):
            self.item()
        self.out.append(")" * len(self.groups[0].options))
        return "".join(self.out)

    # -- outside classes -------------------------------------------------------------------------
    def item(self) -> None:
        c = self.src[self.pos]
        group = self.groups[-1]
        if group.extended and ord(c) in _SPACE_X:
            self.pos += 1
        elif group.extended and c == "#":
            end = self.src.find("\n", self.pos)
            self.pos = len(self.src) if end == -1 else end + 1
        elif c == "\\":
            self.escape()
        elif c == "[":
            self.out.append(self.char_class())
        elif c == "(":
            self.open_group()
        elif c == ")":
            self.pos += 1
            if len(self.groups) > 1:
                self.out.append(")" * len(self.groups.pop().options))
            self.out.append(")")  # an unbalanced one is left for Python to report
        elif c == "|":
            self.pos += 1
            self.out.append(")" * len(group.options) + "|" + "".join(group.options))
        elif c == "{":
            self.brace()
        elif c == "^" and group.multiline:
            # PCRE's multiline ^ does not match after a newline that ends the subject.
            self.pos += 1
            self.out.append("(?:^(?!(?<=\\n)\\Z))")
        elif c in ".^$*+?":
            self.pos += 1
            self.out.append(c)
        else:
            self.pos += 1
            self.out.append(_char(ord(c)))

    def quantifier_follows(self) -> bool:
        m = _QUANTIFIER.match(self.src, self.pos)
        return m is not None and bool(m.group(1) or m.group(3))

    def brace(self) -> None:
        m = _QUANTIFIER.match(self.src, self.pos)
        if m is None or not (m.group(1) or m.group(3)):
            self.pos += 1
            self.out.append("\\{")  # not a quantifier in PCRE2 (``{,}``, ``{a}``): literal
            return
        low, comma, high = m.group(1), m.group(2), m.group(3)
        if any(n and int(n) > _QUANTIFIER_MAX for n in (low, high)):
            raise PcreError("number too big in {} quantifier")
        self.pos = m.end()
        self.out.append("{" + (low or "0") + (("," + high) if comma else "") + "}")

    def escape(self) -> None:
        """A backslash sequence outside a class."""
        self.pos += 1
        c = self.peek()
        if not c:
            raise PcreError("\\ at end of pattern")
        self.pos += 1
        if c in "dDwWsSbA":
            self.out.append("\\" + c)
        elif c == "B":
            # Python's \B never matches in an empty string; PCRE's does.
            self.out.append("(?:(?<=\\w)(?=\\w)|(?<!\\w)(?!\\w))")
        elif c in "hHvV":
            self.out.append(_class(_CLASS_ESCAPES[c.lower()], negate=c.isupper()))
        elif c == "z":
            self.out.append("\\Z")
        elif c == "Z":
            self.out.append("(?=\\n?\\Z)")
        elif c == "G":
            self.out.append("\\A")  # ngx.re.find starts at offset 0
        elif c == "R":
            self.out.append("(?>\\r\\n|" + _class(_VSPACE, negate=False) + ")")
        elif c == "C":
            self.out.append("[\\x00-\\xff]")  # one code unit: one byte, newline included
        elif c == "N" and (self.peek() != "{" or self.quantifier_follows()):
            self.out.append("[^\\n]")
        elif c == "Q":
            end = self.src.find("\\E", self.pos)
            end = len(self.src) if end == -1 else end
            self.out.extend(_char(ord(ch)) for ch in self.src[self.pos : end])
            self.pos = end + 2
        elif c == "E":
            pass  # a \E without \Q is ignored
        elif c == "k":
            m = _REF_NAME.match(self.src, self.pos)
            if m is None:
                raise PcreError("\\k is not followed by a name")
            self.pos = m.end()
            self.out.append(f"(?P={m.group(1) or m.group(2) or m.group(3)})")
        elif c == "g":
            self.g_reference()
        elif c in "pPXK":
            what = {"p": "\\p", "P": "\\P", "X": "\\X", "K": "\\K"}[c]
            raise Unsupported(f"{what} is not supported by Python's re")
        elif c in "0123456789":
            self.number_escape(c)
        else:
            self.out.append(_char(self.char_escape(c)))

    def number_escape(self, first: str) -> None:
        """``\\0``, ``\\1``...: PCRE2's rule for a back reference against an octal escape."""
        start = self.pos - 1
        end = start
        while end < len(self.src) and self.src[end] in "0123456789":
            end += 1
        number = int(self.src[start:end])
        if first != "0" and (number < 10 or first in "89" or number <= self.captures):
            self.pos = end
            self.out.append(f"(?:\\{number})")
            return
        digits = ""
        self.pos = start
        while len(digits) < 3 and self.peek() and self.peek() in "01234567":
            digits += self.peek()
            self.pos += 1
        value = int(digits, 8)
        if value > 0xFF:
            raise PcreError("octal value is greater than \\377 in 8-bit non-UTF mode")
        self.out.append(_char(value))

    def g_reference(self) -> None:
        m = _G_REF.match(self.src, self.pos)
        if m is None:
            raise Unsupported("\\g<..> subroutine calls are not supported by Python's re")
        self.pos = m.end()
        ref = m.group(1) or m.group(2)
        if _NAME.fullmatch(ref):
            self.out.append(f"(?P={ref})")
            return
        number = int(ref)
        if number < 0:
            number = self.captures + 1 + number  # relative: -1 is the last group opened
        if number <= 0:
            raise PcreError("reference to non-existent subpattern")
        self.out.append(f"(?:\\{number})")

    def char_escape(self, c: str) -> int:
        """The byte a single-character escape stands for (``c`` after the backslash)."""
        if c in _CHAR_ESCAPES:
            return _CHAR_ESCAPES[c]
        if c == "x":
            if self.peek() == "{":
                return self.braced_number(16)
            digits = ""
            while len(digits) < 2 and self.peek() and self.peek() in "0123456789abcdefABCDEF":
                digits += self.peek()
                self.pos += 1
            return int(digits or "0", 16)
        if c == "o":
            if self.peek() != "{":
                raise PcreError("missing opening brace after \\o")
            return self.braced_number(8)
        if c == "c":
            ch = self.peek()
            if not ch or ord(ch) > 0x7E:
                raise PcreError("\\c must be followed by a printable ASCII character")
            self.pos += 1
            return ord(ch.upper()) ^ 0x40
        if c.isascii() and c.isalnum():
            raise PcreError(f"unrecognized character follows \\: {c}")
        return ord(c)  # an escaped non-alphanumeric stands for itself

    def braced_number(self, base: int) -> int:
        end = self.src.find("}", self.pos)
        text = self.src[self.pos + 1 : end].strip(" \t") if end != -1 else ""
        digits = "0123456789abcdefABCDEF" if base == 16 else "01234567"
        if not text or any(ch not in digits for ch in text):
            raise PcreError("invalid number in braces")
        value = int(text, base)
        if value > 0xFF:
            raise PcreError("character code point value is too large (non-UTF mode)")
        self.pos = end + 1
        return value

    def open_group(self) -> None:
        parent = self.groups[-1]
        if self.startswith("(*"):
            raise Unsupported("PCRE verbs such as (*UTF) or (*SKIP) are not supported")
        if not self.startswith("(?"):
            self.pos += 1
            self.captures += 1
            self.push("(")
            return
        rest = self.src[self.pos + 2 : self.pos + 3]
        if rest == "#":
            end = self.src.find(")", self.pos)
            if end == -1:
                raise PcreError("missing ) after (?# comment")
            self.pos = end + 1
            return
        named = _GROUP_NAME.match(self.src, self.pos + 2)
        if named is not None:
            self.pos = named.end()
            self.captures += 1
            self.push(f"(?P<{named.group(1) or named.group(2)}>")
            return
        for prefix in ("(?:", "(?=", "(?!", "(?<=", "(?<!", "(?>"):
            if self.startswith(prefix):
                self.pos += len(prefix)
                self.push(prefix)
                return
        if self.startswith("(?P="):
            end = self.src.find(")", self.pos)
            self.out.append(self.src[self.pos : end + 1] if end != -1 else self.src[self.pos :])
            self.pos = len(self.src) if end == -1 else end + 1
            return
        if self.startswith("(?("):
            self.condition()
            return
        if rest == "|":
            raise Unsupported("branch reset groups (?|...) are not supported")
        # (?R) (?1) (?+1) (?-1) (?&name) (?P>name); (?-i) is an option setting
        relative = rest == "-" and self.peek(3).isdigit()
        if rest in ("R", "&", "+") or rest.isdigit() or relative or self.startswith("(?P>"):
            raise Unsupported("recursion and subroutine calls are not supported")
        if rest == "C":
            raise Unsupported("callouts are not supported")
        if rest == "^":
            raise Unsupported("(?^) is not supported")
        self.options(parent)

    def condition(self) -> None:
        """``(?(cond)yes|no)``: a group number or name; PCRE's other conditions are refused."""
        end = self.src.find(")", self.pos + 3)
        cond = self.src[self.pos + 3 : end] if end != -1 else ""
        if cond[:1] in ("<", "'") and cond[-1:] in (">", "'"):
            cond = cond[1:-1]
        if cond.startswith("?") or self.startswith("(?(?"):
            raise Unsupported("conditions that are assertions are not supported")
        if not (cond.isdigit() or _NAME.fullmatch(cond)) or cond == "DEFINE" or cond[:1] == "R":
            raise Unsupported(f"the condition ({cond}) is not supported")
        self.pos = end + 1
        self.push(f"(?({cond})")

    def options(self, parent: _Group) -> None:
        """``(?i)`` (for the rest of the group) or ``(?i:...)``."""
        m = _FLAGS.match(self.src, self.pos + 2)
        if m is None:
            raise PcreError("unrecognized character after (? or (?-")
        on, off, end = m.group(1), m.group(2) or "", m.group(3)
        bad = set(on + off) - set("imsx")
        if bad or on.count("x") > 1 or off.count("x") > 1:
            raise Unsupported(f"the option (?{on}{'-' + off if off else ''}) is not supported")
        # (?x) is applied here (whitespace and comments dropped); (?m) is tracked for ^.
        modes = (
            "x" in on or (parent.extended and "x" not in off),
            "m" in on or (parent.multiline and "m" not in off),
        )
        on, off = on.replace("x", ""), off.replace("x", "")
        spec = "(?" + on + ("-" + off if off else "") + ":" if on or off else ""
        self.pos = m.end()
        if end == ":":
            self.push(spec or "(?:", modes)
            return
        parent.extended, parent.multiline = modes
        if spec:  # the rest of this group (this alternative and the next ones) takes them
            parent.options.append(spec)
            self.out.append(spec)

    def push(self, opening: str, modes: tuple[bool, bool] | None = None) -> None:
        """Open a group; it starts with its parent's (?x) and (?m) unless ``modes`` says."""
        parent = self.groups[-1]
        extended, multiline = modes or (parent.extended, parent.multiline)
        self.out.append(opening)
        self.groups.append(_Group(extended, multiline))

    # -- classes ---------------------------------------------------------------------------------
    def char_class(self) -> str:
        """``[...]`` as the explicit set of bytes it matches."""
        posix = _POSIX_ITEM.match(self.src, self.pos)
        if posix is not None:
            raise PcreError("POSIX named classes are supported only within a class")
        self.pos += 1
        negate = self.peek() == "^"
        if negate:
            self.pos += 1
        codes: set[int] = set()
        first = True
        while True:
            c = self.peek()
            if not c:
                raise PcreError("missing terminating ] for character class")
            if c == "]" and not first:
                self.pos += 1
                return _class(codes, negate)
            first = False
            low = self.class_atom(codes)
            if low is None:
                continue
            if self.peek() == "-" and self.peek(1) not in ("]", ""):
                self.pos += 1
                high = self.class_atom(codes)
                if high is None:
                    raise PcreError("invalid range in character class")
                if high < low:
                    raise PcreError("range out of order in character class")
                codes.update(range(low, high + 1))
            else:
                codes.add(low)

    def class_atom(self, codes: set[int]) -> int | None:
        """One class item: a byte (returned, it may start a range) or a set (added to
        ``codes``; None)."""
        c = self.peek()
        if c == "[":
            m = _POSIX_ITEM.match(self.src, self.pos)
            if m is not None:
                kind, negated, name = m.groups()
                if kind != ":":
                    raise PcreError("POSIX collating elements are not supported")
                if name not in _POSIX:
                    raise PcreError("unknown POSIX class name")
                self.pos = m.end()
                codes.update(_ALL - _POSIX[name] if negated else _POSIX[name])
                self.after_set()
                return None
        if c != "\\":
            self.pos += 1
            return ord(c)
        self.pos += 1
        e = self.peek()
        if not e:
            raise PcreError("\\ at end of pattern")
        self.pos += 1
        if e.lower() in _CLASS_ESCAPES:
            base = _CLASS_ESCAPES[e.lower()]
            codes.update(_ALL - base if e.isupper() else base)
            self.after_set()
            return None
        if e == "b":
            return 8
        if e == "Q":
            end = self.src.find("\\E", self.pos)
            end = len(self.src) if end == -1 else end
            codes.update(ord(ch) for ch in self.src[self.pos : end])
            self.pos = end + 2
            return None
        if e == "E":
            return None
        if e in "pP":
            raise Unsupported(f"\\{e} is not supported by Python's re")
        if e in "01234567":
            digits = e
            while len(digits) < 3 and self.peek() in tuple("01234567"):
                digits += self.peek()
                self.pos += 1
            value = int(digits, 8)
            if value > 0xFF:
                raise PcreError("octal value is greater than \\377 in 8-bit non-UTF mode")
            return value
        if e in "89":
            return ord(e)  # in a class, \\8 and \\9 are the digits themselves
        return self.char_escape(e)

    def after_set(self) -> None:
        # PCRE refuses a set as a range end-point ([\d-z]); a '-' before ']' is literal.
        if self.peek() == "-" and self.peek(1) not in ("]", ""):
            raise PcreError("invalid range in character class")


def translate(pattern: str) -> str:
    """The Python pattern (for latin-1 decoded subjects, ``re.ASCII``) that matches what
    PCRE2 matches with ``pattern`` in ``ngx.re``'s byte mode.

    Raises :class:`PcreError` for a pattern PCRE refuses too, :class:`Unsupported` for one
    Python cannot run."""
    return _Translator(pattern.encode("utf-8").decode("latin-1")).run()


def compile_pcre(pattern: str) -> re.Pattern[str]:
    """:func:`translate` compiled; raises :class:`PcreError`, :class:`Unsupported`, or
    ``re.error`` (a pattern Python refuses that the translation did not catch)."""
    return re.compile(translate(pattern), re.ASCII)


def check_regex(pattern: str) -> str | None:
    """Kong's ``is_regex`` field check: None when valid, else Kong's message (with the reason
    when PCRE would have taken the pattern)."""
    try:
        compile_pcre(pattern)
    except Unsupported as exc:
        return f"{NOT_A_REGEX.format(pattern)} (fastkong: {exc})"
    except re.error as exc:
        if _LOOKBEHIND_ERROR in str(exc):  # PCRE2 takes a bounded variable-length one
            return f"{NOT_A_REGEX.format(pattern)} (fastkong: {_LOOKBEHIND_ERROR})"
        return NOT_A_REGEX.format(pattern)
    except (PcreError, OverflowError, RecursionError):
        return NOT_A_REGEX.format(pattern)
    return None
