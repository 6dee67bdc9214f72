"""Kong's spec/03-plugins/06-statsd/01-log_spec.lua and 03-allow_status_codes_spec.lua, ported
against real gateways, the real echo upstream and real UDP (and TCP) StatsD servers on loopback.

Kong's spec sends every route's metrics to one UDP port and restarts Kong before each case; here
each route's statsd plugin has a UDP port of its own (:class:`UdpPorts`, one thread reading them
all), so the cases share one gateway and a case reads only its route's datagrams. Kong's
``helpers.udp_server(port, n)`` returns the first ``n`` datagrams: the cases wait for ``n``
(``eventually``) and assert them the same way (``assert.contains`` with a Lua pattern is
:func:`has`, which translates the pattern). As Kong's blueprints do, the consumer, the services
and the routes get random (v4) ids.

Ported, 01-log_spec.lua: l.58-885 (the routes and plugins) and 919-1700 (every "metrics" case
over HTTP), 1702-1881 and 1908-2066 (the ``shdict_usage`` cases, see below), 1885-1906
(``hostname_in_prefix``), 2125-2286 (the global plugin on a request no route matched, with and
without ``queue_size``), 2288-2363 (no metric sent twice). 03-allow_status_codes_spec.lua: all
three cases, through the gateway (a route per ``allow_status_codes`` list, a request per
status; the measured ones are those whose ``status.<code>`` line arrives).

Where fastkong documents a difference, its behaviour is asserted (docs/plugins.md, the statsd
row: ``shdict_usage`` sends nothing, fastkong has no nginx shared dictionaries): Kong's counts
``DEFAULT_METRICS_COUNT + shdict_count * 2`` are ``DEFAULT_METRICS_COUNT`` here, and the
``shdict_usage`` cases assert that no ``shdict`` metric is sent. The workspace id is Kong's
DB-less ``constants.DECLARATIVE_DEFAULT_WORKSPACE_ID``, a v4 UUID, as Kong's pattern wants.

Left out: the "metrics #grpc" cases (l.2068-2122): README.md, a plain gRPC call cannot be proxied
(Granian's ASGI carries no HTTP/2 trailers); ``count_shdicts`` (l.22-50) reads nginx.conf, which
fastkong does not have.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import re
import selectors
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.helpers import Echo, Gateway, LineServer, eventually

pytestmark = pytest.mark.integration

DEFAULT_METRICS_COUNT = 12
DEFAULT_UNMATCHED_METRICS_COUNT = 6
UUID = "%x%x%x%x%x%x%x%x%-%x%x%x%x%-4%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x"
HOSTNAME = socket.gethostname().replace(".", "_")  # Kong's get_hostname(), dots made "_"
CONSUMER_ID = str(uuid.uuid4())


# -- Lua patterns ---------------------------------------------------------------------------------
_CLASSES = {"d": r"\d", "x": "[0-9A-Fa-f]", "s": r"\s", "w": "[0-9A-Za-z]", "a": "[A-Za-z]"}


def lua_re(pattern: str) -> re.Pattern[str]:
    """A Lua pattern as a Python regex (``%`` classes and escapes, ``-`` the lazy ``*`` after a
    class, every other character that is not special in Lua taken literally)."""
    out: list[str] = []
    after_class = False
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "%":
            out.append(_CLASSES.get(pattern[i + 1], re.escape(pattern[i + 1])))
            after_class, i = True, i + 2
            continue
        if c == "-" and after_class:
            out.append("*?")
            after_class = False
        elif c in ".()":
            out.append(c)
            after_class = c == "."
        elif c in "*+?":
            out.append(c)
            after_class = False
        elif c == "^" and i == 0:
            out.append(c)
        elif c == "$" and i == len(pattern) - 1:
            out.append(r"\Z")  # Lua's $ is the very end (Python's also before a last newline)
        else:
            out.append(re.escape(c))
            after_class = True
        i += 1
    return re.compile("".join(out), re.DOTALL)


def has(pattern: str, items: list[str]) -> bool:
    """luassert's ``assert.contains(pattern, items, true)``: one item matches the Lua pattern."""
    regex = lua_re(pattern)
    return any(regex.search(item) for item in items)


