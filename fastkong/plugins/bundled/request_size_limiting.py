"""request-size-limiting: refuse request bodies larger than a limit.

Kong's ``kong/plugins/request-size-limiting/{schema,handler}.lua``:

- a numeric ``Content-Length`` is compared with the limit, the body is not read;
- without one, ``require_content_length`` refuses the request with 411 unless it is chunked
  (``Transfer-Encoding: chunked``), and otherwise the body is read and measured; here it is
  counted while it is read, and reading stops as soon as the limit is passed;
- too large is ``413 Request size limit exceeded``, or 417 with the same message when the client
  sent ``Expect: 100-continue``.

A body read here is kept and sent upstream whole (with its Content-Length).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Final, Literal

import msgspec

from fastkong.plugins.base import REQUIRED, Exit, Plugin, kong_error
from fastkong.plugins.context import BodyTooLarge
from fastkong.plugins.registry import register_plugin

if TYPE_CHECKING:
    from fastkong.plugins.context import RequestContext
    from fastkong.runtime import Runtime

TOO_LARGE: Final = "Request size limit exceeded"
LENGTH_REQUIRED: Final = "A valid Content-Length header is required"

UNIT_FACTOR: Final = {"megabytes": 1024 * 1024, "kilobytes": 1024, "bytes": 1}


class RequestSizeLimitingConfig(
    msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True
):
    allowed_payload_size: int = 128
    size_unit: Annotated[Literal["megabytes", "kilobytes", "bytes"], REQUIRED] = "megabytes"
    require_content_length: Annotated[bool, REQUIRED] = False


def _content_length(value: str | None) -> float | None:
    """Lua's ``tonumber`` on the header: None when it is absent or not a number."""
    if value is None:
        return None
    text = value.strip()
    try:
        return int(text, 16) if text[:2].lower() == "0x" else float(text)
    except ValueError:
        return None


@register_plugin
class RequestSizeLimiting(Plugin):
    name = "request-size-limiting"
    priority = 951
    Config = RequestSizeLimitingConfig

    def __init__(self, config: RequestSizeLimitingConfig, runtime: Runtime, entity: Any) -> None:
        super().__init__(config, runtime, entity)
        self.limit = config.allowed_payload_size * UNIT_FACTOR[config.size_unit]
        self.require_content_length = config.require_content_length

    def __repr__(self) -> str:
        return f"<RequestSizeLimiting limit={self.limit} bytes id={self.id}>"

    async def access(self, ctx: RequestContext) -> Exit | None:
        length = _content_length(ctx.header("content-length"))
        if length is not None:
            return self._too_large(ctx) if length > self.limit else None
        chunked = ctx.header("transfer-encoding")
        if self.require_content_length and chunked != "chunked":
            return kong_error(411, LENGTH_REQUIRED)
        if chunked is None and ctx.scope.get("http_version") != "2":
            return None  # HTTP/1.x framing: neither length nor chunks means no body
        try:
            body = await ctx.read_body(limit=max(self.limit, 0))
        except BodyTooLarge:
            return self._too_large(ctx)
        # The body may have been read before, by a plugin with a larger limit.
        return self._too_large(ctx) if len(body) > self.limit else None

    def _too_large(self, ctx: RequestContext) -> Exit:
        expect = ctx.header("expect")
        if expect is not None and expect.lower().strip() == "100-continue":
            return kong_error(417, TOO_LARGE)
        return kong_error(413, TOO_LARGE)
