"""ai-request-transformer through a real gateway, in front of the echo upstream, with a fake LLM
on loopback (plain and TLS) and a forward proxy (Kong's spec/03-plugins/39-ai-request-transformer
integration spec, its cases made to fail when the plugin does not do its part)."""

from __future__ import annotations

import hashlib
import json
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import Echo, Gateway, echoed_headers, free_port
from tests.pki import Pki
from tests.plugins.ai_llm_fakes import FakeLlm, transformer
from tests.plugins.aws_fakes import ConnectProxy

pytestmark = pytest.mark.integration

NAME = "ai-request-transformer"
PROMPT = "Rewrite this in capitals."
BODY = {"name": "fastkong", "words": ["one two", "three"]}
INTROSPECT = "failed to introspect request with AI service: "


def tls_llm(pki: Pki, workdir: Path) -> FakeLlm:
    cert, key = pki.issue("llm", ip="127.0.0.1")
    (workdir / "cert.pem").write_text(cert)
    (workdir / "key.pem").write_text(key)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(workdir / "cert.pem", workdir / "key.pem")
    return FakeLlm(context).start()


class Llms:
    """The fake LLM, plain; over TLS with a certificate the gateway trusts, and with one it
    does not; and a forward proxy."""

    def __init__(self, workdir: Path) -> None:
        self.pki = Pki("llm-ca")
        (workdir / "trusted").mkdir()
        (workdir / "untrusted").mkdir()
        self.plain = FakeLlm().start()
        self.trusted = tls_llm(self.pki, workdir / "trusted")
        self.untrusted = tls_llm(Pki("unknown-ca"), workdir / "untrusted")
        self.proxy = ConnectProxy().start()

    def url(self, case: str, server: FakeLlm | None = None) -> str:
        server = server or self.plain
        scheme = "http" if server is self.plain else "https"
        return f"{scheme}://127.0.0.1:{server.port}/llm/{case}"

    def stop(self) -> None:
        for server in (self.plain, self.trusted, self.untrusted, self.proxy):
            server.stop()


@pytest.fixture(scope="module")
def llms(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Llms]:
    servers = Llms(tmp_path_factory.mktemp("llms"))
    yield servers
    servers.stop()


@pytest.fixture(scope="module")
def log_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ai-log") / "file.log"


def routes(llms: Llms, log_path: Path) -> dict[str, list[dict[str, Any]]]:
    url = llms.url
    proxy = llms.proxy.port
    return {
        "req": [
            transformer(
                NAME,
                url("upper"),
                prompt=PROMPT,
                llm={
                    "options": {
                        "temperature": 0.5,
                        "max_tokens": 100,
                        "top_k": 3,
                        "input_cost": 10.0,
                        "output_cost": 20.0,
                    },
                    "logging": {"log_statistics": True, "log_payloads": True},
                },
            ),
            {"name": "file-log", "config": {"path": str(log_path)}},
        ],
        "req-extract": [
            transformer(NAME, url("padded"), transformation_extract_pattern=r"^\{.*\}$")
        ],
        "req-caseless": [
            transformer(NAME, url("padded"), transformation_extract_pattern="sure! HERE is")
        ],
        "req-nomatch": [transformer(NAME, url("upper"), transformation_extract_pattern="^never$")],
        "req-down": [transformer(NAME, f"http://127.0.0.1:{free_port()}/v1/chat/completions")],
        "req-500": [transformer(NAME, url("status500"))],
        "req-bad": [transformer(NAME, url("bad"))],
        "req-slow": [transformer(NAME, url("slow"), http_timeout=300)],
        "req-limit": [transformer(NAME, url("upper"), max_request_body_size=10_000)],
        "req-small": [transformer(NAME, url("upper"), max_request_body_size=100)],
        "req-anthropic": [
            transformer(
                NAME,
                url("anthropic/v1/messages"),
                provider="anthropic",
                llm={"name": "claude-2.1", "options": {"max_tokens": 256}},
            )
        ],
        "req-query-auth": [
            transformer(
                NAME,
                url("upper"),
                llm={
                    "auth": {
                        "param_name": "apikey",
                        "param_value": "openai-key",
                        "param_location": "query",
                    }
                },
            )
        ],
        "req-tls": [transformer(NAME, url("upper", llms.trusted))],
        "req-untrusted": [transformer(NAME, url("upper", llms.untrusted))],
        "req-unverified": [transformer(NAME, url("upper", llms.untrusted), https_verify=False)],
        "req-http-proxy": [
            transformer(NAME, url("upper"), http_proxy_host="127.0.0.1", http_proxy_port=proxy)
        ],
        "req-https-proxy": [
            transformer(
                NAME,
                url("upper", llms.trusted),
                https_proxy_host="127.0.0.1",
                https_proxy_port=proxy,
            )
        ],
    }