# -- UDP servers ----------------------------------------------------------------------------------
class UdpPorts:
    """A UDP socket on loopback per name, all read by one thread: each keeps its datagrams."""

    def __init__(self, names: list[str]) -> None:
        self.selector = selectors.DefaultSelector()
        self.ports: dict[str, int] = {}
        self.got: dict[str, list[str]] = {}
        for name in names:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind(("127.0.0.1", 0))
            sock.setblocking(False)
            self.selector.register(sock, selectors.EVENT_READ, name)
            self.ports[name] = sock.getsockname()[1]
            self.got[name] = []
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while self.running:
            for key, _ in self.selector.select(0.2):
                with contextlib.suppress(BlockingIOError):
                    self.got[key.data].append(key.fileobj.recv(65536).decode())  # type: ignore[union-attr]

    def since(self, name: str, start: int, count: int, timeout: float = 10.0) -> list[str]:
        """The ``count`` datagrams of ``name`` after the first ``start``, once they came (Kong's
        ``helpers.udp_server(port, count)`` returns the first ``count`` it receives)."""
        eventually(lambda: len(self.got[name]) - start >= count, timeout)
        return self.got[name][start : start + count]

    def stop(self) -> None:
        self.running = False
        self.thread.join(5)
        for key in list(self.selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        self.selector.close()


# -- the config (01-log_spec.lua l.58-885, 2128-2158, 2209-2240, 2291-2335) -----------------------
def m(name: str, stat_type: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "stat_type": stat_type, **extra}


C, T = "counter", "timer"
TRIO = [m("request_count", C, sample_rate=1), m("upstream_latency", T), m("kong_latency", T)]


def by(ident: str) -> list[dict[str, Any]]:
    return [
        m("request_count", C, sample_rate=1, service_identifier=ident),
        m("status_count", C, sample_rate=1, service_identifier=ident),
    ]


def only(name: str, stat_type: str, **extra: Any) -> dict[str, Any]:
    """A statsd config of one metric."""
    return {"metrics": [m(name, stat_type, **extra)]}


R1 = {"sample_rate": 1}
IDS = {"service_identifier": "service_id", "workspace_identifier": "workspace_name"}
SIZE_BY_IDS = [m("request_size", C, sample_rate=1, consumer_identifier="consumer_id", **IDS)]
STYLES = ["dogstatsd", "influxdb", "librato", "signalfx"]

#: Route label (its host is ``logging<label>.test``) -> (key-auth on it, the statsd config
#: beside host and port); the label 18 is the TCP one.
ROUTES: dict[str, tuple[bool, dict[str, Any]]] = {
    "1": (True, {}),
    "2": (False, only("latency", T)),
    "3": (False, only("status_count", C, sample_rate=1)),
    "4": (False, only("request_size", C, sample_rate=1)),
    "5": (False, only("request_count", C, sample_rate=1)),
    "6": (False, only("response_size", C, sample_rate=1)),
    "7": (False, only("upstream_latency", T)),
    "8": (False, only("kong_latency", T)),
    "9": (True, only("unique_users", "set", consumer_identifier="custom_id")),
    "10": (True, only("status_count_per_user", C, consumer_identifier="custom_id", sample_rate=1)),
    "11": (True, only("request_per_user", C, consumer_identifier="username", sample_rate=1)),
    "12": (True, only("latency", "gauge", sample_rate=1)),
    "13": (True, {"prefix": "prefix"}),
    "14": (True, only("unique_users", "set", consumer_identifier="consumer_id")),
    "15": (True, only("status_count_per_user_per_route", C, consumer_identifier="username", **R1)),
    "16": (False, only("status_count_per_workspace", C, workspace_identifier="workspace_id", **R1)),
    "17": (
        False,
        only("status_count_per_workspace", C, workspace_identifier="workspace_name", **R1),
    ),
    "18": (True, {"use_tcp": True, "metrics": [m("request_count", C, sample_rate=1)]}),
    "19": (True, {"metrics": TRIO, "udp_packet_size": 500}),
    "20": (True, {"metrics": TRIO, "udp_packet_size": 100}),
    "21": (True, {"metrics": TRIO, "udp_packet_size": 1}),
    "22": (True, {"metrics": by("service_id")}),
    "23": (True, {"metrics": by("service_name")}),
    "24": (True, {"metrics": by("service_host")}),
    **{str(25 + i): (False, {"tag_style": style}) for i, style in enumerate(STYLES)},
    **{str(31 + i): (True, {"prefix": "prefix", "tag_style": s}) for i, s in enumerate(STYLES)},
    **{str(35 + i): (True, {"metrics": SIZE_BY_IDS, "tag_style": s}) for i, s in enumerate(STYLES)},
    # services without a name from here (l.688-699)
    "100": (True, {"metrics": by("service_name_or_host")}),
    "101": (True, {"metrics": by("service_name")}),
    "102": (True, {"metrics": by("service_name"), "hostname_in_prefix": True}),
    "103": (True, {"hostname_in_prefix": True}),
    **{
        str(104 + i): (True, {"hostname_in_prefix": True, "tag_style": s})
        for i, s in enumerate(STYLES)
    },
    # l.2288-2363: its own describe, a service named "statsd"
    "": (True, {}),
}
SERVICE_IDS = {label: str(uuid.uuid4()) for label in ROUTES}
ROUTE_IDS = {label: str(uuid.uuid4()) for label in ROUTES}


def consumers() -> list[dict[str, Any]]:
    return [
        {
            "id": CONSUMER_ID,
            "username": "bob",
            "custom_id": "robert",
            "keyauth_credentials": [{"key": "kong"}],
        }
    ]


def main_config(echo: Echo, udp: UdpPorts, tcp: LineServer) -> dict[str, Any]:
    services = []
    for label, (key_auth, config) in ROUTES.items():
        port = tcp.port if config.get("use_tcp") else udp.ports[label]
        plugins = [{"name": "statsd", "config": {"host": "127.0.0.1", "port": port, **config}}]
        if key_auth:
            plugins.append({"name": "key-auth"})
        service: dict[str, Any] = {"id": SERVICE_IDS[label], "url": echo.url}
        if len(label) < 3:  # l.78-90 and 2311-2315: named; l.688-699: not
            service["name"] = f"statsd{label}"
        route = {"id": ROUTE_IDS[label], "hosts": [f"logging{label}.test"], "plugins": plugins}
        services.append({**service, "routes": [route]})
    # 03-allow_status_codes_spec.lua: nil, {"200-204"}, {"200-204", "400-404"}
    for label, codes in (("all", None), ("one", ["200-204"]), ("two", ["200-204", "400-404"])):
        config = {"host": "127.0.0.1", "port": udp.ports[label], "allow_status_codes": codes}
        config["metrics"] = [m("status_count", C, sample_rate=1)]
        route = {
            "hosts": [f"codes-{label}.test"],
            "plugins": [{"name": "statsd", "config": config}],
        }
        services.append({"name": f"codes-{label}", "url": echo.url, "routes": [route]})
    return {"_format_version": "3.0", "consumers": consumers(), "services": services}


def global_config(port: int, **extra: Any) -> dict[str, Any]:
    """l.2128-2158 (and 2209-2240, ``queue_size`` 2): key-auth and statsd, global, no route."""
    statsd = {"name": "statsd", "config": {"host": "127.0.0.1", "port": port, **extra}}
    return {
        "_format_version": "3.0",
        "consumers": consumers(),
        "plugins": [{"name": "key-auth"}, statsd],
    }


@dataclass
class Env:
    main: Gateway
    globally: Gateway
    batched: Gateway
    udp: UdpPorts
    tcp: LineServer


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, echo: Echo) -> Iterator[Env]:
    labels = [*ROUTES, "all", "one", "two", "global", "batched"]
    with contextlib.ExitStack() as stack:
        udp = UdpPorts(labels)
        stack.callback(udp.stop)
        tcp = LineServer().start()
        stack.callback(tcp.stop)
        texts = (
            main_config(echo, udp, tcp),
            global_config(udp.ports["global"]),
            global_config(udp.ports["batched"], queue_size=2),
        )
        gateways = [Gateway(tmp_path_factory.mktemp("statsd"), json.dumps(t)) for t in texts]
        for gateway in gateways:
            stack.callback(gateway.stop)
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            list(pool.map(Gateway.start, gateways))
        yield Env(*gateways, udp, tcp)


