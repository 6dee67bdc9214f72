"""The edge table (fastkong/proxy/edge.py): what the edge writes for a relayed connection is
what a worker reads back, per listener slot and relay port, and how a request's scope is
rewritten from it."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastkong.proxy.edge import (
    ENTRY,
    PROXIED_KEY,
    SNI_KEY,
    TLS_INFO_KEY,
    EdgeEntry,
    EdgeTable,
    EdgeView,
    edge_setting,
)

# Addresses as the sockets give them (getpeername: inet_ntop's text).
addresses = st.one_of(
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(lambda a: socket.inet_ntop(socket.AF_INET6, a.packed)),
)
ports = st.integers(0, 65535)
endpoints = st.tuples(addresses, ports)
names = st.from_regex(r"[a-z0-9*]([a-z0-9.-]{0,253})", fullmatch=True)
#: The TLS protocol and cipher, as Python's ssl names them (OpenSSL's names, nginx's).
tls_infos = st.tuples(
    st.sampled_from(["TLSv1.2", "TLSv1.3"]), st.from_regex(r"[A-Z0-9_-]{1,64}", fullmatch=True)
)
entries = st.one_of(
    st.builds(EdgeEntry, endpoints, st.just(False), st.none(), st.one_of(st.none(), endpoints)),
    st.builds(
        EdgeEntry,
        endpoints,
        st.just(True),
        st.one_of(st.none(), names),
        st.one_of(st.none(), endpoints),
        st.one_of(st.none(), tls_infos),
    ),
)


@given(entries)
def test_an_entry_packs_and_unpacks_to_itself(entry: EdgeEntry) -> None:
    packed = entry.pack()
    assert len(packed) <= ENTRY
    assert EdgeEntry.unpack(packed + bytes(ENTRY - len(packed))) == entry


def test_recorded_entries_are_read_back_per_slot_and_port(tmp_path: Path) -> None:
    writer = EdgeTable(tmp_path / "edge", 2, create=True)
    reader = EdgeTable(tmp_path / "edge", 2)  # another process's mapping of the same file
    first = EdgeEntry(("192.0.2.1", 50000), True, "a.test", None)
    second = EdgeEntry(("2001:db8::1", 443), False, None, ("203.0.113.7", 4711))
    writer.record(0, 40000, first)
    writer.record(1, 40000, second)  # the same relay port towards another listener
    assert reader.lookup(0, 40000) == first
    assert reader.lookup(1, 40000) == second
    assert reader.lookup(0, 40001) is None
    writer.record(0, 40000, second)  # a new relay connection on the port overwrites it
    assert reader.lookup(0, 40000) == second
    writer.clear(0, 40000)
    assert reader.lookup(0, 40000) is None
    assert reader.lookup(1, 40000) == second
    with pytest.raises(IndexError):
        reader.lookup(2, 1)
    with pytest.raises(IndexError):
        reader.lookup(0, 65536)
    writer.close()
    reader.close()


def test_a_late_clear_leaves_another_connections_entry(tmp_path: Path) -> None:
    # Two edge processes relay through the same loopback port in turn: the first's connection
    # failed (its socket closed before its clear ran) and the port went to the second's.
    first_edge = EdgeTable(tmp_path / "edge", 1, create=True)
    second_edge = EdgeTable(tmp_path / "edge", 1)
    old = EdgeEntry(("192.0.2.1", 50000), True, "a.test", None)
    new = EdgeEntry(("192.0.2.1", 50001), True, "a.test", None)
    recorded = first_edge.record(0, 40000, old)
    second_edge.record(0, 40000, new)
    first_edge.clear(0, 40000, recorded)  # the first connection's late clear
    assert second_edge.lookup(0, 40000) == new
    # Its own entry, still there, is cleared.
    mine = second_edge.record(0, 40001, old)
    second_edge.clear(0, 40001, mine)
    assert first_edge.lookup(0, 40001) is None
    first_edge.close()
    second_edge.close()


def test_a_relayed_requests_scope_becomes_the_clients(tmp_path: Path) -> None:
    table = EdgeTable(tmp_path / "edge", 1, create=True)
    view = EdgeView.from_setting(edge_setting(tmp_path / "edge", 1, 0, "0.0.0.0", 8443))
    tls = ("TLSv1.3", "TLS_AES_256_GCM_SHA384")
    entry = EdgeEntry(("192.0.2.1", 50000), True, "a.test", ("203.0.113.7", 1), tls)
    table.record(0, 40000, entry)
    scope = {
        "type": "http",
        "scheme": "http",
        "client": ("127.0.0.1", "40000"),  # Granian gives the port as text
        "server": ("127.0.0.1", 39999),
    }
    view.adopt(scope)
    assert scope["client"] == ("192.0.2.1", 50000)
    assert scope["server"] == ("0.0.0.0", 8443)
    assert scope["scheme"] == "https"
    assert scope[SNI_KEY] == "a.test"
    assert scope[PROXIED_KEY] == ("203.0.113.7", 1)
    assert scope[TLS_INFO_KEY] == tls
    websocket = {"type": "websocket", "scheme": "ws", "client": ("127.0.0.1", 40000)}
    view.adopt(websocket)
    assert websocket["scheme"] == "wss"
    # Not relayed by the edge (no entry for the port): served as the loopback connection it is.
    direct = {"type": "http", "scheme": "http", "client": ("127.0.0.1", 40001)}
    view.adopt(direct)
    assert direct == {"type": "http", "scheme": "http", "client": ("127.0.0.1", 40001)}
    table.clear(0, 40000)
    plain = {"type": "http", "scheme": "http", "client": ("127.0.0.1", 40000)}
    view.adopt(plain)
    assert plain["client"] == ("127.0.0.1", 40000)
    view.table.close()
    table.close()


def test_an_entry_shows_its_state() -> None:
    entry = EdgeEntry(("192.0.2.1", 5), True, "a.test", ("203.0.113.7", 1))
    assert repr(entry) == "<EdgeEntry 192.0.2.1:5 tls sni='a.test' proxied=203.0.113.7:1>"
