"""Kong's ``spec/03-plugins/19-hmac-auth/03-access_spec.lua`` (DB-less run, lines 18-1991)
against one real ``fastkong start`` gateway and the echo upstream.

Both of the spec's Kong instances (18-1745: the ``hmacauth*.test`` routes and a gRPC route;
1747-1989: hmac-auth with key-auth, logical AND and OR) are one config here: their consumers and
credentials do not collide. Kong's ``mock_upstream`` answers are read from the echo's view of the
request (headers; ``uri_args`` and ``vars.uri`` from the URL it got). Every signature is computed
in the test as Kong's spec does, over a ``Date`` of now (the routes allow 3000 s of skew, the
logical AND/OR ones Kong's default 300 s). A ``body = {}`` of Kong's client is an empty body.

Ported: every ``it`` of 199-1745 and 1859-1987, except those below; 216-223 (#grpc refused: the
gateway's own 401 is a gRPC status, README "Kong compatibility notes"); 623-646 (HTTP/1.0)
through a raw socket. 199 and 1711 are the same request, as are 1230 and 1255: one test each;
1385, 1429 and 1470 send two requests each (ids ``a``, ``b``).

Left out:

- 181-196 and 364-378 (no authorization on the realm route): covered by
  ``test_hmac_auth.py::test_no_authorization_is_unauthorized`` (same 401, message and realm).
- 423-441 (GET, valid signature, ``Authorization`` reaches the upstream): covered by
  ``test_hmac_auth.py::test_a_valid_signature_authenticates``.
- 1097-1121 (body validation, a body and no ``Digest``) and 1123-1140 (no body, no digest):
  covered by ``test_hmac_auth.py::test_the_body_digest``.
- 443-457 and 459-475 (#grpc accepted): the call must be proxied to grpcbin, and fastkong cannot
  proxy a plain gRPC call (README "Kong compatibility notes": Granian's ASGI carries no HTTP/2
  trailers).
- No case needs a database or mutates through the Admin API (the spec only inserts entities,
  declarative here), so none is left out for that. Kong's ``real_ip_*``/``trusted_ips``
  settings and custom nginx template play no part in its asserts and are not set.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import grpc
import httpx
import pytest

from tests.helpers import Echo, Gateway, echoed_headers, free_port

pytestmark = pytest.mark.integration

BOB_ID = "b0000000-0000-4000-8000-000000000001"
NOBODY_ID = "b0000000-0000-4000-8000-000000000002"
ANONYMOUS_ID = "b0000000-0000-4000-8000-000000000003"
MICKEY_ID = "b0000000-0000-4000-8000-000000000004"
ALADDIN_ID = "b0000000-0000-4000-8000-000000000005"
MISSING_ID = "b0000000-0000-4000-8000-00000000dead"  # Kong's ``nonexisting_anonymous``

NOT_VALID = "HMAC signature cannot be verified"
NOT_SAME = "HMAC signature does not match"
BAD_DATE = (
    "HMAC signature cannot be verified, a valid date or x-date header is required for HMAC "
    "Authentication"
)
REALM = 'hmac realm="test-realm"'
POST_BODY = b'{"a":"apple","b":"ball"}'

#: Kong's ``route1`` .. ``route7`` hosts and their hmac-auth configs (lines 35-158).
HMAC_ROUTES: dict[str, dict[str, Any]] = {
    "hmacauth.test": {"clock_skew": 3000, "realm": "test-realm"},
    "hmacauth2.test": {"anonymous": NOBODY_ID, "clock_skew": 3000},
    "hmacauth3.test": {"anonymous": MISSING_ID, "clock_skew": 3000},
    "hmacauth4.test": {"clock_skew": 3000, "validate_request_body": True},
    "hmacauth5.test": {
        "clock_skew": 3000,
        "enforce_headers": ["date", "request-line"],
        "validate_request_body": True,
    },
    "hmacauth6.test": {
        "clock_skew": 3000,
        "enforce_headers": ["date", "request-line"],
        "algorithms": ["hmac-sha1", "hmac-sha256"],
        "validate_request_body": True,
    },
    "hmacauth7.test": {"anonymous": "no-body", "clock_skew": 3000},
}


def config(echo: Echo, nowhere: int) -> dict[str, Any]:
    def hmac_auth(conf: dict[str, Any]) -> dict[str, Any]:
        return {"name": "hmac-auth", "config": conf}

    routes = [
        {"name": host, "hosts": [host], "plugins": [hmac_auth(conf)]}
        for host, conf in HMAC_ROUTES.items()
    ]
    both = {  # 1767-1815: hmac-auth and key-auth on a route, without and with anonymous
        "logical-and.test": [hmac_auth({}), {"name": "key-auth"}],
        "logical-or.test": [
            hmac_auth({"anonymous": ANONYMOUS_ID}),
            {"name": "key-auth", "config": {"anonymous": ANONYMOUS_ID}},
        ],
    }
    return {
        "_format_version": "3.0",
        "consumers": [
            {
                "id": BOB_ID,
                "username": "bob",
                "custom_id": "1234",
                "hmacauth_credentials": [{"username": "bob", "secret": "secret"}],
            },
            {"id": NOBODY_ID, "username": "no-body"},
            {"id": ANONYMOUS_ID, "username": "Anonymous"},
            {"id": MICKEY_ID, "username": "Mickey", "keyauth_credentials": [{"key": "Mouse"}]},
            {
                "id": ALADDIN_ID,
                "username": "Aladdin",
                "hmacauth_credentials": [{"username": "Aladdin", "secret": "OpenSesame"}],
            },
        ],
        "services": [
            {"name": "echo", "url": echo.url, "routes": routes},
            {
                "name": "grpc",  # never reached: every call is refused
                "url": f"grpc://127.0.0.1:{nowhere}",
                "routes": [
                    {
                        "name": "grpc",
                        "protocols": ["grpc"],
                        "paths": ["/hello.HelloService/"],
                        "plugins": [hmac_auth({"clock_skew": 3000})],
                    }
                ],
            },
            {
                "name": "request",
                "url": f"{echo.url}/request",
                "routes": [
                    {"name": host, "hosts": [host], "protocols": ["http", "https"], "plugins": p}
                    for host, p in both.items()
                ],
            },
        ],
    }


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, echo: Echo) -> Iterator[Gateway]:
    tmp: Path = tmp_path_factory.mktemp("hmac-spec")
    gw = Gateway(tmp, json.dumps(config(echo, free_port())))
    gw.port_flags = "http2"  # Kong's gRPC client speaks h2c (prior knowledge)
    gw.start()
    try:
        yield gw
    finally:
        gw.stop()


# -- signing -----------------------------------------------------------------------------------
def now() -> str:
    """``os.date("!%a, %d %b %Y %H:%M:%S GMT")``."""
    return formatdate(usegmt=True)


def sha256_digest(body: bytes) -> str:
    return "SHA-256=" + base64.b64encode(hashlib.sha256(body).digest()).decode()


def sign(text: str, algorithm: str = "sha1", secret: str = "secret") -> str:
    return base64.b64encode(hmac.new(secret.encode(), text.encode(), algorithm).digest()).decode()


def fill(template: str, values: dict[str, str]) -> str:
    return template.format(**values)


#: The spec's authorization values, ``{sig}`` for the signature (exact spacing kept).
DATE_ONLY = 'hmac username="bob",algorithm="hmac-sha1",headers="date",signature="{sig}"'
QUOTED_DATE = '"' + DATE_ONLY  # 1105 and on: a stray leading quote, the pattern still finds it
QUOTED_DIGEST = '"hmac username="bob",algorithm="hmac-sha1",headers="date digest",signature="{sig}"'
LINE = (
    'hmac username="bob",  algorithm="hmac-sha1", '
    'headers="date content-md5 request-line", signature="{sig}"'
)
LINE_TIGHT = (
    'hmac username="bob",algorithm="hmac-sha1",  '
    'headers="date content-md5 request-line",signature="{sig}"'
)
X_DATE_LINE = (
    'hmac username="bob",algorithm="hmac-sha1",  '
    'headers="x-date content-md5 request-line",signature="{sig}"'
)

#: The spec's signed texts.
S_DATE = "date: {date}"
S_LINE = "date: {date}\ncontent-md5: md5\nGET /request HTTP/1.1"
S_DIGEST = "date: {date}\ndigest: {digest}"


@dataclass(frozen=True)
class Case:
    """One request to a ``hmacauth*.test`` route and what Kong answers."""

    host: str
    #: Request headers (besides Host); ``{date}``, ``{sig}`` and ``{digest}`` are filled in.
    headers: dict[str, str]
    status: int
    #: The 401's message (None: the spec checks only the status and ``WWW-Authenticate``).
    message: str | None = None
    #: The signed text (``{date}``, ``{digest}`` filled in) and its digest algorithm.
    signed: str = S_DATE
    algorithm: str = "sha1"
    method: str = "GET"
    path: str = "/request"
    body: bytes = b""
    #: Headers the upstream must see (None: must not see).
    upstream: dict[str, str | None] = field(default_factory=dict)
    #: The upstream's decoded query arguments (Kong's ``uri_args``) and path (``vars.uri``).
    args: dict[str, list[str]] | None = None
    uri: str | None = None


def md5_line(auth: str, **kw: Any) -> dict[str, str]:
    """Lines 556-1063's headers: the signature in Proxy-Authorization, a stray Authorization."""
    return {
        "date": "{date}",
        "proxy-authorization": auth,
        "authorization": "hello",
        "content-md5": "md5",
        **kw,
    }


