"""Hypothesis: no request makes the gateway fail, whatever its path, headers or body.

``Gateway.http`` (the ASGI app, in this process, on a loopback upstream that answers every
request) takes requests built from odd parts: methods nginx refuses, paths with
percent-escapes, dot segments and bytes that are not UTF-8, query strings that do not decode,
auth headers that do not parse, bodies that are not the JSON or form they claim to be, HTTP/1.0
and HTTP/2 framing, on routes that run most bundled plugins. Each must get exactly one
response, Kong's or the upstream's, and never the 500 of an unexpected error nor an error
logged by fastkong. (Framing itself, a Content-Length that lies, is Granian's to refuse before
the app sees the request: here the length always matches the body.)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote

import pytest
import uvloop
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastkong.config import load_config
from fastkong.proxy.app import Gateway
from fastkong.runtime import compile_runtime
from tests.helpers import free_port

UPSTREAM_ANSWERS = [
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 24\r\n\r\n"
    b'{"drop":1,"r":0,"ok":[]}',
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n0\r\n\r\n",
    b"HTTP/1.1 304 Not Modified\r\nETag: x\r\n\r\n",
    b"HTTP/1.1 204 No Content\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nCache-Control: max-age=abc\r\nContent-Type: text/plain\r\n"
    b"Content-Length: 2\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Type: application/json\r\n"
    b"Content-Length: 3\r\n\r\nabc",
]


def _config(port: int) -> str:
    return f"""
_format_version: "3.0"
services:
- name: s
  url: http://127.0.0.1:{port}/base
  routes:
  - {{name: plain, paths: [/plain]}}
  - {{name: rx, paths: ["~/rx/(?<id>[0-9]+)/(?<rest>.*)$"]}}
  - {{name: hosty, hosts: ["*.example.com"], paths: [/h]}}
  - {{name: hdr, paths: [/hdr], headers: {{x-v: ["~*^v[0-9]+$"]}}}}
  - {{name: tls, paths: [/tls], protocols: [https], https_redirect_status_code: 308}}
  - name: auth
    paths: [/auth]
    plugins:
    - {{name: key-auth, config: {{key_in_query: true, key_in_body: true}}}}
    - {{name: acl, config: {{allow: [gold]}}}}
    - {{name: rate-limiting, config: {{second: 1000000, policy: local}}}}
  - {{name: basic, paths: [/basic], plugins: [{{name: basic-auth}}]}}
  - name: hmac
    paths: [/hmac]
    plugins: [{{name: hmac-auth, config: {{validate_request_body: true}}}}]
  - name: jwt
    paths: [/jwt]
    plugins: [{{name: jwt, config: {{claims_to_verify: [exp], cookie_names: [tok]}}}}]
  - name: xform
    paths: [/x]
    plugins:
    - name: request-transformer
      config:
        add: {{headers: ["x-a:$(headers.host)"], body: ["b:1"]}}
        rename: {{body: ["c:d"]}}
        replace: {{uri: "/new/$(uri_captures.id)"}}
        remove: {{body: [g], querystring: [h]}}
    - name: response-transformer
      config: {{add: {{json: ["j:1"]}}, remove: {{json: [drop]}}, replace: {{json: ["r:2"]}}}}
    - {{name: cors, config: {{origins: ["http://ok.example"], credentials: true}}}}
    - {{name: correlation-id, config: {{echo_downstream: true}}}}
    - {{name: request-size-limiting, config: {{allowed_payload_size: 1}}}}
    - {{name: bot-detection}}
  - name: cache
    paths: [/cache]
    plugins:
    - name: proxy-cache
      config: {{strategy: memory, content_type: [text/plain], vary_headers: [accept]}}
  - name: sess
    paths: [/sess]
    plugins: [{{name: session, config: {{secret: abcdefghijklmnop}}}}]
  - name: term
    paths: [/term]
    plugins: [{{name: request-termination, config: {{status_code: 418, echo: true}}}}]
  - name: wh
    paths: [/wh]
    plugins:
    - {{name: standard-webhooks, config: {{secret_v1: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw}}}}
  - name: ai
    paths: [/ai]
    plugins: [{{name: ai-prompt-guard, config: {{deny_patterns: [".*bad.*"]}}}}]
  - {{name: gw, paths: [/gw], plugins: [{{name: grpc-web}}]}}
