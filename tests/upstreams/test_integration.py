"""Upstreams end to end: a real ``fastkong start`` in front of real upstreams on loopback that
die, hang and come back (through :class:`tests.fault_proxy.FaultProxy`)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from tests.fault_proxy import FaultProxy
from tests.helpers import Echo, Gateway, eventually
from tests.ws_peer import WsClient, WsEcho

pytestmark = pytest.mark.integration

CONFIG = """
_format_version: "3.0"
services:
- {{name: lc, host: lc.internal, routes: [{{name: lc, paths: ["/lc"]}}]}}
- {{name: hash, host: hash.internal, routes: [{{name: hash, paths: ["/hash"]}}]}}
- {{name: sticky, host: sticky.internal, routes: [{{name: sticky, paths: ["/sticky"]}}]}}
- name: cb
  host: cb.internal
  read_timeout: 400
  routes: [{{name: cb, paths: ["/cb"]}}]
- {{name: manual, host: manual.internal, routes: [{{name: manual, paths: ["/manual"]}}]}}
- name: ws
  url: http://127.0.0.1:{ws}
  routes:
  - {{name: ws, paths: ["/ws"], strip_path: false}}
  - name: ws-auth
    paths: ["/auth-ws"]
    strip_path: false
    plugins: [{{name: key-auth}}]
- name: ws-balanced
  host: ws.internal
  routes: [{{name: ws-balanced, paths: ["/wsb"], strip_path: false}}]
consumers:
- {{username: alice, keyauth_credentials: [{{key: alice-key}}]}}
upstreams:
- name: lc.internal
  algorithm: least-connections
  targets: [{{target: "127.0.0.1:{echo}"}}, {{target: "127.0.0.1:{echo2}"}}]
- name: hash.internal
  hash_on: header
  hash_on_header: x-user
  targets: [{{target: "127.0.0.1:{echo}"}}, {{target: "127.0.0.1:{echo2}"}}]
- name: sticky.internal
  hash_on: cookie
  hash_on_cookie: sticky
  targets: [{{target: "127.0.0.1:{echo}"}}, {{target: "127.0.0.1:{echo2}"}}]
- name: cb.internal
  healthchecks:
    passive:
      unhealthy: {{tcp_failures: 2, timeouts: 1}}
    active:
      http_path: /probe
      timeout: 0.5
      healthy: {{interval: 0, successes: 2}}
      unhealthy: {{interval: 0.2}}
  targets: [{{target: "127.0.0.1:{echo}"}}, {{target: "127.0.0.1:{fault}"}}]
- name: manual.internal
  targets: [{{target: "127.0.0.1:{echo}"}}, {{target: "127.0.0.1:{manual}"}}]
- name: ws.internal
  targets: [{{target: "127.0.0.1:{ws}"}}]
- name: named.internal
  targets: [{{target: "localhost:{echo}"}}]
