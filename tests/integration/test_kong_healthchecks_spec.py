"""Kong's health-check spec through a real gateway and real upstream servers on loopback.

Ported from ``spec/02-integration/05-proxy/10-balancer/01-healthchecks_spec.lua`` lines 1-1523
(from the top to the end of "threshold for health checks", the last ``it`` starting before line
1400; another module ports the rest), DB-less (``strategy == "off"``), one gateway for all.

How Kong's fixtures translate:

* ``helpers.dns_mock`` A records: the gateway runs in a mount namespace of its own
  (``unshare -rm``) where ``/etc/hosts`` is this module's file, a copy of the system's plus the
  spec's names (``multiple-ips.test`` -> 127.0.0.1 and 127.0.0.2, ...): fastkong asks the
  system resolver (docs/settings.md, ``dns_resolver``), which reads it. Port 80 of the spec's
  targets (nothing listening, "we want the connection to get refused") is a free port here.
* ``bu.begin_testcase_setup``/``end_testcase_setup`` in DB-less mode: each case's entities
  are the whole declarative config, ``POST /config``, then polled until a sync route answers
  (the spec's dummy route); ``bu.healthchecks_config`` is tests/kong_balancer_utils.py's.
* ``https_server`` (``mock_webserver_tpl.lua``): :class:`KongServer`, plain HTTP on loopback.
* ``bu.client_requests``: :func:`client_requests`, with its sync request before each one.
* Kong's intervals of ``bu.HEALTHCHECK_INTERVAL`` (1 s) are 0.1 s here.
* l.566 "create active health checks -- global certificate" runs without Kong's
  ``client_ssl`` setting, which fastkong does not implement (``fastkong start`` names it
  "not implemented, ignored", docs/settings.md); what it asserts (https probes of a target
  where nothing listens take it down) does not depend on it. Probes presenting a certificate
  are covered by test_upstream_mtls.py.
* l.1077 "do not count Kong-generated errors as failures" uses the custom ``fail-once-auth``
  plugin to make Kong answer 401 once: ``key-auth`` makes that 401 here (the request without a
  key), the same Kong-generated error.

The block from line 676 on is tagged ``#healthchecks (#cluster #db)`` in Kong (a second node
sharing a database), so Kong's own DB-less CI suite skips it; its cases carry
``strategy == "off"`` code and are ported for the one node, in the ``ipv4`` and ``hostname``
modes of ``bu.localhosts`` (``ipv6``: ``#ipv6`` is excluded from every suite of Kong's CI,
``.ci/test_suites.json``). ``#strict``/``#eventual`` consistency is one run in DB-less mode.

Left out:

* l.93 "2-level dns sets the proper health-check" and l.289 "a target that resolves to an SRV
  record that changes port": SRV records; fastkong resolves with ``getaddrinfo`` only (no SRV,
  tests/upstreams/test_kong_balancer_specs.py docstring);
* l.600 "#db create active health checks -- upstream certificate": ``#db`` (``POST
  /certificates``); the upstream's certificate on probes is
  test_upstream_mtls.py::test_https_probes_present_the_upstreams_client_certificate;
* the second node (``servroot2``) of l.704 and l.750: a cluster shares a database; fastkong's
  health calls act on one node (docs/upstreams.md), so only node 1's part is ported;
* l.807 "created via the API are functional #grpc": Kong's gRPC fixture server and client, and
  fastkong proxies no plain gRPC call (README.md, "gRPC");
* l.873, l.943, l.1005 ``#db`` cases: ``PATCH /upstreams`` needs a database;
* l.1210 and l.1292 "... downstream status code was changed (with subrequest)": the
  ``pre-function`` plugin (Lua).

Deliberately not Kong's: an upstream re-added under a new id starts healthy (see that test).
"""

from __future__ import annotations

