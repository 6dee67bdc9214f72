"""Kong's ``spec/03-plugins/36-request-transformer/02-access_spec.lua`` through a running gateway.

One gateway holds the spec's routes (by host, as in the spec) in front of :class:`Recorder`, a
loopback upstream that answers the request it got (raw header names, the body's bytes), a twin
of Kong's ``mock_upstream`` (200 on ``/``, ``/get``, ``/post``, ``/request*``, ``/anything*``;
404 elsewhere) and of the spec's ``http_mock`` (case-sensitive header names). The ``assert.request``
modifiers are mirrored by :class:`Seen` (``header``/``queryparam``/``formparam`` as luassert reads
mock_upstream's echo).

Ported (lines of the spec): 539, 657-686, 729-744, 779-812, 831-847, 869-883, 926-985,
1075-1106, 1127-1204, 1205-1230, 1332-1400, 1435-1465, 1494-1526, 1527-1542, 1556-1592,
1593-1641, 1642-2062 (the block 1924-2042 repeats 1722-1835 case for case: ported once), 2243-2260
(the error.log line), 2329-2343, the thread-safety block 2345-2453 (the slow body comes from the
client instead of a ``pre-function`` that delays ``ngx.req.read_body``), and the
``untrusted_lua=sandbox`` block 2614-2748 (Kong's default, the only mode fastkong has).

Covered by ``tests/plugins/test_request_transformer.py``: 553 and 571 (``test_method_get_moves_
form_arguments_to_the_query``, ``test_content_type_added_before_the_body_step``), remove 589-656,
688-728 (``test_remove``, ``test_remove_body``, ``test_body_of_another_type_is_untouched``),
rename 747-778, 813-830, 848-868, 884-925 (``test_rename``, ``test_rename_body``), replace
987-1074 (``test_replace_only_what_is_present``, ``test_replace_body``), add 1247-1331,
1401-1434 (``test_add_only_what_is_absent``, ``test_add_body``), append 1467-1493, 1543-1555
(``test_append``), the templates 2064-2242 and 2261-2297 (``test_template_*``), remove then add
2298-2326 (``test_remove_then_add_a_header``); 1231 is ``pending`` in Kong
(``test_replace_uri_is_escaped`` checks it).

Left out:
- 2275 ``kong.ctx.shared`` injected by a ``pre-function`` (Lua-only plugin; the template's
  ``shared`` lookup is in ``test_template_engine``);
- the ``untrusted_lua=off``, ``=on``, ``untrusted_lua_sandbox_requires`` and
  ``untrusted_lua_sandbox_environment`` blocks (2455-2612, 2750-2881): fastkong has no
  ``untrusted_lua*`` settings, its templates are a fixed Lua subset (``_templates.py``).
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote_plus, urlencode

import httpx
import pytest

from tests.helpers import Gateway, LoopServer, eventually

pytestmark = pytest.mark.integration

BOUNDARY = "8fd84e9444e3946c"  # Kong's spec client's multipart boundary
FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
MULTIPART = "multipart/form-data"
_MOCK_OK = re.compile(r"^/(request|anything|get|post)")


# -- the upstream ---------------------------------------------------------------------------------
class Recorder(LoopServer):
    """Answers each request (kept-alive) with JSON: method, target, header lines as received,
    body bytes (latin-1 text); 404 where mock_upstream has no location."""

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
                line, *lines = head.split("\r\n")
                method, target, _ = line.split(" ", 2)
                headers = []
                for text in lines:
                    name, sep, value = text.partition(":")
                    if sep:
                        headers.append((name.strip(), value.strip()))
                lowered = {n.lower(): v for n, v in headers}
                body = b""
                if lowered.get("transfer-encoding", "").lower() == "chunked":
                    while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
                        body += (await reader.readexactly(size + 2))[:-2]
                    await reader.readuntil(b"\r\n")
                elif length := int(lowered.get("content-length", "0")):
                    body = await reader.readexactly(length)
                path = target.partition("?")[0]
                ok = path == "/" or _MOCK_OK.match(path)
                payload = json.dumps(
                    {
                        "method": method,
                        "target": target,
                        "headers": headers,
                        "body": body.decode("latin-1"),
                    }
                ).encode()
                writer.write(
                    b"HTTP/1.1 %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
                    % (b"200 OK" if ok else b"404 Not Found", len(payload))
                    + payload
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


# -- the config -----------------------------------------------------------------------------------
def rt(**config: Any) -> list[dict[str, Any]]:
    return [{"name": "request-transformer", "config": config}]


def route(host: str, plugins: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"name": host, "hosts": [host], "plugins": plugins, **extra}


ROUTES = [
    route(
        "test1.test",
        rt(add={"headers": ["h1:v1", "h2:value:2"], "querystring": ["q1:v1"], "body": ["p1:v1"]}),
    ),
    route("test2.test", rt(add={"headers": ["host:mark"]}), preserve_host=True),
    route(
        "test3.test",
        rt(
            add={
                "headers": ["x-added:a1", "x-added2:b1", "x-added3:c2"],
                "querystring": ["query-added:newvalue", "p1:anything:1"],
                "body": ["newformparam:newvalue"],
            },
            remove={"headers": ["x-to-remove"], "querystring": ["toremovequery"]},
            append={"headers": ["x-added:a2", "x-added:a3"], "querystring": ["p1:a2", "p2:b1"]},
            replace={"headers": ["x-to-replace:false"], "querystring": ["toreplacequery:no"]},
        ),
    ),
    route(
        "test4.test",
        rt(remove={"headers": ["x-to-remove"], "querystring": ["q1"], "body": ["toremoveform"]}),
    ),
    route(
        "test5.test",
        rt(replace={"headers": ["h1:v1"], "querystring": ["q1:v1"], "body": ["p1:v1"]}),
    ),
    route(
        "test6.test",
        rt(
            append={
                "headers": ["h1:v1", "h1:v2", "h2:v1"],
                "querystring": ["q1:v1", "q1:v2", "q2:v1"],
                "body": ["p1:v1", "p1:v2", "p2:value:1"],
            }
        ),
    ),
    route("test7.test", rt(http_method="POST")),
    route(
        "test9.test",
        rt(
            rename={
                "headers": ["x-to-rename:x-is-renamed"],
                "querystring": ["originalparam:renamedparam"],
                "body": ["originalparam:renamedparam"],
            }
        ),
    ),
    route("test23.test", rt(), paths=["/request"]),
    route(
        "test24.test",
        rt(
            add={
                "headers": [
                    'x-user-agent:$(foo(headers["User-Agent"]) == "table" and '
                    'headers["User-Agent"][1] or headers["User-Agent"])'
                ]
            }
        ),
    ),
    route(
        "test26.test",
        rt(
            add={"headers": ["X-aDDed:a1", "x-aDDed2:b1", "x-Added3:c2"]},
            remove={"headers": ["X-To-Remove"]},
            append={"headers": ["X-aDDed:a2", "X-aDDed:a3"]},
            replace={"headers": ["x-to-Replace:false"]},
        ),
    ),
    route(
        "test29.test",
        rt(replace={"uri": '/api/v2/$(uri_captures["subpath"])'}),
        paths=["~/(gw/)?api/(?<subpath>htest)$"],
        strip_path=False,
    ),
    route(
        "rename.mock",
        rt(
            rename={
                "headers": ["rename:Rename", "identical:identical"],
                "querystring": ["inexist:exist"],
            }
        ),
    ),
    # Inserted through the Admin API while Kong runs in the spec (1494): here, in the config.
    route(
        "test_append_hash.test",
        rt(
            append={
                "headers": ["h1:v1", "h1:v2", "h1:#value_with_hash", "h2:v1"],
                "querystring": ["q1:v1", "q1:v2", "q2:v1"],
                "body": ["p1:v1", "p1:v2", "p2:value:1"],
            }
        ),
    ),
    route(
        "test_thread_safety.test",
        rt(
            add={
                "querystring": ["added_q:yes_q"],
                "headers": ["added_h:yes_h"],
                "body": ["added_b:yes_b"],
            }
        ),
    ),
    route("testLuaSandbox1.test", rt(add={"headers": ["x-added:$(type(query_params.user))"]})),
    route(
        "testLuaSandbox2.test",
        rt(add={"headers": ["x-added:$(string.sub(query_params.user, 1, 3))"]}),
    ),
    route(
        "testLuaSandbox3.test",
        rt(add={"headers": ["x-added:$(require('ngx.process')('somestring'))"]}),
    ),
]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    upstream = Recorder().start()
    workdir = tmp_path_factory.mktemp("request-transformer-spec")
    config = {
        "_format_version": "3.0",
        "services": [
            {"name": "mock", "url": f"http://127.0.0.1:{upstream.port}", "routes": ROUTES}
        ],
    }
    gw = Gateway(workdir, json.dumps(config))
    gw.stderr_path = workdir / "stderr.log"
    try:
        gw.start()
        yield gw
    finally:
        gw.stop()
        upstream.stop()


# -- requests and what the upstream saw -----------------------------------------------------------
def lua_args(text: str) -> dict[str, Any]:
    """``ngx.decode_args``: a repeated name is a list of its values, a bare name is True."""
    out: dict[str, Any] = {}
    for piece in text.split("&"):
        if not piece:
            continue
        name, sep, value = piece.partition("=")
        val: Any = unquote_plus(value) if sep else True
        key = unquote_plus(name)
        if key in out:
            out[key] = (out[key] if isinstance(out[key], list) else [out[key]]) + [val]
        else:
            out[key] = val
    return out


def lookup(table: dict[str, Any], name: str) -> Any:
    """luassert's ``misc.lookup``: the exact name, else a case-insensitive match."""
    if name in table:
        return table[name]
    return next((v for k, v in table.items() if k.lower() == name.lower()), None)