"""


@pytest.fixture(scope="module")
def fault(echo2: Echo) -> Iterator[FaultProxy]:
    proxy = FaultProxy(echo2.port).start()
    yield proxy
    proxy.stop()


@pytest.fixture(scope="module")
def manual(echo2: Echo) -> Iterator[FaultProxy]:
    proxy = FaultProxy(echo2.port).start()
    yield proxy
    proxy.stop()


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory,
    echo: Echo,
    echo2: Echo,
    ws_echo: WsEcho,
    fault: FaultProxy,
    manual: FaultProxy,
) -> Iterator[Gateway]:
    config = CONFIG.format(
        echo=echo.port, echo2=echo2.port, ws=ws_echo.port, fault=fault.port, manual=manual.port
    )
    gw = Gateway(tmp_path_factory.mktemp("upstreams"), config).start()
    yield gw
    assert gw.stop() == 0


def server(r: httpx.Response) -> str:
    return r.headers.get("x-echo-server", "")


def admin(gw: Gateway, path: str) -> str:
    return f"http://127.0.0.1:{gw.admin_port}{path}"


# -- least-connections, hashing ------------------------------------------------------------------
def test_least_connections_prefers_the_idle_peer(gateway: Gateway) -> None:
    with httpx.Client(base_url=gateway.url(""), timeout=10) as client:
        busy: list[str] = []

        async def slow() -> None:
            async with httpx.AsyncClient(timeout=10) as c:
                busy.append(server(await c.get(gateway.url("/lc/delay/1500"))))

        async def scenario() -> list[str]:
            task = asyncio.ensure_future(slow())
            await asyncio.sleep(0.4)
            quick = []
            async with httpx.AsyncClient(timeout=10) as c:
                for _ in range(6):
                    quick.append(server(await c.get(gateway.url("/lc/x"))))
            await task
            return quick

        quick = asyncio.run(scenario())
        assert len(set(quick)) == 1 and quick[0] != busy[0]
        # idle again: the two peers share sequential traffic
        spread = Counter(server(client.get("/lc/x")) for _ in range(10))
        assert spread == {"echo-1": 5, "echo-2": 5}


def test_consistent_hashing_keeps_each_key_on_one_peer(gateway: Gateway) -> None:
    with httpx.Client(base_url=gateway.url(""), timeout=10) as client:
        owners: dict[str, str] = {}
        for round_ in range(3):
            for i in range(40):
                user = f"user-{i}"
                got = server(client.get("/hash/x", headers={"x-user": user}))
                if round_ == 0:
                    owners[user] = got
                assert owners[user] == got
        assert set(owners.values()) == {"echo-1", "echo-2"}


def test_cookie_hashing_sets_the_cookie_once(gateway: Gateway) -> None:
    r = httpx.get(gateway.url("/sticky/x"))
    cookie = r.headers["set-cookie"]
    assert cookie.startswith("sticky=") and cookie.endswith("; Path=/; Same-Site=Lax; HttpOnly")
    value = cookie.split(";")[0].split("=", 1)[1]
    first = server(r)
    for _ in range(5):
        again = httpx.get(gateway.url("/sticky/x"), headers={"cookie": f"sticky={value}"})
        assert "set-cookie" not in again.headers
        assert server(again) == first


# -- circuit breaking: passive checks, active recovery -------------------------------------------
def test_killed_target_stops_getting_traffic_and_comes_back(
    gateway: Gateway, fault: FaultProxy
) -> None:
    with httpx.Client(base_url=gateway.url(""), timeout=10) as client:
        assert {server(client.get("/cb/traffic")) for _ in range(6)} == {"echo-1", "echo-2"}
        fault.set("down")  # the target's process is gone: connections are refused
        before = fault.seen(" /traffic")
        for _ in range(20):
            r = client.get("/cb/traffic")
            assert r.status_code == 200 and server(r) == "echo-1"  # retried on the healthy peer
        assert fault.seen(" /traffic") == before  # refused connections never reached it
        health = httpx.get(admin(gateway, "/upstreams/cb.internal/health")).json()
        by_target = {row["target"]: row for row in health["data"]}
        dead = by_target[f"127.0.0.1:{fault.port}"]
        assert dead["health"] == "UNHEALTHY"
        assert dead["data"]["addresses"][0]["health"] == "UNHEALTHY"
        assert dead["data"]["weight"] == {"total": 100, "unavailable": 100, "available": 0}

        # the target comes back: the unhealthy-interval probes (/probe) see two successes
        fault.set("pass")
        eventually(lambda: fault.seen("GET /probe") >= 2, 5)
        eventually(lambda: server(client.get("/cb/traffic")) == "echo-2", 5)
        assert fault.seen(" /traffic") > before
        health = httpx.get(admin(gateway, "/upstreams/cb.internal/health")).json()
        assert {row["health"] for row in health["data"]} == {"HEALTHY"}


def test_a_hanging_target_is_taken_out_after_a_timeout(gateway: Gateway, fault: FaultProxy) -> None:
    with httpx.Client(base_url=gateway.url(""), timeout=10) as client:
        eventually(lambda: server(client.get("/cb/traffic")) == "echo-2", 5)
        fault.set("hang")
        hung_before = fault.seen(" /traffic")
        for _ in range(6):
            r = client.get("/cb/traffic")
            assert r.status_code == 200 and server(r) == "echo-1"
        # one timeout (read_timeout 400 ms) and the breaker opens
        assert fault.seen(" /traffic") - hung_before == 1
        fault.set("pass")
        eventually(lambda: server(client.get("/cb/traffic")) == "echo-2", 5)


def test_non_idempotent_request_is_not_resent_after_reaching_a_peer(
    gateway: Gateway, fault: FaultProxy
) -> None:
    fault.set("reset")
    try:
        seen = Counter()
        for _ in range(4):
            r = httpx.post(gateway.url("/cb/traffic"), content=b"payload", timeout=10)
            seen[r.status_code] += 1
        # a POST that reached the resetting peer is answered 502, never replayed on echo-1
        assert seen[502] >= 1 and seen[200] >= 1
    finally:
        fault.set("pass")


# -- manual health, reloads ------------------------------------------------------------------------
def test_manual_health_works_dbless_and_survives_a_reload(
    gateway: Gateway, manual: FaultProxy
) -> None:
    target = f"127.0.0.1:{manual.port}"
    with httpx.Client(base_url=gateway.url(""), timeout=10) as client:
        assert {server(client.get("/manual/x")) for _ in range(4)} == {"echo-1", "echo-2"}
        r = httpx.post(admin(gateway, f"/upstreams/manual.internal/targets/{target}/unhealthy"))
        assert r.status_code == 204
        eventually(lambda: all(server(client.get("/manual/x")) == "echo-1" for _ in range(4)), 3)
        health = httpx.get(admin(gateway, "/upstreams/manual.internal/health")).json()
        rows = {row["target"]: row["health"] for row in health["data"]}
        # checks are off for this upstream: Kong's HEALTHCHECKS_OFF, except the marked target
        assert rows == {
            f"127.0.0.1:{gateway_echo_port(gateway)}": "HEALTHCHECKS_OFF",
            target: "UNHEALTHY",
        }

        # a reload that changes something else keeps the unchanged target's state
        old_hash = gateway.status()["configuration_hash"]
        text = gateway.config_path.read_text()
        gateway.config_path.write_text(
            text.replace(
                'routes: [{name: manual, paths: ["/manual"]}]',
                'routes: [{name: manual, paths: ["/manual", "/manual2"]}]',
            )
        )
        eventually(lambda: gateway.status()["configuration_hash"] != old_hash, 10)
        gateway.wait_ready()
        assert client.get("/manual2/x").status_code == 200  # the new config is served
        assert all(server(client.get("/manual/x")) == "echo-1" for _ in range(6))
        health = httpx.get(admin(gateway, "/upstreams/manual.internal/health")).json()
        assert {row["target"]: row["health"] for row in health["data"]}[target] == "UNHEALTHY"

        r = httpx.post(admin(gateway, f"/upstreams/manual.internal/targets/{target}/healthy"))
        assert r.status_code == 204
        eventually(lambda: server(client.get("/manual/x")) == "echo-2", 3)
    assert httpx.post(admin(gateway, "/upstreams/nope/targets/x/healthy")).status_code == 404


def gateway_echo_port(gw: Gateway) -> int:
    text = gw.config_path.read_text()
    line = next(x for x in text.splitlines() if "name: manual.internal" in x)
    rest = text.split(line, 1)[1]
    return int(rest.split('"127.0.0.1:', 1)[1].split('"', 1)[0])


def test_balancer_health_view(gateway: Gateway) -> None:
    r = httpx.get(admin(gateway, "/upstreams/cb.internal/health?balancer_health=1")).json()
    assert r["data"]["health"] in ("HEALTHY", "UNHEALTHY")
    assert r["data"]["details"]["weight"]["total"] == 200
    off = httpx.get(admin(gateway, "/upstreams/lc.internal/health?balancer_health=1")).json()
    assert off["data"]["health"] == "HEALTHCHECKS_OFF"


def test_a_hostname_target_is_resolved_for_the_health_report(gateway: Gateway) -> None:
    # The report runs on the supervisor's event loop: the name is looked up without blocking it
    # (the supervisor's resolver, upstreams/dns.py), before the report reads the addresses.
    for path in ("/upstreams/named.internal/health", "/upstreams/named.internal/health/"):
        (row,) = httpx.get(admin(gateway, path)).json()["data"]
        assert row["health"] == "HEALTHCHECKS_OFF", row
        assert {a["ip"] for a in row["data"]["addresses"]} <= {"127.0.0.1", "::1"}
        assert row["data"]["addresses"], row
    status = f"http://127.0.0.1:{gateway.status_port}/upstreams/named.internal/health"
    (row,) = httpx.get(status).json()["data"]
    assert row["health"] == "HEALTHCHECKS_OFF"


# -- WebSocket -------------------------------------------------------------------------------------
def test_websocket_echo_through_the_gateway(gateway: Gateway, ws_echo: WsEcho) -> None:
    async def scenario() -> None:
        ws = await WsClient().connect(
            gateway.port,
            "/ws/chat?room=1",
            "Sec-WebSocket-Protocol: chat, json\r\nX-Forwarded-For: 203.0.113.9\r\n"
            "Via: 1.0 edge\r\nX-Forwarded-Host: evil.example\r\n",
        )
        assert ws.status == 101
        assert ws.headers.get("sec-websocket-protocol") == "chat"
        await ws.send("hello")
        assert await ws.recv() == (0x1, b"hello")
        await ws.send(b"\x00\x01binary")
        assert await ws.recv() == (0x2, b"\x00\x01binary")
        big = bytes(range(256)) * 4096  # 1 MiB, echoed back fragmented by the upstream
        await ws.send(big)
        assert await ws.recv() == (0x2, big)
        await ws.ping(b"are you there")
        assert await ws.recv() == (0xA, b"are you there")  # answered at the gateway's edge
        await ws.send("ping")  # the upstream pings the gateway, which answers it
        assert await ws.recv() == (0x1, b"ping")
        code, _ = await ws.close(4002)
        assert code == 4002

        ws = await WsClient().connect(gateway.port, "/wsb/x")  # through an upstream entity
        await ws.send("close:4001")
        op, payload = await ws.recv()
        assert op == 0x8 and payload == b"\x0f\xa1bye"  # the upstream's close code and reason
        await ws.aclose()

    asyncio.run(scenario())
    eventually(lambda: 4002 in ws_echo.closes, 3)
    assert ws_echo.pongs >= 1
    hs = ws_echo.handshakes[0]
    assert hs["x-forwarded-path"] == "/ws/chat"
    assert "x-kong-request-id" in hs
    # As for any request (Kong's access phase): the client's X-Forwarded-For and Via extended,
    # an untrusted peer's X-Forwarded-Host replaced, the matched prefix named.
    assert hs["x-forwarded-for"] == "203.0.113.9, 127.0.0.1"
    assert hs["via"].startswith("1.0 edge, 1.1 fastkong/")
    assert hs["x-forwarded-host"] != "evil.example"
    assert hs["x-forwarded-prefix"] == "/ws"
    assert hs["x-real-ip"] == "127.0.0.1"


def test_websocket_handshake_runs_the_access_phase(gateway: Gateway) -> None:
    async def scenario() -> None:
        denied = await WsClient().connect(gateway.port, "/auth-ws/x")
        assert denied.status == 401
        assert b"No API key found in request" in denied.body
        ok = await WsClient().connect(gateway.port, "/auth-ws/x", "apikey: alice-key\r\n")
        assert ok.status == 101
        await ok.send("hi")
        assert await ok.recv() == (0x1, b"hi")
        await ok.close()
        refused = await WsClient().connect(gateway.port, "/ws/refuse")
        assert refused.status == 403 and refused.body == b"nope"
        missing = await WsClient().connect(gateway.port, "/nowhere")
        assert missing.status == 404

    asyncio.run(scenario())


# -- two workers: distribution, probes once per node -----------------------------------------------
CONFIG_2W = """
_format_version: "3.0"
services:
- {{name: wrr, host: wrr.internal, routes: [{{name: wrr, paths: ["/wrr"]}}]}}
- {{name: probed, host: probed.internal, routes: [{{name: probed, paths: ["/probed"]}}]}}
upstreams:
- name: wrr.internal
  targets:
  - {{target: "127.0.0.1:{echo}", weight: 100}}
  - {{target: "127.0.0.1:{echo2}", weight: 300}}
