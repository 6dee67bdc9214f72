"""Kong's ``spec/03-plugins/21-bot-detection/01-access_spec.lua`` (DB-less run) against one real
``fastkong start`` gateway and the echo upstream (Kong's ``mock_upstream``).

Both ``describe`` blocks share the gateway: the global plugin of 297-335 is in the same config as
the route plugins of 9-119 (each of those routes has its own bot-detection, which wins over the
global one, so no outcome of the first block changes); the global block's route is
``global.bot.test`` instead of ``bot.test``, which the first block holds.

Ported:

- 223-245 "blocks bots #grpc", 259-270 "blocks denied user-agents #grpc": the gateway's own 403
  reaches a gRPC client as Kong's ``kong.response.error(403)`` writes it, grpc-status 7 and, with
  no body, the status's name as grpc-message (kong/pdk/response.lua 87-120, 695-710, 791-793).
  grpcurl's ``-user-agent`` (Kong's client) puts the value before grpc-go's own agent; grpc
  python's ``grpc.primary_user_agent`` does the same before its own.
- 160-199 "allows regular requests #grpc" and 284-295 "allows allowed user-agents #grpc", in
  part: the call must be proxied to grpcbin, which fastkong cannot do for plain gRPC (README
  "Kong compatibility notes": Granian's ASGI carries no HTTP/2 trailers); what is checked is
  that bot-detection lets it through (the call fails later, at the proxy, never with
  PermissionDenied).
- 337-378 "allows regular requests" of the global plugin (plus one bot refused there, to show
  the global plugin is in force).

Covered by ``test_bot_detection.py`` (not repeated): 121-158
(``test_gateway_allows_regular_requests``), 201-221 (``test_gateway_blocks_bots``), 247-257 and
272-282 (``test_gateway_deny_and_allow``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import pytest

from tests.helpers import Echo, Gateway, echoed_headers, free_port

pytestmark = pytest.mark.integration

HELLOWORLD = "HelloWorld"  # just a test value
FACEBOOK = "facebookexternalhit/1.1"  # matches a known bot in rules.lua
GOOGLEBOT = "Googlebot/2.1 (+http://www.google.com/bot.html)"
CHROME_MAC = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_11_5) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/50.0.2661.102 Safari/537.36"
)


def detect(**config: Any) -> list[dict[str, Any]]:
    return [{"name": "bot-detection", "config": config}]


#: The gRPC routes by :authority, with their plugin config (Kong's route_grpc1..3).
GRPC_ROUTES = {
    "bot-grpc1.test": {},
    "bot-grpc2.test": {"deny": [HELLOWORLD]},
    "bot-grpc3.test": {"allow": [FACEBOOK]},
}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, echo: Echo) -> Iterator[Gateway]:
    nowhere = free_port()  # Kong's grpcbin: never reached by a refused call
    routes = [
        {"name": "bot", "hosts": ["bot.test"], "plugins": detect()},
        {"name": "bot2", "hosts": ["bot2.test"], "plugins": detect(deny=[HELLOWORLD])},
        {"name": "bot3", "hosts": ["bot3.test"], "plugins": detect(allow=[FACEBOOK])},
        {"name": "global", "hosts": ["global.bot.test"]},
    ]
    grpc_routes = [
        {
            "name": f"grpc{i}",
            "protocols": ["grpc"],
            "paths": ["/hello.HelloService/"],
            "hosts": [host],
            "plugins": detect(**config),
        }
        for i, (host, config) in enumerate(GRPC_ROUTES.items(), 1)
    ]
    config = {
        "_format_version": "3.0",
        "services": [
            {"name": "echo", "url": f"http://127.0.0.1:{echo.port}", "routes": routes},
            {"name": "grpc1", "url": f"grpc://127.0.0.1:{nowhere}", "routes": grpc_routes},
        ],
        "plugins": detect(),  # 297-335: route = nil, applied globally
    }
    gw = Gateway(tmp_path_factory.mktemp("bot-detection"), json.dumps(config))
    gw.port_flags = "http2"  # Kong's gRPC client speaks h2c (prior knowledge)
    gw.start()
    try:
        yield gw
    finally:
        gw.stop()


def say_hello(gateway: Gateway, authority: str, agent: str | None) -> grpc.RpcError:
    """``hello.HelloService.SayHello`` through the gateway: the error it ends with."""
    options = [("grpc.default_authority", authority)]
    if agent is not None:
        options.append(("grpc.primary_user_agent", agent))
    with grpc.insecure_channel(f"127.0.0.1:{gateway.port}", options=options) as channel:
        call = channel.unary_unary("/hello.HelloService/SayHello")
        with pytest.raises(grpc.RpcError) as info:
            call(b"", timeout=10)
    return info.value


@pytest.mark.parametrize(
    ("line", "authority", "agent"),
    [
        (224, "bot-grpc1.test", GOOGLEBOT),
        (235, "bot-grpc1.test", FACEBOOK),
        (260, "bot-grpc2.test", HELLOWORLD),
    ],
)
def test_grpc_bots_are_refused(gateway: Gateway, line: int, authority: str, agent: str) -> None:
    error = say_hello(gateway, authority, agent)
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED, (line, error)
    assert error.details() == "PermissionDenied"


@pytest.mark.parametrize(
    ("line", "authority", "agent"),
    [
        (161, "bot-grpc1.test", None),
        (170, "bot-grpc1.test", CHROME_MAC),
        (180, "bot-grpc1.test", HELLOWORLD),
        (190, "bot-grpc1.test", "curl/7.43.0"),
        (285, "bot-grpc3.test", FACEBOOK),
    ],
)
def test_grpc_regular_and_allowed_agents_pass_the_plugin(
    gateway: Gateway, line: int, authority: str, agent: str | None
) -> None:
    """In part (module docstring): bot-detection lets the call through to the proxy."""
    error = say_hello(gateway, authority, agent)
    assert error.code() != grpc.StatusCode.PERMISSION_DENIED, (line, error)


@pytest.mark.parametrize("agent", [None, CHROME_MAC, HELLOWORLD, "curl/7.43.0"])
def test_global_plugin_allows_regular_requests(gateway: Gateway, agent: str | None) -> None:
    """337-378."""
    headers = {"host": "global.bot.test"}
    if agent is not None:
        headers["user-agent"] = agent
    with httpx.Client() as client:
        client.headers.pop("user-agent", None)  # send no agent unless asked
        r = client.get(gateway.url("/request"), headers=headers)
        assert r.status_code == 200, r.text
        assert echoed_headers(r.json()).get("user-agent") == (None if agent is None else [agent])
        # not in Kong's spec: the global plugin is in force on that route
        refused = client.get(
            gateway.url("/request"), headers={"host": "global.bot.test", "user-agent": GOOGLEBOT}
        )
        assert refused.status_code == 403
