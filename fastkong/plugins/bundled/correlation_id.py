"""correlation-id: give every request an id in a header, sent upstream and optionally back.

Kong's ``kong/plugins/correlation-id/{schema,handler}.lua``. A request that already carries the
header (non-blank) keeps its value; otherwise one is generated:

- ``uuid``: a random UUID;
- ``uuid#counter`` (the default): a UUID drawn once per worker process, ``#``, and a per-worker
  counter (``<uuid>#1``, ``<uuid>#2``...);
- ``tracker``: ``<server addr>-<server port>-<worker pid>-<connection>-<requests on it>-<time>``.
  ASGI does not expose nginx's connection serial, so ``<connection>`` is a per-worker sequence
  number and ``<requests on it>`` is 1.

With ``echo_downstream`` the id is also set on the response, even on one fastkong generated
(an error, or a plugin's answer).
"""

from __future__ import annotations

import itertools
import os
import time
import uuid
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal

import msgspec

from fastkong.plugins.base import REQUIRED, Exit, Plugin
from fastkong.plugins.bundled._serializer import set_serialize_value
from fastkong.plugins.registry import register_plugin

if TYPE_CHECKING:
    from fastkong.plugins.context import RequestContext
    from fastkong.runtime import Runtime

Headers = list[tuple[bytes, bytes]]
#: Where the id is kept for the response hook (and for loggers: Kong's serialized
#: ``correlation_id``).
KEY: Final = "correlation_id"


class CorrelationIdConfig(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    header_name: str = "Kong-Request-ID"
    generator: Annotated[Literal["uuid", "uuid#counter", "tracker"], REQUIRED] = "uuid#counter"
    echo_downstream: Annotated[bool, REQUIRED] = False


class _Worker:
    """Per-process generator state (Kong's ``init_worker``), renewed in a forked child."""

    __slots__ = ("uuid", "counter", "connections", "pid")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.uuid = str(uuid.uuid4())
        self.counter = itertools.count(1)
        self.connections = itertools.count(1)
        self.pid = os.getpid()


_WORKER = _Worker()
os.register_at_fork(after_in_child=_WORKER.reset)


def generate_uuid(ctx: RequestContext) -> str:
    return str(uuid.uuid4())


def generate_uuid_counter(ctx: RequestContext) -> str:
    return f"{_WORKER.uuid}#{next(_WORKER.counter)}"


def generate_tracker(ctx: RequestContext) -> str:
    server = ctx.scope.get("server") or ("127.0.0.1", ctx.port)
    return f"{server[0]}-{server[1]}-{_WORKER.pid}-{next(_WORKER.connections)}-1-{time.time():.3f}"


GENERATORS: Final = {
    "uuid": generate_uuid,
    "uuid#counter": generate_uuid_counter,
    "tracker": generate_tracker,
}


@register_plugin
class CorrelationId(Plugin):
    name = "correlation-id"
    priority = 100001
    Config = CorrelationIdConfig

    def __init__(self, config: CorrelationIdConfig, runtime: Runtime, entity: Any) -> None:
        super().__init__(config, runtime, entity)
        self.header_name = config.header_name
        self.header_key = config.header_name.lower().encode("latin-1")
        self.generate = GENERATORS[config.generator]
        self.echo_downstream = config.echo_downstream

    def _incoming(self, ctx: RequestContext) -> str | None:
        value = ctx.header(self.header_name)
        if value is None:
            return None
        value = value.strip()
        return value or None

    async def access(self, ctx: RequestContext) -> Exit | None:
        correlation_id = self._incoming(ctx)
        if correlation_id is None:
            correlation_id = self.generate(ctx)
            ctx.set_upstream_header(self.header_name, correlation_id)
        ctx.plugin_data[KEY] = correlation_id
        # Kong: kong.log.set_serialize_value("correlation_id", ...): the log plugins carry it
        set_serialize_value(ctx, "correlation_id", correlation_id)
        return None

    def response(self, ctx: RequestContext, status: int, headers: Headers) -> None:
        if not self.echo_downstream:
            return
        correlation_id = ctx.plugin_data.get(KEY) or self._incoming(ctx) or self.generate(ctx)
        key = self.header_key
        headers[:] = [h for h in headers if h[0] != key]
        headers.append((key, correlation_id.encode("latin-1")))
