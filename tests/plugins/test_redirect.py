"""redirect through a running gateway (Kong 3.9's spec/03-plugins/45-redirect)."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from fastkong.config import ConfigError, load_config
from tests.helpers import Echo, Gateway, echo_config

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def gateway(gateway_with: Callable[[str], Gateway], echo: Echo) -> Gateway:
    locations = {
        "moved": "{location: 'https://example.test/new?x=1#top'}",
        "found": "{status_code: 302, location: 'http://example.test:8080/base'}",
        "keep": "{location: 'https://example.test:8443/ignored?dropped=1#frag', "
        "keep_incoming_path: true}",
    }
    routes = {name: f"{{name: redirect, config: {c}}}" for name, c in locations.items()}
    return gateway_with(echo_config(echo, routes))


def test_the_location_as_configured(gateway: Gateway) -> None:
    r = httpx.get(gateway.url("/moved/a?b=c"))
    assert r.status_code == 301
    assert r.headers["location"] == "https://example.test/new?x=1#top"
    assert r.text == "redirecting"
    assert "x-kong-request-id" in r.headers  # the gateway's own answer, not proxied
    r = httpx.post(gateway.url("/found"), content=b"body")
    assert r.status_code == 302
    assert r.headers["location"] == "http://example.test:8080/base"


def test_keep_incoming_path(gateway: Gateway) -> None:
    r = httpx.get(gateway.url("/keep/a%20b/c?q=1&r"))
    assert r.status_code == 301
    assert r.headers["location"] == "https://example.test:8443/keep/a%20b/c?q=1&r#frag"
    r = httpx.get(gateway.url("/keep"))
    assert r.headers["location"] == "https://example.test:8443/keep#frag"


def errors(plugin_config: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(
            f'_format_version: "3.0"\nplugins: [{{name: redirect, config: {plugin_config}}}]\n'
        )
    return [f"{e.path}: {e.message}" for e in info.value.errors]


def test_schema() -> None:
    assert errors("{}") == ["plugins[0].config.location: required field missing"]
    assert errors("{location: /relative}") == ["plugins[0].config.location: missing host in url"]
    assert errors("{location: 'http://x.test', status_code: 600}") == [
        "plugins[0].config.status_code: value should be between 100 and 599"
    ]
    loaded = load_config(
        '_format_version: "3.0"\nplugins: [{name: redirect, config: {location: "http://x.test"}}]\n'
    )
    assert loaded.config.plugins[0].config == {
        "status_code": 301,
        "location": "http://x.test",
        "keep_incoming_path": False,
    }
