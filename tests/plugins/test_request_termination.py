"""request-termination through a running gateway (Kong's spec/03-plugins/14-request-termination)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from fastkong.config import ConfigError, load_config
from tests.helpers import Echo, Gateway

pytestmark = pytest.mark.integration

MAINTENANCE = "<html><body><h1>Service is down for maintenance</h1></body></html>"


def terminate(**config: Any) -> list[dict[str, Any]]:
    return [{"name": "request-termination", "config": config}]


ROUTES: dict[str, list[dict[str, Any]]] = {
    "default": terminate(),
    "not-found": terminate(status_code=404),
    "custom": terminate(status_code=406, message="Invalid"),
    "teapot": terminate(status_code=418),
    "body": terminate(body=MAINTENANCE),
    "body-type": terminate(status_code=451, content_type="text/html", body=MAINTENANCE),
    "body-json": terminate(body='{"code": 1, "message": "Service unavailable"}'),
    "no-content": terminate(status_code=204),
    "trigger": terminate(echo=True, trigger="gimme-an-echo", status_code=404),
    "trigger-message": terminate(trigger="X_Stop", message="stopped"),
}


@pytest.fixture(scope="module")
def gateway(gateway_with: Callable[[str], Gateway], echo: Echo) -> Gateway:
    routes: list[dict[str, Any]] = [
        {"name": name, "paths": [f"/{name}"], "plugins": plugins}
        for name, plugins in ROUTES.items()
    ]
    routes.append(
        {
            "name": "echo",
            "paths": ["~/(?<parameter>[^#?/]+)/200"],
            "hosts": ["echo.test"],
            "strip_path": False,
            "plugins": terminate(echo=True, status_code=404),
        }
    )
    config = {
        "_format_version": "3.0",
        "services": [{"name": "echo", "url": f"http://127.0.0.1:{echo.port}", "routes": routes}],
        "routes": [
            {"name": "serviceless", "paths": ["/serviceless"], "plugins": terminate()},
        ],
    }
    return gateway_with(json.dumps(config))


def get(gateway: Gateway, path: str, **kw: Any) -> httpx.Response:
    r = httpx.get(gateway.url(path), **kw)
    assert "x-echo-server" not in r.headers
    return r


# -- status and message ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("/default", 503, "Service unavailable"),
        ("/serviceless", 503, "Service unavailable"),
        ("/not-found", 404, "Not found"),
        ("/custom", 406, "Invalid"),
    ],
)
def test_status_and_message(gateway: Gateway, path: str, status: int, message: str) -> None:
    r = get(gateway, path)
    assert r.status_code == status
    assert r.json() == {"message": message}  # kong.response.exit: no request_id
    assert r.headers["content-type"] == "application/json; charset=utf-8"
    assert r.headers["server"].startswith("fastkong/")


def test_status_without_default_message_has_an_empty_body(gateway: Gateway) -> None:
    r = get(gateway, "/teapot")
    assert r.status_code == 418
    assert r.content == b""
    assert r.headers["content-length"] == "0"


def test_204_has_no_body(gateway: Gateway) -> None:
    r = get(gateway, "/no-content")
    assert r.status_code == 204
    assert r.content == b""
    assert "content-length" not in r.headers


# -- status and body ---------------------------------------------------------------------------
def test_body(gateway: Gateway) -> None:
    r = get(gateway, "/body")
    assert r.status_code == 503
    assert r.text == MAINTENANCE
    assert "content-type" not in r.headers  # Kong's proxy location has default_type ''
    r = get(gateway, "/body-type")
    assert r.status_code == 451
    assert r.text == MAINTENANCE
    assert r.headers["content-type"] == "text/html"
    r = get(gateway, "/body-json")
    assert r.status_code == 503
    assert r.json() == {"code": 1, "message": "Service unavailable"}


# -- echo and trigger --------------------------------------------------------------------------
def test_echo(gateway: Gateway) -> None:
    r = httpx.request(
        "GET",
        gateway.url("/status/200?hello=there&flag&list=1&list=2"),
        headers={"host": "echo.test", "x-multi": "a", "accept-encoding": "identity"},
        content=b"cool body",
    )
    assert r.status_code == 404
    body = r.json()
    assert body["message"] == "Not found"
    assert body["matched_route"]["name"] == "echo"
    assert body["matched_route"]["hosts"] == ["echo.test"]
    assert body["matched_route"]["service"] == {"id": body["matched_service"]["id"]}
    assert body["matched_service"]["name"] == "echo"
    assert set(body["kong"]) == {"node_id", "worker_pid", "hostname"}
    assert body["kong"]["worker_pid"] in gateway.worker_pids()
    request = body["request"]
    request["headers"].pop("user-agent")
    assert request == {
        "headers": {
            "accept": "*/*",
            "accept-encoding": "identity",
            "connection": "keep-alive",
            "content-length": "9",
            "host": "echo.test",
            "x-multi": "a",
        },
        "host": "echo.test",
        "method": "GET",
        "path": "/status/200",
        "port": gateway.port,
        "query": {"hello": "there", "flag": True, "list": ["1", "2"]},
        "raw_body": "cool body",
        "scheme": "http",
        "uri_captures": {"named": {"parameter": "status"}, "unnamed": ["status"]},
    }


def test_echo_decodes_json_and_form_bodies(gateway: Gateway) -> None:
    url = gateway.url("/status/200")
    r = httpx.post(url, headers={"host": "echo.test"}, json={"a": [1, 2]})
    assert r.json()["request"]["body"] == {"a": [1, 2]}
    r = httpx.post(url, headers={"host": "echo.test"}, data={"a": "1 2", "b": "x"})
    assert r.json()["request"]["body"] == {"a": "1 2", "b": "x"}


def test_echo_gives_back_bytes_that_are_not_utf8(gateway: Gateway) -> None:
    """A query value the client sent in Latin-1 comes back as the same bytes (as Kong's cjson
    writes them), not as a 500."""
    r = httpx.get(gateway.url("/status/200?name=caf%E9"), headers={"host": "echo.test"})
    assert r.status_code == 404
    assert b'"name":"caf\xe9"' in r.content


def test_trigger_not_given_proxies(gateway: Gateway) -> None:
    r = httpx.get(gateway.url("/trigger"))
    assert r.status_code == 200
    assert r.headers["x-echo-server"] == "echo-1"


def test_trigger_in_a_header(gateway: Gateway) -> None:
    r = get(gateway, "/trigger?hello=there", headers={"Gimme-An-Echo": "anything will do"})
    assert r.status_code == 404
    request = r.json()["request"]
    assert request["headers"]["gimme-an-echo"] == "anything will do"
    assert request["query"] == {"hello": "there"}
    assert request["uri_captures"] == {"named": {}, "unnamed": []}


def test_trigger_in_the_query(gateway: Gateway) -> None:
    r = get(gateway, "/trigger?hello=there&gimme-an-echo=anything")
    assert r.status_code == 404
    assert r.json()["request"]["query"] == {"hello": "there", "gimme-an-echo": "anything"}


def test_trigger_header_folds_case_and_underscores(gateway: Gateway) -> None:
    r = get(gateway, "/trigger-message", headers={"x-stop": "1"})
    assert (r.status_code, r.json()) == (503, {"message": "stopped"})
    r = get(gateway, "/trigger-message?X_Stop")
    assert r.status_code == 503
    assert httpx.get(gateway.url("/trigger-message?x_stop")).status_code == 200


# -- schema ------------------------------------------------------------------------------------
def test_config_defaults_and_validation() -> None:
    base = '_format_version: "3.0"\nplugins:\n'
    plugin = load_config(base + "- name: request-termination\n").config.plugins[0]
    assert plugin.config == {
        "status_code": 503,
        "message": None,
        "content_type": None,
        "body": None,
        "echo": False,
        "trigger": None,
    }
    plugins = [
        {"status_code": "abcd"},
        {"status_code": 99},
        {"status_code": 600},
        {"message": "error", "body": "test"},
        {"message": "error", "content_type": "text/html", "body": "test"},
        {"message": "error", "content_type": "text/html"},
        {"content_type": "text/html"},
        {"echo": True, "content_type": "text/html", "body": "<h1>Not found</h1>"},
        {"echo": True, "trigger": "bad header"},
    ]
    doc = {
        "_format_version": "3.0",
        "plugins": [
            {"name": "request-termination", "route": f"r{i}", "config": config}
            for i, config in enumerate(plugins)
        ],
        "routes": [{"name": f"r{i}", "paths": [f"/{i}"]} for i in range(len(plugins))],
    }
    with pytest.raises(ConfigError) as info:
        load_config(json.dumps(doc))
    assert [f"{e.path}: {e.message}" for e in info.value.errors] == [
        "plugins[0].config.status_code: expected an integer",
        "plugins[1].config.status_code: value should be between 100 and 599",
        "plugins[2].config.status_code: value should be between 100 and 599",
        "plugins[3].config: message cannot be used with content_type or body",
        "plugins[4].config: message cannot be used with content_type or body",
        "plugins[5].config: message cannot be used with content_type or body",
        "plugins[6].config: content_type requires a body",
        "plugins[7].config: echo cannot be used with content_type and body",
        "plugins[8].config.trigger: bad header name 'bad header', allowed characters are "
        "A-Z, a-z, 0-9, '_', and '-'",
    ]