class Seen:
    """The response status and the request the upstream got (``assert.request(r)``)."""

    def __init__(self, status: int, echoed: dict[str, Any]) -> None:
        self.status = status
        self.method: str = echoed["method"]
        self.target: str = echoed["target"]
        self.raw_headers: list[tuple[str, str]] = [tuple(h) for h in echoed["headers"]]
        self.body: bytes = echoed["body"].encode("latin-1")

    def header(self, name: str) -> Any:
        """As ``ngx.req.get_headers()``: None, one value, or the list of a repeated header."""
        values = [v for n, v in self.raw_headers if n.lower() == name.lower()]
        return None if not values else values[0] if len(values) == 1 else values

    def raw_header(self, name: str) -> str | None:
        """The value of the header line spelled exactly ``name`` (Kong's ``http_mock``)."""
        return next((v for n, v in self.raw_headers if n == name), None)

    def queryparam(self, name: str) -> Any:
        return lookup(lua_args(self.target.partition("?")[2]), name)

    def formparam(self, name: str) -> Any:
        content_type = self.header("content-type") or ""
        if FORM in content_type:
            return lookup(lua_args(self.body.decode()), name)
        assert MULTIPART in content_type, content_type
        boundary = content_type.split("boundary=")[1].encode()
        params: dict[str, Any] = {}
        for chunk in self.body.split(b"--" + boundary)[1:]:
            if chunk.startswith(b"--"):
                break
            head, _, value = chunk.strip(b"\r\n").partition(b"\r\n\r\n")
            m = re.search(rb'name="([^"]*)"', head)
            assert m is not None, chunk
            params[m.group(1).decode()] = value.decode()
        return lookup(params, name)

    def jsonbody(self) -> Any:
        return json.loads(self.body)