def send(env: Env, label: str, count: int, path: str = "/request?apikey=kong") -> list[str]:
    """GET ``path`` at ``logging<label>.test`` (a 200), then the first ``count`` datagrams its
    statsd plugin sends (Kong's ``helpers.udp_server(UDP_PORT, count, 2)``)."""
    start = len(env.udp.got[label])
    r = httpx.get(env.main.url(path), headers={"host": f"logging{label}.test"})
    assert r.status_code == 200, r.text
    return env.udp.since(label, start, count)


# -- "metrics" (l.900-1883) -----------------------------------------------------------------------
def default_metrics(prefix: str, scope: str) -> list[str]:
    """l.934-947 (and 1060-1073): the default metrics of a request of bob's, as patterns."""
    p = f"{prefix}.{scope}"
    return [
        f"^{p}%.request%.count:1|c$",
        f"{p}.request.size:%d+|c",
        f"{p}.response.size:%d+|c",
        f"{p}.latency:%d+|ms",
        f"^{p}%.status%.200:1|c$",
        f"{p}.upstream_latency:%d*|ms",
        f"{p}.kong_latency:%d*|ms",
        f"^{p}%.user%.uniques:robert|s$",
        f"^{p}%.user%.robert%.request%.count:1|c$",
        f"^{p}%.user%.robert%.status%.200:1|c$",
        f"{p}.workspace." + UUID + ".status.200:1|c",
        f"{prefix}.route." + UUID + ".user.robert.status.200:1|c",
    ]


