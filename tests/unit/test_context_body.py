"""A plugin's request-body read over its limit loses nothing (fastkong/plugins/context.py).

``read_body(limit)`` stops taking chunks from the client once the body passes ``limit`` and
raises ``BodyTooLarge``; the chunks it took stay held, so that a later read with a larger limit
(another plugin) gets the whole body, and so that the proxy, reading through
``receive_rest``, sends the body upstream from its first byte. Checked on random bodies cut into
random chunks and random sequences of limits; then through a gateway with a real upstream.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from typing import Any

import httpx
import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastkong.config import load_config
from fastkong.plugins.base import Exit, Plugin
from fastkong.plugins.context import BodyTooLarge, RequestContext
from fastkong.plugins.registry import register_plugin, unregister
from fastkong.proxy.app import Gateway
from fastkong.runtime import compile_runtime
from tests.helpers import Echo


def client_body(chunks: list[bytes]) -> Any:
    """An ASGI ``receive`` that hands out ``chunks``, the last one ending the body."""
    queue = list(chunks) or [b""]

    async def receive() -> dict[str, Any]:
        chunk = queue.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(queue)}

    return receive


def context(receive: Any) -> RequestContext:
    ctx = RequestContext.__new__(RequestContext)
    # only what read_body and receive_rest use
    ctx.receive = receive
    ctx.body = None
    ctx.body_read = False
    ctx.held = []
    ctx.held_more = True
    return ctx


async def drain(receive: Any) -> bytes:
    parts = []
    while True:
        message = await receive()
        parts.append(message["body"])
        if not message["more_body"]:
            return b"".join(parts)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.binary(max_size=40), max_size=8),
    st.lists(st.integers(0, 200), max_size=4),
)
def test_reads_over_their_limit_lose_nothing(chunks: list[bytes], limits: list[int]) -> None:
    body = b"".join(chunks)

    async def main() -> None:
        ctx = context(client_body(chunks))
        for limit in limits:
            try:
                got = await ctx.read_body(limit)
            except BodyTooLarge:
                assert len(body) > limit and not ctx.body_read
            else:
                assert got == body and (len(body) <= limit or ctx.body_read)
        if ctx.body_read:
            assert await ctx.read_body(0) == body  # read once, then kept
        else:
            assert await drain(ctx.receive_rest) == body  # what the proxy sends up

    asyncio.run(main())


class PeekConfig(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    limit: int = 10


@pytest.fixture
def peek() -> Iterator[None]:
    @register_plugin
    class Peek(Plugin):
        """Reads the body with a small limit, as a plugin that only looks at small bodies does,
        and lets the request go on either way."""

        name = "test-peek"
        priority = 1000
        Config = PeekConfig

        async def access(self, ctx: RequestContext) -> Exit | None:
            try:
                await ctx.read_body(self.config.limit)
            except BodyTooLarge:
                pass
            return None

    yield
    unregister("test-peek")


@pytest.mark.parametrize("chunked", [False, True])
def test_the_proxy_sends_a_body_a_plugin_stopped_reading(
    peek: None, echo: Echo, chunked: bool
) -> None:
    config = f"""
_format_version: "3.0"
services:
- name: echo
  url: http://127.0.0.1:{echo.port}
  routes: [{{name: r, paths: ["/"], plugins: [{{name: test-peek}}]}}]
"""
    runtime = compile_runtime(load_config(config.encode()).config, "1")
    body = bytes(range(256)) * 40

    async def pieces() -> Any:
        for i in range(0, len(body), 1000):
            yield body[i : i + 1000]

    async def main() -> dict[str, Any]:
        gw = Gateway(runtime)
        await gw.startup()
        transport = httpx.ASGITransport(app=gw)
        async with httpx.AsyncClient(transport=transport, timeout=5) as client:
            content: Any = pieces() if chunked else body
            r = await client.post("http://gw.test/x", content=content)
        await gw.shutdown()
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    echoed = asyncio.run(main())
    assert echoed["body_md5"] == hashlib.md5(body).hexdigest()
