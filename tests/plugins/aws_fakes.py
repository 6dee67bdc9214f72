"""Loopback stand-ins for AWS in the aws-lambda tests: Lambda, STS, the instance metadata and
container credentials endpoints, and an HTTP forward proxy.

The fakes check what the gateway sends the way AWS does: every signed request is verified with
:class:`SigV4`, an implementation of Signature Version 4 written here from AWS's specification,
independently of the plugin's (and itself checked against AWS's published examples in
``test_aws_lambda_sigv4.py``). A request whose signature does not verify is answered as AWS
answers it (403, ``InvalidSignatureException``) and recorded as such.
"""

from __future__ import annotations

import asyncio
import base64
import calendar
import hashlib
import hmac
import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote_plus

from tests.helpers import LoopServer, read_request

_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")


def _pct(data: str) -> str:
    """UriEncode: unreserved bytes kept, every other byte of the UTF-8 as %XX."""
    out = []
    for byte in data.encode("utf-8"):
        out.append(chr(byte) if byte in _UNRESERVED else f"%{byte:02X}")
    return "".join(out)


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.digest(key, text.encode("utf-8"), "sha256")


class SigV4:
    """SigV4 from the spec: the canonical request, the string to sign, the derived key."""

    def __init__(self, access_key: str, secret: str, region: str, service: str) -> None:
        self.access_key = access_key
        self.secret = secret
        self.region = region
        self.service = service

    def key(self, day: str) -> bytes:
        k_date = _hmac(("AWS4" + self.secret).encode("utf-8"), day)
        k_region = _hmac(k_date, self.region)
        k_service = _hmac(k_region, self.service)
        return _hmac(k_service, "aws4_request")

    @staticmethod
    def canonical_request(
        method: str,
        path: str,
        query: str,
        headers: list[tuple[str, str]],
        signed: list[str],
        body: bytes,
    ) -> str:
        """``path`` and ``query`` as they appear in the request line (the query undecoded)."""
        segments = path.split("/") if path else [""]
        uri = "/".join(_pct(s) for s in segments) or "/"
        pairs = []
        for item in query.split("&") if query else []:
            name, _, value = item.partition("=")
            pairs.append((_pct(unquote_plus(name)), _pct(unquote_plus(value))))
        canonical_query = "&".join(f"{n}={v}" for n, v in sorted(pairs))
        by_name: dict[str, list[str]] = {}
        for name, value in headers:
            by_name.setdefault(name.lower(), []).append(re.sub(" +", " ", value.strip()))
        lines = "".join(f"{n}:{','.join(by_name.get(n, []))}\n" for n in signed)
        return "\n".join(
            [
                method,
                uri,
                canonical_query,
                lines,
                ";".join(signed),
                hashlib.sha256(body).hexdigest(),
            ]
        )

    def signature(self, amz_date: str, canonical: str) -> str:
        scope = f"{amz_date[:8]}/{self.region}/{self.service}/aws4_request"
        digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
        to_sign = f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{digest}"
        return hmac.new(self.key(amz_date[:8]), to_sign.encode("utf-8"), "sha256").hexdigest()

    def authorization(
        self,
        method: str,
        path: str,
        query: str,
        headers: list[tuple[str, str]],
        body: bytes,
        amz_date: str,
    ) -> str:
        """The Authorization header for a request signing all of ``headers``."""
        signed = sorted({name.lower() for name, _ in headers})
        canonical = self.canonical_request(method, path, query, headers, signed, body)
        scope = f"{amz_date[:8]}/{self.region}/{self.service}/aws4_request"
        return (
            f"AWS4-HMAC-SHA256 Credential={self.access_key}/{scope}, "
            f"SignedHeaders={';'.join(signed)}, Signature={self.signature(amz_date, canonical)}"
        )


@dataclass
class Received:
    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes
    #: The access key of a valid signature (None: unsigned or invalid).
    signed_by: str | None = None
    error: str | None = None

    @property
    def path(self) -> str:
        return self.target.partition("?")[0]

    @property
    def query(self) -> str:
        return self.target.partition("?")[2]

    def header(self, name: str) -> str | None:
        lower = name.lower()
        return next((v for k, v in self.headers if k.lower() == lower), None)

    def json(self) -> Any:
        return json.loads(self.body)


