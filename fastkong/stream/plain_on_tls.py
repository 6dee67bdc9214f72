"""The answer to a plain HTTP request sent to an ``ssl`` proxy listener (nginx's 497).

Someone who types ``http://host:8443/`` gets, from Kong's nginx, a ``400 Bad Request`` page that
says "The plain HTTP request was sent to HTTPS port", and the connection closes (nginx's
internal status 497, which Kong's ``error_page`` list leaves to nginx's built-in page). The edge
answers the same way instead of dropping the connection unanswered. Bytes that are neither TLS
nor an HTTP request line still get no answer.

Plain decision code: give :func:`answer` the request head read so far.
"""

from __future__ import annotations

import re
from email.utils import formatdate
from typing import Final

#: As much of a request head as is read before answering (nginx's large header buffers).
MAX_HEAD: Final = 32 * 1024

_REQUEST_LINE: Final = re.compile(rb"([A-Z]{1,20}) \S+ HTTP/\d\.\d\r?\n")
_TITLE: Final = b"400 The plain HTTP request was sent to HTTPS port"
BODY: Final = (
    b"<html>\r\n<head><title>" + _TITLE + b"</title></head>\r\n<body>\r\n"
    b"<center><h1>400 Bad Request</h1></center>\r\n"
    b"<center>The plain HTTP request was sent to HTTPS port</center>\r\n"
    b"<hr><center>openresty</center>\r\n</body>\r\n</html>\r\n"
)


def head_complete(data: bytes) -> bool:
    """Whether ``data`` holds a whole request head (or as much as will be read)."""
    return b"\r\n\r\n" in data or b"\n\n" in data or len(data) >= MAX_HEAD


def answer(head: bytes, server: str | None) -> bytes | None:
    """The response to ``head``, the client's first bytes; None when they are not an HTTP
    request (the connection is then closed unanswered)."""
    line = _REQUEST_LINE.match(head)
    if line is None:
        return None
    lines = [
        b"HTTP/1.1 400 Bad Request",
        b"Date: " + formatdate(usegmt=True).encode(),
        b"Content-Type: text/html",
        b"Content-Length: " + str(len(BODY)).encode(),
        b"Connection: close",
    ]
    if server is not None:
        lines.insert(1, b"Server: " + server.encode())
    response = b"\r\n".join(lines) + b"\r\n\r\n"
    return response if line.group(1) == b"HEAD" else response + BODY


__all__ = ["BODY", "MAX_HEAD", "answer", "head_complete"]