@pytest.mark.parametrize(("label", "prefix"), [("1", "kong"), ("13", "prefix")])
def test_logs_over_udp_with_default_metrics(env: Env, label: str, prefix: str) -> None:
    """l.919-948 (logging1) and 1043-1074 (logging13, ``prefix``); shdict_usage sends nothing
    (docs/plugins.md), so the count is Kong's without ``shdict_count * 2``."""
    metrics = send(env, label, DEFAULT_METRICS_COUNT)
    assert len(metrics) == DEFAULT_METRICS_COUNT, metrics
    for pattern in default_metrics(prefix, f"service.statsd{label}"):
        assert has(pattern, metrics), (pattern, metrics)


#: tag style -> how the six plain metrics look (l.965-970, 988-993, 1011-1016, 1034-1039).
TAGGED = {
    "dogstatsd": "{p}.{stat}:{value}|{kind}|#.*",
    "influxdb": "{p}.{stat},.*:{value}|{kind}",
    "librato": "{p}.{stat}#.*:{value}|{kind}",
    "signalfx": "{p}.{stat}%[.*%]:{value}|{kind}",
}
SIX = [
    ("request.count", "1", "c"),
    ("request.size", "%d+", "c"),
    ("response.size", "%d+", "c"),
    ("latency", "%d*", "ms"),
    ("upstream_latency", "%d*", "ms"),
    ("kong_latency", "%d*", "ms"),
]


@pytest.mark.parametrize("prefix", ["kong", "prefix"])
@pytest.mark.parametrize("style", STYLES)
def test_logs_over_udp_with_default_metrics_in_a_tag_style(
    env: Env, style: str, prefix: str
) -> None:
    """l.950-1040 (logging25-28) and 1076-1166 (logging31-34, ``prefix``): the six plain metrics
    tagged; the per-user and per-status ones are not sent in a tag style."""
    label = str((25 if prefix == "kong" else 31) + STYLES.index(style))
    metrics = send(env, label, DEFAULT_METRICS_COUNT - 6)
    assert len(metrics) == DEFAULT_METRICS_COUNT - 6, metrics
    for stat, value, kind in SIX:
        pattern = TAGGED[style].format(p=prefix, stat=stat, value=value, kind=kind)
        assert has(pattern, metrics), (pattern, metrics)


#: l.1182-1185, 1202-1205, 1222-1225, 1242-1245.
BY_IDS = {
    "dogstatsd": ("kong.request.size:%d+|c|#.*", ".*service:.*-.*-.*", ".*consumer:.*-.*-.*"),
    "influxdb": ("kong.request.size,.*:%d+|c", ".*service=.*-.*-.*", ".*consumer=.*-.*-.*"),
    "librato": ("kong.request.size#.*:%d+|c", ".*service=.*-.*-.*", ".*consumer=.*-.*-.*"),
    "signalfx": ("kong.request.size%[.*%]:%d+|c", ".*service=.*-.*-.*", ".*consumer=.*-.*-.*"),
}


