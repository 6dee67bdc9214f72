"""A stream session's log phase: the prometheus counts and the log plugins' messages.

Kong runs the ``log`` phase of a stream route's plugins when its session ends, proxied or
closed by a stream exit (no route, ip-restriction). fastkong does the same for tcp, tls and
udp sessions with the plugins that have one there:

- ``prometheus`` counts the session (its stream families);
- ``file-log``, ``http-log``, ``tcp-log``, ``udp-log``, ``syslog`` and ``loggly`` get the
  message of Kong's stream serializer (``kong.log.serialize()`` in the stream subsystem,
  ``kong/pdk/log.lua``; ``syslog`` and ``loggly`` pick its severity by the session's status,
  as by a response's)::

    {"session": {"tls": {...}, "received": ..., "sent": ..., "status": ...,
                 "server_port": ...},
     "upstream": {"received": ..., "sent": ...},
     "latencies": {"kong": ..., "session": ...},
     "route": {...}, "service": {...}, "client_ip": ..., "started_at": ...,
     "workspace": ..., "workspace_name": ...}

  ``session.tls`` (``version``, ``cipher``, ``client_verify``) only for a session whose TLS
  the gateway terminated. ``upstream`` counts the bytes relayed each way (the same bytes as
  the session's, the other way round, as the proxy forwards them untouched; 0 when the session
  was never proxied). ``latencies.kong`` is the time from the first byte to the peer's
  connection, ``latencies.session`` the session's length, both in milliseconds. ``tries``: each
  peer tried (``balancer_start``, ``balancer_latency``, ``ip``, ``port``; ``state: failed``
  and ``code`` for one that could not be connected), as Kong's balancer records them.

A :class:`RouteLogPhase` per route is made at config load (the route and service rows as the
serializer writes them included), so a session's end costs one message build and one JSON
encoding, only when the route has a log plugin.
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple

import msgspec

from fastkong.plugins.bundled._serializer import WORKSPACE_ID, WORKSPACE_NAME

_encoder = msgspec.json.Encoder()

#: (version, cipher) of a session whose TLS the gateway terminated.
TlsInfo = tuple[str, str]


class SessionEnd(NamedTuple):
    """What the log phase knows of an ended session."""

    #: The session's status (nginx's stream status, :mod:`.access_log`).
    code: int
    #: Whether the upstream was reached (prometheus' ``source``).
    proxied: bool
    #: Bytes from the client, and to it.
    received: int
    sent: int
    seconds: float
    client_ip: str = ""
    server_port: int = 0
    tls: TlsInfo | None = None
    #: Milliseconds until the upstream was connected.
    kong_ms: int = 0
    #: Each try of a peer, as Kong's ``balancer_data.tries`` (:func:`stream_try`).
    tries: tuple[dict[str, Any], ...] = ()


def note_try(
    phase: RouteLogPhase | None,
    tries: list[dict[str, Any]],
    ip: str,
    port: int,
    started: float,
    failed: bool = False,
    timed_out: bool = False,
) -> None:
    """Add a try of a peer to ``tries``, only when the route has a log plugin to read them (a
    session of any other route makes no entry)."""
    if phase is not None and phase.loggers:
        tries.append(stream_try(ip, port, started, failed, timed_out))


def stream_try(
    ip: str, port: int, started: float, failed: bool = False, timed_out: bool = False
) -> dict[str, Any]:
    """One try of a peer for the log message: when it started (wall clock, ms), the peer, and
    for one that failed Kong's ``state`` and ``code`` (502, or 504 for a timeout)."""
    now = time.monotonic()
    entry: dict[str, Any] = {
        "balancer_start": int((time.time() - (now - started)) * 1000),
        "balancer_latency": 0,
        "ip": ip,
        "port": port,
    }
    if failed:
        entry.update(state="failed", code=504 if timed_out else 502)
    return entry


class RouteLogPhase:
    """One stream route's log phase: its prometheus instance (with its labels) and its log
    plugins, with the route and service as Kong's serializer writes them."""

    __slots__ = ("meter", "loggers", "route_row", "service_row")

    def __init__(
        self,
        meter: tuple[Any, str, str] | None,
        loggers: tuple[Any, ...] = (),
        route_row: dict[str, Any] | None = None,
        service_row: dict[str, Any] | None = None,
    ) -> None:
        #: (prometheus plugin, service label, route label), or None.
        self.meter = meter
        #: Log plugins, each with ``write(message: bytes, status: int)``.
        self.loggers = loggers
        self.route_row = route_row
        self.service_row = service_row

    def __repr__(self) -> str:
        names = [p.name for p in self.loggers] + (["prometheus"] if self.meter else [])
        return f"<RouteLogPhase {names}>"

    def ended(self, end: SessionEnd) -> None:
        """A session of the route ended."""
        if self.meter is not None:
            plugin, service, route = self.meter
            plugin.session(
                service, route, end.code, end.proxied, end.received, end.sent, end.seconds * 1000
            )
        if self.loggers:
            line = _encoder.encode(self.message(end))
            for plugin in self.loggers:
                plugin.write(line, end.code)

    def message(self, end: SessionEnd) -> dict[str, Any]:
        """Kong's stream serializer message for the session (module docstring)."""
        session: dict[str, Any] = {}
        if end.tls is not None:
            session["tls"] = {"version": end.tls[0], "cipher": end.tls[1], "client_verify": "NONE"}
        session.update(
            received=end.received, sent=end.sent, status=end.code, server_port=end.server_port
        )
        relayed = end.proxied
        out: dict[str, Any] = {
            "session": session,
            "upstream": {
                "received": end.sent if relayed else 0,
                "sent": end.received if relayed else 0,
            },
            "latencies": {"kong": end.kong_ms, "session": int(end.seconds * 1000 + 0.5)},
        }
        if end.tries:
            out["tries"] = list(end.tries)
        if self.route_row is not None:
            out["route"] = self.route_row
        if self.service_row is not None:
            out["service"] = self.service_row
        out.update(
            client_ip=end.client_ip,
            started_at=int((time.time() - end.seconds) * 1000),
            workspace=WORKSPACE_ID,
            workspace_name=WORKSPACE_NAME,
        )
        return out


__all__ = ["RouteLogPhase", "SessionEnd", "TlsInfo", "note_try", "stream_try"]
