"""loggly: each request's log entry as a syslog line to Loggly (``kong:kong/plugins/loggly``).

Priority 6. One UDP datagram per request, in Loggly's RFC 5424 shape::

    <PRI>1 2026-11-26T10:00:00Z <hostname> kong - - [<key>@41058 tag="kong"] <JSON entry>

with Kong's serialized entry as the message. The severity is ``successful_severity``,
``client_errors_severity`` (4xx) or ``server_errors_severity`` (5xx); an entry less severe than
``log_level`` is not sent; ``PRI`` is the user facility (8) plus the severity's number. Sent by
the udp-log sender (never in the request's way; bounded; failures dropped with an error line).
"""

from __future__ import annotations

import socket
import time
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal

import msgspec

from fastkong.config.schema import REFERENCEABLE, Host, Port
from fastkong.plugins.bundled._serializer import (
    LogPlugin,
    LuaCode,
    serialize_json,
)
from fastkong.plugins.bundled.udp_log import sender as udp_sender
from fastkong.plugins.registry import ALL_PROTOCOLS, register_plugin

if TYPE_CHECKING:
    from fastkong.plugins.context import RequestContext
    from fastkong.runtime import Runtime

Severity = Literal["debug", "info", "notice", "warning", "err", "crit", "alert", "emerg"]
LEVELS: Final = {
    "debug": 7,
    "info": 6,
    "notice": 5,
    "warning": 4,
    "err": 3,
    "crit": 2,
    "alert": 1,
    "emerg": 0,
}
_USER_FACILITY: Final = 8
_SET: Final = msgspec.Meta(extra={"kong_set": True})


class LogglyConfig(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    host: Host = "logs-01.loggly.com"
    port: Port = 514
    key: Annotated[str, REFERENCEABLE]
    tags: Annotated[list[str], _SET] = msgspec.field(default_factory=lambda: ["kong"])
    log_level: Severity = "info"
    successful_severity: Severity = "info"
    client_errors_severity: Severity = "info"
    server_errors_severity: Severity = "info"
    timeout: float = 10000
    custom_fields_by_lua: LuaCode | None = None


@register_plugin
class Loggly(LogPlugin):
    name = "loggly"
    priority = 6
    allowed_protocols = ALL_PROTOCOLS
    Config = LogglyConfig

    def __init__(self, config: LogglyConfig, runtime: Runtime, entity: Any) -> None:
        super().__init__(config, runtime, entity)
        tags = " ".join(f'tag="{tag}"' for tag in config.tags)
        # Everything but the priority, the time and the message is fixed per instance.
        self.middle = f"{socket.gethostname()} kong - - [{config.key}@41058 {tags}]"
        self.threshold = LEVELS[config.log_level]

    def __repr__(self) -> str:  # never the key
        return f"<Loggly {self.config.host}:{self.config.port} level={self.config.log_level}>"

    def log(self, ctx: RequestContext) -> None:
        self.write(serialize_json(ctx), ctx.status)

    def write(self, message: bytes, status: int = 200) -> None:
        """Log one serialized message (a request's, or a stream session's) of ``status``."""
        config = self.config
        if status >= 500:
            severity = config.server_errors_severity
        elif status >= 400:
            severity = config.client_errors_severity
        else:
            severity = config.successful_severity
        level = LEVELS[severity]
        if level > self.threshold:
            return
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        head = f"<{_USER_FACILITY + level}>1 {stamp} {self.middle} ".encode()
        udp_sender(config.host, config.port, config.timeout, "loggly").append(head + message)