def encode_body(body: Any, content_type: str) -> bytes:
    """The spec client's encoding of a table body for its Content-Type."""
    if isinstance(body, bytes):
        return body
    if JSON in content_type:
        return json.dumps(body, separators=(",", ":")).encode()
    if FORM in content_type:
        return urlencode(body).encode()
    out = "".join(
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
        for k, v in body.items()
    )
    return (out + f"--{BOUNDARY}--\r\n" if out else "").encode()


def send(
    gw: Gateway,
    host: str,
    method: str = "GET",
    path: str = "/request",
    *,
    query: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    body: Any = None,
    content_type: str | None = None,
) -> Seen:
    """``client:send{...}`` of the spec: the body encoded for ``content_type`` (a multipart one
    gets the client's boundary), the query appended."""
    sent = {"host": host, **(headers or {})}
    if content_type is not None:
        sent["content-type"] = content_type
        if content_type == MULTIPART and not isinstance(body, bytes):
            sent["content-type"] += f"; boundary={BOUNDARY}"
    content = None if body is None else encode_body(body, content_type or "")
    url = gw.url(path + (f"?{urlencode(query)}" if query else ""))
    r = httpx.request(method, url, headers=sent, content=content)
    assert r.headers.get("content-type") == "application/json", (r.status_code, r.text)
    return Seen(r.status_code, r.json())


