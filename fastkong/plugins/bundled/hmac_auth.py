"""hmac-auth: HTTP signatures over chosen request headers (``kong:kong/plugins/hmac-auth``).

The client signs a string built from the headers it names and sends::

    Authorization: hmac username="alice", algorithm="hmac-sha256",
                   headers="date @request-target", signature="<base64 HMAC>"

(``Proxy-Authorization`` is tried first). The signing string has one line per named header,
``name: value`` (the name as the client wrote it, the request's first value); a name the request
lacks is ``name:``, except two pseudo headers: ``@request-target`` (``name: method path?query``,
the method lower-cased) and ``request-line`` (``METHOD path?query HTTP/1.1``), the path and query
as received. A ``Date`` or ``X-Date`` within ``clock_skew`` seconds of now is required, and the
algorithm must be one of ``algorithms``; ``enforce_headers`` must all be among the signed ones.
With ``validate_request_body`` the body must match ``Digest: SHA-256=<base64>`` (no digest: only
an empty body passes). Every failure is 401 with ``WWW-Authenticate: hmac`` (with ``realm="..."``
when set), and Kong's messages: missing headers "Unauthorized", a bad date the date message, a
malformed header, unknown user, algorithm or enforced header "HMAC signature cannot be verified",
a wrong signature or digest "HMAC signature does not match".
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import re
import time
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal

import msgspec
from msgspec import Meta

from fastkong.plugins.base import REQUIRED, Exit, kong_error
from fastkong.plugins.bundled._consumer import (
    AuthPlugin,
    decode_base64,
    safe_equal,
    set_consumer,
    wire,
)
from fastkong.plugins.context import BodyTooLarge
from fastkong.plugins.registry import register_plugin

if TYPE_CHECKING:
    from fastkong.plugins.context import RequestContext
    from fastkong.runtime import Runtime

ERR_UNAUTHORIZED: Final = "Unauthorized"
ERR_DATE: Final = (
    "HMAC signature cannot be verified, a valid date or x-date header is required for HMAC "
    "Authentication"
)
ERR_NOT_VALID: Final = "HMAC signature cannot be verified"
ERR_NOT_SAME: Final = "HMAC signature does not match"

Algorithm = Literal["hmac-sha1", "hmac-sha256", "hmac-sha384", "hmac-sha512"]
ALGORITHMS: Final[tuple[Algorithm, ...]] = (
    "hmac-sha1",
    "hmac-sha256",
    "hmac-sha384",
    "hmac-sha512",
)
_DIGESTS: Final = {
    "hmac-sha1": hashlib.sha1,
    "hmac-sha256": hashlib.sha256,
    "hmac-sha384": hashlib.sha384,
    "hmac-sha512": hashlib.sha512,
}

# Kong's pattern, greedy groups and all (a quote inside a value backtracks the same way).
_PARAMS: Final = re.compile(
    r'\s*[Hh]mac\s*username="(.+)",\s*algorithm="(.+)",\s*headers="(.+)",\s*signature="(.+)"'
)


class HmacAuthConfig(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    hide_credentials: Annotated[bool, REQUIRED] = False
    clock_skew: Annotated[float, Meta(gt=0)] = 300
    anonymous: str | None = None
    validate_request_body: Annotated[bool, REQUIRED] = False
    enforce_headers: list[str] = msgspec.field(default_factory=list)
    algorithms: list[Algorithm] = msgspec.field(default_factory=lambda: list(ALGORITHMS))
    realm: str | None = None


class SignedRequest(msgspec.Struct, frozen=True):
    """What an ``hmac`` authorization header carries."""

    username: str
    algorithm: str
    headers: list[str]
    signature: str


def parse_authorization(value: str | None) -> SignedRequest | None:
    """The header's parameters, or None when it is absent or not Kong's ``hmac`` form."""
    if value is None:
        return None
    m = _PARAMS.search(value)
    if m is None:
        return None
    return SignedRequest(m.group(1), m.group(2), m.group(3).split(" "), m.group(4))


def signing_string(ctx: RequestContext, names: list[str]) -> str:
    """The text the client signed, rebuilt from this request (Kong's ``create_hash``)."""
    target = ctx.raw_path.decode("latin-1")
    if ctx.query_string:
        target += "?" + ctx.query_string.decode("latin-1")
    lines = []
    for name in names:
        value = ctx.header(name)
        if value is not None:
            lines.append(f"{name}: {value}")
        elif name == "@request-target":
            lines.append(f"{name}: {ctx.method.lower()} {target}")
        elif name == "request-line":
            version = ctx.scope.get("http_version", "1.1")
            lines.append(f"{ctx.method} {target} HTTP/{float(version):.1f}")
        else:
            lines.append(f"{name}:")
    return "\n".join(lines)


def sign(algorithm: str, secret: str, text: str) -> bytes:
    return hmac.new(secret.encode("utf-8"), text.encode("utf-8"), _DIGESTS[algorithm]).digest()


def date_within(value: str | None, skew: float, now: float) -> bool:
    """An HTTP date (RFC 1123, RFC 850 or asctime, as nginx parses) within ``skew`` of now."""
    if value is None:
        return False
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return False
    if parsed.tzinfo is None:  # asctime carries no zone: HTTP dates are GMT, not local time
        parsed = parsed.replace(tzinfo=datetime.UTC)
    sent = parsed.timestamp()
    return abs(int(now) - sent) <= skew


def body_digest(body: bytes) -> str:
    return "SHA-256=" + base64.b64encode(hashlib.sha256(body).digest()).decode("ascii")


def _credentials(runtime: Runtime) -> dict[str, Any]:
    """Wire username -> credential, once per snapshot."""
    config = runtime.config
    if config is None:
        return {}
    return {wire(cred.username): cred for cred in config.hmacauth_credentials}


@register_plugin
class HmacAuth(AuthPlugin):
    name = "hmac-auth"
    priority = 1030
    Config = HmacAuthConfig

    def __init__(self, config: HmacAuthConfig, runtime: Runtime, entity: Any) -> None:
        super().__init__(config, runtime, entity)
        self.config = config
        challenge = f'hmac realm="{config.realm}"' if config.realm is not None else "hmac"
        self.www_authenticate = (b"www-authenticate", challenge.encode("utf-8"))
        self.credentials = runtime.index("hmac-auth:credentials", _credentials)

    def unauthorized(self, message: str) -> Exit:
        return kong_error(401, message, [self.www_authenticate])

    async def authenticate(self, ctx: RequestContext) -> Exit | None:
        config = self.config
        authorization = ctx.header("authorization")
        proxy_authorization = ctx.header("proxy-authorization")
        if authorization is None and proxy_authorization is None:
            return self.unauthorized(ERR_UNAUTHORIZED)
        now = time.time()
        if not (
            date_within(ctx.header("x-date"), config.clock_skew, now)
            or date_within(ctx.header("date"), config.clock_skew, now)
        ):
            return self.unauthorized(ERR_DATE)
        signed = parse_authorization(proxy_authorization)
        if signed is None:
            signed = parse_authorization(authorization)
            if config.hide_credentials:
                ctx.clear_upstream_header("authorization")
        elif config.hide_credentials:
            ctx.clear_upstream_header("proxy-authorization")
        if (
            signed is None
            or not set(config.enforce_headers) <= set(signed.headers)
            or signed.algorithm not in config.algorithms
        ):
            return self.unauthorized(ERR_NOT_VALID)
        credential = self.credentials.get(signed.username)
        if credential is None:
            return self.unauthorized(ERR_NOT_VALID)
        expected = sign(signed.algorithm, credential.secret, signing_string(ctx, signed.headers))
        given = decode_base64(signed.signature)
        if given is None or not safe_equal(expected, given):
            return self.unauthorized(ERR_NOT_SAME)
        if config.validate_request_body and not await self.body_matches(ctx):
            return self.unauthorized(ERR_NOT_SAME)
        consumer = self.runtime.consumers.get(credential.consumer)
        set_consumer(ctx, consumer, credential, credential.username)
        return None

    async def body_matches(self, ctx: RequestContext) -> bool:
        """Kong's ``validate_body``: the ``Digest`` header names the body's SHA-256; with no
        digest only an empty body passes; a body too large to buffer fails."""
        try:
            body = await ctx.read_body()
        except (BodyTooLarge, ConnectionError):  # too large to hold, or the client left
            return False
        received = ctx.header("digest")
        if received is None:
            return body == b""
        return safe_equal(body_digest(body).encode("ascii"), received.encode("latin-1"))
