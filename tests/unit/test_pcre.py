"""Kong's plugin regexes (PCRE2, byte mode) run by Python's re: fastkong.plugins.bundled._pcre.

Translations are checked by example, then against the real PCRE2 library where the machine has
it (``libpcre2-8``, loaded with ctypes; the test is skipped without it): hypothesis builds
patterns from the constructs the translation rewrites and subjects of the bytes that tell them
apart, and both engines must agree on every subject.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastkong.plugins.bundled._pcre import (
    PcreError,
    Unsupported,
    check_regex,
    compile_pcre,
    translate,
)


# -- against the real PCRE2 ----------------------------------------------------------------------
class Pcre2:
    """libpcre2-8 through ctypes: compile without options (ngx.re's "jo" in byte mode)."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self.lib = lib
        lib.pcre2_compile_8.restype = ctypes.c_void_p
        lib.pcre2_compile_8.argtypes = [
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_uint32,
            ctypes.POINTER(ctypes.c_int),
            ctypes.POINTER(ctypes.c_size_t),
            ctypes.c_void_p,
        ]
        lib.pcre2_match_data_create_from_pattern_8.restype = ctypes.c_void_p
        lib.pcre2_match_data_create_from_pattern_8.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        lib.pcre2_match_8.restype = ctypes.c_int
        lib.pcre2_match_8.argtypes = [
            ctypes.c_void_p,
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_size_t,
            ctypes.c_uint32,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        lib.pcre2_match_data_free_8.argtypes = [ctypes.c_void_p]
        lib.pcre2_code_free_8.argtypes = [ctypes.c_void_p]
        version = ctypes.create_string_buffer(64)
        lib.pcre2_config_8(11, version)  # PCRE2_CONFIG_VERSION
        major, minor = version.value.split()[0].split(b".")[:2]
        self.version = (int(major), int(minor))

    def finds(self, pattern: bytes, subjects: list[bytes]) -> list[bool] | None:
        """Whether the pattern matches each subject; None when PCRE2 refuses the pattern, or
        gives up on a subject (its match limit: nested unbounded repeats)."""
        error, offset = ctypes.c_int(), ctypes.c_size_t()
        code = self.lib.pcre2_compile_8(
            pattern, len(pattern), 0, ctypes.byref(error), ctypes.byref(offset), None
        )
        if not code:
            return None
        data = self.lib.pcre2_match_data_create_from_pattern_8(code, None)
        try:
            found = []
            for subject in subjects:
                rc = self.lib.pcre2_match_8(code, subject, len(subject), 0, 0, data, None)
                if rc < -1:  # PCRE2_ERROR_NOMATCH is -1
                    return None
                found.append(rc >= 0)
            return found
        finally:
            self.lib.pcre2_match_data_free_8(data)
            self.lib.pcre2_code_free_8(code)


def load_pcre2() -> Pcre2 | None:
    name = ctypes.util.find_library("pcre2-8") or "libpcre2-8.so.0"
    try:
        return Pcre2(ctypes.CDLL(name))
    except OSError:
        return None


PCRE2 = load_pcre2()
needs_pcre2 = pytest.mark.skipif(PCRE2 is None, reason="libpcre2-8 is not installed")

#: {,n} and spaced braces: quantifiers from PCRE2 10.43 on (Kong 3.9 ships 10.44).
NEW_BRACES = re.compile(r"\{\s*,|\{\s+\d")


def finds(pattern: str, subject: bytes) -> bool:
    return compile_pcre(pattern).search(subject.decode("latin-1")) is not None


@pytest.mark.parametrize(
    ("pattern", "subject", "found"),
    [
        # POSIX classes (Python would read [[:alpha:]] as the set "[:alph" then "]")
        ("^[[:alpha:]]+$", b"abcXYZ", True),
        ("^[[:alpha:]]+$", b"a]", False),
        ("[[:^digit:]x]", b"123", False),
        ("[[:^digit:]x]", b"12a", True),
        ("[[:punct:]]", b"a!", True),
        # byte mode: \w, \d, \s and case are ASCII-only; non-ASCII text is its UTF-8 bytes
        (r"\w", "é".encode(), False),
        ("(?i)é", "É".encode(), False),
        ("é", "café".encode(), True),
        ("caf.$", "café".encode(), False),  # é is two bytes
        ("caf..$", "café".encode(), True),
        (r"\x{e9}", b"\xe9", True),
        # \v is vertical space in PCRE, one character in Python; \h, \R, \N
        (r"a\vb", b"a\nb", True),
        (r"a\hb", b"a\xa0b", True),
        (r"a\Rb", b"a\r\nb", True),
        (r"^\N+$", b"ab\n", True),
        # quantifier braces as PCRE2 10.43+ reads them; {,} stays literal
        ("^a{,2}$", b"aa", True),
        ("^a{ 1 , 2 }$", b"a", True),
        ("^a{,}$", b"a{,}", True),
        ("^a{,}$", b"aaa", False),
        ("a{x}", b"a{x}", True),
        # inline options for the rest of their group, alternatives included
        ("a(?i)b|c", b"aB", True),
        ("a(?i)b|c", b"C", True),
        ("a(?i)b|c", b"Ab", False),
        ("(?i)a(?-i)b", b"Ab", True),
        ("(?i)a(?-i)b", b"AB", False),
        ("(?x) a b # comment\n c", b"abc", True),
        ("(?x)[ ]", b" ", True),
        # PCRE spellings
        ("(?<y>a)\\k<y>", b"aa", True),
        ("(?'y'a)\\k{y}\\g{y}\\g{-1}\\g1", b"aaaaa", True),
        (r"a\z", b"a\n", False),
        (r"a\Z", b"a\n", True),
        (r"\Qa.b\E", b"axb", False),
        (r"\Qa.b\E", b"a.b", True),
        (r"\e\cA", b"\x1b\x01", True),
        ("\\101\\o{102}", b"AB", True),
        (r"(a)\1", b"aa", True),
        (r"\11", b"\t", True),  # octal: there is no group 11
        (r"\Ga", b" a", False),
        (r"\B", b"", True),  # Python's \B never matches an empty string
        ("(?m)^$", b"a\n", False),  # PCRE's multiline ^ is not after a final newline
        ("(?#note)a", b"a", True),
        ("(a)?(?(1)b|c)", b"c", True),
    ],
)
def test_translation(pattern: str, subject: bytes, found: bool) -> None:
    assert finds(pattern, subject) is found
    if PCRE2 is not None and not (PCRE2.version < (10, 43) and NEW_BRACES.search(pattern)):
        assert PCRE2.finds(pattern.encode(), [subject]) == [found]  # the example is PCRE's


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        (r"\p{L}", r"\p is not supported by Python's re"),
        (r"a\Kb", r"\K is not supported by Python's re"),
        ("(a|(?R))", "recursion and subroutine calls are not supported"),
        ("(a)(?1)", "recursion and subroutine calls are not supported"),
        ("(?|a)", "branch reset groups (?|...) are not supported"),
        ("(*UTF)a", "PCRE verbs such as (*UTF) or (*SKIP) are not supported"),
        ("(?U)a+", "the option (?U) is not supported"),
        ("(?(?=a)a|b)", "conditions that are assertions are not supported"),
    ],
)
def test_unsupported(pattern: str, reason: str) -> None:
    with pytest.raises(Unsupported, match=re.escape(reason)):
        translate(pattern)
    assert check_regex(pattern) == f"not a valid regex: {pattern} (fastkong: {reason})"


