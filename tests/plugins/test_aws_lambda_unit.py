"""aws-lambda, piece by piece: the schema (Kong's spec/03-plugins/27-aws-lambda/02-schema_spec),
the payload (05-aws-serializer_spec, 06-request-util_spec and the access spec's payload checks)
and the answer to the client. Credentials and the HTTP exchange: test_aws_lambda_credentials."""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

import msgspec
import pytest

import fastkong.plugins.bundled  # noqa: F401  (registers the plugins)
from fastkong.config import ConfigError, load_config
from fastkong.plugins.bundled import _aws_http
from fastkong.plugins.bundled._aws_lambda_payload import RequestView, build
from fastkong.plugins.bundled._aws_lambda_response import ResponseError, client_answer
from fastkong.plugins.bundled.aws_lambda import AwsLambdaConfig


def plugin_errors(*configs: dict[str, Any]) -> list[str]:
    doc = {
        "_format_version": "3.0",
        "plugins": [
            {"name": "aws-lambda", "route": f"r{i}", "config": c} for i, c in enumerate(configs)
        ],
        "routes": [{"name": f"r{i}", "paths": [f"/{i}"]} for i in range(len(configs))],
    }
    with pytest.raises(ConfigError) as info:
        load_config(json.dumps(doc))
    return [f"{e.path}: {e.message}" for e in info.value.errors]


# -- schema ----------------------------------------------------------------------------------------


def test_defaults_are_kongs() -> None:
    doc = {"_format_version": "3.0", "plugins": [{"name": "aws-lambda", "config": {}}]}
    config = load_config(json.dumps(doc)).config.plugins[0].config
    assert msgspec.to_builtins(config) == {
        "timeout": 60000,
        "keepalive": 60000,
        "aws_key": None,
        "aws_secret": None,
        "aws_assume_role_arn": None,
        "aws_role_session_name": "kong",
        "aws_sts_endpoint_url": None,
        "aws_region": None,
        "function_name": None,
        "qualifier": None,
        "invocation_type": "RequestResponse",
        "log_type": "Tail",
        "host": None,
        "port": 443,
        "disable_https": False,
        "unhandled_status": None,
        "forward_request_method": False,
        "forward_request_uri": False,
        "forward_request_headers": False,
        "forward_request_body": False,
        "is_proxy_integration": False,
        "awsgateway_compatible": False,
        "awsgateway_compatible_payload_version": "1.0",
        "proxy_url": None,
        "skip_large_bodies": True,
        "base64_encode_body": True,
        "aws_imds_protocol_version": "v1",
        "empty_arrays_mode": "legacy",
    }


@pytest.mark.parametrize(
    "config",
    [
        {"aws_region": "us-east-1", "function_name": "my-function"},
        {"unhandled_status": 412, "aws_region": "us-east-1", "function_name": "f"},
        {"host": "my.lambda.host", "function_name": "my-function"},
        # Kong: neither region nor host is an error only when invoking (the node's region).
        {"function_name": "my-function"},
        {"host": "my.lambda.host", "aws_region": "us-east-1", "function_name": "f"},
        {"aws_key": "k", "aws_secret": "s", "proxy_url": "http://squid:3128"},
    ],
)
def test_accepted(config: dict[str, Any]) -> None:
    doc = {"_format_version": "3.0", "plugins": [{"name": "aws-lambda", "config": config}]}
    load_config(json.dumps(doc))


def test_every_error_with_its_path() -> None:
    assert plugin_errors(
        {"unhandled_status": 99},
        {"unhandled_status": 1000},
        {"aws_secret": "xx"},
        {"aws_key": "xx"},
        {"proxy_url": "https://squid:3128"},
        {"proxy_url": "ftp://squid:3128"},
        {"proxy_url": "wss://squid:3128"},
        {"invocation_type": "Async", "log_type": "Full", "timeout": None, "bogus": True},
        {"aws_region": "bad region", "port": 65536, "aws_sts_endpoint_url": "sts"},
        {"awsgateway_compatible_payload_version": "3.0", "empty_arrays_mode": "new"},
        {"aws_imds_protocol_version": "v3"},
    ) == [
        "plugins[0].config.unhandled_status: value should be between 100 and 999",
        "plugins[1].config.unhandled_status: value should be between 100 and 999",
        "plugins[2]: all or none of these fields must be set: 'config.aws_key', "
        "'config.aws_secret'",
        "plugins[3]: all or none of these fields must be set: 'config.aws_key', "
        "'config.aws_secret'",
        "plugins[4]: proxy_url scheme must be http",
        "plugins[5]: proxy_url scheme must be http",
        "plugins[6]: proxy_url scheme must be http",
        "plugins[7].config.invocation_type: expected one of: RequestResponse, Event, DryRun",
        "plugins[7].config.log_type: expected one of: Tail, None",
        "plugins[7].config.timeout: required field missing",
        "plugins[7].config.bogus: unknown field",
        "plugins[8].config.aws_region: invalid value: bad region",
        "plugins[8].config.port: value should be between 0 and 65535",
        "plugins[8].config.aws_sts_endpoint_url: missing host in url",
        "plugins[9].config.awsgateway_compatible_payload_version: expected one of: 1.0, 2.0",
        "plugins[9].config.empty_arrays_mode: expected one of: legacy, correct",
        "plugins[10].config.aws_imds_protocol_version: expected one of: v1, v2",
    ]