@pytest.fixture(scope="module")
def gateway(
    gateway_with: Callable[[str], Gateway],
    echo: Echo,
    llms: Llms,
    log_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Gateway:
    config = {
        "_format_version": "3.0",
        "services": [
            {
                "name": "echo",
                "url": echo.url,
                "routes": [
                    {"name": name, "paths": [f"/{name}"], "plugins": plugins}
                    for name, plugins in routes(llms, log_path).items()
                ],
            }
        ],
    }
    ca = tmp_path_factory.mktemp("trust") / "ca.pem"
    ca.write_text(llms.pki.pem)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KONG_LUA_SSL_TRUSTED_CERTIFICATE", str(ca))
        return gateway_with(json.dumps(config))


def post(gateway: Gateway, path: str, body: Any) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(
        gateway.url(path), content=content, headers={"content-type": "application/json"}, timeout=10
    )


def upstream_got(r: httpx.Response, expected: bytes) -> None:
    """The echo upstream received exactly ``expected``, with its length."""
    assert r.status_code == 200, r.text
    seen = r.json()
    assert seen["body_md5"] == hashlib.md5(expected).hexdigest()
    assert seen["body_length"] == len(expected)
    assert echoed_headers(seen)["content-length"] == [str(len(expected))]


def refused(r: httpx.Response, status: int, message: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json; charset=utf-8"
    assert r.json() == {"error": {"message": message}}
    assert "x-echo-server" not in r.headers  # the upstream never answered


def test_the_llm_answer_is_the_body_sent_upstream(gateway: Gateway, llms: Llms) -> None:
    text = json.dumps(BODY).encode()
    r = post(gateway, "/req", text)
    upstream_got(r, text.upper())
    sent = llms.plain.last("upper")
    assert sent["method"] == "POST"
    assert sent["headers"]["authorization"] == "Bearer openai-key"
    assert sent["headers"]["content-type"] == "application/json"
    assert sent["headers"]["accept"] == "application/json"
    # Kong's layout: the prompt as the system message, the body as the user's; the model's
    # options over the request's, OpenAI's unsupported top_k left out, no stream.
    assert sent["body"] == {
        "messages": [
            {"role": "system", "content": PROMPT},
            {"role": "user", "content": text.decode()},
        ],
        "stream": False,
        "model": "gpt-4",
        "temperature": 0.5,
        "max_tokens": 100,
    }


def test_the_extract_pattern_keeps_its_first_match(gateway: Gateway) -> None:
    text = json.dumps(BODY).encode()
    # ^ and $ at line ends: Kong's "m" flag
    upstream_got(post(gateway, "/req-extract", text), text.upper())
    # caseless: Kong's "i" flag
    upstream_got(post(gateway, "/req-caseless", text), b"Sure! Here is")
    refused(
        post(gateway, "/req-nomatch", text),
        400,
        "AI response did not match specified regular expression",
    )


def test_llm_failures_are_kongs_400(gateway: Gateway) -> None:
    refused(
        post(gateway, "/req-down", BODY),
        400,
        INTROSPECT + "request to ai service failed: request failed: connection refused",
    )
    refused(post(gateway, "/req-500", BODY), 400, INTROSPECT + "status code 500")
    refused(
        post(gateway, "/req-bad", BODY),
        400,
        "failed to convert AI response to Kong format: transformation failed from type "
        "openai://llm/v1/chat: 'choices' not in llm/v1/chat response",
    )
    started = time.monotonic()
    refused(
        post(gateway, "/req-slow", BODY),
        400,
        INTROSPECT + "request to ai service failed: request failed: timeout",
    )
    assert time.monotonic() - started < 1.5  # http_timeout (300 ms), not the LLM's 2 s


def test_the_body_limit(gateway: Gateway) -> None:
    over = b"x" * 10_001
    refused(post(gateway, "/req-limit", over), 413, "request body is larger than 10000 bytes")
    upstream_got(post(gateway, "/req-limit", over[:-1]), over[:-1].upper())
    # The default limit is 8 KiB; a smaller max_request_body_size does not go below nginx's
    # 8 KiB client body buffer (Kong reads a body that fits it whatever the setting).
    refused(post(gateway, "/req", b"y" * 8193), 413, "request body is larger than 8192 bytes")
    upstream_got(post(gateway, "/req-small", b"z" * 5000), b"Z" * 5000)


def test_an_anthropic_llm(gateway: Gateway, llms: Llms) -> None:
    text = json.dumps(BODY).encode()
    upstream_got(post(gateway, "/req-anthropic", text), text.upper())
    sent = llms.plain.last("anthropic")
    assert sent["target"] == "/llm/anthropic/v1/messages"
    assert sent["headers"]["x-api-key"] == "anthropic-key"
    assert sent["headers"]["anthropic-version"] == "2023-06-01"
    assert sent["body"] == {
        "messages": [{"role": "user", "content": text.decode()}],
        "system": PROMPT,
        "max_tokens": 256,
        "model": "claude-2.1",
        "stream": False,
    }


def test_a_query_auth_parameter_is_sent(gateway: Gateway, llms: Llms) -> None:
    upstream_got(post(gateway, "/req-query-auth", b"abc"), b"ABC")
    assert llms.plain.last("upper")["target"] == "/llm/upper?apikey=openai-key"


def test_https_verify(gateway: Gateway) -> None:
    upstream_got(post(gateway, "/req-tls", b"tls"), b"TLS")
    r = post(gateway, "/req-untrusted", b"tls")
    assert r.status_code == 400
    message = r.json()["error"]["message"]
    assert message.startswith(INTROSPECT + "request to ai service failed: request failed: ")
    assert "certificate" in message
    upstream_got(post(gateway, "/req-unverified", b"tls"), b"TLS")


def test_forward_proxies(gateway: Gateway, llms: Llms) -> None:
    before = len(llms.proxy.requests)
    upstream_got(post(gateway, "/req-http-proxy", b"via proxy"), b"VIA PROXY")
    upstream_got(post(gateway, "/req-https-proxy", b"via tunnel"), b"VIA TUNNEL")
    lines = [line for line, _ in llms.proxy.requests[before:]]
    assert lines == [
        f"POST http://127.0.0.1:{llms.plain.port}/llm/upper HTTP/1.1",
        f"CONNECT 127.0.0.1:{llms.trusted.port} HTTP/1.1",
    ]


def logged(path: Path, request_body: str) -> dict[str, Any]:
    """The ``ai`` section of the log entry whose logged request body is ``request_body``."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if path.exists():
            for line in path.read_text().splitlines():
                section = json.loads(line).get("ai", {}).get(NAME, {})
                if section.get("payload", {}).get("request") == request_body:
                    return dict(section)
        time.sleep(0.05)
    raise AssertionError(f"no log entry for {request_body!r}")


def test_statistics_and_payloads_are_logged(gateway: Gateway, log_path: Path) -> None:
    text = b'{"log": "me"}'
    upstream_got(post(gateway, "/req", text), text.upper())
    section = logged(log_path, text.decode())
    meta = section["meta"]
    assert meta["provider_name"] == "openai"
    assert meta["request_model"] == "UNSPECIFIED"
    assert meta["response_model"] == "gpt-3.5-turbo-0613"
    assert meta["plugin_id"] and isinstance(meta["llm_latency"], int)
    usage = section["usage"]
    assert usage["prompt_tokens"] == 25 and usage["completion_tokens"] == 12
    assert usage["total_tokens"] == 37
    assert usage["cost"] == pytest.approx((25 * 10 + 12 * 20) / 1_000_000)
    assert usage["time_per_token"] == meta["llm_latency"] // 12
    assert section["cache"] == {}
    answer = json.loads(section["payload"]["response"])
    assert answer["choices"][0]["message"]["content"] == text.decode().upper()