@pytest.mark.parametrize("style", STYLES)
def test_request_size_customer_identifier_in_a_tag_style(env: Env, style: str) -> None:
    """l.1168-1246 (logging35-38): service and consumer by id (UUIDs), workspace by name."""
    res = send(env, str(35 + STYLES.index(style)), 1)
    line, service, consumer = BY_IDS[style]
    assert has(line, res), res
    assert not has(".*workspace=%s+-%s+-.*", res)
    assert has(service, res), res
    assert has(consumer, res), res
    assert f"{SERVICE_IDS[str(35 + STYLES.index(style))]}" in res[0]
    assert CONSUMER_ID in res[0]


#: The one-metric cases: (label, path, Kong's pattern), l.1248-1508.
ONE_METRIC = [
    ("5", "/request", "kong.service.statsd5.request.count:1|c"),  # l.1248-1264
    ("3", "/request", "kong.service.statsd3.status.200:1|c"),  # l.1266-1281
    ("4", "/request", "kong.service.statsd4.request.size:%d+|c"),  # l.1283-1298
    ("2", "/request", "kong.service.statsd2.latency:.*|ms"),  # l.1300-1315
    ("6", "/request", "kong.service.statsd6.response.size:%d+|c"),  # l.1317-1332
    ("7", "/request", "kong.service.statsd7.upstream_latency:.*|ms"),  # l.1334-1349
    ("8", "/request", "kong.service.statsd8.kong_latency:.*|ms"),  # l.1351-1366
    ("9", "/request?apikey=kong", "kong.service.statsd9.user.uniques:robert|s"),  # l.1368-1383
    # l.1385-1400, status_count_per_user
    ("10", "/request?apikey=kong", "kong.service.statsd10.user.robert.status.200:1|c"),
    # l.1402-1418, request_per_user
    ("11", "/request?apikey=kong", "kong.service.statsd11.user.bob.request.count:1|c"),
    ("12", "/request?apikey=kong", "kong%.service.statsd12.latency:%d+|g"),  # l.1420-1435
    # l.1437-1453, consumer by consumer_id
    ("14", "/request?apikey=kong", "^kong.service.statsd14.user.uniques:" + UUID + "|s"),
    # l.1455-1471, status_count_per_user_per_route
    ("15", "/request?apikey=kong", "kong.route." + UUID + ".user.bob.status.200:1|c"),
    # l.1473-1489 and 1491-1508, status_count_per_workspace by id, then by name
    ("16", "/request?apikey=kong", "kong.service.statsd16.workspace." + UUID),
    ("17", "/request?apikey=kong", "kong.service.statsd17.workspace.default.status.200:1|c"),
]


@pytest.mark.parametrize(("label", "path", "pattern"), ONE_METRIC, ids=[c[0] for c in ONE_METRIC])
def test_one_metric(env: Env, label: str, path: str, pattern: str) -> None:
    res = send(env, label, 1, path)
    assert has(pattern, res), (pattern, res)
    if label == "16":  # the rest of l.1488
        assert has(".status.200:1|c", res), res
    if label == "15":
        assert res == [f"kong.route.{ROUTE_IDS['15']}.user.bob.status.200:1|c"]
    if label == "14":
        assert res == [f"kong.service.statsd14.user.uniques:{CONSUMER_ID}|s"]


def test_logs_over_tcp_with_one_metric(env: Env) -> None:
    """l.1510-1525: the line arrives on the TCP server."""
    start = len(env.tcp.lines)
    r = httpx.get(env.main.url("/request?apikey=kong"), headers={"host": "logging18.test"})
    assert r.status_code == 200
    eventually(lambda: len(env.tcp.lines) > start)
    assert re.search(r"kong.service.statsd18.request.count:1\|c", env.tcp.lines[start])


def test_combines_udp_packets(env: Env) -> None:
    """l.1527-1550: udp_packet_size 500, the three metrics in one datagram."""
    res = send(env, "19", 1)
    p = "kong.service.statsd19"
    assert not has(f"^{p}.request.count:%d+|c$", res)
    assert not has(f"^{p}.upstream_latency:%d+|ms$", res)
    assert not has(f"^{p}.kong_latency:%d+|ms$", res)
    combined = f"^{p}.request.count:%d+|c\n{p}.upstream_latency:%d+|ms\n{p}.kong_latency:%d+|ms$"
    assert has(combined, res), res


