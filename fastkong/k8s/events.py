"""What the controller tells users through the API: Events and Ingress status.

:class:`EventRecorder` turns translation problems (and gateways' rejections) into ``core/v1``
Events on the objects they are about, as ``kubectl describe`` shows them. Like client-go's
event correlator it does not flood: a problem gets one Event when it appears; while it
persists the Event's ``count`` and ``lastTimestamp`` are bumped at most every ``refresh``
seconds; a problem that went away and comes back gets a new Event.

:class:`IngressStatusUpdater` sets ``status.loadBalancer.ingress`` of our Ingresses, TCPIngresses
and UDPIngresses to the proxy Service's addresses (KIC's ``--publish-service`` and
``UpdateLoadBalancerIngress``), only when it differs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from kubernetes.aio.client import (
    CoreV1Api,
    CoreV1Event,
    CustomObjectsApi,
    NetworkingV1Api,
    V1EventSource,
    V1ObjectMeta,
    V1ObjectReference,
)
from kubernetes.aio.client.exceptions import ApiException

from fastkong.k8s.objects import CLUSTER_SCOPED, ObjectRef, Problem
from fastkong.k8s.store import Obj, Store

log = logging.getLogger("fastkong.k8s.events")

#: KIC's reasons, so dashboards and alerts written for KIC keep working.
REASON_TRANSLATION: Final = "KongConfigurationTranslationFailed"
REASON_APPLY: Final = "KongConfigurationApplyFailed"
COMPONENT: Final = "fastkong-ingress-controller"


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


@dataclass(slots=True)
class _Emitted:
    namespace: str
    name: str
    count: int
    at: float


class EventRecorder:
    """Problems -> Events (see the module docstring)."""

    def __init__(
        self,
        core: CoreV1Api,
        store: Store,
        *,
        instance: str = "",
        refresh: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.core = core
        self.store = store
        self.instance = instance
        self.refresh = refresh
        self.clock = clock
        self._emitted: dict[tuple[ObjectRef, str, str], _Emitted] = {}
        self.created = 0
        self.updated = 0

    def __repr__(self) -> str:
        return (
            f"<EventRecorder open={len(self._emitted)} created={self.created} "
            f"updated={self.updated}>"
        )

    async def record(self, problems: Iterable[Problem], reason: str) -> None:
        """Report the current ``problems`` for ``reason``; problems of that reason that are no
        longer in the list are forgotten (they get a new Event if they come back)."""
        current = {(p.ref, reason, p.message): p for p in problems}
        for key in [k for k in self._emitted if k[1] == reason and k not in current]:
            del self._emitted[key]
        now = self.clock()
        for key, problem in sorted(current.items()):
            seen = self._emitted.get(key)
            if seen is not None and now - seen.at < self.refresh:
                continue
            try:
                if seen is not None and await self._bump(seen):
                    seen.at = now
                    continue
                self._emitted[key] = await self._create(problem, reason, now)
            except ApiException as exc:
                log.warning("event for %s: %s %s", problem.ref, exc.status, exc.reason)
            except (OSError, TimeoutError) as exc:
                log.warning("event for %s: %s", problem.ref, exc)

    async def _create(self, problem: Problem, reason: str, now: float) -> _Emitted:
        ref = problem.ref
        obj = self._find(ref)
        meta: Mapping[str, Any] = (obj or {}).get("metadata") or {}
        namespace = ref.namespace or "default"
        stamp = _now()
        event = CoreV1Event(
            metadata=V1ObjectMeta(name=f"{ref.name}.{time.time_ns():x}", namespace=namespace),
            involved_object=V1ObjectReference(
                kind=ref.kind,
                namespace=ref.namespace or None,
                name=ref.name,
                uid=meta.get("uid"),
                api_version=(obj or {}).get("apiVersion"),
                resource_version=meta.get("resourceVersion"),
            ),
            reason=reason,
            message=problem.message[:1024],
            type="Warning",
            source=V1EventSource(component=COMPONENT, host=self.instance or None),
            reporting_component=COMPONENT,
            reporting_instance=self.instance or None,
            first_timestamp=stamp,
            last_timestamp=stamp,
            count=1,
        )
        created = await self.core.create_namespaced_event(namespace, event)
        self.created += 1
        name = created.metadata.name if created.metadata and created.metadata.name else ""
        return _Emitted(namespace, name, 1, now)

    async def _bump(self, seen: _Emitted) -> bool:
        patch = {"count": seen.count + 1, "lastTimestamp": _now().strftime("%Y-%m-%dT%H:%M:%SZ")}
        try:
            await self.core.patch_namespaced_event(
                seen.name, seen.namespace, patch, _content_type="application/merge-patch+json"
            )
        except ApiException as exc:
            if exc.status == 404:  # Events expire (1 h by default): create a new one
                return False
            raise
        seen.count += 1
        self.updated += 1
        return True

    def _find(self, ref: ObjectRef) -> Obj | None:
        namespace = "" if ref.kind in CLUSTER_SCOPED else ref.namespace
        return self.store.get(ref.kind, namespace, ref.name)


def proxy_addresses(store: Store, namespace: str, name: str) -> list[dict[str, str]]:
    """``status.loadBalancer.ingress`` for our Ingresses: the proxy Service's load-balancer
    addresses, else its external IPs, else its cluster IP."""
    svc = store.get("Service", namespace, name)
    if svc is None:
        return []
    lb = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    out = [
        {k: str(v) for k, v in entry.items() if k in ("ip", "hostname") and v}
        for entry in lb
        if isinstance(entry, Mapping)
    ]
    out = [entry for entry in out if entry]
    if out:
        return out
    spec = svc.get("spec") or {}
    if spec.get("externalIPs"):
        return [{"ip": str(ip)} for ip in spec["externalIPs"]]
    cluster_ip = spec.get("clusterIP")
    if cluster_ip and cluster_ip != "None":
        return [{"ip": str(cluster_ip)}]
    return []


#: KIC's stream ingresses, whose status (``status.loadBalancer``) is an Ingress's:
#: kind -> (group, version, plural).
STREAM_INGRESSES: Final[Mapping[str, tuple[str, str, str]]] = {
    "TCPIngress": ("configuration.konghq.com", "v1beta1", "tcpingresses"),
    "UDPIngress": ("configuration.konghq.com", "v1beta1", "udpingresses"),
}


class IngressStatusUpdater:
    """Keeps ``status.loadBalancer.ingress`` of our Ingresses (and TCPIngresses and
    UDPIngresses) equal to the proxy's addresses."""

    def __init__(
        self,
        networking: NetworkingV1Api,
        store: Store,
        namespace: str,
        service: str,
        custom: CustomObjectsApi | None = None,
    ):
        self.networking = networking
        self.custom = custom
        self.store = store
        self.namespace = namespace
        self.service = service
        self.updates = 0

    def __repr__(self) -> str:
        return f"<IngressStatusUpdater {self.namespace}/{self.service} updates={self.updates}>"

    async def update(self, ingresses: Iterable[Obj]) -> int:
        """Patch every Ingress whose status differs; returns how many were patched. Nothing
        is cleared while the proxy Service (or its address) is unknown."""
        want = proxy_addresses(self.store, self.namespace, self.service)
        if not want:
            return 0
        patched = 0
        for ingress in ingresses:
            status = ((ingress.get("status") or {}).get("loadBalancer") or {}).get("ingress")
            if (status or []) == want:
                continue
            meta = ingress.get("metadata") or {}
            kind = str(ingress.get("kind") or "Ingress")
            name, namespace = str(meta.get("name")), str(meta.get("namespace"))
            body = {"status": {"loadBalancer": {"ingress": want}}}
            merge = "application/merge-patch+json"
            try:
                if kind in STREAM_INGRESSES and self.custom is not None:
                    group, version, plural = STREAM_INGRESSES[kind]
                    await self.custom.patch_namespaced_custom_object_status(
                        group, version, namespace, plural, name, body, _content_type=merge
                    )
                else:
                    await self.networking.patch_namespaced_ingress_status(
                        name, namespace, body, _content_type=merge
                    )
            except ApiException as exc:
                log.warning(
                    "%s %s/%s status: %s %s",
                    kind,
                    meta.get("namespace"),
                    meta.get("name"),
                    exc.status,
                    exc.reason,
                )
                continue
            patched += 1
        self.updates += patched
        return patched
