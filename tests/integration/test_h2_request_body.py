"""HTTP/2 request bodies without Content-Length: the stream's end, not the head, ends them.

An HTTP/2 client may send a body with no Content-Length (httpx, gRPC-Web and browsers' streamed
``fetch`` do). nginx reads it as it would a chunked one: buffered and sent up sized under
``request_buffering`` (Kong's default), else streamed in chunked framing. A request whose stream
ends with its headers has no body and goes up without framing headers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import Echo, Gateway, echoed_headers


@pytest.fixture(scope="module")
def echo() -> Iterator[Echo]:
    server = Echo().start()
    yield server
    server.stop()


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
