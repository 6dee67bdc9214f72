"""Kong's proxy specs on error bodies and the gateway's own headers, against a real
``fastkong start`` in front of the echo upstream (``fastkong/echo.py``) on loopback.

Ported from ``spec/02-integration/05-proxy/`` (one DB-less run each):

- ``12-error_default_type_spec.lua`` 37-216 (``error_default_type = text/html`` and unset):
  Kong's service points at a blackhole host with ``connect_timeout = 1`` for a 504; here the
  service points at the echo's ``/hang`` (accepts, never answers) with a short
  ``read_timeout`` and ``retries: 0``: the same nginx 504, "The upstream server is timing out".
  Bodies are compared stripped, as Kong's ``assert.res_status`` returns them.
- 12, 336-366 ("with q-values"): the negotiation cases, asserted on Kong's default templates
  (the custom templates they use are left out, below); 290-304 (``Accept: text/plain``) too.
- ``15-upstream-status-header_spec.lua`` 96-106, 121-164, 166-244 (non-buffered run).
  Lines 196-207 assert ``assert("200", ...)``, always true; ported as the equality meant.
- ``33-request-id-header_spec.lua`` 92-121, 125-156, 245-260: the ``post-function`` plugins
  that set ``X-Kong-Request-Id`` (request in access, response in header_filter) are replaced by
  bundled ``request-transformer``/``response-transformer`` setting it (``replace`` + ``add``:
  set whether present or not); Kong overwrites it after both (``proxy_set_header`` in
  ``kong/templates/nginx_kong.lua`` 206; ``kong/runloop/handler.lua`` 1627-1634). The no-route
  case (92-105) runs on the ``headers = X-Kong-Request-Id`` gateway, whose routes are 33's
  alone (12's catch-all route would match it on the default one); the request id is on there
  as in the defaults.
- ``30-max-args_spec.lua`` 238-252 (the ``/proxy`` cases, n = 50, 100, 200 and n + 1):
  query, headers and form body reach the upstream whole (the echo's view; the body by length
  and md5). One gateway serves every n: the ``lua_max_*`` settings are Lua's and have no
  fastkong equivalent (nothing is truncated). A request of more than 100 headers (n = 101,
  200, 201) is asserted as README.md's "Kong compatibility notes" document it: Granian's 431.

Left out:

- 12, 218-334: ``error_template_html/plain/json/xml`` custom templates: not a setting fastkong
  implements (``docs/settings.md``).
- 15, 108-119 "when a plugin changes status code": the custom ``dummy`` plugin's header_filter
  setting ``ngx.status`` (Lua); no bundled plugin rewrites a proxied status.
- 15, 166-208 buffered run: the custom ``response-phase`` Lua plugin, only there to buffer.
- 30, 222-236 (``/max-args``): the custom ``max-args`` Lua plugin reading ``ngx.req.*`` with
  the ``lua_max_*`` limits; 30's error-log asserts ("truncated") are Kong's log lines.
- 33, 80-90, 213-243, 178-188, 319-330, 284-295: already covered by
  ``test_proxy.py::test_response_headers`` / ``test_request_id_reaches_upstream`` (downstream
  and upstream id, the client's value overwritten) and ``test_headers_setting.py::
  test_off_adds_nothing_to_proxied_responses`` (``headers``/``headers_upstream = off``);
  ``headers_upstream = X-Kong-Request-Id`` is the default.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
from collections.abc import Iterator
from urllib.parse import parse_qsl, urlencode

import httpx
import pytest

from tests.helpers import Echo, Gateway, echoed_headers

pytestmark = pytest.mark.integration

REQUEST_ID = "x-kong-request-id"
UPSTREAM_STATUS = "x-kong-upstream-status"
HEX = re.compile(r"^[0-9a-f]+$")

CONFIG = """
_format_version: "3.0"
services:
- name: mock
  url: http://127.0.0.1:{echo}
  routes:
  - name: status-200
    protocols: [http]
    paths: [/status/200]
    plugins:
    - name: proxy-cache
      config:
        response_code: [200]
        request_method: [GET]
        content_type: [application/json]
        cache_ttl: 300
        storage_ttl: 300
        strategy: memory
  - name: non-proxied
    protocols: [http]
    paths: [/status/non-proxied-request]
    plugins: [{{name: key-auth}}]
  - name: request-id
    protocols: [http]
    hosts: [request_id]
  - name: request-transformer
    protocols: [http]
    hosts: [post-function-access]
    plugins:
    - name: request-transformer
      config:
        replace: {{headers: ["X-Kong-Request-Id:overwritten"]}}
        add: {{headers: ["X-Kong-Request-Id:overwritten"]}}
  - name: response-transformer
    protocols: [http]
    hosts: [post-function-header-filter]
    plugins:
    - name: response-transformer
      config:
        replace: {{headers: ["X-Kong-Request-Id:overwritten"]}}
        add: {{headers: ["X-Kong-Request-Id:overwritten"]}}
  - name: proxy
    paths: [/proxy]