def ok(seen: Seen) -> Seen:
    assert seen.status == 200
    return seen


def error_log(gw: Gateway) -> str:
    assert gw.stderr_path is not None
    return gw.stderr_path.read_text(errors="replace")


def assert_logged(gw: Gateway, before: int, pattern: str) -> None:
    """``count_log_lines(pattern)`` grows past ``before`` (the log is written asynchronously)."""
    try:
        eventually(lambda: error_log(gw).count(pattern) > before, timeout=5)
    except AssertionError:
        tail = error_log(gw).splitlines()[-3:]
        raise AssertionError(f"{pattern!r} not logged; the log ends with {tail}") from None


def assert_500(gw: Gateway, host: str, query: dict[str, str] | None = None) -> None:
    r = httpx.get(gw.url("/" + (f"?{urlencode(query)}" if query else "")), headers={"host": host})
    assert r.status_code == 500
    assert r.json()["message"] == "An unexpected error occurred"


# -- http method, remove --------------------------------------------------------------------------
def test_get_to_post_keeps_the_query(gateway: Gateway) -> None:  # 539
    seen = ok(send(gateway, "test7.test", path="/request?hello=world&name=marco"))
    assert seen.method == "POST"
    assert seen.queryparam("hello") == "world"
    assert seen.queryparam("name") == "marco"


def test_remove_empty_json_body(gateway: Gateway) -> None:  # 657
    seen = ok(send(gateway, "test4.test", "POST", body={}, content_type=JSON))
    assert seen.body == b"{}"
    assert seen.header("content-length") == "2"


def test_remove_empty_body(gateway: Gateway) -> None:  # 672
    seen = ok(send(gateway, "test4.test", "POST", body=b""))
    assert seen.body == b""
    assert seen.header("content-length") == "0"


# 729, 926, 1189, 1449, 1625, 2044: the body is decoded and encoded again; [] stays an array.
@pytest.mark.parametrize(
    ("host", "body", "exact"),
    [
        ("test4.test", b'{"emptyarray":[]}', True),
        ("test9.test", b'{"emptyarray":[]}', True),
        ("test5.test", b'{"emptyarray":[], "p1":"v"}', False),
        ("test1.test", b'{"emptyarray":[]}', False),
        ("test6.test", b'{"emptyarray":[]}', False),
        ("test3.test", b'{"emptyarray":[]}', False),
    ],
)
def test_preserves_empty_json_array(gateway: Gateway, host: str, body: bytes, exact: bool) -> None:
    seen = ok(send(gateway, host, "POST", body=body, content_type=JSON))
    if exact:
        assert seen.body == b'{"emptyarray":[]}'
    else:
        assert b'"emptyarray":[]' in seen.body


# 869, 1075, 1350, 1593: a JSON body that does not parse goes up as it came.
@pytest.mark.parametrize("host", ["test9.test", "test5.test", "test1.test", "test6.test"])
def test_malformed_json_body_is_sent_unchanged(gateway: Gateway, host: str) -> None:
    seen = ok(send(gateway, host, "POST", body=b"malformed json body", content_type=JSON))
    assert seen.body == b"malformed json body"
    assert seen.header("content-type") == JSON


