"""HTTP/2 requests on their way to an HTTP/1.1 upstream: what differs from HTTP/1.1.

* Bodies without Content-Length: the stream's end, not the head, ends them. An HTTP/2 client
  may send one (httpx, gRPC-Web and browsers' streamed ``fetch`` do). nginx reads it as it
  would a chunked one: buffered and sent up sized under ``request_buffering`` (Kong's default),
  else streamed in chunked framing. A request whose stream ends with its headers has no body
  and goes up without framing headers.
* Cookies: browsers send each in a field of its own; they go up (and to the plugins) joined
  into one Cookie header, as nginx joins them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import Echo, Gateway, echoed_headers

SECRET = "sekrit"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, echo: Echo) -> Iterator[Gateway]:
    config = f"""
_format_version: "3.0"
services:
- name: echo
  url: http://127.0.0.1:{echo.port}
  routes:
  - {{name: buffered, paths: [/buffered]}}
  - {{name: streamed, paths: [/streamed], request_buffering: false}}
  - name: jwt
    paths: [/jwt]
    plugins: [{{name: jwt, config: {{cookie_names: [tok]}}}}]
consumers:
- username: u
  jwt_secrets: [{{key: issuer, secret: {SECRET}}}]
"""
    gw = Gateway(tmp_path_factory.mktemp("h2body"), config, 1)
    gw.port_flags = "http2"  # h2c, prior knowledge
    gw.start()
    yield gw
    gw.stop()


def _pieces(body: bytes, size: int) -> Iterator[bytes]:
    """A body httpx sends with no Content-Length (over HTTP/2: DATA frames, then END_STREAM)."""
    for at in range(0, len(body), size):
        yield body[at : at + size]


def _post(gw: Gateway, path: str, body: bytes, size: int = 7) -> httpx.Response:
    with httpx.Client(http1=False, http2=True, timeout=30) as client:
        r = client.post(gw.url(path), content=_pieces(body, size))
    assert r.http_version == "HTTP/2"
    return r


@pytest.mark.parametrize(
    ("path", "framing"),
    [("/buffered", ("content-length", "41")), ("/streamed", ("transfer-encoding", "chunked"))],
)
def test_a_body_without_content_length_reaches_the_upstream(
    gateway: Gateway, path: str, framing: tuple[str, str]
) -> None:
    body = b"the quick brown fox jumps over a lazy dog"
    r = _post(gateway, path, body)
    assert r.status_code == 200
    seen = r.json()
    assert (seen["body_length"], seen["body_md5"]) == (len(body), hashlib.md5(body).hexdigest())
    headers = echoed_headers(seen)
    name, value = framing
    assert headers[name] == [value]
    other = "transfer-encoding" if name == "content-length" else "content-length"
    assert other not in headers


def test_a_body_over_the_buffer_streams_whole(gateway: Gateway) -> None:
    """Past the 1 MiB held for replays, a buffered route streams the rest in chunked framing."""
    body = bytes(range(256)) * (5 * 4096)  # 5 MiB
    r = _post(gateway, "/buffered", body, 64 * 1024)
    seen = r.json()
    assert (seen["body_length"], seen["body_md5"]) == (len(body), hashlib.md5(body).hexdigest())
    assert echoed_headers(seen)["transfer-encoding"] == ["chunked"]


@pytest.mark.parametrize("path", ["/buffered", "/streamed"])
@pytest.mark.parametrize("method", ["GET", "DELETE", "POST"])
def test_a_request_without_a_body_stays_without_one(
    gateway: Gateway, path: str, method: str
) -> None:
    with httpx.Client(http1=False, http2=True) as client:
        # (POST: an empty stream, which httpx sends with no Content-Length: DATA ends it)
        content = iter(()) if method == "POST" else None
        r = client.request(method, gateway.url(path), content=content)
    assert (r.status_code, r.http_version) == (200, "HTTP/2")
    seen = r.json()
    assert seen["body_length"] == 0
    headers = echoed_headers(seen)
    assert "content-length" not in headers and "transfer-encoding" not in headers


def test_client_max_body_size_holds_without_content_length(
    tmp_path: Path, echo: Echo, monkeypatch: pytest.MonkeyPatch
) -> None:
    """nginx's client_max_body_size counts the body as it comes when no length was given."""
    monkeypatch.setenv("KONG_NGINX_HTTP_CLIENT_MAX_BODY_SIZE", "100")
    config = f"""
_format_version: "3.0"
services:
- {{name: echo, url: "http://127.0.0.1:{echo.port}", routes: [{{name: r, paths: [/r]}}]}}
"""
    gw = Gateway(tmp_path, config, 1)
    gw.port_flags = "http2"
    gw.start()
    try:
        assert _post(gw, "/r", b"x" * 100).json()["body_length"] == 100
        assert _post(gw, "/r", b"x" * 101).status_code == 413
    finally:
        gw.stop()


def _hs256(claims: dict[str, str]) -> str:
    def part(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    head = part(b'{"alg":"HS256","typ":"JWT"}') + b"." + part(json.dumps(claims).encode())
    sig = hmac.new(SECRET.encode(), head, hashlib.sha256).digest()
    return (head + b"." + part(sig)).decode()


def _cookie_fields(*cookies: str) -> list[tuple[str, str]]:
    """Each cookie in a Cookie field of its own, as browsers send them over HTTP/2."""
    return [("cookie", cookie) for cookie in cookies]


def test_cookie_fields_go_up_as_one_header(gateway: Gateway) -> None:
    with httpx.Client(http1=False, http2=True) as client:
        r = client.get(gateway.url("/buffered"), headers=_cookie_fields("a=1", "b=2", "c=3"))
    assert r.http_version == "HTTP/2"
    assert echoed_headers(r.json())["cookie"] == ["a=1; b=2; c=3"]


def test_a_plugin_finds_its_cookie_in_any_field(gateway: Gateway) -> None:
    token = _hs256({"iss": "issuer"})
    with httpx.Client(http1=False, http2=True) as client:
        r = client.get(gateway.url("/jwt"), headers=_cookie_fields("theme=dark", f"tok={token}"))
        assert r.status_code == 200
        assert echoed_headers(r.json())["x-consumer-username"] == ["u"]
        assert client.get(gateway.url("/jwt"), headers=_cookie_fields("tok=x")).status_code == 401
