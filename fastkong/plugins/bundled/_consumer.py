"""What Kong's authentication plugins share: the consumer headers, the anonymous consumer, the
logical AND / OR between auth plugins, and a few request parsers that behave like nginx's.

Strings that came off the wire are kept as *wire strings*: the raw bytes decoded as latin-1, so a
header value, a percent-decoded query value and a config value compare byte for byte as Kong
compares them (:func:`wire` turns a config string into that form).

Credential lookups go through dicts built once per snapshot (:meth:`Runtime.index`). A dict probe
compares hashes first and strings only on a (randomized, SipHash) hash match, so it does not leak
a secret's prefix through timing; secrets proper (password digests, HMAC signatures) are compared
with :func:`hmac.compare_digest`.
"""

from __future__ import annotations

import base64
import hmac
import logging
import re
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote_from_bytes, unquote_to_bytes

from fastkong.plugins.base import Exit, Plugin, kong_error

if TYPE_CHECKING:
    from fastkong.plugins.context import RequestContext
    from fastkong.runtime import Runtime

log = logging.getLogger("fastkong.plugins")

# Kong's constants.HEADERS (names as Kong sends them; the proxy lower-cases on the wire).
CONSUMER_ID: Final = "X-Consumer-ID"
CONSUMER_CUSTOM_ID: Final = "X-Consumer-Custom-ID"
CONSUMER_USERNAME: Final = "X-Consumer-Username"
CREDENTIAL_IDENTIFIER: Final = "X-Credential-Identifier"
ANONYMOUS: Final = "X-Anonymous-Consumer"
CONSUMER_GROUPS: Final = "X-Consumer-Groups"
AUTHENTICATED_GROUPS: Final = "X-Authenticated-Groups"

ERR_UNEXPECTED: Final = "An unexpected error occurred"

# The same names as the proxy writes them upstream (set_consumer runs on every authenticated
# request: the lower-cased bytes are computed once here, not per request).
_ID_KEY: Final = CONSUMER_ID.lower().encode()
_CUSTOM_ID_KEY: Final = CONSUMER_CUSTOM_ID.lower().encode()
_USERNAME_KEY: Final = CONSUMER_USERNAME.lower().encode()
_CREDENTIAL_KEY: Final = CREDENTIAL_IDENTIFIER.lower().encode()
_ANONYMOUS_KEY: Final = ANONYMOUS.lower().encode()


def wire(text: str) -> str:
    """``text`` as it travels: its UTF-8 bytes as a latin-1 string (identity for ASCII)."""
    return text if text.isascii() else text.encode("utf-8").decode("latin-1")


def safe_equal(a: bytes, b: bytes) -> bool:
    """Constant-time equality for secrets."""
    return hmac.compare_digest(a, b)


# -- consumers -------------------------------------------------------------------------------
def _consumers_by_name(runtime: Runtime) -> dict[str, Any]:
    """Consumer lookup for ``anonymous``: by id first, then by username (Kong's load_consumer)."""
    found: dict[str, Any] = {}
    for consumer in runtime.consumers.values():
        if consumer.username is not None:
            found.setdefault(consumer.username, consumer)
    found.update(runtime.consumers)  # an id wins over a username that looks like one
    return found


def find_consumer(runtime: Runtime, id_or_username: str) -> Any | None:
    return runtime.index("consumers:by-id-or-username", _consumers_by_name).get(id_or_username)


def set_consumer(
    ctx: RequestContext, consumer: Any | None, credential: Any | None, identifier: str | None
) -> None:
    """``kong.client.authenticate`` plus the upstream headers Kong's auth plugins set.

    Every header is either set or cleared, so a client cannot smuggle its own copy upstream.
    """
    ctx.authenticate(consumer, credential)
    ctx.anonymous = credential is None
    for key, value in (
        (_ID_KEY, consumer.id if consumer is not None else None),
        (_CUSTOM_ID_KEY, consumer.custom_id if consumer is not None else None),
        (_USERNAME_KEY, consumer.username if consumer is not None else None),
        (_CREDENTIAL_KEY, identifier if credential is not None else None),
        (_ANONYMOUS_KEY, "true" if credential is None else None),
    ):
        if value is None:
            ctx.clear_upstream_raw(key)
        else:
            ctx.set_upstream_raw(key, wire(value).encode("latin-1"))