# -- rename ---------------------------------------------------------------------------------------
def test_rename_header_overrides_the_target(gateway: Gateway) -> None:  # 779
    headers = {"x-to-rename": "new-result", "x-is-renamed": "old-result"}
    seen = ok(send(gateway, "test9.test", headers=headers))
    assert seen.header("x-to-rename") is None
    assert seen.header("x-is-renamed") == "new-result"


@pytest.mark.parametrize("seq", range(1, 7))
def test_rename_header_overrides_the_target_in_another_case(gateway: Gateway, seq: int) -> None:
    headers = {"x-to-rename": "new-result", "X-Is-Renamed": "old-result"}  # 796
    seen = ok(send(gateway, "test9.test", headers=headers))
    assert seen.header("x-to-rename") is None
    assert seen.header("x-is-renamed") == "new-result"


def test_rename_does_not_add_an_absent_form_param(gateway: Gateway) -> None:  # 831
    seen = ok(send(gateway, "test9.test", "POST", body={"x-a-header": "true"}, content_type=FORM))
    assert seen.formparam("renamedparam") is None
    assert seen.formparam("x-a-header") == "true"


def test_rename_only_changing_capitalization(gateway: Gateway) -> None:  # 941
    seen = ok(send(gateway, "rename.mock", headers={"rename": "true"}))
    # Kong clears ``rename`` and sets ``Rename`` (ngx.req.set_header keeps the name's case).
    # Deliberately not Kong's spelling: fastkong writes the header names it sets in lower case
    # (names are case-insensitive in HTTP/1.1 and lower case in HTTP/2); the header is still
    # there once, with its value (docs/plugins.md, request-transformer).
    assert seen.header("Rename") == "true", seen.raw_headers
    assert [n for n, _ in seen.raw_headers if n.lower() == "rename"] == ["rename"]


def test_rename_does_not_override_with_nil(gateway: Gateway) -> None:  # 957
    assert ok(send(gateway, "rename.mock", path="/request?exist=true")).target == (
        "/request?exist=true"
    )


def test_rename_to_the_identical_name_keeps_it(gateway: Gateway) -> None:  # 970
    seen = ok(send(gateway, "rename.mock", headers={"identical": "true"}))
    assert seen.raw_header("identical") == "true"


# -- replace --------------------------------------------------------------------------------------
def test_replace_does_not_add_an_absent_json_param(gateway: Gateway) -> None:  # 1090
    seen = ok(send(gateway, "test5.test", "POST", body={"p2": "v1"}, content_type=JSON))
    assert "p1" not in seen.jsonbody()
    assert seen.jsonbody()["p2"] == "v1"


def test_replace_does_not_add_an_absent_multipart_param(gateway: Gateway) -> None:  # 1127
    seen = ok(send(gateway, "test5.test", "POST", body={"p2": "v1"}, content_type=MULTIPART))
    assert seen.formparam("p1") is None
    assert seen.formparam("p2") == "v1"


@pytest.mark.parametrize(
    ("query", "q1"), [({"q1": "v", "q2": "v2"}, "v1"), ({"q2": "v2"}, None)]
)  # 1147, 1169
def test_replace_args_on_post(gateway: Gateway, query: dict[str, str], q1: str | None) -> None:
    body = {"hello": "world"}
    seen = ok(send(gateway, "test5.test", "POST", query=query, body=body, content_type=FORM))
    assert seen.queryparam("q1") == q1
    assert seen.queryparam("q2") == "v2"


@pytest.mark.parametrize("path", ["/api/htest", "/gw/api/htest"])  # 1205, 1218
def test_replace_uri_with_an_optional_capture_prefix(gateway: Gateway, path: str) -> None:
    seen = send(gateway, "test29.test", path=path)
    assert seen.status == 404  # mock_upstream has no /api location
    assert seen.target == "/api/v2/htest"


# -- add ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("content_type", [JSON, MULTIPART])  # 1332, 1380
def test_add_keeps_an_existing_body_param(gateway: Gateway, content_type: str) -> None:
    body = {"p1": "this should not change", "hello": "world"}
    seen = ok(send(gateway, "test1.test", "POST", body=body, content_type=content_type))
    params = seen.jsonbody() if content_type == JSON else {k: seen.formparam(k) for k in body}
    assert params["p1"] == "this should not change"
    assert params["hello"] == "world"


