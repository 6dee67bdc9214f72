"""aws-lambda's credential sources, its Lambda service and the HTTP exchange (Kong's AWS
library's behaviour as Kong 3.9 uses it), against the loopback fakes of
:mod:`tests.plugins.aws_fakes`."""

from __future__ import annotations

import base64
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import fastkong.plugins.bundled  # noqa: F401  (registers the plugins)
from fastkong.plugins.bundled import _aws_credentials as creds
from fastkong.plugins.bundled import _aws_http
from fastkong.plugins.bundled.aws_lambda import AwsLambdaConfig
from fastkong.proxy.upstream_tls import TlsProfile
from tests.pki import Pki
from tests.plugins.aws_fakes import ConnectProxy, FakeLambda, FakeMetadata, FakeSts

KEYS: dict[str, tuple[str, str | None]] = {"AKIDUNIT": ("unit-secret", None)}


def config(**fields: Any) -> AwsLambdaConfig:
    return AwsLambdaConfig(function_name="f", aws_region="us-east-1", **fields)


# -- credentials ----------------------------------------------------------------------------------

GRANTED = ("ASIAMETA", "meta-secret", "meta-token")


@pytest.fixture
def no_aws_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    import os

    for name in list(os.environ):
        if name.startswith(("AWS_", "AMAZON_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/config")
    return monkeypatch


@pytest.fixture
def metadata() -> Iterator[FakeMetadata]:
    server = FakeMetadata(GRANTED, require_token=True, auth="Bearer pod-token").start()
    yield server
    server.stop()


@pytest.fixture
def sts() -> Iterator[FakeSts]:
    server = FakeSts(keys={"AKIDBASE": ("base-secret", None)}, token="jwt-token").start()
    yield server
    server.stop()


async def test_environment_and_files(no_aws_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env = creds.Environment("AWS")
    with pytest.raises(creds.CredentialsError, match="AWS_ACCESS_KEY_ID"):
        await env.get()
    no_aws_env.setenv("AWS_ACCESS_KEY_ID", "AKIDENV")
    no_aws_env.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    no_aws_env.setenv("AWS_SESSION_TOKEN", "env-token")
    got = await creds.Environment("AWS").get()
    assert (got.access_key, got.secret_key, got.session_token) == (
        "AKIDENV",
        "env-secret",
        "env-token",
    )
    assert "env-secret" not in repr(got) and "env-token" not in repr(got)
    no_aws_env.setenv("AMAZON_ACCESS_KEY_ID", "AKIDAMAZON")
    no_aws_env.setenv("AMAZON_SECRET_ACCESS_KEY", "amazon-secret")
    assert (await creds.Environment("AMAZON").get()).access_key == "AKIDAMAZON"
    shared = tmp_path / "credentials"
    shared.write_text(
        "[default]\naws_access_key_id = AKIDFILE\naws_secret_access_key = f\n"
        "[ops]\naws_access_key_id = AKIDOPS\naws_secret_access_key = o\n"
    )
    no_aws_env.setenv("AWS_SHARED_CREDENTIALS_FILE", str(shared))
    assert (await creds.SharedFile().get()).access_key == "AKIDFILE"
    no_aws_env.setenv("AWS_PROFILE", "ops")
    assert (await creds.SharedFile().get()).access_key == "AKIDOPS"
    no_aws_env.setenv("AWS_PROFILE", "missing")
    with pytest.raises(creds.CredentialsError, match="profile 'missing'"):
        await creds.SharedFile().get()


async def test_container_endpoint(
    no_aws_env: pytest.MonkeyPatch, metadata: FakeMetadata, tmp_path: Path
) -> None:
    no_aws_env.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", f"{metadata.url}/container")
    with pytest.raises(creds.CredentialsError, match="answered 401"):
        await creds.Container().get()
    token = tmp_path / "token"
    token.write_text("Bearer pod-token\n")
    no_aws_env.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", str(token))
    got = await creds.Container().get()
    assert (got.access_key, got.session_token) == ("ASIAMETA", "meta-token")
    assert got.expires > time.time() + 3000
    no_aws_env.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://example.com/creds")
    with pytest.raises(creds.CredentialsError, match="over https only"):
        await creds.Container().get()


async def test_instance_metadata(no_aws_env: pytest.MonkeyPatch, metadata: FakeMetadata) -> None:
    with pytest.raises(creds.CredentialsError, match="disabled"):
        await creds.InstanceMetadata().get()
    no_aws_env.setenv("AWS_EC2_METADATA_DISABLED", "false")
    no_aws_env.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", metadata.url)
    got = await creds.InstanceMetadata().get()  # IMDSv2: a token, then the role's credentials
    assert got.access_key == "ASIAMETA"
    assert [r.method for r in metadata.received] == ["PUT", "GET", "GET"]
    assert metadata.received[2].header("x-aws-ec2-metadata-token") == "imds-token-1"
    assert metadata.received[2].path.endswith("/gateway-role")


async def test_instance_metadata_v1_fallback(no_aws_env: pytest.MonkeyPatch) -> None:
    class V1Only(FakeMetadata):
        def answer(self, request: Any) -> Any:
            if request.method == "PUT":
                return 403, [], b""
            return super().answer(request)

    server = V1Only(GRANTED).start()
    try:
        no_aws_env.setenv("AWS_EC2_METADATA_DISABLED", "false")
        no_aws_env.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", server.url)
        assert (await creds.InstanceMetadata().get()).access_key == "ASIAMETA"
        assert server.received[1].header("x-aws-ec2-metadata-token") is None
    finally:
        server.stop()


async def test_web_identity(no_aws_env: pytest.MonkeyPatch, sts: FakeSts, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("jwt-token\n")
    no_aws_env.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(token))
    no_aws_env.setenv("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/gateway")
    no_aws_env.setenv("AWS_ENDPOINT_URL_STS", sts.url)
    provider = creds.WebIdentity()
    got = await provider.get()
    assert (got.access_key, got.secret_key, got.session_token) == sts.granted
    assert await provider.get() is got  # cached: one STS call
    assert len(sts.calls) == 1
    call = sts.calls[0]
    assert call.action == "AssumeRoleWithWebIdentity"
    assert call.params["RoleArn"] == "arn:aws:iam::123456789012:role/gateway"
    assert call.params["RoleSessionName"] == "session@lua-resty-aws"
    assert call.signed_by is None
    token.write_text("expired-jwt")
    with pytest.raises(creds.CredentialsError, match="answered 400"):
        await creds.WebIdentity().get()


async def test_assume_role_and_refresh(no_aws_env: pytest.MonkeyPatch, sts: FakeSts) -> None:
    endpoint = creds.StsEndpoint.resolve("us-east-1", sts.url)
    base = creds.Static("AKIDBASE", "base-secret")
    role = creds.AssumeRole(base, "arn:aws:iam::1:role/r", "kong", endpoint, None)
    got = await role.get()
    assert got.access_key == "ASIAROLE"
    assert sts.calls[0].signed_by == "AKIDBASE"
    assert sts.calls[0].params == {
        "Action": "AssumeRole",
        "RoleArn": "arn:aws:iam::1:role/r",
        "RoleSessionName": "kong",
        "Version": "2011-06-15",
    }
    await role.get()
    assert len(sts.calls) == 1
    # Credentials with less than five minutes left are refreshed; when that fails, the old ones
    # serve while they have more than 15 s left.
    sts.lifetime = 200
    short = creds.AssumeRole(base, "arn:aws:iam::1:role/r", "kong", endpoint, None)
    await short.get()
    await short.get()
    assert len(sts.calls) == 3
    sts.keys.clear()
    assert (await short.get()).access_key == "ASIAROLE"
    bad = creds.AssumeRole(base, "arn:aws:iam::1:role/r", "kong", endpoint, None)
    with pytest.raises(creds.CredentialsError, match="answered 403"):
        await bad.get()


async def test_chain_says_what_it_tried(no_aws_env: pytest.MonkeyPatch) -> None:
    chain = creds.Chain(
        [
            creds.Environment("AWS"),
            creds.Environment("AMAZON"),
            creds.SharedFile(),
            creds.Container(),
            creds.WebIdentity(),
            creds.InstanceMetadata(),
        ]
    )
    with pytest.raises(creds.CredentialsError) as info:
        await chain.get()
    message = str(info.value)
    for source in (
        "AWS_ACCESS_KEY_ID",
        "AMAZON_ACCESS_KEY_ID",
        "shared credentials file",
        "container credentials endpoint",
        "web identity",
        "EC2 instance metadata: disabled by AWS_EC2_METADATA_DISABLED",
    ):
        assert source in message
    no_aws_env.setenv("AMAZON_ACCESS_KEY_ID", "AKIDAMAZON")
    no_aws_env.setenv("AMAZON_SECRET_ACCESS_KEY", "s")
    assert (await chain.get()).access_key == "AKIDAMAZON"


def test_sts_endpoints(no_aws_env: pytest.MonkeyPatch) -> None:
    def where(region: str | None, override: str | None = None) -> tuple[str, int, str]:
        e = creds.StsEndpoint.resolve(region, override)
        return f"{e.scheme}://{e.host}", e.port, e.region

    assert where("eu-west-1") == ("https://sts.eu-west-1.amazonaws.com", 443, "eu-west-1")
    assert where("cn-north-1") == ("https://sts.cn-north-1.amazonaws.com.cn", 443, "cn-north-1")
    assert where(None) == ("https://sts.amazonaws.com", 443, "us-east-1")
    assert where("eu-west-1", "http://sts.local:9000") == ("http://sts.local", 9000, "eu-west-1")
    no_aws_env.setenv("AWS_STS_REGIONAL_ENDPOINTS", "legacy")
    assert where("eu-west-1") == ("https://sts.amazonaws.com", 443, "us-east-1")
    no_aws_env.setenv("AWS_ENDPOINT_URL_STS", "https://vpce-1.sts.vpce.amazonaws.com")
    assert where("eu-west-1")[0] == "https://vpce-1.sts.vpce.amazonaws.com"


# -- the HTTP exchange ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki() -> Pki:
    return Pki("aws-lambda unit CA")


def _tls_server(pki: Pki, tmp_path: Path) -> ssl.SSLContext:
    cert, key = pki.issue("localhost", dns="localhost")
    (tmp_path / "c.pem").write_text(cert)
    (tmp_path / "k.pem").write_text(key)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "c.pem", tmp_path / "k.pem")
    return context


def _invoke_headers(host: str, function: str = "echo") -> list[tuple[str, str]]:
    from fastkong.plugins.bundled._aws_sigv4 import Credentials, sign

    return sign(
        method="POST",
        host=host,
        path=f"/2015-03-31/functions/{function}/invocations",
        query=[],
        headers=[],
        body=b"{}",
        credentials=Credentials("AKIDUNIT", "unit-secret"),
        region="us-east-1",
        service="lambda",
    )


async def test_keepalive_and_tls_through_a_connect_proxy(pki: Pki, tmp_path: Path) -> None:
    fake = FakeLambda(KEYS, ssl=_tls_server(pki, tmp_path)).start()
    proxy = ConnectProxy().start()
    trusted = TlsProfile(True, [pki.pem])
    try:
        for _ in range(2):
            host = f"localhost:{fake.port}"
            res = await _aws_http.request(
                "POST", "https", "localhost", fake.port, "/2015-03-31/functions/echo/invocations",
                _invoke_headers(host), b"{}", timeout=5, keepalive_ms=60000,
                proxy=_aws_http.Proxy.parse(f"http://user:pw@127.0.0.1:{proxy.port}"), tls=trusted,
            )  # fmt: skip
            assert (res.status, res.body) == (200, b"{}")
        assert [r.signed_by for r in fake.received] == ["AKIDUNIT", "AKIDUNIT"]
        # One tunnel, kept alive between the two requests, with the proxy's credentials.
        assert proxy.requests == [
            (
                f"CONNECT localhost:{fake.port} HTTP/1.1",
                "Basic " + base64.b64encode(b"user:pw").decode(),
            )
        ]
        assert fake.connections == 1
        # A certificate from a CA the node does not trust is refused.
        with pytest.raises(_aws_http.AwsHttpError, match="CERTIFICATE_VERIFY_FAILED"):
            await _aws_http.request(
                "POST", "https", "localhost", fake.port, "/", [("Host", "localhost")], b"",
                timeout=5, tls=TlsProfile(True, [Pki("other").pem]),
            )  # fmt: skip
    finally:
        proxy.stop()
        fake.stop()


async def test_plain_http_through_a_proxy_and_timeouts() -> None:
    fake = FakeLambda(KEYS).start()
    proxy = ConnectProxy().start()

    async def slow(request: Any) -> Any:
        import asyncio

        await asyncio.sleep(2)
        return 200, [], b"late"

    fake.functions["slow"] = slow
    try:
        host = f"127.0.0.1:{fake.port}"
        res = await _aws_http.request(
            "POST", "http", "127.0.0.1", fake.port, "/2015-03-31/functions/echo/invocations",
            _invoke_headers(host), b"{}", timeout=5,
            proxy=_aws_http.Proxy.parse(f"http://127.0.0.1:{proxy.port}"),
        )  # fmt: skip
        assert res.status == 200 and fake.received[0].signed_by == "AKIDUNIT"
        assert proxy.requests[0][0] == (
            f"POST http://{host}/2015-03-31/functions/echo/invocations HTTP/1.1"
        )
        started = time.monotonic()
        with pytest.raises(_aws_http.AwsHttpError) as info:
            await _aws_http.request(
                "POST", "http", "127.0.0.1", fake.port, "/2015-03-31/functions/slow/invocations",
                _invoke_headers(host, "slow"), b"{}", timeout=0.3,
            )  # fmt: skip
        assert info.value.timeout and time.monotonic() - started < 1.5
    finally:
        proxy.stop()
        fake.stop()


# -- the plugin's Lambda service ------------------------------------------------------------------


def test_service_endpoint_and_credentials(no_aws_env: pytest.MonkeyPatch) -> None:
    from fastkong.plugins.bundled.aws_lambda import LambdaService, lambda_service

    s = LambdaService(config(aws_key="k", aws_secret="s"), "eu-west-1")
    assert (s.scheme, s.host, s.port) == ("https", "lambda.eu-west-1.amazonaws.com", 443)
    assert isinstance(s.credentials, creds.Static)
    s = LambdaService(config(host="lambda.local", port=8080, disable_https=True), "cn-north-1")
    assert (s.scheme, s.host, s.port) == ("http", "lambda.local", 8080)
    assert s.credentials is creds.default_chain()
    assert LambdaService(config(), "cn-north-1").host == "lambda.cn-north-1.amazonaws.com.cn"
    # Kong: with a proxy and EKS IRSA, web identity goes through the proxy (else the chain).
    no_aws_env.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", "/var/run/token")
    no_aws_env.setenv("AWS_ROLE_ARN", "arn:aws:iam::1:role/r")
    proxied = LambdaService(config(proxy_url="http://squid:3128"), "us-east-1")
    assert isinstance(proxied.credentials, creds.WebIdentity)
    assert proxied.credentials.proxy == _aws_http.Proxy("squid", 3128)
    assert proxied.credentials.region == "us-east-1"
    role = LambdaService(
        config(aws_assume_role_arn="arn:aws:iam::1:role/x", aws_sts_endpoint_url="https://sts.x"),
        "us-east-1",
    )
    assert isinstance(role.credentials, creds.AssumeRole)
    assert role.credentials.base is creds.default_chain()
    assert (role.credentials.endpoint.host, role.credentials.endpoint.region) == (
        "sts.x",
        "us-east-1",
    )
    # Plugins with the same settings share one service (and so its cached credentials).
    c = config(aws_key="k", aws_secret="s")
    assert lambda_service(c, "us-east-1") is lambda_service(
        config(aws_key="k", aws_secret="s"), "us-east-1"
    )


def test_client_body_buffer_size_setting() -> None:
    from fastkong.kong_conf import client_body_buffer_size

    assert client_body_buffer_size({}) == 8192
    assert client_body_buffer_size({"KONG_CLIENT_BODY_BUFFER_SIZE": "16k"}) == 16384
    env = {"KONG_NGINX_HTTP_CLIENT_BODY_BUFFER_SIZE": "1m", "KONG_CLIENT_BODY_BUFFER_SIZE": "16k"}
    assert client_body_buffer_size(env) == 1024 * 1024
    env["FASTKONG_NGINX_PROXY_CLIENT_BODY_BUFFER_SIZE"] = "64k"
    assert client_body_buffer_size(env) == 65536
    with pytest.raises(ValueError, match="client_body_buffer_size: invalid size"):
        client_body_buffer_size({"KONG_CLIENT_BODY_BUFFER_SIZE": "lots"})
