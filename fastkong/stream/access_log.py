"""Kong's ``proxy_stream_access_log``: one line per stream connection, Kong's ``basic`` format.

Kong's stream server logs each session when it ends (``kong/templates/nginx_kong_stream.lua``)::

    $remote_addr [$time_local] $protocol $status $bytes_sent $bytes_received $session_time

``$remote_addr`` is the client after the PROXY protocol and ``trusted_ips`` rule
(:mod:`.proxy_protocol`), ``$protocol`` ``TCP`` (``UDP`` for a ``udp`` session), ``$bytes_sent``
what went to the client and ``$bytes_received`` what came from it, ``$session_time`` seconds
with millisecond resolution. ``$status`` is nginx's stream session status, as Kong's stream
exits and nginx's proxy module set it:

====  ============================================================================
200   the session ran and ended (either side closed, ``read_timeout``, a drain)
400   a ``proxy_protocol`` listener's connection did not open with a valid header
403   ip-restriction refused the client (its ``status`` when configured)
500   no route matched (Kong: "no Route found with those values"), a route that cannot
      take the connection (no service, a protocol the listener cannot serve), or a failed
      TLS handshake with the client
502   every try to connect the service's peers failed (nginx: "connect() failed" /
      timed out)
503   no peer to try: the upstream has no healthy target, or its name did not resolve
====  ============================================================================

Lines are written as the HTTP access log writes them (:mod:`fastkong.proxy.access_log`):
batched, whole lines with ``O_APPEND``, to a file or ``/dev/stdout``; ``off`` writes nothing.
"""

from __future__ import annotations

import time
from typing import Final

from fastkong.proxy.access_log import AccessLog

OK: Final = 200
BAD_REQUEST: Final = 400
FORBIDDEN: Final = 403
INTERNAL_ERROR: Final = 500
BAD_GATEWAY: Final = 502
UNAVAILABLE: Final = 503


class StreamAccessLog(AccessLog):
    """The stream process's access log (see the module docstring)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"<StreamAccessLog {self.path} buffered={self.size}>"

    def session(
        self,
        addr: str,
        status: int,
        sent: int,
        received: int,
        seconds: float,
        protocol: str = "TCP",
    ) -> None:
        self.write(self.line_for(addr, status, sent, received, seconds, time.time(), protocol))

    def line_for(
        self,
        addr: str,
        status: int,
        sent: int,
        received: int,
        seconds: float,
        now: float,
        protocol: str = "TCP",
    ) -> str:
        return (
            f"{addr} [{self.time_local(now)}] {protocol} {status} {sent} {received} "
            f"{max(seconds, 0.0):.3f}\n"
        )


def stream_access_log_setting(value: str) -> str:
    """Kong's ``proxy_stream_access_log``: ``off``, or a path with Kong's stream format
    (``basic``, its only one) or none; ValueError for any other format name."""
    words = value.split()
    if not words:
        return "off"
    if len(words) > 2 or (len(words) == 2 and words[1] != "basic"):
        raise ValueError(
            f"proxy_stream_access_log: only Kong's 'basic' format is supported ({value!r}); "
            "give a path, a path and basic, or off"
        )
    return words[0]


__all__ = [
    "BAD_GATEWAY",
    "BAD_REQUEST",
    "FORBIDDEN",
    "INTERNAL_ERROR",
    "OK",
    "UNAVAILABLE",
    "StreamAccessLog",
    "stream_access_log_setting",
]