def test_add_to_an_empty_multipart_body(gateway: Gateway) -> None:  # 1365
    # The spec client sends an empty table as no body, the boundary in the Content-Type.
    headers = {"content-type": f"{MULTIPART}; boundary={BOUNDARY}"}
    seen = ok(send(gateway, "test1.test", "POST", body=b"", headers=headers))
    assert seen.formparam("p1") == "v1"


def test_add_host_does_not_change_the_preserved_host(gateway: Gateway) -> None:  # 1435
    seen = ok(send(gateway, "test2.test", path="/get", content_type=JSON))
    assert seen.header("host") == "test2.test"


# -- append ---------------------------------------------------------------------------------------
def test_append_a_value_with_a_hash(gateway: Gateway) -> None:  # 1494
    seen = ok(send(gateway, "test_append_hash.test"))
    assert seen.header("h1") == ["v1", "v2", "#value_with_hash"]


def test_append_query_on_post(gateway: Gateway) -> None:  # 1527
    seen = ok(send(gateway, "test6.test", "POST", body={"hello": "world"}, content_type=FORM))
    assert seen.queryparam("q2") == "v1"


@pytest.mark.parametrize(
    ("body", "p1"), [(None, ["v1", "v2"]), ({"p1": "v0"}, ["v0", "v1", "v2"])]
)  # 1556, 1573
def test_append_form_params(gateway: Gateway, body: dict[str, str] | None, p1: list[str]) -> None:
    seen = ok(send(gateway, "test6.test", "POST", body=body, content_type=FORM))
    assert seen.formparam("p1") == p1
    assert seen.formparam("p2") == "value:1"


def test_append_leaves_a_multipart_body(gateway: Gateway) -> None:  # 1608
    body = {"p1": "This should not change"}
    seen = ok(send(gateway, "test6.test", "POST", body=body, content_type=MULTIPART))
    assert seen.formparam("p1") == "This should not change"


# -- remove, replace, add and append together (test3, test26) -------------------------------------
@pytest.mark.parametrize(
    ("host", "sent", "name", "expected"),
    [
        ("test3.test", {"x-to-remove": "true"}, "x-to-remove", None),  # 1643
        ("test3.test", {"x-to-replace": "true"}, "x-to-replace", "false"),  # 1656
        ("test3.test", {}, "x-to-replace", None),  # 1670
        ("test3.test", {}, "x-added2", "b1"),  # 1682
        ("test3.test", {"x-added3": "c1"}, "x-added3", "c1"),  # 1695
        ("test3.test", {}, "x-added", ["a1", "a2", "a3"]),  # 1709
        ("test26.test", {"x-to-remove": "true"}, "X-To-Remove", None),  # 1843
        ("test26.test", {"x-to-replace": "true"}, "x-to-Replace", "false"),  # 1856
        ("test26.test", {}, "x-aDDed2", "b1"),  # 1870
        ("test26.test", {"x-added3": "c1"}, "x-added3", "c1"),  # 1883
        ("test26.test", {"X-addeD": "a0"}, "X-aDDed", ["a0", "a2", "a3"]),  # 1897
        ("test26.test", {}, "X-Added", ["a1", "a2", "a3"]),  # 1911
    ],
)
def test_combined_headers(
    gateway: Gateway, host: str, sent: dict[str, str], name: str, expected: Any
) -> None:
    assert ok(send(gateway, host, headers=sent)).header(name) == expected


