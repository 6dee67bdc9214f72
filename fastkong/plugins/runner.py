"""Running a plugin chain for one request: access, response and log phases.

Kong re-resolves plugin configurations once an auth plugin has identified the consumer: each
plugin's configuration is chosen at the moment it is about to run. Here that is a switch of
chain: when the consumer changes, the rest of the request runs the (cached) consumer chain from
the current priority on.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from fastkong._core import load
from fastkong.plugins.base import Exit, Plugin
from fastkong.plugins.chain import PluginSet, order_key

if TYPE_CHECKING:
    from fastkong.plugins.context import RequestContext

log = logging.getLogger("fastkong.plugins")
if TYPE_CHECKING:
    from fastkong._core import _h1_py as _h1
else:
    _h1 = load("h1")


async def run_access(
    ctx: RequestContext, chain: tuple[Plugin, ...], plugins: PluginSet
) -> Exit | None:
    """Run the access hooks in priority order; the first :class:`Exit` stops the chain.

    ``ctx.chain`` ends up as the chain the response and log phases run.
    """
    scheme = ctx.scheme
    effective: list[Plugin] = []
    consumer_id: str | None = None
    i = 0
    while i < len(chain):
        plugin = chain[i]
        i += 1
        if scheme not in plugin.protocols:
            continue
        effective.append(plugin)
        if plugin.has_access:
            result = await plugin.access(ctx)
            if result is not None:
                # Kong still runs the later phases (response, log) of the plugins after the one
                # that answered: metrics and logs see short-circuited requests too.
                effective.extend(p for p in chain[i:] if scheme in p.protocols)
                ctx.chain = tuple(effective)
                ctx.access_ended = time.monotonic()
                return result
        consumer = ctx.consumer
        if plugins.consumer_scoped and consumer is not None and consumer.id != consumer_id:
            consumer_id = consumer.id
            route = ctx.route
            full = plugins.consumer_chain(
                route.id, route.service.id if route.service else None, consumer.id
            )
            after = order_key(plugin)
            chain = tuple(p for p in full if order_key(p) > after)
            i = 0
    ctx.chain = tuple(effective)
    ctx.access_ended = time.monotonic()
    return None


async def run_buffered(
    ctx: RequestContext, status: int, headers: list[tuple[bytes, bytes]]
) -> Exit | None:
    """The buffered-answer hooks (see :class:`~fastkong.plugins.base.Plugin`) in priority
    order; the first :class:`Exit` stops them and replaces the upstream's response."""
    for plugin in ctx.runtime.plugins.phases(ctx.chain).buffered:
        result = await plugin.buffered(ctx, status, headers)
        if result is not None:
            return result
    return None


def run_response(ctx: RequestContext, status: int, headers: list[tuple[bytes, bytes]]) -> None:
    """Kong's header_filter: every plugin of the effective chain may edit ``headers``."""
    ctx.status = status
    for plugin in ctx.runtime.plugins.phases(ctx.chain).response:
        plugin.response(ctx, status, headers)
    if ctx.response_headers:
        headers.extend(ctx.response_headers)
    ctx.response_head = headers


def body_filters(ctx: RequestContext) -> tuple[Plugin, ...]:
    return ctx.runtime.plugins.phases(ctx.chain).body


def run_body(filters: tuple[Plugin, ...], ctx: RequestContext, chunk: bytes, last: bool) -> bytes:
    """Kong's body_filter: each filter transforms what the previous one returned."""
    for plugin in filters:
        chunk = plugin.body(ctx, chunk, last)
    return chunk


def run_log(ctx: RequestContext) -> None:
    """The log phase; a failing plugin is logged and never affects the client."""
    for plugin in ctx.runtime.plugins.phases(ctx.chain).log:
        try:
            plugin.log(ctx)
        except Exception:
            log.exception("%r failed in the log phase", plugin)


def apply_header_edits(ctx: RequestContext, lines: list[bytes]) -> list[bytes]:
    """The upstream header lines after the plugins' set/clear edits."""
    return _h1.edit_header_lines(lines, ctx.upstream_remove, ctx.upstream_set)
