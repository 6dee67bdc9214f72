"""Compiled twin of ``_uri_py``: Kong's request-path normalization and upstream path.

Same contract as the twin (read its module docstring for the string/bytes convention). Both
functions run once per request, so they work on the string's bytes in C: one pass decodes
percent escapes, one pass resolves dot segments (a stack of segment offsets stands for Kong's
table of segments), and the common clean path returns its input without copying.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy

cdef extern from "Python.h":
    int PyUnicode_IS_ASCII(object)
    int PyUnicode_KIND(object)
    void* PyUnicode_DATA(object)
    int PyUnicode_1BYTE_KIND

__all__ = ["normalize_path", "upstream_path"]

cdef unsigned char _RESERVED[256]
cdef unsigned char _SAFE[256]
cdef char* _HEX = b"0123456789ABCDEF"


cdef void _init_tables():
    cdef int i
    for i in range(256):
        _RESERVED[i] = 0
        _SAFE[i] = 0
    for c in b"!*'();:@&=+$,/?%#[]":
        _RESERVED[c] = 1
    for c in b"!#$&'()*+,/:;=?@[]-_.~%":
        _SAFE[c] = 1
    for i in range(ord("a"), ord("z") + 1):
        _SAFE[i] = 1
    for i in range(ord("A"), ord("Z") + 1):
        _SAFE[i] = 1
    for i in range(ord("0"), ord("9") + 1):
        _SAFE[i] = 1


_init_tables()


cdef inline int _hexval(unsigned char c) noexcept:
    if c >= c'0' and c <= c'9':
        return c - c'0'
    c |= 0x20
    if c >= c'a' and c <= c'f':
        return c - c'a' + 10
    return -1


cdef Py_ssize_t _decode(const unsigned char* src, Py_ssize_t n, unsigned char* dst) noexcept:
    """Kong's percent-decoding into ``dst``; returns the length, or -1 where nginx says 400."""
    cdef Py_ssize_t i = 0, o = 0
    cdef int hi, lo, value
    while i < n:
        if src[i] != c'%':
            dst[o] = src[i]
            o += 1
            i += 1
            continue
        if i + 2 >= n:
            return -1
        hi = _hexval(src[i + 1])
        lo = _hexval(src[i + 2])
        if hi < 0 or lo < 0:
            return -1
        value = hi * 16 + lo
        if value == 0:
            return -1
        if _RESERVED[value]:
            dst[o] = c'%'
            dst[o + 1] = _HEX[hi]
            dst[o + 2] = _HEX[lo]
            o += 3
        else:
            dst[o] = <unsigned char>value
            o += 1
        i += 3
    return o


cdef Py_ssize_t _dots(const unsigned char* u, Py_ssize_t n, unsigned char* out,
                      Py_ssize_t* starts) noexcept:
    """Kong's dot-segment loop (merge_slashes on); -1 for a ``..`` above the root."""
    cdef Py_ssize_t i = 0, o = 0, nseg = 0, rest, j
    cdef int c0, c1, c2, c3
    while i < n:
        rest = n - i
        c0 = u[i]
        c1 = u[i + 1] if rest > 1 else -1
        c2 = u[i + 2] if rest > 2 else -1
        c3 = u[i + 3] if rest > 3 else -1
        if rest == 2 and c0 == c'/' and c1 == c'.':
            starts[nseg] = o
            nseg += 1
            out[o] = c'/'
            o += 1
            i = n
        elif rest == 3 and c0 == c'/' and c1 == c'.' and c2 == c'.':
            if nseg == 0:
                return -1
            nseg -= 1
            o = starts[nseg]
            starts[nseg] = o
            nseg += 1
            out[o] = c'/'
            o += 1
            i = n
        elif (rest == 1 and c0 == c'.') or (rest == 2 and c0 == c'.' and c1 == c'.'):
            i = n
        elif c0 == c'.' and c1 == c'.' and c2 == c'/':
            i += 3
        elif c0 == c'.' and c1 == c'/':
            i += 2
        elif c0 == c'/' and c1 == c'.' and c2 == c'/':
            i += 2
        elif c0 == c'/' and c1 == c'.' and c2 == c'.' and c3 == c'/':
            if nseg == 0:
                return -1
            nseg -= 1
            o = starts[nseg]
            i += 3
        elif c0 == c'/' and c1 == c'/':
            i += 1
        else:
            j = i + 1
            while j < n and u[j] != c'/':
                j += 1
            starts[nseg] = o
            nseg += 1
            memcpy(out + o, u + i, j - i)
            o += j - i
            i = j
    return o


