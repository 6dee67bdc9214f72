"""request-transformer through a running gateway (Kong's spec/03-plugins/36-request-transformer)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from fastkong.config import ConfigError, load_config
from fastkong.plugins.bundled._templates import Env, Template, TemplateError
from fastkong.plugins.bundled.request_transformer import Multipart, encode_query
from tests.helpers import Echo, Gateway

pytestmark = pytest.mark.integration

UNEXPECTED = "An unexpected error occurred"
CAPTURES = "/user1/(?<user1>\\w+)/user2/(?<user2>\\S+)"
JSON = {"content-type": "application/json"}
FORM = {"content-type": "application/x-www-form-urlencoded"}


def transform(**config: Any) -> list[dict[str, Any]]:
    return [{"name": "request-transformer", "config": config}]


ROUTES: dict[str, tuple[str, list[dict[str, Any]]]] = {
    "remove": (
        "/remove",
        transform(
            remove={
                "headers": ["x-to-remove"],
                "querystring": ["toremovequery"],
                "body": ["toremoveform"],
            }
        ),
    ),
    "rename": (
        "/rename",
        transform(
            rename={
                "headers": ["x-to-rename:x-is-renamed"],
                "querystring": ["originalparam:renamedparam"],
                "body": ["originalparam:renamedparam"],
            }
        ),
    ),
    "replace": (
        "/replace",
        transform(replace={"headers": ["h1:v1"], "querystring": ["q1:v1"], "body": ["p1:v1"]}),
    ),
    "add": (
        "/add",
        transform(
            add={
                "headers": ["h1:v1", "x-colon:a:b"],
                "querystring": ["q1:v1", "q2:a b"],
                "body": ["p1:v1"],
            }
        ),
    ),
    "append": (
        "/append",
        transform(
            append={
                "headers": ["h1:v1", "h1:v2", "h2:v1"],
                "querystring": ["q1:v1", "q1:v2", "q2:v1"],
                "body": ["p1:v1", "p1:v2", "p2:v1"],
            }
        ),
    ),
    "method": ("/method", transform(http_method="POST")),
    "method-get": ("/method-get", transform(http_method="GET")),
    "remove-then-add": (
        "/remove-then-add",
        transform(
            remove={"headers": ["Authorization"]}, add={"headers": ["Authorization:Basic test"]}
        ),
    ),
    "switch-type": (
        "/switch-type",
        transform(
            http_method="POST",
            add={"headers": ["Content-Type:application/json"], "body": ["body:somecontent"]},
        ),
    ),
    "uri-utf8": ("/uri-utf8", transform(replace={"uri": "/requests/t\u00e9st"})),
    # -- templates
    "tpl-query": (
        f"~/tpl-query{CAPTURES}",
        transform(
            add={
                "querystring": [
                    "uri_param1:$(uri_captures.user1)",
                    "uri_param2[some_index][1]:$(uri_captures.user2)",
                ]
            }
        ),
    ),
    "tpl-uri": (
        f"~/tpl-uri{CAPTURES}",
        transform(
            replace={"uri": "/requests/user2/$(uri_captures.user2)/user1/$(uri_captures.user1)"}
        ),
    ),
    "tpl-default": (
        "~/tpl-default(/user1/(?<user1>\\w+))?",
        transform(
            add={
                "querystring": [
                    "uri_param1:$(uri_captures.user1 or 'default1')",
                    "uri_param2:$(uri_captures.user2 or 'default2')",
                ]
            }
        ),
    ),
    "tpl-arith": (
        f"~/tpl-arith{CAPTURES}",
        transform(replace={"uri": "/x/$(10 * uri_captures.user1)"}),
    ),
    "tpl-index": ("~/tpl-index/(\\w+)", transform(replace={"uri": "/requests$(uri_captures[0])"})),
    "tpl-headers": (
        f"~/tpl-headers{CAPTURES}",
        transform(
            add={
                "querystring": ["uri_param1:$(uri_captures.user1)", "uri_param2:$(headers.host)"],
                "headers": ["x-test-header:$(query_params.q1)"],
            },
            remove={"querystring": ["q1"]},
        ),
    ),
    "tpl-removed": (
        f"~/tpl-removed{CAPTURES}",
        transform(
            replace={"querystring": ["q2:$(headers['x-remove-header'])"]},
            add={
                "querystring": ["q1:$(uri_captures.user1)"],
                "headers": ["x-test-header:$(headers['x-remove-header'])"],
            },
            remove={"headers": ["x-remove-header"]},
        ),
    ),
    "tpl-replaced": (
        f"~/tpl-replaced{CAPTURES}",
        transform(
            replace={
                "querystring": ["q2:$(headers['x-replace-header'])"],
                "headers": ["x-replace-header:the new value"],
            },
            add={
                "querystring": ["q1:$(uri_captures.user1)"],
                "headers": ["x-test-header:$(headers['x-replace-header'])"],
            },
        ),
    ),
    "tpl-escape": (
        f"~/tpl-escape{CAPTURES}",
        transform(add={"querystring": ["q1:$('$(uri_captures.user1)')"]}),
    ),
    "tpl-bytes": (
        "/tpl-bytes",
        transform(
            add={
                "headers": ["x-copy:$(query_params.name)", "x-same:$(headers.x_src)"],
                "querystring": ["from-header:$(headers.x_src)"],
            }
        ),
    ),
    "tpl-error": ("/tpl-error", transform(add={"querystring": ["q1:$(ERROR())"]})),
    "tpl-call-nil": (
        "/tpl-call-nil",
        transform(add={"headers": ['x-user-agent:$(foo(headers["User-Agent"]))']}),
    ),
    "tpl-write": (
        "/tpl-write",
        transform(add={"headers": ["X-Write-Attempt:$(shared.written = true)"]}),
    ),
    "tpl-type": (
        "/tpl-type",
        transform(
            add={
                "headers": [
                    'X-Foo-Transformed:$(type(headers["X-Foo"]) == "table" and '
                    'headers["X-Foo"][1] .. "-first" or headers["X-Foo"])'
                ]
            }
        ),
    ),
}


@pytest.fixture(scope="module")
def gateway(gateway_with: Callable[[str], Gateway], echo: Echo) -> Gateway:
    routes = [
        {"name": name, "paths": [path], "strip_path": False, "plugins": plugins}
        for name, (path, plugins) in ROUTES.items()
    ]
    config = {
        "_format_version": "3.0",
        "services": [{"name": "echo", "url": f"http://127.0.0.1:{echo.port}", "routes": routes}],
    }
    return gateway_with(json.dumps(config))


def upstream(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    body["h"] = dict(body["headers"])
    return body


def header_lines(echoed: dict[str, Any], name: str) -> list[str]:
    """The values of every ``name`` header line the upstream received, in order."""
    return [value for key, value in echoed["headers"] if key == name]


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def assert_body(body: dict[str, Any], expected: bytes) -> None:
    assert body["body_md5"] == md5(expected), expected
    assert body["h"]["content-length"] == str(len(expected))


def multipart(fields: list[tuple[str, str]], boundary: str = "XyZ") -> bytes:
    out = b""
    for name, value in fields:
        out += (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        ).encode()
    return out + f"--{boundary}--\r\n".encode()


MULTIPART = {"content-type": "multipart/form-data; boundary=XyZ"}


def assert_500(r: httpx.Response) -> None:
    assert r.status_code == 500
    assert r.json() == {"message": UNEXPECTED, "request_id": r.headers["x-kong-request-id"]}


# -- remove ------------------------------------------------------------------------------------
def test_remove(gateway: Gateway) -> None:
    r = upstream(
        httpx.get(
            gateway.url("/remove?toremovequery=yes&nottoremove=yes"),
            headers={"x-to-remove": "true", "x-another-header": "true"},
        )
    )
    assert "x-to-remove" not in r["h"]
    assert r["h"]["x-another-header"] == "true"
    assert r["query"] == "nottoremove=yes"


@pytest.mark.parametrize(
    ("headers", "sent", "expected"),
    [
        (FORM, b"toremoveform=yes&nottoremove=yes", b"nottoremove=yes"),
        (JSON, b'{"toremoveform": "yes", "nottoremove": "yes"}', b'{"nottoremove":"yes"}'),
        (
            MULTIPART,
            multipart([("toremoveform", "yes"), ("nottoremove", "yes")]),
            multipart([("nottoremove", "yes")]),
        ),
    ],
)
def test_remove_body(
    gateway: Gateway, headers: dict[str, str], sent: bytes, expected: bytes
) -> None:
    assert_body(
        upstream(httpx.post(gateway.url("/remove"), content=sent, headers=headers)), expected
    )


def test_body_of_another_type_is_untouched(gateway: Gateway) -> None:
    sent = b"toremoveform=yes"
    r = upstream(
        httpx.post(gateway.url("/remove"), content=sent, headers={"content-type": "text/plain"})
    )
    assert_body(r, sent)
    r = upstream(httpx.post(gateway.url("/remove"), content=b"{not json", headers=JSON))
    assert_body(r, b"{not json")


# -- rename ------------------------------------------------------------------------------------
def test_rename(gateway: Gateway) -> None:
    r = upstream(
        httpx.get(
            gateway.url("/rename?originalparam=yes&nottorename=yes"),
            headers={"x-to-rename": "true"},
        )
    )
    assert "x-to-rename" not in r["h"]
    assert r["h"]["x-is-renamed"] == "true"
    assert r["query"] == "nottorename=yes&renamedparam=yes"
    r = upstream(httpx.get(gateway.url("/rename?nottorename=yes")))
    assert r["query"] == "nottorename=yes"
    assert "x-is-renamed" not in r["h"]


@pytest.mark.parametrize(
    ("headers", "sent", "expected"),
    [
        (FORM, b"originalparam=yes&nottorename=yes", b"nottorename=yes&renamedparam=yes"),
        (
            JSON,
            b'{"originalparam": "yes", "nottorename": "yes"}',
            b'{"nottorename":"yes","renamedparam":"yes"}',
        ),
        (
            MULTIPART,
            multipart([("originalparam", "yes"), ("nottorename", "yes")]),
            multipart([("nottorename", "yes"), ("renamedparam", "yes")]),
        ),
    ],
)
def test_rename_body(
    gateway: Gateway, headers: dict[str, str], sent: bytes, expected: bytes
) -> None:
    assert_body(
        upstream(httpx.post(gateway.url("/rename"), content=sent, headers=headers)), expected
    )


# -- replace -----------------------------------------------------------------------------------
def test_replace_only_what_is_present(gateway: Gateway) -> None:
    r = upstream(httpx.get(gateway.url("/replace?q1=old&q2=kept"), headers={"h1": "old"}))
    assert r["h"]["h1"] == "v1"
    assert r["query"] == "q1=v1&q2=kept"
    r = upstream(httpx.get(gateway.url("/replace?q2=kept")))
    assert "h1" not in r["h"]
    assert r["query"] == "q2=kept"


@pytest.mark.parametrize(
    ("headers", "sent", "expected"),
    [
        (FORM, b"p1=old&p2=kept", b"p1=v1&p2=kept"),
        (FORM, b"p2=kept", b"p2=kept"),
        (JSON, b'{"p1": "old", "p2": "kept"}', b'{"p1":"v1","p2":"kept"}'),
        (JSON, b'{"p1": false}', b'{"p1": false}'),  # false is "absent": untouched
        (
            MULTIPART,
            multipart([("p1", "old"), ("p2", "kept")]),
            multipart([("p2", "kept"), ("p1", "v1")]),
        ),
    ],
)
def test_replace_body(
    gateway: Gateway, headers: dict[str, str], sent: bytes, expected: bytes
) -> None:
    assert_body(
        upstream(httpx.post(gateway.url("/replace"), content=sent, headers=headers)), expected
    )


# -- add ---------------------------------------------------------------------------------------
def test_add_only_what_is_absent(gateway: Gateway) -> None:
    r = upstream(httpx.get(gateway.url("/add")))
    assert r["h"]["h1"] == "v1"
    assert r["h"]["x-colon"] == "a:b"
    assert r["query"] == "q1=v1&q2=a%20b"
    r = upstream(httpx.get(gateway.url("/add?q1=mine"), headers={"h1": "mine"}))
    assert r["h"]["h1"] == "mine"
    assert r["query"] == "q1=mine&q2=a%20b"


@pytest.mark.parametrize(
    ("headers", "sent", "expected"),
    [
        (FORM, b"", b"p1=v1"),
        (FORM, b"p1=mine&x=a+b", b"p1=mine&x=a+b"),  # nothing added: sent as it came
        (FORM, b"x=a+b&f", b"x=a%20b&f&p1=v1"),
        (JSON, b"", b'{"p1":"v1"}'),
        (JSON, b'{"x": [1, 2]}', b'{"x":[1,2],"p1":"v1"}'),
        (JSON, b'{"p1": false}', b'{"p1":"v1"}'),
        (MULTIPART, multipart([("x", "1")]), multipart([("x", "1"), ("p1", "v1")])),
    ],
)
def test_add_body(gateway: Gateway, headers: dict[str, str], sent: bytes, expected: bytes) -> None:
    assert_body(upstream(httpx.post(gateway.url("/add"), content=sent, headers=headers)), expected)


# -- append ------------------------------------------------------------------------------------
def test_append(gateway: Gateway) -> None:
    r = upstream(httpx.get(gateway.url("/append?q1=old")))
    assert r["query"] == "q1=old&q1=v1&q1=v2&q2=v1"
    # One header line per value, as Kong sends them.
    assert header_lines(r, "h1") == ["v1", "v2"]
    assert header_lines(r, "h2") == ["v1"]
    r = upstream(httpx.get(gateway.url("/append"), headers={"h1": "old"}))
    assert header_lines(r, "h1") == ["old", "v1", "v2"]
    assert r["query"] == "q1=v1&q1=v2&q2=v1"


@pytest.mark.parametrize(
    ("headers", "sent", "expected"),
    [
        (FORM, b"p1=old", b"p1=old&p1=v1&p1=v2&p2=v1"),
        (JSON, b'{"p1": "old"}', b'{"p1":["old","v1","v2"],"p2":["v1"]}'),
        (JSON, b'{"p1": ["a"], "p2": 7}', b'{"p1":["a","v1","v2"],"p2":["v1"]}'),
    ],
)
def test_append_body(
    gateway: Gateway, headers: dict[str, str], sent: bytes, expected: bytes
) -> None:
    assert_body(
        upstream(httpx.post(gateway.url("/append"), content=sent, headers=headers)), expected
    )


# -- method, uri, order ------------------------------------------------------------------------
def test_http_method(gateway: Gateway) -> None:
    assert upstream(httpx.get(gateway.url("/method")))["method"] == "POST"


def test_method_get_moves_form_arguments_to_the_query(gateway: Gateway) -> None:
    sent = b"a=1&b=x+y"
    r = upstream(httpx.post(gateway.url("/method-get?a=0"), content=sent, headers=FORM))
    assert r["method"] == "GET"
    assert r["query"] == "a=0&a=1&b=x%20y"
    assert_body(r, sent)


def test_remove_then_add_a_header(gateway: Gateway) -> None:
    r = upstream(httpx.get(gateway.url("/remove-then-add"), headers={"authorization": "Bearer x"}))
    assert r["h"]["authorization"] == "Basic test"
    r = upstream(httpx.get(gateway.url("/remove-then-add")))
    assert r["h"]["authorization"] == "Basic test"


def test_content_type_added_before_the_body_step(gateway: Gateway) -> None:
    r = upstream(httpx.get(gateway.url("/switch-type")))
    assert r["method"] == "POST"
    assert r["h"]["content-type"] == "application/json"
    assert_body(r, b'{"body":"somecontent"}')


def test_replace_uri_is_escaped(gateway: Gateway) -> None:
    assert upstream(httpx.get(gateway.url("/uri-utf8?x=1")))["url"] == "/requests/t%C3%A9st?x=1"


# -- templates ---------------------------------------------------------------------------------
def test_template_querystring(gateway: Gateway) -> None:
    r = upstream(httpx.get(gateway.url("/tpl-query/user1/foo/user2/bar?q1=20")))
    assert r["url"] == (
        "/tpl-query/user1/foo/user2/bar?q1=20&uri_param1=foo&uri_param2%5Bsome_index%5D%5B1%5D=bar"
    )


def test_template_uri(gateway: Gateway) -> None:
    r = upstream(httpx.get(gateway.url("/tpl-uri/user1/foo/user2/bar?q=1")))
    assert r["url"] == "/requests/user2/bar/user1/foo?q=1"
    r = upstream(httpx.get(gateway.url("/tpl-index/abc")))
    assert r["path"] == "/requests/tpl-index/abc"


def test_template_defaults(gateway: Gateway) -> None:
    r = upstream(httpx.get(gateway.url("/tpl-default?q1=20")))
    assert r["query"] == "q1=20&uri_param1=default1&uri_param2=default2"
    r = upstream(httpx.get(gateway.url("/tpl-default/user1/joe")))
    assert r["query"] == "uri_param1=joe&uri_param2=default2"


def test_template_reads_headers_and_query(gateway: Gateway) -> None:
    r = upstream(httpx.get(gateway.url("/tpl-headers/user1/foo/user2/bar?q1=20")))
    assert r["query"] == f"uri_param1=foo&uri_param2=127.0.0.1%3A{gateway.port}"
    assert r["h"]["x-test-header"] == "20"


def test_template_reads_a_removed_header(gateway: Gateway) -> None:
    r = upstream(
        httpx.get(
            gateway.url("/tpl-removed/user1/foo/user2/bar?q2=20"),
            headers={"x-remove-header": "its a test"},
        )
    )
    assert "x-remove-header" not in r["h"]
    assert r["query"] == "q1=foo&q2=its%20a%20test"
    assert r["h"]["x-test-header"] == "its a test"


def test_template_reads_the_old_value_of_a_replaced_header(gateway: Gateway) -> None:
    r = upstream(
        httpx.get(
            gateway.url("/tpl-replaced/user1/foo/user2/bar?q2=20"),
            headers={"x-replace-header": "the old value"},
        )
    )
    assert r["query"] == "q1=foo&q2=the%20old%20value"
    assert r["h"]["x-test-header"] == "the old value"
    assert r["h"]["x-replace-header"] == "the new value"


def test_template_can_be_escaped(gateway: Gateway) -> None:
    r = upstream(httpx.get(gateway.url("/tpl-escape/user1/foo/user2/bar?q2=20")))
    assert r["query"] == "q1=%24%28uri_captures.user1%29&q2=20"


def test_template_values_keep_their_bytes(gateway: Gateway) -> None:
    def latin1(text: str) -> str:  # how the echo upstream shows header bytes
        return text.encode().decode("latin-1")

    r = upstream(
        httpx.get(
            gateway.url("/tpl-bytes?name=%C3%A9t%C3%A9"), headers={"x-src": "\u00fcn".encode()}
        )
    )
    assert r["query"] == "from-header=%C3%BCn&name=%C3%A9t%C3%A9"
    assert r["h"]["x-copy"] == latin1("\u00e9t\u00e9")
    assert r["h"]["x-same"] == latin1("\u00fcn")
    r = upstream(httpx.get(gateway.url("/tpl-bytes?name=%FF"), headers={"x-src": b"\xfe"}))
    assert r["query"] == "from-header=%FE&name=%FF"
    assert r["h"]["x-copy"] == "\u00ff"
    assert r["h"]["x-same"] == "\u00fe"


def test_template_type_function(gateway: Gateway) -> None:
    r = upstream(httpx.get(gateway.url("/tpl-type"), headers=[("X-Foo", "1"), ("X-Foo", "2")]))
    assert r["h"]["x-foo-transformed"] == "1-first"
    r = upstream(httpx.get(gateway.url("/tpl-type"), headers={"X-Foo": "1"}))
    assert r["h"]["x-foo-transformed"] == "1"


@pytest.mark.parametrize(
    "path",
    ["/tpl-arith/user1/foo/user2/bar", "/tpl-error", "/tpl-call-nil", "/tpl-write"],
)
def test_template_errors_are_500(gateway: Gateway, path: str) -> None:
    assert_500(httpx.get(gateway.url(path)))


def test_template_engine() -> None:
    env = Env({"shared": lambda: {"my_version": "1.2.3"}, "headers": lambda: None})
    assert Template("v$(shared.my_version)").render(env) == "v1.2.3"
    assert Template("$(1 + 2 * 3 .. '')$(2^10)$(7 % 3)$(nil)$(false)$(true)").render(env) == (
        "710241true"
    )
    assert Template("$(#'abc' == 3 and 'y' or 'n')$(not nil)").render(env) == "ytrue"
    assert Template("$(tonumber('0x10') + tonumber(' 2 '))$(tostring(1/2))").render(env) == "180.5"
    assert Template("$(unbalanced").render(env) == "$(unbalanced"
    assert Template("plain").static == "plain"
    with pytest.raises(TemplateError, match="attempt to index global 'headers'"):
        Template("$(headers.x)").render(env)
    with pytest.raises(TemplateError, match="unexpected symbol"):
        Template("$(function() end)")


def test_encodings() -> None:
    assert encode_query({"b": ["2", True], "a": "x y", "c": "", "d": False}) == b"a=x%20y&b=2&b&c="
    parts = Multipart(multipart([("a", "1"), ("b", "2")]), b"XyZ")
    assert repr(parts) == "<Multipart ['a', 'b']>"
    assert parts.encode() == multipart([("a", "1"), ("b", "2")])


# -- schema ------------------------------------------------------------------------------------
def test_config_defaults_and_validation() -> None:
    base = '_format_version: "3.0"\nplugins:\n'
    plugin = load_config(base + "- name: request-transformer\n").config.plugins[0]
    empty = {"body": [], "headers": [], "querystring": []}
    assert plugin.config == {
        "http_method": None,
        "remove": empty,
        "rename": empty,
        "replace": {**empty, "uri": None},
        "add": empty,
        "append": empty,
    }
    config = {
        "http_method": "HELLO!",
        "add": {
            "querystring": ["uri_param2:", "uri_param2:$(uri_captures user2)", "ok:$(x)"],
            "headers": ["bad name:1", "novalue", "x:$(not checked until used"],
        },
        "rename": {"headers": ["a:b c"], "body": ["a"]},
        "remove": {"headers": ["x y"]},
        "replace": {"uri": 1},
    }
    doc = {"_format_version": "3.0", "plugins": [{"name": "request-transformer", "config": config}]}
    with pytest.raises(ConfigError) as info:
        load_config(json.dumps(doc))
    assert [f"{e.path}: {e.message}" for e in info.value.errors] == [
        "plugins[0].config.http_method: invalid value: HELLO!",
        "plugins[0].config.add.querystring[0]: key 'uri_param2' has no value",
        "plugins[0].config.add.querystring[1]: value '$(uri_captures user2)' is not in supported "
        "format, error:[string \"TMP\"]:1: ')' expected near 'user2'",
        "plugins[0].config.add.headers[0]: 'bad name' is not a valid header",
        "plugins[0].config.add.headers[1]: invalid value: novalue",
        "plugins[0].config.rename.headers[0]: 'b c' is not a valid header",
        "plugins[0].config.rename.body[0]: key 'a' has no value",
        "plugins[0].config.remove.headers[0]: 'x y' is not a valid header",
        "plugins[0].config.replace.uri: expected a string",
    ]