def on1(headers: dict[str, str], status: int, message: str | None = None, **kw: Any) -> Case:
    """181-1072: ``hmacauth.test`` (realm ``test-realm``)."""
    return Case("hmacauth.test", headers, status, message, **kw)


def on5(path: str, signed_path: str | None = None, algorithm: str = "sha1", **kw: Any) -> Case:
    """1363-1687: ``hmacauth5.test`` (enforced date and request-line), Proxy-Authorization."""
    signed = S_LINE.replace("/request", signed_path or path)
    auth = LINE.replace("hmac-sha1", f"hmac-{algorithm}")
    headers = {"date": "{date}", "proxy-authorization": auth, "content-md5": "md5"}
    status = kw.pop("status", 200)
    return Case(
        "hmacauth5.test", headers, status, signed=signed, algorithm=algorithm, path=path, **kw
    )


BOB_SEEN = {"x-consumer-username": "bob", "x-credential-identifier": "bob"}

CASES: dict[int | str, Case] = {
    199: Case(  # and 1711
        "hmacauth6.test",
        {"date": "{date}", "proxy-authorization": "this is no hmac token at all is it?"},
        401,
    ),
    225: on1({"date": "{date}", "authorization": "asd"}, 401, NOT_VALID, method="POST"),
    242: on1(
        {
            "date": "{date}",
            "authorization": '"hmac username="bob",algorithm="hmac-sha1",'
            'headers="date",signature="not really a base64 encoded value!!!"',
        },
        401,
        NOT_SAME,
        method="POST",
    ),
    260: on1({"authorization": "asd"}, 401, BAD_DATE, method="POST"),
    277: on1(
        {"date": "{date}", "proxy-authorization": "asd"},
        401,
        NOT_VALID,
        method="POST",
    ),
    294: on1(
        {"date": "{date}", "proxy-authorization": "hmac :dXNlcm5hbWU6cGFzc3dvcmQ="},
        401,
        NOT_VALID,
        method="POST",
    ),
    311: on1(
        {
            "date": "{date}",
            "proxy-authorization": "hmac username=,algorithm,headers,dXNlcm5hbWU6cGFzc3dvcmQ=",
        },
        401,
        NOT_VALID,
        method="POST",
    ),
    329: on1(
        {
            "date": "{date}",
            "authorization": "hmac username=,algorithm,headers,dXNlcm5hbWU6cGFzc3dvcmQ=",
        },
        401,
        NOT_VALID,
        method="POST",
    ),
    347: on1(
        {"date": "{date}", "authorization": "hmac username"},
        401,
        NOT_VALID,
        method="POST",
    ),
    380: on1(
        {
            "date": "{date}",
            "authorization": 'hmac algorithm="hmac-sha1",headers="date",signature="{sig}"',
        },
        401,
        NOT_VALID,
    ),
    402: on1(
        {
            "date": "{date}",
            "authorization": 'hmac username="bob",algorithm="hmac-sha1",headers="date"',
        },
        401,
        NOT_VALID,
    ),
    477: on1({"date": "{date}", "proxy-authorization": DATE_ONLY}, 200),
    495: on1(
        {"date": "{date}", "authorization": DATE_ONLY},
        200,
        method="POST",
        upstream={"authorization": DATE_ONLY},
    ),
    515: on1(
        {"date": "{date}", "proxy-authorization": "hmac username", "authorization": DATE_ONLY},
        200,
        method="POST",
        upstream={"authorization": DATE_ONLY},
    ),
    536: on1(
        {"date": "{date}", "proxy-authorization": DATE_ONLY, "authorization": "hello"},
        200,
        method="POST",
    ),
    556: on1(
        md5_line(
            'hmac username="bob",algorithm="hmac-sha1",headers="date content-md5",signature="{sig}"'
        ),
        200,
        signed="date: {date}\ncontent-md5: md5",
    ),
    577: on1(md5_line(LINE), 200, signed=S_LINE),
    600: on1(
        md5_line(
            'hmac username="bob",  algorithm="hmac-sha1", '
            'headers="date content-md5 @request-target", '
            'signature="{sig}"'
        ),
        200,
        signed="date: {date}\ncontent-md5: md5\n@request-target: get /request",
    ),
    648: on1(md5_line(LINE.replace('"bob"', '"bobb"')), 401, NOT_VALID, signed=S_LINE),
    675: on1(
        md5_line(
            'hmac username="",  algorithm="hmac-sha1", '
            'headers="date content-md5 request-line", '
            'signature="{sig}"'
        ),
        401,
        NOT_VALID,
        signed=S_LINE,
    ),
    702: on1(
        md5_line(
            'hmac algorithm="hmac-sha1", headers="date content-md5 request-line", signature="{sig}"'
        ),
        401,
        NOT_VALID,
        signed=S_LINE,
    ),
    730: on1(
        md5_line(
            'hmac username="bob",  algorithm="hmac-sha1",   '
            'wrong_header="date content-md5 request-line", '
            'signature="{sig}"'
        ),
        401,
        NOT_VALID,
        signed=S_LINE,
    ),
    756: on1(
        md5_line(
            'hmac username="bob",  algorithm="hmac-sha1",   '
            'headers="date content-md5 request-line", '
            'wrong_signature="{sig}"'
        ),
        401,
        NOT_VALID,
        signed=S_LINE,
    ),
    782: on1(
        md5_line(
            'hmac username="bob",  algorithm="hmac-sha1" '
            'headers="date content-md5 request-line", '
            'signature="{sig}"'
        ),
        401,
        NOT_VALID,
        signed=S_LINE,
    ),
    808: on1(
        md5_line(
            'hmac username="bob",  algorithm="hmac-sha1" '
            'headers="  date content-md5 request-line",'
            'signature="{sig}"'
        ),
        401,
        NOT_VALID,
        signed=S_LINE.replace("/request", "/request?"),
    ),
    834: on1(md5_line(LINE_TIGHT), 200, signed=S_LINE),
    857: on1(
        md5_line(LINE_TIGHT.replace("hmac-sha1", "hmac-sha")),
        401,
        signed=S_LINE,
        algorithm="sha256",
    ),
    881: on1(
        md5_line(LINE_TIGHT.replace("hmac-sha1", "hmac-sha256")),
        200,
        signed=S_LINE,
        algorithm="sha256",
        upstream={"x-consumer-id": BOB_ID, **BOB_SEEN, "x-anonymous-consumer": None},
    ),
    909: on1(
        {"x-date": "{date}", "authorization": X_DATE_LINE, "content-md5": "md5"},
        200,
        signed="x-" + S_LINE,
    ),
    931: on1(
        {
            "proxy-authorization": 'hmac username="bob",  '
            'algorithm="hmac-sha1", headers="content-md5 request-line",'
            'signature="{sig}"',
            "authorization": "hello",
            "content-md5": "md5",
        },
        401,
        BAD_DATE,
        signed="content-md5: md5\nGET /request? HTTP/1.1",
    ),
    956: on1(
        {"x-date": "wrong date", "authorization": X_DATE_LINE, "content-md5": "md5"},
        401,
        BAD_DATE,
        signed="x-" + S_LINE.replace("/request", "/request?"),
    ),
    982: on1(
        {
            "x-date": "wrong date",
            "date": "{date}",
            "authorization": 'hmac username="bob",algorithm="hmac-sha1",'
            '  headers="content-md5 request-line",signature="{sig}"',
            "content-md5": "md5",
        },
        200,
        signed="content-md5: md5\nGET /request HTTP/1.1",
    ),
    1005: on1(
        {
            "x-date": "wrong date",
            "date": "{date}",
            "authorization": LINE_TIGHT,
            "content-md5": "md5",
        },
        200,
        signed=S_LINE,
    ),
    1028: on1(
        {
            "x-date": "wrong date",
            "date": "{date}",
            "authorization": X_DATE_LINE,
            "content-md5": "md5",
        },
        200,
        signed="x-" + S_LINE.replace("{date}", "wrong date"),
    ),
    1051: on1(
        {
            "x-date": "{date}",
            "date": "wrong date",
            "authorization": LINE_TIGHT,
            "content-md5": "md5",
        },
        200,
        signed=S_LINE.replace("{date}", "wrong date"),
    ),
    1074: Case(
        "hmacauth2.test",
        {"date": "{date}", "authorization": DATE_ONLY},
        200,
        upstream={"authorization": DATE_ONLY, **BOB_SEEN, "x-anonymous-consumer": None},
    ),
    1142: Case(
        "hmacauth4.test",
        {"date": "{date}", "digest": "{empty}", "authorization": QUOTED_DIGEST},
        200,
        signed=S_DIGEST.replace("{digest}", "{empty}"),
    ),
    1165: Case(
        "hmacauth2.test",
        {},
        200,
        upstream={
            "x-anonymous-consumer": "true",
            "x-consumer-username": "no-body",
            "x-credential-identifier": None,
        },
    ),
    1181: Case(
        "hmacauth7.test",
        {},
        200,
        upstream={"x-anonymous-consumer": "true", "x-consumer-username": "no-body"},
    ),
    1196: Case(
        "hmacauth3.test",
        {},
        500,
        f"anonymous consumer {MISSING_ID} is configured but doesn't exist",
    ),
    1212: Case("hmacauth4.test", {"date": "{date}", "authorization": QUOTED_DATE}, 200),
    "1230+1255": Case(
        "hmacauth4.test",
        {"date": "{date}", "digest": "{digest}", "authorization": QUOTED_DIGEST},
        200,
        signed=S_DIGEST,
        method="POST",
        body=POST_BODY,
    ),
    1280: Case(
        "hmacauth4.test",
        {"date": "{date}", "authorization": QUOTED_DIGEST},
        401,
        NOT_SAME,
        signed=S_DIGEST,
        method="POST",
        body=POST_BODY,
    ),
    1307: Case(
        "hmacauth4.test",
        {"date": "{date}", "digest": "{digest}", "authorization": QUOTED_DIGEST},
        401,
        NOT_SAME,
        signed=S_DIGEST,
        method="POST",
        body=b"abc",
    ),
    1335: Case(
        "hmacauth4.test",
        {"date": "{date}", "digest": "{digest}spoofed", "authorization": QUOTED_DIGEST},
        401,
        NOT_SAME,
        signed=S_DIGEST,
        method="POST",
        body=POST_BODY,
    ),
    1363: on5("/request"),
    "1385a": on5("/request?name=foo", "/request", status=401),
    "1385b": on5("/request/?name=foo", "/request/", status=401),
    "1429a": on5("/request?name=foo"),
    "1429b": on5("/request/?name=foo"),
    "1470a": on5(f"/request?name={quote('foo bar', safe='')}", args={"name": ["foo bar"]}),
    "1470b": on5(f"/request?name={quote('foo bár', safe='')}", args={"name": ["foo bár"]}),
    1519: on5(
        f"/request?name={quote('foo bar', safe='')}&address={quote('san francisco', safe='')}",
        args={"name": ["foo bar"], "address": ["san francisco"]},
    ),
    1547: on5("/request?name=foo&name=bar", args={"name": ["foo", "bar"]}),
    1572: on5("/"),
    1593: on5(
        f"/request/{quote('some value', safe='')}/?name=foo&name=bar",
        args={"name": ["foo", "bar"]},
        uri="/request/some value/",
    ),
    1621: Case(
        "hmacauth5.test",
        {
            "date": "{date}",
            "proxy-authorization": 'hmac username="bob",  algorithm="hmac-sha1", '
            'headers="date content-md5", signature="{sig}"',
            "content-md5": "md5",
        },
        401,
        signed="date: {date}\ncontent-md5: md5",
    ),
    1644: on5("/request", algorithm="sha384"),
    1666: on5("/request", algorithm="sha512"),
    1688: Case(
        "hmacauth6.test",
        {
            "date": "{date}",
            "content-md5": "md5",
            "proxy-authorization": LINE.replace("hmac-sha1", "hmac-sha512"),
        },
        401,
        signed=S_LINE,
        algorithm="sha512",
    ),
    1727: Case(
        "hmacauth6.test",
        {"date": "{date}", "content-md5": "md5", "proxy-authorization": LINE},
        200,
        signed=S_LINE,
    ),
}


