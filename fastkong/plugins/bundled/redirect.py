"""redirect: answer with a redirect instead of proxying (``kong:kong/plugins/redirect``, Kong 3.9).

Priority 779 (after the auth, rate-limiting and transformation plugins). The answer is
``status_code`` (301 by default), ``Location: <location>`` and the body ``redirecting``. With
``keep_incoming_path`` the location keeps its scheme, host, port and fragment, and takes the
request's path and query string as they were received.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlsplit, urlunsplit

import msgspec
from msgspec import Meta

from fastkong.config.schema import Url
from fastkong.plugins.base import REQUIRED, Exit, Plugin
from fastkong.plugins.registry import register_plugin

if TYPE_CHECKING:
    from fastkong.plugins.context import RequestContext
    from fastkong.runtime import Runtime

BODY = b"redirecting"


class RedirectConfig(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    status_code: Annotated[int, REQUIRED, Meta(ge=100, le=599)] = 301
    location: Annotated[Url, REQUIRED]
    keep_incoming_path: bool = False


def with_incoming_path(location: str, raw_path: bytes, query: bytes) -> str:
    """``location`` with its path and query replaced by the request's (raw, as received)."""
    parts = urlsplit(location)
    return urlunsplit(
        (
            parts.scheme,
            parts.netloc,
            raw_path.decode("latin-1"),
            query.decode("latin-1"),
            parts.fragment,
        )
    )


@register_plugin
class Redirect(Plugin):
    name = "redirect"
    priority = 779
    Config = RedirectConfig

    def __init__(self, config: RedirectConfig, runtime: Runtime, entity: Any) -> None:
        super().__init__(config, runtime, entity)
        self.status = config.status_code
        self.keep_path = config.keep_incoming_path
        self.location = config.location.encode("utf-8")

    def __repr__(self) -> str:
        return f"<Redirect {self.status} {self.config.location} keep_path={self.keep_path}>"

    async def access(self, ctx: RequestContext) -> Exit | None:
        location = self.location
        if self.keep_path:
            location = with_incoming_path(
                self.config.location, ctx.raw_path, ctx.query_string
            ).encode("utf-8")
        return Exit(self.status, BODY, [(b"location", location)], "text/plain")
