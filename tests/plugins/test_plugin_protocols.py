"""Each plugin's ``protocols`` field as Kong 3.9 defines it (read from each plugin's
``schema.lua``): most take ``typedefs.protocols_http`` (grpc, grpcs, http, https); the logging
plugins and a few others take ``typedefs.protocols`` (stream protocols too) and default to the
HTTP ones; ip-restriction defaults to tcp and tls as well.

This matters because ``deck gateway dump`` writes ``protocols`` out for every plugin: a file
dumped from Kong carries ip-restriction's ``[http, https, tcp, tls, grpc, grpcs]``, and must load.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import msgspec
import pytest

from fastkong.config import ConfigError, load_config
from fastkong.plugins import registry
from fastkong.proxy.app import Gateway
from fastkong.runtime import compile_runtime
from tests.helpers import Echo
from tests.plugins.test_required_fields import REQUIRED

HTTP = ["grpc", "grpcs", "http", "https"]
EVERY = [*HTTP, "tcp", "tls", "tls_passthrough", "udp"]

#: Kong 3.9.1's plugins whose schema says ``protocols = typedefs.protocols``.
TAKE_EVERY_PROTOCOL = {
    "azure-functions",
    "datadog",
    "file-log",
    "grpc-gateway",
    "grpc-web",
    "http-log",
    "ip-restriction",
    "loggly",
    "prometheus",
    "proxy-cache",
    "request-transformer",
    "session",
    "statsd",
    "syslog",
    "tcp-log",
    "udp-log",
    "zipkin",
}
#: ip-restriction's own default (its schema overrides the typedef's).
DEFAULTS = {"ip-restriction": ["http", "https", "tcp", "tls", "grpc", "grpcs"]}

#: The least config each plugin loads with, beyond what test_required_fields already knows.
LEAST: dict[str, dict[str, Any]] = {
    "acme": {"account_email": "ops@example.com"},
    "ai-prompt-decorator": {"prompts": {"prepend": [{"role": "system", "content": "Be brief."}]}},
    "ai-proxy": {
        "route_type": "llm/v1/chat",
        "model": {"provider": "openai", "name": "gpt-4o"},
        "auth": {"header_name": "Authorization", "header_value": "Bearer x"},
    },
    "http-log": {"http_endpoint": "http://127.0.0.1:9/log"},
    "ip-restriction": {"allow": ["127.0.0.1"]},
    "loggly": {"key": "k"},
    "opentelemetry": {"traces_endpoint": "http://127.0.0.1:9/v1/traces"},
    "redirect": {"location": "https://example.com"},
    "response-ratelimiting": {"limits": {"video": {"minute": 10}}},
    "standard-webhooks": {"secret_v1": "c2VjcmV0"},
    "tcp-log": {"host": "127.0.0.1", "port": 9},
    "udp-log": {"host": "127.0.0.1", "port": 9},
}

BUNDLED = sorted(registry.KONG_BUNDLED_PLUGINS.intersection(registry.names()))


def least_config(name: str) -> dict[str, Any]:
    return LEAST.get(name) or REQUIRED.get(name, ({},))[0]


def load_plugin(name: str, **fields: Any) -> Any:
    doc = {
        "_format_version": "3.0",
        "plugins": [{"name": name, "config": least_config(name), **fields}],
    }
    return load_config(json.dumps(doc)).config.plugins[0]


def test_every_bundled_plugin_is_listed_here() -> None:
    # a bundled plugin added later must take a side in the table above
    assert len(BUNDLED) >= 35
    for name in BUNDLED:
        load_plugin(name)  # its least config is known


@pytest.mark.parametrize("name", BUNDLED)
def test_protocols_left_out_take_kongs_default(name: str) -> None:
    assert load_plugin(name).protocols == DEFAULTS.get(name, HTTP)


@pytest.mark.parametrize("name", BUNDLED)
def test_stream_protocols_load_where_kong_takes_them(name: str) -> None:
    if name in TAKE_EVERY_PROTOCOL:
        assert sorted(load_plugin(name, protocols=EVERY).protocols) == EVERY
        return
    with pytest.raises(ConfigError) as info:
        load_plugin(name, protocols=EVERY)
    errors = [f"{e.path}: {e.message}" for e in info.value.errors]
    allowed = "expected one of: grpc, grpcs, http, https"
    assert errors == [f"plugins[0].protocols[{i}]: {allowed}" for i in range(4, 8)]


@pytest.mark.parametrize("name", sorted(TAKE_EVERY_PROTOCOL & set(BUNDLED)))
def test_an_unknown_protocol_is_refused_everywhere(name: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_plugin(name, protocols=["http", "gopher"])
    assert [f"{e.path}: {e.message}" for e in info.value.errors] == [
        "plugins[0].protocols[1]: expected one of: " + ", ".join(EVERY)
    ]


def test_ai_proxy_takes_grpc_as_kong_does() -> None:
    # ai-proxy's schema is typedefs.protocols_http, which holds grpc and grpcs
    assert load_plugin("ai-proxy", protocols=HTTP).protocols == HTTP


def test_a_deck_dumped_ip_restriction_still_guards_http_requests(echo: Echo) -> None:
    """ip-restriction as ``deck dump`` writes it (stream protocols in its set) loads and runs
    on the HTTP route it is attached to."""
    config = {
        "_format_version": "3.0",
        "services": [
            {
                "name": "svc",
                "url": f"http://127.0.0.1:{echo.port}",
                "routes": [{"name": "r", "paths": ["/"]}],
                "plugins": [
                    {
                        "name": "ip-restriction",
                        "protocols": DEFAULTS["ip-restriction"],
                        "config": {"deny": ["127.0.0.0/8"]},
                    }
                ],
            }
        ],
    }
    runtime = compile_runtime(load_config(json.dumps(config)).config, "1")

    async def main() -> httpx.Response:
        gw = Gateway(runtime)
        await gw.startup()
        try:
            transport = httpx.ASGITransport(app=gw, client=("127.0.0.1", 5000))
            async with httpx.AsyncClient(transport=transport, timeout=5) as client:
                return await client.get("http://gw.test/x")
        finally:
            await gw.shutdown()

    reply = asyncio.run(main())
    assert reply.status_code == 403
    assert reply.json()["message"] == "IP address not allowed: 127.0.0.1"


@pytest.mark.parametrize("name", BUNDLED)
def test_a_plugin_written_out_in_full_loads_back_the_same(name: str) -> None:
    """A dump (``deck gateway dump``, the admin API's ``GET /config``) writes every config field
    of a plugin out, unset ones as null and shorthand fields beside the records they fill: that
    text loads back to the same config."""
    plugin = load_plugin(name)
    full = msgspec.to_builtins(plugin.config)
    doc = {
        "_format_version": "3.0",
        "plugins": [{"name": name, "config": full, "protocols": plugin.protocols, "enabled": True}],
    }
    again = load_config(json.dumps(doc)).config.plugins[0]
    assert msgspec.to_builtins(again.config) == full
    assert again.protocols == plugin.protocols
