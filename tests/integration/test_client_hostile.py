"""Hostile clients against a real gateway, and ``fastkong config explain`` checked against the
proxy on generated requests.

Part 1 sends hypothesis-generated raw HTTP/1.x requests (odd targets, methods, header sets,
framings and bodies) and checks what comes back: a parseable response or a clean close, never
a 500 or a 502 (the upstream is healthy), Kong's exact bodies for the gateway's own refusals,
and after every example the same worker process serving a normal request.

Who answers is told apart by ``X-Kong-Request-Id``: the gateway sets it on everything it
answers; Granian's own refusals (a head its HTTP/1 parser rejects, before the ASGI app runs)
carry none, or are a close without a byte. Those are Granian's decisions, not fastkong's: they
are only required to be clean.

Part 2 sends generated routable requests and compares what the echo upstream received (path,
query, Host) with what ``fastkong config explain`` computes for the same request, in process.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h11
import httpx
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from fastkong.plugins.bundled.key_auth import (
    ERR_DUPLICATE_API_KEY,
    ERR_INVALID_AUTH_CRED,
    ERR_NO_API_KEY,
)
from fastkong.proxy import errors
from tests.helpers import Echo, Gateway, cli_json

pytestmark = pytest.mark.integration

CONFIG = """
_format_version: "3.0"
consumers:
- username: alice
  keyauth_credentials:
  - key: secret
services:
- name: echo
  url: http://127.0.0.1:{echo}
  routes:
  - {{name: strip, paths: ["/echo"]}}
  - {{name: keep, paths: ["/keep"], strip_path: false}}
  - {{name: regex, paths: ["~/v(?<version>\\\\d+)/orders/(?<id>\\\\d+)"]}}
  - {{name: host-exact, hosts: ["api.example.com"]}}
  - {{name: host-wild, hosts: ["*.wild.test"], paths: ["/w"], preserve_host: true}}
  - {{name: header, paths: ["/echo"], headers: {{x-env: ["canary"]}}}}
  - {{name: methods, paths: ["/m"], methods: ["POST", "PUT"], strip_path: false}}
  - {{name: streamed, paths: ["/streamed"], request_buffering: false}}
  - name: auth
    paths: ["/auth"]
    plugins: [{{name: key-auth}}]
- name: based
  url: http://127.0.0.1:{echo}/base
  routes:
  - {{name: based, paths: ["/based"]}}
  - {{name: based-keep, paths: ["/bk"], strip_path: false}}
