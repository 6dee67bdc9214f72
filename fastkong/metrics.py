"""Prometheus metrics of one node, counted in Granian's worker processes and merged per scrape.

Kong keeps its counters in one shared dict per node (``prometheus_metrics``) and every nginx
worker increments it. Granian's workers are separate Python processes with no shared heap, so
here the work is split in two halves that meet in the node's state directory:

**Worker side** (:class:`WorkerMetrics`, one per process, :data:`WORKER`). The prometheus
plugin's log phase updates plain dicts in memory: a counter is ``dict[key] += n``, a histogram
a list of per-bucket counts plus the sum (one ``bisect``). Nothing is shared, nothing is
locked, no I/O happens on the request path. A background task wakes every
:data:`FLUSH_INTERVAL` second and, when something changed, writes the whole state of the worker
as one small msgpack file ``metrics-<pid>``: encode, write a temporary file, ``rename`` over the
old one, so a reader never sees half a snapshot. It writes once more when the worker shuts down
(:meth:`WorkerMetrics.close`).

**Node side** (:func:`render_node_metrics`, called by the supervisor's ``/metrics``). A scrape
reads the snapshot of every live worker and sums them: counters and histogram buckets add up,
per-process gauges keep a ``pid`` label. The snapshot of a worker that died (Granian respawns
crashed workers) is folded into ``metrics-retired`` and removed, so node counters never go
backwards when a worker is replaced. ``fastkong`` resets all of them when the node starts
(:func:`reset_node_metrics`), as Kong's shared dict starts empty.

**Staleness bound.** A request's counts reach ``/metrics`` at most :data:`FLUSH_INTERVAL` (1 s)
plus one event-loop turn after its log phase ran; a scrape never waits for a worker. Counts of
the last second of a worker killed with SIGKILL are lost (a graceful stop flushes).

Which families are exported follows Kong's exporter (``kong/plugins/prometheus/exporter.lua``):
the node gauges (``node_info``, ``datastore_reachable``, ``nginx_requests_total``,
``nginx_timers``, memory) always; the per-request families (``http_requests_total``, the three
latency histograms, ``bandwidth_bytes``, the ``ai_llm_*`` families, ``nginx_metric_errors_total``)
and the stream process's per-session ones (``stream_sessions_total``, ``session_duration_ms``, and
``bandwidth_bytes`` with an empty ``consumer``) only while an enabled prometheus plugin is in the
config, and ``upstream_target_health`` only while one of them sets ``upstream_health_metrics``
(with ``subsystem="stream"`` rows too while a stream process serves ``stream_listen``).

``nginx_timers`` has no nginx behind it here: ``running`` and ``pending`` are the asyncio tasks
of the node's processes (Granian workers and stream processes) that have started and not
finished, and that are created but not started (:func:`loop_timers`), summed over the live
processes as each last wrote them (Kong reports the one nginx worker that serves the scrape).
"""

from __future__ import annotations

import asyncio
import bisect
import inspect
import logging
import os
import socket
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import msgspec

from fastkong import __version__

if TYPE_CHECKING:
    from fastkong.config import Config

log = logging.getLogger("fastkong.metrics")

FLUSH_INTERVAL: Final = 1.0
PREFIX: Final = "metrics-"
RETIRED: Final = "metrics-retired"
SUBSYSTEM: Final = "http"
WORKSPACE: Final = "default"