- name: probed.internal
  healthchecks:
    active:
      http_path: /probe-count
      healthy: {{interval: 0.25, successes: 1}}
      unhealthy: {{interval: 0, tcp_failures: 1}}
  targets: [{{target: "127.0.0.1:{echo}"}}, {{target: "127.0.0.1:{probed}"}}]
"""


async def blast(port: int, path: str, total: int, conns: int = 8) -> Counter[str]:
    """``total`` keep-alive GETs over ``conns`` connections; the x-echo-server of each."""
    counts: Counter[str] = Counter()
    request = f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode()

    async def one(n: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(n):
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            name = ""
            for line in head.split(b"\r\n"):
                low = line.lower()
                if low.startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
                elif low.startswith(b"x-echo-server:"):
                    name = line.split(b":")[1].strip().decode()
            await reader.readexactly(length)
            counts[name] += 1
        writer.close()

    await asyncio.gather(*(one(total // conns) for _ in range(conns)))
    return counts


@pytest.fixture(scope="module")
def probed(echo2: Echo) -> Iterator[FaultProxy]:
    proxy = FaultProxy(echo2.port).start()
    yield proxy
    proxy.stop()


@pytest.fixture(scope="module")
def gateway2(
    tmp_path_factory: pytest.TempPathFactory, echo: Echo, echo2: Echo, probed: FaultProxy
) -> Iterator[Gateway]:
    config = CONFIG_2W.format(echo=echo.port, echo2=echo2.port, probed=probed.port)
    gw = Gateway(tmp_path_factory.mktemp("upstreams2"), config, 2).start()
    yield gw
    assert gw.stop() == 0


def test_weighted_round_robin_over_10000_requests_two_workers(gateway2: Gateway) -> None:
    assert len(gateway2.worker_pids()) == 2
    started = time.monotonic()
    counts = asyncio.run(blast(gateway2.port, "/wrr/x", 10000))
    elapsed = time.monotonic() - started
    assert sum(counts.values()) == 10000
    share = counts["echo-2"] / 10000
    assert abs(share - 0.75) <= 0.75 * 0.05, counts
    print(f"\n10000 requests in {elapsed:.2f}s: {dict(counts)}")


def test_active_checks_run_once_per_node(gateway2: Gateway, probed: FaultProxy) -> None:
    start = probed.seen("GET /probe-count")
    time.sleep(2.0)
    probes = probed.seen("GET /probe-count") - start
    # interval 0.25 s: ~8 probes in 2 s from the node; 2 workers probing would make ~16
    assert 6 <= probes <= 10, probes


def test_every_worker_follows_a_health_change(gateway2: Gateway, probed: FaultProxy) -> None:
    target = f"127.0.0.1:{probed.port}"
    try:
        r = httpx.post(admin(gateway2, f"/upstreams/probed.internal/targets/{target}/unhealthy"))
        assert r.status_code == 204
        time.sleep(0.3)  # > the workers' poll interval (0.1 s)
        before = probed.seen(" /traffic")
        # fresh connections land on both workers; neither sends to the marked target
        for _ in range(30):
            assert server(httpx.get(gateway2.url("/probed/traffic"))) == "echo-1"
        assert probed.seen(" /traffic") == before
    finally:
        httpx.post(admin(gateway2, f"/upstreams/probed.internal/targets/{target}/healthy"))


def test_health_report_shape(gateway2: Gateway, probed: FaultProxy) -> None:
    body = httpx.get(admin(gateway2, "/upstreams/probed.internal/health")).json()
    assert set(body) == {"data", "next", "node_id"}
    row = next(r for r in body["data"] if r["target"] == f"127.0.0.1:{probed.port}")
    assert row["health"] == "HEALTHY"
    assert row["data"] == {
        "host": "127.0.0.1",
        "port": probed.port,
        "dns": "A",
        "nodeWeight": 100,
        "weight": {"total": 100, "unavailable": 0, "available": 100},
        "addresses": [{"ip": "127.0.0.1", "port": probed.port, "weight": 100, "health": "HEALTHY"}],
    }