# -- payload ---------------------------------------------------------------------------------------


def config(**fields: Any) -> AwsLambdaConfig:
    return AwsLambdaConfig(function_name="f", aws_region="us-east-1", **fields)


def view(**fields: Any) -> RequestView:
    base: dict[str, Any] = {
        "method": "GET",
        "path_with_query": "/123/strip/more?single-query=hello%20world",
        "query_string": "single-query=hello%20world&multi-query=first&multi-query=second&boolean",
        "headers": [
            ("single-header", ["hello world"]),
            ("multi-header", ["first", "second"]),
            ("user-agent", ["curl/7.54.0"]),
        ],
        "body": b"text",
        "upstream_path": "/123/strip/more",
        "http_version": "1.1",
        "host": "abc.myhost.test",
        "client_ip": "123.123.123.123",
        "request_id": "1234567890",
        "started": 1662436514.0,
        "resource": "/(?<version>\\d+)/strip",
        "captures": {0: "/123/strip/more", 1: "123", "version": "123"},
    }
    base.update(fields)
    return RequestView(**base)


def payload(v: RequestView, c: AwsLambdaConfig) -> Any:
    return json.loads(build(v, c))


def test_gateway_event_v1_as_kong_serializes_a_regex_route() -> None:
    assert payload(view(), config(awsgateway_compatible=True)) == {
        "version": "1.0",
        "httpMethod": "GET",
        "path": "/123/strip/more",
        "resource": "/(?<version>\\d+)/strip",
        "pathParameters": {"version": "123"},
        "isBase64Encoded": True,
        "body": base64.b64encode(b"text").decode(),
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
        "requestContext": {
            "path": "/123/strip/more",
            "protocol": "HTTP/1.1",
            "httpMethod": "GET",
            "domainName": "abc.myhost.test",
            "domainPrefix": "abc",
            "identity": {"sourceIp": "123.123.123.123", "userAgent": "curl/7.54.0"},
            "requestId": "1234567890",
            "requestTime": "06/Sep/2022:03:55:14 +0000",
            "requestTimeEpoch": 1662436514000,
            "resourcePath": "/123/strip/more",
        },
    }


def test_gateway_event_v1_plain_route_and_bodies() -> None:
    plain = view(resource="/plain/strip", captures={}, http_version="1.0", host="def.test")
    out = payload(plain, config(awsgateway_compatible=True))
    assert out["pathParameters"] == {}
    assert out["resource"] == "/plain/strip"
    assert out["requestContext"]["protocol"] == "HTTP/1.0"
    assert out["requestContext"]["domainPrefix"] == "def"
    # Every body type is base64 (Kong's "none", "application/json", "unknown" cases) ...
    for ctype in (None, "application/json", "some-unknown-type-description"):
        headers = [("content-type", [ctype])] if ctype else []
        out = payload(view(headers=headers, body=b'{"a": 1}'), config(awsgateway_compatible=True))
        assert (out["body"], out["isBase64Encoded"]) == (
            base64.b64encode(b'{"a": 1}').decode(),
            True,
        )
    # ... an absent one too (""), and as text without base64_encode_body (absent when none).
    out = payload(view(body=b""), config(awsgateway_compatible=True))
    assert (out["body"], out["isBase64Encoded"]) == ("", True)
    c = config(awsgateway_compatible=True, base64_encode_body=False)
    assert (payload(view(), c)["body"], payload(view(), c)["isBase64Encoded"]) == ("text", False)
    assert "body" not in payload(view(body=b""), c)
    # A route without paths has no resource.
    assert "resource" not in payload(view(resource=None), config(awsgateway_compatible=True))


