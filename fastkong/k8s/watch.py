"""List/watch reflectors: keep the :class:`~fastkong.k8s.store.Store` equal to the API server.

One :class:`Reflector` per kind, over the official client's raw responses (the
``*_without_preload_content`` calls of ``kubernetes.aio``: its URLs, auth, TLS and retries,
our own stream handling). The loop is client-go's reflector, kept small:

1. **List** (paged with ``limit``/``continue``) and :meth:`Store.replace` the kind: whatever
   vanished since the last list is deleted from the cache. Remember the *list's*
   ``metadata.resourceVersion`` (never the newest item's).
2. **Watch** from that RV with ``allowWatchBookmarks=true`` and a server-side timeout. Every
   ADDED/MODIFIED/DELETED event is applied and advances the RV; a BOOKMARK only advances it.
3. A stream that ends (server timeout), drops (connection reset, proxy idle timeout) or fails
   (5xx, 429) is **resumed from the last RV**, after a jittered exponential backoff when it
   did not get anywhere.
4. **410 Gone**, as an HTTP status or as an in-stream ``ERROR`` event with a 410 ``Status``,
   means the RV was compacted away: go back to 1. Objects deleted during the gap disappear in
   the diff.
5. Every ``resync`` seconds, go back to 1 anyway: a cheap safety net for missed events.

A kind the server does not serve (404 on the list: a CRD not installed) counts as synced and
empty, and is listed again after the longest backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
from kubernetes.aio.client import (
    ApiClient,
    CoreV1Api,
    CustomObjectsApi,
    DiscoveryV1Api,
    NetworkingV1Api,
)

from fastkong.k8s.store import Obj, Store

log = logging.getLogger("fastkong.k8s.watch")

#: A list call of the official client returning the raw response: ``(**query) -> response``.
ListCall = Callable[..., Awaitable[aiohttp.ClientResponse]]


@dataclass(frozen=True, slots=True)
class Resource:
    """A watched kind: ``Ingress`` is ``networking.k8s.io/v1 ingresses``."""

    kind: str
    group: str
    version: str
    plural: str
    namespaced: bool = True
    #: Older versions to list instead when this one is not served (404): a kind that moved
    #: channels (Gateway API's BackendTLSPolicy: ``v1`` since v1.4, ``v1alpha3`` before;
    #: TLSRoute: ``v1`` since v1.5, ``v1alpha3`` or ``v1alpha2`` before).
    fallbacks: tuple[str, ...] = ()
    #: Only the objects with these labels (``key=value``): for a kind of which the translator
    #: reads a few out of many (CA certificate ConfigMaps).
    label_selector: str = ""

    def alternatives(self) -> list[Resource]:
        """The same kind at each fallback version, in order."""
        return [dataclasses.replace(self, version=v, fallbacks=()) for v in self.fallbacks]

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def __str__(self) -> str:
        return f"{self.plural}.{self.group or 'core'}"


KONG_GROUP: Final = "configuration.konghq.com"
GATEWAY_GROUP: Final = "gateway.networking.k8s.io"

#: What the translator reads (``fastkong.k8s.objects.KNOWN_KINDS``), plus nothing else: the
#: admin Service's EndpointSlices (gateway discovery) and the proxy Service (Ingress and
#: Gateway status) are among the Services and EndpointSlices. Gateway API kinds whose CRDs are
#: not installed are answered 404 and count as empty.
RESOURCES: Final = (
    Resource("Ingress", "networking.k8s.io", "v1", "ingresses"),
    Resource("IngressClass", "networking.k8s.io", "v1", "ingressclasses", namespaced=False),
    Resource("Service", "", "v1", "services"),
    Resource("EndpointSlice", "discovery.k8s.io", "v1", "endpointslices"),
    Resource("Secret", "", "v1", "secrets"),
    Resource("KongPlugin", KONG_GROUP, "v1", "kongplugins"),
    Resource("KongClusterPlugin", KONG_GROUP, "v1", "kongclusterplugins", namespaced=False),
    Resource("KongConsumer", KONG_GROUP, "v1", "kongconsumers"),
    Resource("KongUpstreamPolicy", KONG_GROUP, "v1beta1", "kongupstreampolicies"),
    Resource("KongIngress", KONG_GROUP, "v1", "kongingresses"),
    Resource("IngressClassParameters", KONG_GROUP, "v1alpha1", "ingressclassparameterses"),
    Resource("TCPIngress", KONG_GROUP, "v1beta1", "tcpingresses"),
    Resource("UDPIngress", KONG_GROUP, "v1beta1", "udpingresses"),
    Resource("KongVault", KONG_GROUP, "v1alpha1", "kongvaults", namespaced=False),
    Resource("GatewayClass", GATEWAY_GROUP, "v1", "gatewayclasses", namespaced=False),
    Resource("Gateway", GATEWAY_GROUP, "v1", "gateways"),
    Resource("HTTPRoute", GATEWAY_GROUP, "v1", "httproutes"),
    # The stream routes (404 without their CRDs): TLSRoute is standard (v1) since Gateway API
    # v1.5, experimental before; TCPRoute and UDPRoute are experimental.
    Resource("TCPRoute", GATEWAY_GROUP, "v1alpha2", "tcproutes"),
    Resource("TLSRoute", GATEWAY_GROUP, "v1", "tlsroutes", fallbacks=("v1alpha3", "v1alpha2")),
    Resource("UDPRoute", GATEWAY_GROUP, "v1alpha2", "udproutes"),
    Resource("ReferenceGrant", GATEWAY_GROUP, "v1beta1", "referencegrants"),
    # Standard since Gateway API v1.4; KIC reads the experimental v1alpha3 (404 without a CRD).
    Resource(
        "BackendTLSPolicy", GATEWAY_GROUP, "v1", "backendtlspolicies", fallbacks=("v1alpha3",)
    ),
    # For listeners' allowedRoutes.namespaces.selector.
    Resource("Namespace", "", "v1", "namespaces", namespaced=False),
    # CA certificates (service_tls.py); the others are not the translator's business.
    Resource("ConfigMap", "", "v1", "configmaps", label_selector="konghq.com/ca-cert=true"),
)


def list_call(api: ApiClient, resource: Resource) -> ListCall:
    """The official client's cluster-wide list/watch call for ``resource``."""
    builtin: dict[str, ListCall] = {
        "Ingress": NetworkingV1Api(api).list_ingress_for_all_namespaces_without_preload_content,
        "IngressClass": NetworkingV1Api(api).list_ingress_class_without_preload_content,
        "Service": CoreV1Api(api).list_service_for_all_namespaces_without_preload_content,
        "EndpointSlice": DiscoveryV1Api(
            api
        ).list_endpoint_slice_for_all_namespaces_without_preload_content,
        "Secret": CoreV1Api(api).list_secret_for_all_namespaces_without_preload_content,
        "Namespace": CoreV1Api(api).list_namespace_without_preload_content,
        "ConfigMap": CoreV1Api(api).list_config_map_for_all_namespaces_without_preload_content,
    }
    if resource.kind in builtin:
        call = builtin[resource.kind]
    else:
        call = functools.partial(
            CustomObjectsApi(api).list_cluster_custom_object_without_preload_content,
            resource.group,
            resource.version,
            resource.plural,
        )
    if resource.label_selector:
        return functools.partial(call, label_selector=resource.label_selector)
    return call


