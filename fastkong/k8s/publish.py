"""Where a translated config goes: the ConfigMap the data plane mounts, and/or each gateway.

**ConfigMap** (:class:`ConfigMapPublisher`): a merge patch of ``data[kong.yml]`` (created
when absent). Every node's kubelet swaps the mounted file within about a minute and fastkong
re-reads it; this also configures gateways that start while no controller runs. Limited to
1 MiB.

**Push** (:class:`GatewayPublisher`, KIC's gateway discovery, kong.md 6.4): the ready,
non-terminating endpoints of the headless admin Service's EndpointSlices
(:func:`discover_gateways`) each get ``POST /config?check_hash=1&flatten_errors=1``. The body is
``{"config": "<the YAML>"}``, the same text as the ConfigMap, so a fastkong gateway reports
the same ``configuration_hash`` whichever way the config reached it.

A gateway is pushed a config once. After the push its ``/status`` ``configuration_hash`` is
remembered; :meth:`GatewayPublisher.check` polls it, and a gateway whose hash has changed
(it restarted empty: all zeros; or it loaded something else) is pushed again, even though
the config itself has not changed (Kong/kong#8152, KIC#2107). A 400 (config rejected) is not
retried until the config changes; its ``flattened_errors`` become problems on the objects
named by the entities' ``k8s-*`` tags.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import aiohttp
from kubernetes.aio.client import CoreV1Api, V1ConfigMap, V1ObjectMeta
from kubernetes.aio.client.exceptions import ApiException

from fastkong.k8s.objects import SERVICE_NAME_LABEL, ObjectRef, Problem
from fastkong.k8s.store import Store

log = logging.getLogger("fastkong.k8s.publish")

EMPTY_HASH: Final = "0" * 32
#: A ConfigMap's data is limited to 1 MiB in all (keys and metadata share it).
CONFIGMAP_LIMIT: Final = 1024 * 1024 - 4096
HASH_ANNOTATION: Final = "fastkong.io/config-hash"
CONFIG_QUERY: Final = "check_hash=1&flatten_errors=1"


class PublishError(Exception):
    """A config could not be delivered; ``retry`` tells whether trying again may help."""

    def __init__(self, message: str, *, retry: bool = True) -> None:
        super().__init__(message)
        self.retry = retry


# -- ConfigMap -------------------------------------------------------------------------------


class ConfigMapPublisher:
    """Writes the config into ``namespace/name`` under ``key``; skips an unchanged hash."""

    def __init__(self, core: CoreV1Api, namespace: str, name: str, key: str = "kong.yml") -> None:
        self.core = core
        self.namespace = namespace
        self.name = name
        self.key = key
        #: The hash of the config last written (or found already there).
        self.published: str | None = None
        self.writes = 0

    def __repr__(self) -> str:
        return (
            f"<ConfigMapPublisher {self.namespace}/{self.name}[{self.key}] "
            f"hash={self.published or '-'} writes={self.writes}>"
        )

    async def publish(self, text: str, digest: str) -> bool:
        """Write ``text`` unless ``digest`` is what was last written; True when written."""
        if digest == self.published:
            return False
        size = len(text.encode())
        if size > CONFIGMAP_LIMIT:
            raise PublishError(
                f"the config is {size} bytes; a ConfigMap holds at most 1 MiB", retry=False
            )
        patch = {
            "metadata": {"annotations": {HASH_ANNOTATION: digest}},
            "data": {self.key: text},
        }
        try:
            await self.core.patch_namespaced_config_map(
                self.name, self.namespace, patch, _content_type="application/merge-patch+json"
            )
        except ApiException as exc:
            if exc.status != 404:
                raise PublishError(f"ConfigMap {self.namespace}/{self.name}: {exc.status}") from exc
            await self._create(text, digest)
        self.published = digest
        self.writes += 1
        log.info("ConfigMap %s/%s: wrote config %s", self.namespace, self.name, digest)
        return True

    async def _create(self, text: str, digest: str) -> None:
        body = V1ConfigMap(
            metadata=V1ObjectMeta(
                name=self.name,
                namespace=self.namespace,
                labels={"app.kubernetes.io/name": "fastkong"},
                annotations={HASH_ANNOTATION: digest},
            ),
            data={self.key: text},
        )
        try:
            await self.core.create_namespaced_config_map(self.namespace, body)
        except ApiException as exc:
            raise PublishError(f"ConfigMap {self.namespace}/{self.name}: {exc.status}") from exc

    def forget(self) -> None:
        """Write again at the next publish (a new leader does not trust the old one's work)."""
        self.published = None


# -- gateways --------------------------------------------------------------------------------


@dataclass(frozen=True, order=True, slots=True)
class Gateway:
    """One data-plane pod's admin API."""

    address: str
    port: int
    pod: str = ""

    def __str__(self) -> str:
        return f"{self.pod or self.address}@{self.url}"

    @property
    def url(self) -> str:
        host = self.address
        try:
            if ipaddress.ip_address(host).version == 6:
                host = f"[{host}]"
        except ValueError:
            pass
        return f"http://{host}:{self.port}"


def discover_gateways(
    store: Store, namespace: str, service: str, port_name: str = "admin"
) -> list[Gateway]:
    """The pushable endpoints of ``namespace/service``: in a slice labelled with the Service's
    name, on the port named ``port_name``, not terminating, ``ready`` not false (a headless
    Service with ``publishNotReadyAddresses`` marks pods ready before they have a config,
    which is when they need one), and not a non-Pod target."""
    found: set[Gateway] = set()
    for eps in store.objects("EndpointSlice"):
        meta = eps.get("metadata") or {}
        if meta.get("namespace") != namespace:
            continue
        if (meta.get("labels") or {}).get(SERVICE_NAME_LABEL) != service:
            continue
        ports = [p for p in eps.get("ports") or [] if isinstance(p, Mapping)]
        port = next((p.get("port") for p in ports if (p.get("name") or "") == port_name), None)
        if not isinstance(port, int):
            continue
        for endpoint in eps.get("endpoints") or []:
            if not isinstance(endpoint, Mapping):
                continue
            conditions = endpoint.get("conditions") or {}
            if conditions.get("terminating") is True or conditions.get("ready") is False:
                continue
            ref = endpoint.get("targetRef") or {}
            if ref and ref.get("kind") != "Pod":
                continue
            addresses = endpoint.get("addresses") or []
            if addresses:
                found.add(Gateway(str(addresses[0]), port, str(ref.get("name") or "")))
    return sorted(found)


@dataclass(slots=True)
class GatewayState:
    """What we know of one gateway."""

    #: Hash of the config it last accepted (or rejected) from us.
    pushed: str | None = None
    #: Its ``configuration_hash`` right after that push.
    reported: str | None = None
    rejected: bool = False
    failures: int = 0
    retry_at: float = 0.0
    error: str = ""


@dataclass(slots=True)
class PushResult:
    gateway: Gateway
    status: int  # HTTP status; 0 when it could not be reached
    problems: list[Problem] = field(default_factory=list)
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status in (200, 201, 204, 304)


class GatewayPublisher:
    """Pushes configs to gateways over their admin API (see the module docstring)."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        token: str | None = None,
        timeout: float = 30.0,
        concurrency: int = 10,
        retry_initial: float = 1.0,
        retry_cap: float = 30.0,
    ) -> None:
        self.session = session
        self.token = token
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.limit = asyncio.Semaphore(concurrency)
        self.retry_initial = retry_initial
        self.retry_cap = retry_cap
        self.states: dict[Gateway, GatewayState] = {}
        self.pushes = 0

    def __repr__(self) -> str:
        done = sum(1 for s in self.states.values() if s.pushed and not s.rejected)
        return f"<GatewayPublisher gateways={len(self.states)} in_step={done} pushes={self.pushes}>"

    def forget(self) -> None:
        self.states.clear()

    def needs_push(self, gateways: Iterable[Gateway], digest: str) -> list[Gateway]:
        now = time.monotonic()
        out = []
        for gw in gateways:
            state = self.states.setdefault(gw, GatewayState())
            if state.pushed != digest and now >= state.retry_at:
                out.append(gw)
        return out

    def next_retry(self) -> float | None:
        """When the earliest failed gateway may be tried again (monotonic), if any."""
        times = [s.retry_at for s in self.states.values() if s.failures]
        return min(times) if times else None

    async def publish(self, gateways: list[Gateway], text: str, digest: str) -> list[PushResult]:
        """Push to every gateway that does not have ``digest`` yet; forget vanished ones."""
        for gone in set(self.states) - set(gateways):
            del self.states[gone]
        targets = self.needs_push(gateways, digest)
        if not targets:
            return []
        body = json.dumps({"config": text}).encode()
        return list(await asyncio.gather(*(self._push(gw, body, digest) for gw in targets)))

    async def _push(self, gw: Gateway, body: bytes, digest: str) -> PushResult:
        state = self.states.setdefault(gw, GatewayState())
        headers = {"Content-Type": "application/json", **self._auth()}
        async with self.limit:
            try:
                async with self.session.post(
                    f"{gw.url}/config?{CONFIG_QUERY}",
                    data=body,
                    headers=headers,
                    timeout=self.timeout,
                ) as resp:
                    status, payload = resp.status, await resp.read()
                reported = await self._status_hash(gw) if status < 300 else None
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                return self._failed(gw, state, 0, f"{type(exc).__name__}: {exc}")
        self.pushes += 1
        result = PushResult(gw, status)
        if status in (200, 201, 204, 304):
            state.pushed, state.reported, state.rejected = digest, reported, False
            state.failures, state.error = 0, ""
            log.info("gateway %s: config %s (%d)", gw, digest, status)
        elif status == 400:
            state.pushed, state.rejected, state.failures = digest, True, 0
            state.error = _message(payload)
            result.problems = flattened_problems(payload, gw)
            result.error = state.error
            log.error("gateway %s rejected config %s: %s", gw, digest, state.error)
        else:
            return self._failed(gw, state, status, _message(payload))
        return result

    def _failed(self, gw: Gateway, state: GatewayState, status: int, error: str) -> PushResult:
        delay = min(self.retry_cap, self.retry_initial * 2**state.failures)
        state.failures += 1
        state.retry_at = time.monotonic() + delay
        state.error = error
        log.warning("gateway %s: push failed (%s %s); retry in %.1fs", gw, status, error, delay)
        return PushResult(gw, status, error=error)

    async def _status_hash(self, gw: Gateway) -> str | None:
        try:
            async with self.session.get(
                f"{gw.url}/status", headers=self._auth(), timeout=self.timeout
            ) as resp:
                if resp.status != 200:
                    return None
                body = await resp.json(content_type=None)
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError):
            return None
        value = body.get("configuration_hash") if isinstance(body, dict) else None
        return str(value) if value else None

    async def check(self) -> list[Gateway]:
        """Poll every gateway that has our config; those whose hash changed since the push
        (restarted empty, or loaded something else) are marked for a re-push and returned."""
        known = [(gw, s) for gw, s in self.states.items() if s.pushed and not s.rejected]
        hashes = await asyncio.gather(*(self._status_hash(gw) for gw, _ in known))
        stale = []
        for (gw, state), current in zip(known, hashes, strict=True):
            if current is None or current == state.reported:
                continue
            why = "restarted empty" if current == EMPTY_HASH else f"now has {current}"
            log.warning("gateway %s %s (had %s); pushing again", gw, why, state.reported)
            state.pushed = state.reported = None
            stale.append(gw)
        return stale

    def _auth(self) -> dict[str, str]:
        return {"Kong-Admin-Token": self.token} if self.token else {}


def _message(payload: bytes) -> str:
    try:
        body = json.loads(payload)
    except ValueError:
        return payload[:200].decode("utf-8", "replace")
    if isinstance(body, dict) and "message" in body:
        return str(body["message"])[:500]
    return payload[:200].decode("utf-8", "replace")


def flattened_problems(payload: bytes, gw: Gateway) -> list[Problem]:
    """Kong's ``flattened_errors`` -> problems on the objects the entities' tags name."""
    try:
        body = json.loads(payload)
    except ValueError:
        return []
    out: list[Problem] = []
    for entity in (body.get("flattened_errors") if isinstance(body, dict) else None) or []:
        if not isinstance(entity, Mapping):
            continue
        tags = _tag_map(entity.get("entity_tags") or [])
        if "k8s-kind" not in tags or "k8s-name" not in tags:
            continue
        ref = ObjectRef(tags["k8s-kind"], tags.get("k8s-namespace", ""), tags["k8s-name"])
        what = f"{entity.get('entity_type', 'entity')} {entity.get('entity_name') or ''}".strip()
        for err in entity.get("errors") or []:
            if isinstance(err, Mapping):
                where = f"{err['field']}: " if err.get("field") else ""
                message = f"gateway {gw} rejected {what}: {where}{err.get('message', '')}"
                out.append(Problem(ref, message))
    return out


def _tag_map(tags: Iterable[Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for tag in tags:
        key, sep, value = str(tag).partition(":")
        if sep and key.startswith("k8s-"):
            out.setdefault(key, value)
    return out
