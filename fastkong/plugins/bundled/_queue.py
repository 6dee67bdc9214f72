"""Kong's batch queue (``kong/tools/queue.lua``) for logging plugins: one per worker and name.

A plugin's log phase calls :func:`enqueue`, which appends one entry to an in-memory deque and
returns at once: no I/O, no await, so a slow or dead log server can never slow a request. A
background task per queue does the rest, Kong's way:

* **coalescing**: once the first entry is there, the task waits for more until
  ``max_batch_size`` entries are queued or ``max_coalescing_delay`` seconds have passed (it stops
  waiting when less than 50 ms of the delay is left), then hands the batch to the handler;
* **retries**: a failed batch (the handler returned an error or raised) is retried after
  ``initial_retry_delay`` seconds, doubling each time up to ``max_retry_delay``, until
  ``max_retry_time`` seconds have passed since the first attempt; then the batch is dropped and
  logged as lost. Entries keep arriving meanwhile;
* **bounds**: at most ``max_entries`` entries (and ``max_bytes`` bytes, if set) wait; when full,
  the *oldest* entries are dropped to make room, so memory stays bounded whatever the server
  does;
* ``concurrency_limit: -1`` sends every entry at once on its own task, without a queue.

Queues with the same name share one deque and one task (Kong's per-worker ``queues`` table);
the handler of the most recent enqueue is used, so a changed config applies at once. A queue
whose deque drained is removed. Log lines name a queue by its *label*, never by its name, which
for http-log embeds the endpoint and may carry credentials.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Annotated, Any, Final, Literal

import msgspec
from msgspec import Meta

log = logging.getLogger("fastkong.plugins.queue")

#: Below this many seconds of coalescing budget, a batch is sent without waiting longer.
COALESCE_MIN_TIME: Final = 0.05
#: Longest single wait for more entries (Kong polls for worker shutdown at this pace).
COALESCE_POLL_TIME: Final = 1.0
CAPACITY_WARNING_THRESHOLD: Final = 0.8

#: A batch handler: awaits the delivery, returns None on success or an error message.
Handler = Callable[[list[bytes]], Awaitable[str | None]]


class QueueConfig(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Kong's ``typedefs.queue`` (``kong/tools/queue_schema.lua``)."""

    max_batch_size: Annotated[int, Meta(ge=1, le=1_000_000)] = 1
    max_coalescing_delay: Annotated[float, Meta(ge=0, le=3600)] = 1
    max_entries: Annotated[int, Meta(ge=1, le=1_000_000)] = 10000
    max_bytes: int | None = None
    max_retry_time: float = 60
    initial_retry_delay: Annotated[float, Meta(ge=0.001, le=1_000_000)] = 0.01
    max_retry_delay: Annotated[float, Meta(ge=0.001, le=1_000_000)] = 60
    concurrency_limit: Literal[-1, 1] = 1


@dataclass(frozen=True, slots=True)
class QueueParams:
    """A queue's effective parameters (``Queue.get_plugin_params``: legacy fields applied)."""

    name: str
    label: str
    max_batch_size: int = 1
    max_coalescing_delay: float = 1
    max_entries: int = 10000
    max_bytes: int | None = None
    max_retry_time: float = 60
    initial_retry_delay: float = 0.01
    max_retry_delay: float = 60
    concurrency_limit: int = 1

    @classmethod
    def from_config(cls, config: QueueConfig, name: str, label: str) -> QueueParams:
        return cls(
            name=name,
            label=label,
            max_batch_size=config.max_batch_size,
            max_coalescing_delay=config.max_coalescing_delay,
            max_entries=config.max_entries,
            max_bytes=config.max_bytes,
            max_retry_time=config.max_retry_time,
            initial_retry_delay=config.initial_retry_delay,
            max_retry_delay=config.max_retry_delay,
            concurrency_limit=config.concurrency_limit,
        )

    def with_changes(self, **changes: Any) -> QueueParams:
        return replace(self, **changes)

    def with_deprecated(
        self, label: str, old: str, value: float | None, default: float, new: str
    ) -> QueueParams:
        """A plugin's deprecated batching field (``queue_size``, ``batch_span_count``, ...): a
        value other than its old default becomes ``queue.<new>``, with Kong's warning."""
        if value is None or value == default:
            return self
        log.warning(
            "[%s] the %s parameter is deprecated, please update your configuration to use "
            "queue.%s instead",
            label,
            old,
            new,
        )
        return self.with_changes(**{new: value})


