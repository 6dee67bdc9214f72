"""jwt: signed JSON Web Tokens (``kong:kong/plugins/jwt``).

Tokens are collected from the query (``uri_param_names``), cookies (``cookie_names``) and
``Bearer`` headers (``header_names``, first occurrence of each); more than one distinct token is
refused. The ``key_claim_name`` claim (or header field) names a ``jwt_secrets`` key, whose
``algorithm`` the token's ``alg`` must equal; then the signature, ``claims_to_verify`` and
``maximum_expiration`` are checked. Failures are 401 sent with ``kong.response.exit`` (a JSON
body without ``request_id``) and ``WWW-Authenticate: Bearer`` (``error="invalid_token"`` once
a token was found).
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal

import msgspec
from msgspec import Meta

from fastkong.plugins.base import REQUIRED, Exit, kong_error, kong_exit
from fastkong.plugins.bundled import _jwt_parser as parser
from fastkong.plugins.bundled._consumer import (
    ERR_UNEXPECTED,
    AuthPlugin,
    Flag,
    decode_base64,
    parse_args,
    set_consumer,
)
from fastkong.plugins.registry import register_plugin

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

    from fastkong.plugins.context import RequestContext
    from fastkong.runtime import Runtime

_SET: Final = Meta(extra={"kong_set": True})
_BEARER: Final = re.compile(r"\s*[Bb]earer\s+(.+)")
_MAX_EXP: Final = "config.maximum_expiration"


class JwtConfig(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    uri_param_names: Annotated[list[str], _SET] = msgspec.field(default_factory=lambda: ["jwt"])
    cookie_names: Annotated[list[str], _SET] = msgspec.field(default_factory=list)
    key_claim_name: str = "iss"
    secret_is_base64: Annotated[bool, REQUIRED] = False
    claims_to_verify: Annotated[list[Literal["exp", "nbf"]], _SET] | None = None
    anonymous: str | None = None
    run_on_preflight: Annotated[bool, REQUIRED] = True
    maximum_expiration: Annotated[float, Meta(ge=0, le=31536000)] = 0
    header_names: Annotated[list[str], _SET] = msgspec.field(
        default_factory=lambda: ["authorization"]
    )
    realm: str | None = None


class _Secret:
    """A ``jwt_secrets`` entry ready to verify with: its key material decoded once."""

    __slots__ = ("credential", "algorithm", "secret", "secret_base64", "public_key", "bad_key")

    def __init__(self, credential: Any) -> None:
        self.credential = credential
        self.algorithm: str = credential.algorithm or "HS256"
        self.secret: bytes = credential.secret.encode("utf-8")
        #: ``secret_is_base64``: Kong decodes with the URL-safe alphabet only; the standard
        #: one is accepted too (a secret Kong could not decode always failed there).
        self.secret_base64 = decode_base64(credential.secret, "any")
        self.public_key: PublicKeyTypes | None = None
        self.bad_key = False
        pem = credential.rsa_public_key
        if pem is not None and not self.algorithm.startswith("HS"):
            self.public_key = parser.load_public_key(pem)
            self.bad_key = self.public_key is None


def _secrets(runtime: Runtime) -> dict[str, _Secret]:
    config = runtime.config
    if config is None:
        return {}
    return {s.key: _Secret(s) for s in config.jwt_secrets}


def _cookie(values: list[str], name: str) -> str | None:
    """nginx's ``$cookie_<name>``: the first cookie of that name (case-insensitive)."""
    wanted = name.lower()
    for header in values:
        for pair in header.split(";"):
            key, eq, value = pair.strip().partition("=")
            if eq and key.strip().lower() == wanted:
                return value.strip()
    return None


