"""Helpers for the controller tests: object builders, a client and a controller pointed at the
fake API server, a kubelet that projects a ConfigMap into a volume, and polling."""

from __future__ import annotations

import asyncio
import base64
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from kubernetes.aio.client import ApiClient, Configuration

from fastkong.k8s.controller import Controller, ControllerOptions
from tests.k8s.fake_apiserver import FakeApiServer

NS = "fastkong"  # the controller's namespace
FAST = ControllerOptions(
    namespace=NS,
    pod_name="controller-0",
    debounce=0.05,
    watch_timeout=5.0,
    resync=600.0,
    backoff_initial=0.05,
    backoff_cap=0.5,
    gateway_check_interval=0.2,
    push_timeout=5.0,
    health_listen="127.0.0.1:0",
    leader_election=False,
    lease_duration=1.5,
    renew_deadline=1.0,
    retry_period=0.2,
)


async def eventually(
    check: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02, what: str = ""
) -> Any:
    """Poll ``check`` (sync or async) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if isinstance(last, Awaitable):
            last = await last
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"not true after {timeout}s: {what or check} (last: {last!r})")


@asynccontextmanager
async def client(api: FakeApiServer) -> AsyncIterator[ApiClient]:
    async with ApiClient(Configuration(host=api.url)) as c:
        yield c


@asynccontextmanager
async def controller(api: FakeApiServer, **options: Any) -> AsyncIterator[Controller]:
    async with client(api) as c:
        ctl = Controller(c, replace(FAST, **options))
        await ctl.start()
        try:
            yield ctl
        finally:
            await ctl.stop()


# -- objects ---------------------------------------------------------------------------------


def ingress(
    name: str, path: str, service: str, port: int = 80, ns: str = "default", cls: str = "fastkong"
) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "ingressClassName": cls,
            "rules": [
                {
                    "http": {
                        "paths": [
                            {
                                "path": path,
                                "pathType": "Prefix",
                                "backend": {"service": {"name": service, "port": {"number": port}}},
                            }
                        ]
                    }
                }
            ],
        },
    }


def service(name: str, port: int = 80, ns: str = "default", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"ports": [{"port": port, "protocol": "TCP"}], **spec},
    }


def endpoint_slice(
    name: str,
    service_name: str,
    address: str,
    port: int,
    ns: str = "default",
    port_name: str = "",
    pod: str | None = None,
    ready: bool = True,
    terminating: bool = False,
) -> dict[str, Any]:
    endpoint: dict[str, Any] = {
        "addresses": [address],
        "conditions": {"ready": ready, "serving": ready, "terminating": terminating},
    }
    if pod:
        endpoint["targetRef"] = {"kind": "Pod", "namespace": ns, "name": pod}
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": {"kubernetes.io/service-name": service_name},
        },
        "addressType": "IPv4",
        "endpoints": [endpoint],
        "ports": [{"name": port_name, "port": port, "protocol": "TCP"}],
    }


def backend(api: FakeApiServer, name: str, port: int, ns: str = "default") -> None:
    """A Service ``name`` (port 80) whose one endpoint is ``127.0.0.1:port``."""
    api.create(service(name, 80, ns))
    api.create(endpoint_slice(f"{name}-abc", name, "127.0.0.1", port, ns))


def configmap(name: str, text: str, ns: str = NS) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": ns},
        "data": {"kong.yml": text},
    }


# -- kubelet ---------------------------------------------------------------------------------


class Kubelet:
    """Projects a ConfigMap of the fake API server into a directory as kubelet's AtomicWriter
    does: a new ``..<timestamp>`` directory, a ``..data_tmp`` link renamed over ``..data``,
    ``kong.yml -> ..data/kong.yml`` created once, the old directory removed."""

    def __init__(self, api: FakeApiServer, root: Path, name: str, ns: str = NS) -> None:
        self.api = api
        self.root = root
        self.name = name
        self.ns = ns
        self.rv = ""
        self.swaps = 0
        self._task: asyncio.Task[None] | None = None
        root.mkdir(parents=True, exist_ok=True)

    @property
    def path(self) -> Path:
        return self.root / "kong.yml"

    def sync(self) -> bool:
        cm = self.api.get("ConfigMap", self.ns, self.name)
        if cm is None or cm["metadata"]["resourceVersion"] == self.rv:
            return False
        self.rv = cm["metadata"]["resourceVersion"]
        self.write((cm.get("data") or {}).get("kong.yml", ""))
        return True

    def write(self, text: str) -> None:
        self.swaps += 1
        old = os.readlink(self.root / "..data") if (self.root / "..data").is_symlink() else None
        version = self.root / f"..2026_11_25_00_00_00.{self.swaps:09d}"
        version.mkdir()
        (version / "kong.yml").write_text(text)
        tmp = self.root / "..data_tmp"
        tmp.symlink_to(version.name)
        os.replace(tmp, self.root / "..data")
        if not self.path.is_symlink():
            self.path.symlink_to("..data/kong.yml")
        if old:
            (self.root / old / "kong.yml").unlink()
            (self.root / old).rmdir()

    async def _run(self, period: float) -> None:
        while True:
            self.sync()
            await asyncio.sleep(period)

    def start(self, period: float = 0.05) -> Kubelet:
        self.sync()
        self._task = asyncio.create_task(self._run(period))
        return self

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


# -- Gateway API -----------------------------------------------------------------------------

GATEWAY_API = "gateway.networking.k8s.io/v1"
CONTROLLER = "fastkong.io/gateway-controller"


def gateway_class(name: str = "fastkong", controller: str = CONTROLLER) -> dict[str, Any]:
    return {
        "apiVersion": GATEWAY_API,
        "kind": "GatewayClass",
        "metadata": {"name": name},
        "spec": {"controllerName": controller},
    }


def listener(
    name: str = "http", protocol: str = "HTTP", port: int = 80, **extra: Any
) -> dict[str, Any]:
    return {"name": name, "protocol": protocol, "port": port, **extra}


def gateway(
    name: str = "main",
    *listeners: dict[str, Any],
    ns: str = "default",
    cls: str = "fastkong",
) -> dict[str, Any]:
    return {
        "apiVersion": GATEWAY_API,
        "kind": "Gateway",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"gatewayClassName": cls, "listeners": list(listeners) or [listener()]},
    }


def httproute(
    name: str = "r",
    *rules: dict[str, Any],
    ns: str = "default",
    parents: list[dict[str, Any]] | None = None,
    hostnames: list[str] | None = None,
    **meta: Any,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"parentRefs": parents if parents is not None else [{"name": "main"}]}
    if hostnames is not None:
        spec["hostnames"] = hostnames
    spec["rules"] = list(rules) or [rule("/", backend_ref("echo"))]
    return {
        "apiVersion": GATEWAY_API,
        "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": ns, **meta},
        "spec": spec,
    }


def rule(
    path: str | None = "/",
    *backends: dict[str, Any],
    kind: str = "PathPrefix",
    filters: list[dict[str, Any]] | None = None,
    **match: Any,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if path is not None:
        out["matches"] = [{"path": {"type": kind, "value": path}, **match}]
    if backends:
        out["backendRefs"] = list(backends)
    if filters:
        out["filters"] = filters
    return out


def backend_ref(name: str, port: int = 80, **extra: Any) -> dict[str, Any]:
    return {"name": name, "port": port, **extra}


def tls_secret(name: str, cert: str, key: str, ns: str = "default") -> dict[str, Any]:
    """A ``kubernetes.io/tls`` Secret holding ``cert`` and ``key`` (PEM)."""
    data = {"tls.crt": cert, "tls.key": key}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {"name": name, "namespace": ns},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def tcp_ingress(
    name: str, *rules: dict[str, Any], cls: str = "fastkong", kind: str = "TCPIngress", **spec: Any
) -> Any:
    """KIC's TCPIngress (or ``kind="UDPIngress"``) in ``default``, of class ``cls`` (by
    annotation, as KIC reads it)."""
    return {
        "apiVersion": "configuration.konghq.com/v1beta1",
        "kind": kind,
        "metadata": {
            "name": name,
            "namespace": "default",
            "annotations": {"kubernetes.io/ingress.class": cls},
        },
        "spec": {"rules": list(rules), **spec},
    }


def tcp_rule(port: int, service: str, service_port: int = 80, **extra: Any) -> dict[str, Any]:
    return {"port": port, "backend": {"serviceName": service, "servicePort": service_port}, **extra}
