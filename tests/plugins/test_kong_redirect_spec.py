"""Kong's ``spec/03-plugins/45-redirect`` specs (DB-less run) against real ``fastkong start``
gateways and the echo upstream (Kong's ``mock_upstream``).

Ported:

- ``02-access_spec.lua`` 99-145, every ``it``, on a gateway started as Kong's is there
  (``headers_upstream = off``: fastkong's ``--headers-upstream off``, docs/settings.md), one
  route per host as in the spec.
- ``03-integration_spec.lua`` 53-87 "can be applied on a consumer": a second gateway (the spec's
  key-auth plugin is global, which the first gateway's routes must not get). Kong ``POST``s the
  consumer's redirect plugin to its database's Admin API; DB-less, the config with the plugin
  added is ``POST``ed to ``/config``, Kong's DB-less way to change entities, and the proxy is
  polled until it answers the redirect (Kong's ``wait_until``).

Covered elsewhere: ``01-schema_spec.lua`` by ``test_redirect.py`` (``test_schema``), which also
checks the ``keep_incoming_path`` location with a port, a fragment and a percent-encoded path.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import Echo, Gateway, eventually

pytestmark = pytest.mark.integration

BOB = "b0000000-0000-4000-8000-000000000001"


def start(workdir: Path, config: dict[str, Any], *extra: str) -> Gateway:
    return Gateway(workdir, json.dumps(config), 1, *extra).start()


# -- 02-access_spec.lua ------------------------------------------------------------------------
#: host -> the redirect plugin's config (Kong's routes 1-4).
REDIRECTS: dict[str, dict[str, Any]] = {
    "api1.redirect.test": {"location": "https://example.com"},
    "api2.redirect.test": {"status_code": 302, "location": "https://example.com"},
    "api3.redirect.test": {"location": "https://example.com/path?foo=bar"},
    "api4.redirect.test": {
        "location": "https://example.com/some_path?foo=bar",
        "keep_incoming_path": True,
    },
}


@pytest.fixture(scope="module")
def access(tmp_path_factory: pytest.TempPathFactory, echo: Echo) -> Iterator[Gateway]:
    routes = [
        {
            "name": host.split(".")[0],
            "hosts": [host],
            "plugins": [{"name": "redirect", "config": config}],
        }
        for host, config in REDIRECTS.items()
    ]
    config = {
        "_format_version": "3.0",
        "services": [{"name": "echo", "url": f"http://127.0.0.1:{echo.port}", "routes": routes}],
    }
    gw = start(tmp_path_factory.mktemp("redirect-access"), config, "--headers-upstream", "off")
    try:
        yield gw
    finally:
        gw.stop()


@pytest.mark.parametrize(
    ("line", "host", "path", "status", "location"),
    [
        (99, "api1.redirect.test", "/status/200", 301, "https://example.com"),
        (110, "api2.redirect.test", "/status/200", 302, "https://example.com"),
        (123, "api3.redirect.test", "/status/200", 301, "https://example.com/path?foo=bar"),
        (
            135,
            "api4.redirect.test",
            "/status/200?keep=this",
            301,
            "https://example.com/status/200?keep=this",
        ),
    ],
)
def test_access(
    access: Gateway, line: int, host: str, path: str, status: int, location: str
) -> None:
    r = httpx.get(access.url(path), headers={"host": host})
    assert r.status_code == status, (line, r.text)
    assert r.headers["location"] == location


# -- 03-integration_spec.lua -------------------------------------------------------------------
@pytest.fixture(scope="module")
def integration(tmp_path_factory: pytest.TempPathFactory, echo: Echo) -> Iterator[Gateway]:
    config = {
        "_format_version": "3.0",
        "services": [
            {
                "name": "echo",
                "url": f"http://127.0.0.1:{echo.port}",
                "routes": [{"name": "api1", "hosts": ["api1.redirect.test"]}],
            }
        ],
        "plugins": [{"name": "key-auth"}],  # global
        "consumers": [{"id": BOB, "username": "bob", "keyauth_credentials": [{"key": "kong"}]}],
    }
    gw = start(tmp_path_factory.mktemp("redirect-integration"), config)
    try:
        yield gw
    finally:
        gw.stop()


def test_can_be_applied_on_a_consumer(integration: Gateway) -> None:
    """03-integration 53-87."""

    def request() -> httpx.Response:
        return httpx.get(
            integration.url("/request"), headers={"host": "api1.redirect.test", "apikey": "kong"}
        )

    assert request().status_code == 200  # not in Kong's spec: proxied before the plugin exists
    config = json.loads(integration.config_path.read_text())
    config["plugins"].append(
        {
            "name": "redirect",
            "config": {"location": "https://example.com/path?foo=bar"},
            "consumer": BOB,
        }
    )
    r = httpx.post(f"http://127.0.0.1:{integration.admin_port}/config", json=config, timeout=30)
    assert r.status_code == 201, r.text
    eventually(lambda: request().status_code == 301)
    r = request()
    assert r.status_code == 301
    assert r.headers["location"] == "https://example.com/path?foo=bar"
