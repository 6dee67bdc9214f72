"""The stream proxy's decisions: Kong's stream router, the ClientHello peek, certificates by SNI."""

from __future__ import annotations

import ssl
import uuid
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from fastkong.config import load_config
from fastkong.stream.certs import wildcard_names
from fastkong.stream.clienthello import NEED_MORE, NOT_TLS, peek_client_hello
from fastkong.stream.router import StreamRouter
from fastkong.stream.snapshot import build_snapshot


def _config(routes: str, services: str = "", rest: str = "") -> Any:
    """A config whose service ``s`` (tcp) has ``routes``; ``services``: more of them."""
    text = f"""
_format_version: "3.0"
services:
- name: s
  protocol: tcp
  host: 127.0.0.1
  port: 9
  routes:
{routes}
{services}
{rest}
"""
    return load_config(text.encode()).config


def _router(routes: str, services: str = "") -> StreamRouter:
    return StreamRouter(_config(routes, services).routes)


def _name(router: StreamRouter, sni: str | None, src: str = "10.0.0.1", sport: int = 5000,
          dst: str = "127.0.0.1", dport: int = 7000) -> str | None:  # fmt: skip
    route = router.match(sni, src, sport, dst, dport)
    return route.name if route is not None else None


def test_sources_destinations_and_ports() -> None:
    router = _router("""
  - name: from-net
    protocols: [tcp]
    sources: [{ip: 10.0.0.0/8}]
  - name: to-port
    protocols: [tcp]
    destinations: [{port: 7001}]
  - name: exact-src-port
    protocols: [tcp]
    sources: [{ip: 10.1.1.1, port: 4000}]
""")
    assert _name(router, None, "10.9.9.9") == "from-net"
    assert _name(router, None, "192.168.1.1", dport=7001) == "to-port"
    assert _name(router, None, "192.168.1.1", dport=7002) is None
    # an exact IP with a port outranks a CIDR (Kong: IP > PORT > CIDR)
    assert _name(router, None, "10.1.1.1", sport=4000) == "exact-src-port"
    assert _name(router, None, "10.1.1.1", sport=4001) == "from-net"
    # a dual-stack listener's IPv4 peer matches IPv4 ranges
    assert _name(router, None, "::ffff:10.2.3.4") == "from-net"


def test_snis_win_and_plain_connections_ignore_them() -> None:
    router = _router("""
  - name: by-sni
    protocols: [tls]
    snis: [api.example.com, "*.internal.test", "db.*"]
  - name: by-source
    protocols: [tcp, tls]
    sources: [{ip: 10.0.0.0/8}]
""")
    assert _name(router, "api.example.com") == "by-sni"
    assert _name(router, "API.Example.com") == "by-sni"
    assert _name(router, "a.b.internal.test") == "by-sni"
    assert _name(router, "db.eu") == "by-sni"
    assert _name(router, "other.example.com") == "by-source"
    # Kong: net.protocol != "tls" || tls.sni == ...: without an SNI the snis do not apply,
    # and the snis route's priority puts it first.
    assert _name(router, None) == "by-sni"
    assert _name(router, "other.example.com", "192.168.0.1") is None


def test_sources_and_destinations_together_rank_with_snis() -> None:
    router = _router("""
  - name: both
    protocols: [tcp]
    sources: [{ip: 10.0.0.0/8}]
    destinations: [{port: 7000}]
  - name: src-exact
    protocols: [tcp]
    sources: [{ip: 10.0.0.1}]
""")
    # src+dst carries Kong's SNI bit, above an exact source alone
    assert _name(router, None, "10.0.0.1") == "both"
    assert _name(router, None, "10.0.0.1", dport=7001) == "src-exact"


def test_ties_go_to_the_larger_route_id() -> None:
    ids = sorted(str(uuid.uuid4()) for _ in range(2))
    router = _router(f"""
  - name: low
    id: {ids[0]}
    protocols: [tcp]
    destinations: [{{port: 7000}}]
  - name: high
    id: {ids[1]}
    protocols: [tcp]
    destinations: [{{port: 7000}}]
""")
    assert _name(router, None) == "high"


