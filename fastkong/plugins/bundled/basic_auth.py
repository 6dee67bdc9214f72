"""basic-auth: ``Authorization: Basic`` credentials (``kong:kong/plugins/basic-auth``).

``Proxy-Authorization`` is tried first, then ``Authorization``. Every failure is 401
``Unauthorized`` with ``WWW-Authenticate: Basic realm="<realm>"`` (``service`` by default).

Passwords are stored as Kong stores them: the hex SHA-1 of ``password .. consumer_id``. With
``_transform: true`` (the default) the config holds plain passwords and they are hashed once per
snapshot; with ``_transform: false`` the config already holds the digests. A request's password
is hashed the same way and compared in constant time.
"""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING, Annotated, Any, Final

import msgspec

from fastkong.plugins.base import REQUIRED, Exit, kong_error
from fastkong.plugins.bundled._consumer import (
    AuthPlugin,
    decode_base64,
    safe_equal,
    set_consumer,
    wire,
)
from fastkong.plugins.registry import register_plugin

if TYPE_CHECKING:
    from fastkong.plugins.context import RequestContext
    from fastkong.runtime import Runtime

ERR_UNAUTHORIZED: Final = "Unauthorized"

_BASIC: Final = re.compile(r"\s*[Bb]asic\s*(.+)")
_USER_PASS: Final = re.compile(rb"([^:]+):(.*)")


class BasicAuthConfig(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    anonymous: str | None = None
    hide_credentials: Annotated[bool, REQUIRED] = False
    realm: Annotated[str, REQUIRED] = "service"


def password_digest(consumer_id: str, password: bytes) -> bytes:
    """Kong's ``crypto.hash``: hex SHA-1 of the password salted with the consumer id."""
    return hashlib.sha1(password + consumer_id.encode("utf-8")).hexdigest().encode("ascii")


def _credentials(runtime: Runtime) -> dict[str, tuple[Any, bytes]]:
    """Wire username -> (credential, stored digest), once per snapshot."""
    found: dict[str, tuple[Any, bytes]] = {}
    config = runtime.config
    if config is None:
        return found
    for cred in config.basicauth_credentials:
        if config.transform:
            digest = password_digest(cred.consumer, cred.password.encode("utf-8"))
        else:
            digest = cred.password.encode("utf-8")
        found[wire(cred.username)] = (cred, digest)
    return found


def parse_basic(value: str | None) -> tuple[str, bytes] | None:
    """``Basic <base64(user:password)>`` -> (wire username, password bytes), as Kong reads it."""
    if value is None:
        return None
    m = _BASIC.search(value)
    if m is None:
        return None
    decoded = decode_base64(m.group(1))
    if decoded is None:
        return None
    parts = _USER_PASS.search(decoded)
    if parts is None:
        return None
    return parts.group(1).decode("latin-1"), parts.group(2)


@register_plugin
class BasicAuth(AuthPlugin):
    name = "basic-auth"
    priority = 1100
    Config = BasicAuthConfig

    def __init__(self, config: BasicAuthConfig, runtime: Runtime, entity: Any) -> None:
        super().__init__(config, runtime, entity)
        self.hide = config.hide_credentials
        realm = f'Basic realm="{config.realm}"'
        self.www_authenticate = (b"www-authenticate", realm.encode("utf-8"))
        self.credentials = runtime.index("basic-auth:credentials", _credentials)

    def unauthorized(self) -> Exit:
        return kong_error(401, ERR_UNAUTHORIZED, [self.www_authenticate])

    def retrieve(self, ctx: RequestContext, header: str) -> tuple[str, bytes] | None:
        found = parse_basic(ctx.header(header))
        if self.hide:
            ctx.clear_upstream_header(header)
        return found

    async def authenticate(self, ctx: RequestContext) -> Exit | None:
        if ctx.header("authorization") is None and ctx.header("proxy-authorization") is None:
            return self.unauthorized()
        hit = None
        given = self.retrieve(ctx, "proxy-authorization")
        if given is not None:
            hit = self.credentials.get(given[0])
        if hit is None or given is None:
            given = self.retrieve(ctx, "authorization")
            if given is None:
                return self.unauthorized()
            hit = self.credentials.get(given[0])
        if hit is None:
            return self.unauthorized()
        credential, stored = hit
        if not safe_equal(stored, password_digest(credential.consumer, given[1])):
            return self.unauthorized()
        consumer = self.runtime.consumers.get(credential.consumer)
        set_consumer(ctx, consumer, credential, credential.username)
        return None
