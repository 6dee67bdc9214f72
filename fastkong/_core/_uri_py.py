"""Pure-Python twin of ``uri.pyx``: Kong's request-path normalization and upstream path.

Strings and bytes
-----------------
``normalize_path`` takes the path as it came on the wire, one character per byte (the proxy
decodes it as latin-1; a string holding characters above U+00FF is taken as UTF-8 text
instead). It returns *text*: the bytes Kong decodes, read as UTF-8, with undecodable bytes
kept as lone surrogates (``surrogateescape``) so that nothing is lost. The router matches that
text against the configured paths (which are text), and refuses paths holding surrogates as
Kong's ATC refuses non-UTF-8 input. ``upstream_path`` turns the text back into bytes and
escapes it as Kong does, so its result is always ASCII.
"""

from __future__ import annotations

import re

__all__ = ["normalize_path", "upstream_path"]

# kong.tools.uri: reserved characters stay percent-encoded (hex upper-cased); everything else
# (unreserved and "other" characters) is decoded.
_RESERVED = frozenset(b"!*'();:@&=+$,/?%#[]")
_HEXDIGITS = frozenset(b"0123456789abcdefABCDEF")
# kong.tools.uri.escape: bytes outside this set are sent upstream as %XX.
_UNSAFE = re.compile(rb"[^!#$&'()*+,/:;=?@\[\]A-Za-z0-9\-_.~%]")


def _decode(data: bytes) -> bytes | None:
    out = bytearray()
    start = 0
    n = len(data)
    i = data.find(b"%")
    while i >= 0:
        out += data[start:i]
        if i + 2 >= n or data[i + 1] not in _HEXDIGITS or data[i + 2] not in _HEXDIGITS:
            return None  # nginx answers 400 to a bad escape
        value = int(data[i + 1 : i + 3], 16)
        if value == 0:
            return None  # nginx answers 400 to %00
        if value in _RESERVED:
            out += data[i : i + 3].upper()
        else:
            out.append(value)
        start = i + 3
        i = data.find(b"%", start)
    out += data[start:]
    return bytes(out)


def _remove_dot_segments(uri: bytes) -> bytes | None:
    """Kong's loop of ``kong.tools.uri.normalize`` (merge_slashes on), on bytes.

    Returns None where nginx would refuse the request line: a ``..`` climbing above the root.
    """
    segments: list[bytes] = []
    i = 0
    n = len(uri)
    while i < n:
        rest = n - i
        c0 = uri[i]
        c1 = uri[i + 1] if rest > 1 else -1
        c2 = uri[i + 2] if rest > 2 else -1
        c3 = uri[i + 3] if rest > 3 else -1
        if rest == 2 and c0 == 0x2F and c1 == 0x2E:  # "/."
            segments.append(b"/")
            i = n
        elif rest == 3 and c0 == 0x2F and c1 == 0x2E and c2 == 0x2E:  # "/.."
            if not segments:
                return None
            segments.pop()
            segments.append(b"/")
            i = n
        elif (rest == 1 and c0 == 0x2E) or (rest == 2 and c0 == 0x2E and c1 == 0x2E):
            i = n  # "." or ".."
        elif c0 == 0x2E and c1 == 0x2E and c2 == 0x2F:  # "../"
            i += 3
        elif c0 == 0x2E and c1 == 0x2F:  # "./"
            i += 2
        elif c0 == 0x2F and c1 == 0x2E and c2 == 0x2F:  # "/./"
            i += 2
        elif c0 == 0x2F and c1 == 0x2E and c2 == 0x2E and c3 == 0x2F:  # "/../"
            if not segments:
                return None
            segments.pop()
            i += 3
        elif c0 == 0x2F and c1 == 0x2F:  # "//"
            i += 1
        else:
            j = uri.find(b"/", i + 1)
            if j < 0:
                j = n
            segments.append(uri[i:j])
            i = j
    return b"".join(segments)


def normalize_path(raw: str) -> str | None:
    """Kong's ``normalize(uri, true)``, as the router sees the path; None means answer 400.

    Percent-decodes unreserved and other characters, keeps reserved ones encoded (upper-case
    hex), resolves ``.`` and ``..`` segments and merges slashes. A bad escape, ``%00`` or a
    ``..`` above the root gives None: nginx refuses those before Kong runs.
    """
    if raw.isascii() and "%" not in raw and "." not in raw and "//" not in raw:
        return raw
    try:
        data = raw.encode("latin-1")
    except UnicodeEncodeError:
        data = raw.encode("utf-8", "surrogateescape")
    if b"%" in data:
        decoded = _decode(data)
        if decoded is None:
            return None
        data = decoded
    if b"." in data or b"//" in data:
        resolved = _remove_dot_segments(data)
        if resolved is None:
            return None
        data = resolved
    return data.decode("utf-8", "surrogateescape")


def _sanitize_postfix(postfix: str) -> str:
    if postfix in (".", ".."):
        return ""
    if postfix.startswith("./"):
        return postfix[2:]
    if postfix.startswith("../"):
        return postfix[3:]
    return postfix


def _v0(base: str, postfix: str, path: str, strip: bool) -> str:
    # kong.router.utils.get_upstream_uri_v0
    if base.endswith("/"):
        if not strip:
            return base + path[1:]
        if not postfix:
            if base == "/" or path.endswith("/"):
                return base
            return base[:-1]
        if postfix.startswith("/"):
            return base[:-1] + postfix
        return base + postfix
    if not strip:
        return base if path == "/" else base + path
    if not postfix:
        return base + "/" if len(path) > 1 and path.endswith("/") else base
    if postfix.startswith("/"):
        return base + postfix
    return base + "/" + postfix


def _v1(base: str, postfix: str, path: str, strip: bool) -> str:
    # kong/router/traditional.lua, path_handling == "v1"
    if not strip:
        return base + path[1:]
    if base.endswith("/") and postfix.startswith("/"):
        return base[:-1] + postfix
    return base + postfix


def _escape(uri: str) -> str:
    data = uri.encode("utf-8", "surrogateescape")
    if _UNSAFE.search(data) is None:
        return data.decode("ascii")
    return _UNSAFE.sub(lambda m: b"%%%02X" % m.group()[0], data).decode("ascii")


def upstream_path(
    service_path: str | None,
    request_path: str,
    matched_len: int,
    strip_path: bool,
    path_handling: str,
) -> str:
    """The path Kong sends upstream (without the query, which the caller appends unchanged).

    Parameters
    ----------
    service_path: the service's ``path``; None means ``/``.
    request_path: the normalized request path (:func:`normalize_path`).
    matched_len: ``RouteMatch.matched_len``; 0 when the route has no paths.
    strip_path: the route's ``strip_path``.
    path_handling: the route's ``path_handling``, ``"v0"`` or ``"v1"``.

    The matched prefix (``/`` without strip_path or without a path match) is cut off, a leading
    ``./`` or ``../`` of the rest is dropped, the parts are joined by the v0 or v1 rule and the
    result is escaped as Kong's ``kong.tools.uri.escape`` (always ASCII).
    """
    base = "/" if service_path is None else service_path
    cut = matched_len if strip_path and matched_len > 0 else 1
    postfix = _sanitize_postfix(request_path[cut:])
    if path_handling == "v1":
        joined = _v1(base, postfix, request_path, strip_path)
    else:
        joined = _v0(base, postfix, request_path, strip_path)
    return _escape(joined)
