"""Kong's mock Lambda (``spec/fixtures/aws-lambda.lua``) on loopback, for the ports of Kong's
aws-lambda specs: each function name answers what Kong's mock answers (picked, as there, by
the name appearing in the request path), every invocation's SigV4 signature checked with
:func:`tests.plugins.aws_fakes.verify`. Also a ``CONNECT`` proxy that takes any name for
loopback: Kong's specs resolve ``lambda.us-east-1.amazonaws.com`` and
``custom.lambda.endpoint`` to 127.0.0.1 with a DNS mock, which fastkong (the system resolver)
has no equivalent of; through this proxy the gateway still connects, and verifies TLS, by name.
"""

from __future__ import annotations

import asyncio
import json
import re
import ssl
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote

from tests.helpers import LoopServer
from tests.pki import Pki
from tests.plugins.aws_fakes import Answer, HttpFake, Received, pipe, verify

KEYS: dict[str, tuple[str, str | None]] = {"mock-key": ("mock-secret", None)}
#: The names Kong's DNS mock points at 127.0.0.1 (and the one every test resolves).
NAMES = ("localhost", "lambda.us-east-1.amazonaws.com", "custom.lambda.endpoint")

_JSON = [("Content-Type", "application/json")]
#: Kong's mock: ``function name (substring of the path) -> (headers, body printed by ngx.say)``.
_CANNED: list[tuple[str, list[tuple[str, str]], str]] = [
    ("functionWithBadJSON", [], '{"foo":"bar"'),
    ("functionWithBase64EncodedResponse", _JSON, '{"statusCode": 200, "body": "dGVzdA==", '
     '"isBase64Encoded": true}'),
    ("functionWithNotBase64EncodedResponse", _JSON, '{"statusCode": 200, "body": "dGVzdA=", '
     '"isBase64Encoded": false}'),
    ("functionWithIllegalBase64EncodedResponse", [], '{"statusCode": 200, "body": "dGVzdA=", '
     '"isBase64Encoded": "abc"}'),
    ("functionWithMultiValueHeadersResponse", _JSON, '{"statusCode": 200, "headers": { "Age": '
     '"3600"}, "multiValueHeaders": {"Access-Control-Allow-Origin": ["site1.com", "site2.com"]}}'),
    ("functionWithTransferEncodingHeader", [], '{"statusCode": 200, "headers": { '
     '"Transfer-Encoding": "chunked", "transfer-encoding": "chunked"}}'),
    ("functionWithLatency", [], '{"statusCodge": 200, "body": "dGVzdA=", '
     '"isBase64Encoded": false}'),
    ("functionWithEmptyArray", _JSON, '{"statusCode": 200, "testbody": [], "isBase64Encoded": '
     'false}'),
    ("functionWithArrayCTypeInMVHAndEmptyArray", _JSON, '{"statusCode": 200, "isBase64Encoded": '
     'true, "body": "eyJrZXkiOiAidmFsdWUiLCAia2V5MiI6IFtdfQ==", "headers": {}, '
     '"multiValueHeaders": {"Content-Type": ["application/json+test"]}}'),
]  # fmt: skip
#: nginx's ``default_type``: the type of the mock's answers that set none.
_DEFAULT_TYPE = [("Content-Type", "text/plain")]


class KongMockLambda(HttpFake):
    """Kong's mock Lambda. ``delay`` is the mock's simulated network latency (Kong's mock waits
    0.2 s on every call; here only an instance given one waits); ``functionWithLatency`` waits
    ``latency`` (Kong: 2 s)."""

    def __init__(self, ssl: Any = None, delay: float = 0.0, latency: float = 1.0) -> None:
        super().__init__(ssl)
        self.delay = delay
        self.latency = latency

    async def answer(self, request: Received) -> Answer:
        request.error = verify(request, KEYS, "us-east-1", "lambda")
        if request.error is not None:
            body = json.dumps({"Message": f"signature invalid: {request.error}"}).encode()
            return 403, [("x-amzn-ErrorType", "InvalidSignatureException"), *_JSON], body
        if re.fullmatch(r"/2015-03-31/functions/[^/]*/invocations", request.path) is None:
            return 404, _DEFAULT_TYPE, b"not found\n"
        await asyncio.sleep(self.delay)
        kind = request.header("x-amz-invocation-type")
        if kind == "Event":
            return self._say(request, None, 202)
        if kind == "DryRun":
            return self._say(request, None, 204)
        if "functionWithLatency" in request.path:
            await asyncio.sleep(self.latency)
        try:
            json.loads(request.body)  # Kong's mock decodes the payload first
        except ValueError:
            return 500, _DEFAULT_TYPE, b"mock error: payload is not JSON\n"
        return self._say(request, request.body.decode(), 200)

    def _say(self, request: Received, res: str | None, status: int) -> Answer:
        uri = unquote(request.path)
        headers = [("x-amzn-RequestId", "foo")]
        if "functionWithUnhandledError" in uri:
            headers.append(("X-Amz-Function-Error", "Unhandled"))
        for name, extra, body in _CANNED:
            if name in uri:
                return status, [*headers, *(extra or _DEFAULT_TYPE)], (body + "\n").encode()
        if "functionWithNoResponse" in uri:
            return status, [*headers, *_DEFAULT_TYPE], b""
        if "functionEcho" in uri:
            return status, [*headers, *_JSON], json.dumps(self._mock_upstream(request)).encode()
        if res is not None:
            return status, [*headers, *_DEFAULT_TYPE], (res + "\n").encode()
        return status, [*headers, *_DEFAULT_TYPE], b""

    def _mock_upstream(self, request: Received) -> dict[str, Any]:
        """``mock_upstream.send_default_json_response``'s fields the specs read."""
        scheme = "https" if self.ssl else "http"
        host = request.header("host") or ""
        return {
            "headers": {k.lower(): v for k, v in request.headers},
            "uri_args": dict(parse_qsl(request.query)),
            "url": f"{scheme}://{host}{request.target}",
            "vars": {"scheme": scheme, "host": host.rpartition(":")[0] or host},
        }


def tls_context(pki: Pki, workdir: Path) -> ssl.SSLContext:
    """A server context presenting, by SNI, a certificate for each of :data:`NAMES`."""
    by_name: dict[str, ssl.SSLContext] = {}
    for name in NAMES:
        cert, key = pki.issue(name, dns=name)
        (workdir / f"{name}.pem").write_text(cert)
        (workdir / f"{name}.key").write_text(key)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(workdir / f"{name}.pem", workdir / f"{name}.key")
        by_name[name] = context
    default = by_name["localhost"]

    def pick(sock: ssl.SSLObject, name: str | None, _: ssl.SSLContext) -> None:
        if name in by_name:
            sock.context = by_name[name]

    default.sni_callback = pick
    return default


class LoopbackProxy(LoopServer):
    """An HTTP forward proxy for ``CONNECT`` tunnels only, every name taken for 127.0.0.1
    (Kong's DNS mock); ``targets`` keeps each ``CONNECT`` target."""

    def __init__(self) -> None:
        super().__init__()
        self.targets: list[str] = []

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            method, target, _ = head.decode("latin-1").split("\r\n", 1)[0].split(" ", 2)
            if method != "CONNECT":
                writer.write(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
                return
            self.targets.append(target)
            up_reader, up_writer = await asyncio.open_connection(
                "127.0.0.1", int(target.rpartition(":")[2])
            )
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()


class Collector(HttpFake):
    """An http-log endpoint: answers 200 and keeps each body."""

    def answer(self, request: Received) -> Answer:
        return 200, [], b""
