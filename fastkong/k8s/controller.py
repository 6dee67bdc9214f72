"""``fastkong ingress-controller``: watch the cluster, translate, deliver the config.

The pieces, each in its own module::

    reflectors (watch.py) --events--> Store (store.py) --changed--> debounce
        --> translate() (translator.py, in a thread) --> md5 of the YAML
        --> leader only: ConfigMap + POST /config to each gateway (publish.py),
                         problems -> Events, Ingress status (events.py),
                         Gateway API status (gateway_status.py)

- Every replica lists and watches (a standby has a warm cache); only the Lease holder
  (leader.py) writes. A new leader publishes once whatever its predecessor did.
- Nothing is published before every kind has been listed once: a partial cache would
  translate into a partial config and take routes away.
- Changes are coalesced for ``debounce`` seconds; a translation is skipped when the store has
  not changed since the last one, and a delivery is skipped when its target already has the
  config's hash. Failed deliveries are retried with backoff; gateways are polled every
  ``gateway_check_interval`` seconds and re-pushed when they report another hash (an empty
  one after a restart).
- ``/healthz`` (the loop is alive), ``/readyz`` (caches synced) and ``/debug/state`` are
  served on ``health_listen``.

The config hash is the md5 of the YAML text, which is what a fastkong gateway reports as
``configuration_hash`` for that config, whether it read it from the ConfigMap or got it pushed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from kubernetes.aio import config as kube_config
from kubernetes.aio.client import (
    ApiClient,
    Configuration,
    CoordinationV1Api,
    CoreV1Api,
    CustomObjectsApi,
    NetworkingV1Api,
)
from kubernetes.aio.client.exceptions import ApiException

from fastkong.k8s import programmed
from fastkong.k8s.admission import Reviewer
from fastkong.k8s.admission_server import AdmissionServer
from fastkong.k8s.events import (
    REASON_APPLY,
    REASON_TRANSLATION,
    STREAM_INGRESSES,
    EventRecorder,
    IngressStatusUpdater,
    proxy_addresses,
)
from fastkong.k8s.gateway_status import StatusUpdater, desired
from fastkong.k8s.gatewayapi import DEFAULT_CONTROLLER, ROUTE_KINDS
from fastkong.k8s.gatewayapi import view as gateway_view
from fastkong.k8s.ingress import annotation_class_filter, class_filter
from fastkong.k8s.leader import LeaderElector
from fastkong.k8s.objects import Index, ObjectRef
from fastkong.k8s.publish import (
    ConfigMapPublisher,
    GatewayPublisher,
    PublishError,
    discover_gateways,
)
from fastkong.k8s.store import Delta, Obj, Store
from fastkong.k8s.translator import DEFAULT_INGRESS_CLASS, TranslationResult, translate
from fastkong.k8s.watch import RESOURCES, Backoff, Reflector, Resource, list_calls

log = logging.getLogger("fastkong.k8s.controller")


def split_ref(value: str, namespace: str) -> tuple[str, str]:
    """``"name"`` or ``"namespace/name"`` -> ``(namespace, name)``."""
    ns, _, name = value.rpartition("/")
    return (ns or namespace, name)


@dataclass
class ControllerOptions:
    """What ``fastkong ingress-controller`` is told (flags and environment)."""

    namespace: str = "default"
    pod_name: str = "fastkong-controller"
    ingress_classes: Sequence[str] = (DEFAULT_INGRESS_CLASS,)
    #: ``name`` (in ``namespace``) or ``ns/name``; empty: do not write a ConfigMap.
    configmap: str = ""
    configmap_key: str = "kong.yml"
    #: The headless admin Service whose endpoints get ``POST /config``; empty: no push.
    admin_service: str = ""
    admin_port_name: str = "admin"
    admin_token: str | None = None
    #: The proxy Service whose address goes into Ingress status; empty: leave status alone.
    proxy_service: str = ""
    #: Gateway API: the ``spec.controllerName`` of the GatewayClasses we serve.
    gateway_controller: str = DEFAULT_CONTROLLER
    #: KIC's ``--combined-services-from-different-httproutes``.
    combined_services: bool = False
    leader_election: bool = True
    lease_name: str = "fastkong-controller"
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    debounce: float = 0.25
    resync: float = 1800.0
    watch_timeout: float = 300.0
    page_size: int = 500
    backoff_initial: float = 0.8
    backoff_cap: float = 30.0
    gateway_check_interval: float = 10.0
    push_timeout: float = 30.0
    event_refresh: float = 600.0
    #: ``host:port`` for /healthz and /readyz; empty: no health server.
    health_listen: str = "0.0.0.0:10254"
    #: ``host:port`` of the admission webhook (HTTPS, admission_server.py); empty: none.
    admission_listen: str = ""
    admission_cert_file: str = "/admission-webhook/tls.crt"
    admission_key_file: str = "/admission-webhook/tls.key"
    resources: Sequence[Resource] = field(default_factory=lambda: RESOURCES)


class Controller:
    """One controller replica. ``await start()`` ... ``await stop()``, or ``await run()``."""

    def __init__(
        self,
        api: ApiClient,
        options: ControllerOptions,
        *,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.api = api
        self.options = options
        opts = options
        self.store = Store(on_change=self._changed)
        self.reflectors = [
            Reflector(
                *list_calls(api, res)[0],
                self.store,
                page_size=opts.page_size,
                watch_timeout=opts.watch_timeout,
                resync=opts.resync,
                backoff=Backoff(opts.backoff_initial, opts.backoff_cap),
                fallbacks=list_calls(api, res)[1:],
            )
            for res in opts.resources
        ]
        core = CoreV1Api(api)
        self.configmap: ConfigMapPublisher | None = None
        if opts.configmap:
            ns, name = split_ref(opts.configmap, opts.namespace)
            self.configmap = ConfigMapPublisher(core, ns, name, opts.configmap_key)
        self._session = session
        self.gateways: GatewayPublisher | None = None
        self.elector: LeaderElector | None = None
        if opts.leader_election:
            self.elector = LeaderElector(
                CoordinationV1Api(api),
                opts.namespace,
                opts.lease_name,
                opts.pod_name,
                lease_duration=opts.lease_duration,
                renew_deadline=opts.renew_deadline,
                retry_period=opts.retry_period,
                on_change=self._leadership,
            )
        self.events = EventRecorder(
            core, self.store, instance=opts.pod_name, refresh=opts.event_refresh
        )
        self.ingress_status: IngressStatusUpdater | None = None
        if opts.proxy_service:
            ns, name = split_ref(opts.proxy_service, opts.namespace)
            self.ingress_status = IngressStatusUpdater(
                NetworkingV1Api(api), self.store, ns, name, CustomObjectsApi(api)
            )
        self.gateway_status = StatusUpdater(api)
        #: The Programmed condition of Kong's CRDs (programmed.py).
        self.crd_status = StatusUpdater(api)
        self.result: TranslationResult | None = None
        self.text = ""
        self.digest: str | None = None
        self.translations = 0
        self.syncs = 0
        self.ready = asyncio.Event()
        self._dirty = asyncio.Event()
        self._translated_gen = -1
        self._retry: asyncio.TimerHandle | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._own_session = False
        self._health: web.AppRunner | None = None
        self.health_port = 0
        self.admission: AdmissionServer | None = None
        self.last_sync_error = ""

    def __repr__(self) -> str:
        role = "leader" if self.is_leader else "follower"
        return (
            f"<Controller {self.options.pod_name} {role} ready={self.ready.is_set()} "
            f"config={self.digest or '-'} translations={self.translations} {self.store!r}>"
        )

    @property
    def is_leader(self) -> bool:
        return self.elector.is_leader if self.elector is not None else True

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession()
            self._own_session = True
        if self.options.admin_service:
            self.gateways = GatewayPublisher(
                self._session,
                token=self.options.admin_token,
                timeout=self.options.push_timeout,
                retry_initial=self.options.backoff_initial,
                retry_cap=self.options.backoff_cap,
            )
        if self.options.health_listen:
            await self._start_health(self.options.health_listen)
        if self.options.admission_listen:
            await self._start_admission()
        loops = [r.run() for r in self.reflectors] + [self._sync_loop(), self._gateway_loop()]
        if self.elector is not None:
            loops.append(self.elector.run())
        self._tasks = [asyncio.create_task(c) for c in loops]

    async def stop(self) -> None:
        """Stop every loop (the leader releases its Lease) and close what we opened."""
        if self._retry is not None:
            self._retry.cancel()
        for task in self._tasks:
            task.cancel()
        results = await asyncio.gather(*self._tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, Exception):
                log.error("controller task failed: %r", result)
        self._tasks = []
        if self._health is not None:
            await self._health.cleanup()
            self._health = None
        if self.admission is not None:
            await self.admission.stop()
            self.admission = None
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def run(self) -> None:
        """Run until cancelled or until a loop dies (then raise its error)."""
        await self.start()
        try:
            done, _ = await asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
        finally:
            await self.stop()

    # -- change handling ----------------------------------------------------------------------

    def _changed(self, kind: str, delta: Delta) -> None:
        self._dirty.set()

    def _leadership(self, leader: bool) -> None:
        if leader:
            if self.configmap is not None:
                self.configmap.forget()
            if self.gateways is not None:
                self.gateways.forget()
            self._dirty.set()

    def _later(self, delay: float) -> None:
        if self._retry is not None:
            self._retry.cancel()
        self._retry = asyncio.get_running_loop().call_later(delay, self._dirty.set)

    async def _sync_loop(self) -> None:
        await asyncio.gather(*(r.synced.wait() for r in self.reflectors))
        self.ready.set()
        log.info("caches synced: %r", self.store)
        self._dirty.set()
        backoff = Backoff(self.options.backoff_initial, self.options.backoff_cap)
        while True:
            await self._dirty.wait()
            await asyncio.sleep(self.options.debounce)
            self._dirty.clear()
            if not self.is_leader:
                continue
            try:
                await self.sync_once()
            except Exception as exc:
                self.last_sync_error = f"{type(exc).__name__}: {exc}"
                log.exception("sync failed")
                self._later(backoff.next())
            else:
                backoff.reset()

    async def sync_once(self) -> None:
        """Translate (if anything changed) and deliver to every target that lacks it."""
        self.syncs += 1
        if self.result is None or self.store.generation != self._translated_gen:
            await self._translate()
        assert self.result is not None and self.digest is not None
        retry: list[float] = []
        if self.configmap is not None:
            try:
                await self.configmap.publish(self.text, self.digest)
            except (PublishError, ApiException, aiohttp.ClientError, OSError) as exc:
                log.error("ConfigMap not written: %s", exc)
                if getattr(exc, "retry", True):
                    retry.append(self.options.backoff_cap / 4)
        if self.gateways is not None:
            ns, name = split_ref(self.options.admin_service, self.options.namespace)
            found = discover_gateways(self.store, ns, name, self.options.admin_port_name)
            results = await self.gateways.publish(found, self.text, self.digest)
            if results:
                rejected = [p for r in results for p in r.problems]
                await self.events.record(rejected, REASON_APPLY)
            if (at := self.gateways.next_retry()) is not None:
                retry.append(max(0.05, at - time.monotonic()))
        if self.ingress_status is not None:
            await self.ingress_status.update(self._our_ingresses())
        await self._update_gateway_status()
        await self._update_crd_status()
        self.last_sync_error = ""
        if retry:
            self._later(min(retry))

    async def _translate(self) -> None:
        generation = self.store.generation
        objects = self.store.objects()
        classes = list(self.options.ingress_classes)
        result = await asyncio.to_thread(
            translate,
            objects,
            ingress_class=classes,
            gateway_controller=self.options.gateway_controller,
            combined_services=self.options.combined_services,
        )
        text = result.to_yaml()
        digest = hashlib.md5(text.encode()).hexdigest()
        self._translated_gen = generation
        self.translations += 1
        if self.admission is not None:
            self.admission.reviewer.seed(generation, result)
        if digest != self.digest:
            log.info("config %s from %r: %r", digest, self.store, result)
        self.result, self.text, self.digest = result, text, digest
        await self.events.record(result.problems, REASON_TRANSLATION)

    async def _update_gateway_status(self) -> None:
        """Gateway API status (gateway_status.py), when there is any Gateway API object."""
        if not self.store.keys("GatewayClass") and not any(
            self.store.keys(kind) for kind in ROUTE_KINDS
        ):
            return
        index = Index(self._objects())
        gv = gateway_view(index, self.options.gateway_controller)
        proxy: list[dict[str, str]] = []
        if self.options.proxy_service:
            ns, name = split_ref(self.options.proxy_service, self.options.namespace)
            proxy = proxy_addresses(self.store, ns, name)
        want = desired(index, gv, proxy)
        by_key = {key: obj for key in want if (obj := self.store.get(*key)) is not None}
        await self.gateway_status.update(by_key, want)

    async def _update_crd_status(self) -> None:
        """KIC's Programmed condition on Kong's CRDs and KongUpstreamPolicy's ancestors, from
        the delivered translation."""
        kinds = (*programmed.KINDS, programmed.POLICY_KIND)
        if self.result is None or not any(self.store.keys(k) for k in kinds):
            return
        ours = annotation_class_filter(
            Index(self.store.objects("IngressClass")), self.options.ingress_classes
        )
        kong_objects = [x for kind in programmed.KINDS for x in self._objects(kind)]
        want = programmed.desired(kong_objects, self.result.translated, self.result.problems, ours)
        want |= programmed.policy_status(
            self._objects(programmed.POLICY_KIND),
            self._objects("Service"),
            self._objects("HTTPRoute"),
            self.result.translated,
            self.options.gateway_controller,
        )
        by_key = {key: obj for key in want if (obj := self.store.get(*key)) is not None}
        await self.crd_status.update(by_key, want)

    def _objects(self, kind: str | None = None) -> list[Obj]:
        """The store's objects (of ``kind``), less those the translator failed on: the status
        code reads them as the translator does."""
        objects = self.store.objects(kind) if kind else self.store.objects()
        left_out = self.result.left_out if self.result is not None else frozenset()
        if not left_out:
            return objects
        return [x for x in objects if ObjectRef.of(x) not in left_out]

    def _our_ingresses(self) -> list[Obj]:
        """Our Ingresses, TCPIngresses and UDPIngresses (their status is the proxy's address)."""
        ours = class_filter(Index(self.store.objects("IngressClass")), self.options.ingress_classes)
        kinds = ("Ingress", *STREAM_INGRESSES)
        return [i for kind in kinds for i in self.store.objects(kind) if ours(i)]

    async def _gateway_loop(self) -> None:
        while True:
            await asyncio.sleep(self.options.gateway_check_interval)
            if self.gateways is not None and self.is_leader and self.ready.is_set():
                if await self.gateways.check():
                    self._dirty.set()

    # -- health -------------------------------------------------------------------------------

    async def _start_health(self, listen: str) -> None:
        host, _, port = listen.rpartition(":")
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/debug/state", self._state)
        self._health = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._health.setup()
        site = web.TCPSite(self._health, host.strip("[]") or "0.0.0.0", int(port))
        await site.start()
        self.health_port = int(self._health.addresses[0][1])

    async def _start_admission(self) -> None:
        opts = self.options
        reviewer = Reviewer(
            functools.partial(
                translate,
                ingress_class=list(opts.ingress_classes),
                gateway_controller=opts.gateway_controller,
                combined_services=opts.combined_services,
            ),
            opts.ingress_classes,
        )
        self.admission = AdmissionServer(
            reviewer,
            lambda: (self.store.objects(), self.store.generation, self.ready.is_set()),
            opts.admission_listen,
            opts.admission_cert_file,
            opts.admission_key_file,
        )
        await self.admission.start()

    async def _healthz(self, request: web.Request) -> web.Response:
        dead = [t for t in self._tasks if t.done()]
        if dead:
            return web.json_response({"status": "a controller loop has stopped"}, status=500)
        return web.json_response({"status": "ok"})

    async def _readyz(self, request: web.Request) -> web.Response:
        if not self.ready.is_set():
            waiting = [str(r.resource) for r in self.reflectors if not r.synced.is_set()]
            return web.json_response({"status": "syncing", "waiting": waiting}, status=503)
        return web.json_response({"status": "ready"})

    async def _state(self, request: web.Request) -> web.Response:
        return web.json_response(self.state())

    def state(self) -> dict[str, Any]:
        """What the controller holds, for ``/debug/state`` and for tests."""
        gateways = {}
        if self.gateways is not None:
            gateways = {
                str(gw): {
                    "pushed": s.pushed,
                    "reported": s.reported,
                    "rejected": s.rejected,
                    "error": s.error,
                }
                for gw, s in sorted(self.gateways.states.items())
            }
        return {
            "controller": repr(self),
            "leader": self.is_leader,
            "elector": repr(self.elector),
            "config_hash": self.digest,
            "problems": [str(p) for p in (self.result.problems if self.result else [])],
            "reflectors": [repr(r) for r in self.reflectors],
            "configmap": repr(self.configmap),
            "gateway_status": repr(self.gateway_status),
            "gateways": gateways,
            "admission": repr(self.admission),
            "last_sync_error": self.last_sync_error,
        }


# The config loaders are untyped; these are their signatures as used here.
_load_kube_config: Callable[..., Awaitable[None]] = kube_config.load_kube_config
_load_incluster_config: Callable[..., None] = kube_config.load_incluster_config


async def configure(kubeconfig: str | None) -> Configuration:
    """A client configuration from a kubeconfig file, or the in-cluster service account."""
    cfg = Configuration()
    if kubeconfig:
        await _load_kube_config(
            config_file=kubeconfig, client_configuration=cfg, persist_config=False
        )
    else:
        _load_incluster_config(client_configuration=cfg)
    return cfg


async def serve(options: ControllerOptions, kubeconfig: str | None) -> None:
    """Run one controller until SIGTERM/SIGINT; then stop it (the leader releases the Lease)."""
    cfg = await configure(kubeconfig)
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    async with ApiClient(cfg) as api:
        controller = Controller(api, options)
        with contextlib.suppress(asyncio.CancelledError):
            await controller.run()
    log.warning("ingress controller %s stopped", options.pod_name)


def main(options: ControllerOptions, kubeconfig: str | None = None) -> int:
    """The command: 0 after a signal, 2 when the cluster cannot be reached/configured."""
    try:
        asyncio.run(serve(options, kubeconfig))
    except kube_config.ConfigException as exc:
        log.error("no Kubernetes configuration: %s", exc)
        return 2
    return 0
