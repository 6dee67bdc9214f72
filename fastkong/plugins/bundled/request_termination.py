"""request-termination: answer every request with a fixed response, never proxying it.

Kong's ``kong/plugins/request-termination/{schema,handler}.lua``:

- ``body`` (with an optional ``content_type``) is sent as is;
- otherwise ``{"message": ...}`` with ``message``, or Kong's default text for the status
  (401, 404, 405, 500, 502, 503); other statuses without a message get an empty body;
- ``echo`` answers with a JSON description of the request (headers, query, body, uri captures)
  and of the matched route and service, for debugging;
- ``trigger`` names a header or query argument: only requests carrying it are terminated.
"""

from __future__ import annotations

import os
import socket
import uuid
from typing import TYPE_CHECKING, Annotated, Any, Final

import msgspec
from msgspec import Meta

from fastkong.config.checks import check_header_name
from fastkong.plugins.base import REQUIRED, Exit, Plugin, kong_exit
from fastkong.plugins.bundled._templates import decode_args, header_table
from fastkong.plugins.registry import register_plugin

if TYPE_CHECKING:
    from fastkong.plugins.context import RequestContext
    from fastkong.runtime import Runtime

DEFAULT_RESPONSE: Final = {
    401: "Unauthorized",
    404: "Not found",
    405: "Method not allowed",
    500: "An unexpected error occurred",
    502: "Bad Gateway",
    503: "Service unavailable",
}
#: A plugin check's sub-path for an error about the ``config`` record itself (Kong reports its
#: record-level ``custom_validator`` there).
CONFIG: Final = "."

HeaderName = Annotated[str, Meta(extra={"kong_check": check_header_name})]


class RequestTerminationConfig(
    msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True
):
    status_code: Annotated[int, Meta(ge=100, le=599), REQUIRED] = 503
    message: str | None = None
    content_type: str | None = None
    body: str | None = None
    echo: Annotated[bool, REQUIRED] = False
    trigger: HeaderName | None = None


def _node() -> dict[str, Any]:
    hostname = socket.gethostname()
    return {
        "node_id": str(uuid.uuid5(uuid.NAMESPACE_DNS, hostname)),
        "worker_pid": os.getpid(),
        "hostname": hostname,
    }


def _entities(runtime: Runtime) -> dict[str, dict[str, Any]]:
    """Routes and services by id, shaped as Kong's entities (a route's service is ``{id}``)."""
    found: dict[str, dict[str, Any]] = {}
    config = runtime.config
    if config is None:
        return found
    for service in config.services:
        found[service.id] = msgspec.to_builtins(service)
    for route in config.routes:
        data = msgspec.to_builtins(route)
        if data.get("service") is not None:
            data["service"] = {"id": data["service"]}
        found[route.id] = data
    return found


def _body(ctx: RequestContext, raw: bytes) -> Any:
    """``kong.request.get_body()`` for JSON and urlencoded bodies; None otherwise."""
    ctype = (ctx.header("content-type") or "").lower()
    if "application/json" in ctype:
        try:
            return msgspec.json.decode(raw)
        except msgspec.DecodeError:
            return None
    if "application/x-www-form-urlencoded" in ctype:
        return decode_args(raw.decode("utf-8", "replace"))
    return None


@register_plugin
class RequestTermination(Plugin):
    name = "request-termination"
    priority = 2
    Config = RequestTerminationConfig

    def __init__(self, config: RequestTerminationConfig, runtime: Runtime, entity: Any) -> None:
        super().__init__(config, runtime, entity)
        self.status = config.status_code
        #: ``kong.request.get_headers()[trigger]`` folds case and ``_`` to ``-``; the query
        #: lookup is exact.
        self.trigger = config.trigger
        self.trigger_header = (
            config.trigger.lower().replace("_", "-") if config.trigger is not None else ""
        )
        self.echo = config.echo
        self.message = config.message or DEFAULT_RESPONSE.get(self.status)
        self.fixed: Exit | None = None
        if config.body is not None:
            headers = []
            if config.content_type is not None:
                headers.append((b"content-type", config.content_type.encode("latin-1")))
            self.fixed = Exit(self.status, config.body.encode(), headers)
        elif not self.echo:
            self.fixed = kong_exit(self.status, self.message)

    @classmethod
    def check(cls, config: Any) -> list[tuple[str, str]]:
        if config.message and (config.content_type or config.body):
            return [(CONFIG, "message cannot be used with content_type or body")]
        if config.content_type and not config.body:
            return [(CONFIG, "content_type requires a body")]
        if config.echo and (config.content_type or config.body):
            return [(CONFIG, "echo cannot be used with content_type and body")]
        return []

    async def access(self, ctx: RequestContext) -> Exit | None:
        query: dict[str, Any] | None = None
        if self.trigger is not None:
            query = decode_args(ctx.query_string.decode("latin-1"))
            headers = ctx.headers
            if (
                self.trigger_header not in headers
                and self.trigger.lower() not in headers
                and self.trigger not in query
            ):
                return None
        if self.fixed is not None:
            return self.fixed
        if query is None:
            query = decode_args(ctx.query_string.decode("latin-1"))
        return await self._echo(ctx, query)

    async def _echo(self, ctx: RequestContext, query: dict[str, Any]) -> Exit:
        raw = await ctx.read_body()
        captures = ctx.match.captures or {}
        request: dict[str, Any] = {
            "scheme": ctx.scheme,
            "host": ctx.host,
            "port": ctx.port,
            "headers": header_table(ctx.headers.items()),
            "query": query,
            "raw_body": raw.decode("utf-8", "replace"),
            "method": ctx.method,
            "path": ctx.path,
            "uri_captures": {
                "named": {k: v for k, v in captures.items() if isinstance(k, str)},
                "unnamed": [v for k, v in sorted(_numbered(captures)) if k > 0],
            },
        }
        body = _body(ctx, raw)
        if body is not None:
            request["body"] = body
        entities = self.runtime.index("request-termination:entities", _entities)
        content: dict[str, Any] = {"kong": _node()}
        if self.message is not None:
            content["message"] = self.message
        content.update(
            {
                "request": request,
                "matched_route": entities.get(ctx.route.id),
            }
        )
        if ctx.service is not None:
            content["matched_service"] = entities.get(ctx.service.id)
        return kong_exit(self.status, content)


def _numbered(captures: dict[Any, Any]) -> list[tuple[int, Any]]:
    return [(k, v) for k, v in captures.items() if isinstance(k, int)]