def list_calls(api: ApiClient, resource: Resource) -> list[tuple[Resource, ListCall]]:
    """``resource`` and each of its fallback versions, with its list/watch call."""
    return [(r, list_call(api, r)) for r in (resource, *resource.alternatives())]


class ApiError(Exception):
    """A non-2xx answer (or an in-stream ``ERROR`` event) from the API server."""

    def __init__(self, status: int, message: str, retry_after: float | None = None) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.retry_after = retry_after


class Expired(ApiError):
    """410 Gone: the resourceVersion is older than the server's history; re-list."""


class Backoff:
    """Exponential backoff with jitter (client-go's ``wait.Jitter``: ``d + rand * jitter * d``)."""

    def __init__(
        self,
        initial: float = 0.8,
        cap: float = 30.0,
        factor: float = 2.0,
        jitter: float = 1.0,
        rng: random.Random | None = None,
    ) -> None:
        self.initial = initial
        self.cap = cap
        self.factor = factor
        self.jitter = jitter
        self.rng = rng or random.Random()
        self.failures = 0

    def __repr__(self) -> str:
        return f"<Backoff failures={self.failures} initial={self.initial} cap={self.cap}>"

    def next(self) -> float:
        base = min(self.cap, self.initial * self.factor**self.failures)
        self.failures += 1
        return float(min(self.cap, base + self.rng.random() * self.jitter * base))

    def reset(self) -> None:
        self.failures = 0