import itertools
import shutil
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from tests.helpers import Gateway, LoopServer, free_port, read_request
from tests.kong_balancer_utils import HEALTHCHECK_INTERVAL, SLOTS, healthchecks_config

pytestmark = pytest.mark.integration

T = TypeVar("T")

#: bu.localhosts, less ipv6.
MODES = {"ipv4": "127.0.0.1", "hostname": "localhost"}
ACCEPTED_LB_VAR = 0.3
INTERVAL = HEALTHCHECK_INTERVAL
SYNC_HOST = "200.test"
#: One client for the module (an httpx client costs tens of ms to make); no kept connection,
#: so that each request is on a new connection, as bu.client_requests makes them.
HTTP = httpx.Client(limits=httpx.Limits(max_keepalive_connections=0), timeout=30)

#: The spec's dns_mock A records.
NAMES = {
    "multiple-ips.test": ["127.0.0.1", "127.0.0.2"],
    "another.multiple-ips.test": ["127.0.0.1", "127.0.0.2"],
    "health-threshold.test": ["127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"],
    "notlocalhost.test": ["127.0.0.1"],
}

healthchecks = healthchecks_config  # bu.healthchecks_config


PASSIVE_TCP_1 = {"passive": {"unhealthy": {"tcp_failures": 1}}}
_names = itertools.count(1)


class Setup:
    """One test case's entities, as bu.add_upstream / add_target / add_api insert them; the
    declarative config they make is posted by :meth:`HostsGateway.apply`."""

    def __init__(self) -> None:
        self.upstreams: list[dict[str, Any]] = []
        self.services: list[dict[str, Any]] = []
        self.consumers: list[dict[str, Any]] = []

    def upstream(self, name: str | None = None, **fields: Any) -> tuple[str, str]:
        upstream_id = str(uuid.uuid4())
        name = name or f"upstream_{next(_names)}"
        self.upstreams.append({"name": name, "id": upstream_id, "slots": SLOTS, **fields})
        self.upstreams[-1].setdefault("targets", [])
        return name, upstream_id

    def target(self, upstream: str, host: str, port: int | None = None, weight: int = 10) -> int:
        port = port or free_port()
        row = next(u for u in self.upstreams if u["name"] == upstream)
        row["targets"].append({"target": f"{host}:{port}", "weight": weight})
        return port

    def api(self, upstream: str, plugins: list[Any] | None = None, **service: Any) -> str:
        route_host = f"host_{next(_names)}"
        self.services.append(
            {
                "name": f"service_{next(_names)}",
                "host": upstream,
                "port": 80,
                "protocol": "http",
                **service,
                "routes": [{"hosts": [route_host], "paths": ["/"]}],
                "plugins": plugins or [],
            }
        )
        return route_host

    def config(self, sync: str) -> dict[str, Any]:
        terminate = {"name": "request-termination", "config": {"status_code": 200, "message": sync}}
        services = [
            *self.services,
            {
                "name": "sync",
                "url": "http://127.0.0.1:9",
                "routes": [{"hosts": [SYNC_HOST], "plugins": [terminate]}],
            },
        ]
        return {
            "_format_version": "3.0",
            "services": services,
            "upstreams": self.upstreams,
            "consumers": self.consumers,
        }


