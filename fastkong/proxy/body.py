"""Request bodies on their way up: read whole when small (so a failed try can be replayed),
else streamed chunk by chunk under socket backpressure; chunked framing when the client used it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastkong.proxy.upstream import UpstreamConnection

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]

#: Request bodies up to this size are read whole before the exchange, so a failed try can be
#: replayed to the next peer; larger ones stream through with bounded memory.
BUFFER_LIMIT = 1024 * 1024


def frame_body(body: bytes, chunked: bool) -> bytes:
    if not chunked:
        return body
    return b"%x\r\n%b\r\n0\r\n\r\n" % (len(body), body)


async def read_small_body(receive: Receive, content_length: int) -> bytes | None:
    """The whole body if it is known to fit in ``BUFFER_LIMIT``; else None (stream it)."""
    if content_length < 0 or content_length > BUFFER_LIMIT:
        return None
    return await read_whole_body(receive)


async def read_whole_body(receive: Receive) -> bytes:
    """Every chunk of the client's body, joined (the caller knows it is bounded);
    ``ConnectionError`` when the client goes away first."""
    parts = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ConnectionError("client went away while sending the body")
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(parts)


async def stream_body(
    receive: Receive, conn: UpstreamConnection, chunked: bool, timeout: float
) -> None:
    """Copy the client's body to the upstream chunk by chunk, bounded by socket backpressure;
    ConnectionError when the client goes away first (not the upstream's failure)."""
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ConnectionError("client went away while sending the body")
        data: bytes = message.get("body", b"")
        more = message.get("more_body", False)
        if chunked:
            frame = (b"%x\r\n%b\r\n" % (len(data), data)) if data else b""
            if not more:
                frame += b"0\r\n\r\n"
            if frame:
                await conn.write(frame, timeout)
        elif data:
            await conn.write(data, timeout)
        if not more:
            return


async def buffer_chunked(receive: Receive) -> tuple[bytes | None, Receive]:
    """A chunked body read whole when it fits in ``BUFFER_LIMIT``, to be sent sized, as
    nginx's request buffering (Kong's ``request_buffering``, on by default) sends it; else None
    and a ``receive`` that gives back what was read, then reads on (the body streams)."""
    parts: list[bytes] = []
    size = 0
    while size <= BUFFER_LIMIT:
        message = await receive()
        if message["type"] != "http.request":
            raise ConnectionError("client went away while sending the body")
        data: bytes = message.get("body", b"")
        parts.append(data)
        size += len(data)
        if not message.get("more_body", False):
            return b"".join(parts), receive
    return None, replaying(
        {"type": "http.request", "body": b"".join(parts), "more_body": True}, receive
    )


async def peek_body(receive: Receive) -> tuple[bytes | None, Receive]:
    """Whether a body of unknown length (HTTP/2 without Content-Length) exists: ``b""`` when
    the request ends before any data; else None and a ``receive`` that gives the first data
    back, then reads on (the body streams)."""
    while True:  # (empty messages before the first data or the end say nothing)
        first = await receive()
        if first["type"] != "http.request":
            raise ConnectionError("client went away while sending the body")
        if first.get("body"):
            return None, replaying(first, receive)
        if not first.get("more_body", False):
            return b"", receive


def replaying(read: Message, receive: Receive) -> Receive:
    """A ``receive`` that gives ``read`` first, then reads on."""
    pending: Message | None = read

    async def replay() -> Message:
        nonlocal pending
        if pending is not None:
            message, pending = pending, None
            return message
        return await receive()

    return replay