@pytest.mark.parametrize(
    "pattern", ["(", "a)", "[a", "[z-a]", "a{2,1}", "*a", "[:alpha:]", "[[.a.]]", "\\", "\\u0041",
                "\\x{100}", "[\\d-z]", "\\ca\\c", "a{70000}"]
)  # fmt: skip
def test_refused_like_pcre(pattern: str) -> None:
    assert check_regex(pattern) == f"not a valid regex: {pattern}"


def test_pcre_error_is_a_value_error() -> None:
    with pytest.raises(PcreError):
        translate("[[:nope:]]")


#: Subject bytes: letters of both cases, digits, the whitespace the escapes tell apart
#: (\x85 and \xa0 included), non-ASCII letters (é as latin-1 and as UTF-8), and punctuation.
SUBJECT_BYTES = b"aAbBzZ09_ -./:{},]\\|\t\n\x0b\r\x85\xa0\xe9\xc3\xa9\x1b\x01"

ATOMS = [
    "a", "B", "z", "0", " ", "-", "_", ".", "/", "é", "\\d", "\\D", "\\w", "\\W", "\\s", "\\S",
    "\\h", "\\H", "\\v", "\\V", "\\b", "\\B", "^", "$", "\\A", "\\z", "\\Z", "\\G", "\\x41",
    "\\x{62}", "\\e", "\\cA", "\\Qa.b\\E", "\\N", "\\101", "\\0", "\\-", "\\]", "\\{", "\\.",
    "\\ ", "{x}", "{,}",
]  # fmt: skip
CLASS_ITEMS = [
    "a", "Z", "z", "0", "-", "_", ".", " ", "]", "^", "é", "[", "a-c", "A-Z", "0-9", "\\d", "\\W",
    "\\s", "\\h", "\\H", "\\v", "\\V", "[:alpha:]", "[:^digit:]", "[:space:]", "[:punct:]",
    "[:word:]", "[:upper:]", "\\x41", "\\b", "\\Q]a\\E", "\\101", "%--", "\\n", "\\]", "\\\\",
]  # fmt: skip
QUANTIFIERS = ["", "", "", "*", "+", "?", "*?", "+?", "*+", "{2}", "{1,2}", "{2,}", "{1,2}?"]
OPTIONS = ["(?i)", "(?-i)", "(?s)", "(?m)", "(?x)", "(?i-s)", "(?ix)", "(?-x)"]
GROUPS = ["(", "(?:", "(?<n>", "(?=", "(?!", "(?>", "(?i:", "(?-i:", "(?x:", "(?m:"]


