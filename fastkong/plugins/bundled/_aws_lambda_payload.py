"""The JSON event the ``aws-lambda`` plugin invokes a function with
(Kong 3.9's ``kong/plugins/aws-lambda/request-util.lua``, ``build_request_payload``).

Three shapes, by config:

- ``awsgateway_compatible``: an API Gateway proxy event. Payload ``1.0`` (the REST API shape,
  Kong's): ``version``, ``resource`` (the route path that matched; a regex path without its
  ``~``), ``path`` (the path the service would get, without the query), ``httpMethod``,
  ``headers`` and ``queryStringParameters`` (each name's first value; a query flag without
  ``=`` is ``true``), ``multiValueHeaders`` and ``multiValueQueryStringParameters`` (all
  values), ``pathParameters`` (the route's named regex captures), ``body``, ``isBase64Encoded``
  and ``requestContext`` (``path``, ``protocol``, ``httpMethod``, ``domainName``,
  ``domainPrefix``, ``identity.sourceIp``/``userAgent``, ``requestId``, ``requestTime`` (CLF, UTC),
  ``requestTimeEpoch`` (ms), ``resourcePath``). Payload ``2.0`` (the HTTP API shape, AWS's
  format 2.0, which Kong added in 3.12): ``version``, ``routeKey`` and ``requestContext.stage``
  ``$default``, ``rawPath``, ``rawQueryString``, ``cookies``, ``headers`` and
  ``queryStringParameters`` with repeated values joined by commas, ``pathParameters``, ``body``,
  ``isBase64Encoded``, and ``requestContext`` (``domainName``, ``domainPrefix``, ``http`` with
  ``method``, ``path``, ``protocol``, ``sourceIp``, ``userAgent``, ``requestId``, ``time``,
  ``timeEpoch``). The body of both: base64 (``isBase64Encoded: true``, an absent body giving
  ``""``) unless ``base64_encode_body`` is off, then the text as is.
- any ``forward_request_*``: ``request_method``, ``request_uri`` (path and query as sent) with
  ``request_uri_args``, ``request_headers``, and ``request_body`` with ``request_body_args``
  (the body parsed as Kong's ``kong.request.get_body`` parses it). A body whose content type
  Kong does not parse is base64-encoded (``request_body_base64: true``) unless it is one of
  ``text/plain``, ``text/html``, ``application/xml``, ``text/xml``, ``application/soap+xml``
  (the whole header value, compared exactly, as Kong does) or ``base64_encode_body`` is off.
- otherwise (Kong's original shape): the query arguments, overlaid by the parsed body's.

Bodies as Kong's nginx holds them: one larger than ``client_body_buffer_size`` (8k by default)
would be in a temporary file, which ``kong.request.get_body`` does not parse, and which
``skip_large_bodies`` (the default) leaves out of ``request_body``/``body`` with an error line.
"""

from __future__ import annotations

import base64
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import msgspec

from fastkong.plugins.bundled._templates import decode_args

if TYPE_CHECKING:
    from fastkong.plugins.bundled.aws_lambda import AwsLambdaConfig

log = logging.getLogger("fastkong.plugins.aws-lambda")

RAW_CONTENT_TYPES: Final = frozenset(
    {"text/plain", "text/html", "application/xml", "text/xml", "application/soap+xml"}
)
TOO_LARGE: Final = "request body was buffered to disk, too large"
#: ``kong.request.get_body``'s error for a body in a temporary file (JSON, multipart).
_NOT_BUFFERED: Final = (
    "request body did not fit into client body buffer, consider raising 'client_body_buffer_size'"
)
_BOUNDARY = re.compile(r"""boundary=(?:"([^"]+)"|([^;\s]+))""", re.IGNORECASE)
_PART_NAME = re.compile(rb'content-disposition:[^\r\n]*?\bname="([^"]*)"', re.IGNORECASE)
_MONTHS: Final = (
    "Jan",
    "Feb",
    "Mar",
    "Apr",
    "May",
    "Jun",
    "Jul",
    "Aug",
    "Sep",
    "Oct",
    "Nov",
    "Dec",
)


@dataclass(slots=True)
class RequestView:
    """What the payload is built from: the request as Kong's PDK would show it."""

    method: str
    #: The request target's path and query as sent (``kong.request.get_path_with_query``).
    path_with_query: str
    query_string: str
    #: Lower-case names, values in order (``ngx.req.get_headers``).
    headers: list[tuple[str, list[str]]]
    #: The whole body (None: larger than the client body buffer, and not read).
    body: bytes | None
    #: The path the route's service would get (``$upstream_uri`` without the query).
    upstream_path: str
    http_version: str = "1.1"
    host: str = ""
    client_ip: str = ""
    request_id: str = ""
    #: When the request started (Unix time).
    started: float = field(default_factory=time.time)
    #: The route path that matched (None for a route without paths).
    resource: str | None = None
    #: The route's regex captures: group numbers and names.
    captures: dict[Any, str] = field(default_factory=dict)
    #: The body is larger than the client body buffer (nginx would have put it in a file).
    large: bool = False

    def header(self, name: str) -> str | None:
        return next((values[0] for key, values in self.headers if key == name and values), None)