class Queue:
    """One named queue of one worker (see the module docstring)."""

    def __init__(self, params: QueueParams, handler: Handler) -> None:
        self.params = params
        self.handler = handler
        self.entries: deque[bytes] = deque()
        self.bytes_queued = 0
        self.dropped = 0
        self.lost = 0
        self.sent = 0
        self.closing = False
        self._warned = False
        self._dropping = False
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return (
            f"<Queue {self.params.label} entries={len(self.entries)} sent={self.sent} "
            f"dropped={self.dropped} lost={self.lost} "
            f"running={self._task is not None and not self._task.done()}>"
        )

    def _log(self, level: int, message: str, *args: Any) -> None:
        log.log(level, "[%s] " + message, self.params.label, *args)

    # -- the request side (synchronous, O(1)) ---------------------------------------------

    def enqueue(self, entry: bytes) -> str | None:
        """Queue ``entry``; None, or why it was refused. Never waits."""
        p = self.params
        entries = self.entries
        if len(entries) >= p.max_entries * CAPACITY_WARNING_THRESHOLD:
            if not self._warned:
                self._log(
                    logging.WARNING, "queue at %s%% capacity", CAPACITY_WARNING_THRESHOLD * 100
                )
                self._warned = True
        else:
            self._warned = False
        if len(entries) >= p.max_entries:
            if not self._dropping:
                self._log(
                    logging.ERROR, "queue full, dropping old entries until processing is "
                    "successful again",
                )  # fmt: skip
            self._drop_oldest()
        if p.max_bytes is not None:
            if len(entry) > p.max_bytes:
                message = (
                    f"string to be queued is longer ({len(entry)} bytes) than the queue's "
                    f"max_bytes ({p.max_bytes} bytes)"
                )
                self._log(logging.ERROR, "%s", message)
                return message
            dropped = 0
            while entries and self.bytes_queued + len(entry) > p.max_bytes:
                self._drop_oldest()
                dropped += 1
            if dropped:
                self._log(
                    logging.ERROR, "byte capacity exceeded, %d queue entries were dropped", dropped
                )
        entries.append(entry)
        self.bytes_queued += len(entry)
        self._wakeup.set()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        return None

    def _drop_oldest(self) -> None:
        entry = self.entries.popleft()
        self.bytes_queued -= len(entry)
        self.dropped += 1
        self._dropping = True

    # -- the background side --------------------------------------------------------------

    async def _run(self) -> None:
        try:
            while self.entries:
                await self._process_once()
        finally:
            self._task = None
            if not self.entries and _QUEUES.get(self.params.name) is self:
                del _QUEUES[self.params.name]

    async def _process_once(self) -> None:
        p = self.params
        loop = asyncio.get_running_loop()
        started = loop.time()
        while len(self.entries) < p.max_batch_size and not self.closing:
            remaining = p.max_coalescing_delay - (loop.time() - started)
            if remaining < COALESCE_MIN_TIME:
                break
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), min(remaining, COALESCE_POLL_TIME))
            except TimeoutError:
                pass
        count = min(len(self.entries), p.max_batch_size)
        batch = [self.entries.popleft() for _ in range(count)]
        self.bytes_queued -= sum(len(e) for e in batch)
        if self._dropping:
            self._log(logging.INFO, "queue resumed processing")
            self._dropping = False
        await handle(self, batch)


async def handle(queue: Queue, batch: list[bytes]) -> None:
    """Deliver ``batch`` with Kong's retry schedule; gives up after ``max_retry_time``."""
    p = queue.params
    loop = asyncio.get_running_loop()
    started = loop.time()
    retries = 0
    while True:
        try:
            error = await queue.handler(batch)
        except Exception as exc:  # a failing handler is a failed batch, never a dead queue
            error = f"{type(exc).__name__}: {exc}"
        if error is None:
            queue.sent += len(batch)
            return
        queue._log(logging.WARNING, "handler could not process entries: %s", error)
        if loop.time() - started > p.max_retry_time or queue.closing:
            queue._log(
                logging.ERROR,
                "could not send entries due to max_retry_time exceeded. %d queue entries were lost",
                len(batch),
            )
            queue.lost += len(batch)
            return
        await asyncio.sleep(min(p.max_retry_delay, 2**retries * p.initial_retry_delay))
        retries += 1


_QUEUES: dict[str, Queue] = {}
_UNQUEUED: set[asyncio.Task[None]] = set()


def enqueue(params: QueueParams, handler: Handler, entry: bytes) -> str | None:
    """Queue ``entry`` on the worker's queue named ``params.name``; None or an error message."""
    if params.concurrency_limit == -1:
        single = Queue(params, handler)
        task = asyncio.get_running_loop().create_task(handle(single, [entry]))
        _UNQUEUED.add(task)
        task.add_done_callback(_UNQUEUED.discard)
        return None
    queue = _QUEUES.get(params.name)
    if queue is None:
        queue = _QUEUES[params.name] = Queue(params, handler)
    else:
        queue.handler = handler  # Kong: the latest handler config; the queue keeps its params
    return queue.enqueue(entry)


def queues() -> dict[str, Queue]:
    """The worker's live queues by name (for tests and introspection)."""
    return dict(_QUEUES)


async def drain(timeout: float) -> bool:
    """Send what is queued without coalescing or retrying (the worker's shutdown); True when
    everything was handled within ``timeout`` seconds."""
    tasks: list[asyncio.Task[None]] = list(_UNQUEUED)
    for queue in list(_QUEUES.values()):
        queue.closing = True
        queue._wakeup.set()
        if queue._task is not None:
            tasks.append(queue._task)
    if not tasks:
        return True
    _, pending = await asyncio.wait(tasks, timeout=timeout)
    return not pending


__all__ = ["Handler", "Queue", "QueueConfig", "QueueParams", "drain", "enqueue", "queues"]
