"""Request size limits as Kong's nginx applies them: ``large_client_header_buffers`` and
``client_max_body_size``.

Kong's proxy runs nginx with ``client_header_buffer_size 1k``, ``large_client_header_buffers
4 8k`` and ``client_max_body_size 0`` (no limit), which users change through ``nginx_http_*``
and ``nginx_proxy_*`` settings (``KONG_NGINX_PROXY_LARGE_CLIENT_HEADER_BUFFERS="8 24k"`` is
the usual remedy for large cookies and JWTs). fastkong reads the same settings.

How nginx decides, and how this module reproduces it: nginx reads the request head into a 1k
buffer; when a line does not fit in what is left of the buffer in use, the whole line moves to
a fresh large buffer of ``size`` bytes, at most ``number`` of them per request (a line never
spans two buffers). A request line that cannot be placed is refused with 414 (Kong: "URI too
long"); a header line that cannot be placed, with nginx's internal 494, which Kong's error
handler answers as 400 "Request header or cookie too large". Granian parses the head before
fastkong sees it, so the lines are measured as nginx would hold them rebuilt from the parsed
parts (``METHOD target HTTP/1.1``, ``name: value``, each with its CRLF); a client that pads
with extra spaces gets a few bytes of slack.

Checking costs nothing for ordinary requests: :meth:`RequestLimits.head_status` is called only
when a cheap upper bound of the head's size exceeds one large buffer (a head that fits in one
large buffer always fits).

``client_max_body_size``: a declared Content-Length above it is refused with 413 before routing
(nginx checks it when it picks the location, before Kong's access phase runs); a chunked body
is counted as it is read (:func:`limit_body`), and answered 413 when it goes over.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from fastkong.kong_conf import parse_size

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]

#: nginx's ``client_header_buffer_size`` (Kong's ``nginx_http_client_header_buffer_size``,
#: 1k; fastkong keeps it fixed): the first buffer a request head is read into.
CLIENT_HEADER_BUFFER = 1024
DEFAULT_HEADER_BUFFERS = "4 8k"
DEFAULT_MAX_BODY = "0"
#: nginx's status for a request line that does not fit, and (as Kong answers 494) for headers.
URI_TOO_LONG = 414
HEADER_TOO_LARGE = 494
BODY_TOO_LARGE = 413


class BodyLimitExceeded(Exception):
    """The request body went over ``client_max_body_size`` while it was read."""


class RequestLimits:
    """The node's head and body limits; immutable once built."""

    __slots__ = ("number", "size", "max_body", "fast_limit")

    def __init__(self, number: int = 4, size: int = 8192, max_body: int = 0) -> None:
        if number < 1 or size < 1:
            raise ValueError("large_client_header_buffers: number and size must be positive")
        self.number = number
        self.size = size
        #: 0: no limit (Kong's default).
        self.max_body = max_body
        #: A head whose size bound stays at or under this fits by construction.
        self.fast_limit = size

    @classmethod
    def parse(
        cls, header_buffers: str = DEFAULT_HEADER_BUFFERS, max_body: str = DEFAULT_MAX_BODY
    ) -> RequestLimits:
        """From the settings' text: ``"4 8k"`` and ``"0"`` / ``"10m"``."""
        words = header_buffers.split()
        if len(words) != 2 or not words[0].isdigit():
            raise ValueError(
                f"large_client_header_buffers: expected 'number size' (e.g. '4 8k'), "
                f"got {header_buffers!r}"
            )
        size = parse_size(words[1], "large_client_header_buffers")
        return cls(int(words[0]), size, parse_size(max_body, "client_max_body_size"))

    def __repr__(self) -> str:
        return (
            f"<RequestLimits large_client_header_buffers={self.number}x{self.size} "
            f"client_max_body_size={self.max_body or 'off'}>"
        )

    @property
    def capacity(self) -> int:
        """The most head bytes nginx could hold (the server's read buffer must allow it)."""
        return CLIENT_HEADER_BUFFER + self.number * self.size

    def head_status(
        self, method: str, target_len: int, headers: Iterable[tuple[bytes, bytes]]
    ) -> int:
        """0 when the head fits nginx's buffers; else 414 or 494 (see the module docstring).

        ``target_len`` is the request target's length (path, and ``?query`` when there is one).
        """
        size = self.size
        free = CLIENT_HEADER_BUFFER  # what is left in the buffer in use
        used = 0  # large buffers taken
        line = len(method) + 1 + target_len + len(" HTTP/1.1\r\n")
        if line > free:
            if line > size:
                return URI_TOO_LONG
            used, free = 1, size
        free -= line
        for name, value in headers:
            line = len(name) + 2 + len(value) + 2
            if line > free:
                if line > size or used == self.number:
                    return HEADER_TOO_LARGE
                used += 1
                free = size
            free -= line
        return 0

    def refuse(
        self,
        method: str,
        path: bytes,
        query: bytes,
        headers: Iterable[tuple[bytes, bytes]],
        content_length: int,
    ) -> int:
        """The status nginx refuses this request head with (414, 494, 413), or 0."""
        status = self.head_status(method, len(path) + (len(query) + 1 if query else 0), headers)
        if status:
            return status
        if self.max_body and content_length > self.max_body:
            return BODY_TOO_LARGE
        return 0

    def limit_body(self, receive: Receive) -> Receive:
        """``receive`` counting the body: BodyLimitExceeded once it passes ``max_body``."""
        limit = self.max_body
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyLimitExceeded(seen)
            return message

        return counted


DEFAULT_LIMITS = RequestLimits()