# -- kong.request.get_body ------------------------------------------------------------------------


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def _multipart(raw: bytes, content_type: str) -> dict[str, Any] | None:
    """lua-multipart's ``get_all_with_arrays``: each part's value by name, repeats as arrays."""
    m = _BOUNDARY.search(content_type)
    if m is None:
        return None
    delimiter = b"--" + (m.group(1) or m.group(2)).encode("latin-1")
    args: dict[str, Any] = {}
    for chunk in raw.split(delimiter)[1:]:
        if chunk.startswith(b"--"):
            break
        chunk = chunk[2:] if chunk.startswith(b"\r\n") else chunk
        chunk = chunk[:-2] if chunk.endswith(b"\r\n") else chunk
        head, _, value = chunk.partition(b"\r\n\r\n")
        name = _PART_NAME.search(head)
        if name is None:
            continue
        key, text = name.group(1).decode("utf-8", "replace"), _text(value)
        found = args.get(key)
        if found is None:
            args[key] = text
        elif isinstance(found, list):
            found.append(text)
        else:
            args[key] = [found, text]
    return args


def get_body(content_type: str | None, raw: bytes | None) -> tuple[Any, str | None]:
    """``kong.request.get_body()``: ``(args, None)`` or ``(None, error)``, Kong's errors."""
    if content_type is None:
        return None, "missing content type"
    kind = content_type.lower().partition(";")[0]
    if kind.startswith("application/x-www-form-urlencoded"):
        if raw is None:
            return None, "requesty body in temp file not supported"
        return decode_args(raw.decode("utf-8", "surrogateescape")), None
    if kind.startswith("application/json"):
        if raw is None:
            return None, _NOT_BUFFERED
        try:
            value = msgspec.json.decode(raw)
        except msgspec.DecodeError:
            return None, "invalid json body"
        if not isinstance(value, dict | list):
            return None, "invalid json body"
        return value, None
    if kind.startswith("multipart/form-data"):
        if raw is None:
            return None, _NOT_BUFFERED
        parts = _multipart(raw, content_type)
        if parts is None:
            return None, "unable to decode multipart body"
        return parts, None
    return None, f"unsupported content type '{content_type}'"


def _merge(query: dict[str, Any], body: Any) -> Any:
    """``kong.table.merge(query, body)`` as cjson then encodes it: an array body stays an array
    alone; beside query arguments its items take the keys "1", "2", ..."""
    if body is None:
        return query
    if isinstance(body, list):
        if not query:
            return body
        return {**query, **{str(i): v for i, v in enumerate(body, 1)}}
    return {**query, **body}


# -- the three shapes ------------------------------------------------------------------------------


def request_body(view: RequestView, config: AwsLambdaConfig) -> bytes | None:
    """Kong's ``read_request_body``: the body, None when there is none or when it is larger
    than the client body buffer and ``skip_large_bodies`` is on (with Kong's error line)."""
    if view.large and config.skip_large_bodies:
        log.error("[aws-lambda] %s", TOO_LARGE)
        return None
    return view.body or None


def _encoded_body(view: RequestView, config: AwsLambdaConfig) -> tuple[str | None, bool]:
    """The gateway event's ``body`` and ``isBase64Encoded`` (Kong's rule: an absent body
    base64-encodes to ``""``)."""
    raw = request_body(view, config)
    if config.base64_encode_body:
        return base64.b64encode(raw or b"").decode("ascii"), True
    return (_text(raw) if raw is not None else None), False


def _clf_time(started: float) -> str:
    """``dd/Mon/yyyy:HH:MM:SS +0000`` (the CLF time API Gateway uses), UTC."""
    t = time.gmtime(started)
    return f"{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year}:" + time.strftime(
        "%H:%M:%S +0000", t
    )


def _protocol(view: RequestView) -> str:
    """``HTTP/1.0``, ``HTTP/1.1``, ``HTTP/2.0`` (Kong's spec; its nginx would print 1.0 and 2.0
    as ``1`` and ``2``, API Gateway does not)."""
    version = view.http_version
    return f"HTTP/{version}" if "." in version else f"HTTP/{version}.0"


def _first_values(table: dict[str, Any]) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    single: dict[str, Any] = {}
    multi: dict[str, list[Any]] = {}
    for name, value in table.items():
        values = value if isinstance(value, list) else [value]
        single[name] = values[0]
        multi[name] = values
    return single, multi