def test_combines_and_splits_udp_packets(env: Env) -> None:
    """l.1552-1577: udp_packet_size 100, two metrics in a datagram and the third in another."""
    res = send(env, "20", 2)
    assert len(res) == 2, res
    p = "kong.service.statsd20"
    assert not has(f"^{p}.request.count:%d+|c$", res)
    assert not has(f"^{p}.upstream_latency:%d+|ms$", res)
    assert not has(f"^{p}.request.count:%d+|c\n{p}.upstream_latency:%d+|ms\n{p}.kong_latency", res)
    assert has(f"^{p}.request.count:%d+|c\n{p}.upstream_latency:%d+|ms$", res), res
    assert has(f"^{p}.kong_latency:%d+|ms$", res), res


def test_udp_packet_size_too_small(env: Env) -> None:
    """l.1579-1601: udp_packet_size 1, a datagram per metric."""
    res = send(env, "21", 3)
    assert len(res) == 3, res
    p = "kong.service.statsd21"
    assert has(f"^{p}.request.count:%d+|c$", res), res
    assert has(f"^{p}.upstream_latency:%d+|ms$", res), res
    assert has(f"^{p}.kong_latency:%d+|ms$", res), res


#: (label, the service's scope), l.1603-1700.
SCOPES = [
    ("22", "kong.service." + UUID),  # l.1603-1620, service_id
    ("23", "kong.service.statsd23"),  # l.1622-1639, service_name
    ("24", "kong.service.127_0_0_1"),  # l.1641-1660, service_host (mock_upstream_host)
    ("100", "kong.service.127_0_0_1"),  # l.1662-1681, service_name_or_host without a name
    ("101", "kong.service.unnamed"),  # l.1683-1700, service_name without a name
]


@pytest.mark.parametrize(("label", "scope"), SCOPES, ids=[c[0] for c in SCOPES])
def test_logs_service_by_identifier(env: Env, label: str, scope: str) -> None:
    res = send(env, label, 2)
    assert len(res) == 2, res
    assert has(f"^{scope}.request.count:1|c$", res), res
    assert has(f"^{scope}.status.200:1|c$", res), res
    if label == "22":
        assert f"kong.service.{SERVICE_IDS['22']}.request.count:1|c" in res


#: label -> the count Kong expects beside its shdict metrics (l.1702-1881, 1908-2066).
SHDICT_CASES = {
    "1": DEFAULT_METRICS_COUNT,  # l.1702-1737
    "25": DEFAULT_METRICS_COUNT - 6,  # l.1739-1773, dogstatsd
    "26": DEFAULT_METRICS_COUNT - 6,  # l.1775-1809, influxdb
    "27": DEFAULT_METRICS_COUNT - 6,  # l.1811-1845, librato
    "28": DEFAULT_METRICS_COUNT - 6,  # l.1847-1881, signalfx
    "103": DEFAULT_METRICS_COUNT,  # l.1908-1938, hostname_in_prefix
    "104": DEFAULT_METRICS_COUNT - 6,  # l.1940-1970, hostname_in_prefix, dogstatsd
    "105": DEFAULT_METRICS_COUNT - 6,  # l.1972-2002, influxdb
    "106": DEFAULT_METRICS_COUNT - 6,  # l.2004-2034, librato
    "107": DEFAULT_METRICS_COUNT - 6,  # l.2036-2066, signalfx
}


@pytest.mark.parametrize("label", list(SHDICT_CASES))
def test_shdict_usage(env: Env, label: str) -> None:
    """Kong sends two gauges per nginx shared dictionary the first time (``shdict.<name>.
    capacity`` and ``free_space``); fastkong has none and sends nothing for ``shdict_usage``
    (docs/plugins.md, the statsd row): the default metrics alone."""
    count = SHDICT_CASES[label]
    metrics = send(env, label, count)
    assert len(metrics) == count, metrics
    assert not [x for x in metrics if "shdict" in x]
    if label == "103":  # hostname_in_prefix: every name has the node (l.1935-1936's prefix)
        assert all(x.startswith(f"kong.node.{HOSTNAME}.") for x in metrics), metrics
    if label in ("104", "105", "106", "107"):  # not in a tag style (l.1940's describe)
        assert all(x.startswith("kong.") and not x.startswith("kong.node.") for x in metrics)


