"""Loopback peers and gateway starts shared by the Kong tracing spec ports
(``test_kong_opentelemetry_spec*.py``, ``test_kong_zipkin_spec.py``).

* :class:`OtlpCollector`: an OTLP/HTTP collector (Kong's ``helpers.http_mock``) that keeps every
  POST, decoded with the reference ``opentelemetry-proto`` definitions;
* :class:`ZipkinCollector`: a Zipkin server's ``POST /api/v2/spans`` as the specs read it back
  (``/api/v2/trace/<id>``): span names and service names lower-cased and trace ids with zero
  high bits cut to 64 bits, as Zipkin stores them; ``/delay...`` answers after a second;
* :class:`BlackHole`: a listener whose accept queue is full, so a connect to it times out;
* :func:`start_gateways`: several gateways, each with its own environment (Kong's
  ``tracing_*`` settings), spawned together and then awaited.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.helpers import ROOT, Gateway, LoopServer, eventually, free_port, read_request, wait_port


@dataclass
class Export:
    target: str
    headers: dict[str, str]
    body: bytes

    def request(self) -> ExportTraceServiceRequest:
        request: ExportTraceServiceRequest = ExportTraceServiceRequest.FromString(self.body)
        return request

    def spans(self) -> list[Any]:
        request = self.request()
        return [s for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]


class OtlpCollector(LoopServer):
    """An OTLP/HTTP collector on loopback (TLS with ``ssl``): keeps every POST (target,
    lower-cased headers, body) and answers 200."""

    def __init__(self, ssl: Any = None) -> None:
        super().__init__(ssl)
        self.exports: list[Export] = []

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request = await read_request(reader)
                self.exports.append(Export(request.target, request.lowered, request.body))
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    def received(self, target: str | None) -> list[Export]:
        return [e for e in list(self.exports) if target is None or e.target == target]

    def spans(
        self, target: str | None = None, trace_id: str | None = None
    ) -> list[tuple[Export, Any]]:
        """The spans posted (to ``target``; of ``trace_id``, hex, when given)."""
        return [
            (export, span)
            for export in self.received(target)
            for span in export.spans()
            if trace_id is None or span.trace_id.hex() == trace_id
        ]

    def wait_spans(
        self, target: str | None, trace_id: str, count: int = 1, timeout: float = 10.0
    ) -> list[tuple[Export, Any]]:
        eventually(lambda: len(self.spans(target, trace_id)) >= count, timeout)
        return self.spans(target, trace_id)

    def wait_span(self, trace_id: str, timeout: float = 10.0) -> tuple[Export, Any]:
        """The first span of ``trace_id`` posted anywhere, once it arrived."""
        return self.wait_spans(None, trace_id, 1, timeout)[0]


def zipkin_id(trace_id: str) -> str:
    """A trace id as Zipkin keeps it: lower-case, 128-bit ids with zero high bits as 64-bit."""
    trace_id = trace_id.lower()
    if len(trace_id) == 32 and trace_id[:16] == "0" * 16:
        return trace_id[16:]
    return trace_id


def _zipkin_span(span: dict[str, Any]) -> dict[str, Any]:
    span = dict(span)
    span["traceId"] = zipkin_id(span["traceId"])
    span["name"] = span["name"].lower()
    for key in ("localEndpoint", "remoteEndpoint"):
        if isinstance(span.get(key), dict) and "serviceName" in span[key]:
            span[key] = {**span[key], "serviceName": span[key]["serviceName"].lower()}
    return span


class ZipkinCollector(LoopServer):
    """See the module docstring; answers 202 (``/delay...``: after a second)."""

    def __init__(self) -> None:
        super().__init__()
        self.stored: list[dict[str, Any]] = []

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request = await read_request(reader)
                if request.target.startswith("/delay"):
                    await asyncio.sleep(1)
                else:
                    self.stored.extend(_zipkin_span(s) for s in json.loads(request.body))
                writer.write(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    def trace(self, trace_id: str) -> list[dict[str, Any]]:
        """Zipkin's ``GET /api/v2/trace/<trace_id>``."""
        wanted = zipkin_id(trace_id)
        return [span for span in list(self.stored) if span["traceId"] == wanted]

    def wait_for_spans(self, count: int, trace_id: str, timeout: float = 10.0) -> list[Any]:
        """Kong's ``wait_for_spans``: the trace once it holds ``count`` spans (or what arrived
        when the time is up, for the assertions to tell)."""
        try:
            eventually(lambda: len(self.trace(trace_id)) >= count, timeout)
        except AssertionError:
            pass
        return self.trace(trace_id)


class BlackHole:
    """A loopback listener with a full accept queue: the kernel drops new SYNs, so a connect
    to :attr:`port` waits until the client's connect timeout."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(0)
        self.port = self.listener.getsockname()[1]
        self.fillers: list[socket.socket] = []
        for _ in range(4):  # the queue holds backlog + 1; more attempts just hang
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", self.port))
            self.fillers.append(filler)

    def close(self) -> None:
        for sock in [*self.fillers, self.listener]:
            sock.close()


@dataclass
class GatewaySpec:
    """One gateway to start: its config text, extra environment, and whether its stderr is
    kept in a file (``Gateway.stderr_path``)."""

    config: str
    env: dict[str, str] = field(default_factory=dict)
    keep_stderr: bool = False
    #: The proxy port, when the config must name it (a service pointing back at the gateway).
    port: int | None = None


def start_gateways(specs: list[GatewaySpec], workdir: Path) -> list[Gateway]:
    """Spawn a gateway per spec, all at once, then wait for each; the caller stops them."""
    gateways: list[Gateway] = []
    try:
        for index, spec in enumerate(specs):
            directory = workdir / f"gateway-{index}"
            directory.mkdir(parents=True, exist_ok=True)
            gateway = Gateway(directory, spec.config)
            if spec.port is not None:
                gateway.port = spec.port
            stderr = None
            if spec.keep_stderr:
                gateway.stderr_path = directory / "stderr.log"
                stderr = gateway.stderr_path.open("ab")
            gateway.proc = subprocess.Popen(
                gateway.command(), cwd=ROOT, env={**os.environ, **spec.env}, stderr=stderr
            )
            if stderr is not None:
                stderr.close()
            gateways.append(gateway)
        for gateway in gateways:
            assert gateway.proc is not None
            wait_port(gateway.status_port, timeout=60, proc=gateway.proc)
            wait_port(gateway.port, timeout=60, proc=gateway.proc)
            gateway.wait_ready(60)
    except BaseException:
        for gateway in gateways:
            gateway.stop()
        raise
    return gateways


def stderr_of(gateway: Gateway) -> str:
    assert gateway.stderr_path is not None
    return gateway.stderr_path.read_text(errors="replace")


def dead_port() -> int:
    """A loopback port nothing listens on (connection refused)."""
    return free_port()


def settle(seconds: float = 0.3) -> None:
    """A short pause after a marker arrived, for a queue that would have coalesced."""
    time.sleep(seconds)


__all__ = [
    "BlackHole",
    "Export",
    "GatewaySpec",
    "OtlpCollector",
    "ZipkinCollector",
    "dead_port",
    "settle",
    "start_gateways",
    "stderr_of",
    "zipkin_id",
]
