"""The supervisor's health side as Kong's ``healthcheckers.lua`` and lua-resty-healthcheck see it:
the health report's weights and which probes run."""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from pathlib import Path
from typing import Any

import pytest

from fastkong.config import load_config
from fastkong.upstreams import health as H
from fastkong.upstreams.checker import ActiveChecker
from fastkong.upstreams.dns import Resolver
from tests.helpers import free_port
from tests.integration.test_listeners import self_signed

CONFIG = """
_format_version: "3.0"
upstreams:
- name: pool.test
  healthchecks: {passive: {unhealthy: {http_failures: 1}}}
  targets: [{target: "svc.test:8001", weight: 25}, {target: "10.0.0.9:8000"}]
"""


class NamedDns:
    """A loop stand-in whose ``getaddrinfo`` answers from ``answers`` (no lookup leaves the
    process); an unknown name does not exist."""

    def __init__(self) -> None:
        self.answers: dict[str, list[str]] = {}
        self.asked = 0

    async def getaddrinfo(self, host: str, port: object, type: int = 0) -> list[tuple]:
        self.asked += 1
        if host not in self.answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, 0)) for a in self.answers[host]]


def checker(text: str = CONFIG, dns: NamedDns | None = None) -> tuple[ActiveChecker, Any]:
    config = load_config(text.encode()).config
    resolver = Resolver(dns) if dns is not None else None  # type: ignore[arg-type]
    c = ActiveChecker(H.HealthTable(None, 1024), resolver)
    c.update(config)
    return c, config


def test_health_report_gives_each_address_the_target_weight() -> None:
    # Kong's getTargetStatus for an A record of two addresses and weight 25 (01-generic_spec
    # "adding a host"): each address weighs 25, the target 50, next to an IP target of 100.
    dns = NamedDns()
    dns.answers["svc.test"] = ["5.6.7.8", "1.2.3.4"]
    c, config = checker(dns=dns)
    uid = config.upstreams[0].id
    # the report itself never looks a name up (it runs on the supervisor's loop): an upstream
    # is warmed first, without blocking the loop
    assert c.balancer_health(uid)["details"]["hosts"][0]["addresses"] == []  # type: ignore[index]
    asyncio.run(c.warm(config.upstreams[0].name))
    assert dns.asked == 1
    body = c.balancer_health(uid)
    assert body is not None and body["health"] == "HEALTHY"
    named = body["details"]["hosts"][0]
    assert named == {
        "host": "svc.test",
        "port": 8001,
        "dns": "A",
        "nodeWeight": 25,
        "weight": {"total": 50, "unavailable": 0, "available": 50},
        "addresses": [
            {"ip": "1.2.3.4", "port": 8001, "weight": 25, "healthy": True},
            {"ip": "5.6.7.8", "port": 8001, "weight": 25, "healthy": True},
        ],
    }
    assert body["details"]["weight"] == {"total": 150, "unavailable": 0, "available": 150}


def test_balancer_health_has_kongs_shape_with_checks_off_too() -> None:
    # healthcheckers.lua get_balancer_health: health, balancer_health, id and details (getStatus,
    # addresses with a `healthy` flag) whether or not checks are on.
    c, config = checker(
        """
_format_version: "3.0"
upstreams:
- name: pool.test
  targets: [{target: "10.0.0.1:8000"}, {target: "10.0.0.2:8000", weight: 0}]
"""
    )
    uid = config.upstreams[0].id
    assert c.balancer_health(uid) == {
        "health": "HEALTHCHECKS_OFF",
        "balancer_health": "HEALTHY",
        "id": uid,
        "details": {
            "healthy": True,
            "weight": {"total": 100, "unavailable": 0, "available": 100},
            "hosts": [
                {
                    "host": "10.0.0.1",
                    "port": 8000,
                    "dns": "A",
                    "nodeWeight": 100,
                    "weight": {"total": 100, "unavailable": 0, "available": 100},
                    "addresses": [{"ip": "10.0.0.1", "port": 8000, "weight": 100, "healthy": True}],
                },
                {
                    "host": "10.0.0.2",
                    "port": 8000,
                    "dns": "A",
                    "nodeWeight": 0,
                    "weight": {"total": 0, "unavailable": 0, "available": 0},
                    "addresses": [{"ip": "10.0.0.2", "port": 8000, "weight": 0, "healthy": True}],
                },
            ],
        },
    }