"""

#: 12's service and its route without paths or hosts (it matches every GET and HEAD).
TIMING_OUT = """
- name: api-1
  url: http://127.0.0.1:{echo}/hang
  read_timeout: 200
  retries: 0
  routes:
  - name: api-1
    methods: [GET, HEAD]
"""

RESPONSE_MESSAGE = "The upstream server is timing out"

XML_TEMPLATE = """<?xml version="1.0" encoding="UTF-8"?>
<error>
  <message>%s</message>
  <requestid>%s</requestid>
</error>"""

HTML_TEMPLATE = """<!doctype html>
<html>
  <head>
    <meta charset="utf-8">
    <title>Error</title>
  </head>
  <body>
    <h1>Error</h1>
    <p>%s.</p>
    <p>request_id: %s</p>
  </body>
</html>"""

PLAIN_TEMPLATE = "%s\nrequest_id: %s"


def _gateway(
    factory: pytest.TempPathFactory, echo: Echo, name: str, timing_out: bool, *flags: str
) -> Gateway:
    config = CONFIG + (TIMING_OUT if timing_out else "")
    return Gateway(factory.mktemp(name), config.format(echo=echo.port), 1, *flags).start()


def _started(
    factory: pytest.TempPathFactory, echo: Echo, name: str, timing_out: bool, *flags: str
) -> Iterator[Gateway]:
    gw = _gateway(factory, echo, name, timing_out, *flags)
    try:
        yield gw
    finally:
        assert gw.stop() == 0


@pytest.fixture(scope="module")
def default(tmp_path_factory: pytest.TempPathFactory, echo: Echo) -> Iterator[Gateway]:
    """Kong's default settings; 12's catch-all route beside the others."""
    yield from _started(tmp_path_factory, echo, "spec-default", True)


@pytest.fixture(scope="module")
def html_default(tmp_path_factory: pytest.TempPathFactory, echo: Echo) -> Iterator[Gateway]:
    yield from _started(
        tmp_path_factory, echo, "spec-html", True, "--error-default-type", "text/html"
    )


@pytest.fixture(scope="module")
def status_tokens(tmp_path_factory: pytest.TempPathFactory, echo: Echo) -> Iterator[Gateway]:
    flags = ("--headers", "server_tokens,latency_tokens,x-kong-upstream-status")
    yield from _started(tmp_path_factory, echo, "spec-status-tokens", False, *flags)


@pytest.fixture(scope="module")
def status_only(tmp_path_factory: pytest.TempPathFactory, echo: Echo) -> Iterator[Gateway]:
    flags = ("--headers", "X-Kong-Upstream-Status")
    yield from _started(tmp_path_factory, echo, "spec-status-only", False, *flags)


@pytest.fixture(scope="module")
def request_id_only(tmp_path_factory: pytest.TempPathFactory, echo: Echo) -> Iterator[Gateway]:
    flags = ("--headers", "X-Kong-Request-Id")
    yield from _started(tmp_path_factory, echo, "spec-request-id", False, *flags)


@pytest.fixture(scope="module")
def all_off(tmp_path_factory: pytest.TempPathFactory, echo: Echo) -> Iterator[Gateway]:
    flags = ("--headers", "off", "--headers-upstream", "off")
    yield from _started(tmp_path_factory, echo, "spec-off", False, *flags)


def get(gateway: Gateway, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
    """A GET sending only Host and ``headers`` (no Accept unless given, as Kong's client)."""
    with httpx.Client(timeout=30) as client:
        request = client.build_request("GET", gateway.url(path), headers=headers)
        for name in ("accept", "accept-encoding", "user-agent"):
            if name not in {k.lower() for k in (headers or {})}:
                del request.headers[name]
        return client.send(request)


def timing_out(gateway: Gateway, accept: str | None = None) -> tuple[str, str, str]:
    """GET / on 12's route: the 504's stripped body, its Content-Type and request id."""
    r = get(gateway, "/", {"Accept": accept} if accept is not None else None)
    assert r.status_code == 504, r.text
    return r.text.strip(), r.headers["content-type"], r.headers[REQUEST_ID]


# -- 12-error_default_type_spec.lua -------------------------------------------------------------


def test_no_accept_header_uses_error_default_type(html_default: Gateway) -> None:
    # 12:84-97
    body, ctype, rid = timing_out(html_default)
    assert body == HTML_TEMPLATE % (RESPONSE_MESSAGE, rid)
    assert ctype == "text/html; charset=utf-8"


def test_head_request_does_not_return_a_body(html_default: Gateway) -> None:
    # 12:99-107: read to the connection's close, nothing after the head.
    answer = html_default.raw(b"HEAD / HTTP/1.1\r\nHost: kong.test\r\nConnection: close\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 504 "), head
    assert body == b""


def test_default_error_default_type_is_text_plain(default: Gateway) -> None:
    # 12:152-165
    body, ctype, rid = timing_out(default)
    assert body == PLAIN_TEMPLATE % (RESPONSE_MESSAGE, rid)
    assert ctype == "text/plain; charset=utf-8"


@pytest.mark.parametrize(
    ("accept", "template", "ctype"),
    [
        # 12:172-185, 201-214, 290-304 (on Kong's own template)
        ("text/html", HTML_TEMPLATE, "text/html"),
        ("application/xml", XML_TEMPLATE, "application/xml"),
        ("text/plain", PLAIN_TEMPLATE, "text/plain"),
        # 12:337-351: no q-value counts as 1 (on Kong's own template)
        ("application/json;q=0.9,text/html,text/plain;q=0.9", HTML_TEMPLATE, "text/html"),
    ],
)
def test_accept_header_modifies_content_type(
    default: Gateway, accept: str, template: str, ctype: str
) -> None:
    body, content_type, rid = timing_out(default, accept)
    assert body == template % (RESPONSE_MESSAGE, rid)
    assert content_type == f"{ctype}; charset=utf-8"


@pytest.mark.parametrize(
    "accept",
    [
        "application/json",  # 12:187-199
        "text/plain;q=0.7,application/json;q=0.8,text/html;q=0.5",  # 12:353-365
    ],
)
def test_accept_header_picks_json(default: Gateway, accept: str) -> None:
    body, ctype, rid = timing_out(default, accept)
    assert json.loads(body) == {"message": RESPONSE_MESSAGE, "request_id": rid}
    assert ctype == "application/json; charset=utf-8"


# -- 15-upstream-status-header_spec.lua ---------------------------------------------------------


def test_upstream_status_when_no_plugin_changes_status_code(status_tokens: Gateway) -> None:
    # 15:96-106 (a cache hit or miss: the route has proxy-cache)
    r = get(status_tokens, "/status/200")
    assert r.status_code == 200
    assert r.headers[UPSTREAM_STATUS] == "200"


def test_upstream_status_is_set_when_proxy_cache_hits(status_tokens: Gateway) -> None:
    # 15:121-132: Kong's proxy-cache marks a hit KONG_PROXIED (kong/plugins/proxy-cache/
    # handler.lua 334), so the runloop sets the header from ngx.status (handler.lua 1539-1545).
    get(status_tokens, "/status/200")
    r = get(status_tokens, "/status/200")
    assert r.status_code == 200
    assert r.headers["x-cache-status"] == "Hit"
    assert r.headers[UPSTREAM_STATUS] == "200"


def test_upstream_status_is_not_injected_by_default(default: Gateway) -> None:
    # 15:135-164
    r = get(default, "/status/200")
    assert r.status_code == 200
    assert UPSTREAM_STATUS not in r.headers


def test_upstream_status_is_injected_when_configured(status_only: Gateway) -> None:
    # 15:166-207 (non-buffered)
    r = get(status_only, "/status/200")
    assert r.status_code == 200
    assert r.headers[UPSTREAM_STATUS] == "200"


def test_upstream_status_empty_when_rejected_by_authentication(status_only: Gateway) -> None:
    # 15:229-243
    r = get(status_only, "/status/non-proxied-request")
    assert r.status_code == 401
    assert UPSTREAM_STATUS not in r.headers


# -- 33-request-id-header_spec.lua --------------------------------------------------------------


def test_request_id_populated_when_no_route_matched(request_id_only: Gateway) -> None:
    # 33:92-105
    r = get(request_id_only, "/", {"Host": "404.test"})
    assert r.status_code == 404
    assert r.json()["message"] == "no Route matched with those values"
    assert HEX.match(r.headers[REQUEST_ID])


def test_request_id_downstream_overwrites_value_set_by_plugin(default: Gateway) -> None:
    # 33:107-121 (response-transformer for post-function's header_filter)
    r = get(default, "/", {"Host": "post-function-header-filter"})
    assert r.status_code == 200
    values = r.headers.get_list(REQUEST_ID)
    assert len(values) == 1 and HEX.match(values[0]) and values[0] != "overwritten"


def test_request_id_downstream_with_headers_x_kong_request_id(request_id_only: Gateway) -> None:
    # 33:145-155
    r = get(request_id_only, "/", {"Host": "request_id"})
    assert r.status_code == 200
    assert HEX.match(r.headers[REQUEST_ID])


def test_request_id_upstream_overwrites_value_set_by_plugin(default: Gateway) -> None:
    # 33:245-260 (request-transformer for post-function's access)
    r = get(default, "/", {"Host": "post-function-access"})
    assert r.status_code == 200
    values = echoed_headers(r.json())[REQUEST_ID]
    assert len(values) == 1 and HEX.match(values[0]) and values[0] != "overwritten"


# -- 30-max-args_spec.lua -----------------------------------------------------------------------

#: What Kong adds on the way up, which 30's validate_proxy drops before comparing.
ADDED_UPSTREAM = {
    "connection",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-path",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-proto",
    "x-real-ip",
    "via",
}


def exchange(gateway: Gateway, request: bytes) -> tuple[bytes, bytes]:
    """Send ``request`` as is on a kept-alive connection (no ``Connection`` header added, as
    Kong's client sends none) and read one response: its head and its sized body."""
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=30) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, data
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        sized = re.search(rb"(?im)^content-length:\s*(\d+)", head)
        assert sized is not None, head
        length = int(sized.group(1))
        while len(body) < length:
            chunk = sock.recv(65536)
            assert chunk, body
            body += chunk
    return head, body