KONG_LATENCY_BUCKETS: Final = (
    1, 2, 5, 7, 10, 15, 20, 30, 50, 75, 100, 200, 500, 750, 1000, 3000, 6000,
)  # fmt: skip
UPSTREAM_LATENCY_BUCKETS: Final = (
    25, 50, 80, 100, 250, 400, 700, 1000, 2000, 5000, 10000, 30000, 60000,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Family:
    """One metric family as Kong's exporter registers it (name without the ``kong_`` prefix)."""

    name: str
    kind: str  # "counter" | "gauge" | "histogram"
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[int, ...] = ()


HTTP_REQUESTS = Family(
    "http_requests_total",
    "counter",
    "HTTP status codes per consumer/service/route in Kong",
    ("service", "route", "code", "source", "workspace", "consumer"),
)
KONG_LATENCY = Family(
    "kong_latency_ms",
    "histogram",
    "Latency added by Kong and enabled plugins for each service/route in Kong",
    ("service", "route", "workspace"),
    KONG_LATENCY_BUCKETS,
)
UPSTREAM_LATENCY = Family(
    "upstream_latency_ms",
    "histogram",
    "Latency added by upstream response for each service/route in Kong",
    ("service", "route", "workspace"),
    UPSTREAM_LATENCY_BUCKETS,
)
REQUEST_LATENCY = Family(
    "request_latency_ms",
    "histogram",
    "Total latency incurred during requests for each service/route in Kong",
    ("service", "route", "workspace"),
    UPSTREAM_LATENCY_BUCKETS,
)
BANDWIDTH = Family(
    "bandwidth_bytes",
    "counter",
    "Total bandwidth (ingress/egress) throughput in bytes",
    ("service", "route", "direction", "workspace", "consumer"),
)
#: Kong's stream subsystem families (the stream process counts them; fastkong.stream).
STREAM_SESSIONS = Family(
    "stream_sessions_total",
    "counter",
    "Stream status codes per service/route in Kong",
    ("service", "route", "code", "source", "workspace"),
)
SESSION_DURATION = Family(
    "session_duration_ms",
    "histogram",
    "latency incurred in stream session for each service/route in Kong",
    ("service", "route", "workspace"),
    UPSTREAM_LATENCY_BUCKETS,
)
#: Kong's AI families (``ai_metrics``), from the ``ai`` log sections of the AI plugins.
AI_LLM_PROVIDER_LATENCY_BUCKETS: Final = (
    250, 500, 1000, 1500, 2000, 2500, 3000, 3500, 4000, 4500, 5000, 10000, 30000, 60000,
)  # fmt: skip
_AI_LABELS: Final = (
    "ai_provider", "ai_model", "cache_status", "vector_db", "embeddings_provider",
    "embeddings_model",
)  # fmt: skip
AI_REQUESTS = Family(
    "ai_llm_requests_total",
    "counter",
    "AI requests total per ai_provider in Kong",
    (*_AI_LABELS, "workspace"),
)
AI_COST = Family(
    "ai_llm_cost_total",
    "counter",
    "AI requests cost per ai_provider/cache in Kong",
    (*_AI_LABELS, "workspace"),
)
AI_TOKENS = Family(
    "ai_llm_tokens_total",
    "counter",
    "AI requests cost per ai_provider/cache in Kong",  # sic: Kong's HELP
    (*_AI_LABELS, "token_type", "workspace"),
)
AI_LATENCY = Family(
    "ai_llm_provider_latency_ms",
    "histogram",
    "LLM response Latency for each AI plugins per ai_provider in Kong",
    (*_AI_LABELS, "workspace"),
    AI_LLM_PROVIDER_LATENCY_BUCKETS,
)
#: The families the workers count, in the order a scrape renders them.
WORKER_FAMILIES: Final = {
    f.name: f
    for f in (
        AI_COST,
        AI_LATENCY,
        AI_REQUESTS,
        AI_TOKENS,
        BANDWIDTH,
        HTTP_REQUESTS,
        KONG_LATENCY,
        REQUEST_LATENCY,
        SESSION_DURATION,
        STREAM_SESSIONS,
        UPSTREAM_LATENCY,
    )
}

Labels = tuple[str, ...]


class Snapshot(msgspec.Struct, array_like=True, frozen=True):
    """What one worker writes (also the shape of ``metrics-retired``, with ``pid`` 0)."""

    pid: int
    requests: int = 0
    rss: int = 0
    counters: list[tuple[str, Labels, float]] = []
    histograms: list[tuple[str, Labels, list[int], float]] = []
    #: Memory stores of the worker (proxy-cache dictionaries): ``(name, used, capacity)``.
    dicts: list[tuple[str, int, int]] = []
    #: Kong's ``kong_subsystem`` of the process: ``http`` (a Granian worker) or ``stream``.
    subsystem: str = SUBSYSTEM
    #: ``(running, pending)`` tasks of the process's event loop (:func:`loop_timers`).
    timers: tuple[int, int] = (0, 0)
    #: The ``stream_listen`` listeners the process serves (the stream process; 0 elsewhere).
    stream_listeners: int = 0


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Snapshot)


