"""Kong's ``headers`` and ``headers_upstream`` settings: which headers the gateway adds.

Kong adds, by default (``headers = server_tokens, latency_tokens, X-Kong-Request-Id``), to a
proxied response: ``Via`` (the upstream's plus its own token), ``Server`` when the upstream sent
none, ``X-Kong-Upstream-Latency`` and ``X-Kong-Proxy-Latency``; to a response it produced itself
(an error, a plugin's answer): ``Server`` and ``X-Kong-Response-Latency``; to every response
``X-Kong-Request-Id``; and upstream (``headers_upstream = X-Kong-Request-Id``) the request id.
``X-Kong-Upstream-Status`` is off unless asked for. ``server_tokens`` stands for ``Server`` and
``Via``; ``latency_tokens`` for the four latency headers (the admin API's included); ``off``
as the first entry turns all of them off (plugins still add their own).

The proxy writes Kong's defaults inline, since almost every node runs them; a node with other
settings carries a :class:`HeaderSettings`: :meth:`HeaderSettings.add_proxied` writes a
proxied response's headers, :meth:`HeaderSettings.produced` keeps those of the gateway's own
responses that the settings turn on.
When ``Server`` is off and the upstream sent none, Granian names itself, as stock nginx would
(Kong patches its nginx to send none).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from fastkong.proxy.upstream import SERVER as SERVER_TOKEN

DEFAULT_HEADERS = "server_tokens, latency_tokens, X-Kong-Request-Id"
DEFAULT_HEADERS_UPSTREAM = "X-Kong-Request-Id"

_EXPANSIONS = {
    "server_tokens": ("server", "via"),
    "latency_tokens": (
        "x-kong-proxy-latency",
        "x-kong-response-latency",
        "x-kong-admin-latency",
        "x-kong-upstream-latency",
    ),
}
#: Every name ``headers`` accepts (Kong's HEADER_KEY_TO_NAME), lower-cased.
_NAMES = frozenset(
    {
        "server",
        "via",
        "x-kong-proxy-latency",
        "x-kong-response-latency",
        "x-kong-admin-latency",
        "x-kong-upstream-latency",
        "x-kong-upstream-status",
        "x-kong-request-id",
    }
)


def _tokens(value: str) -> list[str]:
    return [token.strip() for token in value.split(",") if token.strip()]


def enabled(value: str, setting: str, accepted: Iterable[str]) -> frozenset[str]:
    """The header names a ``headers``-style setting turns on; ValueError naming bad entries."""
    tokens = _tokens(value)
    allowed = set(accepted)
    bad = [t for t in tokens if t.lower() != "off" and t.lower() not in allowed]
    if bad:
        raise ValueError("; ".join(f"{setting}: invalid entry '{t}'" for t in bad))
    if not tokens or tokens[0].lower() == "off":
        return frozenset()
    names: set[str] = set()
    for token in tokens:
        name = token.lower()
        names.update(_EXPANSIONS.get(name, (name,)))
    names.discard("off")
    return frozenset(names & _NAMES)


class HeaderSettings:
    """What a node's ``headers``/``headers_upstream`` turn on (see the module docstring)."""

    __slots__ = ("names", "request_id_upstream")

    def __init__(self, names: frozenset[str], request_id_upstream: bool) -> None:
        self.names = names
        self.request_id_upstream = request_id_upstream

    @classmethod
    def parse(
        cls, headers: str = DEFAULT_HEADERS, headers_upstream: str = DEFAULT_HEADERS_UPSTREAM
    ) -> HeaderSettings:
        names = enabled(headers, "headers", _NAMES | _EXPANSIONS.keys())
        upstream = enabled(headers_upstream, "headers_upstream", {"x-kong-request-id"})
        return cls(names, bool(upstream))

    def __repr__(self) -> str:
        shown = ", ".join(sorted(self.names)) or "off"
        upstream = "X-Kong-Request-Id" if self.request_id_upstream else "off"
        return f"<HeaderSettings headers={shown} headers_upstream={upstream}>"

    @property
    def is_default(self) -> bool:
        return self == DEFAULT_SETTINGS

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, HeaderSettings)
            and self.names == other.names
            and self.request_id_upstream == other.request_id_upstream
        )

    def __hash__(self) -> int:
        return hash((self.names, self.request_id_upstream))

    def add_proxied(
        self,
        headers: list[tuple[bytes, bytes]],
        *,
        own_server: bool,
        via: bytes,
        upstream_via: bytes | None,
        upstream_latency: bytes,
        proxy_latency: bytes,
        request_id: bytes,
        upstream_status: int,
    ) -> None:
        """Append to a proxied response's headers what these settings turn on.

        ``own_server``: the upstream sent no Server; ``via``: the upstream's Via with the
        gateway's token; ``upstream_via``: the upstream's own (None when it sent none), which
        passes on unchanged when ``Via`` is off.
        """
        names = self.names
        if own_server and "server" in names:
            headers.append((b"server", SERVER_TOKEN))
        if "via" in names:
            headers.append((b"via", via))
        elif upstream_via is not None:
            headers.append((b"via", upstream_via))
        if "x-kong-upstream-latency" in names:
            headers.append((b"x-kong-upstream-latency", upstream_latency))
        if "x-kong-proxy-latency" in names:
            headers.append((b"x-kong-proxy-latency", proxy_latency))
        if "x-kong-request-id" in names:
            headers.append((b"x-kong-request-id", request_id))
        if "x-kong-upstream-status" in names:
            headers.append((b"x-kong-upstream-status", b"%d" % upstream_status))

    def produced(self, headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        """The headers the gateway wrote on a response of its own (an error, a plugin's answer,
        the error after a failed proxy attempt), as the defaults wrote them, kept or dropped by
        these settings."""
        names = self.names
        return [
            (name, value)
            for name, value in headers
            if name not in _GATEWAY_ADDED or _GATEWAY_ADDED[name] in names
        ]


#: The headers the gateway writes, by the setting name that keeps them.
_GATEWAY_ADDED = {
    b"server": "server",
    b"via": "via",
    b"x-kong-upstream-latency": "x-kong-upstream-latency",
    b"x-kong-proxy-latency": "x-kong-proxy-latency",
    b"x-kong-response-latency": "x-kong-response-latency",
    b"x-kong-request-id": "x-kong-request-id",
}

DEFAULT_SETTINGS = HeaderSettings.parse()

#: What Kong's runloop writes after the plugins' header_filter (``header_filter.after``), so a
#: plugin cannot edit it away; X-Kong-Upstream-Status is written before them.
SET_AFTER_PLUGINS: Final = frozenset(
    {
        b"server",
        b"via",
        b"x-kong-upstream-latency",
        b"x-kong-proxy-latency",
        b"x-kong-response-latency",
        b"x-kong-request-id",
    }
)


def set_after_plugins(
    added: list[tuple[bytes, bytes]], shown: HeaderSettings | None
) -> list[tuple[bytes, bytes]]:
    """Of the entries the gateway ``added`` to a response, those Kong writes after the plugins
    (an upstream's own Via, passed on when ``Via`` is off, stays the upstream's)."""
    via = shown is None or "via" in shown.names
    return [h for h in added if h[0] in SET_AFTER_PLUGINS and (via or h[0] != b"via")]
