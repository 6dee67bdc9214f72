"""The client's answer from a Lambda invocation's answer (Kong 3.9's ``handler.lua``, ``access``,
and ``request-util.lua``, ``extract_proxy_response``).

Without ``is_proxy_integration``: the invocation's status (or ``unhandled_status`` when the
function failed, ``X-Amz-Function-Error: Unhandled``), its headers (``x-amzn-RequestId``,
``X-Amz-Executed-Version``, ``X-Amz-Log-Result`` with ``log_type: Tail``,
``X-Amz-Function-Error``, ...) and its body: the function's result. ``Event`` invocations are
answered 202 and ``DryRun`` 204 by Lambda, and so to the client.

With ``is_proxy_integration``, the result is read as an API Gateway proxy answer:
``statusCode`` (100-599, a number or numeric text), ``headers`` (an object), ``multiValueHeaders``
(each name's values, one header line each; ``null`` is ignored), ``body`` (text, base64 when
``isBase64Encoded`` is ``true``). The function's headers are laid over the invocation's (a
name the function sets replaces the invocation's, whatever its case). An answer that is not
JSON, or breaks those rules, is Kong's 502 ``{"message": "Bad Gateway", "error": "could not JSON
decode Lambda function response: <why>"}``.

``empty_arrays_mode: legacy`` (the default): a JSON result (``Content-Type`` matching
``application/.*json``) has its empty arrays sent as ``{}``, as Kong's JSON library always did;
``correct`` leaves them ``[]``. A JSON result whose content is a string is sent as that text
(Kong decodes the result and sends a string as is). Other JSON passes byte for byte.

``Content-Length`` is the gateway's own; hop-by-hop headers (``Connection``,
``Transfer-Encoding``, ...) are dropped; ``Via`` gets the gateway's token when Kong's
``headers`` setting shows it.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any, Final

import msgspec

from fastkong.plugins.base import Exit, kong_exit
from fastkong.plugins.bundled._aws_http import Response

#: Never passed to the client: framing and hop-by-hop headers, and those the gateway writes.
_DROPPED: Final = frozenset(
    {
        "content-length",
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "server",
        "x-kong-request-id",
        "x-kong-response-latency",
    }
)
_JSON: Final = re.compile(r"application/.*json")


class ProxyResponseError(Exception):
    """The function's answer is not an API Gateway proxy answer (Kong's 502)."""


class ResponseError(Exception):
    """An answer Kong cannot send (its 500, "An unexpected error occurred")."""


def bad_gateway(reason: str) -> Exit:
    return kong_exit(
        502,
        {
            "message": "Bad Gateway",
            "error": f"could not JSON decode Lambda function response: {reason}",
        },
    )


def _status(value: Any) -> int | None:
    """``validate_http_status_code``: a number or numeric text, 100 to 599."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if not isinstance(value, int | float) or not 100 <= value <= 599:
        return None
    return int(value)


def _header_value(name: str, value: Any) -> list[str]:
    """Kong's ``validate_header``/``normalize_multi_header``: text, a number, a boolean, or an
    array of text (one header line each); an empty value is sent as one space."""
    if isinstance(value, bool):
        return ["true" if value else "false"]
    if isinstance(value, int | float):
        return [str(value)]
    if isinstance(value, str):
        return [value or " "]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return [v or " " for v in value]
    raise ResponseError(f"invalid header value for '{name}'")


class Headers:
    """Response headers by name, case-insensitive, in first-set order."""

    __slots__ = ("items",)

    def __init__(self) -> None:
        self.items: dict[str, tuple[str, list[str]]] = {}

    def set(self, name: str, values: list[str]) -> None:
        self.items[name.lower()] = (name, values)

    def get(self, name: str) -> str | None:
        found = self.items.get(name.lower())
        return found[1][0] if found and found[1] else None

    def pop(self, name: str) -> None:
        self.items.pop(name.lower(), None)

    def lines(self) -> list[tuple[bytes, bytes]]:
        """ASGI header lines, names spelt as given (as Kong sends them)."""
        return [
            (name.encode("latin-1", "replace"), value.encode("latin-1", "replace"))
            for lower, (name, values) in self.items.items()
            if lower not in _DROPPED
            for value in values
        ]


