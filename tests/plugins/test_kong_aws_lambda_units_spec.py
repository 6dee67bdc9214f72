"""Kong's ``spec/03-plugins/27-aws-lambda/05-aws-serializer_spec.lua`` (all of it: "serializes a
request regex", "no-regex", and the three body types), against fastkong's payload builder
(``_aws_lambda_payload.build``) with ``awsgateway_compatible``. Kong's spec mocks ``ngx``; here
the same request is a :class:`RequestView`, the plugin's view of a request.

Two readings of Kong's mock: its header names are as real nginx gives them (lower case; the
mock's ``Content-Type`` key is the mock's own spelling), and Kong's expected ``requestTime`` is
formatted in the test machine's local time, fastkong's in UTC (docs/plugins.md, aws-lambda:
"a ``requestTime`` in UTC"), which is what Kong's CI (UTC) gets too.

``06-request-util_spec.lua`` starts Kong and sends requests: it is ported through a gateway in
test_kong_aws_lambda_spec (also covered in process by test_aws_lambda_unit's test_large_bodies).
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

import fastkong.plugins.bundled  # noqa: F401  (registers the plugins)
from fastkong.plugins.bundled._aws_lambda_payload import RequestView, build
from fastkong.plugins.bundled.aws_lambda import AwsLambdaConfig

START = 1662436514
REQUEST_TIME = "06/Sep/2022:03:55:14 +0000"  # date(1662436514):fmt("%d/%b/%Y:%H:%M:%S %z"), UTC
HEADERS = [
    ("single-header", ["hello world"]),
    ("multi-header", ["first", "second"]),
    ("user-agent", ["curl/7.54.0"]),
]
QUERY = "boolean&multi-query=first&single-query=hello%20world&multi-query=second"


def serialize(view: RequestView) -> Any:
    config = AwsLambdaConfig(function_name="f", aws_region="us-east-1", awsgateway_compatible=True)
    return json.loads(build(view, config))


def request(**fields: Any) -> RequestView:
    """The spec's ``mock_request``: GET, body ``text``, request id 1234567890, client
    123.123.123.123, started at 1662436514."""
    base: dict[str, Any] = {
        "method": "GET",
        "headers": HEADERS,
        "body": b"text",
        "request_id": "1234567890",
        "client_ip": "123.123.123.123",
        "started": float(START),
    }
    return RequestView(**{**base, **fields})


def context(path: str, host: str, protocol: str) -> dict[str, Any]:
    return {
        "path": path,
        "protocol": protocol,
        "httpMethod": "GET",
        "domainName": host,
        "domainPrefix": host.split(".")[0],
        "identity": {"sourceIp": "123.123.123.123", "userAgent": "curl/7.54.0"},
        "requestId": "1234567890",
        "requestTime": REQUEST_TIME,
        "requestTimeEpoch": START * 1000,
        "resourcePath": path,
    }


EXPECTED_HEADERS = {
    "headers": {
        "multi-header": "first",
        "single-header": "hello world",
        "user-agent": "curl/7.54.0",
    },
    "multiValueHeaders": {
        "multi-header": ["first", "second"],
        "single-header": ["hello world"],
        "user-agent": ["curl/7.54.0"],
    },
    "queryStringParameters": {
        "boolean": True,
        "multi-query": "first",
        "single-query": "hello world",
    },
    "multiValueQueryStringParameters": {
        "boolean": [True],
        "multi-query": ["first", "second"],
        "single-query": ["hello world"],
    },
}


def test_serializes_a_request_regex() -> None:
    """Lines 52-133."""
    view = request(
        http_version="1.1",
        path_with_query=f"/123/strip/more?{QUERY}",
        query_string=QUERY,
        upstream_path="/123/strip/more",
        host="abc.myhost.test",
        resource="/(?<version>\\d+)/strip",
        captures={0: "/123/strip/more", 1: "123", "version": "123"},
    )
    assert serialize(view) == {
        "version": "1.0",
        "httpMethod": "GET",
        "path": "/123/strip/more",
        "resource": "/(?<version>\\d+)/strip",
        "pathParameters": {"version": "123"},
        "isBase64Encoded": True,
        "body": base64.b64encode(b"text").decode(),
        **EXPECTED_HEADERS,
        "requestContext": context("/123/strip/more", "abc.myhost.test", "HTTP/1.1"),
    }


def test_serializes_a_request_no_regex() -> None:
    """Lines 135-213."""
    view = request(
        http_version="1.0",
        path_with_query=f"/plain/strip/more?{QUERY}",
        query_string=QUERY,
        upstream_path="/plain/strip/more",
        host="def.myhost.test",
        resource="/plain/strip",
    )
    assert serialize(view) == {
        "version": "1.0",
        "httpMethod": "GET",
        "path": "/plain/strip/more",
        "resource": "/plain/strip",
        "pathParameters": {},
        "isBase64Encoded": True,
        "body": base64.b64encode(b"text").decode(),
        **EXPECTED_HEADERS,
        "requestContext": context("/plain/strip/more", "def.myhost.test", "HTTP/1.0"),
    }


@pytest.mark.parametrize(
    ("ctype", "body_in"),
    [
        (None, "text"),  # "none"
        ("application/json", '{ "text": "some text" }'),
        ("some-unknown-type-description", "text"),  # "unknown"
    ],
    ids=["none", "application/json", "unknown"],
)
def test_serializes_a_request_with_body_type(ctype: str | None, body_in: str) -> None:
    """Lines 216-302: every body is sent base64-encoded, whatever its type."""
    headers = [("content-type", [ctype])] if ctype else []
    headers.append(("user-agent", ["curl/7.54.0"]))
    view = request(
        http_version="1.0",
        headers=headers,
        body=body_in.encode(),
        path_with_query="/plain/strip/more",
        query_string="",
        upstream_path="/plain/strip/more",
        host="def.myhost.test",
        resource="/plain/strip",
    )
    single = {"content-type": ctype} if ctype else {}
    multi = {"content-type": [ctype]} if ctype else {}
    assert serialize(view) == {
        "version": "1.0",
        "body": base64.b64encode(body_in.encode()).decode(),
        "headers": {**single, "user-agent": "curl/7.54.0"},
        "multiValueHeaders": {**multi, "user-agent": ["curl/7.54.0"]},
        "httpMethod": "GET",
        "queryStringParameters": {},
        "multiValueQueryStringParameters": {},
        "pathParameters": {},
        "resource": "/plain/strip",
        "path": "/plain/strip/more",
        "isBase64Encoded": True,
        "requestContext": context("/plain/strip/more", "def.myhost.test", "HTTP/1.0"),
    }