def verify(
    request: Received, keys: dict[str, tuple[str, str | None]], region: str, service: str
) -> str | None:
    """Why ``request``'s SigV4 signature is not valid for one of ``keys`` (access key ->
    (secret, session token)), or None when it is (``request.signed_by`` is then set)."""
    auth = request.header("authorization")
    if auth is None:
        return "no Authorization header"
    m = re.fullmatch(
        r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request, "
        r"SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})",
        auth,
    )
    if m is None:
        return f"malformed Authorization: {auth}"
    access, day, scope_region, scope_service, signed, signature = m.groups()
    if access not in keys:
        return f"unknown access key {access}"
    if (scope_region, scope_service) != (region, service):
        return f"scope {scope_region}/{scope_service}, expected {region}/{service}"
    amz_date = request.header("x-amz-date") or ""
    if not amz_date.startswith(day):
        return "X-Amz-Date does not match the credential scope"
    when = calendar.timegm(time.strptime(amz_date, "%Y%m%dT%H%M%SZ"))
    if abs(when - time.time()) > 300:
        return "request time too skewed"
    names = signed.split(";")
    for needed in ("host", "x-amz-date"):
        if needed not in names:
            return f"{needed} is not signed"
    secret, token = keys[access]
    if token is not None:
        if request.header("x-amz-security-token") != token:
            return "wrong or missing X-Amz-Security-Token"
        if "x-amz-security-token" not in names:
            return "X-Amz-Security-Token is not signed"
    signer = SigV4(access, secret, region, service)
    canonical = signer.canonical_request(
        request.method, request.path, request.query, request.headers, names, request.body
    )
    if not hmac.compare_digest(signer.signature(amz_date, canonical), signature):
        return "signature mismatch"
    request.signed_by = access
    return None


Answer = tuple[int, list[tuple[str, str]], bytes]
Handler = Callable[[Received], Answer | Awaitable[Answer]]


class HttpFake(LoopServer):
    """A keep-alive HTTP/1.1 server: each request is recorded and answered by :meth:`answer`."""

    def __init__(self, ssl: Any = None) -> None:
        super().__init__(ssl)
        self.received: list[Received] = []
        self.connections = 0

    @property
    def url(self) -> str:
        return f"{'https' if self.ssl else 'http'}://127.0.0.1:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                got = await read_request(reader)
                request = Received(got.method, got.target, got.headers, got.body)
                self.received.append(request)
                result = self.answer(request)
                if not isinstance(result, tuple):
                    result = await result
                status, extra, body = result
                lines_out = [f"HTTP/1.1 {status} X", *(f"{k}: {v}" for k, v in extra)]
                lines_out.append(f"Content-Length: {len(body)}")
                writer.write(("\r\n".join(lines_out) + "\r\n\r\n").encode("latin-1") + body)
                await writer.drain()
                if (request.header("connection") or "").lower() == "close":
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    def answer(self, request: Received) -> Answer | Awaitable[Answer]:
        raise NotImplementedError


def _json(status: int, data: Any, extra: list[tuple[str, str]] | None = None) -> Answer:
    return status, [("Content-Type", "application/json"), *(extra or [])], json.dumps(data).encode()


class FakeLambda(HttpFake):
    """Lambda's Invoke API: ``functions`` maps a function name to its handler (given the
    request, answering ``(status, headers, body)``); an unknown name is AWS's 404."""

    def __init__(
        self,
        keys: dict[str, tuple[str, str | None]],
        region: str = "us-east-1",
        ssl: Any = None,
    ) -> None:
        super().__init__(ssl)
        self.keys = keys
        self.region = region
        self.functions: dict[str, Handler] = {"echo": echo_function}

    def answer(self, request: Received) -> Answer | Awaitable[Answer]:
        request.error = verify(request, self.keys, self.region, "lambda")
        if request.error is not None:
            return _json(
                403,
                {"Message": f"signature invalid: {request.error}"},
                [("x-amzn-ErrorType", "InvalidSignatureException")],
            )
        m = re.fullmatch(r"/2015-03-31/functions/([^/]+)/invocations", request.path)
        if request.method != "POST" or m is None:
            return _json(404, {"Message": "no such operation"})
        name = unquote_plus(m.group(1))
        handler = self.functions.get(name.rsplit(":", 1)[-1] if ":" in name else name)
        if handler is None:
            return _json(
                404,
                {"Type": "User", "Message": f"Function not found: {name}"},
                [("x-amzn-ErrorType", "ResourceNotFoundException")],
            )
        kind = request.header("x-amz-invocation-type")
        ids = [("x-amzn-RequestId", "req-1234")]
        if kind == "Event":
            return 202, ids, b""
        if kind == "DryRun":
            return 204, ids, b""
        result = handler(request)
        if isinstance(result, tuple):
            return _with_log(request, result, ids)

        async def later() -> Answer:
            return _with_log(request, await result, ids)  # type: ignore[misc]

        return later()


def _with_log(request: Received, answer: Answer, ids: list[tuple[str, str]]) -> Answer:
    status, headers, body = answer
    extra = [*ids, ("X-Amz-Executed-Version", "$LATEST")]
    if request.header("x-amz-log-type") == "Tail":
        extra.append(("X-Amz-Log-Result", base64.b64encode(b"START RequestId: req-1234").decode()))
    return status, [*extra, *headers], body


def echo_function(request: Received) -> Answer:
    """A function returning its event (the payload), as JSON."""
    return 200, [("Content-Type", "application/json")], request.body


