# cython: language_level=3, boundscheck=False, wraparound=False
"""Compiled twin of ``_h1_py``: the two HTTP/1 loops of every proxied request.

Same contract as the twin (its docstring states the narrow response shape read whole, and why
anything else is left to ``httptools``), and the same name tables, imported from it.

Theory of operation. ``scan_request_headers`` looks each name up in the twin's frozensets (a C
hash lookup; the bytes' hash is computed once) and builds each copied line with one allocation
and two copies instead of three concatenations. ``parse_response`` is one forward pass over
the bytes with two 256-entry tables (token characters, value characters); a header name is
classified without allocating (its length first, then a lower-cased copy on the stack compared
with the few names that matter); the only objects made are the header pairs kept, the body and
the result tuple.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.string cimport memchr, memcmp, memcpy

from fastkong._core._h1_py import (
    DEBUG,
    DROPPED,
    NGINX_HIDDEN,
    REQUEST_DEBUG,
    RESPONSE_HOP_BY_HOP,
    SIGNALS,
    SPECIAL,
    TRUSTED_FORWARDED,
)

__all__ = [
    "edit_header_lines",
    "parse_response",
    "scan_request_headers",
    "DROPPED",
    "NGINX_HIDDEN",
    "RESPONSE_HOP_BY_HOP",
    "SPECIAL",
    "TRUSTED_FORWARDED",
]

cdef frozenset _SPECIAL = SPECIAL
cdef frozenset _SIGNALS = SIGNALS
cdef frozenset _TRUSTED = TRUSTED_FORWARDED
cdef bytes _DEBUG = DEBUG
cdef frozenset _REQUEST_DEBUG = REQUEST_DEBUG

cdef enum:
    KEEP = 0
    DROP = 1
    LENGTH = 2
    SERVER = 3
    CONNECTION = 4
    REFUSE = 5  # transfer-encoding, via: httptools' (and the rare path's)
    MAX_NAME = 18
    MAX_DIGITS = 18

cdef unsigned char _TOKEN[256]
cdef unsigned char _VALUE[256]
cdef unsigned char _LOWER[256]
# The names classified, lower-case; an entry's kind is its place in _KINDS.
cdef list _NAMES = [name for name in sorted(DROPPED)] + [
    b"content-length",
    b"server",
    b"connection",
    b"transfer-encoding",
    b"via",
]
cdef list _KINDS = [DROP] * len(DROPPED) + [LENGTH, SERVER, CONNECTION, REFUSE, REFUSE]
cdef unsigned char _LOOK[MAX_NAME + 1]


cdef void _init_tables():
    cdef int i
    for i in range(256):
        _TOKEN[i] = 0
        _VALUE[i] = 1 if (i == 9 or (0x20 <= i <= 0x7E) or i >= 0x80) else 0
        _LOWER[i] = i + 32 if (0x41 <= i <= 0x5A) else i
    for c in b"!#$%&'*+-.^_`|~0123456789":
        _TOKEN[c] = 1
    for i in range(26):
        _TOKEN[0x41 + i] = 1
        _TOKEN[0x61 + i] = 1
    for i in range(MAX_NAME + 1):
        _LOOK[i] = 0
    for name in _NAMES:
        _LOOK[len(name)] = 1


_init_tables()


cdef int _kind(const unsigned char* name, Py_ssize_t size):
    cdef unsigned char low[MAX_NAME]
    cdef Py_ssize_t i
    cdef bytes known
    if size > MAX_NAME or not _LOOK[size]:
        return KEEP
    for i in range(size):
        low[i] = _LOWER[name[i]]
    for i in range(len(_NAMES)):
        known = <bytes>_NAMES[i]
        if PyBytes_GET_SIZE(known) == size and memcmp(
            low, PyBytes_AS_STRING(known), size
        ) == 0:
            return <int>_KINDS[i]
    return KEEP


cdef bint _equals_lower(const unsigned char* text, Py_ssize_t size, const char* word, Py_ssize_t n):
    cdef Py_ssize_t i
    if size != n:
        return False
    for i in range(n):
        if _LOWER[text[i]] != <unsigned char>word[i]:
            return False
    return True


def parse_response(bytes data, bint no_body):
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(data)
    cdef Py_ssize_t size = PyBytes_GET_SIZE(data)
    cdef Py_ssize_t at, start, name_end, value_start, i
    cdef int status, kind
    cdef long long length = -1
    cdef bint has_server = False, keep_alive = True
    cdef list headers = []
    if size < 14 or memcmp(p, b"HTTP/1.1 ", 9) != 0:
        return None
    if not (c'2' <= p[9] <= c'5' and c'0' <= p[10] <= c'9' and c'0' <= p[11] <= c'9'):
        return None
    status = (p[9] - c'0') * 100 + (p[10] - c'0') * 10 + (p[11] - c'0')
    at = 12
    if p[at] == c' ':
        at += 1
        while at < size and _VALUE[p[at]]:
            at += 1
    if at + 1 >= size or p[at] != c'\r' or p[at + 1] != c'\n':
        return None
    at += 2
    while True:
        if at + 1 < size and p[at] == c'\r' and p[at + 1] == c'\n':
            at += 2
            break
        start = at
        while at < size and _TOKEN[p[at]]:
            at += 1
        if at == start or at >= size or p[at] != c':':
            return None
        name_end = at
        at += 1
        while at < size and (p[at] == c' ' or p[at] == c'\t'):
            at += 1
        value_start = at
        while at < size and _VALUE[p[at]]:
            at += 1
        if at + 1 >= size or p[at] != c'\r' or p[at + 1] != c'\n':
            return None
        at += 2
        kind = _kind(p + start, name_end - start)
        if kind == LENGTH:
            if length >= 0 or at - 2 == value_start or at - 2 - value_start > MAX_DIGITS:
                return None
            length = 0
            for i in range(value_start, at - 2):
                if not (c'0' <= p[i] <= c'9'):
                    return None
                length = length * 10 + (p[i] - c'0')
        elif kind == DROP:
            continue
        elif kind == CONNECTION:
            if _equals_lower(p + value_start, at - 2 - value_start, b"close", 5):
                keep_alive = False
            elif not _equals_lower(p + value_start, at - 2 - value_start, b"keep-alive", 10):
                return None
            continue
        elif kind == SERVER:
            has_server = True
        elif kind == REFUSE:
            return None
        headers.append(
            (
                PyBytes_FromStringAndSize(<const char*>p + start, name_end - start),
                PyBytes_FromStringAndSize(<const char*>p + value_start, at - 2 - value_start),
            )
        )
    if status == 204 or status == 304 or (no_body and length >= 0):
        if at != size:
            return None
        return status, headers, has_server, keep_alive, b""
    if length < 0 or size - at != length:
        return None
    return (
        status,
        headers,
        has_server,
        keep_alive,
        PyBytes_FromStringAndSize(<const char*>p + at, size - at),
    )


cdef bytes _line(bytes name, bytes value):
    """``name: value\\r\\n`` in one allocation."""
    cdef Py_ssize_t n = PyBytes_GET_SIZE(name), v = PyBytes_GET_SIZE(value)
    cdef bytes out = PyBytes_FromStringAndSize(NULL, n + v + 4)
    cdef char* o = PyBytes_AS_STRING(out)
    memcpy(o, PyBytes_AS_STRING(name), n)
    o[n] = c':'
    o[n + 1] = c' '
    memcpy(o + n + 2, PyBytes_AS_STRING(value), v)
    o[n + 2 + v] = c'\r'
    o[n + 3 + v] = c'\n'
    return out


cdef long long _digits(bytes value):
    """The value of an all-digits ``value`` of at most 18 digits; -1 when not all digits, -2
    when longer (left to Python's int)."""
    cdef Py_ssize_t n = PyBytes_GET_SIZE(value), i
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(value)
    cdef long long out = 0
    if n == 0:
        return -1
    for i in range(n):
        if not (c'0' <= p[i] <= c'9'):
            return -1
    if n > MAX_DIGITS:
        return -2
    for i in range(n):
        out = out * 10 + (p[i] - c'0')
    return out


def scan_request_headers(headers, bint trusted):
    cdef list lines = []
    cdef bytes host = b"", xff = b"", via = b"", name, value
    cdef bint chunked = False
    cdef int debug = 0
    cdef object content_length = -1
    cdef long long digits
    cdef dict forwarded = None
    cdef list signals = None
    cdef Py_ssize_t head_size = 0
    cdef bytes line
    for item in headers:
        name_obj, value_obj = item
        name = <bytes?>name_obj
        value = <bytes?>value_obj
        if name not in _SPECIAL:
            if PyBytes_GET_SIZE(name) == 14 and name == b"content-length":
                digits = _digits(value)
                if digits == -1 or content_length != -1:
                    content_length = -2
                elif digits == -2:
                    content_length = int(value)
                else:
                    content_length = digits
            line = _line(name, value)
            lines.append(line)
            head_size += PyBytes_GET_SIZE(line)
            continue
        head_size += PyBytes_GET_SIZE(value) + 24
        if name == b"host":
            if PyBytes_GET_SIZE(host):
                content_length = -2
            host = value
        elif name == b"x-forwarded-for":
            if not PyBytes_GET_SIZE(xff):
                xff = value
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif name == b"via":
            if not PyBytes_GET_SIZE(via):
                via = value
        elif name == _DEBUG:
            line = _line(name, value)
            lines.append(line)
            head_size += PyBytes_GET_SIZE(line)
            debug |= 1
        elif name in _REQUEST_DEBUG:
            line = _line(name, value)
            lines.append(line)
            head_size += PyBytes_GET_SIZE(line)
            debug |= 2
        elif name in _SIGNALS:
            if signals is None:
                signals = []
            signals.append((name, value))
        elif trusted and name in _TRUSTED:
            if forwarded is None:
                forwarded = {}
            forwarded.setdefault(name, value)
    return lines, host, xff, via, chunked, content_length, forwarded, signals, head_size, debug


def edit_header_lines(list lines, remove, dict edits):
    cdef list kept = []
    cdef bytes line, name
    cdef const char* p
    cdef const char* colon
    for item in lines:
        line = <bytes?>item
        p = PyBytes_AS_STRING(line)
        colon = <const char*>memchr(p, c':', PyBytes_GET_SIZE(line))
        if colon == NULL:  # not a copied line (never made here): its name is the whole line
            name = line[:-1]
        else:
            name = PyBytes_FromStringAndSize(p, colon - p)
        if name in remove or name in edits:
            continue
        kept.append(line)
    for key, value in edits.items():
        name = <bytes?>key
        if name == b"host":
            continue
        if isinstance(value, list):
            for one in value:
                kept.append(_line(name, <bytes?>one))
        else:
            kept.append(_line(name, <bytes?>value))
    return kept
