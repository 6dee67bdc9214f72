"""A small HTTP/1.1 server for the status and admin listeners.

These listeners carry probes and operator calls, not proxy traffic, so they live in the
supervisor process on plain asyncio streams: no Granian worker is needed to answer
``/status/ready``, and a worker that is busy or restarting cannot make a probe fail.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fastkong import __version__

log = logging.getLogger("fastkong.http")

MAX_HEAD = 64 * 1024
MAX_BODY = 64 * 1024 * 1024
SERVER = f"fastkong/{__version__}"
REASONS = {
    200: "OK",
    201: "Created",
    204: "No Content",
    304: "Not Modified",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Payload Too Large",
    415: "Unsupported Media Type",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes = b""


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, payload: Any, **headers: str) -> Response:
        body = json.dumps(payload, separators=(",", ":")).encode()
        return cls(status, body, {"content-type": "application/json; charset=utf-8", **headers})


Handler = Callable[[Request], Awaitable[Response]]


class BodyTooLarge(ValueError):
    """A request announced a body over :data:`MAX_BODY` (nginx: 413, connection closed)."""


async def _read_request(reader: asyncio.StreamReader) -> Request | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    except asyncio.LimitOverrunError:
        raise ValueError("request head too large") from None
    lines = head.decode("latin-1").split("\r\n")
    method, target, _version = lines[0].split(" ", 2)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0") or "0")
    if length > MAX_BODY:
        raise BodyTooLarge(length)
    body = await reader.readexactly(length) if length else b""
    url = urlsplit(target)
    return Request(method.upper(), url.path or "/", parse_qs(url.query, True), headers, body)


async def serve(
    host: str, port: int, handler: Handler, server_header: str | None = SERVER
) -> asyncio.Server:
    """Listen on ``host:port`` and answer each request with ``handler``; ``server_header``
    names the server on every answer (None: no Server header, Kong's ``headers`` without it)."""

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    request = await _read_request(reader)
                except BodyTooLarge:
                    response = Response.json(413, {"message": "Payload too large"})
                    request = None
                except (ValueError, asyncio.IncompleteReadError):
                    response = Response.json(400, {"message": "Bad request"})
                    request = None
                else:
                    if request is None:
                        return
                    try:
                        response = await handler(request)
                    except Exception:
                        log.exception("handler failed for %s %s", request.method, request.path)
                        response = Response.json(500, {"message": "An unexpected error occurred"})
                keep = request is not None and request.headers.get("connection") != "close"
                head = [f"HTTP/1.1 {response.status} {REASONS.get(response.status, 'Status')}"]
                headers = dict(response.headers)
                if server_header is not None:
                    headers = {"server": server_header, **headers}
                if response.status not in (204, 304):  # RFC 9110 8.6: no length on these
                    headers["content-length"] = str(len(response.body))
                if not keep:
                    headers["connection"] = "close"
                head.extend(f"{k}: {v}" for k, v in headers.items())
                # HEAD: the headers GET would send, no body (RFC 9110 9.3.2)
                body = b"" if request is not None and request.method == "HEAD" else response.body
                writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
                await writer.drain()
                if not keep:
                    return
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(on_client, host, port, limit=MAX_HEAD, reuse_address=True)
