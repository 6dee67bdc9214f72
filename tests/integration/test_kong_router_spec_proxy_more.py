"""Kong's ``spec/02-integration/05-proxy/02-router_spec.lua``, second half (lines 1505-2869),
end to end: a real ``fastkong start`` (DB-less, router flavor ``traditional_compatible``,
``allow_debug_header = on``, an ``ssl`` stream listener and an ``ssl http2`` proxy listener) in
front of real loopback upstreams that answer as Kong's ``mock_upstream`` does (``/status/<code>``,
``/get``, ``/anything``, ``/request`` and ``/``; 404 with the same JSON for any other path;
``vars.request_uri`` the request target it got).

Each ``insert_routes`` call of the spec posts a config of its own to Kong's ``/config`` (the
DB-less blueprint resets after each ``bp.done()``): here too, every group of routes is posted
to the gateway's admin ``/config`` in turn, and the gateway is ready again before its requests.
Where a case checks which route matched, ``fastkong config explain`` on the same config must
name the same route (and, for the slash-handling rows, the same upstream path).

Ported: ``tls_passthrough`` (1505-1607), ``[#headers]`` (1610-1842), ``[paths] + [#headers]``
(1844-1913), ``[snis] for #grpcs connections`` (1915-2046), ``[paths] + [methods]``
(2048-2263), ``slash handling`` (plain and regex, v0 rows, 2305-2429), ``router rebuilds``
(2431-2460), ``at startup`` (2463-2529), ``disable allow_debug_header config`` (2603-2679).

Left out:
- the ``with buffering [on]`` runs: ``enable-buffering`` is a custom Lua test plugin, and the
  routing it wraps is the same; each case runs once.
- ``it_trad_only`` cases (#5438 regressions, "prioritizes longer URIs" of ``[paths] +
  [methods]`` and ``[paths] + [hosts]``): pending under ``traditional_compatible``.
- the v1 rows of the slash-handling table: the spec runs them for ``traditional`` only.
- ``#db worker respawn correctly rebuilds router`` and ``#db rebuilds router correctly after
  passing route with special escape``: they add routes through the Admin API (a database).
- ``consistency = strict`` / ``eventual``: fastkong has no ``worker_consistency`` (every
  worker swaps in a whole compiled config); the ``at startup`` case runs once.
- the ``expressions``-flavor blocks (``http.queries.*``, ``priority = 2^46 - 1``): expressions
  only.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import ssl
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import (
    Gateway,
    LoopServer,
    cli_json,
    explain,
    free_port,
    read_request,
    wait_port,
)
from tests.pki import Pki

pytestmark = pytest.mark.integration

FLAVOR = "traditional_compatible"
NO_ROUTE = {"message": "no Route matched with those values"}

# -- upstreams ------------------------------------------------------------------------------------


class MockUpstream(LoopServer):
    """Kong's ``mock_upstream`` as far as these cases look at it: ``/status/<code>`` answers
    that code, ``/``, ``/get``, ``/post``, ``/anything`` and ``/request`` 200, any other path 404
    (200 for every path with ``catch_all``); the body is JSON naming this server and giving
    ``vars.request_uri``, the request target as it arrived."""

    def __init__(self, name: str, ssl: Any = None, catch_all: bool = False) -> None:
        super().__init__(ssl)
        self.name = name
        self.catch_all = catch_all

    def status(self, path: str) -> int:
        parts = path.split("/")
        if len(parts) == 3 and parts[1] == "status" and parts[2].isdigit():
            return int(parts[2])
        if self.catch_all or path == "/":
            return 200
        known = ("/get", "/post", "/anything", "/request")
        return 200 if path.startswith(known) else 404

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request = await read_request(reader)
                path = request.target.partition("?")[0]
                status = self.status(path)
                body = json.dumps(
                    {
                        "server": self.name,
                        "vars": {"request_uri": request.target},
                        "headers": request.lowered,
                    }
                ).encode()
                writer.write(
                    b"HTTP/1.1 %d Mock\r\ncontent-type: application/json\r\n"
                    b"content-length: %d\r\n\r\n%s" % (status, len(body), body)
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()


# -- configs --------------------------------------------------------------------------------------


def uid(text: str) -> str:
    """A stable id for an entity of this module (Kong's blueprints give random ones)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"router-spec-more/{text}"))


@dataclass
class Routed:
    """One route of a group as the spec's ``routes[i]`` sees it."""

    id: str
    name: str | None
    service_id: str
    service_name: str | None
    fields: dict[str, Any]


@dataclass
class Group:
    """The routes of one ``insert_routes`` call and the config they make."""

    name: str
    routes: list[Routed] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    def __getitem__(self, i: int) -> Routed:
        """``routes[i]`` as the spec counts: from 1."""
        return self.routes[i - 1]


def build(name: str, routes: list[dict[str, Any]], http_port: int) -> Group:
    """Kong's ``insert_routes``: a service of its own per route (``named_services`` unless the
    route brings one, on the mock upstream by default), ``protocols = { "http" }`` unless
    given."""
    group = Group(name)
    services: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    for i, spec in enumerate(routes, 1):
        route = dict(spec)
        service = dict(route.pop("service", None) or {})
        service.setdefault("name", f"service-name-{name}-{i}")
        if "url" not in service:
            service.setdefault("host", "127.0.0.1")
            service.setdefault("port", http_port)
            service.setdefault("protocol", "http")
        service["id"] = uid(f"{name}/service/{i}")
        route["id"] = uid(f"{name}/route/{i}")
        route["service"] = service["id"]
        route.setdefault("protocols", ["http"])
        services.append(service)
        rows.append(route)
        group.routes.append(
            Routed(route["id"], route.get("name"), service["id"], service["name"], route)
        )
    group.config = {"_format_version": "3.0", "services": services, "routes": rows}
    return group


#: service_path, route_path (None: the route matches on its host), strip_path, path_handling,
#: request_path, expected_path: ``spec/fixtures/router_path_handling_tests.lua`` row by row (a
#: tuple is every value of the field, as the fixture's ``expand`` splits it).
SLASH_TABLE: list[tuple[str, str | None, Any, Any, str, str]] = [
    ("/", "/", (False, True), ("v0", "v1"), "/", "/"),
    ("/", "/", (False, True), ("v0", "v1"), "/route", "/route"),
    ("/", "/", (False, True), ("v0", "v1"), "/route/", "/route/"),
    ("/", "/", (False, True), ("v0", "v1"), "/routereq", "/routereq"),
    ("/", "/", (False, True), ("v0", "v1"), "/route/req", "/route/req"),
    ("/", "/route", False, ("v0", "v1"), "/route", "/route"),
    ("/", "/route", False, ("v0", "v1"), "/route/", "/route/"),
    ("/", "/route", False, ("v0", "v1"), "/routereq", "/routereq"),
    ("/", "/route", True, ("v0", "v1"), "/route", "/"),
    ("/", "/route", True, ("v0", "v1"), "/route/", "/"),
    ("/", "/route", True, ("v0", "v1"), "/routereq", "/req"),
    ("/", "/route/", False, ("v0", "v1"), "/route/", "/route/"),
    ("/", "/route/", False, ("v0", "v1"), "/route/req", "/route/req"),
    ("/", "/route/", True, ("v0", "v1"), "/route/", "/"),
    ("/", "/route/", True, ("v0", "v1"), "/route/req", "/req"),
    ("/srv", "/rou", False, "v0", "/roureq", "/srv/roureq"),
    ("/srv", "/rou", False, "v1", "/roureq", "/srvroureq"),
    ("/srv", "/rou", True, "v0", "/roureq", "/srv/req"),
    ("/srv", "/rou", True, "v1", "/roureq", "/srvreq"),
    ("/srv/", "/rou", False, ("v0", "v1"), "/rou", "/srv/rou"),
    ("/srv/", "/rou", True, "v0", "/rou", "/srv"),
    ("/srv/", "/rou", True, "v1", "/rou", "/srv/"),
    ("/service", "/", (False, True), ("v0", "v1"), "/", "/service"),
    ("/service", "/", (False, True), "v0", "/route", "/service/route"),
    ("/service", "/", (False, True), "v1", "/route", "/serviceroute"),
    ("/service", "/", (False, True), "v0", "/route/", "/service/route/"),
    ("/service", "/", (False, True), "v1", "/route/", "/serviceroute/"),
    ("/service", "/", (False, True), "v0", "/routereq", "/service/routereq"),
    ("/service", "/", (False, True), "v1", "/routereq", "/serviceroutereq"),
    ("/service", "/", (False, True), "v0", "/route/req", "/service/route/req"),
    ("/service", "/", (False, True), "v1", "/route/req", "/serviceroute/req"),
    ("/service", "/route", False, "v0", "/route", "/service/route"),
    ("/service", "/route", False, "v1", "/route", "/serviceroute"),
    ("/service", "/route", False, "v0", "/route/", "/service/route/"),
    ("/service", "/route", False, "v1", "/route/", "/serviceroute/"),
    ("/service", "/route", False, "v0", "/routereq", "/service/routereq"),
    ("/service", "/route", False, "v1", "/routereq", "/serviceroutereq"),
    ("/service", "/route", True, ("v0", "v1"), "/route", "/service"),
    ("/service", "/route", True, ("v0", "v1"), "/route/", "/service/"),
    ("/service", "/route", True, "v0", "/routereq", "/service/req"),
    ("/service", "/route", True, "v1", "/routereq", "/servicereq"),
    ("/service", "/route/", False, "v0", "/route/", "/service/route/"),
    ("/service", "/route/", False, "v1", "/route/", "/serviceroute/"),
    ("/service", "/route/", False, "v0", "/route/req", "/service/route/req"),
    ("/service", "/route/", False, "v1", "/route/req", "/serviceroute/req"),
    ("/service", "/route/", True, "v0", "/route/", "/service/"),
    ("/service", "/route/", True, "v1", "/route/", "/service"),
    ("/service", "/route/", True, "v0", "/route/req", "/service/req"),
    ("/service", "/route/", True, "v1", "/route/req", "/servicereq"),
    ("/service/", "/", (False, True), "v0", "/route/", "/service/route/"),
    ("/service/", "/", (False, True), "v1", "/route/", "/service/route/"),
    ("/service/", "/", (False, True), ("v0", "v1"), "/", "/service/"),
    ("/service/", "/", (False, True), ("v0", "v1"), "/route", "/service/route"),
    ("/service/", "/", (False, True), ("v0", "v1"), "/routereq", "/service/routereq"),
    ("/service/", "/", (False, True), ("v0", "v1"), "/route/req", "/service/route/req"),
    ("/service/", "/route", False, ("v0", "v1"), "/route", "/service/route"),
    ("/service/", "/route", False, ("v0", "v1"), "/route/", "/service/route/"),
    ("/service/", "/route", False, ("v0", "v1"), "/routereq", "/service/routereq"),
    ("/service/", "/route", True, "v0", "/route", "/service"),
    ("/service/", "/route", True, "v1", "/route", "/service/"),
    ("/service/", "/route", True, ("v0", "v1"), "/route/", "/service/"),
    ("/service/", "/route", True, ("v0", "v1"), "/routereq", "/service/req"),
    ("/service/", "/route/", False, ("v0", "v1"), "/route/", "/service/route/"),
    ("/service/", "/route/", False, ("v0", "v1"), "/route/req", "/service/route/req"),
    ("/service/", "/route/", True, ("v0", "v1"), "/route/", "/service/"),
    ("/service/", "/route/", True, ("v0", "v1"), "/route/req", "/service/req"),
    ("/", None, (False, True), ("v0", "v1"), "/", "/"),
    ("/", None, (False, True), ("v0", "v1"), "/route", "/route"),
    ("/", None, (False, True), ("v0", "v1"), "/route/", "/route/"),
    ("/service", None, (False, True), ("v0", "v1"), "/", "/service"),
    ("/service", None, (False, True), "v0", "/route", "/service/route"),
    ("/service", None, (False, True), "v1", "/route", "/serviceroute"),
    ("/service", None, (False, True), "v0", "/route/", "/service/route/"),
    ("/service", None, (False, True), "v1", "/route/", "/serviceroute/"),
    ("/service/", None, (False, True), ("v0", "v1"), "/", "/service/"),
    ("/service/", None, (False, True), ("v0", "v1"), "/route", "/service/route"),
    ("/service/", None, (False, True), ("v0", "v1"), "/route/", "/service/route/"),
    ("/service", "/route", True, "v0", "/route./req", "/service/req"),
    ("/service", "/route", True, "v1", "/route./req", "/servicereq"),
    ("/service/", "/route", True, ("v0", "v1"), "/route./req", "/service/req"),
    ("/service", "/route", True, "v0", "/route%2E/req", "/service/req"),
    ("/service", "/route", True, "v1", "/route%2E/req", "/servicereq"),
    ("/service/", "/route", True, ("v0", "v1"), "/route%2E/req", "/service/req"),
    ("/service", "/route", True, "v0", "/route%2e/req", "/service/req"),
    ("/service", "/route", True, "v1", "/route%2e/req", "/servicereq"),
    ("/service/", "/route", True, ("v0", "v1"), "/route%2e/req", "/service/req"),
    ("/service", "/route", True, "v0", "/route../req", "/service/req"),
    ("/service", "/route", True, "v1", "/route../req", "/servicereq"),
    ("/service/", "/route", True, ("v0", "v1"), "/route../req", "/service/req"),
    ("/service", "/route", True, "v0", "/route%2E%2E/req", "/service/req"),
    ("/service", "/route", True, "v1", "/route%2E%2E/req", "/servicereq"),
    ("/service/", "/route", True, ("v0", "v1"), "/route%2E%2E/req", "/service/req"),
    ("/service", "/route", True, "v0", "/route%2e%2E/req", "/service/req"),
    ("/service", "/route", True, "v1", "/route%2e%2E/req", "/servicereq"),
    ("/service/", "/route", True, ("v0", "v1"), "/route%2e%2E/req", "/service/req"),
    ("/service", "/route", False, "v0", "/route./req", "/service/route./req"),
    ("/service", "/route", False, "v1", "/route./req", "/serviceroute./req"),
    ("/service/", "/route", False, ("v0", "v1"), "/route./req", "/service/route./req"),
    ("/service", "/route", False, "v0", "/route%2E/req", "/service/route./req"),
    ("/service", "/route", False, "v1", "/route%2E/req", "/serviceroute./req"),
    ("/service/", "/route", False, ("v0", "v1"), "/route%2E/req", "/service/route./req"),
    ("/service", "/route", False, "v0", "/route%2e/req", "/service/route./req"),
    ("/service", "/route", False, "v1", "/route%2e/req", "/serviceroute./req"),
    ("/service/", "/route", False, ("v0", "v1"), "/route%2e/req", "/service/route./req"),
    ("/service", "/route", False, "v0", "/route../req", "/service/route../req"),
    ("/service", "/route", False, "v1", "/route../req", "/serviceroute../req"),
    ("/service/", "/route", False, ("v0", "v1"), "/route../req", "/service/route../req"),
    ("/service", "/route", False, "v0", "/route%2E%2E/req", "/service/route../req"),
    ("/service", "/route", False, "v1", "/route%2E%2E/req", "/serviceroute../req"),
    ("/service/", "/route", False, ("v0", "v1"), "/route%2E%2E/req", "/service/route../req"),
    ("/service", "/route", False, "v0", "/route%2e%2E/req", "/service/route../req"),
    ("/service", "/route", False, "v1", "/route%2e%2E/req", "/serviceroute../req"),
    ("/service/", "/route", False, ("v0", "v1"), "/route%2e%2E/req", "/service/route../req"),
]


@dataclass(frozen=True)
class SlashCase:
    """One expanded row: ``i`` and ``j`` as the spec numbers them (host ``localbin-i-j.com``)."""

    i: int
    j: int
    service_path: str
    route_path: str | None
    strip_path: bool
    request_path: str
    expected_path: str

    @property
    def host(self) -> str:
        return f"localbin-{self.i}-{self.j}.com"

    @property
    def regex_path(self) -> str:
        """The spec's ``make_a_regex``: ``~/[0]?`` and the path without its leading slash."""
        assert self.route_path is not None
        return "~/[0]?" + self.route_path[1:]


def _values(value: Any) -> tuple[Any, ...]:
    return value if isinstance(value, tuple) else (value,)


def slash_cases() -> list[SlashCase]:
    """The table expanded as the fixture's ``expand`` does (strip_path first, then
    path_handling), keeping the v0 rows, the ones ``traditional_compatible`` runs."""
    cases = []
    for i, (service, route, strips, handlings, request, expected) in enumerate(SLASH_TABLE, 1):
        expanded = [(s, h) for s in _values(strips) for h in _values(handlings)]
        for j, (strip, handling) in enumerate(expanded, 1):
            if handling == "v0":
                cases.append(SlashCase(i, j, service, route, strip, request, expected))
    return cases


SLASH = slash_cases()


def slash_routes(regex: bool) -> list[dict[str, Any]]:
    routes = []
    for case in SLASH:
        if regex and case.route_path is None:
            continue  # the spec's "skip if hostbased match"
        route: dict[str, Any] = {
            "strip_path": case.strip_path,
            "path_handling": "v0",
            "hosts": [case.host],
            "service": {
                "name": f"{'make_regex' if regex else 'plain'}_{case.i}-{case.j}",
                "path": case.service_path,
            },
        }
        if case.route_path is not None:
            route["paths"] = [case.regex_path if regex else case.route_path]
        routes.append(route)
    return routes


def group_routes(tls: list[int]) -> dict[str, list[dict[str, Any]]]:
    """Every ``insert_routes`` call of the ported cases, by a name of this module's;
    ``tls`` the ports of the four TLS upstreams."""

    def passthrough(i: int, sni: str, name: str) -> dict[str, Any]:
        service = {"name": name, "host": "127.0.0.1", "port": tls[i], "protocol": "tcp"}
        return {"protocols": ["tls_passthrough"], "snis": [sni], "service": service}

    def grpcs(i: int, sni: str) -> dict[str, Any]:
        service = {"name": f"grpcs_{i + 1}", "url": f"grpcs://127.0.0.1:{tls[i]}"}
        return {"protocols": ["grpcs"], "snis": [sni], "service": service}

    def methods(status: int, paths: list[str], host: str, **more: Any) -> dict[str, Any]:
        service = {"path": f"/status/{status}"} if status else {}
        return {"strip_path": True, "paths": paths, "hosts": [host], "service": service, **more}

    devportal = ["/rest/devportal/api/v1", "/rest/devportal"]
    concat = ["/concat_test/devportal/api/v1", "/concat_test/devportal"]
    return {
        # 1435: tls_passthrough (the wildcard routes: flavor ~= "traditional")
        "passthrough": [
            passthrough(0, "www.example.org", "service_behind_www.example.org"),
            passthrough(1, "example.org", "service_behind_example.org"),
            passthrough(2, "*.foo.test", "service_behind_wild.foo.test"),
            passthrough(3, "bar.*", "service_behind_bar.wild"),
        ],
        # 1617, 1664, 1715, 1773: [#headers], one config per case
        "headers": [
            {"headers": {"version": ["v1", "v2"]}},
            {"headers": {"version": ["v3"]}},
        ],
        "headers-case": [
            {"headers": {"Version": ["v1", "v2"]}},
            {"headers": {"version": ["V3"]}},
        ],
        "headers-more": [
            {"headers": {"version": ["v1", "v2"]}},
            {"headers": {"version": ["v3"], "location": ["us-east"]}},
            {"headers": {"version": ["v3"]}},
        ],
        "headers-cache": [
            {
                "service": {"name": "first"},
                "hosts": ["example.test"],
                "paths": ["/test"],
                "headers": {"headertest": ["itsatest"]},
            },
            {"service": {"name": "second"}, "hosts": ["example.test"], "paths": ["/test"]},
        ],
        # 1844: [paths] + [#headers]
        "paths-headers": [
            {"strip_path": True, "headers": {"version": ["v1", "v2"]}, "paths": ["/root"]},
            {
                "strip_path": True,
                "headers": {"version": ["v1", "v2"]},
                "paths": ["/root/fixture"],
            },
            {
                "strip_path": True,
                "headers": {"version": ["v1", "v2"], "location": ["us-east"]},
                "paths": ["/root"],
            },
        ],
        # 1915: [snis] for #grpcs connections
        "grpcs": [
            grpcs(0, "grpcs_1.test"),
            grpcs(1, "grpcs_2.test"),
            grpcs(2, "*.grpcs_3.test"),
            grpcs(3, "grpcs_4.*"),
        ],
        # 2048: [paths] + [methods]
        "paths-methods": [
            methods(
                201,
                ["/unrelated/longer/uri/that/should/not/match", "/root/fixture"],
                "ahost.test",
                methods=["GET"],
            ),
            methods(202, ["/root/fixture/get"], "ahost.test", methods=["GET"]),
            methods(203, ["/root/fixture/get"], "anotherhost.test", methods=["GET"]),
            methods(204, ["/root/fixture/get"], "onemorehost.test", methods=["GET"]),
            methods(205, devportal, "api.local", name="public-apiv1"),
            methods(206, ["/rest/devportal/aux"], "api.local", name="aux"),
            methods(207, ["/rest/devportal/aux"], "test-api.local", name="aux-host"),
            methods(208, ["/rest/devportal/aux"], "atest-api.local", name="aux-host2"),
            methods(209, ["/rest/devportal"], "atest-api.local", name="devportal-route-2"),
            methods(0, concat, "api.local", name="concat_test-public-apiv1"),
            methods(0, ["/concat_test/devportal/aux"], "api.local", name="concat_test-aux"),
            methods(
                0, ["/concat_test/devportal/aux"], "test-api.local", name="concat_test-aux-host"
            ),
            methods(
                0, ["/concat_test/devportal/aux"], "atest-api.local", name="concat_test-aux-host2"
            ),
            methods(
                0,
                ["/concat_test/devportal"],
                "atest-api.local",
                name="concat_test-devportal-route-2",
            ),
        ],
        # 2305: slash handling
        "slash-plain": slash_routes(regex=False),
        "slash-regex": slash_routes(regex=True),
        # 2438: router rebuilds; ``regex_priority = ngx.null`` is dropped by the DB-less
        # blueprint's remove_nulls (spec/fixtures/dc_blueprints.lua), so the route has none.
        "rebuild": [
            {"methods": ["GET"], "regex_priority": 1},
            {"methods": ["POST", "PUT"]},
        ],
    }


# -- the gateway ----------------------------------------------------------------------------------


class Node:
    """The gateway and its upstreams; :meth:`use` loads one group's config."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        pki = Pki("router spec CA")
        cert, key = pki.issue("mock_upstream", dns="localhost")
        (tmp / "up.crt").write_text(cert)
        (tmp / "up.key").write_text(key)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(tmp / "up.crt", tmp / "up.key")
        self.mock = MockUpstream("mock_upstream").start()
        self.tls = [MockUpstream(f"tls-{n}", ctx, catch_all=True).start() for n in range(1, 5)]
        self.groups: dict[str, Group] = {
            name: build(name, routes, self.mock.port)
            for name, routes in group_routes([up.port for up in self.tls]).items()
        }
        for group in self.groups.values():
            group.path = tmp / f"{group.name}.yml"
            group.path.write_text(json.dumps(group.config))
        self.stream_port = free_port()
        first = self.groups["passthrough"]
        self.gateway = Gateway(
            tmp,
            json.dumps(first.config),
            1,
            "--allow-debug-header",
            "on",
            "--stream-listen",
            f"127.0.0.1:{self.stream_port} ssl",
        )
        self.gateway.ssl_port = free_port()
        self.current = first.name

    def start(self) -> None:
        self.gateway.start()
        wait_port(self.stream_port, proc=self.gateway.proc)

    def stop(self) -> None:
        try:
            self.gateway.stop()
        finally:
            for up in (self.mock, *self.tls):
                up.stop()

    def use(self, name: str) -> Group:
        """The group ``name``, its config posted to ``/config`` first unless it is loaded."""
        group = self.groups[name]
        if self.current != name:
            admin = f"http://127.0.0.1:{self.gateway.admin_port}/config"
            r = httpx.post(admin, json=group.config, timeout=60)
            assert r.status_code == 201, r.text
            self.current = name
            self.gateway.wait_ready()
        return group


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    n = Node(tmp_path_factory.mktemp("router-spec-more"))
    try:
        n.start()
        yield n
    finally:
        n.stop()


# -- clients --------------------------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def _read(
    conn: http.client.HTTPConnection, method: str, path: str, headers: dict[str, str]
) -> Answer:
    conn.request(method, path, headers=headers)
    r = conn.getresponse()
    body = r.read()
    return Answer(r.status, {k.lower(): v for k, v in r.getheaders()}, body)


def send(
    port: int, path: str = "/", headers: dict[str, str] | None = None, method: str = "GET"
) -> Answer:
    """One request on a new connection; the path goes on the wire as written."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        return _read(conn, method, path, dict(headers or {}))
    finally:
        conn.close()


def tls_connection(port: int, sni: str) -> http.client.HTTPConnection:
    """An HTTP/1.1 connection over TLS to ``port`` with ``sni``, the certificate unchecked (as
    the spec's ``ssl_handshake(nil, sni, false)``)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    raw = socket.create_connection(("127.0.0.1", port), timeout=30)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.sock = ctx.wrap_socket(raw, server_hostname=sni)
    return conn


def debug(host: str | None = None, **more: str) -> dict[str, str]:
    headers = {"kong-debug": "1", **more}
    if host is not None:
        headers["Host"] = host
    return headers


def assert_routed(answer: Answer, route: Routed) -> None:
    """The spec's three asserts on ``kong-route-id``, ``kong-service-id``, ``-name``."""
    assert answer.headers.get("kong-route-id") == route.id
    assert answer.headers.get("kong-service-id") == route.service_id
    assert answer.headers.get("kong-service-name") == route.service_name


def explained(group: Group, path: str, headers: dict[str, str], scheme: str = "http") -> Any:
    """``fastkong config explain`` for the same request on the group's config."""
    assert group.path is not None
    host = headers.get("Host", "127.0.0.1")
    rest = {k: v for k, v in headers.items() if k.lower() != "host"}
    return explain(group.path, "GET", f"{scheme}://{host}{path}", rest, FLAVOR)


def check(
    node: Node, group: Group, path: str, headers: dict[str, str], route: Routed, status: int
) -> Answer:
    """Proxy the request: ``status`` from ``route``; explain names the same route."""
    answer = send(node.gateway.port, path, headers)
    assert answer.status == status, answer.body
    assert_routed(answer, route)
    said = explained(group, path, headers)
    assert said["route"] == (route.name or route.id)
    assert said["service"] == route.service_name
    return answer


# -- tls_passthrough (1435) -----------------------------------------------------------------------


def passthrough(node: Node, sni: str, tag: str) -> None:
    """Two requests through the stream listener with ``sni``: the TLS upstream ``tag``
    answers them (the spec checks the statuses; the tag says which service got them)."""
    node.use("passthrough")
    conn = tls_connection(node.stream_port, sni)
    try:
        for code in (200, 201):
            answer = _read(conn, "GET", f"/status/{code}", debug())
            assert answer.status == code
            assert answer.json()["server"] == tag
    finally:
        conn.close()


def test_tls_passthrough_matches_by_snis(node: Node) -> None:
    # 1505 "matches a route based on its 'snis' attribute"
    passthrough(node, "www.example.org", "tls-1")
    passthrough(node, "example.org", "tls-2")


@pytest.mark.parametrize("sni", ["a.foo.test", "a.b.foo.test"])
def test_tls_passthrough_matches_leftmost_wildcard_sni(node: Node, sni: str) -> None:
    # 1556
    passthrough(node, sni, "tls-3")


@pytest.mark.parametrize("sni", ["bar.x", "bar.y.z"])
def test_tls_passthrough_matches_rightmost_wildcard_sni(node: Node, sni: str) -> None:
    # 1582
    passthrough(node, sni, "tls-4")


# -- [#headers] (1610) ----------------------------------------------------------------------------


def test_headers_matches_by_header(node: Node) -> None:
    # 1617
    g = node.use("headers")
    check(node, g, "/", debug("domain.test", version="v1"), g[1], 200)
    check(node, g, "/", debug("domain.test", version="v3"), g[2], 200)


def test_headers_match_case_insensitively(node: Node) -> None:
    # 1664: a header name configured "Version", a value "V3"
    g = node.use("headers-case")
    check(node, g, "/", debug("domain.test", version="v1"), g[1], 200)
    check(node, g, "/", debug("domain.test", Version="v3"), g[2], 200)


def test_headers_prioritizes_routes_with_more_headers(node: Node) -> None:
    # 1715
    g = node.use("headers-more")
    check(node, g, "/", debug("domain.test", version="v3", location="us-east"), g[2], 200)
    check(node, g, "/", debug("domain.test", version="v3"), g[3], 200)


def test_headers_caching_does_not_ignore_headers(node: Node) -> None:
    # 1773 (regression): the same host and path, with and without the header, in turn
    g = node.use("headers-cache")
    with_header = debug("example.test", headertest="itsatest")
    check(node, g, "/test", with_header, g[1], 200)
    check(node, g, "/test", debug("example.test"), g[2], 200)
    check(node, g, "/test", with_header, g[1], 200)


# -- [paths] + [#headers] (1844) ------------------------------------------------------------------


def test_paths_headers_prioritizes_routes_with_more_headers(node: Node) -> None:
    # 1878: route 3 (/root, two headers) wins over route 2 (/root/fixture, one header); its
    # stripped path /fixture/get is the mock upstream's 404
    g = node.use("paths-headers")
    headers = debug(version="v2", location="us-east")
    answer = check(node, g, "/root/fixture/get", headers, g[3], 404)
    assert answer.json()["vars"]["request_uri"] == "/fixture/get"


def test_paths_headers_prioritizes_longer_paths_if_same_number_of_headers(node: Node) -> None:
    # 1896
    g = node.use("paths-headers")
    answer = check(node, g, "/root/fixture/get", debug(version="v2"), g[2], 200)
    assert answer.json()["vars"]["request_uri"] == "/get"


# -- [snis] for #grpcs connections (1915) ---------------------------------------------------------


def grpcs_call(node: Node, sni: str) -> httpx.Response:
    """What the spec's grpcurl sends (``hello.HelloService.SayHello``, ``-H 'kong-debug: 1'``)
    over HTTP/2 and TLS with ``sni``, on a connection of its own."""
    with httpx.Client(http2=True, verify=False, timeout=30) as client:
        return client.post(
            f"https://127.0.0.1:{node.gateway.ssl_port}/hello.HelloService/SayHello",
            content=b"\x00\x00\x00\x00\x00",  # one empty message
            headers={"content-type": "application/grpc", "te": "trailers", "kong-debug": "1"},
            extensions={"sni_hostname": sni},
        )


@pytest.mark.parametrize(
    ("sni", "service"),
    [
        ("grpcs_1.test", "grpcs_1"),  # 1971
        ("grpcs_2.test", "grpcs_2"),
        ("a.grpcs_3.test", "grpcs_3"),  # 2005
        ("a.b.grpcs_3.test", "grpcs_3"),
        ("grpcs_4.x", "grpcs_4"),  # 2025
        ("grpcs_4.y.z", "grpcs_4"),
    ],
)
def test_grpcs_matches_a_route_by_sni(node: Node, sni: str, service: str) -> None:
    node.use("grpcs")
    r = grpcs_call(node, sni)
    assert r.http_version == "HTTP/2"
    assert r.headers.get("kong-service-name") == service
    # the service's upstream got it (fastkong speaks HTTP/1.1 to a grpcs service without the
    # grpc-web plugin: README, "Kong compatibility notes", gRPC)
    assert r.json()["server"] == f"tls-{service[-1]}"


@pytest.mark.parametrize(
    ("sni", "service"),
    [("grpcs_1.test", "grpcs_1"), ("a.b.grpcs_3.test", "grpcs_3"), ("grpcs_4.y.z", "grpcs_4")],
)
def test_grpcs_explain_takes_the_sni_as_the_proxy_does(node: Node, sni: str, service: str) -> None:
    # `fastkong config explain --sni` must route as the proxy did above (the Host header is
    # the proxy's address, which names no route's snis).
    g = node.use("grpcs")
    assert g.path is not None
    said = cli_json(
        [
            "config",
            "explain",
            str(g.path),
            "--method",
            "POST",
            "--url",
            f"https://127.0.0.1:{node.gateway.ssl_port}/hello.HelloService/SayHello",
            "--header",
            "content-type: application/grpc",
            "--sni",
            sni,
            "--router-flavor",
            FLAVOR,
        ]
    )
    assert said["service"] == service


# -- [paths] + [methods] (2048) -------------------------------------------------------------------


def test_paths_methods_prioritizes_host_over_longer_uris(node: Node) -> None:
    # 2234
    g = node.use("paths-methods")
    check(node, g, "/root/fixture/get", debug("anotherhost.test"), g[3], 203)


def test_paths_methods_does_not_match_incomplete_uris(node: Node) -> None:
    # 2251
    g = node.use("paths-methods")
    answer = send(node.gateway.port, "/", debug("ahost.test"))
    assert answer.status == 404
    assert answer.json()["message"] == NO_ROUTE["message"]
    assert explained(g, "/", debug("ahost.test"))["route"] is None


# -- slash handling (2305) ------------------------------------------------------------------------


def slash(node: Node, group: str, case: SlashCase) -> None:
    g = node.use(group)
    headers = {"Host": case.host}
    answer = send(node.gateway.port, case.request_path, headers)
    assert answer.json()["vars"]["request_uri"] == case.expected_path
    said = explained(g, case.request_path, headers)
    assert said["upstream_path"] == case.expected_path


@pytest.mark.parametrize("case", SLASH, ids=[f"{c.i}-{c.j}" for c in SLASH])
def test_slash_handling_plain(node: Node, case: SlashCase) -> None:
    # 2352: "(i-j) <service_path> with uri|host ..., strip = on|off, v0 when requesting ..."
    slash(node, "slash-plain", case)


REGEX_SLASH = [c for c in SLASH if c.route_path is not None]


@pytest.mark.parametrize("case", REGEX_SLASH, ids=[f"{c.i}-{c.j}" for c in REGEX_SLASH])
def test_slash_handling_regex(node: Node, case: SlashCase) -> None:
    # 2416: the same rows, the route's path made a regex ("~/[0]?" + path)
    slash(node, "slash-regex", case)


def test_router_rebuilds_with_regex_priority_nil(node: Node) -> None:
    # 2438 (Kong #4254): GET / reaches the GET route
    g = node.use("rebuild")
    check(node, g, "/", debug(), g[1], 200)


# -- at startup (2463) and without allow_debug_header (2603) --------------------------------------

STARTUP_SERVICE = uid("startup/service")
STARTUP_ROUTE = uid("startup/route")


def startup_config(port: int) -> str:
    """One route ``methods = { "GET" }, strip_path = false`` on an unnamed service (the
    blueprint's ``services:insert()``) on the mock upstream."""
    return json.dumps(
        {
            "_format_version": "3.0",
            "services": [{"id": STARTUP_SERVICE, "host": "127.0.0.1", "port": port}],
            "routes": [
                {
                    "id": STARTUP_ROUTE,
                    "methods": ["GET"],
                    "protocols": ["http"],
                    "strip_path": False,
                    "service": STARTUP_SERVICE,
                }
            ],
        }
    )


@pytest.fixture(scope="module")
def startup_mock() -> Iterator[MockUpstream]:
    up = MockUpstream("mock_upstream").start()
    yield up
    up.stop()


def four_workers(tmp: Path, port: int, *extra: str) -> Iterator[Gateway]:
    """The spec's ``nginx_worker_processes = 4`` node on :func:`startup_config`."""
    gw = Gateway(tmp, startup_config(port), 4, *extra)
    try:
        gw.start()
        yield gw
    finally:
        gw.stop()


@pytest.fixture(scope="module")
def startup(
    tmp_path_factory: pytest.TempPathFactory, startup_mock: MockUpstream
) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("router-startup")
    yield from four_workers(tmp, startup_mock.port, "--allow-debug-header", "on")


@pytest.fixture(scope="module")
def no_debug(
    tmp_path_factory: pytest.TempPathFactory, startup_mock: MockUpstream
) -> Iterator[Gateway]:
    yield from four_workers(tmp_path_factory.mktemp("router-no-debug"), startup_mock.port)


#: The spec's loop count: new connections spread over the four workers.
LOOPS = 1000


def test_at_startup_uses_the_declarative_config(startup: Gateway) -> None:
    # 2515 "uses configuration from datastore or declarative_config"
    for _ in range(LOOPS):
        answer = send(startup.port, "/get", debug())
        assert answer.status == 200
        assert "kong-service-name" not in answer.headers  # the service has no name
        assert answer.headers.get("kong-service-id") == STARTUP_SERVICE
        assert answer.headers.get("kong-route-id") == STARTUP_ROUTE


def test_disable_allow_debug_header(no_debug: Gateway) -> None:
    # 2651
    for _ in range(LOOPS):
        answer = send(no_debug.port, "/get", debug())
        assert answer.status == 200
        assert "kong-service-name" not in answer.headers
        assert "kong-route-name" not in answer.headers
