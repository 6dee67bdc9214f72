"""Running a plugin chain for one request: access, response and log phases.

Kong re-resolves plugin configurations once an auth plugin has identified the consumer: each
plugin's configuration is chosen at the moment it is about to run. Here that is a switch of
chain: when the consumer changes, the rest of the request runs the (cached) consumer chain from
the current priority on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

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


def run_response(
    ctx: RequestContext,
    status: int,
    headers: list[tuple[bytes, bytes]],
    own: Sequence[tuple[bytes, bytes]] = (),
    *,
    proxied: bool = False,
) -> None:
    """Kong's header_filter: every plugin of the effective chain may edit ``headers``.

    ``own`` are the entries of ``headers`` the gateway wrote itself (Server, Via, the latencies,
    the request id): Kong sets those in its runloop's ``header_filter.after``, once the plugins
    ran, so a plugin's edit of them does not last; a proxied response keeps a Server a plugin
    set (Kong writes its own only when none is left).
    """
    ctx.status = status
    for plugin in ctx.runtime.plugins.phases(ctx.chain).response:
        plugin.response(ctx, status, headers)
    if ctx.response_headers:
        headers.extend(ctx.response_headers)
    if own:
        _set_after_plugins(headers, own, proxied)
    ctx.response_head = headers


def _set_after_plugins(
    headers: list[tuple[bytes, bytes]], own: Sequence[tuple[bytes, bytes]], proxied: bool
) -> None:
    names = {name for name, _ in own}
    kept = [entry for entry in headers if entry[0] not in names]
    if proxied and b"server" in names:
        # Ours stands only when the upstream sent none: a Server a plugin set wins.
        theirs = [entry for entry in headers if entry[0] == b"server" and entry not in own]
        if theirs:
            kept += theirs
            own = [entry for entry in own if entry[0] != b"server"]
    kept += own
    headers[:] = kept


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


#: The request headers Kong's nginx writes itself with ``proxy_set_header`` (nginx_kong.lua):
#: a plugin's value for one of them never goes up (nginx passes only its own).
#: (TE, Upgrade and Connection are the transport's: plugins that speak gRPC set TE.)
PROXY_SET_HEADERS: Final = _h1.TRUSTED_FORWARDED | {
    b"via",
    b"x-forwarded-for",
    b"x-kong-request-id",
}


def apply_header_edits(ctx: RequestContext, lines: list[bytes]) -> list[bytes]:
    """The upstream header lines after the plugins' set/clear edits."""
    edits = ctx.upstream_set
    if not PROXY_SET_HEADERS.isdisjoint(edits):
        edits = {k: v for k, v in edits.items() if k not in PROXY_SET_HEADERS}
    return _h1.edit_header_lines(lines, ctx.upstream_remove, edits)
