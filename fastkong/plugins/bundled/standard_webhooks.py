"""standard-webhooks: verify signed webhook deliveries (``kong:kong/plugins/standard-webhooks``,
the Standard Webhooks specification).

Priority 760. A request must carry ``webhook-id``, ``webhook-timestamp`` (Unix seconds, at most
``tolerance_second`` old) and ``webhook-signature: v1,<base64 HMAC-SHA256>`` of
``<id>.<timestamp>.<body>`` under ``secret_v1`` (the configured text is the key, as in Kong), and
a body. Anything else is 400 ``Bad request`` before the upstream sees it.

Where fastkong differs: ``webhook-signature`` may list several space-separated signatures, as
the specification allows while a sender rotates its secret; any ``v1`` one that matches is
enough (Kong compares the whole header with its one expected value). Signatures are compared in
constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import TYPE_CHECKING, Annotated, Any, Final

import msgspec
from msgspec import Meta

from fastkong.config.schema import REFERENCEABLE
from fastkong.plugins.base import REQUIRED, Exit, Plugin, kong_error
from fastkong.plugins.bundled.rate_limiting import _lua_number
from fastkong.plugins.registry import register_plugin
from fastkong.proxy.errors import NGINX_MESSAGES

if TYPE_CHECKING:
    from fastkong.plugins.context import RequestContext
    from fastkong.runtime import Runtime

BAD_REQUEST: Final = NGINX_MESSAGES[400]


class StandardWebhooksConfig(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    secret_v1: Annotated[str, REFERENCEABLE]
    tolerance_second: Annotated[int, REQUIRED, Meta(gt=-1)] = 300


def signature(secret: str, webhook_id: str, timestamp: float, body: bytes) -> str:
    """``v1,<base64>``: the signature a sender puts in ``webhook-signature``."""
    signed = f"{webhook_id}.{_lua_number(timestamp)}.".encode() + body
    mac = hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode("ascii")


def _timestamp(value: str) -> float:
    """Lua's ``tonumber`` or 0 (which then fails the age check)."""
    try:
        return float(value.strip())
    except ValueError:
        return 0.0


@register_plugin
class StandardWebhooks(Plugin):
    name = "standard-webhooks"
    priority = 760
    Config = StandardWebhooksConfig
    no_consumer = True

    def __init__(self, config: StandardWebhooksConfig, runtime: Runtime, entity: Any) -> None:
        super().__init__(config, runtime, entity)
        self.secret = config.secret_v1
        self.tolerance = config.tolerance_second

    def __repr__(self) -> str:  # never the secret
        return f"<StandardWebhooks tolerance={self.tolerance}s>"

    async def access(self, ctx: RequestContext) -> Exit | None:
        webhook_id = ctx.header("webhook-id")
        given = ctx.header("webhook-signature")
        stamp = ctx.header("webhook-timestamp")
        if webhook_id is None or given is None or stamp is None:
            return kong_error(400, BAD_REQUEST)
        timestamp = _timestamp(stamp)
        if time.time() - timestamp > self.tolerance:
            return kong_error(400, BAD_REQUEST)
        body = await ctx.read_body()
        if not body:
            return kong_error(400, BAD_REQUEST)
        expected = signature(self.secret, webhook_id, timestamp, body).encode()
        if not any(hmac.compare_digest(expected, part.encode()) for part in given.split(" ")):
            return kong_error(400, BAD_REQUEST)
        return None