# -- worker side -------------------------------------------------------------------------------


class WorkerMetrics:
    """The counters of one worker process (see the module docstring).

    ``inc`` and ``observe`` are the whole hot path: a dict update and, for a histogram, a bisect.
    """

    __slots__ = (
        "counters",
        "histograms",
        "logged",
        "dirty",
        "requests_source",
        "dicts",
        "state_dir",
        "pid",
        "interval",
        "subsystem",
        "stream_listeners",
        "timers",
        "_task",
        "_written",
    )

    def __init__(self, interval: float = FLUSH_INTERVAL) -> None:
        self.subsystem = SUBSYSTEM
        self.stream_listeners = 0
        #: :func:`loop_timers` as last sampled (by the flusher, every tick).
        self.timers = (0, 0)
        self.counters: dict[tuple[str, Labels], float] = {}
        self.histograms: dict[tuple[str, Labels], list[float]] = {}
        #: Requests the prometheus log phase saw (stands in for nginx's total when no
        #: ``requests_source`` is attached).
        self.logged = 0
        self.dirty = False
        self.requests_source: Callable[[], int] | None = None
        #: name -> callable returning ``(used bytes, capacity)`` of a worker memory store.
        self.dicts: dict[str, Callable[[], tuple[int, int]]] = {}
        self.state_dir: Path | None = None
        self.pid = os.getpid()
        self.interval = interval
        self._task: asyncio.Task[None] | None = None
        self._written = -1

    def __repr__(self) -> str:
        running = self._task is not None and not self._task.done()
        return (
            f"<WorkerMetrics pid={self.pid} counters={len(self.counters)} "
            f"histograms={len(self.histograms)} logged={self.logged} dir={self.state_dir} "
            f"flusher={'running' if running else 'stopped'}>"
        )

    def inc(self, family: str, labels: Labels, value: float = 1) -> None:
        key = (family, labels)
        counters = self.counters
        counters[key] = counters.get(key, 0) + value
        self.dirty = True

    def observe(self, family: Family, labels: Labels, value: float) -> None:
        key = (family.name, labels)
        row = self.histograms.get(key)
        if row is None:
            row = self.histograms[key] = [0] * (len(family.buckets) + 2)
        row[bisect.bisect_left(family.buckets, value)] += 1
        row[-1] += value
        self.dirty = True

    # -- the snapshot file ----------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        requests = self.requests_source() if self.requests_source is not None else self.logged
        return Snapshot(
            pid=self.pid,
            requests=requests,
            rss=_rss(),
            counters=[(name, labels, v) for (name, labels), v in self.counters.items()],
            histograms=[
                (name, labels, [int(x) for x in row[:-1]], row[-1])
                for (name, labels), row in self.histograms.items()
            ],
            dicts=[(name, *usage()) for name, usage in self.dicts.items()],
            subsystem=self.subsystem,
            timers=self.timers,
            stream_listeners=self.stream_listeners,
        )

    def write(self) -> bool:
        """Write ``metrics-<pid>`` now (atomically); False when there is no state dir."""
        state_dir = self.state_dir
        if state_dir is None:
            return False
        data = _encoder.encode(self.snapshot())
        self.dirty = False
        tmp = state_dir / f".{PREFIX}{self.pid}.tmp"
        try:
            tmp.write_bytes(data)
            os.replace(tmp, state_dir / f"{PREFIX}{self.pid}")
        except OSError as exc:
            log.warning("worker %d: cannot write its metrics snapshot: %s", self.pid, exc)
            return False
        return True

    def _changed(self) -> bool:
        if self.dirty:
            return True
        source = self.requests_source
        return source is not None and source() != self._written

    # -- the flusher ----------------------------------------------------------------------

    def start(
        self,
        state_dir: Path | None = None,
        requests: Callable[[], int] | None = None,
    ) -> None:
        """Start the flusher on the running loop (idempotent).

        ``state_dir`` defaults to the directory of ``FASTKONG_STATE_FILE``; ``requests`` is the
        worker's total request count (for ``kong_nginx_requests_total``).
        """
        if requests is not None:
            self.requests_source = requests
        if state_dir is not None:
            self.state_dir = state_dir
        elif self.state_dir is None:
            self.state_dir = state_dir_from_env()
        self.pid = os.getpid()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    def ensure_started(self) -> None:
        """Start the flusher if it is not running (the prometheus plugin's first log)."""
        if self._task is None:
            self.start()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            timers = loop_timers()
            if self._changed() or timers != self.timers:
                self.timers = timers
                self._written = (
                    self.requests_source() if self.requests_source is not None else self.logged
                )
                self.write()

    def close(self) -> None:
        """Stop the flusher and write the final snapshot (the worker's shutdown)."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if self.dirty or self.requests_source is not None:
            self.write()


def loop_timers() -> tuple[int, int]:
    """The analog of nginx's ``ngx.timer.running_count()`` and ``pending_count()`` for this
    process: its event loop's tasks that have started and not finished, and those created but
    not started yet. Kong's background jobs are nginx timers; fastkong's are asyncio tasks (the
    metrics flusher, the config follower, the upstream registry, the log queues' senders),
    beside the tasks of requests in flight. uvloop does not tell how many ``call_later`` handles
    wait, so a task sleeping on one counts as running, as a timer's callback waiting on I/O does
    in nginx."""
    try:
        tasks = asyncio.all_tasks()
    except RuntimeError:  # no running loop (a write outside the worker's loop)
        return 0, 0
    pending = 0
    for task in tasks:
        coro = task.get_coro()
        if inspect.iscoroutine(coro) and inspect.getcoroutinestate(coro) == inspect.CORO_CREATED:
            pending += 1
    return len(tasks) - pending, pending


def state_dir_from_env() -> Path | None:
    """The node's state directory, as the supervisor tells its workers."""
    state = os.environ.get("FASTKONG_STATE_FILE")
    return Path(state).parent if state else None


def _rss() -> int:
    """This process's resident set size in bytes (0 where ``/proc`` is missing)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


#: The metrics of this process (workers only ever use this one).
WORKER: Final = WorkerMetrics()


# -- node side ---------------------------------------------------------------------------------


class NodeMetrics:
    """The sum of the snapshots of a node's workers (one scrape)."""

    __slots__ = (
        "counters", "histograms", "requests", "workers", "dicts", "errors", "timers",
        "stream_listeners",
    )  # fmt: skip

    def __init__(self) -> None:
        self.counters: dict[tuple[str, Labels], float] = {}
        self.histograms: dict[tuple[str, Labels], list[float]] = {}
        self.requests = 0
        #: pid -> (rss, subsystem) of the live workers.
        self.workers: dict[int, tuple[int, str]] = {}
        self.dicts: dict[str, list[int]] = {}
        self.errors = 0
        #: ``[running, pending]`` tasks summed over the live processes.
        self.timers = [0, 0]
        #: ``stream_listen`` listeners served by the live stream processes.
        self.stream_listeners = 0

    def __repr__(self) -> str:
        return (
            f"<NodeMetrics workers={sorted(self.workers)} counters={len(self.counters)} "
            f"histograms={len(self.histograms)} requests={self.requests}>"
        )

    def add(self, snap: Snapshot, live: bool) -> None:
        """Add ``snap``; a live worker also contributes its gauges."""
        self.requests += snap.requests
        counters = self.counters
        for name, labels, value in snap.counters:
            key = (name, tuple(labels))
            counters[key] = counters.get(key, 0) + value
        for name, labels, buckets, total in snap.histograms:
            key = (name, tuple(labels))
            row = self.histograms.get(key)
            if row is None or len(row) != len(buckets) + 1:
                row = self.histograms[key] = [0] * (len(buckets) + 1)
            for i, n in enumerate(buckets):
                row[i] += n
            row[-1] += total
        if live:
            self.workers[snap.pid] = (snap.rss, snap.subsystem)
            self.timers[0] += snap.timers[0]
            self.timers[1] += snap.timers[1]
            self.stream_listeners += snap.stream_listeners
            for name, used, capacity in snap.dicts:
                usage = self.dicts.setdefault(name, [0, 0])
                usage[0] += used
                usage[1] += capacity

    def retired(self) -> Snapshot:
        """The counters only, as ``metrics-retired`` keeps them."""
        return Snapshot(
            pid=0,
            requests=self.requests,
            counters=[(n, labels, v) for (n, labels), v in self.counters.items()],
            histograms=[
                (n, labels, [int(x) for x in row[:-1]], row[-1])
                for (n, labels), row in self.histograms.items()
            ],
        )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read(path: Path) -> Snapshot | None:
    try:
        return _decoder.decode(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, msgspec.DecodeError, msgspec.ValidationError) as exc:
        log.warning("unreadable metrics snapshot %s: %s", path, exc)
        raise


def collect(state_dir: Path) -> NodeMetrics:
    """Sum the snapshots in ``state_dir``; fold dead workers' ones into ``metrics-retired``."""
    node = NodeMetrics()
    retired_path = state_dir / RETIRED
    retired = NodeMetrics()
    try:
        old = _read(retired_path)
    except Exception:
        old, node.errors = None, node.errors + 1
    if old is not None:
        retired.add(old, live=False)
    dead: list[Path] = []
    for entry in sorted(state_dir.glob(f"{PREFIX}*")):
        suffix = entry.name.removeprefix(PREFIX)
        if not suffix.isdigit():
            continue
        try:
            snap = _read(entry)
        except Exception:
            node.errors += 1
            continue
        if snap is None:
            continue
        if _alive(int(suffix)):
            node.add(snap, live=True)
        else:
            retired.add(snap, live=False)
            dead.append(entry)
    if dead:
        tmp = state_dir / f".{RETIRED}.tmp"
        try:
            tmp.write_bytes(_encoder.encode(retired.retired()))
            os.replace(tmp, retired_path)
            for entry in dead:
                entry.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("cannot fold retired worker metrics in %s: %s", state_dir, exc)
    node.add(retired.retired(), live=False)
    return node


def reset_node_metrics(state_dir: Path) -> None:
    """Forget every count in ``state_dir`` (the node starts from zero, as Kong does)."""
    for entry in state_dir.glob(f"{PREFIX}*"):
        entry.unlink(missing_ok=True)
    for entry in state_dir.glob(f".{PREFIX}*"):
        entry.unlink(missing_ok=True)


def node_id_for(state_dir: Path) -> str:
    """The supervisor's node id (``Supervisor.node_id``) for ``state_dir``."""
    return str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{socket.gethostname()}:{state_dir}"))


# -- rendering ---------------------------------------------------------------------------------


def _escape(value: str) -> str:
    if "\\" in value or '"' in value or "\n" in value:
        value = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return value


def _labels(names: Iterable[str], values: Iterable[str]) -> str:
    return ",".join(f'{n}="{_escape(str(v))}"' for n, v in zip(names, values, strict=True))


def _num(value: float) -> str:
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        return str(int(value))
    return repr(value)


def _head(out: list[str], family: Family) -> None:
    out.append(f"# HELP kong_{family.name} {family.help}")
    out.append(f"# TYPE kong_{family.name} {family.kind}")


def _gauge(
    out: list[str],
    name: str,
    help: str,
    rows: Iterable[tuple[tuple[str, ...], tuple[str, ...], float]],
) -> None:
    rows = list(rows)
    if not rows:
        return
    out.append(f"# HELP kong_{name} {help}")
    out.append(f"# TYPE kong_{name} gauge")
    for names, values, value in rows:
        labels = "{" + _labels(names, values) + "}" if names else ""
        out.append(f"kong_{name}{labels} {_num(value)}")


def _prometheus_flags(config: Config | None) -> tuple[bool, bool]:
    """(an enabled prometheus plugin exists, one of them wants upstream health)."""
    if config is None:
        return False, False
    enabled = [p for p in config.plugins if p.name == "prometheus" and p.enabled]
    return bool(enabled), any(p.config.get("upstream_health_metrics") for p in enabled)


def _read_config(state_dir: Path) -> Config | None:
    # Imported here: the plugins import this module while fastkong.config is being initialized.
    from fastkong.control.state import read_state  # noqa: PLC0415

    try:
        return read_state(state_dir / "state")[1]
    except (OSError, ValueError, msgspec.DecodeError, msgspec.ValidationError):
        return None


def render_node_metrics(
    state_dir: Path,
    *,
    config: Config | None = None,
    node_id: str | None = None,
    version: str = __version__,
    target_health: Iterable[HealthRow] | None = None,
) -> str:
    """The node's metrics in Prometheus' text format (``/metrics`` of Kong's prometheus plugin).

    Parameters
    ----------
    state_dir:
        The node's state directory, where workers write ``metrics-<pid>``.
    config:
        The config the node serves (which prometheus plugins are enabled, the upstreams);
        read from the state file in ``state_dir`` when None.
    node_id:
        The node's id (``Supervisor.node_id``); derived the same way when None.
    target_health:
        ``(upstream, target, address, state)`` rows for ``kong_upstream_target_health``
        (:func:`target_health_rows` reads them from the node's health checker); when None,
        every target of the config is reported ``healthchecks_off`` at its own ``host:port``.
        Each row is exported for the ``http`` subsystem, and for ``stream`` too while a live
        stream process serves ``stream_listen`` (Kong: ``#stream_listeners > 0``).
    """
    if config is None:
        config = _read_config(state_dir)
    node_id = node_id or node_id_for(state_dir)
    enabled, upstream_health = _prometheus_flags(config)
    node = collect(state_dir)
    out: list[str] = []
    if enabled:
        for family in WORKER_FAMILIES.values():
            _render_family(out, family, node)
    _gauge(
        out,
        "datastore_reachable",
        "Datastore reachable from Kong, 0 is unreachable",
        [((), (), 1)],
    )
    _gauge(
        out,
        "memory_lua_shared_dict_bytes",
        "Allocated slabs in bytes in a shared_dict",
        [
            (("node_id", "shared_dict", "kong_subsystem"), (node_id, name, SUBSYSTEM), used)
            for name, (used, _) in sorted(node.dicts.items())
        ],
    )
    _gauge(
        out,
        "memory_lua_shared_dict_total_bytes",
        "Total capacity in bytes of a shared_dict",
        [
            (("node_id", "shared_dict", "kong_subsystem"), (node_id, name, SUBSYSTEM), capacity)
            for name, (_, capacity) in sorted(node.dicts.items())
        ],
    )
    _gauge(
        out,
        "memory_workers_lua_vms_bytes",
        "Allocated bytes in worker Lua VM",
        [
            (("node_id", "pid", "kong_subsystem"), (node_id, str(pid), subsystem), rss)
            for pid, (rss, subsystem) in sorted(node.workers.items())
        ],
    )
    if enabled:
        out.append("# HELP kong_nginx_metric_errors_total Number of nginx-lua-prometheus errors")
        out.append("# TYPE kong_nginx_metric_errors_total counter")
        out.append(f"kong_nginx_metric_errors_total {node.errors}")
    _gauge(
        out,
        "nginx_requests_total",
        "Number of requests total",
        [(("node_id", "subsystem"), (node_id, SUBSYSTEM), node.requests)],
    )
    _gauge(
        out,
        "nginx_timers",
        "Number of nginx timers",
        [(("state",), ("pending",), node.timers[1]), (("state",), ("running",), node.timers[0])],
    )
    _gauge(
        out,
        "node_info",
        "Kong Node metadata information",
        [(("node_id", "version"), (node_id, version), 1)],
    )
    if upstream_health and config is not None:
        health = list(target_health if target_health is not None else _targets_unchecked(config))
        # Kong's stream subsystem reports its own balancers' view when stream listeners exist.
        # A fastkong node has one health table, written by the supervisor's prober and read by
        # the HTTP workers and the stream process alike: the stream rows repeat the states.
        subsystems = (SUBSYSTEM, "stream") if node.stream_listeners else (SUBSYSTEM,)
        names = ("upstream", "target", "address", "state", "subsystem")
        _gauge(
            out,
            "upstream_target_health",
            "Health status of targets of upstream. States = healthchecks_off|healthy|unhealthy"
            "|dns_error, value is 1 when state is populated.",
            [
                (names, (upstream, target, address, state, subsystem), float(state == current))
                for subsystem in subsystems
                for upstream, target, address, current in health
                for state in HEALTH_STATES
            ],
        )
    return "\n".join(out) + "\n"


#: Kong's four series per target address, the current state's set to 1.
HEALTH_STATES: Final = ("healthchecks_off", "healthy", "unhealthy", "dns_error")
#: ``(upstream name, target, address, state)``; the address is ``ip:port``, "" on a DNS error.
HealthRow = tuple[str, str, str, str]


def _targets_unchecked(config: Config) -> list[HealthRow]:
    upstreams = {u.id: u.name for u in config.upstreams}
    return [
        (upstreams.get(t.upstream, t.upstream), t.target, t.target, "healthchecks_off")
        for t in sorted(config.targets, key=lambda t: (upstreams.get(t.upstream, ""), t.target))
    ]


def target_health_rows(checker: Any, config: Config) -> list[HealthRow]:
    """Kong's exporter rows from the node's health checker
    (:class:`fastkong.upstreams.checker.ActiveChecker`): one per resolved address of each
    target, with its ``health`` lower-cased; a target without addresses is ``dns_error``."""
    targets: dict[str, list[Any]] = {}
    for t in config.targets:
        targets.setdefault(t.upstream, []).append(t)
    rows: list[HealthRow] = []
    for u in sorted(config.upstreams, key=lambda u: u.name):
        check = checker.checks.get(u.id)
        for t in sorted(targets.get(u.id, []), key=lambda t: t.target):
            status = checker.target_status(check, t) if check is not None else None
            addresses = status["addresses"] if status else []
            if not addresses:
                rows.append((u.name, t.target, "", "dns_error"))
            for a in addresses:
                rows.append((u.name, t.target, f"{a['ip']}:{a['port']}", str(a["health"]).lower()))
    return rows


def _render_family(out: list[str], family: Family, node: NodeMetrics) -> None:
    if family.kind == "histogram":
        rows = sorted((k[1], v) for k, v in node.histograms.items() if k[0] == family.name)
        if not rows:
            return
        _head(out, family)
        name = f"kong_{family.name}"
        edges = [str(b) for b in family.buckets] + ["+Inf"]
        for labels, row in rows:
            base = _labels(family.labels, labels)
            sep = "," if base else ""
            cumulative = 0.0
            for edge, n in zip(edges, row[:-1], strict=False):
                cumulative += n
                out.append(f'{name}_bucket{{{base}{sep}le="{edge}"}} {_num(cumulative)}')
            out.append(f"{name}_count{{{base}}} {_num(cumulative)}")
            out.append(f"{name}_sum{{{base}}} {_num(row[-1])}")
        return
    counter_rows = sorted((k[1], v) for k, v in node.counters.items() if k[0] == family.name)
    if not counter_rows:
        return
    _head(out, family)
    for labels, value in counter_rows:
        out.append(f"kong_{family.name}{{{_labels(family.labels, labels)}}} {_num(value)}")


__all__ = [
    "FLUSH_INTERVAL",
    "WORKER",
    "Family",
    "NodeMetrics",
    "Snapshot",
    "WorkerMetrics",
    "collect",
    "render_node_metrics",
    "reset_node_metrics",
    "target_health_rows",
]