def test_a_weight_zero_target_reports_healthchecks_off() -> None:
    # healthcheckers.lua get_upstream_health: HEALTHY/UNHEALTHY only when checks are on *and*
    # the target weighs more than 0; a weight-0 target is HEALTHCHECKS_OFF even if forced down.
    c, config = checker(
        """
_format_version: "3.0"
upstreams:
- name: pool.test
  healthchecks: {passive: {unhealthy: {http_failures: 1}}}
  targets: [{target: "10.0.0.1:8000"}, {target: "10.0.0.2:8000", weight: 0}]
"""
    )
    uid = config.upstreams[0].id
    assert c.set_health(uid, "10.0.0.2:8000", None, False) == (204, None)
    rows = c.upstream_health(uid, [{"id": t.id, "target": t.target} for t in config.targets])
    assert [(r["target"], r["health"]) for r in rows] == [
        ("10.0.0.1:8000", "HEALTHY"),
        ("10.0.0.2:8000", "HEALTHCHECKS_OFF"),
    ]
    assert rows[1]["data"]["addresses"][0]["health"] == "HEALTHCHECKS_OFF"


def test_tcp_active_checks_never_probe_for_http_traffic() -> None:
    # healthcheckers.lua create_healthchecker: an http-subsystem checker of type tcp gets its
    # active intervals zeroed, so a dead target is never taken out by them (the http upstream
    # next to it, same dead port, is).
    dead = free_port()
    text = f"""
_format_version: "3.0"
upstreams:
- name: tcp.test
  healthchecks:
    active:
      type: tcp
      healthy: {{interval: 0.05, successes: 1}}
      unhealthy: {{interval: 0.05, tcp_failures: 1}}
  targets: [{{target: "127.0.0.1:{dead}"}}]
- name: http.test
  healthchecks:
    active:
      healthy: {{interval: 0.05, successes: 1}}
      unhealthy: {{interval: 0.05, tcp_failures: 1}}
  targets: [{{target: "127.0.0.1:{dead}"}}]
"""
    c, config = checker(text)
    tcp_id, http_id = (u.id for u in config.upstreams)

    async def run() -> None:
        c.start(asyncio.get_running_loop())
        try:
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                body = c.balancer_health(http_id)
                if body is not None and body["health"] == "UNHEALTHY":
                    break
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.2)  # several more tcp intervals
        finally:
            c.stop()

    asyncio.run(run())
    assert c.balancer_health(http_id)["health"] == "UNHEALTHY"
    tcp = c.balancer_health(tcp_id)
    assert tcp is not None and tcp["health"] == "HEALTHY"  # checks on, never probed
    assert not c.checks[tcp_id].tasks


class Recorder:
    """A loopback server (TLS or plain) that records the SNI and the request head it gets."""

    def __init__(self, tls: ssl.SSLContext | None) -> None:
        self.tls = tls
        self.sni: list[str | None] = []
        self.heads: list[bytes] = []
        if tls is not None:
            tls.sni_callback = lambda _sock, name, _ctx: self.sni.append(name)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.heads.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b"HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n")
        await writer.drain()
        writer.close()


def probe_once(text: str, recorder: Recorder) -> tuple[int, bytes]:
    c, config = checker(text)
    u = config.upstreams[0]
    check = c.checks[u.id]
    target = check.targets[0]

    async def run() -> None:
        server = await asyncio.start_server(recorder.serve, "127.0.0.1", 0, ssl=recorder.tls)
        port = server.sockets[0].getsockname()[1]
        fp, tfp = H.key_fp(u.id, target.id, "127.0.0.1", port)
        slot = c.table.slot(fp, tfp)
        c.table.set(slot, False, fp)  # one success must bring it back
        await c.probe(check, target, "127.0.0.1", port, slot)
        server.close()
        await server.wait_closed()
        nonlocal state
        state = c.table.state(slot)

    state = -1
    asyncio.run(run())
    return state, recorder.heads[0] if recorder.heads else b""


HTTPS_CONFIG = """
_format_version: "3.0"
upstreams:
- name: pool.test
  host_header: api.internal:8443
  healthchecks:
    active:
      type: {kind}
      https_verify_certificate: false
      http_path: /status
      healthy: {{interval: 0, successes: 1}}
  targets: [{{target: "127.0.0.1:9"}}]
"""