def test_http_and_udp_routes_are_left_out_and_disabled_services_too() -> None:
    """The tcp/tls router has no http or udp route, nor a disabled service's."""
    config = _config(
        """
  - name: web
    protocols: [http]
    paths: [/]
  - name: dgram
    protocols: [udp]
    destinations: [{port: 7000}]
""",
        """
- name: disabled-svc
  protocol: tcp
  host: 127.0.0.1
  port: 9
  enabled: false
  routes:
  - name: of-disabled
    protocols: [tcp]
    destinations: [{port: 7000}]
""",
    )
    assert [r.name for r in StreamRouter(config.routes).routes] == ["of-disabled"]
    # the snapshot drops it too, as Kong leaves a disabled service's routes out
    assert len(build_snapshot(config, "h", None).router) == 0


def test_udp_routes_have_their_own_router_and_guards() -> None:
    """Kong's expression tests ``net.protocol``: a datagram takes only ``udp`` routes, a
    connection only tcp/tls ones; a route naming both is in both."""
    config = _config(
        """
  - name: dgram
    protocols: [udp]
    destinations: [{port: 7000}]
    plugins:
    - name: ip-restriction
      config: {deny: [10.0.0.0/8]}
  - name: conn
    protocols: [tcp]
    destinations: [{port: 7000}]
  - name: both
    protocols: [tcp, udp]
    destinations: [{port: 7001}]
"""
    )
    snap = build_snapshot(config, "h", None)
    assert sorted(r.name for r in snap.udp_router.routes) == ["both", "dgram"]
    assert sorted(r.name for r in snap.router.routes) == ["both", "conn"]
    assert _name(snap.udp_router, None) == "dgram"
    assert _name(snap.router, None) == "conn"
    dgram = snap.udp_router.match(None, "10.0.0.1", 1, "127.0.0.1", 7000)
    assert dgram is not None
    (guard,) = snap.guards[dgram.id]
    assert not guard.admits("10.1.2.3") and guard.admits("192.168.1.1")


def test_ip_restriction_guards_stream_routes() -> None:
    config = _config(
        """
  - name: guarded
    protocols: [tcp]
    destinations: [{port: 7000}]
    plugins:
    - name: ip-restriction
      config: {allow: [10.0.0.0/8]}
  - name: open
    protocols: [tcp]
    destinations: [{port: 7001}]
""",
        rest="""
plugins:
- name: ip-restriction
  protocols: [http, https]
  config: {deny: [0.0.0.0/0]}
""",
    )
    snap = build_snapshot(config, "h", None)
    guarded = snap.router.match(None, "10.0.0.1", 1, "127.0.0.1", 7000)
    assert guarded is not None
    (guard,) = snap.guards[guarded.id]
    assert guard.admits("10.1.2.3") and not guard.admits("192.168.1.1")
    # the global instance takes only HTTP protocols: it does not guard stream routes
    opened = snap.router.match(None, "10.0.0.1", 1, "127.0.0.1", 7001)
    assert opened is not None and opened.id not in snap.guards


def _client_hello(sni: str | None) -> bytes:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=sni)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def test_client_hello_sni_from_a_real_handshake() -> None:
    hello = _client_hello("db.example.com")
    assert peek_client_hello(hello) == (True, True, "db.example.com")
    assert peek_client_hello(_client_hello(None)) == (True, True, None)
    # every proper prefix asks for more bytes
    for cut in range(len(hello)):
        assert peek_client_hello(hello[:cut]) == NEED_MORE
    # the same hello split over two TLS records (a record boundary inside the handshake)
    body = hello[5:]
    split = hello[:3] + (20).to_bytes(2, "big") + body[:20]
    split += hello[:3] + (len(body) - 20).to_bytes(2, "big") + body[20:]
    assert peek_client_hello(split).sni == "db.example.com"


def test_not_tls() -> None:
    assert peek_client_hello(b"GET / HTTP/1.1\r\n") == NOT_TLS
    assert peek_client_hello(b"\x16\x03\x01\x00\x05\x02\x00\x00\x01\x00") == NOT_TLS


@given(st.binary(max_size=600), st.integers(0, 600))
def test_peek_never_raises(data: bytes, cut: int) -> None:
    hello = _HELLO[:cut] + data
    verdict = peek_client_hello(hello)
    assert verdict.done or not verdict.tls
    assert peek_client_hello(data).done or len(data) < 70_000


_HELLO = _client_hello("x.example")


def test_kong_wildcard_lookups() -> None:
    assert wildcard_names("a.b.example.com") == ("*.b.example.com", "a.b.example.*")
    assert wildcard_names("example.com") == (None, "example.*")
    assert wildcard_names("localhost") == (None, None)
    assert wildcard_names("*.example.com") == ("*.example.com", None)
    assert wildcard_names("www.example.*") == (None, "www.example.*")