def test_combined_adds_query_on_post(gateway: Gateway) -> None:  # 1722
    seen = ok(send(gateway, "test3.test", "POST", body={"hello": "world"}, content_type=FORM))
    assert seen.queryparam("p2") == "b1"


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (
            {"toremovequery": "yes", "nottoremove": "yes"},
            {"toremovequery": None, "nottoremove": "yes"},
        ),  # 1738
        ({"toreplacequery": "yes"}, {"toreplacequery": "no"}),  # 1760
        (None, {"query-added": "newvalue"}),  # 1791
        ({"query-added": "oldvalue"}, {"query-added": "oldvalue"}),  # 1804
        ({"q1": "20"}, {"p1": ["anything:1", "a2"], "q1": "20"}),  # 1820
    ],
)
def test_combined_query_on_get(
    gateway: Gateway, query: dict[str, str] | None, expected: dict[str, Any]
) -> None:
    seen = ok(send(gateway, "test3.test", query=query, body={"hello": "world"}, content_type=FORM))
    assert {name: seen.queryparam(name) for name in expected} == expected


def test_combined_does_not_add_a_replaced_param(gateway: Gateway) -> None:  # 1779
    seen = ok(send(gateway, "test3.test", content_type=FORM))
    assert seen.formparam("toreplacequery") is None


# -- templates, plain query -----------------------------------------------------------------------
def test_rendering_error_is_logged(gateway: Gateway) -> None:  # 2243
    pattern = """error:[string "TMP"]:1: attempt to call global 'foo' (a nil value)"""
    before = error_log(gateway).count(pattern)
    assert_500(gateway, "test24.test")
    assert_logged(gateway, before, pattern)


def test_query_is_not_urlencoded_without_edits(gateway: Gateway) -> None:  # 2329
    expected = "$&+,/:;?@"
    answer = gateway.raw(
        f"GET /request?expected={expected} HTTP/1.1\r\nHost: test23.test\r\n"
        "Connection: close\r\n\r\n".encode()
    )
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), head
    assert json.loads(body)["target"] == f"/?expected={expected}"


# -- thread safety: one request's body arrives while another one goes through ---------------------
def test_concurrent_requests_keep_their_own_values(gateway: Gateway) -> None:  # 2406
    def head(h: str, q: str, length: int) -> bytes:
        return (
            f"POST /request?q={q} HTTP/1.1\r\nHost: test_thread_safety.test\r\n"
            f"Content-Type: application/json\r\nh: {h}\r\nContent-Length: {length}\r\n"
            "Connection: close\r\n\r\n"
        ).encode()

    slow_body = b'{"k":"b1"}'
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as slow:
        slow.sendall(head("vh1", "vq1", len(slow_body)) + slow_body[:4])
        fast = send(
            gateway,
            "test_thread_safety.test",
            "POST",
            query={"q": "vq2"},
            headers={"h": "vh2"},
            body={"k": "b2"},
            content_type=JSON,
        )
        slow.sendall(slow_body[4:])
        answer = b""
        while chunk := slow.recv(65536):
            answer += chunk
    status, _, body = answer.partition(b"\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 200 "), status
    first = Seen(200, json.loads(body))
    for seen, (h, k, q) in ((first, ("vh1", "b1", "vq1")), (ok(fast), ("vh2", "b2", "vq2"))):
        assert (seen.header("h"), seen.jsonbody()["k"], seen.queryparam("q")) == (h, k, q)
        assert seen.header("added_h") == "yes_h"
        assert seen.jsonbody()["added_b"] == "yes_b"
        assert seen.queryparam("added_q") == "yes_q"


# -- untrusted_lua = sandbox (Kong's default) -----------------------------------------------------
def test_sandbox_allows_type(gateway: Gateway) -> None:  # 2687
    seen = ok(
        send(gateway, "testLuaSandbox1.test", path="/", query={"user": "foo"}, content_type=FORM)
    )
    assert seen.header("x-added") == "string"


@pytest.mark.parametrize(
    ("host", "pattern"),
    [
        ("testLuaSandbox2.test", "attempt to index global 'string' (a nil value)"),  # 2704
        ("testLuaSandbox3.test", "require 'ngx.process' not allowed within sandbox"),  # 2725
    ],
)
def test_sandbox_refuses(gateway: Gateway, host: str, pattern: str) -> None:
    before = error_log(gateway).count(pattern)
    assert_500(gateway, host, {"user": "foo"})
    assert_logged(gateway, before, pattern)