@dataclass
class StsCall:
    action: str
    params: dict[str, str]
    signed_by: str | None


class FakeSts(HttpFake):
    """STS's Query API: ``AssumeRole`` (verified SigV4, service ``sts``) and
    ``AssumeRoleWithWebIdentity`` (unsigned, with ``token``); each grants ``granted``."""

    def __init__(
        self,
        keys: dict[str, tuple[str, str | None]] | None = None,
        token: str = "",
        granted: tuple[str, str, str] = ("ASIAROLE", "role-secret", "role-session-token"),
        region: str = "us-east-1",
        lifetime: float = 3600.0,
    ) -> None:
        super().__init__()
        self.keys = keys or {}
        self.token = token
        self.granted = granted
        self.region = region
        self.lifetime = lifetime
        self.calls: list[StsCall] = []

    def answer(self, request: Received) -> Answer:
        params = dict(parse_qsl(request.body.decode()))
        action = params.get("Action", "")
        signed_by = None
        if action == "AssumeRole":
            error = verify(request, self.keys, self.region, "sts")
            if error is not None:
                reply = f"<ErrorResponse><Message>{error}</Message></ErrorResponse>"
                return 403, [], reply.encode()
            signed_by = request.signed_by
        elif action == "AssumeRoleWithWebIdentity":
            if params.get("WebIdentityToken") != self.token:
                return 400, [], b"<ErrorResponse><Code>InvalidIdentityToken</Code></ErrorResponse>"
        else:
            return 400, [], b"<ErrorResponse><Code>InvalidAction</Code></ErrorResponse>"
        self.calls.append(StsCall(action, params, signed_by))
        key, secret, token = self.granted
        expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + self.lifetime))
        ns = "https://sts.amazonaws.com/doc/2011-06-15/"
        xml = (
            f'<{action}Response xmlns="{ns}"><{action}Result><Credentials>'
            f"<AccessKeyId>{key}</AccessKeyId><SecretAccessKey>{secret}</SecretAccessKey>"
            f"<SessionToken>{token}</SessionToken><Expiration>{expires}</Expiration>"
            f"</Credentials></{action}Result></{action}Response>"
        )
        return 200, [("Content-Type", "text/xml")], xml.encode()


class FakeMetadata(HttpFake):
    """The EC2 instance metadata service (IMDSv2 tokens optional unless ``require_token``) and
    a container credentials endpoint at ``/container`` (``Authorization`` must be ``auth``)."""

    def __init__(
        self,
        granted: tuple[str, str, str],
        role: str = "gateway-role",
        require_token: bool = False,
        auth: str | None = None,
    ) -> None:
        super().__init__()
        self.granted = granted
        self.role = role
        self.require_token = require_token
        self.auth = auth
        self.token = "imds-token-1"

    def answer(self, request: Received) -> Answer:
        key, secret, token = self.granted
        creds = {
            "Code": "Success",
            "AccessKeyId": key,
            "SecretAccessKey": secret,
            "Token": token,
            "Expiration": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600)),
        }
        if request.path == "/container":
            if self.auth is not None and request.header("authorization") != self.auth:
                return 401, [], b"unauthorized"
            return _json(200, creds)
        if request.method == "PUT" and request.path == "/latest/api/token":
            return 200, [], self.token.encode()
        if self.require_token and request.header("x-aws-ec2-metadata-token") != self.token:
            return 401, [], b""
        base = "/latest/meta-data/iam/security-credentials/"
        if request.path == base:
            return 200, [], self.role.encode()
        if request.path == base + self.role:
            return _json(200, creds)
        return 404, [], b""


class ConnectProxy(LoopServer):
    """An HTTP forward proxy: ``CONNECT host:port`` tunnels, absolute-form requests relayed;
    ``requests`` keeps each request line and its ``Proxy-Authorization``."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[tuple[str, str | None]] = []

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            line, *lines = head.decode("latin-1").split("\r\n")
            auth = next(
                (h.partition(":")[2].strip() for h in lines if h.lower().startswith("proxy-auth")),
                None,
            )
            self.requests.append((line, auth))
            method, target, _ = line.split(" ", 2)
            if method == "CONNECT":
                host, _, port = target.rpartition(":")
                up_reader, up_writer = await asyncio.open_connection(host, int(port))
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            else:
                m = re.fullmatch(r"http://([^/:]+):(\d+)(/.*)", target)
                assert m is not None, target
                up_reader, up_writer = await asyncio.open_connection(m.group(1), int(m.group(2)))
                rest = [h for h in lines if not h.lower().startswith("proxy-auth")]
                rewritten = "\r\n".join([f"{method} {m.group(3)} HTTP/1.1", *rest])
                up_writer.write(rewritten.encode("latin-1"))
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy ``reader`` to ``writer`` until either side ends (a tunnel's one direction)."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()