def gateway_v1(view: RequestView, config: AwsLambdaConfig) -> dict[str, Any]:
    headers = {name: values[0] for name, values in view.headers if values}
    multi_headers = {name: list(values) for name, values in view.headers if values}
    query, multi_query = _first_values(decode_args(view.query_string))
    body, encoded = _encoded_body(view, config)
    path = view.upstream_path
    context = {
        "path": path,
        "protocol": _protocol(view),
        "httpMethod": view.method,
        "domainName": view.host,
        "domainPrefix": view.host.partition(".")[0],
        "identity": {"sourceIp": view.client_ip, "userAgent": headers.get("user-agent")},
        "requestId": view.request_id,
        "requestTime": _clf_time(view.started),
        "requestTimeEpoch": int(view.started * 1000),
        "resourcePath": path,
    }
    event: dict[str, Any] = {
        "version": "1.0",
        "resource": view.resource,
        "path": path,
        "httpMethod": view.method,
        "headers": headers,
        "multiValueHeaders": multi_headers,
        "pathParameters": {k: v for k, v in view.captures.items() if isinstance(k, str)},
        "queryStringParameters": query,
        "multiValueQueryStringParameters": multi_query,
        "body": body,
        "isBase64Encoded": encoded,
        "requestContext": context,
    }
    # Kong's table leaves out what is nil (no resource on a path-less route, no body).
    return {k: v for k, v in event.items() if v is not None}


def _joined(value: Any) -> str:
    values = value if isinstance(value, list) else [value]
    return ",".join("" if v is True else str(v) for v in values)


def gateway_v2(view: RequestView, config: AwsLambdaConfig) -> dict[str, Any]:
    cookies: list[str] = []
    headers: dict[str, str] = {}
    for name, values in view.headers:
        if name == "cookie":
            cookies += [c.strip() for v in values for c in v.split(";") if c.strip()]
        elif values:
            headers[name] = ",".join(values)
    query = {k: _joined(v) for k, v in decode_args(view.query_string).items()}
    body, encoded = _encoded_body(view, config)
    path = view.upstream_path
    context = {
        "domainName": view.host,
        "domainPrefix": view.host.partition(".")[0],
        "http": {
            "method": view.method,
            "path": path,
            "protocol": _protocol(view),
            "sourceIp": view.client_ip,
            "userAgent": view.header("user-agent") or "",
        },
        "requestId": view.request_id,
        "routeKey": "$default",
        "stage": "$default",
        "time": _clf_time(view.started),
        "timeEpoch": int(view.started * 1000),
    }
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": view.query_string,
        "headers": headers,
        "requestContext": context,
        "isBase64Encoded": encoded,
    }
    if cookies:
        event["cookies"] = cookies
    if query:
        event["queryStringParameters"] = query
    parameters = {k: v for k, v in view.captures.items() if isinstance(k, str)}
    if parameters:
        event["pathParameters"] = parameters
    if body is not None:
        event["body"] = body
    return event


def forwarded(view: RequestView, config: AwsLambdaConfig) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if config.forward_request_method:
        out["request_method"] = view.method
    if config.forward_request_headers:
        out["request_headers"] = {
            name: values[0] if len(values) == 1 else list(values)
            for name, values in view.headers
            if values
        }
    if config.forward_request_uri:
        out["request_uri"] = view.path_with_query
        out["request_uri_args"] = decode_args(view.query_string)
    if config.forward_request_body:
        content_type = view.header("content-type")
        raw = request_body(view, config)
        args, error = get_body(content_type, None if view.large else view.body or b"")
        text = _text(raw) if raw is not None else None
        if error is not None and "content type" in error:
            args = {}
            if content_type not in RAW_CONTENT_TYPES and config.base64_encode_body:
                # A type Kong cannot parse: base64, in case it is binary.
                text = base64.b64encode(raw or b"").decode("ascii")
                out["request_body_base64"] = True
        # Kong's table leaves out what is nil: no body, no parsed arguments.
        if text is not None:
            out["request_body"] = text
        if args is not None:
            out["request_body_args"] = args
    return out


def legacy(view: RequestView) -> Any:
    args, _ = get_body(view.header("content-type"), None if view.large else view.body or b"")
    return _merge(decode_args(view.query_string), args)


def build(view: RequestView, config: AwsLambdaConfig) -> bytes:
    """The invocation payload (JSON)."""
    event: Any
    if config.awsgateway_compatible:
        if config.awsgateway_compatible_payload_version == "2.0":
            event = gateway_v2(view, config)
        else:
            event = gateway_v1(view, config)
    elif (
        config.forward_request_body
        or config.forward_request_headers
        or config.forward_request_method
        or config.forward_request_uri
    ):
        event = forwarded(view, config)
    else:
        event = legacy(view)
    return encode(event)


def encode(value: Any) -> bytes:
    """JSON, with text that is not UTF-8 (query bytes kept as lone surrogates) made valid."""
    try:
        return msgspec.json.encode(value)
    except (msgspec.EncodeError, UnicodeEncodeError):
        return msgspec.json.encode(_valid(value))


def _valid(value: Any) -> Any:
    fix: Callable[[str], str] = lambda s: s.encode("utf-8", "surrogateescape").decode(  # noqa: E731
        "utf-8", "replace"
    )
    if isinstance(value, str):
        return fix(value)
    if isinstance(value, dict):
        return {fix(k): _valid(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_valid(v) for v in value]
    return value
