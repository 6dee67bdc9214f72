"""correlation-id through a running gateway (Kong's spec/03-plugins/11-correlation-id)."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from fastkong.config import ConfigError, load_config
from tests.helpers import Echo, Gateway, free_port

pytestmark = pytest.mark.integration

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
UUID_COUNTER = re.compile(rf"({UUID})#(\d+)")
TRACKER = re.compile(r"\d+\.\d+\.\d+\.\d+-\d+-\d+-\d+-\d+-\d{10}\.\d{3}")


def correlation(**config: Any) -> list[dict[str, Any]]:
    return [{"name": "correlation-id", "config": config}]


ROUTES: dict[str, list[dict[str, Any]]] = {
    "counter": correlation(),
    "uuid": correlation(generator="uuid"),
    "tracker": correlation(generator="tracker"),
    "custom": correlation(header_name="Foo-Bar-Id"),
    "echo": correlation(generator="uuid", echo_downstream=True),
    "echo-terminated": [
        *correlation(generator="uuid", echo_downstream=True),
        {"name": "request-termination", "config": {"status_code": 418}},
    ],
}


@pytest.fixture(scope="module")
def gateway(gateway_with: Callable[[str], Gateway], echo: Echo) -> Gateway:
    routes = [
        {"name": name, "paths": [f"/{name}"], "plugins": plugins}
        for name, plugins in ROUTES.items()
    ]
    config = {
        "_format_version": "3.0",
        "services": [
            {"name": "echo", "url": f"http://127.0.0.1:{echo.port}", "routes": routes},
            {
                "name": "dead",
                "url": f"http://127.0.0.1:{free_port()}",
                "retries": 0,
                "routes": [
                    {
                        "name": "dead",
                        "paths": ["/dead"],
                        "plugins": correlation(generator="uuid", echo_downstream=True),
                    }
                ],
            },
        ],
    }
    return gateway_with(json.dumps(config))


def sent_upstream(gateway: Gateway, path: str, name: str = "kong-request-id", **kw: Any) -> str:
    r = httpx.get(gateway.url(path), **kw)
    assert r.status_code == 200, r.text
    values = [v for k, v in r.json()["headers"] if k == name]
    assert len(values) == 1, values
    return str(values[0])


def test_uuid_counter_increments(gateway: Gateway) -> None:
    first = UUID_COUNTER.fullmatch(sent_upstream(gateway, "/counter"))
    second = UUID_COUNTER.fullmatch(sent_upstream(gateway, "/counter"))
    assert first is not None and second is not None
    assert first.group(1) == second.group(1)  # one uuid per worker
    assert int(second.group(2)) == int(first.group(2)) + 1


def test_uuid_is_unique(gateway: Gateway) -> None:
    ids = {sent_upstream(gateway, "/uuid") for _ in range(3)}
    assert len(ids) == 3
    assert all(re.fullmatch(UUID, i) for i in ids)


def test_tracker(gateway: Gateway) -> None:
    first, second = sent_upstream(gateway, "/tracker"), sent_upstream(gateway, "/tracker")
    assert TRACKER.fullmatch(first), first
    assert TRACKER.fullmatch(second)
    assert first != second
    assert first.startswith(f"127.0.0.1-{gateway.port}-")


def test_custom_header_name(gateway: Gateway) -> None:
    assert UUID_COUNTER.fullmatch(sent_upstream(gateway, "/custom", "foo-bar-id"))


def test_existing_header_is_kept(gateway: Gateway) -> None:
    assert sent_upstream(gateway, "/uuid", headers={"Kong-Request-ID": "foobar"}) == "foobar"


def test_blank_header_is_replaced(gateway: Gateway) -> None:
    found = sent_upstream(gateway, "/uuid", headers={"Kong-Request-ID": ""})
    assert re.fullmatch(UUID, found)
    # A value of spaces only (which httpx refuses to send) is blank too.
    with socket.create_connection(("127.0.0.1", gateway.port)) as sock:
        sock.sendall(
            b"GET /uuid HTTP/1.1\r\nHost: x\r\nKong-Request-ID:   \t \r\nConnection: close\r\n\r\n"
        )
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert re.fullmatch(UUID, dict(json.loads(body)["headers"])["kong-request-id"])


def test_echo_downstream(gateway: Gateway) -> None:
    r = httpx.get(gateway.url("/echo"))
    upstream = dict(r.json()["headers"])["kong-request-id"]
    assert re.fullmatch(UUID, upstream)
    assert r.headers["kong-request-id"] == upstream
    r = httpx.get(gateway.url("/echo"), headers={"kong-request-id": "my very personal id"})
    assert r.headers["kong-request-id"] == "my very personal id"


def test_not_echoed_unless_asked(gateway: Gateway) -> None:
    assert "kong-request-id" not in httpx.get(gateway.url("/uuid")).headers


def test_echoed_on_gateway_errors_and_plugin_answers(gateway: Gateway) -> None:
    r = httpx.get(gateway.url("/dead"))
    assert r.status_code == 502
    assert re.fullmatch(UUID, r.headers["kong-request-id"])
    r = httpx.get(gateway.url("/echo-terminated"))
    assert r.status_code == 418
    assert re.fullmatch(UUID, r.headers["kong-request-id"])
    r = httpx.get(gateway.url("/echo-terminated"), headers={"kong-request-id": "mine"})
    assert r.headers["kong-request-id"] == "mine"


def test_config_defaults_and_validation() -> None:
    base = '_format_version: "3.0"\nplugins:\n'
    plugin = load_config(base + "- name: correlation-id\n").config.plugins[0]
    assert plugin.config == {
        "header_name": "Kong-Request-ID",
        "generator": "uuid#counter",
        "echo_downstream": False,
    }
    with pytest.raises(ConfigError) as info:
        load_config(
            base + "- name: correlation-id\n"
            "  config: {header_name: '', generator: counter, echo_downstream: 'no'}\n"
        )
    assert [f"{e.path}: {e.message}" for e in info.value.errors] == [
        "plugins[0].config.header_name: length must be at least 1",
        "plugins[0].config.generator: expected one of: uuid, uuid#counter, tracker",
        "plugins[0].config.echo_downstream: expected a boolean",
    ]