@register_plugin
class Jwt(AuthPlugin):
    name = "jwt"
    priority = 1450
    Config = JwtConfig

    def __init__(self, config: JwtConfig, runtime: Runtime, entity: Any) -> None:
        super().__init__(config, runtime, entity)
        self.uri_param_names = tuple(config.uri_param_names)
        self.cookie_names = tuple(config.cookie_names)
        self.header_names = tuple(n.lower() for n in config.header_names)
        self.key_claim = config.key_claim_name
        self.secret_is_base64 = config.secret_is_base64
        self.claims_to_verify: tuple[str, ...] = tuple(config.claims_to_verify or ())
        self.maximum_expiration = config.maximum_expiration
        if config.realm is not None:
            base = f'Bearer realm="{config.realm}"'
            with_error = base + ', error="invalid_token"'
        else:
            base, with_error = "Bearer", 'Bearer error="invalid_token"'
        self.www_base = (b"www-authenticate", base.encode("utf-8"))
        self.www_error = (b"www-authenticate", with_error.encode("utf-8"))
        self.secrets = runtime.index("jwt:secrets", _secrets)

    def __repr__(self) -> str:
        return f"<Jwt priority={self.priority} id={self.id} key_claim={self.key_claim!r}>"

    def invalid(self, payload: str | dict[str, str]) -> Exit:
        return kong_exit(401, payload, [self.www_error])

    def tokens(self, ctx: RequestContext) -> list[str | Flag]:
        """Every distinct token in the request, in Kong's lookup order."""
        found: dict[str | Flag, None] = {}
        if self.uri_param_names and ctx.query_string:
            args = parse_args(ctx.query_string.decode("latin-1"))
            for name in self.uri_param_names:
                for value in args.get(name, ()):
                    if value != "":
                        found[value] = None
        if self.cookie_names:
            cookies = ctx.headers.get("cookie")
            if cookies:
                for name in self.cookie_names:
                    cookie = _cookie(cookies, name)
                    if cookie:
                        found[cookie] = None
        headers = ctx.headers
        for name in self.header_names:
            values = headers.get(name)
            if values:
                m = _BEARER.search(values[0])
                if m is not None:
                    found[m.group(1)] = None
        return list(found)

    async def authenticate(self, ctx: RequestContext) -> Exit | None:
        tokens = self.tokens(ctx)
        if not tokens:
            return kong_exit(401, "Unauthorized", [self.www_base])
        if len(tokens) > 1:
            return self.invalid("Multiple tokens provided")
        token_text = tokens[0]
        if not isinstance(token_text, str):
            return self.invalid("Unrecognizable token")  # a bare ``?jwt`` flag

        token = parser.decode(token_text)
        if isinstance(token, str):
            return self.invalid(f"Bad token; {token}")

        claim = self.key_claim
        key = token.claims.get(claim)
        if key is None or key is False:
            key = token.header.get(claim)
        if key is None or key is False:
            return self.invalid(f"No mandatory '{claim}' in claims")
        if key == "":
            return self.invalid(f"Invalid '{claim}' in claims")
        secret = self.secrets.get(key) if isinstance(key, str) else None
        if secret is None:
            return self.invalid(f"No credentials found for given '{claim}'")
        if token.header["alg"] != secret.algorithm:
            return self.invalid("Invalid algorithm")

        material: bytes | PublicKeyTypes | None
        if secret.algorithm.startswith("HS"):
            material = secret.secret_base64 if self.secret_is_base64 else secret.secret
        else:
            if secret.bad_key:
                return kong_error(500, ERR_UNEXPECTED)  # Kong: "Consumer Public Key is Invalid"
            material = secret.public_key
        if material is None:
            return self.invalid("Invalid key/secret")
        if not parser.verify_signature(token, material):
            return self.invalid("Invalid signature")

        now = int(time.time())
        errors = parser.verify_registered_claims(token.claims, self.claims_to_verify, now)
        if not errors and self.maximum_expiration > 0:
            errors = parser.check_maximum_expiration(token.claims, self.maximum_expiration, now)
        if errors:
            return self.invalid(errors)

        credential = secret.credential
        consumer = self.runtime.consumers.get(credential.consumer)
        if consumer is None:
            return kong_exit(401, f"Could not find consumer for '{claim}={key}'")
        set_consumer(ctx, consumer, credential, credential.key)
        ctx.shared["authenticated_jwt_token"] = token_text
        return None

    @classmethod
    def check(cls, config: Any) -> list[tuple[str, str]]:
        """Kong's entity check: ``maximum_expiration > 0`` needs ``exp`` in claims_to_verify."""
        claims = config.claims_to_verify
        if config.maximum_expiration > 0 and claims is not None and "exp" not in claims:
            return [
                ("claims_to_verify", "expected to contain: exp"),
                ("", f"failed conditional validation given value of field '{_MAX_EXP}'"),
            ]
        return []
