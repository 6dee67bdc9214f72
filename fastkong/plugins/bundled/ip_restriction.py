"""ip-restriction: allow or deny clients by IP address or CIDR range, IPv4 and IPv6.

Kong's ``kong/plugins/ip-restriction/{schema,handler}.lua``: the deny list is checked first, then
the allow list (when one is set, an address outside it is refused). A refused request gets
``kong.response.error(status or 403, message or "IP address not allowed: <ip>")``. The address
is the forwarded client IP (``kong.client.get_forwarded_ip``, i.e. after ``trusted_ips``).

Lists are compiled once per config into, per address family and prefix length, a set of network
numbers; a lookup costs one shift and one set probe per distinct prefix length. An IPv4-mapped
IPv6 client address (``::ffff:a.b.c.d``, as a dual-stack listener reports IPv4 peers) is matched
as the IPv4 address.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import TYPE_CHECKING, Annotated, Any, Final

import msgspec
from msgspec import Meta

from fastkong.config.checks import check_ip_or_cidr
from fastkong.plugins.base import Exit, Plugin, kong_error
from fastkong.plugins.registry import ALL_PROTOCOLS, register_plugin

if TYPE_CHECKING:
    from fastkong.plugins.context import RequestContext
    from fastkong.runtime import Runtime

log = logging.getLogger("fastkong.plugins.ip-restriction")

NOT_ALLOWED: Final = "IP address not allowed: {}"
NO_CLIENT_IP: Final = (
    "Cannot identify the client IP address, unix domain sockets are not supported."
)
UNEXPECTED: Final = "An unexpected error occurred"
AT_LEAST_ONE: Final = (
    "at least one of these fields must be non-empty: 'config.allow', 'config.deny'"
)

IpOrCidr = Annotated[str, Meta(extra={"kong_check": check_ip_or_cidr})]


class IpRestrictionConfig(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    allow: list[IpOrCidr] | None = None
    deny: list[IpOrCidr] | None = None
    #: Kong's schema says "number"; ``kong.response.error`` needs a 4xx/5xx integer.
    status: float | None = None
    message: str | None = None


class IpMatcher:
    """A set of CIDR ranges: ``(prefix length, network number)`` lookups per address family."""

    __slots__ = ("v4", "v6", "size")

    def __init__(self, cidrs: list[str]) -> None:
        v4: dict[int, set[int]] = {}
        v6: dict[int, set[int]] = {}
        for cidr in cidrs:
            net = ipaddress.ip_network(cidr, strict=False)
            table = v4 if net.version == 4 else v6
            shift = net.max_prefixlen - net.prefixlen
            table.setdefault(shift, set()).add(int(net.network_address) >> shift)
        # Longest prefixes first: the likeliest exact hits are tried before wide ranges.
        self.v4 = tuple(sorted(v4.items()))
        self.v6 = tuple(sorted(v6.items()))
        self.size = len(cidrs)

    def __repr__(self) -> str:
        return (
            f"<IpMatcher ranges={self.size} v4_prefixes={len(self.v4)} v6_prefixes={len(self.v6)}>"
        )

    def __contains__(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        number = int(address)
        for shift, networks in self.v4 if address.version == 4 else self.v6:
            if number >> shift in networks:
                return True
        return False


def parse_client_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text.partition("%")[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@register_plugin
class IpRestriction(Plugin):
    name = "ip-restriction"
    priority = 990
    allowed_protocols = ALL_PROTOCOLS
    default_protocols = ("http", "https", "tcp", "tls", "grpc", "grpcs")
    Config = IpRestrictionConfig

    def __init__(self, config: IpRestrictionConfig, runtime: Runtime, entity: Any) -> None:
        super().__init__(config, runtime, entity)
        self.deny = IpMatcher(config.deny) if config.deny else None
        self.allow = IpMatcher(config.allow) if config.allow else None
        self.status = int(config.status) if config.status is not None else 403
        self.message = config.message

    @classmethod
    def check(cls, config: Any) -> list[tuple[str, str]]:
        if not config.allow and not config.deny:
            return [("", AT_LEAST_ONE)]
        return []

    async def access(self, ctx: RequestContext) -> Exit | None:
        address = parse_client_ip(ctx.forwarded_ip)
        if address is None:
            return self._refuse(403, NO_CLIENT_IP)
        if self.refused(address):
            return self._refuse(self.status, self.message or NOT_ALLOWED.format(ctx.forwarded_ip))
        return None

    def refused(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        """The deny list first, then the allow list (when set, an address outside it)."""
        if self.deny is not None and address in self.deny:
            return True
        return self.allow is not None and address not in self.allow

    def admits(self, client_ip: str) -> bool:
        """Kong's ``preread`` handler, for a stream connection from ``client_ip``: a refusal
        is logged, and in the stream subsystem Kong's exit closes the connection unanswered."""
        address = parse_client_ip(client_ip)
        if address is not None and not self.refused(address):
            return True
        log.warning("%s", self.message or NOT_ALLOWED.format(client_ip))
        return False

    def _refuse(self, status: int, message: str) -> Exit:
        log.warning("%s", message)
        if not 400 <= status <= 599:
            # kong.response.error raises on such a code: the request ends in a 500.
            log.error("ip-restriction: invalid status %d, expected 400-599", status)
            return kong_error(500, UNEXPECTED)
        return kong_error(status, message)