def test_large_bodies(caplog: pytest.LogCaptureFixture) -> None:
    big = b"a" * 32 * 1024
    with caplog.at_level(logging.ERROR, "fastkong.plugins.aws-lambda"):
        skipped = view(body=None, large=True)
        assert payload(skipped, config(awsgateway_compatible=True))["body"] == ""
        assert payload(skipped, config(forward_request_body=True))["request_body"] == ""
    assert "request body was buffered to disk, too large" in caplog.text
    caplog.clear()
    read = view(body=big, large=True)
    c = config(awsgateway_compatible=True, skip_large_bodies=False)
    assert payload(read, c)["body"] == base64.b64encode(big).decode()
    c = config(forward_request_body=True, skip_large_bodies=False)
    assert payload(read, c)["request_body"] == base64.b64encode(big).decode()
    assert "too large" not in caplog.text
    # A large JSON body is not parsed (nginx put it in a file): no request_body_args.
    json_big = view(
        body=b'{"a": "' + big + b'"}', large=True, headers=[("content-type", ["application/json"])]
    )
    out = payload(json_big, c)
    assert "request_body_args" not in out
    assert out["request_body"].startswith('{"a": "aaa')


def test_gateway_event_v2() -> None:
    v = view(
        headers=[
            ("cookie", ["a=1; b=2"]),
            ("multi-header", ["first", "second"]),
            ("user-agent", ["curl/7.54.0"]),
        ],
        query_string="q=1&q=2&flag",
    )
    out = payload(
        v, config(awsgateway_compatible=True, awsgateway_compatible_payload_version="2.0")
    )
    assert out == {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/123/strip/more",
        "rawQueryString": "q=1&q=2&flag",
        "cookies": ["a=1", "b=2"],
        "headers": {"multi-header": "first,second", "user-agent": "curl/7.54.0"},
        "queryStringParameters": {"q": "1,2", "flag": ""},
        "pathParameters": {"version": "123"},
        "requestContext": {
            "domainName": "abc.myhost.test",
            "domainPrefix": "abc",
            "http": {
                "method": "GET",
                "path": "/123/strip/more",
                "protocol": "HTTP/1.1",
                "sourceIp": "123.123.123.123",
                "userAgent": "curl/7.54.0",
            },
            "requestId": "1234567890",
            "routeKey": "$default",
            "stage": "$default",
            "time": "06/Sep/2022:03:55:14 +0000",
            "timeEpoch": 1662436514000,
        },
        "body": base64.b64encode(b"text").decode(),
        "isBase64Encoded": True,
    }


def post(ctype: str | None, body: bytes, query: str = "key1=from_querystring") -> RequestView:
    headers = [("host", ["lambda9.test"]), ("custom-header", ["someheader"])]
    if ctype is not None:
        headers.append(("content-type", [ctype]))
    return view(
        method="POST",
        path_with_query=f"/post?{query}",
        query_string=query,
        headers=headers,
        body=body,
    )


ALL = {
    "forward_request_method": True,
    "forward_request_uri": True,
    "forward_request_headers": True,
    "forward_request_body": True,
}


def test_forward_each_field() -> None:
    v = post("application/json", b'{"key2": "some_value"}')
    assert payload(v, config(forward_request_method=True)) == {"request_method": "POST"}
    assert payload(v, config(forward_request_uri=True)) == {
        "request_uri": "/post?key1=from_querystring",
        "request_uri_args": {"key1": "from_querystring"},
    }
    assert payload(v, config(forward_request_headers=True)) == {
        "request_headers": {
            "host": "lambda9.test",
            "custom-header": "someheader",
            "content-type": "application/json",
        }
    }
    assert payload(v, config(forward_request_body=True)) == {
        "request_body": '{"key2": "some_value"}',
        "request_body_args": {"key2": "some_value"},
    }


@pytest.mark.parametrize(
    ("ctype", "body", "request_body", "args", "encoded"),
    [
        ("application/xml", b"<xml/>", "<xml/>", {}, False),
        ("text/plain", b"some text", "some text", {}, False),
        ("application/octet-stream", b"01234", base64.b64encode(b"01234").decode(), {}, True),
        # Kong compares the whole header value with its list of raw types.
        (
            "text/plain; charset=utf-8",
            b"some text",
            base64.b64encode(b"some text").decode(),
            {},
            True,
        ),
        (None, b"encodemeplease", base64.b64encode(b"encodemeplease").decode(), {}, True),
        (
            "application/x-www-form-urlencoded",
            b"a=1&a=2&b",
            "a=1&a=2&b",
            {"a": ["1", "2"], "b": True},
            False,
        ),
        ("application/json", b"not json", "not json", None, False),
        (
            'multipart/form-data; boundary="xx"',
            b'--xx\r\nContent-Disposition: form-data; name="n"\r\n\r\nv\r\n--xx--\r\n',
            '--xx\r\nContent-Disposition: form-data; name="n"\r\n\r\nv\r\n--xx--\r\n',
            {"n": "v"},
            False,
        ),
    ],
)
def test_forward_body(
    ctype: str | None, body: bytes, request_body: str, args: Any, encoded: bool
) -> None:
    out = payload(post(ctype, body), config(**ALL))
    assert out["request_method"] == "POST"
    assert out["request_body"] == request_body
    assert out.get("request_body_args") == args
    assert out.get("request_body_base64", False) is encoded


