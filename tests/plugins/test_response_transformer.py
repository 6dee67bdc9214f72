"""response-transformer through a running gateway (Kong's 15-response-transformer spec)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import msgspec
import pytest

from fastkong.config import ConfigError, load_config
from fastkong.plugins.bundled.response_transformer import (
    ResponseTransformer,
    ResponseTransformerConfig,
    is_json_body,
    json_value,
)
from tests.helpers import Echo, Gateway

pytestmark = pytest.mark.integration

ECHO_KEYS = ["server", "method", "path", "query", "url", "headers", "body_length", "body_md5"]


def transform(**config: Any) -> list[dict[str, Any]]:
    return [{"name": "response-transformer", "config": config}]


ROUTES: dict[str, list[dict[str, Any]]] = {
    "remove": transform(remove={"headers": ["x-echo-server"], "json": ["server", "headers"]}),
    "rename": transform(
        rename={"headers": ["x-echo-server:x-server", "x-absent:x-nope"], "json": ["method:verb"]}
    ),
    "replace": transform(
        replace={
            "headers": ["x-echo-server:replaced", "x-absent:nope"],
            "json": ["method:PATCH", "body_length:nan", "query:yes", "absent:x"],
            "json_types": ["string", "number", "boolean"],
        }
    ),
    "add": transform(
        add={
            "headers": ["x-echo-server:nope", "x-added:yes:really"],
            "json": ["method:nope", "added:yes", "n:42", "f:1.5", "b:true", "s:a/b"],
            "json_types": ["string", "string", "number", "number", "boolean"],
        }
    ),
    "append": transform(
        append={
            "headers": ["x-echo-server:two", "x-new:1"],
            "json": ["path:/extra", "list:a", "list:7"],
            "json_types": ["string", "string", "number"],
        }
    ),
    "untyped": transform(remove={"headers": ["content-type"]}, add={"json": ["added:1"]}),
    "retyped": transform(
        replace={"headers": ["content-type:text/plain"]}, add={"json": ["added:1"]}
    ),
    "bytes": transform(remove={"json": ["server"]}, add={"headers": ["x-added:1"]}),
    "terminated": [
        *transform(add={"headers": ["x-added:1"], "json": ["extra:1"]}),
        {"name": "request-termination", "config": {"status_code": 403, "message": "Closed"}},
    ],
}


@pytest.fixture(scope="module")
def gateway(gateway_with: Callable[[str], Gateway], echo: Echo) -> Gateway:
    routes = [
        {"name": name, "paths": [f"/{name}"], "plugins": plugins}
        for name, plugins in ROUTES.items()
    ]
    routes.append(
        {
            "name": "status",
            "paths": ["/status"],
            "strip_path": False,
            "plugins": transform(remove={"json": ["headers"]}),
        }
    )
    config = {
        "_format_version": "3.0",
        "services": [{"name": "echo", "url": f"http://127.0.0.1:{echo.port}", "routes": routes}],
    }
    return gateway_with(json.dumps(config))


def transformed(r: httpx.Response) -> dict[str, Any]:
    """The JSON body, checked to be framed without the upstream's stale Content-Length."""
    length = r.headers.get("content-length")
    assert length is None or int(length) == len(r.content)
    body: dict[str, Any] = r.json()
    return body


def test_remove(gateway: Gateway) -> None:
    r = httpx.get(gateway.url("/remove"))
    assert r.status_code == 200
    assert "x-echo-server" not in r.headers
    assert list(transformed(r)) == [k for k in ECHO_KEYS if k not in ("server", "headers")]


def test_rename(gateway: Gateway) -> None:
    r = httpx.get(gateway.url("/rename"))
    assert "x-echo-server" not in r.headers
    assert r.headers["x-server"] == "echo-1"
    assert "x-nope" not in r.headers
    body = transformed(r)
    assert "method" not in body
    assert body["verb"] == "GET"
    assert list(body)[-1] == "verb"


def test_replace(gateway: Gateway) -> None:
    r = httpx.get(gateway.url("/replace"))
    assert r.headers["x-echo-server"] == "replaced"
    assert "x-absent" not in r.headers
    body = transformed(r)
    assert body["method"] == "PATCH"
    assert body["body_length"] == 0  # "nan" is not a number: the entry is skipped
    # "" is a value (only false counts as absent in Lua); json_types boolean: "yes" is false.
    assert body["query"] is False
    assert "absent" not in body


def test_add(gateway: Gateway) -> None:
    r = httpx.get(gateway.url("/add"))
    assert r.headers["x-echo-server"] == "echo-1"
    assert r.headers["x-added"] == "yes:really"
    body = transformed(r)
    assert body["method"] == "GET"
    assert {k: body[k] for k in ("added", "n", "f", "b", "s")} == {
        "added": "yes",
        "n": 42,
        "f": 1.5,
        "b": True,
        "s": "a/b",
    }