def normalize_path(str raw not None):
    """Kong's ``normalize(uri, true)``, as the router sees the path; None means answer 400.

    See ``_uri_py.normalize_path``.
    """
    cdef const unsigned char* src
    cdef Py_ssize_t n, i, m
    cdef bint pct = False, dot = False, dslash = False
    cdef unsigned char* work
    cdef unsigned char* out
    cdef Py_ssize_t* starts
    cdef object holder = None
    if PyUnicode_KIND(raw) == PyUnicode_1BYTE_KIND:
        src = <const unsigned char*>PyUnicode_DATA(raw)
        n = len(raw)
    else:
        holder = raw.encode("utf-8", "surrogateescape")
        src = <const unsigned char*>PyBytes_AS_STRING(holder)
        n = PyBytes_GET_SIZE(holder)
    for i in range(n):
        if src[i] == c'%':
            pct = True
        elif src[i] == c'.':
            dot = True
        elif src[i] == c'/' and i + 1 < n and src[i + 1] == c'/':
            dslash = True
    if not (pct or dot or dslash) and PyUnicode_IS_ASCII(raw):
        return raw
    work = <unsigned char*>malloc(2 * n + 1)
    starts = <Py_ssize_t*>malloc((n + 1) * sizeof(Py_ssize_t))
    if work == NULL or starts == NULL:
        free(work)
        free(starts)
        raise MemoryError()
    try:
        out = work + n + 1
        if pct:
            m = _decode(src, n, work)
            if m < 0:
                return None
            src = work
            n = m
            dot = dslash = False
            for i in range(n):
                if src[i] == c'.':
                    dot = True
                elif src[i] == c'/' and i + 1 < n and src[i + 1] == c'/':
                    dslash = True
        if dot or dslash:
            m = _dots(src, n, out, starts)
            if m < 0:
                return None
            src = out
            n = m
        return PyUnicode_DecodeUTF8(<const char*>src, n, "surrogateescape")
    finally:
        free(work)
        free(starts)


cdef str _escape(str uri):
    cdef const unsigned char* src
    cdef Py_ssize_t n, i, o = 0
    cdef unsigned char c
    cdef unsigned char* buf
    if PyUnicode_IS_ASCII(uri):
        src = <const unsigned char*>PyUnicode_DATA(uri)
        n = len(uri)
        for i in range(n):
            if not _SAFE[src[i]]:
                break
        else:
            return uri
        data = uri.encode("ascii")
    else:
        data = uri.encode("utf-8", "surrogateescape")
    src = <const unsigned char*>PyBytes_AS_STRING(data)
    n = PyBytes_GET_SIZE(data)
    buf = <unsigned char*>malloc(3 * n + 1)
    if buf == NULL:
        raise MemoryError()
    try:
        for i in range(n):
            c = src[i]
            if _SAFE[c]:
                buf[o] = c
                o += 1
            else:
                buf[o] = c'%'
                buf[o + 1] = _HEX[c >> 4]
                buf[o + 2] = _HEX[c & 15]
                o += 3
        return PyBytes_FromStringAndSize(<char*>buf, o).decode("ascii")
    finally:
        free(buf)


cdef str _sanitize_postfix(str postfix):
    if postfix == "." or postfix == "..":
        return ""
    if postfix.startswith("./"):
        return postfix[2:]
    if postfix.startswith("../"):
        return postfix[3:]
    return postfix


def upstream_path(service_path, str request_path not None, Py_ssize_t matched_len,
                  bint strip_path, str path_handling not None):
    """The path Kong sends upstream (without the query). See ``_uri_py.upstream_path``."""
    cdef str base = "/" if service_path is None else <str>service_path
    cdef Py_ssize_t cut = matched_len if strip_path and matched_len > 0 else 1
    cdef str postfix = _sanitize_postfix(request_path[cut:])
    cdef str joined
    cdef bint base_slash = base.endswith("/")
    if path_handling == "v1":
        if not strip_path:
            joined = base + request_path[1:]
        elif base_slash and postfix.startswith("/"):
            joined = base[:len(base) - 1] + postfix
        else:
            joined = base + postfix
    elif base_slash:
        if not strip_path:
            joined = base + request_path[1:]
        elif not postfix:
            if base == "/" or request_path.endswith("/"):
                joined = base
            else:
                joined = base[:len(base) - 1]
        elif postfix.startswith("/"):
            joined = base[:len(base) - 1] + postfix
        else:
            joined = base + postfix
    elif not strip_path:
        joined = base if request_path == "/" else base + request_path
    elif not postfix:
        if len(request_path) > 1 and request_path.endswith("/"):
            joined = base + "/"
        else:
            joined = base
    elif postfix.startswith("/"):
        joined = base + postfix
    else:
        joined = base + "/" + postfix
    return _escape(joined)