@dataclass(slots=True)
class ReflectorStats:
    """What a reflector has been through; tests and ``/healthz`` read it."""

    lists: int = 0
    watches: int = 0
    events: int = 0
    bookmarks: int = 0
    expired: int = 0
    dropped: int = 0
    errors: int = 0


class Reflector:
    """Keeps one kind of the store in step with the API server (see the module docstring)."""

    def __init__(
        self,
        resource: Resource,
        call: ListCall,
        store: Store,
        *,
        page_size: int = 500,
        watch_timeout: float = 300.0,
        resync: float = 1800.0,
        backoff: Backoff | None = None,
        request_timeout: float = 60.0,
        rng: random.Random | None = None,
        fallbacks: Sequence[tuple[Resource, ListCall]] = (),
    ) -> None:
        self.resource = resource
        self.call = call
        #: (resource, call) pairs to list instead, in order, while the current is not served.
        self.fallbacks = list(fallbacks)
        self.store = store
        self.page_size = page_size
        self.watch_timeout = watch_timeout
        self.resync = resync
        self.backoff = backoff or Backoff()
        self.request_timeout = request_timeout
        self.rng = rng or random.Random()
        #: The resourceVersion to watch from: the last list's, event's or bookmark's.
        self.rv = ""
        self.stats = ReflectorStats()
        #: Set once the first list has been applied to the store.
        self.synced = asyncio.Event()

    def __repr__(self) -> str:
        s = self.stats
        return (
            f"<Reflector {self.resource} rv={self.rv or '-'} lists={s.lists} "
            f"watches={s.watches} bookmarks={s.bookmarks} expired={s.expired} "
            f"dropped={s.dropped} errors={s.errors}>"
        )

    async def run(self) -> None:
        """List and watch until cancelled."""
        while True:
            try:
                served = await self.relist()
                if not served:
                    await asyncio.sleep(self.backoff.cap)
                    continue
                await self.watch_until_relist()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.stats.errors += 1
                delay = _delay(exc, self.backoff)
                log.warning("%s: list failed (%s); retrying in %.1fs", self.resource, exc, delay)
                await asyncio.sleep(delay)

    # -- list ---------------------------------------------------------------------------------

    async def relist(self) -> bool:
        """One complete (paged) list applied to the store; False when the kind is not served."""
        items: list[Obj] = []
        rv = ""
        token: str | None = None
        page_size: int | None = self.page_size
        while True:
            resp = await self.call(
                limit=page_size, _continue=token, _request_timeout=self.request_timeout
            )
            try:
                if resp.status == 404 and token is None and self.fallbacks:
                    log.info("%s: not served (404); trying %s", self.resource, self.fallbacks[0][0])
                    self.resource, self.call = self.fallbacks.pop(0)
                    continue
                if resp.status == 404 and token is None:
                    self.store.replace(self.resource.kind, [])
                    self.synced.set()
                    log.warning("%s: not served by the API server (404); empty", self.resource)
                    return False
                if resp.status == 410 and token is not None:
                    # The continue token expired mid-list: start over, in one page.
                    items, token, page_size = [], None, None
                    continue
                body = await _json_body(resp)
            finally:
                resp.release()
            meta = body.get("metadata") or {}
            rv = rv or str(meta.get("resourceVersion") or "")
            items.extend(self._complete(item) for item in body.get("items") or [])
            token = meta.get("continue") or None
            if token is None:
                break
        self.store.replace(self.resource.kind, items)
        self.rv = rv
        self.stats.lists += 1
        self.synced.set()
        self.backoff.reset()
        log.debug("%s: listed %d at rv %s", self.resource, len(items), rv)
        return True

    # -- watch --------------------------------------------------------------------------------

    async def watch_until_relist(self) -> None:
        """Watch, resuming dropped streams from the last RV, until a 410 or the resync period."""
        relist_at = time.monotonic() + self.resync
        while (left := relist_at - time.monotonic()) > 0:
            started, events_before = time.monotonic(), self.stats.events + self.stats.bookmarks
            try:
                await self.watch_once(min(left, self.watch_timeout * (1 + self.rng.random())))
            except Expired:
                self.stats.expired += 1
                log.info("%s: rv %s expired (410); re-listing", self.resource, self.rv)
                return
            except (aiohttp.ClientError, TimeoutError, ConnectionError, ApiError) as exc:
                self.stats.dropped += 1
                delay = _delay(exc, self.backoff)
                log.info("%s: watch ended (%s); resuming in %.1fs", self.resource, exc, delay)
                await asyncio.sleep(delay)
                continue
            got_somewhere = self.stats.events + self.stats.bookmarks > events_before
            if got_somewhere or time.monotonic() - started > 1.0:
                self.backoff.reset()
            else:
                await asyncio.sleep(self.backoff.next())

    async def watch_once(self, timeout: float) -> None:
        """One watch request, applied event by event until the stream ends."""
        seconds = max(1, int(timeout))
        self.stats.watches += 1
        resp = await self.call(
            watch=True,
            resource_version=self.rv or None,
            allow_watch_bookmarks=True,
            timeout_seconds=seconds,
            _request_timeout=float(seconds + 30),
        )
        try:
            if resp.status != 200:
                await _json_body(resp)  # raises with the server's Status
            # Split lines ourselves: readline() refuses a line longer than the read buffer,
            # and one event carries a whole object (a Secret or ConfigMap may be ~1 MiB).
            pending = bytearray()
            async for chunk in resp.content.iter_any():
                pending += chunk
                while (end := pending.find(b"\n")) >= 0:
                    line = bytes(pending[:end])
                    del pending[: end + 1]
                    if line.strip():
                        self._event(line)
        finally:
            resp.close()

    def _event(self, line: bytes) -> None:
        try:
            event = json.loads(line)
            kind, obj = str(event["type"]), event["object"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ApiError(500, f"malformed watch event: {line[:200]!r}") from exc
        if kind == "ERROR":
            raise _status_error(obj if isinstance(obj, dict) else {})
        rv = str(((obj or {}).get("metadata") or {}).get("resourceVersion") or "")
        if kind == "BOOKMARK":
            self.stats.bookmarks += 1
        elif kind in ("ADDED", "MODIFIED", "DELETED"):
            self.stats.events += 1
            self.store.apply(kind, self._complete(obj))
        else:
            log.warning("%s: unknown watch event type %r", self.resource, kind)
        if rv:
            self.rv = rv

    def _complete(self, obj: Obj) -> Obj:
        """List items come without ``kind``/``apiVersion`` (the API server leaves them out of
        typed lists); the translator needs both."""
        if obj.get("kind") == self.resource.kind and obj.get("apiVersion"):
            return obj
        return {"apiVersion": self.resource.api_version, "kind": self.resource.kind, **obj}


async def _json_body(resp: aiohttp.ClientResponse) -> dict[str, Any]:
    text = await resp.text()
    try:
        body = json.loads(text) if text else {}
    except ValueError:
        body = {}
    if resp.status >= 300:
        if not isinstance(body, dict) or body.get("kind") != "Status":
            body = {"code": resp.status, "message": text[:200]}
        error = _status_error({"code": resp.status, **body})
        with contextlib.suppress(ValueError):
            error.retry_after = float(resp.headers.get("Retry-After", ""))
        raise error
    if not isinstance(body, dict):
        raise ApiError(500, "the list is not a JSON object")
    return body


def _status_error(status: dict[str, Any]) -> ApiError:
    code = int(status.get("code") or 500)
    message = str(status.get("message") or status.get("reason") or "")
    return Expired(code, message) if code == 410 else ApiError(code, message)


def _delay(exc: BaseException, backoff: Backoff) -> float:
    delay = backoff.next()
    if isinstance(exc, ApiError) and exc.retry_after is not None:
        return max(delay, exc.retry_after)
    return delay