def values(case: Case) -> dict[str, str]:
    date = now()
    filled = {"date": date, "digest": sha256_digest(POST_BODY), "empty": sha256_digest(b"")}
    filled["sig"] = sign(fill(case.signed, filled), case.algorithm)
    return filled


@pytest.mark.parametrize("case", list(CASES.values()), ids=[f"L{k}" for k in CASES])
def test_hmac_auth_request(gateway: Gateway, case: Case) -> None:
    filled = values(case)
    headers = {"host": case.host, **{k: fill(v, filled) for k, v in case.headers.items()}}
    r = httpx.request(case.method, gateway.url(case.path), headers=headers, content=case.body)
    assert r.status_code == case.status, r.text
    if case.status == 401:
        www = REALM if case.host == "hmacauth.test" else "hmac"
        assert r.headers["www-authenticate"] == www
    if case.message is not None:
        assert r.json()["message"] == case.message
    if case.status != 200:
        return
    echoed = r.json()
    seen = echoed_headers(echoed)
    for name, value in case.upstream.items():
        assert seen.get(name) == (None if value is None else [fill(value, filled)]), name
    url = urlsplit(echoed["url"])
    if case.args is not None:
        assert parse_qs(url.query) == case.args
    if case.uri is not None:
        assert unquote(url.path) == case.uri


