"""What Kong 3.9's ``ai-prompt-*`` plugins share: the request read as an LLM request.

Kong builds these plugins on ``kong/llm/plugin/{base,ctx}.lua``: a request's body is decoded once
per request by the ``parse-request`` filter of the first AI plugin that runs it, and the decoded
table is kept in the request's AI context ("the request table in use"); a plugin that rewrites
the request (ai-prompt-decorator) puts its new table there, so the plugins after it (the guard,
then ai-proxy) see the rewritten request, not the client's.

Here the same lives in ``ctx.plugin_data`` under :data:`REQUEST_TABLE`:

- :func:`request_table` is ``parse-request`` then ``get_request_body_table_inuse``: the first
  call reads and decodes the body, later calls return what is in use. A body that is not a JSON
  object (another ``Content-Type``, invalid JSON, an array, larger than the plugin's
  ``max_request_body_size``) gives None, which the plugins treat as Kong treats its empty
  request table.
- :func:`use_request_table` is ``set_request_body_table_inuse``; :func:`forget_request_table`
  makes the next reader decode the (rewritten) body again.

**Hook for ai-proxy** (priority 770, after these three): read the request with
``await request_table(ctx, conf.max_request_body_size)``; it is the table the prompt plugins
decorated and guarded, and the body they rewrote is already in ``ctx.body``.

Where fastkong differs: Kong's ``parse-request`` also decodes ``application/x-www-form-urlencoded``
and ``multipart/form-data`` bodies into a table; here only JSON is read (a form has no chat
messages; its ``prompt`` field alone would pass Kong's guard). Kong applies
``max_request_body_size`` only to a body that spilled out of nginx's 8 KiB client buffer (a body
up to 8 KiB is read whatever the setting); here it is the limit, exactly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Final, Literal

import msgspec
from msgspec import Meta

from fastkong.plugins.base import Exit, kong_exit
from fastkong.plugins.context import BodyTooLarge

if TYPE_CHECKING:
    from fastkong.plugins.context import RequestContext

#: ``ctx.plugin_data`` key: the decoded request in use (a dict), or None once parsed and found
#: not to be a JSON object. Absent: not parsed yet.
REQUEST_TABLE: Final = "ai.request_body_table"

_JSON: Final = "application/json"
# cjson's escapes (lua-cjson ``char2escape``): control characters as \\u00XX except the five
# short ones, '"', '\\', '/' and DEL; every other character (UTF-8 included) as it is.
_ESCAPES: Final = {c: f"\\u{c:04x}" for c in range(0x20)} | {
    0x08: "\\b",
    0x09: "\\t",
    0x0A: "\\n",
    0x0C: "\\f",
    0x0D: "\\r",
    0x22: '\\"',
    0x2F: "\\/",
    0x5C: "\\\\",
    0x7F: "\\u007f",
}


#: fastkong runs Kong's OpenAI-shaped requests only (not its bedrock and gemini adapters).
ONLY_OPENAI: Final = "fastkong implements llm_format 'openai' only"


def check_llm_format(value: str) -> str | None:
    return None if value == "openai" else ONLY_OPENAI


#: Kong's ``llm_format`` field (guard and decorator): its values, ``openai`` alone accepted.
LlmFormat = Annotated[
    Literal["openai", "bedrock", "gemini"], Meta(extra={"kong_check": check_llm_format})
]


def bad_request(message: str) -> Exit:
    """The AI plugins' refusal: ``kong.response.exit(400, {error = {message = ...}})``."""
    return kong_exit(400, {"error": {"message": message}})


def cjson_escape(text: str) -> str:
    """``cjson.encode(text)`` without its quotes, as Kong's template plugin inserts values."""
    return text.translate(_ESCAPES)


async def read_limited(ctx: RequestContext, limit: int) -> bytes | None:
    """The request body, or None when it is larger than ``limit`` bytes."""
    if ctx.body_read:
        body = ctx.body or b""
    else:
        try:
            # (a read over the limit keeps what it took: a later one never takes the rest of
            # the body for the body)
            body = await ctx.read_body(limit=limit)
        except BodyTooLarge:
            return None
    return body if len(body) <= limit else None


async def json_object(ctx: RequestContext, limit: int) -> dict[str, Any] | None:
    """``kong.request.get_body("application/json", nil, limit)`` when it is a JSON object."""
    body = await read_limited(ctx, limit)
    if not body:
        return None
    try:
        decoded = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return None
    return decoded if isinstance(decoded, dict) else None


def is_json(content_type: str | None) -> bool:
    """Kong's ``get_body`` choice: the media type (parameters cut) starts with JSON's."""
    if content_type is None:
        return True  # parse-request's default
    return content_type.split(";", 1)[0].strip().lower().startswith(_JSON)


async def request_table(ctx: RequestContext, limit: int) -> dict[str, Any] | None:
    """The request in use by the AI plugins (decoded on the first call; see the module doc)."""
    data = ctx.plugin_data
    if REQUEST_TABLE in data:
        found: dict[str, Any] | None = data[REQUEST_TABLE]
        return found
    table = await json_object(ctx, limit) if is_json(ctx.header("content-type")) else None
    data[REQUEST_TABLE] = table
    return table


def use_request_table(ctx: RequestContext, table: dict[str, Any]) -> None:
    """Make ``table`` the request the following AI plugins see."""
    ctx.plugin_data[REQUEST_TABLE] = table


def forget_request_table(ctx: RequestContext) -> None:
    """The body was rewritten: the next reader decodes it again."""
    ctx.plugin_data.pop(REQUEST_TABLE, None)