def use_anonymous(ctx: RequestContext, anonymous: str) -> Exit | None:
    """Authentication failed and ``config.anonymous`` is set: continue as that consumer."""
    consumer = find_consumer(ctx.runtime, anonymous)
    if consumer is None:
        message = f"anonymous consumer {anonymous} is configured but doesn't exist"
        log.error(message)
        return kong_error(500, message)
    set_consumer(ctx, consumer, None, None)
    return None


class AuthPlugin(Plugin):
    """The access flow of Kong's auth plugins.

    Without ``anonymous`` the plugin must authenticate (logical AND with other auth plugins);
    with it, a request another auth plugin already authenticated passes untouched and a failure
    continues as the anonymous consumer (logical OR). Subclasses implement :meth:`authenticate`.
    """

    no_consumer = True

    def __init__(self, config: Any, runtime: Runtime, entity: Any) -> None:
        super().__init__(config, runtime, entity)
        self.anonymous: str | None = config.anonymous
        self.skip_preflight = not getattr(config, "run_on_preflight", True)

    async def access(self, ctx: RequestContext) -> Exit | None:
        if self.skip_preflight and ctx.method == "OPTIONS":
            return None
        if self.anonymous is None:
            return await self.authenticate(ctx)
        if ctx.credential is not None:
            return None
        if await self.authenticate(ctx) is None:
            return None
        return use_anonymous(ctx, self.anonymous)

    async def authenticate(self, ctx: RequestContext) -> Exit | None:
        """Identify the consumer (and :func:`set_consumer`), or return the failure response."""
        raise NotImplementedError


# -- parsers that behave like nginx's --------------------------------------------------------
class Flag:
    """A query or form argument given without ``=`` (nginx gives Lua the boolean ``true``)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "FLAG"


FLAG: Final = Flag()


def unescape(text: str) -> str:
    """Percent- and ``+``-decoding, as a wire string."""
    if "%" not in text and "+" not in text:
        return text
    return unquote_to_bytes(text.replace("+", " ")).decode("latin-1")


def parse_args(raw: str) -> dict[str, list[str | Flag]]:
    """``ngx.req.get_uri_args`` / ``get_post_args``: name -> values, in order."""
    found: dict[str, list[str | Flag]] = {}
    for part in raw.split("&"):
        if not part:
            continue
        name, eq, value = part.partition("=")
        key = unescape(name)
        if key:
            found.setdefault(key, []).append(unescape(value) if eq else FLAG)
    return found


def _form_escape(text: str) -> str:
    # The WHATWG urlencoded serializer (lua-resty-ada), with spaces as %20 as Kong writes them.
    return quote_from_bytes(text.encode("latin-1"), safe="*").replace("~", "%7E")


def args_without(raw: str, name: str) -> str | None:
    """``kong.service.request.clear_query_arg``: the query re-serialized without ``name``, or
    None when ``name`` is not in it (the query then goes upstream untouched)."""
    pairs: list[tuple[str, str]] = []
    dropped = False
    for part in raw.split("&"):
        if not part:
            continue
        key, _, value = part.partition("=")
        key = unescape(key)
        if key == name:
            dropped = True
        else:
            pairs.append((key, unescape(value)))
    if not dropped:
        return None
    return "&".join(f"{_form_escape(k)}={_form_escape(v)}" for k, v in pairs)


_B64_STD: Final = re.compile(r"[A-Za-z0-9+/]*")
_B64_URL: Final = re.compile(r"[A-Za-z0-9_-]*")
_B64_ANY: Final = re.compile(r"[A-Za-z0-9+/_-]*")


def decode_base64(text: str, alphabet: str = "std") -> bytes | None:
    """nginx's ``ngx_decode_base64``: stops at the first ``=``, rejects any other character
    outside the alphabet and a dangling sixth of a byte; padding is optional.

    ``alphabet`` is ``std``, ``url`` or ``any`` (both).
    """
    end = text.find("=")
    if end >= 0:
        text = text[:end]
    pattern = _B64_STD if alphabet == "std" else _B64_URL if alphabet == "url" else _B64_ANY
    if len(text) % 4 == 1 or pattern.fullmatch(text) is None:
        return None
    text += "=" * (-len(text) % 4)
    if alphabet != "std":
        text = text.replace("-", "+").replace("_", "/")
    return base64.b64decode(text)