def test_hostname_in_prefix(env: Env) -> None:
    """l.1885-1906 (logging102)."""
    metrics = send(env, "102", 1)
    assert f"kong.node.{HOSTNAME}.service.unnamed.request.count:1|c" in metrics


# -- a global statsd and a request no route matched (l.2125-2286) ---------------------------------
@pytest.mark.parametrize("which", ["globally", "batched"])
def test_sends_default_metrics_with_global_unmatched_namespace(env: Env, which: str) -> None:
    """l.2169-2202 and 2251-2284 (``queue_size`` 2): Kong runs the global plugins' log phase on
    its 404, in the ``global.unmatched`` scope, without upstream latency nor consumer metrics."""
    gateway: Gateway = getattr(env, which)
    name = "global" if which == "globally" else "batched"
    start = len(env.udp.got[name])
    r = httpx.get(gateway.url("/request?apikey=kong"), headers={"host": "logging1.test"})
    assert r.status_code == 404
    # The first six, as Kong's udp_server (l.2175); a seventh follows in Kong too:
    # status_count_per_workspace, ws.get_workspace_id() being the default one on a 404.
    metrics = env.udp.since(name, start, DEFAULT_UNMATCHED_METRICS_COUNT)
    assert len(metrics) == DEFAULT_UNMATCHED_METRICS_COUNT, metrics
    p = "kong.global.unmatched"
    assert f"{p}.request.count:1|c" in metrics
    assert has(f"{p}.latency:%d+|ms", metrics)
    assert has(f"{p}.request.size:%d+|c", metrics)
    assert f"{p}.status.404:1|c" in metrics
    assert has(f"{p}.response.size:%d+|c", metrics)
    assert not has(f"{p}.upstream_latency:%d*|ms", metrics)
    assert has(f"{p}.kong_latency:%d+|ms", metrics)
    assert f"{p}.user.uniques:robert|s" not in metrics
    assert f"{p}.user.robert.request.count:1|c" not in metrics
    assert f"{p}.user.robert.status.404:1|c" not in metrics
    assert not has(f"{p}.workspace." + UUID + ".status.200:1|c", metrics)
    assert not has("kong.route." + UUID + ".user.robert.status.404:1|c", metrics)


def test_wont_send_the_same_metric_multiple_times(env: Env) -> None:
    """l.2347-2362: Kong waits for one datagram more than it expects and gets none. Here a second
    request to the same route is the barrier: its metrics come after any repeat of the first's,
    so exactly twice the count means nothing was sent twice."""
    start = len(env.udp.got[""])
    first = send(env, "", DEFAULT_METRICS_COUNT)
    send(env, "", DEFAULT_METRICS_COUNT)
    both = env.udp.since("", start, 2 * DEFAULT_METRICS_COUNT)  # the first 2n
    assert env.udp.got[""][start:] == both  # and no more
    assert len(set(first)) == DEFAULT_METRICS_COUNT  # no line twice in one request's


# -- 03-allow_status_codes_spec.lua ---------------------------------------------------------------
#: (route, status, measured): l.5-11 (nil: every status), 13-22 ("200-204"), 24-33
#: ("200-204", "400-404": neither 205, 301 nor 500).
CODES = [
    ("all", 200, True),
    ("all", 201, True),
    ("all", 401, True),
    ("all", 500, True),
    ("one", 200, True),
    ("one", 201, True),
    ("one", 203, True),
    ("one", 204, True),
    ("two", 205, False),
    ("two", 301, False),
    ("two", 500, False),
    ("two", 404, True),
]


def test_allow_status_codes(env: Env) -> None:
    """Every request of the table, then a last one each route measures (the barrier): the
    ``status.<code>`` lines that came are those of the measured statuses."""
    starts = {label: len(env.udp.got[label]) for label in ("all", "one", "two")}
    for label, status, _ in [*CODES, ("all", 202, True), ("one", 202, True), ("two", 202, True)]:
        r = httpx.get(env.main.url(f"/status/{status}"), headers={"host": f"codes-{label}.test"})
        assert r.status_code == status
    for label, start in starts.items():
        expected = [s for route, s, measured in CODES if route == label and measured] + [202]
        got = env.udp.since(label, start, len(expected))
        assert got == [f"kong.service.codes-{label}.status.{s}:1|c" for s in expected]