"""

TIMEOUT = 5.0
#: The upstream's messages (``x-echo-server``) and the gateway's own answers (request id).
REQUEST_ID = b"x-kong-request-id"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, echo: Echo) -> Iterator[Gateway]:
    gw = Gateway(tmp_path_factory.mktemp("hostile"), CONFIG.format(echo=echo.port)).start()
    yield gw
    assert gw.stop() == 0


@pytest.fixture(scope="module")
def workers(gateway: Gateway) -> list[int]:
    return gateway.worker_pids()


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=TIMEOUT) as c:
        yield c


# -- talking to the gateway ------------------------------------------------------------------


class Answer:
    """What the gateway sent back on one connection: the final response (h11 events) or none."""

    def __init__(self) -> None:
        self.raw = b""
        self.response: h11.Response | None = None
        self.body = b""
        self.closed_early = False

    @property
    def status(self) -> int:
        assert self.response is not None
        return self.response.status_code

    def header(self, name: bytes) -> bytes | None:
        assert self.response is not None
        for key, value in self.response.headers:
            if key == name:
                return bytes(value)
        return None

    @property
    def from_gateway(self) -> bool:
        return self.response is not None and self.header(REQUEST_ID) is not None


def exchange(port: int, data: bytes, method: bytes, half_close: bool) -> Answer:
    """Send ``data`` on a new connection and parse the first response with h11.

    ``half_close``: the request is incomplete by construction (a body shorter than declared, a
    chunked body without its end), so the server would wait for the rest: the client ends its
    side at once. Granian (hyper) then drops the connection, answering only if it has decided
    already (a head it refuses)."""
    answer = Answer()
    client = h11.Connection(h11.CLIENT)
    # h11 must expect the response to the request sent; it checks only its own request's
    # framing, so a stand-in with the same HEAD-ness does.
    client.send(
        h11.Request(
            method="HEAD" if method == b"HEAD" else "GET", target="/", headers=[("Host", "x")]
        )
    )
    client.send(h11.EndOfMessage())
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        try:
            sock.sendall(data)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server refused and closed before it had read everything
        while True:
            event_ = client.next_event()
            if event_ is h11.NEED_DATA:
                try:
                    chunk = sock.recv(65536)
                except ConnectionResetError:
                    chunk = b""
                except TimeoutError:
                    raise AssertionError(
                        f"no complete answer in {TIMEOUT} s (got {answer.raw[:300]!r})"
                    ) from None
                answer.raw += chunk
                if not chunk and answer.response is None:
                    answer.closed_early = True
                    return answer
                client.receive_data(chunk)
                continue
            if isinstance(event_, h11.Response):
                answer.response = event_
            elif isinstance(event_, h11.Data):
                answer.body += bytes(event_.data)
            elif isinstance(event_, h11.EndOfMessage):
                return answer
            # h11.InformationalResponse (100 Continue): the final response follows.


def normal_request_works(gateway: Gateway, client: httpx.Client, workers: list[int]) -> None:
    """The same worker processes as at the start (``gateway.worker_pids()``, on a kept-alive
    connection), and an ordinary request answered 200."""
    status = client.get(gateway.status_url("/status")).json()
    assert [int(pid) for pid in status["fastkong"]["workers"]] == workers, "a worker died"
    r = client.get(gateway.url("/echo/ok"))
    assert r.status_code == 200 and r.json()["url"] == "/ok"


# -- part 1: hostile requests ----------------------------------------------------------------

# The echo upstream changes behaviour on some first path segments (/status/<n>, /close, /hang,
# ...). Every one of them has an "a" or an "e": generated path pieces have neither (nor their
# escapes), so a hostile path never asks the healthy upstream to misbehave.
SAFE = "bcdfghijklmnopqrstuvwxyzBCDFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:@"
SAFE_HEX = [f"{x:02X}" for x in range(256) if x not in (0x61, 0x65)]


SANE_PIECES = st.one_of(
    st.text(SAFE, min_size=1, max_size=8).map(str.encode),
    st.sampled_from(
        [b"..", b".", b"", b";p=1", b"%2e", b"%2E%2e", b"%2F", b"%C3%A9", b"//", b"?q=1&b", b"~"]
    ),
    st.sampled_from(SAFE_HEX).map(lambda h: b"%" + h.encode()),
)
HOSTILE_PIECES = st.one_of(
    st.sampled_from(
        [
            b"%zz",
            b"%",
            b"%4",
            b"%00",
            b"%ff",
            "é".encode(),
            b"\xff",
            b"\x80\x81",
            b"\x00",
            b"\x7f",
            b"\t",
            b" ",
            b"\\",
            b"?",
            b"#frag",
            b"%3F",
            b"%23",
            b'"<>',
            b"{|}",
            b"^`",
            b"?\xc3\xa9",
            b"/..",
            b"/../..",
        ]
    ),
    st.binary(min_size=1, max_size=3).filter(lambda b: not {0x61, 0x65, 0x41, 0x45} & set(b)),
)
PREFIXES = [
    b"",
    b"/echo",
    b"/keep",
    b"/v1/orders/2",
    b"/v01/orders/0099",
    b"/w",
    b"/m",
    b"/auth",
    b"/based",
    b"/bk",
    b"/streamed",
    b"/nowhere",
]


@st.composite
def targets(draw: st.DrawFn, hostile: bool) -> bytes:
    prefix = draw(st.sampled_from(PREFIXES))
    pieces = draw(st.lists(SANE_PIECES, max_size=5))
    if hostile:
        pieces.insert(draw(st.integers(0, len(pieces))), draw(HOSTILE_PIECES))
    path = prefix + b"".join(draw(st.sampled_from([b"/", b""])) + p for p in pieces)
    if not path.startswith(b"/"):
        path = b"/" + path
    if not hostile:
        return path
    kind = draw(st.sampled_from(["origin"] * 3 + ["absolute", "asterisk", "long", "empty", "bare"]))
    if kind == "asterisk":
        return b"*"
    if kind == "empty":
        return b""
    if kind == "bare":
        return path.lstrip(b"/") or b"x"
    if kind == "long":
        # Around nginx's 8k large buffer: 414 past it (proxy/limits.py).
        path += b"/" + b"x" * draw(st.sampled_from([1000, 8100, 8200, 20000]))
    if kind == "absolute":
        host = draw(st.sampled_from([b"api.example.com", b"x.wild.test", b"kong.test", b"H:1"]))
        return draw(st.sampled_from([b"http://", b"https://", b"HTTP://"])) + host + path
    return path


def tokens(max_size: int) -> st.SearchStrategy[bytes]:
    """HTTP tokens (RFC 9110 tchar), as methods and header names are made of."""
    return st.text(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+-.^_`|~",
        min_size=1,
        max_size=max_size,
    ).map(str.encode)


SANE_METHODS = st.sampled_from([b"GET", b"POST", b"PUT", b"DELETE", b"HEAD", b"OPTIONS", b"PATCH"])
HOSTILE_METHODS = st.one_of(
    st.sampled_from(
        [
            b"get",
            b"post",
            b"Put",
            b"M-SEARCH",
            b"PROPFIND",
            b"CONNECT",
            b"TRACE",
            b"G\x01T",
            b"G(T",
            b"",
            b"\xc3\xa9",
            b"X" * 300,
            b"GET_X",
            b"-",
        ]
    ),
    tokens(max_size=20),
)
SANE_HOSTS = [
    b"api.example.com",
    b"API.Example.COM",
    b"a.wild.test",
    b"X.y.WILD.test:8000",
    b"wild.test",
    b"kong.test",
    b"127.0.0.1",
    b"api.example.com.",
]
HOSTILE_HOSTS = [
    b"[::1]:80",
    b"h:",
    b"h:x",
    b"",
    b"a b",
    b"\xff",
    b"h" * 300,
    b"a\tb",
    b"api.example.com:99999",
    b"x@api.example.com",
]
SANE_VALUES = st.one_of(
    st.sampled_from(
        [
            b"",
            b"x",
            b"1",
            b"canary",
            b"CANARY",
            b"secret",
            b"https",
            b"1.2.3.4",
            b"evil.test",
            b"/p",
            b"443",
            b"chunked",
            b"close",
            b"keep-alive",
            b"100-continue",
        ]
    ),
    st.text(SAFE + " ", max_size=30).map(str.encode),
)
HOSTILE_VALUES = st.one_of(
    st.sampled_from([b" ", b"\t v \t", b"\xc3\xa9", b"\x80\xff", b"a\x01b", b"a\x7fb", b"a\x00b"]),
    st.binary(max_size=40).filter(lambda b: b"\r" not in b and b"\n" not in b),
    st.sampled_from([1000, 5000, 8200]).map(lambda n: b"v" * n),
)
SANE_NAMES = st.one_of(
    st.sampled_from(
        [
            b"X-Env",
            b"x-env",
            b"apikey",
            b"X-Forwarded-For",
            b"X-Forwarded-Proto",
            b"X-Forwarded-Host",
            b"X-Forwarded-Port",
            b"X-Forwarded-Path",
            b"X-Forwarded-Prefix",
            b"X-Real-IP",
            b"Via",
            b"Connection",
            b"Keep-Alive",
            b"TE",
            b"Trailer",
            b"Proxy-Connection",
            b"Cookie",
            b"Expect",
            b"Kong-Debug",
            b"X-Kong-Request-Id",
            b"Forwarded",
            b"Upgrade",
        ]
    ),
    tokens(max_size=30),
)
HOSTILE_NAMES = st.sampled_from(
    [b"X Bad", b"X(", b"\x01", b"\xc3\xa9", b"", b" X-Lead", b"X-Trail ", b"X:Colon"]
)


#: What a request may be odd in; each example picks none, one or two.
ASPECTS = ("method", "target", "version", "host", "headers", "many", "framing")


@st.composite
def requests(draw: st.DrawFn) -> tuple[bytes, bytes, bool, str]:
    """``(bytes, method, incomplete, what)``: a raw request, ordinary but in the aspects drawn
    (so that most get past Granian's parser and the gateway's code is what is tried);
    ``incomplete`` when by construction the server would wait for more body."""
    odd = set(draw(st.lists(st.sampled_from(ASPECTS), max_size=2)))
    method = draw(HOSTILE_METHODS if "method" in odd else SANE_METHODS)
    target = draw(targets("target" in odd))
    versions = [b"HTTP/1.2", b"http/1.1", b"HTTP/2.0", b"HTTP/0.9", b"HTTP/1.10"]
    version = draw(st.sampled_from(versions if "version" in odd else [b"HTTP/1.1", b"HTTP/1.0"]))
    headers: list[tuple[bytes, bytes]] = []
    host_name = st.sampled_from([b"Host", b"host", b"HOST"])
    if "host" in odd:
        for _ in range(draw(st.sampled_from([0, 1, 2]))):
            host = draw(st.sampled_from(SANE_HOSTS + HOSTILE_HOSTS))
            headers.append((draw(host_name), host))
    else:
        headers.append((draw(host_name), draw(st.sampled_from(SANE_HOSTS))))
    headers += draw(st.lists(st.tuples(SANE_NAMES, SANE_VALUES), max_size=5))
    if "headers" in odd:
        name = draw(st.one_of(SANE_NAMES, HOSTILE_NAMES))
        value = draw(st.one_of(SANE_VALUES, HOSTILE_VALUES))
        headers.insert(draw(st.integers(0, len(headers))), (name, value))
        if draw(st.booleans()):  # in an order and case a client library avoids
            headers = [(n.swapcase(), v) for n, v in reversed(headers)]
    if "many" in odd:
        headers += [(b"X-Many-%d" % i, b"v") for i in range(draw(st.sampled_from([50, 99, 150])))]
    # Framing: none, Content-Length (honest, short, long, odd, repeated), chunked (whole, broken).
    framings = ["length-odd", "odd-length", "both", "te-odd", "chunked-odd"]
    framing = draw(st.sampled_from(framings if "framing" in odd else ["none", "length", "chunked"]))
    body = b""
    incomplete = False
    what = framing
    if framing in ("length", "length-odd"):
        size = draw(st.integers(0, 3000))
        sent = size
        if framing == "length-odd":
            sent = draw(st.sampled_from([max(0, size - 1), size + 5, size // 2, size]))
            if draw(st.integers(0, 5)) == 0:  # past BUFFER_LIMIT: streamed up as it comes
                size, sent = 2_000_000, draw(st.sampled_from([0, 100_000]))
        body = b"b" * sent
        headers.append(
            (draw(st.sampled_from([b"Content-Length", b"content-LENGTH"])), b"%d" % size)
        )
        if framing == "length-odd" and draw(st.booleans()):
            headers.append(
                (b"Content-Length", draw(st.sampled_from([b"%d" % size, b"%d" % (size + 1)])))
            )
            what = "length-twice"
        incomplete = sent < size
    elif framing == "odd-length":
        value = draw(
            st.sampled_from(
                [
                    b"-1",
                    b"+5",
                    b" 5",
                    b"5, 5",
                    b"0x10",
                    b"abc",
                    b"",
                    b"99999999999999999999999",
                    b"18446744073709551616",
                    b"5 5",
                ]
            )
        )
        headers.append((b"Content-Length", value))
        body = b"bbbbb"
        incomplete = True  # whatever the server makes of it, never wait on it
    elif framing in ("chunked", "chunked-odd", "both", "te-odd"):
        te = (
            b"chunked"
            if framing != "te-odd"
            else draw(
                st.sampled_from(
                    [
                        b"Chunked",
                        b"gzip, chunked",
                        b"chunked, gzip",
                        b"identity",
                        b"",
                        b"chunked, chunked",
                        b"xchunked",
                    ]
                )
            )
        )
        headers.append((b"Transfer-Encoding", te))
        if framing != "chunked" and draw(st.booleans()):
            headers.append((b"Transfer-Encoding", draw(st.sampled_from([b"chunked", b"identity"]))))
        if framing == "both":
            headers.append((b"Content-Length", b"%d" % draw(st.integers(0, 50))))
        chunks = draw(st.lists(st.integers(0, 700), max_size=4))
        body = b"".join(b"%x\r\n%s\r\n" % (n, b"c" * n) for n in chunks if n)
        endings = ["end", "trailer", "ext"]
        if framing == "chunked-odd":
            endings = ["none", "bad-size", "short-chunk", "no-crlf"]
        ending = draw(st.sampled_from(endings))
        if ending == "end":
            body += b"0\r\n\r\n"
        elif ending == "trailer":
            body += b"0\r\nX-Trailer: t\r\n\r\n"
        elif ending == "ext":
            body = b"3;name=val\r\nabc\r\n" + body + b"0\r\n\r\n"
        elif ending == "bad-size":
            body += b"zz\r\nabc\r\n0\r\n\r\n"
            incomplete = True
        elif ending == "short-chunk":
            body += b"10\r\nabc"
            incomplete = True
        elif ending == "no-crlf":
            body += b"3\r\nabcX0\r\n\r\n"
            incomplete = True
        else:
            incomplete = True
        what = f"{framing}-{ending}"
        if framing == "te-odd":
            incomplete = True
    head = method + b" " + target + b" " + version + b"\r\n"
    head += b"".join(name + b": " + value + b"\r\n" for name, value in headers)
    return head + b"\r\n" + body, method, incomplete, what


#: Methods the echo upstream's parser (llhttp) knows; it refuses any other with a bare 400.
LLHTTP_METHODS = {
    b"GET",
    b"POST",
    b"PUT",
    b"DELETE",
    b"HEAD",
    b"OPTIONS",
    b"PATCH",
    b"TRACE",
    b"PROPFIND",
    b"M-SEARCH",
}


def upstream_parser_refuses(data: bytes) -> bool:
    """The request's method or query, which go up as they came, are not for llhttp: an unknown
    method, or a query byte outside printable ASCII (the path goes up escaped)."""
    method, _, rest = data.partition(b" ")
    query = rest.partition(b" ")[0].partition(b"?")[2]
    return method not in LLHTTP_METHODS or any(b < 0x21 or b > 0x7E for b in query)


def kong_json(message: str, request_id: str) -> bytes:
    return errors.render(errors.JSON, message, request_id)


def check_gateway_answer(answer: Answer, data: bytes) -> None:
    status = answer.status
    request_id = (answer.header(REQUEST_ID) or b"").decode()
    ctype = answer.header(b"content-type")
    if answer.header(b"x-kong-upstream-latency") is not None:
        # Proxied. The echo refuses with a bare 400 what its parser (llhttp) cannot read: the
        # gateway must not have sent such bytes; everything else it answers 200.
        if answer.header(b"x-echo-server") is None and upstream_parser_refuses(data):
            event("the upstream's parser refused the method or query")
            return  # nginx sends both up as they came, too
        assert answer.header(b"x-echo-server") is not None, (status, data[:300])
        assert status == 200, (status, answer.body[:300])
        seen = json.loads(answer.body) if answer.body else None
        if seen is not None:
            headers = dict(seen["headers"])
            # An untrusted peer's X-Forwarded-* never reach the upstream.
            assert headers["x-forwarded-proto"] == "http"
            assert headers["x-forwarded-for"].endswith("127.0.0.1")
            assert headers["x-real-ip"] == "127.0.0.1"
        return
    head = data.startswith(b"HEAD ")
    if status == 404:
        assert ctype == errors.JSON.encode()
        assert_body(answer, [kong_json(errors.NO_ROUTE, request_id)], head)
        return
    if status == 401:
        # key-auth, on the one route that has it.
        assert b"/auth" in data.split(b"\r\n", 1)[0]
        assert ctype == errors.JSON.encode()
        messages = (ERR_NO_API_KEY, ERR_INVALID_AUTH_CRED, ERR_DUPLICATE_API_KEY)
        assert_body(answer, [kong_json(message, request_id) for message in messages], head)
        return
    # nginx's refusals (proxy/limits.py, proxy/app.py): 400 Bad request (a bad path or method,
    # no Host in HTTP/1.1, framing), 405 (CONNECT, TRACE), 414 URI too long, 494 sent as 400;
    # error_page bodies, text/plain by default, and the connection ends.
    assert status in (400, 405, 414), (status, answer.body[:300])
    messages = [errors.NGINX_MESSAGES[status]]
    if status == 400:
        messages.append(errors.NGINX_MESSAGES[494])
    assert ctype == errors.PLAIN.encode()
    assert_body(answer, [errors.render(errors.PLAIN, m, request_id) for m in messages], head)
    assert answer.header(b"connection") == b"close"


def assert_body(answer: Answer, candidates: list[bytes], head: bool) -> None:
    """The body is one of ``candidates``; to a HEAD request, none, with one's length."""
    if head:
        assert answer.body == b""
        length = answer.header(b"content-length")
        assert length is not None and int(length) in {len(x) for x in candidates}, length
    else:
        assert answer.body in candidates, answer.body