def test_https_probe_sends_the_host_header_as_sni(tmp_path: Path) -> None:
    # lua-resty-healthcheck: https_sni = checks.active.https_sni or hostheader or hostname;
    # the upstream's host_header is the hostheader Kong gives every target.
    cert, key = self_signed(tmp_path)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    recorder = Recorder(tls)
    state, head = probe_once(HTTPS_CONFIG.format(kind="https"), recorder)
    assert recorder.sni == ["api.internal"]
    assert head.startswith(b"GET /status HTTP/1.0\r\n") and b"Host: api.internal:8443\r\n" in head
    assert state == H.HEALTHY


def test_grpcs_probe_is_plain_http_like_kongs_checker() -> None:
    # lua-resty-healthcheck 3.1 only handshakes for type https: grpc/grpcs probes are the same
    # plain GET (so a grpcs target that only speaks TLS fails them in Kong too).
    recorder = Recorder(None)
    state, head = probe_once(HTTPS_CONFIG.format(kind="grpcs"), recorder)
    assert head.startswith(b"GET /status HTTP/1.0\r\n")
    assert state == H.HEALTHY


@pytest.mark.parametrize("threshold", [0, 25, 75, 99, 100])
def test_threshold_over_the_addresses_of_one_hostname(threshold: int) -> None:
    # Port of 01-healthchecks_spec "threshold for health checks": one target of weight 25
    # resolving to 4 addresses (total 100), marked down one by one through the admin API.
    dns = NamedDns()
    c, config = checker(
        f"""
_format_version: "3.0"
upstreams:
- name: pool.test
  healthchecks: {{threshold: {threshold}, passive: {{unhealthy: {{tcp_failures: 1}}}}}}
  targets: [{{target: "health-threshold.test:80", weight: 25}}]
""",
        dns,
    )
    ips = ["127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"]
    dns.answers["health-threshold.test"] = ips
    asyncio.run(c.warm_all())
    uid = config.upstreams[0].id
    for down, ip in enumerate([None, *ips]):
        if ip is not None:
            assert c.set_health(uid, "health-threshold.test:80", f"{ip}:80", False)[0] == 204
        body = c.balancer_health(uid)
        assert body is not None
        available = 100 - 25 * down
        assert body["details"]["weight"] == {
            "total": 100,
            "unavailable": 100 - available,
            "available": available,
        }
        expected = "HEALTHY" if threshold < available else "UNHEALTHY"
        assert body["health"] == body["balancer_health"] == expected


def test_a_target_back_within_five_minutes_keeps_its_health() -> None:
    # Kong stops a replaced checker with delayed_clear(CLEAR_HEALTH_STATUS_DELAY = 300): a
    # target removed and added back meanwhile finds its state (01-healthchecks_spec "an
    # upstream that is removed and readded keeps the health status"); after that, it is new.
    both = """
_format_version: "3.0"
upstreams:
- name: pool.test
  healthchecks: {passive: {unhealthy: {tcp_failures: 1}}}
  targets: [{target: "10.0.0.1:80"}, {target: "10.0.0.2:80"}]
"""
    one = both.replace(', {target: "10.0.0.2:80"}', "")
    c, config = checker(both)
    uid = config.upstreams[0].id
    gone = next(t for t in config.targets if t.target == "10.0.0.2:80")
    fp, _ = H.key_fp(uid, gone.id, "10.0.0.2", 80)
    assert c.set_health(uid, "10.0.0.2:80", None, False)[0] == 204

    c.update(load_config(one.encode()).config)
    assert c.table.state(c.table.find(fp)) == H.UNHEALTHY  # kept while absent
    c.update(load_config(both.encode()).config)
    assert c.balancer_health(uid)["details"]["weight"]["unavailable"] == 100
    assert c.forget() == 0 and not c.absent  # present again: nothing to forget

    c.update(load_config(one.encode()).config)
    assert c.forget(time.monotonic() + 299) == 0
    assert c.forget(time.monotonic() + 301) == 1 and c.table.find(fp) == -1
    c.update(load_config(both.encode()).config)
    assert c.balancer_health(uid)["details"]["weight"]["unavailable"] == 0  # a new target