def test_forward_body_without_base64() -> None:
    out = payload(
        post("application/octet-stream", b"donotencodemeplease"),
        config(forward_request_body=True, base64_encode_body=False),
    )
    assert out == {"request_body": "donotencodemeplease", "request_body_args": {}}
    # No body and a type Kong parses: neither field (Kong's nil values).
    assert payload(post("application/json", b""), config(forward_request_body=True)) == {}


def test_original_shape_merges_query_and_body() -> None:
    form = post("application/x-www-form-urlencoded", b"key2=v2&key3=v3")
    assert payload(form, config()) == {"key1": "from_querystring", "key2": "v2", "key3": "v3"}
    j = post("application/json", b'{"key1": "from_body"}')
    assert payload(j, config()) == {"key1": "from_body"}
    # An array body alone stays one; beside query arguments its items are keyed "1", "2".
    assert payload(post("application/json", b"[{}, []]", query=""), config()) == [{}, []]
    assert payload(post("application/json", b"[1, 2]"), config()) == {
        "key1": "from_querystring",
        "1": 1,
        "2": 2,
    }
    # A body Kong does not parse, or too large to parse, contributes nothing.
    assert payload(post("text/plain", b"x"), config()) == {"key1": "from_querystring"}
    large = view(
        query_string="a=1", body=None, large=True, headers=[("content-type", ["application/json"])]
    )
    assert payload(large, config()) == {"a": "1"}


def test_text_that_is_not_utf8_is_made_valid() -> None:
    raw = b"k=%FF%FE".decode("utf-8", "surrogateescape")
    out = payload(view(query_string=raw), config())
    assert out == {"k": "\ufffd\ufffd"}


# -- the client's answer ---------------------------------------------------------------------------

LAMBDA_HEADERS = [
    ("Date", "Mon, 01 Jan 2024 00:00:00 GMT"),
    ("Content-Type", "application/json"),
    ("x-amzn-RequestId", "foo"),
    ("X-Amz-Executed-Version", "$LATEST"),
    ("X-Amz-Log-Result", "U1RBUlQ="),
]


def answer(
    body: Any,
    *,
    status: int = 200,
    headers: list[tuple[str, str]] | None = None,
    proxy: bool = False,
    unhandled: int | None = None,
    legacy: bool = True,
    via: bytes | None = None,
) -> tuple[int, dict[str, list[str]], bytes]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    res = _aws_http.Response(status, LAMBDA_HEADERS + (headers or []), raw)
    out = client_answer(
        res, proxy_integration=proxy, unhandled_status=unhandled, legacy_arrays=legacy, via=via
    )
    found: dict[str, list[str]] = {}
    if out.content_type is not None:
        found["content-type"] = [out.content_type]
    for name, value in out.headers:
        found.setdefault(name.decode().lower(), []).append(value.decode())
    return out.status, found, out.body


def test_request_response_passes_status_headers_body() -> None:
    status, headers, body = answer(
        {"key1": "some_value1"}, headers=[("Content-Length", "25"), ("Connection", "keep-alive")]
    )
    assert status == 200
    assert json.loads(body) == {"key1": "some_value1"}
    assert headers["x-amzn-requestid"] == ["foo"]
    assert headers["x-amz-log-result"] == ["U1RBUlQ="]
    assert headers["content-type"] == ["application/json"]
    assert "content-length" not in headers and "connection" not in headers
    _, headers, _ = answer({}, via=b"1.1 fastkong/0.1.0")
    assert headers["via"] == ["1.1 fastkong/0.1.0"]