@pytest.mark.parametrize("n", [50, 51, 100, 101, 200, 201])
def test_max_args_no_truncation_when_proxying(all_off: Gateway, echo: Echo, n: int) -> None:
    # 30:238-252, get_parameters: n query args, the same as a form body, and as headers from a5.
    query = {f"a{i}": f"v{i}" for i in range(1, n + 1)}
    body = urlencode(query).encode()
    headers = {k: v for k, v in query.items() if k not in ("a1", "a2", "a3", "a4")}
    headers |= {
        "content-length": str(len(body)),
        "content-type": "application/x-www-form-urlencoded",
        "user-agent": "kong",
        "host": f"127.0.0.1:{echo.port}",
    }
    head = f"POST /proxy?{urlencode(query)} HTTP/1.1\r\n" + "".join(
        f"{name}: {value}\r\n" for name, value in headers.items()
    )
    status, payload = exchange(all_off, head.encode() + b"\r\n" + body)
    if len(headers) > 100:
        # README.md, "Kong compatibility notes": Granian parses the head first, and a request
        # with more than 100 headers gets its 431 (nginx has no count limit, only sizes).
        assert status.startswith(b"HTTP/1.1 431 "), status
        return
    assert status.startswith(b"HTTP/1.1 200 "), status
    seen = json.loads(payload)
    assert dict(parse_qsl(seen["query"], keep_blank_values=True)) == query
    sent_up = echoed_headers(seen)
    assert all(len(values) == 1 for values in sent_up.values())
    assert {k: v[0] for k, v in sent_up.items() if k not in ADDED_UPSTREAM} == headers
    assert seen["body_length"] == len(body)
    assert seen["body_md5"] == hashlib.md5(body).hexdigest()
