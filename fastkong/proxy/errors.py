"""Gateway-generated error responses, byte for byte as Kong renders them.

Kong has two paths (reference kong.md 3.4):

* ``kong.response.error`` (no route, plugin 401/403/429, balancer 503) picks the format from
  ``Accept`` with q-values; no ``Accept`` or ``*/*`` gives JSON.
* nginx's ``error_page`` path (502, 504 and friends) looks at ``Accept``, else ``Content-Type``,
  else ``error_default_type`` (``text/plain``), and negotiates on that header the same way
  (``kong/error_handlers.lua`` calls ``get_response_type`` since Kong 3.3; before, it mapped
  the whole header through ``get_mime_type``, which understands one media type only).

Both fill the same templates and carry the request id.
"""

from __future__ import annotations

import re

JSON = "application/json; charset=utf-8"
HTML = "text/html; charset=utf-8"
XML = "application/xml; charset=utf-8"
PLAIN = "text/plain; charset=utf-8"

_MIME_TYPES = {
    "text/html": HTML,
    "application/json": JSON,
    "text/plain": PLAIN,
    "application/xml": XML,
    "application": JSON,
    "text": PLAIN,
}

_TEMPLATES = {
    JSON: '{\n  "message":"%s",\n  "request_id":"%s"\n}',
    HTML: (
        '<!doctype html>\n<html>\n  <head>\n    <meta charset="utf-8">\n    <title>Error</title>\n'
        "  </head>\n  <body>\n    <h1>Error</h1>\n    <p>%s.</p>\n    <p>request_id: %s</p>\n"
        "  </body>\n</html>\n"
    ),
    PLAIN: "%s\nrequest_id: %s\n",
    XML: (
        '<?xml version="1.0" encoding="UTF-8"?>\n<error>\n  <message>%s</message>\n'
        "  <requestid>%s</requestid>\n</error>\n"
    ),
}

#: nginx-level error messages (``kong/error_handlers.lua``).
NGINX_MESSAGES = {
    400: "Bad request",
    404: "Not found",
    405: "Method not allowed",
    408: "Request timeout",
    411: "Length required",
    412: "Precondition failed",
    413: "Payload too large",
    414: "URI too long",
    417: "Expectation failed",
    494: "Request header or cookie too large",
    500: "An unexpected error occurred",
    502: "An invalid response was received from the upstream server",
    503: "The upstream server is currently unavailable",
    504: "The upstream server is timing out",
}

#: kong/pdk/response.lua: the gRPC status of an HTTP status (others by class: 5xx Internal,
#: 4xx InvalidArgument, 2xx OK, else Unknown), and each status's name.
_HTTP_TO_GRPC = {
    200: 0,
    400: 3,
    401: 16,
    403: 7,
    404: 5,
    409: 6,
    429: 8,
    499: 1,
    500: 13,
    501: 12,
    503: 14,
    504: 4,
}
GRPC_MESSAGES = (
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
)


def grpc_status(status: int) -> int:
    """Kong's gRPC status for an HTTP status it answers a gRPC request with."""
    found = _HTTP_TO_GRPC.get(status)
    if found is not None:
        return found
    if 500 <= status <= 599:
        return 13
    if 400 <= status <= 499:
        return 3
    if 200 <= status <= 299:
        return 0
    return 2


def grpc_error_headers(status: int, message: str | None = None) -> list[tuple[bytes, bytes]]:
    """A gRPC client's error, as Kong's response functions write it in the head (there is no
    body): ``grpc-status`` from the HTTP status, ``grpc-message`` the given message, else the
    status's name (``kong.response.error`` gives no message to a gRPC client)."""
    code = grpc_status(status)
    text = message if message is not None else GRPC_MESSAGES[code]
    return [(b"grpc-status", b"%d" % code), (b"grpc-message", text.encode("utf-8"))]


NO_ROUTE = "no Route matched with those values"
NO_SERVICE = "no Service found with those values"
NO_PEER = "failure to get a peer from the ring-balancer"
NAME_RESOLUTION_FAILED = "name resolution failed"

_ACCEPT_VALUE = re.compile(
    r"((?:[a-z0-9][a-z0-9\-!#$&^_+.]+|\*)/(?:[a-z0-9][a-z0-9\-!#$&^_+.]+|\*))"
    r"(?:\s*;\s*q=(1(?:\.0{0,3}|)|0(?:\.\d{0,3}|))|\s*;\s*[a-z0-9][a-z0-9\-!#$&^_+.]+(?:=[^;]*|))*",
    re.IGNORECASE,
)


def mime_type(header: str) -> str:
    """Kong's ``get_mime_type``: one media type (parameters ignored) -> a response type."""
    media = header.strip().split(";", 1)[0]
    major, slash, minor = media.partition("/")
    if not slash:
        return JSON
    if minor == "*":
        return JSON if major == "*" else _MIME_TYPES.get(major, JSON)
    return _MIME_TYPES.get(media, JSON)


def response_type(accept: str | None) -> str:
    """Kong's ``get_response_type``: the Accept entry with the highest q-value wins."""
    if not accept:
        return JSON
    chosen = JSON
    best = 0.0
    for value in accept.split(","):
        m = _ACCEPT_VALUE.match(value.strip())
        if m is None:
            continue
        q = float(m.group(2)) if m.group(2) else 1.0
        if q > best:
            best = q
            chosen = mime_type(m.group(1))
    return chosen


def render(content_type: str, message: str, request_id: str) -> bytes:
    """Fill Kong's error template for ``content_type``."""
    return (_TEMPLATES[content_type] % (message, request_id)).encode()


def for_response_error(accept: str | None, message: str, request_id: str) -> tuple[str, bytes]:
    """``kong.response.error``: negotiated on Accept, JSON by default."""
    ctype = response_type(accept)
    return ctype, render(ctype, message, request_id)


#: Kong's ``error_default_type`` values (the type of nginx error pages for a request that
#: names none).
ERROR_DEFAULT_TYPES = ("text/plain", "text/html", "application/json", "application/xml")


def check_error_default_type(value: str) -> str:
    if value not in ERROR_DEFAULT_TYPES:
        raise ValueError(
            f"error_default_type: expected one of {', '.join(ERROR_DEFAULT_TYPES)}, got {value!r}"
        )
    return value


def for_nginx_error(
    status: int,
    accept: str | None,
    content_type: str | None,
    request_id: str,
    default_type: str = "text/plain",
) -> tuple[str, bytes]:
    """nginx ``error_page`` errors (502, 504, ...): Accept, else Content-Type, else Kong's
    ``error_default_type``, negotiated as ``kong.response.error`` does (q-values, the first
    best entry wins)."""
    header = accept if accept is not None else content_type
    ctype = response_type(header if header is not None else default_type)
    return ctype, render(ctype, nginx_message(status), request_id)


def nginx_message(status: int) -> str:
    return NGINX_MESSAGES.get(status) or f"The upstream server responded with {status}"