@settings(
    max_examples=int(os.environ.get("HOSTILE_EXAMPLES", "400")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(request=requests())
# What this test found first (tests/integration/test_request_limits.py has them too): a body
# cut short (Granian's 500), methods nginx refuses (sent up).
@example(
    request=(
        b"GET / HTTP/1.1\r\nHost: api.example.com\r\nContent-Length: 1\r\n\r\n",
        b"GET",
        True,
        "length-odd",
    )
)
@example(request=(b"get /echo HTTP/1.1\r\nHost: kong.test\r\n\r\n", b"get", False, "none"))
@example(request=(b"CONNECT /echo HTTP/1.1\r\nHost: kong.test\r\n\r\n", b"CONNECT", False, "none"))
def test_hostile_requests_get_clean_answers(
    gateway: Gateway,
    client: httpx.Client,
    workers: list[int],
    request: tuple[bytes, bytes, bool, str],
) -> None:
    data, method, incomplete, what = request
    answer = exchange(gateway.port, data, method, incomplete)
    if answer.response is None:
        # Only Granian drops a connection without a word: a head its parser refuses (hyper
        # answers most of those 400 itself), or a request the client never finished.
        event(f"closed without an answer ({what}, incomplete={incomplete})")
        assert not answer.raw
    else:
        status = answer.status
        assert status not in (500, 502), (status, answer.body[:500], data[:500])
        if answer.from_gateway:
            event(f"fastkong {status}")
            check_gateway_answer(answer, data)
        else:
            # Granian's own refusal, before the app, with an empty body, and it closes: 400 for
            # a head hyper cannot parse, 431 for 100 headers or more. Some of these nginx (so
            # Kong) would take and fastkong never sees: raw bytes above 0x7e or any of "<>{|}^`
            # in the target, HTTP/1.2, many headers (nginx counts only bytes), an Upgrade:
            # websocket without its key. Granian also drops a Content-Length sent with chunked
            # framing, where nginx answers 400.
            event(f"granian {status}")
            assert 400 <= status < 500 or status == 505, (status, answer.raw[:300])
    normal_request_works(gateway, client, workers)


# -- part 2: explain = proxy -----------------------------------------------------------------

DIFF_PIECES = st.one_of(
    st.text(SAFE, min_size=1, max_size=6).map(str.encode),
    st.sampled_from(
        [
            b"..",
            b".",
            b"",
            b";p",
            b"%2e",
            b"%2E%2E",
            b"%2F",
            b"%41",
            b"%7E",
            b"%20",
            b"%C3%A9",
            "é".encode(),
            b"\xff",
            b"//",
            b"%25",
            b"~",
        ]
    ),
    st.sampled_from(SAFE_HEX).map(lambda h: b"%" + h.encode()),
)
DIFF_HOSTS = [
    b"api.example.com",
    b"API.Example.COM",
    b"api.example.com:8000",
    b"a.wild.test",
    b"X.y.WILD.test",
    b"X.y.WILD.test:8000",
    b"wild.test",
    b"kong.test",
    b"127.0.0.1",
    b"api.example.com.",
    b"a.wild.test:",
    b"[::1]",
    b"[::1]:8000",
]


@st.composite
def routable(draw: st.DrawFn) -> tuple[str, bytes, bytes, list[tuple[bytes, bytes]]]:
    method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]))
    prefix = draw(st.sampled_from(PREFIXES))
    pieces = draw(st.lists(DIFF_PIECES, max_size=5))
    path = prefix + b"".join(draw(st.sampled_from([b"/", b""])) + p for p in pieces)
    if not path.startswith(b"/"):
        path = b"/" + path
    if draw(st.booleans()):
        path += b"?" + draw(
            st.sampled_from([b"", b"q=1", b"a=%20b&c", b"x=/y?z", b"k=%zz", b"%C3%A9"])
        )
    host = draw(st.sampled_from(DIFF_HOSTS))
    headers: list[tuple[bytes, bytes]] = []
    for _ in range(draw(st.integers(0, 2))):
        headers.append(
            (b"X-Env", draw(st.sampled_from([b"canary", b"Canary", b"CANARY", b"other", b""])))
        )
    if draw(st.booleans()):
        headers.append((b"apikey", draw(st.sampled_from([b"secret", b"wrong"]))))
    return method, path, host, headers


