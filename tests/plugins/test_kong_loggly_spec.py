"""Kong's spec/03-plugins/07-loggly/01-log_spec.lua, ported against one real gateway, the real
echo upstream (Kong's mock upstream: ``/status/<code>`` answers that status) and real UDP servers
on loopback standing in for Loggly: each route's plugin has a UDP port of its own (``UdpPorts``
of the statsd port), so a case reads only its route's datagram.

Ported: l.20-87 (the HTTP routes and plugins) and the cases l.232-242 (warning, log level
info: ``<12>``), 245-255 (info, log level debug: ``<14>``), 263-273 (crit, log level crit:
``<10>``), 305-316 and 318-329 (the default severities for a 401 and a 500: ``<14>``).

Covered elsewhere: l.286-296 and 298-308 (the default severity and log level for a 200:
``test_loggly.py::test_a_syslog_line_per_request``).

Left out: the ``custom_fields_by_lua`` route and cases (l.88-103, 334-359): fastkong runs no
Lua, the field is refused at config load (docs/plugins.md); the gRPC routes and cases
(l.105-164, 207-230, 244-248, 262-266, 280-284): README.md, a plain gRPC call cannot be
proxied (Granian's ASGI carries no HTTP/2 trailers).
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.helpers import Echo, Gateway
from tests.plugins.test_kong_statsd_spec import UdpPorts

pytestmark = pytest.mark.integration

#: Route host -> the loggly config beside host, port and key (l.40-86).
ROUTES: dict[str, dict[str, Any]] = {
    "logging.test": {"log_level": "info", "successful_severity": "warning"},
    "logging1.test": {"log_level": "debug", "timeout": 2000, "successful_severity": "info"},
    "logging2.test": {
        "log_level": "crit",
        "successful_severity": "crit",
        "client_errors_severity": "warning",
    },
    "logging3.test": {},
}


@dataclass
class Env:
    gateway: Gateway
    udp: UdpPorts


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, echo: Echo) -> Iterator[Env]:
    with contextlib.ExitStack() as stack:
        udp = UdpPorts(list(ROUTES))
        stack.callback(udp.stop)
        services = []
        for host, extra in ROUTES.items():
            at = {"host": "127.0.0.1", "port": udp.ports[host], "key": "123456789"}
            plugin = {"name": "loggly", "config": {**at, **extra}}
            route = {"hosts": [host], "plugins": [plugin]}
            services.append({"name": host.split(".")[0], "url": echo.url, "routes": [route]})
        config = {"_format_version": "3.0", "services": services}
        gateway = Gateway(tmp_path_factory.mktemp("loggly"), json.dumps(config))
        stack.callback(gateway.stop)
        gateway.start()
        yield Env(gateway, udp)


def run(env: Env, host: str, path: str, status: int = 200) -> tuple[str, Any]:
    """l.192-205: one request and the datagram it logs: its ``pri`` and its decoded JSON."""
    start = len(env.udp.got[host])
    r = httpx.get(env.gateway.url(path), headers={"host": host})
    assert r.status_code == status
    res = env.udp.since(host, start, 1)[0]
    pri = re.match(r"<(\d*?)>", res)
    body = re.search(r"\{.*\}", res, re.DOTALL)
    assert pri is not None and body is not None, res
    return pri.group(1), json.loads(body.group(0))


#: (host, path, status, pri).
CASES = [
    ("logging.test", "/request", 200, "12"),  # l.232-242: warning, log level info
    ("logging1.test", "/request", 200, "14"),  # l.250-260: info, log level debug
    ("logging2.test", "/request", 200, "10"),  # l.268-278: crit, log level crit
    ("logging3.test", "/status/401", 401, "14"),  # l.310-320: defaults, a 401
    ("logging3.test", "/status/500", 500, "14"),  # l.322-332: defaults, a 500
]


@pytest.mark.parametrize(("host", "path", "status", "expected"), CASES)
def test_logs_to_udp(env: Env, host: str, path: str, status: int, expected: str) -> None:
    pri, message = run(env, host, path, status)
    assert pri == expected
    assert message["client_ip"] == "127.0.0.1"
