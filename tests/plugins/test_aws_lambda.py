"""aws-lambda through a running gateway (Kong's spec/03-plugins/27-aws-lambda/99-access_spec and
06-request-util_spec), against the loopback fakes of :mod:`tests.plugins.aws_fakes`: every
invocation the fake Lambda answers carried a SigV4 signature it verified independently."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import Gateway, eventually, free_port
from tests.pki import Pki
from tests.plugins.aws_fakes import Answer, ConnectProxy, FakeLambda, FakeSts, Received

pytestmark = pytest.mark.integration

CONF_KEY = ("AKIDCONF", "conf-secret")
ENV_KEY = ("AKIDENV", "env-secret", "env-token")
ROLE = ("ASIAROLE", "role-secret", "role-session-token")
WEB = ("ASIAWEB", "web-secret", "web-session-token")
KEYS: dict[str, tuple[str, str | None]] = {
    CONF_KEY[0]: (CONF_KEY[1], None),
    ENV_KEY[0]: (ENV_KEY[1], ENV_KEY[2]),
    ROLE[0]: (ROLE[1], ROLE[2]),
    WEB[0]: (WEB[1], WEB[2]),
}


def _json(status: int, data: Any, headers: list[tuple[str, str]] | None = None) -> Answer:
    return (
        status,
        [("Content-Type", "application/json"), *(headers or [])],
        json.dumps(data).encode(),
    )


async def _slow(request: Received) -> Answer:
    await asyncio.sleep(3)
    return _json(200, {})


async def _sleepy(request: Received) -> Answer:
    await asyncio.sleep(0.5)
    return _json(200, {"slept": True})


FUNCTIONS = {
    "badjson": lambda r: (200, [("Content-Type", "application/json")], b'{"foo":"bar"'),
    "unhandled": lambda r: _json(
        200, {"errorMessage": "boom"}, [("X-Amz-Function-Error", "Unhandled")]
    ),
    "emptyarray": lambda r: _json(200, {"statusCode": 200, "testbody": []}),
    "multivalue": lambda r: _json(
        200,
        {
            "statusCode": 200,
            "headers": {"Age": "3600"},
            "multiValueHeaders": {"Access-Control-Allow-Origin": ["site1.com", "site2.com"]},
        },
    ),
    "slow": _slow,
    "sleepy": _sleepy,
}


def _tls_context(pki: Pki, workdir: Path, name: str) -> ssl.SSLContext:
    cert, key = pki.issue("localhost", dns="localhost")
    (workdir / f"{name}.pem").write_text(cert)
    (workdir / f"{name}.key").write_text(key)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(workdir / f"{name}.pem", workdir / f"{name}.key")
    return context


class Peers:
    def __init__(self, workdir: Path) -> None:
        pki = Pki("aws-lambda test CA")
        self.ca = workdir / "ca.pem"
        self.ca.write_text(pki.pem)
        self.plain = FakeLambda(KEYS)
        self.tls = FakeLambda(KEYS, ssl=_tls_context(pki, workdir, "trusted"))
        self.untrusted = FakeLambda(KEYS, ssl=_tls_context(Pki("other CA"), workdir, "other"))
        for fake in (self.plain, self.tls, self.untrusted):
            fake.functions.update(FUNCTIONS)
        self.sts = FakeSts(
            keys={CONF_KEY[0]: (CONF_KEY[1], None)}, token="web-identity-jwt", granted=ROLE
        )
        self.web_sts = FakeSts(token="web-identity-jwt", granted=WEB)
        self.proxy = ConnectProxy()
        self.all = [self.plain, self.tls, self.untrusted, self.sts, self.web_sts, self.proxy]
        for server in self.all:
            server.start()

    def stop(self) -> None:
        for server in self.all:
            server.stop()


@pytest.fixture(scope="module")
def peers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peers]:
    p = Peers(tmp_path_factory.mktemp("aws-peers"))
    yield p
    p.stop()


def _config(peers: Peers, routes: dict[str, dict[str, Any]]) -> str:
    base = {
        "aws_key": CONF_KEY[0],
        "aws_secret": CONF_KEY[1],
        "aws_region": "us-east-1",
        "host": "127.0.0.1",
        "port": peers.plain.port,
        "disable_https": True,
        "function_name": "echo",
    }
    serviceless = []
    for name, overrides in routes.items():
        config = {k: v for k, v in {**base, **overrides}.items() if v is not None}
        path = config.pop("_path", None)
        extra = config.pop("_plugins", [])
        route = {
            "name": name,
            "paths": [path or f"/{name}"],
            "plugins": [{"name": "aws-lambda", "config": config}, *extra],
        }
        serviceless.append(route)
    # One route has a service that must never be contacted (Kong's "ignores route's service").
    unused = free_port()
    doc = {
        "_format_version": "3.0",
        "services": [
            {
                "name": "never",
                "url": f"http://127.0.0.1:{unused}",
                "routes": [serviceless[0]],
            }
        ],
        "routes": serviceless[1:],
    }
    return json.dumps(doc)


def _clean_env(patch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("AWS_", "AMAZON_")):
            patch.delenv(name)
    patch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    patch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
    patch.setenv("AWS_CONFIG_FILE", "/nonexistent/config")


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, peers: Peers) -> Iterator[Gateway]:
    routes: dict[str, dict[str, Any]] = {
        "rr": {},
        "forward": {
            "forward_request_method": True,
            "forward_request_uri": True,
            "forward_request_headers": True,
            "forward_request_body": True,
        },
        "gw": {"awsgateway_compatible": True, "_path": r"~/gw/(?<version>\d+)/strip"},
        "gw2": {"awsgateway_compatible": True, "awsgateway_compatible_payload_version": "2.0"},
        "proxy": {"is_proxy_integration": True},
        "badjson": {"is_proxy_integration": True, "function_name": "badjson"},
        "multivalue": {"is_proxy_integration": True, "function_name": "multivalue"},
        "event": {"invocation_type": "Event", "function_name": "unhandled"},
        "dryrun": {"invocation_type": "DryRun"},
        "unhandled": {"function_name": "unhandled"},
        "unhandled412": {"function_name": "unhandled", "unhandled_status": 412},
        "slow": {"function_name": "slow", "timeout": 300},
        "closed": {"port": free_port()},
        "missing": {"function_name": "nosuchfunction"},
        "env": {"aws_key": None, "aws_secret": None, "qualifier": "prod"},
        "tls": {"host": "localhost", "port": peers.tls.port, "disable_https": None},
        "untrusted": {"host": "localhost", "port": peers.untrusted.port, "disable_https": None},
        "assume": {
            "aws_assume_role_arn": "arn:aws:iam::123456789012:role/lambda-invoker",
            "aws_sts_endpoint_url": peers.sts.url,
        },
        "tunnel": {
            "host": "localhost",
            "port": peers.tls.port,
            "disable_https": None,
            "proxy_url": f"http://127.0.0.1:{peers.proxy.port}",
        },
        "noregion": {"aws_region": None},
        "arrays-legacy": {"function_name": "emptyarray"},
        "arrays-correct": {"function_name": "emptyarray", "empty_arrays_mode": "correct"},
        "large": {"forward_request_body": True},
        "nofunction": {"function_name": None},
        "sleepy": {"function_name": "sleepy", "_plugins": [{"name": "file-log", "config": {}}]},
    }
    workdir = tmp_path_factory.mktemp("aws-gateway")
    routes["sleepy"]["_plugins"][0]["config"]["path"] = str(workdir / "access.log")
    gw = Gateway(workdir, _config(peers, routes))
    gw.stderr_path = workdir / "stderr.log"
    with pytest.MonkeyPatch.context() as patch:
        _clean_env(patch)
        patch.setenv("AWS_ACCESS_KEY_ID", ENV_KEY[0])
        patch.setenv("AWS_SECRET_ACCESS_KEY", ENV_KEY[1])
        patch.setenv("AWS_SESSION_TOKEN", ENV_KEY[2])
        patch.setenv("KONG_LUA_SSL_TRUSTED_CERTIFICATE", f"system,{peers.ca}")
        gw.start()
    yield gw
    gw.stop()


def last(fake: FakeLambda) -> Received:
    return fake.received[-1]


def invoked(fake: FakeLambda, before: int) -> list[Received]:
    """The invocations since ``before``, every one validly signed."""
    new = fake.received[before:]
    assert new and all(r.signed_by for r in new), [r.error for r in new]
    return new


def test_request_response(gateway: Gateway, peers: Peers) -> None:
    before = len(peers.plain.received)
    r = httpx.get(gateway.url("/rr?key1=some_value1&key2=some_value2"))
    assert r.status_code == 200
    assert r.json() == {"key1": "some_value1", "key2": "some_value2"}
    assert r.headers["x-amzn-requestid"] == "req-1234"
    assert base64.b64decode(r.headers["x-amz-log-result"]).startswith(b"START")
    assert "x-amz-function-error" not in r.headers
    assert r.headers["content-length"] == str(len(r.content))
    assert r.headers["via"].startswith("1.1 fastkong/")
    assert int(r.headers["x-kong-response-latency"]) >= 0
    (call,) = invoked(peers.plain, before)
    assert call.signed_by == CONF_KEY[0]
    assert call.target == "/2015-03-31/functions/echo/invocations"
    assert call.header("x-amz-invocation-type") == "RequestResponse"
    assert call.header("x-amz-log-type") == "Tail"
    assert call.header("x-amz-client-context") is None
    assert call.header("host") == f"127.0.0.1:{peers.plain.port}"
    # POST parameters and JSON bodies join the query's (Kong's original payload).
    r = httpx.post(gateway.url("/rr?key1=from_querystring"), data={"key2": "v2"})
    assert r.json() == {"key1": "from_querystring", "key2": "v2"}
    r = httpx.post(gateway.url("/rr"), json={"key1": "some_value_json1"})
    assert r.json() == {"key1": "some_value_json1"}


def test_forwarded_request(gateway: Gateway) -> None:
    r = httpx.post(
        gateway.url("/forward?key1=from_querystring"),
        content=b"<xml/>",
        headers={"Content-Type": "application/xml", "custom-header": "someheader"},
    )
    body = r.json()
    assert body["request_method"] == "POST"
    assert body["request_uri"] == "/forward?key1=from_querystring"
    assert body["request_uri_args"] == {"key1": "from_querystring"}
    assert body["request_headers"]["custom-header"] == "someheader"
    assert body["request_headers"]["host"] == f"127.0.0.1:{gateway.port}"
    assert (body["request_body"], body["request_body_args"]) == ("<xml/>", {})
    r = httpx.post(
        gateway.url("/forward"),
        content=b"01234",
        headers={"Content-Type": "application/octet-stream"},
    )
    assert r.json()["request_body"] == base64.b64encode(b"01234").decode()
    assert r.json()["request_body_base64"] is True


def test_gateway_events(gateway: Gateway) -> None:
    r = httpx.post(
        gateway.url("/gw/123/strip/more?a=1&a=2"), content=b"text", headers={"X-Multi": "x"}
    )
    event = r.json()
    assert event["version"] == "1.0"
    assert event["resource"] == r"/gw/(?<version>\d+)/strip"
    assert event["path"] == "/more"  # the route strips its path, as the service would get it
    assert event["pathParameters"] == {"version": "123"}
    assert event["queryStringParameters"] == {"a": "1"}
    assert event["multiValueQueryStringParameters"] == {"a": ["1", "2"]}
    assert (event["body"], event["isBase64Encoded"]) == ("dGV4dA==", True)
    assert event["requestContext"]["identity"]["sourceIp"] == "127.0.0.1"
    assert event["requestContext"]["requestId"] == r.headers["x-kong-request-id"]
    assert event["requestContext"]["domainName"] == "127.0.0.1"
    r = httpx.get(gateway.url("/gw2?q=1&q=2"), headers={"Cookie": "a=1; b=2"})
    event = r.json()
    assert event["version"] == "2.0"
    assert event["cookies"] == ["a=1", "b=2"]
    assert event["queryStringParameters"] == {"q": "1,2"}
    assert event["requestContext"]["http"]["method"] == "GET"


def test_proxy_integration(gateway: Gateway) -> None:
    body = json.dumps({"key1": "some_value_post1"})
    r = httpx.post(
        gateway.url("/proxy"),
        json={"statusCode": 201, "body": body, "headers": {"X-Custom-Header": "Hello world!"}},
    )
    assert (r.status_code, r.text) == (201, body)
    assert r.headers["x-custom-header"] == "Hello world!"
    assert r.headers["content-length"] == str(len(body))
    r = httpx.post(
        gateway.url("/proxy"), json={"statusCode": 201, "headers": {"x-amzn-RequestId": "bar"}}
    )
    assert (r.status_code, r.headers["x-amzn-requestid"]) == (201, "bar")
    r = httpx.post(gateway.url("/proxy"), json={"statusCode": "hello"})
    assert r.status_code == 502
    assert r.json() == {
        "message": "Bad Gateway",
        "error": "could not JSON decode Lambda function response: statusCode validation failed",
    }
    r = httpx.post(gateway.url("/badjson"))
    assert (r.status_code, r.json()["message"]) == (502, "Bad Gateway")
    r = httpx.get(gateway.url("/multivalue"))
    assert r.headers["age"] == "3600"
    assert r.headers.get_list("access-control-allow-origin") == ["site1.com", "site2.com"]


def test_event_dry_run_and_function_errors(gateway: Gateway) -> None:
    r = httpx.post(gateway.url("/event"), data={"key1": "v"})
    assert (r.status_code, r.content) == (202, b"")
    assert r.headers["x-amzn-requestid"] == "req-1234"
    assert httpx.post(gateway.url("/dryrun"), data={"key1": "v"}).status_code == 204
    r = httpx.get(gateway.url("/unhandled"))
    assert (r.status_code, r.headers["x-amz-function-error"]) == (200, "Unhandled")
    assert r.json() == {"errorMessage": "boom"}
    r = httpx.get(gateway.url("/unhandled412"))
    assert (r.status_code, r.headers["x-amz-function-error"]) == (412, "Unhandled")


def _stderr(gateway: Gateway) -> str:
    assert gateway.stderr_path is not None
    return gateway.stderr_path.read_text()


@pytest.mark.parametrize(
    ("path", "logged"),
    [
        ("/slow", "timeout"),
        ("/closed", "failed"),
        ("/missing", "answered 404: Function not found: nosuchfunction"),
        ("/untrusted", "CERTIFICATE_VERIFY_FAILED"),
        ("/noregion", "no region specified"),
        ("/nofunction", "no function_name configured"),
    ],
)
def test_failures_are_kongs_500(gateway: Gateway, path: str, logged: str) -> None:
    r = httpx.get(gateway.url(path), headers={"Accept": "application/json"}, timeout=10)
    assert r.status_code == 500
    assert r.json() == {
        "message": "An unexpected error occurred",
        "request_id": r.headers["x-kong-request-id"],
    }
    eventually(lambda: logged in _stderr(gateway), timeout=5)
    assert CONF_KEY[1] not in _stderr(gateway)


def test_credentials_from_the_environment(gateway: Gateway, peers: Peers) -> None:
    before = len(peers.plain.received)
    assert httpx.get(gateway.url("/env?a=1")).json() == {"a": "1"}
    (call,) = invoked(peers.plain, before)
    assert call.signed_by == ENV_KEY[0]
    assert call.header("x-amz-security-token") == ENV_KEY[2]
    assert call.target == "/2015-03-31/functions/echo/invocations?Qualifier=prod"


def test_tls_and_the_connect_proxy(gateway: Gateway, peers: Peers) -> None:
    before = len(peers.tls.received)
    assert httpx.get(gateway.url("/tls?a=1")).json() == {"a": "1"}
    assert httpx.get(gateway.url("/tunnel?a=2")).json() == {"a": "2"}
    assert len(invoked(peers.tls, before)) == 2
    assert any(
        line.startswith(f"CONNECT localhost:{peers.tls.port} ") for line, _ in peers.proxy.requests
    )


def test_assume_role(gateway: Gateway, peers: Peers) -> None:
    before = len(peers.plain.received)
    for _ in range(2):
        assert httpx.get(gateway.url("/assume?a=1")).json() == {"a": "1"}
    calls = invoked(peers.plain, before)
    assert [c.signed_by for c in calls] == [ROLE[0], ROLE[0]]
    assert calls[0].header("x-amz-security-token") == ROLE[2]
    # One AssumeRole, signed with the plugin's key, its answer kept for the second request.
    assert [(c.action, c.signed_by) for c in peers.sts.calls] == [("AssumeRole", CONF_KEY[0])]
    assert peers.sts.calls[0].params["RoleSessionName"] == "kong"


def test_empty_arrays(gateway: Gateway) -> None:
    assert '"testbody":{}' in httpx.get(gateway.url("/arrays-legacy")).text
    assert '"testbody": []' in httpx.get(gateway.url("/arrays-correct")).text


def test_large_bodies_are_skipped(gateway: Gateway) -> None:
    big = b"a" * 32 * 1024
    r = httpx.post(gateway.url("/large"), content=big)
    assert r.json()["request_body"] == ""
    eventually(lambda: "request body was buffered to disk, too large" in _stderr(gateway))
    small = b"a" * 1024
    r = httpx.post(gateway.url("/large"), content=small)
    assert r.json()["request_body"] == base64.b64encode(small).decode()


def test_web_identity(tmp_path_factory: pytest.TempPathFactory, peers: Peers) -> None:
    """EKS IRSA: no keys anywhere but a projected token; STS is asked once."""
    workdir = tmp_path_factory.mktemp("aws-irsa")
    token = workdir / "token"
    token.write_text("web-identity-jwt\n")
    config = _config(peers, {"irsa": {"aws_key": None, "aws_secret": None, "aws_region": None}})
    gw = Gateway(workdir, config)
    with pytest.MonkeyPatch.context() as patch:
        _clean_env(patch)
        patch.setenv("AWS_REGION", "us-east-1")
        patch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(token))
        patch.setenv("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/gateway")
        patch.setenv("AWS_ENDPOINT_URL_STS", peers.web_sts.url)
        gw.start()
    try:
        before = len(peers.plain.received)
        for i in range(2):
            assert httpx.get(gw.url(f"/irsa?i={i}")).json() == {"i": str(i)}
        calls = invoked(peers.plain, before)
        assert [c.signed_by for c in calls] == [WEB[0], WEB[0]]
        assert calls[0].header("x-amz-security-token") == WEB[2]
        assert [c.action for c in peers.web_sts.calls] == ["AssumeRoleWithWebIdentity"]
        assert peers.web_sts.calls[0].params["RoleArn"] == "arn:aws:iam::123456789012:role/gateway"
    finally:
        gw.stop()


def test_the_wait_on_lambda_is_proxy_latency(gateway: Gateway) -> None:
    """Kong 3.7+: the time Lambda takes is not the gateway's (its response latency header and
    the log's ``latencies.kong`` leave it out; ``latencies.proxy`` is that wait)."""
    r = httpx.get(gateway.url("/sleepy"))
    assert r.json() == {"slept": True}
    assert int(r.headers["x-kong-response-latency"]) < 400
    log = gateway.workdir / "access.log"
    eventually(lambda: log.exists() and log.read_text().strip() != "")
    entry = json.loads(log.read_text().splitlines()[-1])
    latencies = entry["latencies"]
    assert latencies["proxy"] >= 500
    assert latencies["kong"] < 400
    assert latencies["request"] >= latencies["proxy"]
    assert "tries" not in entry or not entry["tries"]