def test_http_1_0_request_line(gateway: Gateway) -> None:
    """623-646: the request-line of an HTTP/1.0 request is signed as ``HTTP/1.0``."""
    date = now()
    signature = sign(f"date: {date}\ncontent-md5: md5\nGET /request HTTP/1.0")
    auth = LINE.format(sig=signature)
    answer = gateway.raw(
        f"GET /request HTTP/1.0\r\nHost: hmacauth.test\r\nDate: {date}\r\n"
        f"Proxy-Authorization: {auth}\r\nAuthorization: hello\r\nContent-MD5: md5\r\n\r\n".encode()
    )
    assert answer.startswith((b"HTTP/1.0 200", b"HTTP/1.1 200")), answer[:200]


def test_grpc_without_credentials_is_unauthenticated(gateway: Gateway) -> None:
    """216-223: the 401 reaches a gRPC client as ``Unauthenticated``."""
    with grpc.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
        say_hello = channel.unary_unary("/hello.HelloService/SayHello")
        with pytest.raises(grpc.RpcError) as info:
            say_hello(b"", timeout=10)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


# -- 1747-1989: hmac-auth and key-auth together ------------------------------------------------
def aladdin() -> dict[str, str]:
    date = now()
    signature = sign(f"date: {date}", secret="OpenSesame")
    auth = f'hmac username="Aladdin",algorithm="hmac-sha1",headers="date",signature="{signature}"'
    return {"authorization": auth, "date": date}