def class_strategy() -> st.SearchStrategy[str]:
    return st.builds(
        lambda negate, items: "[" + ("^" if negate else "") + "".join(items) + "]",
        st.booleans(),
        st.lists(st.sampled_from(CLASS_ITEMS), min_size=1, max_size=3),
    )


def quantified(item: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.builds(str.__add__, item, st.sampled_from(QUANTIFIERS))


PATTERNS = st.recursive(
    st.one_of(quantified(st.sampled_from(ATOMS)), quantified(class_strategy())),
    lambda inner: st.one_of(
        st.lists(st.one_of(inner, st.sampled_from(OPTIONS)), min_size=1, max_size=4).map("".join),
        st.builds(lambda a, b: f"{a}|{b}", inner, inner),
        quantified(st.builds(lambda g, body: f"{g}{body})", st.sampled_from(GROUPS), inner)),
    ),
    max_leaves=8,
)
SUBJECTS = st.lists(
    st.lists(st.sampled_from(list(SUBJECT_BYTES)), max_size=10).map(bytes), min_size=1, max_size=20
)


def pcre2_quirk(pattern: str) -> bool:
    """Patterns where PCRE2 10.42's answer is not PCRE's rule, left out of the comparison:
    auto-possessification takes \\R and \\v (which match \\x85 in byte mode) as disjoint from
    what precedes them (``.?\\R`` misses ``\\x85``)."""
    return "\\R" in pattern or "\\v" in pattern


@needs_pcre2
@settings(max_examples=600, deadline=None)
@given(pattern=PATTERNS, subjects=SUBJECTS)
def test_same_matches_as_pcre2(pattern: str, subjects: list[bytes]) -> None:
    assert PCRE2 is not None
    if PCRE2.version < (10, 43) and NEW_BRACES.search(pattern):
        return
    subjects = [*subjects, b"", b"aaa", b"a{,}"]
    expected = PCRE2.finds(pattern.encode(), subjects)
    try:
        compiled = compile_pcre(pattern)
    except (Unsupported, PcreError, re.error):
        return  # refused: a config error, never a different match
    if expected is None or pcre2_quirk(pattern):
        return  # taken where PCRE refuses it (back references to later groups, \B{2}, ...)
    found = [compiled.search(s.decode("latin-1")) is not None for s in subjects]
    assert found == expected, (pattern, translate(pattern))


@settings(max_examples=600, deadline=None)
@given(
    st.lists(
        st.sampled_from([*ATOMS, *CLASS_ITEMS, *OPTIONS, *GROUPS, *QUANTIFIERS, ")", "|", "\\",
                         "\\x{", "\\o{", "\\g", "\\k", "\\c", "(?(", "(?P", "{", "}", "é", "\n"])
    ).map("".join)
)  # fmt: skip
def test_any_text_is_checked_without_crashing(pattern: str) -> None:
    # a config value is either a regex or a config error, never an exception in the loader
    message = check_regex(pattern)
    assert message is None or message.startswith(f"not a valid regex: {pattern}")