def test_function_errors() -> None:
    error = {"errorMessage": "boom", "errorType": "Error"}
    unhandled = [("X-Amz-Function-Error", "Unhandled")]
    status, headers, _ = answer(error, headers=unhandled)
    assert (status, headers["x-amz-function-error"]) == (200, ["Unhandled"])
    assert answer(error, headers=unhandled, unhandled=412)[0] == 412
    assert answer(error, headers=[("X-Amz-Function-Error", "Handled")], unhandled=412)[0] == 200
    assert answer(b"", status=202, headers=unhandled, unhandled=412)[0] == 412


def test_json_results() -> None:
    # Kong decodes a JSON result; a string is sent as its text, empty arrays as {} (legacy).
    assert answer("hello")[2] == b"hello"
    assert json.loads(answer({"testbody": [], "n": [1, []]})[2]) == {"testbody": {}, "n": [1, {}]}
    raw = b'{"testbody": [],  "big": 12345678901234567890}'
    assert answer(raw, legacy=False)[2] == raw
    assert answer(b'{"a":  1}')[2] == b'{"a":  1}'  # nothing to rewrite: byte for byte
    assert answer(b"not json")[2] == b"not json"
    assert answer(b"[]")[2] == b"{}"


def test_proxy_integration() -> None:
    result = {
        "statusCode": 201,
        "body": '{"key1": "v"}',
        "headers": {"X-Custom-Header": "Hello world!", "X-AMZN-RequestId": "bar", "Age": 3600},
        "multiValueHeaders": {"Access-Control-Allow-Origin": ["site1.com", "site2.com"]},
    }
    status, headers, body = answer(result, proxy=True)
    assert (status, body) == (201, b'{"key1": "v"}')
    assert headers["x-custom-header"] == ["Hello world!"]
    assert headers["x-amzn-requestid"] == ["bar"]  # the function's value wins
    assert headers["age"] == ["3600"]
    assert headers["access-control-allow-origin"] == ["site1.com", "site2.com"]
    assert headers["content-type"] == ["application/json"]  # the invocation's, kept
    assert answer({"statusCode": "201"}, proxy=True)[:3:2] == (201, b"")
    encoded = {"statusCode": 200, "body": "dGVzdA==", "isBase64Encoded": True}
    assert answer(encoded, proxy=True)[2] == b"test"
    assert answer({**encoded, "body": "dGVzdA"}, proxy=True)[2] == b"test"
    raw = {"statusCode": 200, "body": "dGVzdA=", "isBase64Encoded": False}
    assert answer(raw, proxy=True)[2] == b"dGVzdA="
    assert (
        answer({"statusCode": 201, "body": "t", "multiValueHeaders": None}, proxy=True)[2] == b"t"
    )
    chunked = {
        "statusCode": 200,
        "headers": {"Transfer-Encoding": "chunked", "transfer-encoding": "chunked"},
    }
    assert "transfer-encoding" not in answer(chunked, proxy=True)[1]
    # The invocation's JSON type is not needed: the result is read as JSON anyway.
    assert (
        answer(b'{"statusCode": 204}', headers=[("Content-Type", "text/plain")], proxy=True)[0]
        == 204
    )


@pytest.mark.parametrize(
    ("result", "reason"),
    [
        ({"statusCode": "hello"}, "statusCode validation failed"),
        ({"statusCode": 99}, "statusCode validation failed"),
        ({"statusCode": True}, "statusCode validation failed"),
        ({"headers": "hello"}, "statusCode validation failed"),
        ({"statusCode": 201, "headers": "hello"}, "headers must be a table"),
        ({"statusCode": 201, "body": 1234}, "body must be a string"),
        (
            {"statusCode": 200, "body": "dGVzdA=", "isBase64Encoded": "abc"},
            "isBase64Encoded must be a boolean",
        ),
        ([1, 2], "proxy response must be json format"),
    ],
)
def test_malformed_proxy_answers_are_502(result: Any, reason: str) -> None:
    status, headers, body = answer(result, proxy=True)
    assert status == 502
    assert headers["content-type"] == ["application/json; charset=utf-8"]
    assert json.loads(body) == {
        "message": "Bad Gateway",
        "error": f"could not JSON decode Lambda function response: {reason}",
    }


def test_proxy_answers_that_are_not_json() -> None:
    for raw in (b'{"foo":"bar"', b""):
        status, _, body = answer(raw, proxy=True)
        assert status == 502
        message = json.loads(body)
        assert message["message"] == "Bad Gateway"
        assert message["error"].startswith("could not JSON decode Lambda function response: ")
    with pytest.raises(ResponseError):
        answer({"statusCode": 200, "headers": {"X": {"nested": 1}}}, proxy=True)
    with pytest.raises(ResponseError):
        answer({"statusCode": 200, "body": "!!", "isBase64Encoded": True}, proxy=True)