consumers:
- username: u
  keyauth_credentials: [{{key: k1}}]
  basicauth_credentials: [{{username: bob, password: pw}}]
  hmacauth_credentials: [{{username: hm, secret: s3cret}}]
  jwt_secrets: [{{key: iss1, secret: sekrit}}]
  acls: [{{group: gold}}]
plugins:
- {{name: prometheus, config: {{per_consumer: true, status_code_metrics: true}}}}
- {{name: file-log, config: {{path: /dev/null}}}}
"""


PREFIXES = ["/plain", "/rx/12/", "/rx/x/", "/h", "/hdr", "/tls", "/auth", "/basic", "/hmac"]
PREFIXES += ["/jwt", "/x", "/cache", "/sess", "/term", "/wh", "/ai", "/gw", "/", "/nope"]
SUFFIXES = ["", "/", "//", "/a", "/%2F", "/%zz", "/%", "/%00", "/..", "/../..", "/./", "/%C3%A9"]
SUFFIXES += ["/a b", ";x", "/%FF%FE", "/~", "/*", "\\", "/" + "a" * 3000]
QUERIES = [b"", b"a=1", b"a", b"=", b"&&", b"a=%zz", b"apikey=k1", b"z=%FF", b"a=1&a=2", b"%"]
HEADERS: dict[bytes, list[bytes]] = {
    b"host": [b"x.example.com", b"A.EXAMPLE.COM:80", b"[::1]:8000", b"bad host", b":", b"\xff"],
    b"apikey": [b"k1", b"", b"nope"],
    b"authorization": [
        b"Basic Ym9iOnB3",
        b"Basic !!!",
        b"Basic ",
        b"Bearer a.b.c",
        b"Bearer eyJhbGciOiJub25lIn0.eyJpc3MiOiJpc3MxIn0.",
        b'hmac username="hm", algorithm="hmac-sha256", headers="date", signature="AAAA"',
        b"hmac",
    ],
    b"date": [b"Thu, 26 Nov 2026 01:00:00 GMT", b"garbage"],
    b"cookie": [b"tok=a.b.c", b"session=AAAA", b"session=!!!; session=x", b"=;"],
    b"content-type": [
        b"application/json",
        b"application/x-www-form-urlencoded",
        b"multipart/form-data; boundary=xx",
        b"multipart/form-data",
        b"application/grpc-web-text",
        b"application/grpc-web+proto",
        b"text/plain",
    ],
    b"x-forwarded-for": [b"1.2.3.4", b"garbage", b",,,"],
    b"origin": [b"http://ok.example", b"null", b"x"],
    b"access-control-request-method": [b"GET", b""],
    b"user-agent": [b"curl/8", b"Googlebot", b"", b"\xff"],
    b"x-v": [b"v1", b"one"],
    b"accept": [b"application/json", b"text/html", b"*/*", b"text/*;q=0.x"],
    b"cache-control": [b"no-cache", b"max-age=abc", b"only-if-cached"],
    b"traceparent": [b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", b"garbage"],
    b"webhook-id": [b"msg_1"],
    b"webhook-timestamp": [b"1", b"x"],
    b"webhook-signature": [b"v1,AAAA", b"x"],
    b"connection": [b"close", b"keep-alive, x-hop", b"te"],
    b"te": [b"trailers", b"x"],
}
BODIES = [b"", b"{}", b"[]", b"{", b'{"messages":[{"role":"user","content":"bad"}]}', b"a=1&g=2"]
BODIES += [b"apikey=k1", b"\xff\xfe", b"x" * 3000, b"AAAAAAAAAAAAAAAA", b"null", b'{"a":' * 100]
BODIES += [b'--xx\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n--xx--\r\n']


@st.composite
def requests(draw: st.DrawFn) -> tuple[dict[str, Any], list[bytes]]:
    version = draw(st.sampled_from(["1.1", "1.1", "1.0", "2"]))
    path = draw(st.sampled_from(PREFIXES)) + draw(st.sampled_from(SUFFIXES))
    raw_path = path.encode()
    names = draw(st.lists(st.sampled_from(sorted(HEADERS)), max_size=6, unique=True))
    headers = [(name, draw(st.sampled_from(HEADERS[name]))) for name in names]
    if b"host" not in names and version != "1.0":
        headers.append((b"host", b"x.example.com"))
    body = draw(st.sampled_from(BODIES))
    framing = draw(st.sampled_from(["length", "chunked", "none"]))
    if framing == "length" or (framing == "chunked" and version == "1.0"):
        headers.append((b"content-length", b"%d" % len(body)))
    elif framing == "chunked" and version == "1.1":
        headers.append((b"transfer-encoding", b"chunked"))
    elif version != "2":
        body = b""  # an HTTP/1 request without framing has no body
    cut = draw(st.integers(0, len(body)))
    scope = {
        "type": "http",
        "http_version": version,
        "server": ("127.0.0.1", 8000),
        "client": (draw(st.sampled_from(["127.0.0.1", "10.1.1.1", "::1"])), 40000),
        "scheme": draw(st.sampled_from(["http", "https"])),
        "method": draw(st.sampled_from(["GET", "POST", "HEAD", "OPTIONS", "PUT", "FOO", "get"])),
        "root_path": "",
        "path": unquote(path, errors="surrogateescape"),
        "raw_path": raw_path,
        "query_string": draw(st.sampled_from(QUERIES)),
        "headers": headers,
    }
    return scope, [body[:cut], body[cut:]]


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class _World:
    """One event loop, with the upstream and the gateway on it, for every example."""

    def __init__(self) -> None:
        self.loop = uvloop.new_event_loop()
        self.port = free_port()
        self.server = self.loop.run_until_complete(
            asyncio.start_server(self._upstream, "127.0.0.1", self.port)
        )
        loaded = load_config(_config(self.port))
        self.gateway = Gateway(compile_runtime(loaded.config, loaded.hash))
        self.loop.run_until_complete(self.gateway.startup())
        self.answers = 0

    async def _upstream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).lower()
                if b"content-length:" in head:
                    await reader.readexactly(int(head.split(b"content-length:")[1].split()[0]))
                elif b"transfer-encoding: chunked" in head:
                    while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
                        await reader.readexactly(size + 2)
                    await reader.readuntil(b"\r\n")
                writer.write(UPSTREAM_ANSWERS[self.answers % len(UPSTREAM_ANSWERS)])
                self.answers += 1
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    def close(self) -> None:
        self.loop.run_until_complete(self.gateway.shutdown())
        self.server.close()
        self.loop.run_until_complete(self.server.wait_closed())
        self.loop.close()


@pytest.fixture(scope="module")
def world() -> Iterator[_World]:
    made = _World()
    yield made
    made.close()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(request=requests())
def test_every_request_gets_one_response_and_no_error(
    world: _World, request: tuple[dict[str, Any], list[bytes]]
) -> None:
    scope, pieces = request
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if pieces:
            return {"type": "http.request", "body": pieces.pop(0), "more_body": bool(pieces)}
        await asyncio.sleep(3600)  # the client stays: no disconnect before the response
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    errors = _Errors()
    logging.getLogger("fastkong").addHandler(errors)
    try:
        world.loop.run_until_complete(
            asyncio.wait_for(world.gateway.http(scope, receive, send), 10)
        )
    finally:
        logging.getLogger("fastkong").removeHandler(errors)
    starts = [m["status"] for m in sent if m["type"] == "http.response.start"]
    assert len(starts) == 1
    assert starts[0] != 500, b"".join(m.get("body", b"") for m in sent)
    assert not errors.records, [r.getMessage() for r in errors.records]
