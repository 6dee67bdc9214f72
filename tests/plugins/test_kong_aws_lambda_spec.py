"""Kong's ``spec/03-plugins/27-aws-lambda/99-access_spec.lua`` (lines 16-1445: "Plugin: AWS
Lambda (access)", its three ``describe`` blocks) and ``06-request-util_spec.lua`` (all of it),
ported against a running gateway and Kong's mock Lambda (``spec/fixtures/aws-lambda.lua``)
reproduced in :mod:`tests.plugins.kong_aws_lambda_mock`, every invocation's SigV4 signature
verified there. The spec's routes are one config (one ``hosts`` entry each, Kong's names);
a second gateway has ``AWS_REGION`` set (Kong's "AWS_REGION environment is set").

Kong's DNS mock points ``lambda.us-east-1.amazonaws.com`` and ``custom.lambda.endpoint`` at
127.0.0.1; fastkong asks the system resolver, so the routes that only need *a* Lambda endpoint
name it ``host: localhost`` (its TLS certificate issued by a CA the gateway trusts: fastkong
verifies it, docs/plugins.md "aws-lambda"), and the cases about the name itself (the region's
default host, a configured ``host``, the forward proxy) go through ``proxy_url``, a CONNECT
proxy taking every name for loopback, and check the name the gateway tunnelled to.

Left out: "Plugin: AWS Lambda with #vault" (lines 1447-1538) uses Kong's ``random`` test
vault (``spec/fixtures/custom_vaults``), a Lua-only fixture with no fastkong equivalent.
Also covered, differently, by test_aws_lambda (the same cases against aws_fakes).
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fastkong import __version__
from tests.helpers import Gateway, eventually, free_port
from tests.pki import Pki
from tests.plugins.kong_aws_lambda_mock import (
    Collector,
    KongMockLambda,
    LoopbackProxy,
    tls_context,
)

pytestmark = pytest.mark.integration

SERVER_TOKENS = f"fastkong/{__version__}"
GET_PATH = "/get?key1=some_value1&key2=some_value2&key3=some_value3"


class Peers:
    def __init__(self, workdir: Path) -> None:
        pki = Pki("kong aws-lambda spec CA")
        self.ca = workdir / "ca.pem"
        self.ca.write_text(pki.pem)
        context = tls_context(pki, workdir)
        self.mock = KongMockLambda(ssl=context)
        self.slow = KongMockLambda(ssl=context, delay=0.2)  # Kong's mock latency, for route 4
        self.proxy = LoopbackProxy()
        self.log = Collector()
        self.all = [self.mock, self.slow, self.proxy, self.log]
        for server in self.all:
            server.start()

    def stop(self) -> None:
        for server in self.all:
            server.stop()


@pytest.fixture(scope="module")
def peers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peers]:
    p = Peers(tmp_path_factory.mktemp("kong-lambda-peers"))
    yield p
    p.stop()


def lam(peers: Peers, function: str, **overrides: Any) -> dict[str, Any]:
    """The spec's plugin entry (``port = 10001``, the mock's keys, ``us-east-1``), at the mock
    named ``localhost``; an override of None removes the field."""
    config: dict[str, Any] = {
        "port": peers.mock.port,
        "aws_key": "mock-key",
        "aws_secret": "mock-secret",
        "aws_region": "us-east-1",
        "host": "localhost",
        "function_name": function,
        **overrides,
    }
    return {"name": "aws-lambda", "config": {k: v for k, v in config.items() if v is not None}}


def by_name(peers: Peers, **overrides: Any) -> dict[str, Any]:
    """Overrides for an endpoint reached by its name, through the loopback proxy."""
    return {"proxy_url": f"http://127.0.0.1:{peers.proxy.port}", **overrides}


def _routes(peers: Peers) -> dict[str, list[dict[str, Any]]]:
    """Host -> plugins: the spec's routes 1-29 (its ``lazy_setup``) and 06-request-util's."""
    forward = {f"forward_request_{f}": True for f in ("method", "uri", "headers", "body")}
    fn = "functionWithUnhandledError"
    mvh = "functionWithMultiValueHeadersResponse"
    routes: dict[str, list[dict[str, Any]]] = {
        "lambda.test": [lam(peers, "kongLambdaTest")],
        "lambda2.test": [lam(peers, "kongLambdaTest", invocation_type="Event")],
        "lambda3.test": [lam(peers, "kongLambdaTest", invocation_type="DryRun")],
        "lambda4.test": [lam(peers, "kongLambdaTest", timeout=100, port=peers.slow.port)],
        "lambda5.test": [lam(peers, fn)],
        "lambda6.test": [lam(peers, fn, invocation_type="Event")],
        "lambda7.test": [lam(peers, fn, invocation_type="DryRun")],
        "lambda8.test": [lam(peers, fn, unhandled_status=412)],
        "lambda9.test": [lam(peers, "kongLambdaTest", **forward)],
        "lambda10.test": [
            lam(peers, "kongLambdaTest", **{**forward, "forward_request_uri": False})
        ],
        "lambda11.test": [lam(peers, "kongLambdaTest", is_proxy_integration=True)],
        "lambda12.test": [lam(peers, "functionWithBadJSON", is_proxy_integration=True)],
        "lambda13.test": [lam(peers, "functionWithNoResponse", is_proxy_integration=True)],
        "lambda14.test": [lam(peers, "kongLambdaTest")],
        # Kong's default host for the region, which no resolver knows.
        "lambda15.test": [lam(peers, "kongLambdaTest", aws_region="ab-cdef-1", host=None)],
        "lambda16.test": [
            lam(peers, "functionWithBase64EncodedResponse", is_proxy_integration=True)
        ],
        "lambda17.test": [lam(peers, mvh, is_proxy_integration=True)],
        "lambda18.test": [
            lam(
                peers,
                mvh,
                aws_region=None,
                host="custom.lambda.endpoint",
                is_proxy_integration=True,
            )
        ],
        "lambda20.test": [
            lam(peers, "kongLambdaTest", **by_name(peers, host="custom.lambda.endpoint"))
        ],
        "lambda21.test": [lam(peers, "functionEcho", **by_name(peers, host=None, keepalive=1))],
        "lambda22.test": [
            lam(peers, "functionWithIllegalBase64EncodedResponse", is_proxy_integration=True)
        ],
        "lambda23.test": [
            lam(peers, "functionWithNotBase64EncodedResponse", is_proxy_integration=True)
        ],
        "lambda24.test": [
            lam(peers, "functionWithTransferEncodingHeader", is_proxy_integration=True)
        ],
        "lambda25.test": [
            lam(peers, "functionWithLatency"),
            {"name": "http-log", "config": {"http_endpoint": f"http://localhost:{peers.log.port}"}},
        ],
        "lambda26.test": [lam(peers, "functionWithEmptyArray", empty_arrays_mode="legacy")],
        "lambda27.test": [lam(peers, "functionWithEmptyArray", empty_arrays_mode="correct")],
        "lambda28.test": [
            lam(
                peers,
                "functionWithArrayCTypeInMVHAndEmptyArray",
                empty_arrays_mode="legacy",
                is_proxy_integration=True,
            )
        ],
    }
    # 06-request-util_spec.lua, its ``lazy_setup``.
    body = {"forward_request_body": True}
    for kind, gw in (("gw", True), ("plain", False)):
        for mode, skip in (("skipfile", True), ("readfile", False)):
            routes[f"{kind}.{mode}.test"] = [
                lam(
                    peers,
                    "kongLambdaTest",
                    **body,
                    awsgateway_compatible=gw,
                    skip_large_bodies=skip,
                )
            ]
    routes["base.sixtyfour.test"] = [lam(peers, "kongLambdaTest", **body, skip_large_bodies=False)]
    routes["notbase.sixtyfour.test"] = [
        lam(peers, "kongLambdaTest", **body, skip_large_bodies=False, base64_encode_body=False)
    ]
    routes["gw.serviceless.test"] = [
        lam(peers, "kongLambdaTest", **body, awsgateway_compatible=True)
    ]
    return routes


def _config(routes: dict[str, list[dict[str, Any]]], with_service: str | None = None) -> str:
    entries = [
        {"name": host, "hosts": [host], "protocols": ["http", "https"], "plugins": plugins}
        for host, plugins in routes.items()
    ]
    doc: dict[str, Any] = {"_format_version": "3.0", "routes": entries}
    if with_service is not None:
        # route1_1: a service that must never be contacted (nothing listens there).
        route = {"name": "ignore", "hosts": [with_service], "plugins": routes["lambda.test"]}
        doc["services"] = [
            {"name": "never", "url": f"http://127.0.0.1:{free_port()}", "routes": [route]}
        ]
    return json.dumps(doc)


def _start(workdir: Path, config: str, peers: Peers, env: dict[str, str]) -> Gateway:
    gw = Gateway(workdir, config)
    gw.stderr_path = workdir / "stderr.log"
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith(("AWS_", "AMAZON_")):
                patch.delenv(name)
        patch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        patch.setenv("KONG_LUA_SSL_TRUSTED_CERTIFICATE", f"system,{peers.ca}")
        for name, value in env.items():
            patch.setenv(name, value)
        gw.start()
    return gw


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, peers: Peers) -> Iterator[Gateway]:
    """ "AWS_REGION environment is not set" (and "With latency": route 25's region is its own)."""
    config = _config(_routes(peers), with_service="lambda_ignore_service.test")
    gw = _start(tmp_path_factory.mktemp("kong-lambda"), config, peers, {})
    try:
        yield gw
    finally:
        gw.stop()


@pytest.fixture(scope="module")
def region_gateway(tmp_path_factory: pytest.TempPathFactory, peers: Peers) -> Iterator[Gateway]:
    """ "AWS_REGION environment is set": route 19, neither region nor host configured."""
    mvh = "functionWithMultiValueHeadersResponse"
    plugin = lam(
        peers, mvh, aws_region=None, is_proxy_integration=True, **by_name(peers, host=None)
    )
    config = _config({"lambda19.test": [plugin]})
    env = {"AWS_REGION": "us-east-1"}
    gw = _start(tmp_path_factory.mktemp("kong-lambda-region"), config, peers, env)
    try:
        yield gw
    finally:
        gw.stop()


def send(
    gw: Gateway, host: str, path: str = GET_PATH, method: str = "GET", **kwargs: Any
) -> httpx.Response:
    headers = {"Host": host, **kwargs.pop("headers", {})}
    return httpx.request(method, gw.url(path), headers=headers, timeout=15, **kwargs)


def stderr(gw: Gateway) -> str:
    assert gw.stderr_path is not None
    return gw.stderr_path.read_text(errors="replace")


FORM = {"key1": "some_value_post1", "key2": "some_value_post2", "key3": "some_value_post3"}


# -- "AWS_REGION environment is not set" (lines 626-1343) ------------------------------------------


@pytest.mark.parametrize("host", ["lambda.test", "lambda_ignore_service.test", "lambda14.test"])
def test_invokes_a_function_with_get(gateway: Gateway, host: str) -> None:
    """Lines 640-668, 1227-1240 (the serviceless route) and 1303-1316 ("succeeds when region is
    set in config and not set in environment")."""
    r = send(gateway, host)
    assert r.status_code == 200
    assert r.headers["x-amzn-RequestId"] == "foo"
    assert r.json()["key1"] == "some_value1"
    assert "X-Amz-Function-Error" not in r.headers


@pytest.mark.parametrize(
    ("path", "kwargs", "key1"),
    [
        ("/post", {"data": FORM}, "some_value_post1"),  # line 670
        ("/post", {"json": {**FORM, "key1": "some_value_json1"}}, "some_value_json1"),  # line 690
        ("/post?key1=from_querystring", {"data": {"key2": "some_value_post2"}}, "from_querystring"),
    ],
)
def test_invokes_a_function_with_post(
    gateway: Gateway, path: str, kwargs: dict[str, Any], key1: str
) -> None:
    """Lines 670-708 and 724-741: POST parameters, a JSON body, query and body together."""
    r = send(gateway, "lambda.test", path, "POST", **kwargs)
    assert r.status_code == 200
    assert r.headers["x-amzn-RequestId"] == "foo"
    assert r.json()["key1"] == key1


def test_passes_empty_json_arrays_unmodified(gateway: Gateway) -> None:
    """Lines 710-722."""
    r = send(
        gateway,
        "lambda.test",
        "/post",
        "POST",
        content=b"[{}, []]",
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 200
    assert r.text.replace("\n", "") == "[{},[]]"


@pytest.mark.parametrize(
    ("host", "ctype", "body", "expected"),
    [
        # lines 743-772: xml, forwarded as text
        ("lambda9.test", "application/xml", b"<xml/>", ("<xml/>", None)),
        # lines 805-835: text
        ("lambda9.test", "text/plain", b"some text", ("some text", None)),
        # lines 837-867: binary, base64
        ("lambda9.test", "application/octet-stream", b"01234", ("MDEyMzQ=", True)),
        # lines 774-803: json, no request_uri (forward_request_uri off)
        ("lambda10.test", "application/json", b'{"key2": "some_value"}', None),
    ],
)
def test_forwards_the_request(
    gateway: Gateway, host: str, ctype: str, body: bytes, expected: tuple[str, Any] | None
) -> None:
    r = send(
        gateway,
        host,
        "/post?key1=from_querystring",
        "POST",
        content=body,
        headers={"Content-Type": ctype, "custom-header": "someheader"},
    )
    assert r.status_code == 200
    assert r.headers["x-amzn-RequestId"] == "foo"
    event = r.json()
    assert event["request_method"] == "POST"
    assert event["request_headers"]["custom-header"] == "someheader"
    assert event["request_headers"]["host"] == host
    assert isinstance(event["request_body_args"], dict)
    if expected is None:
        assert "request_uri" not in event and "request_uri_args" not in event
        assert event["request_body_args"]["key2"] == "some_value"
        return
    assert event["request_uri"] == "/post?key1=from_querystring"
    assert isinstance(event["request_uri_args"], dict)
    assert (event["request_body"], event.get("request_body_base64")) == expected


@pytest.mark.parametrize(
    ("host", "status", "function_error"),
    [
        ("lambda2.test", 202, None),  # lines 869-885: Event
        ("lambda3.test", 204, None),  # lines 887-903: DryRun
        ("lambda5.test", 200, "Unhandled"),  # lines 916-926
        ("lambda6.test", 202, "Unhandled"),  # lines 928-938
        ("lambda7.test", 204, "Unhandled"),  # lines 940-950
        ("lambda8.test", 412, "Unhandled"),  # lines 952-962: unhandled_status
    ],
)
def test_invocation_types_and_function_errors(
    gateway: Gateway, host: str, status: int, function_error: str | None
) -> None:
    if function_error is None:
        r = send(gateway, host, "/post", "POST", data=FORM)
    else:
        r = send(gateway, host)
    assert r.status_code == status
    assert r.headers["x-amzn-RequestId"] == "foo"
    assert r.headers.get("X-Amz-Function-Error") == function_error


def test_errors_on_connection_timeout(gateway: Gateway) -> None:
    """Lines 905-914: a 100 ms timeout, the mock answering after 200 ms."""
    assert send(gateway, "lambda4.test").status_code == 500


def test_returns_server_tokens_with_via_header(gateway: Gateway) -> None:
    """Lines 964-976. Kong writes ``2 <server tokens>`` whatever the protocol (its handler
    tests ``ngx.var.http2``, the empty string, true in Lua, on HTTP/1.1); fastkong names the
    hop's real version (docs/plugins.md, aws-lambda: a deliberate difference)."""
    r = send(gateway, "lambda.test")
    assert r.headers["Via"] == "1.1 " + SERVER_TOKENS


def test_returns_content_length_header(gateway: Gateway) -> None:
    """Lines 978-988: the 64-byte payload echoed with the mock's newline."""
    assert int(send(gateway, "lambda.test").headers["Content-Length"]) == 65


def test_errors_on_bad_region_name(gateway: Gateway) -> None:
    """Lines 990-1005: the region's endpoint does not resolve; the log names it."""
    r = send(gateway, "lambda15.test", "/get?key1=some_value1")
    assert r.status_code == 500

    def logged() -> bool:
        return any(
            "[aws-lambda]" in line and "lambda.ab-cdef-1.amazonaws.com" in line
            for line in stderr(gateway).splitlines()
        )

    eventually(logged, timeout=10)


def test_empty_arrays(gateway: Gateway) -> None:
    """Lines 1007-1029: legacy sends ``{}``; correct keeps the array. Kong re-encodes the JSON
    result (``"testbody":[]``); fastkong passes it byte for byte, the mock's ``"testbody": []``
    (docs/plugins.md, aws-lambda: "A JSON result is passed byte for byte")."""
    assert '"testbody":{}' in send(gateway, "lambda26.test", "/get").text
    assert '"testbody": []' in send(gateway, "lambda27.test", "/get").text


def test_legacy_empty_arrays_and_multivalue_content_type(gateway: Gateway) -> None:
    """Lines 1031-1042."""
    r = send(gateway, "lambda28.test", "/get")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/json+test"


# -- config.is_proxy_integration = true (lines 1044-1290) ------------------------------------------


def proxy_post(gateway: Gateway, host: str = "lambda11.test", **body: Any) -> httpx.Response:
    return (
        send(gateway, host, "/post", "POST", json=body)
        if body
        else send(gateway, host, "/post", "POST")
    )


def test_proxy_status_code(gateway: Gateway) -> None:
    """Lines 1052-1068."""
    r = proxy_post(gateway, statusCode=201)
    assert r.status_code == 201
    assert r.headers["Content-Length"] == "0"
    assert "X-Custom-Header" not in r.headers
    assert r.text == ""


def test_proxy_status_headers_and_body(gateway: Gateway) -> None:
    """Lines 1070-1099."""
    body = json.dumps(FORM, separators=(",", ":"))
    r = proxy_post(gateway, statusCode=201, body=body, headers={"X-Custom-Header": "Hello world!"})
    assert r.status_code == 201
    assert r.headers["Content-Length"] == "79"
    assert r.headers["X-Custom-Header"] == "Hello world!"
    assert r.text == body


def test_proxy_headers_override_the_invocations(gateway: Gateway) -> None:
    """Lines 1101-1123: the mock's ``x-amzn-RequestId: foo`` gives way to the function's."""
    r = proxy_post(gateway, statusCode=201, headers={"x-amzn-RequestId": "bar"})
    assert r.status_code == 201
    assert r.headers["x-amzn-RequestId"] == "bar"


@pytest.mark.parametrize(
    "body",
    [
        {"statusCode": "hello"},  # lines 1125-1141
        {"headers": "hello"},  # lines 1143-1159
        {"statusCode": 201, "body": 1234},  # lines 1161-1178
    ],
)
def test_proxy_malformed_answer_is_502(gateway: Gateway, body: dict[str, Any]) -> None:
    r = proxy_post(gateway, **body)
    assert r.status_code == 502
    assert r.json()["message"] == "Bad Gateway"


def test_proxy_null_multivalue_headers(gateway: Gateway) -> None:
    """Lines 1180-1197."""
    r = proxy_post(gateway, statusCode=201, body="test", multiValueHeaders=None)
    assert (r.status_code, r.text) == (201, "test")


@pytest.mark.parametrize("host", ["lambda12.test", "lambda13.test"])
def test_proxy_invalid_or_empty_answer_is_502(gateway: Gateway, host: str) -> None:
    """Lines 1199-1211 (not JSON) and 1213-1225 (empty)."""
    r = proxy_post(gateway, host)
    assert r.status_code == 502
    assert r.json()["message"] == "Bad Gateway"


@pytest.mark.parametrize(
    ("host", "status", "body"),
    [
        ("lambda16.test", 200, "test"),  # lines 1242-1252: decoded base64
        ("lambda23.test", 200, "dGVzdA="),  # lines 1266-1276: isBase64Encoded false
    ],
)
def test_proxy_bodies(gateway: Gateway, host: str, status: int, body: str) -> None:
    r = send(gateway, host)
    assert (r.status_code, r.text) == (status, body)


def test_proxy_illegal_is_base64_encoded(gateway: Gateway) -> None:
    """Lines 1254-1264."""
    r = send(gateway, "lambda22.test")
    assert r.status_code == 502
    assert "isBase64Encoded must be a boolean" in r.text


def test_proxy_multivalue_headers(gateway: Gateway) -> None:
    """Lines 1278-1288."""
    r = send(gateway, "lambda17.test")
    assert r.status_code == 200
    assert isinstance(r.headers["age"], str)
    assert r.headers.get_list("Access-Control-Allow-Origin") == ["site1.com", "site2.com"]


# -- lines 1292-1365 -----------------------------------------------------------------------------


def test_fails_when_no_region_is_set_and_no_host(gateway: Gateway) -> None:
    """Lines 1292-1301 (the route has a host; without a region the invocation fails)."""
    assert send(gateway, "lambda18.test", "/get?key1=some_value1").status_code == 500
    eventually(lambda: "no region specified" in stderr(gateway), timeout=10)


def test_succeeds_when_region_and_host_are_set(gateway: Gateway, peers: Peers) -> None:
    """Lines 1318-1331: the configured host is the endpoint."""
    r = send(gateway, "lambda20.test")
    assert r.headers["x-amzn-RequestId"] == "foo"
    assert r.json()["key1"] == "some_value1"
    assert "X-Amz-Function-Error" not in r.headers
    assert f"custom.lambda.endpoint:{peers.mock.port}" in peers.proxy.targets


def test_works_with_a_forward_proxy(gateway: Gateway, peers: Peers) -> None:
    """Lines 1333-1345: TLS through the proxy to the region's endpoint."""
    r = send(gateway, "lambda21.test", "/get?a=1&b=2")
    assert r.status_code == 200
    assert r.json()["vars"]["scheme"] == "https"
    assert f"lambda.us-east-1.amazonaws.com:{peers.mock.port}" in peers.proxy.targets


def test_removes_transfer_encoding_in_proxy_integration(gateway: Gateway) -> None:
    """Lines 1347-1364."""
    r = send(gateway, "lambda24.test", "/get")
    assert r.status_code == 200
    assert "Transfer-Encoding" not in r.headers


# -- "AWS_REGION environment is set" (lines 1367-1398) ---------------------------------------------


def test_uses_the_environments_region(region_gateway: Gateway, peers: Peers) -> None:
    """Lines 1386-1397: neither region nor host configured: ``AWS_REGION``'s endpoint."""
    r = send(region_gateway, "lambda19.test", "/get?key1=some_value1")
    assert r.status_code == 200
    assert isinstance(r.headers["age"], str)
    assert r.headers.get_list("Access-Control-Allow-Origin") == ["site1.com", "site2.com"]
    assert f"lambda.us-east-1.amazonaws.com:{peers.mock.port}" in peers.proxy.targets


# -- "With latency" (lines 1400-1444) ------------------------------------------------------------


def test_latency_of_lambda_is_proxy_latency(gateway: Gateway, peers: Peers) -> None:
    """Lines 1421-1443: the http-log entry's ``latencies.kong`` is below ``latencies.proxy``
    (the mock's ``functionWithLatency`` waits 1 s here, 2 s in Kong's)."""
    before = len(peers.log.received)
    assert send(gateway, "lambda25.test", "/get").status_code == 200
    eventually(lambda: len(peers.log.received) > before, timeout=10)
    entry = json.loads(peers.log.received[before].body)
    assert entry["latencies"]["kong"] < entry["latencies"]["proxy"]


# -- 06-request-util_spec.lua ---------------------------------------------------------------------

TOO_LARGE = "request body was buffered to disk, too large"


@pytest.mark.parametrize(
    ("host", "size", "field", "kept"),
    [
        ("plain.skipfile.test", 32, "request_body", False),  # lines 175-191
        ("plain.skipfile.test", 1, "request_body", True),  # lines 193-209
        ("plain.readfile.test", 32, "request_body", True),  # lines 216-232
        ("plain.readfile.test", 1, "request_body", True),  # lines 234-250
        ("gw.skipfile.test", 32, "body", False),  # lines 260-276
        ("gw.skipfile.test", 1, "body", True),  # lines 278-294
        ("gw.readfile.test", 32, "body", True),  # lines 301-317
        ("gw.readfile.test", 1, "body", True),  # lines 319-335
    ],
)
def test_request_util_large_bodies(
    gateway: Gateway, host: str, size: int, field: str, kept: bool
) -> None:
    """A body over the client body buffer (Kong's nginx would keep it in a file) is skipped
    with ``skip_large_bodies``, with Kong's error line; read otherwise."""
    logged = len(stderr(gateway))
    body = b"a" * size * 1024
    r = send(gateway, host, content=body)
    assert r.status_code == 200
    assert r.headers["x-amzn-RequestId"] == "foo"
    if kept:
        assert r.json()[field] == base64.b64encode(body).decode()
        assert TOO_LARGE not in stderr(gateway)[logged:]
    else:
        assert r.json()[field] == ""
        eventually(lambda: TOO_LARGE in stderr(gateway)[logged:], timeout=10)


@pytest.mark.parametrize(
    ("host", "body", "expected"),
    [
        ("base.sixtyfour.test", "encodemeplease", "ZW5jb2RlbWVwbGVhc2U="),  # lines 343-357
        ("notbase.sixtyfour.test", "donotencodemeplease", "donotencodemeplease"),  # 359-373
    ],
)
def test_request_util_base64_body_encoding(
    gateway: Gateway, host: str, body: str, expected: str
) -> None:
    r = send(gateway, host, content=body.encode())
    assert r.status_code == 200
    assert r.json()["request_body"] == expected


def test_request_util_serviceless(gateway: Gateway) -> None:
    """Lines 376-391."""
    r = send(gateway, "gw.serviceless.test", content=b"encodemeplease")
    assert r.status_code == 200
    assert r.headers["x-amzn-RequestId"] == "foo"