class HostsGateway(Gateway):
    """``fastkong start`` in a mount namespace of its own where ``/etc/hosts`` is ``hosts``."""

    def __init__(self, workdir: Path, config: str, hosts: Path) -> None:
        super().__init__(workdir, config)
        self.hosts = hosts
        self.syncs = itertools.count(1)

    def command(self) -> list[str]:
        mount = 'mount --bind "$0" /etc/hosts && exec "$@"'
        return ["unshare", "-rm", "sh", "-c", mount, str(self.hosts), *super().command()]

    @property
    def admin(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def apply(self, setup: Setup) -> None:
        """bu.end_testcase_setup: post the config, wait until the proxy serves it."""
        sync = f"config {next(self.syncs)}"
        r = HTTP.post(f"{self.admin}/config", json=setup.config(sync))
        assert r.status_code == 201, r.text

        def served() -> None:
            r = HTTP.get(self.url("/"), headers={"host": SYNC_HOST})
            assert r.json().get("message") == sync

        wait_for(served)

    def health(self, upstream: str, balancer: bool = False) -> dict[str, Any]:
        query = "?balancer_health=1" if balancer else ""
        r = HTTP.get(f"{self.admin}/upstreams/{upstream}/health{query}")
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    def put_health(self, upstream: str, target: str, address: str | None, mode: str) -> int:
        """bu.put_target_address_health (bu.put_target_endpoint without ``address``)."""
        path = f"/upstreams/{upstream}/targets/{target}/" + (f"{address}/" if address else "")
        return HTTP.put(f"{self.admin}{path}{mode}", json={}).status_code


def wait_for(check: Callable[[], T], timeout: float = 15.0) -> T:
    """helpers.pwait_until: retry ``check`` until it stops raising AssertionError."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.05)


def client_requests(
    gw: Gateway, n: int, host: str, headers: dict[str, str] | None = None
) -> tuple[int, int, int | None]:
    """bu.client_requests: ``n`` requests with ``Host: host``, each on a new connection after a
    request to the sync route; ``(oks, fails, last status)`` (a failure: >= 400)."""
    oks = fails = 0
    last = None
    for _ in range(n):
        assert HTTP.get(gw.url("/"), headers={"host": SYNC_HOST}).status_code == 200
        r = HTTP.get(gw.url("/"), headers={"host": host, **(headers or {})})
        last = r.status_code
        oks += last == 200
        fails += last > 399
    return oks, fails, last


class KongServer(LoopServer):
    """Kong's ``https_server`` fixture over HTTP: ``/`` and ``/status`` answer 200 while
    healthy, else 500, counted (``ok``/``fail``, ``status_ok``/``status_fail``, and ``hits`` as
    its access log); ``/healthy`` and ``/unhealthy`` switch it. With ``server_name``
    (``check_hostname``), a Host naming another server gets nginx's default server's 400,
    uncounted."""

    def __init__(self, server_name: str | None = None) -> None:
        super().__init__()
        self.server_name = server_name
        self.healthy = True
        self.counts: Counter[str] = Counter()
        self.hits = 0

    async def _serve(self, reader: Any, writer: Any) -> None:
        try:
            while True:
                request = await read_request(reader)
                status, body = self.handle(request.target.split("?")[0], request.lowered)
                writer.write(
                    b"HTTP/1.1 %d X\r\ncontent-type: text/plain\r\ncontent-length: %d\r\n\r\n%s"
                    % (status, len(body), body)
                )
                await writer.drain()
        except (OSError, EOFError, ValueError):
            pass
        finally:
            writer.close()

    def handle(self, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
        host = headers.get("host", "localhost").rsplit(":", 1)[0]
        if self.server_name is not None and host != self.server_name:
            return 400, b"bad host\n"
        if path in ("/healthy", "/unhealthy"):
            self.healthy = path == "/healthy"
            return 200, b"switched\n"
        status = 200 if self.healthy else 500
        if path == "/status":
            self.counts["status_ok" if status == 200 else "status_fail"] += 1
        else:
            self.counts["ok" if status == 200 else "fail"] += 1
        self.hits += 1
        return status, b"ok\n" if status == 200 else b"fail\n"


@pytest.fixture
def servers() -> Iterator[Callable[..., KongServer]]:
    """Start :class:`KongServer` instances for one test, stopped after it."""
    started: list[KongServer] = []

    def start(server_name: str | None = None) -> KongServer:
        started.append(KongServer(server_name).start())
        return started[-1]

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostsGateway]:
    # The spec's DNS names come from a hosts file bind-mounted over /etc/hosts in the gateway's
    # own mount namespace (util-linux's unshare, on every machine CI runs on): a machine
    # without it fails here, saying so, rather than passing over the module.
    assert shutil.which("unshare") is not None, "these tests need util-linux's unshare"
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True, text=True)
    assert probe.returncode == 0, f"unshare -rm (a mount namespace) failed: {probe.stderr}"
    workdir = tmp_path_factory.mktemp("healthchecks")
    hosts = workdir / "hosts"
    lines = [f"{ip} {name}" for name, ips in NAMES.items() for ip in ips]
    hosts.write_text(Path("/etc/hosts").read_text() + "\n" + "\n".join(lines) + "\n")
    gateway = HostsGateway(workdir, '_format_version: "3.0"\n', hosts).start()
    try:
        yield gateway
    finally:
        gateway.stop()
        HTTP.close()


def addresses(health: dict[str, Any]) -> list[tuple[str, str]]:
    """``(ip, health)`` of each address of the first target of a health report."""
    return [(a["ip"], a["health"]) for a in health["data"][0]["data"]["addresses"]]


# -- "Healthcheck": one target resolving to two IPs ------------------------------------------


def all_refused(gw: HostsGateway, api_host: str) -> None:
    """Nothing listens: once round the balancer, every request fails, the last with 503."""

    def check() -> None:
        oks, fails, last = client_requests(gw, SLOTS, api_host)
        assert (oks, fails, last) == (0, SLOTS, 503)

    wait_for(check)


def expect_addresses(gw: HostsGateway, upstream: str, target: str, states: list[str]) -> None:
    def check() -> None:
        health = gw.health(upstream)
        assert addresses(health) == list(zip(["127.0.0.1", "127.0.0.2"], states, strict=True))
        assert health["data"][0]["health"] == target

    wait_for(check)


def two_ips_upstream(gw: HostsGateway, setup: Setup, port: int, **fields: Any) -> tuple[str, str]:
    name, uid = setup.upstream(healthchecks=healthchecks(PASSIVE_TCP_1), **fields)
    setup.target(name, "multiple-ips.test", port)
    api_host = setup.api(name, connect_timeout=100)
    gw.apply(setup)
    all_refused(gw, api_host)
    expect_addresses(gw, name, "UNHEALTHY", ["UNHEALTHY", "UNHEALTHY"])
    return name, uid


@pytest.mark.parametrize("host_header", [None, "another.multiple-ips.test"])
def test_a_target_that_resolves_to_2_ips_reports_health_separately(
    gw: HostsGateway, host_header: str | None
) -> None:
    # l.139, and l.213 "(upstream with hostname set)". Kong resolves a balancer's targets when
    # it creates it, before the first pick (kong/runloop/balancer/balancers.lua l.143), so the
    # first request already tries both addresses; so does fastkong (Registry.prefetch, before a
    # worker serves a new config), so the refused connections mark 127.0.0.1 and 127.0.0.2.
    port = free_port()
    extra = {"host_header": host_header} if host_header else {}
    name, uid = two_ips_upstream(gw, Setup(), port, **extra)
    target = f"multiple-ips.test:{port}"
    assert gw.put_health(uid, target, f"127.0.0.2:{port}", "healthy") == 204
    expect_addresses(gw, name, "HEALTHY", ["UNHEALTHY", "HEALTHY"])
    assert gw.put_health(uid, target, f"127.0.0.2:{port}", "unhealthy") == 204
    expect_addresses(gw, name, "UNHEALTHY", ["UNHEALTHY", "UNHEALTHY"])


def test_a_target_that_has_healthchecks_disabled(gw: HostsGateway) -> None:
    # l.350
    setup = Setup()
    off = {
        "passive": {"unhealthy": {"http_failures": 0, "tcp_failures": 0, "timeouts": 0}},
        "active": {"healthy": {"interval": 0}, "unhealthy": {"interval": 0}},
    }
    name, _ = setup.upstream(healthchecks=healthchecks(off))
    setup.target(name, "multiple-ips.test", free_port())
    setup.api(name)
    gw.apply(setup)

    def check() -> None:
        health = gw.health(name)
        assert health["data"][0]["health"] == "HEALTHCHECKS_OFF"
        assert health["data"][0]["data"]["addresses"][0]["health"] == "HEALTHCHECKS_OFF"
        balancer = gw.health(name, balancer=True)
        assert balancer["data"]["health"] == "HEALTHCHECKS_OFF"
        assert balancer["data"]["balancer_health"] == "HEALTHY"

    wait_for(check)


def test_an_upstream_readded_under_a_new_id_starts_healthy(
    gw: HostsGateway,
) -> None:
    # l.394: in DB-less mode the upstream comes back in the next config under a new id, with
    # the same name and target. Kong keys a checker's state by ws_id .. ":" .. upstream.name
    # (kong/runloop/balancer/healthcheckers.lua l.275), not by the upstream's id, so its
    # addresses stay UNHEALTHY. Deliberately not Kong's: fastkong keys health by upstream id,
    # target id, ip and port (fastkong/upstreams/health.py key_fp; docs/upstreams.md "Shared
    # state"): a new entity starts healthy. Ids are deterministic when a config sets none, so
    # an ordinary reload keeps the state (the first half of this test).
    port = free_port()
    name, uid = two_ips_upstream(gw, Setup(), port)
    target = f"multiple-ips.test:{port}"
    assert gw.put_health(uid, target, f"127.0.0.2:{port}", "healthy") == 204
    expect_addresses(gw, name, "HEALTHY", ["UNHEALTHY", "HEALTHY"])
    assert gw.put_health(uid, target, f"127.0.0.2:{port}", "unhealthy") == 204
    expect_addresses(gw, name, "UNHEALTHY", ["UNHEALTHY", "UNHEALTHY"])

    again = Setup()
    same_name, new_uid = again.upstream(name=name, healthchecks=healthchecks(PASSIVE_TCP_1))
    assert (same_name, new_uid != uid) == (name, True)
    again.target(name, "multiple-ips.test", port)
    again.api(name, connect_timeout=100)
    gw.apply(again)
    expect_addresses(gw, name, "HEALTHY", ["HEALTHY", "HEALTHY"])


# -- "mTLS" -----------------------------------------------------------------------------------


def test_create_active_health_checks_global_certificate(gw: HostsGateway) -> None:
    # l.566, without Kong's client_ssl (see the module docstring): https probes of a target
    # where nothing listens take it down after tcp_failures (2, bu's default) probes.
    setup = Setup()
    active = {
        "type": "https",
        "http_path": "/status",
        "healthy": {"interval": INTERVAL, "successes": 1},
        "unhealthy": {"interval": INTERVAL, "http_failures": 1},
    }
    name, _ = setup.upstream(healthchecks=healthchecks({"active": active}))
    port = setup.target(name, "notlocalhost.test")
    gw.apply(setup)
    wait_for(lambda: gw.health(name, balancer=True)["data"])
    poll_wait_health(gw, name, f"notlocalhost.test:{port}", "UNHEALTHY")


def poll_wait_health(gw: HostsGateway, upstream: str, target: str, value: str) -> None:
    """bu.poll_wait_health: until ``target`` of ``upstream`` reports ``value``."""

    def check() -> None:
        rows = {row["target"]: row["health"] for row in gw.health(upstream)["data"]}
        assert rows.get(target) == value, rows

    wait_for(check)


# -- "Ring-balancer", per mode ------------------------------------------------------------------

mode_param = pytest.mark.parametrize("mode", list(MODES))


@mode_param
def test_does_not_perform_health_checks_when_disabled_3304(
    gw: HostsGateway, servers: Callable[..., KongServer], mode: str
) -> None:
    # l.704, node 1 only: without health checks every request reaches the server, healthy
    # (200), failing (500), then healthy again.
    localhost = MODES[mode]
    server = servers()
    setup = Setup()
    name, _ = setup.upstream()
    setup.target(name, localhost, server.port)
    api_host = setup.api(name)
    gw.apply(setup)
    for i, (healthy, oks, fails, last) in enumerate(
        [(True, 10, 0, 200), (False, 0, 10, 500), (True, 10, 0, 200)]
    ):
        server.healthy = healthy
        server.hits = 0
        got = client_requests(gw, 10, api_host)
        assert (server.hits, *got) == (10, oks, fails, last), f"{localhost} iteration {i}"


@mode_param
def test_propagates_posted_health_info(gw: HostsGateway, mode: str) -> None:
    # l.750, node 1 only
    localhost = MODES[mode]
    setup = Setup()
    name, uid = setup.upstream(healthchecks=healthchecks({}))
    port = setup.target(name, localhost)
    gw.apply(setup)
    poll_wait_health(gw, uid, f"{localhost}:{port}", "HEALTHY")
    assert gw.put_health(uid, f"{localhost}:{port}", None, "unhealthy") == 204
    poll_wait_health(gw, uid, f"{localhost}:{port}", "UNHEALTHY")


@mode_param
def test_upstream_entities_created_via_the_api_are_functional(
    gw: HostsGateway, servers: Callable[..., KongServer], mode: str
) -> None:
    # l.787
    server = servers()
    setup = Setup()
    name, _ = setup.upstream()
    setup.target(name, MODES[mode], server.port)
    api_host = setup.api(name)
    gw.apply(setup)
    assert client_requests(gw, 1, api_host) == (1, 0, 200)
    assert (server.counts["ok"], server.counts["fail"]) == (1, 0)


@mode_param
def test_upstream_entities_properly_set_the_host_header(
    gw: HostsGateway, servers: Callable[..., KongServer], mode: str
) -> None:
    # l.828: the server answers only for its own name (check_hostname)
    localhost = MODES[mode]
    server = servers(server_name=localhost)
    setup = Setup()
    name, _ = setup.upstream(host_header=localhost)
    setup.target(name, localhost, server.port)
    api_host = setup.api(name)
    gw.apply(setup)
    assert client_requests(gw, 5, api_host) == (5, 0, 200)
    assert (server.counts["ok"], server.counts["fail"]) == (5, 0)


def test_upstream_entities_fail_with_wrong_host_header(
    gw: HostsGateway, servers: Callable[..., KongServer]
) -> None:
    # l.850 (hostname mode only): Host "localhost" at a server named 127.0.0.1 gets its 400
    server = servers(server_name="127.0.0.1")
    setup = Setup()
    name, _ = setup.upstream(host_header="localhost")
    setup.target(name, "localhost", server.port)
    api_host = setup.api(name, connect_timeout=100)
    gw.apply(setup)
    assert client_requests(gw, 5, api_host) == (0, 5, 400)
    assert (server.counts["ok"], server.counts["fail"]) == (0, 0)


@mode_param
def test_do_not_count_kong_generated_errors_as_failures(
    gw: HostsGateway, servers: Callable[..., KongServer], mode: str
) -> None:
    # l.1077: 401 is an unhealthy status with a 1-error threshold, but a 401 Kong answers itself
    # (here key-auth's, for fail-once-auth's) never reached a target.
    localhost = MODES[mode]
    server1, server2 = servers(), servers()
    setup = Setup()
    passive = {
        "healthy": {"successes": 1},
        "unhealthy": {
            "http_statuses": [401, 500],
            "http_failures": 1,
            "tcp_failures": 1,
            "timeouts": 1,
        },
    }
    name, _ = setup.upstream(healthchecks=healthchecks({"passive": passive}))
    setup.target(name, localhost, server1.port)
    setup.target(name, localhost, server2.port)
    api_host = setup.api(name, plugins=[{"name": "key-auth"}], connect_timeout=50)
    key = f"key-{uuid.uuid4()}"
    setup.consumers.append({"username": f"c-{key}", "keyauth_credentials": [{"key": key}]})
    gw.apply(setup)

    assert client_requests(gw, 1, api_host) == (0, 1, 401)
    oks, fails, last = client_requests(gw, SLOTS * 2, api_host, {"apikey": key})
    assert (last, fails) == (200, 0) and oks > 0
    assert server1.counts["ok"] > 0 and server2.counts["ok"] > 0
    assert server1.counts["fail"] == server2.counts["fail"] == 0


@pytest.mark.parametrize("nfails", [1, 2, 3])
@mode_param
def test_perform_passive_health_checks(
    gw: HostsGateway, servers: Callable[..., KongServer], mode: str, nfails: int
) -> None:
    # l.1140: server2 fails after the first round; nfails 500s take it out, server1 takes over
    localhost = MODES[mode]
    server1, server2 = servers(), servers()
    setup = Setup()
    passive = {"passive": {"unhealthy": {"http_failures": nfails}}}
    name, _ = setup.upstream(healthchecks=healthchecks(passive))
    setup.target(name, localhost, server1.port)
    setup.target(name, localhost, server2.port)
    api_host = setup.api(name)
    gw.apply(setup)

    requests = SLOTS * 2
    server2_oks = requests // 4
    server1_oks = requests - server2_oks
    oks1, fails1, _ = client_requests(gw, SLOTS, api_host)
    assert HTTP.get(f"http://127.0.0.1:{server2.port}/unhealthy").status_code == 200
    assert HTTP.get(f"http://127.0.0.1:{server2.port}/status").status_code == 500
    oks2, fails2, _ = client_requests(gw, SLOTS, api_host)

    count1, count2 = server1.counts, server2.counts
    assert abs(count1["ok"] - server1_oks) <= server1_oks * ACCEPTED_LB_VAR
    assert abs(count2["ok"] - server2_oks) <= server2_oks * ACCEPTED_LB_VAR
    assert count1["fail"] == 0
    assert abs(count2["fail"] - nfails) <= nfails * ACCEPTED_LB_VAR
    assert (oks1 + oks2, fails1 + fails2) == (requests - nfails, nfails)


@pytest.mark.parametrize("threshold", [0, 25, 75, 99, 100])
def test_threshold_for_health_checks(gw: HostsGateway, threshold: int) -> None:
    # l.1364: one target of weight 25 resolving to 4 addresses (25 each, 100 in all), marked
    # down one by one; the balancer is healthy while the available weight is above threshold.
    setup = Setup()
    hc = healthchecks({**PASSIVE_TCP_1, "threshold": threshold})
    name, uid = setup.upstream(healthchecks=hc)
    port = setup.target(name, "health-threshold.test", weight=25)
    gw.apply(setup)
    target = f"health-threshold.test:{port}"
    ips = NAMES["health-threshold.test"]
    for ip in ips:
        assert gw.put_health(uid, target, f"{ip}:{port}", "healthy") == 204

    for down, ip in enumerate([None, *ips]):
        if ip is not None:
            gw.put_health(uid, target, f"{ip}:{port}", "unhealthy")
        available = 100 - 25 * down

        def weights(available: int = available) -> dict[str, Any]:
            data: dict[str, Any] = gw.health(name, balancer=True)["data"]
            want = {"available": available, "unavailable": 100 - available, "total": 100}
            assert data["details"]["weight"] == want
            return data

        data = wait_for(weights)
        expected = "HEALTHY" if threshold < available else "UNHEALTHY"
        assert data["health"] == expected
        if available >= 75:  # the spec checks balancer_health at 100% and 75% only
            assert data["balancer_health"] == expected