def proxy_answer(content: Any) -> tuple[int, Headers, bytes]:
    """``extract_proxy_response``: ``(status, function headers, body)``; raises
    :class:`ProxyResponseError` with Kong's reason."""
    if not isinstance(content, dict):
        raise ProxyResponseError("proxy response must be json format")
    status = _status(content.get("statusCode"))
    if status is None:
        raise ProxyResponseError("statusCode validation failed")
    headers = content.get("headers")
    if headers == []:
        headers = {}  # an empty JSON array is the same empty Lua table
    if "headers" in content and not isinstance(headers, dict):
        raise ProxyResponseError("headers must be a table")
    body = content.get("body", "")
    if not isinstance(body, str):
        raise ProxyResponseError("body must be a string")
    encoded = content.get("isBase64Encoded")
    if "isBase64Encoded" in content and not isinstance(encoded, bool):
        raise ProxyResponseError("isBase64Encoded must be a boolean")
    out = Headers()
    for name, value in (headers or {}).items():
        out.set(name, _header_value(name, value))
    multi = content.get("multiValueHeaders")
    if isinstance(multi, dict):
        for name, value in multi.items():
            out.set(name, _header_value(name, value))
    elif multi not in (None, []):
        raise ResponseError("multiValueHeaders must be an object")
    data = body.encode("utf-8", "surrogatepass")
    if encoded:
        try:
            data = base64.b64decode(data + b"=" * (-len(data) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise ResponseError("the function's body is not valid base64") from None
    return status, out, data


def _legacy_arrays(value: Any) -> tuple[Any, bool]:
    """Empty arrays as empty objects (Kong's ``legacy`` mode); whether any was found."""
    if isinstance(value, list):
        if not value:
            return {}, True
        found = False
        items = []
        for item in value:
            item, changed = _legacy_arrays(item)
            found |= changed
            items.append(item)
        return items, found
    if isinstance(value, dict):
        found = False
        out = {}
        for key, item in value.items():
            out[key], changed = _legacy_arrays(item)
            found |= changed
        return out, found
    return value, False


def _is_json(content_type: str | None) -> bool:
    return content_type is not None and _JSON.search(content_type.lower()) is not None


def client_answer(
    res: Response,
    *,
    proxy_integration: bool,
    unhandled_status: int | None,
    legacy_arrays: bool,
    via: bytes | None,
) -> Exit:
    """The :class:`Exit` the client gets for the invocation's answer ``res``."""
    headers = Headers()
    for name, value in res.headers:
        found = headers.items.get(name.lower())
        if found is not None:
            found[1].append(value)
        else:
            headers.set(name, [value])
    body = res.body
    decoded: Any = None
    is_json = _is_json(res.header("content-type"))
    if is_json:
        try:
            decoded = msgspec.json.decode(body)
        except msgspec.DecodeError:
            is_json = False  # sent as it came, as Kong does
    status: int
    if proxy_integration:
        content: Any = decoded if is_json else body
        if not is_json:
            try:
                content = msgspec.json.decode(body)
            except msgspec.DecodeError as exc:
                return bad_gateway(_decode_reason(body, exc))
        try:
            status, own, body = proxy_answer(content)
        except ProxyResponseError as exc:
            return bad_gateway(str(exc))
        for lower, item in own.items.items():
            headers.items.pop(lower, None)
            headers.items[lower] = item
    else:
        unhandled = headers.get("X-Amz-Function-Error") == "Unhandled"
        status = unhandled_status if unhandled_status and unhandled else res.status
        if is_json and isinstance(decoded, str):
            body = decoded.encode("utf-8", "surrogatepass")
        elif is_json and legacy_arrays and _is_json(headers.get("content-type")):
            rewritten, changed = _legacy_arrays(decoded)
            if changed:
                body = msgspec.json.encode(rewritten)
    if via is not None:
        upstream = headers.get("via")
        headers.set("Via", [f"{upstream}, {via.decode()}" if upstream else via.decode()])
    return Exit(status, body, headers.lines())


def _decode_reason(body: bytes, exc: msgspec.DecodeError) -> str:
    """Why the answer is not JSON, in the words of Kong's JSON library where they are known."""
    if not body.strip():
        return "Expected value but found T_END at character 1"
    return str(exc)