#: line -> (host, apikey sent, hmac sent, status, WWW-Authenticate or consumer ids allowed).
MULTI: dict[int, tuple[str, bool, bool, int, str | tuple[str, ...]]] = {
    1859: ("logical-and.test", True, True, 200, (MICKEY_ID, ALADDIN_ID)),
    1878: ("logical-and.test", True, False, 401, "hmac"),
    1891: ("logical-and.test", False, True, 401, "Key"),
    1905: ("logical-and.test", False, False, 401, "Key"),
    1921: ("logical-or.test", True, True, 200, (MICKEY_ID, ALADDIN_ID)),
    1940: ("logical-or.test", True, False, 200, (MICKEY_ID,)),
    1956: ("logical-or.test", False, True, 200, (ALADDIN_ID,)),
    1973: ("logical-or.test", False, False, 200, (ANONYMOUS_ID,)),
}


@pytest.mark.parametrize("line", list(MULTI), ids=[f"L{k}" for k in MULTI])
def test_with_key_auth(gateway: Gateway, line: int) -> None:
    host, apikey, signed, status, expected = MULTI[line]
    headers = {"host": host, **({"apikey": "Mouse"} if apikey else {})}
    if signed:
        headers.update(aladdin())
    r = httpx.get(gateway.url("/request"), headers=headers)
    assert r.status_code == status, r.text
    if isinstance(expected, str):
        assert r.headers["www-authenticate"] == expected
        return
    seen = echoed_headers(r.json())
    (consumer,) = seen["x-consumer-id"]
    assert consumer in expected
    if expected == (ANONYMOUS_ID,):
        assert seen["x-anonymous-consumer"] == ["true"]
    else:
        assert "x-anonymous-consumer" not in seen