def explain(
    config: Path,
    port: int,
    method: str,
    target: bytes,
    host: bytes,
    headers: list[tuple[bytes, bytes]],
) -> dict[str, Any]:
    """``fastkong config explain`` in this process, as a shell would call it: arguments are
    text decoded from the locale's bytes (UTF-8, surrogateescape)."""
    args = [
        "config",
        "explain",
        str(config),
        "--method",
        method,
        "--url",
        f"http://127.0.0.1:{port}" + os.fsdecode(target),
        "--header",
        "Host: " + os.fsdecode(host),
    ]
    for name, value in headers:
        args += ["--header", f"{os.fsdecode(name)}: {os.fsdecode(value)}"]
    return cli_json(args)


@settings(
    max_examples=int(os.environ.get("EXPLAIN_EXAMPLES", "200")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(request=routable())
# What this test found first: Host case under preserve_host, a UTF-8 path.
@example(request=("GET", b"/w", b"X.y.WILD.test", []))
@example(request=("GET", b"/\xc3\xa9", b"api.example.com", []))
def test_explain_agrees_with_the_proxy(
    gateway: Gateway, request: tuple[str, bytes, bytes, list[tuple[bytes, bytes]]]
) -> None:
    method, target, host, headers = request
    data = b"%s %s HTTP/1.1\r\nHost: %s\r\n" % (method.encode(), target, host)
    data += b"".join(name + b": " + value + b"\r\n" for name, value in headers)
    data += b"Content-Length: 0\r\nConnection: close\r\n\r\n"
    answer = exchange(gateway.port, data, method.encode(), False)
    assert answer.response is not None
    if not answer.from_gateway:
        event(f"granian {answer.status}")
        return
    predicted = explain(gateway.config_path, gateway.port, method, target, host, headers)
    status = answer.status
    event(f"fastkong {status} route={predicted['route']}")
    if predicted["route"] is None:
        assert status in (404, 400), (status, predicted)
        if status == 400:
            assert answer.body.startswith(b"Bad request\n")
        return
    if predicted["route"] == "auth" and (b"apikey", b"secret") not in headers:
        assert status == 401, (status, answer.body[:300])
        return
    assert status == 200, (status, predicted, answer.body[:300])
    seen = json.loads(answer.body)
    # The echo decodes what it got as latin-1; explain prints text: compare bytes.
    assert seen["url"].encode("latin-1") == os.fsencode(predicted["upstream_path"]), predicted
    upstream_host = dict(seen["headers"])["host"].encode("latin-1")
    assert upstream_host == os.fsencode(predicted["host_header"]), predicted