def test_append(gateway: Gateway) -> None:
    r = httpx.get(gateway.url("/append"))
    assert r.headers.get_list("x-echo-server") == ["echo-1", "two"]
    assert r.headers["x-new"] == "1"
    body = transformed(r)
    assert body["path"] == ["/", "/extra"]
    assert body["list"] == ["a", 7]


def test_non_json_body_is_untouched(gateway: Gateway) -> None:
    r = httpx.get(gateway.url("/bytes/bytes/1000"))
    assert r.status_code == 200
    assert r.headers["content-length"] == "1000"
    assert r.content == b"x" * 1000
    assert r.headers["x-added"] == "1"


def test_body_is_transformed_by_the_content_type_sent(gateway: Gateway) -> None:
    # Kong's body filter reads the Content-Type after the header edits: removed or replaced by
    # a non-JSON type, the JSON body goes out as the upstream sent it.
    for path in ("/untyped", "/retyped"):
        r = httpx.get(gateway.url(path))
        assert r.status_code == 200
        body = transformed(r)
        assert "added" not in body
        assert list(body) == ECHO_KEYS
    assert "content-type" not in httpx.get(gateway.url("/untyped")).headers
    assert httpx.get(gateway.url("/retyped")).headers["content-type"] == "text/plain"


def test_error_responses_from_upstream_are_transformed(gateway: Gateway) -> None:
    r = httpx.get(gateway.url("/status/500"))
    assert r.status_code == 500
    assert "headers" not in transformed(r)
    r = httpx.head(gateway.url("/status/200"))
    assert r.status_code == 200
    assert r.content == b""


def test_a_response_another_plugin_gave_is_transformed(gateway: Gateway) -> None:
    # Kong runs header_filter and body_filter on plugin exits too.
    r = httpx.get(gateway.url("/terminated"))
    assert r.status_code == 403
    assert r.headers["x-added"] == "1"
    assert r.json() == {"message": "Closed", "extra": "1"}
    assert r.headers["content-length"] == str(len(r.content))


# -- units -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        ("application/json", True),
        ("application/json; charset=utf-8", True),
        ("Application/JSON", True),
        ("application/problem+json", True),
        ("text/plain, application/json", True),
        ("application/jsonp", False),
        ("text/json", False),
        ("application/octet-stream", False),
        (None, False),
    ],
)
def test_is_json_body(content_type: str | None, expected: bool) -> None:
    assert is_json_body(content_type) is expected


def test_json_values() -> None:
    assert json_value('say "hi"', None) == 'say "hi"'
    assert json_value("a\\b", "string") == "a\\\\b"  # Kong's double encoding of backslashes
    assert json_value("0x10", "number") == 16
    assert json_value(" 2e3 ", "number") == 2000
    assert json_value("1.25", "number") == 1.25
    assert json_value("true", "boolean") is True
    assert json_value("yes", "boolean") is False


def test_transform_json_keeps_lua_semantics() -> None:
    config = msgspec.convert(
        {
            "rename": {"json": ["n:renamed"]},
            "replace": {"json": ["f:r", "z:r"]},
            "add": {"json": ["f:a", "m:a", "z:a"]},
        },
        ResponseTransformerConfig,
    )
    plugin = ResponseTransformer(config, None, None)
    out = plugin.transform_json(b'{"n": null, "f": false, "z": 0}')
    # null is a (truthy) value in Lua: renamed, replaced; false is absent: added, not replaced.
    assert json.loads(out) == {"f": "a", "z": "r", "renamed": None, "m": "a"}
    assert plugin.transform_json(b"[1, 2]") == b"[1, 2]"
    assert plugin.transform_json(b"not json") == b"not json"


# -- schema ------------------------------------------------------------------------------------
def test_config_defaults_and_validation() -> None:
    base = '_format_version: "3.0"\nplugins:\n'
    plugin = load_config(base + "- name: response-transformer\n").config.plugins[0]
    edit = {"json": [], "json_types": [], "headers": []}
    assert plugin.config == {
        "remove": {"json": [], "headers": []},
        "rename": {"json": [], "headers": []},
        "replace": edit,
        "add": edit,
        "append": edit,
    }
    config = {
        "add": {"json_types": ["int"], "headers": ["nocolon"], "json": ["x"]},
        "rename": {"headers": ["a:b c", "d e:f"]},
        "remove": {"json": "x"},
        "append": {"whatever": []},
    }
    doc = {
        "_format_version": "3.0",
        "plugins": [{"name": "response-transformer", "config": config}],
    }
    with pytest.raises(ConfigError) as info:
        load_config(json.dumps(doc))
    assert [f"{e.path}: {e.message}" for e in info.value.errors] == [
        "plugins[0].config.add.json_types[0]: expected one of: boolean, number, string",
        "plugins[0].config.add.headers[0]: invalid value: nocolon",
        "plugins[0].config.add.json[0]: invalid value: x",
        "plugins[0].config.rename.headers[0]: 'b c' is not a valid header",
        "plugins[0].config.rename.headers[1]: 'd e' is not a valid header",
        "plugins[0].config.remove.json: expected an array",
        "plugins[0].config.append.whatever: unknown field",
    ]
