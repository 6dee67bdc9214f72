"""Kubernetes objects -> a Kong declarative config, the way KIC translates them.

:func:`translate` is pure: a list of objects in (dicts as the API or ``kubectl`` gives them), a
config dict and a list of problems out. The same objects in any order give the same config:
every list is sorted and every choice between objects is made on their content.

What it reads (kong.md section 6; ``kic:internal/dataplane/translator``):

- Ingress (``networking.k8s.io/v1``) of our class -> routes, one per (ingress, host, backend);
  the backend Service port -> a Kong service ``<ns>.<svc>.<port>`` whose host is the upstream
  ``<svc>.<ns>.<port>.svc``; ``spec.tls`` + TLS Secrets -> certificates.
- Service annotations -> service and upstream fields; KongUpstreamPolicy -> upstream fields;
  EndpointSlices -> targets.
- Services, routes, consumers and plugins get KIC's deterministic IDs (UUIDv5 of their names).
- KongPlugin / KongClusterPlugin attached with ``konghq.com/plugins`` -> plugins; KongClusterPlugin
  labelled ``global: "true"`` -> global plugins.
- KongConsumer + credential Secrets -> consumers with credentials.
- TCPIngress and UDPIngress of our class -> stream routes (:mod:`fastkong.k8s.tcpingress`).
- Gateway API: HTTPRoutes, TCPRoutes, TLSRoutes and UDPRoutes attached to Gateways of our
  GatewayClass -> services, routes, upstreams and plugins (:mod:`fastkong.k8s.gatewayapi` decides
  what is ours, :mod:`fastkong.k8s.httproute` and :mod:`fastkong.k8s.l4route` translate); the
  backend Services' annotations and KongUpstreamPolicy apply to them as to an Ingress's; HTTPS and
  terminating TLS listeners' Secrets -> certificates; BackendTLSPolicies -> TLS to the pods of
  the Services they target (:mod:`fastkong.k8s.backend_tls`).

Unlike KIC, one broken object never blocks the rest: an object that cannot be translated, or
whose entities do not pass the config layer's validation, is left out and reported as a
:class:`Problem`, and everything else is translated.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import yaml

from fastkong.k8s import annotations as ann
from fastkong.k8s import (
    gatewayapi,
    httproute,
    kong_ingress,
    l4route,
    naming,
    service_tls,
    tcpingress,
)
from fastkong.k8s import objects as o
from fastkong.k8s.backend_tls import BackendTlsPolicies
from fastkong.k8s.consumers import build_consumer, conflicts, credential_sort_key
from fastkong.k8s.gatewayapi import DEFAULT_CONTROLLER
from fastkong.k8s.gatewayapi import view as gateway_view
from fastkong.k8s.ingress import (
    Backend,
    RouteGroup,
    annotation_class_filter,
    class_filter,
    class_parameters,
    default_backend_group,
    route_groups,
    route_record,
    tls_hosts,
)
from fastkong.k8s.layout import CREDENTIAL_ARRAYS, drop_empty, order_keys
from fastkong.k8s.objects import Index, Obj, ObjectRef, Problem
from fastkong.k8s.plugins import PluginError, build_plugin, global_plugins, resolve
from fastkong.k8s.prune import Pruner, Validator, config_layer_validator
from fastkong.k8s.quarantine import translate_isolating
from fastkong.k8s.upstream_policy import ANNOTATION as UPSTREAM_POLICY
from fastkong.k8s.upstream_policy import policy_fields
from fastkong.k8s.upstreams import find_port, targets
from fastkong.k8s.vaults import vaults

DEFAULT_INGRESS_CLASS: Final = "fastkong"
FORMAT_VERSION: Final = "3.0"
DEFAULT_TIMEOUT: Final = 60000
DEFAULT_RETRIES: Final = 5


@dataclass(frozen=True, slots=True)
class TranslationResult:
    """The declarative config (``_format_version`` 3.0) and what was left out or ignored."""

    config: dict[str, Any]
    problems: list[Problem] = field(default_factory=list)
    #: The objects at least one entity of ``config`` came from (KIC's "successfully
    #: translated" set: the Programmed status of Kong's CRDs reads it).
    translated: frozenset[ObjectRef] = frozenset()
    #: The objects left out because the translator failed on them (quarantine.py).
    left_out: frozenset[ObjectRef] = frozenset()

    def __repr__(self) -> str:
        counts = " ".join(
            f"{k}={len(v)}" for k, v in self.config.items() if isinstance(v, list) and v
        )
        return f"<TranslationResult {counts or 'empty'} problems={len(self.problems)}>"

    def to_yaml(self) -> str:
        """The config as YAML, byte-for-byte stable for the same input."""
        return dump_yaml(self.config)


def dump_yaml(config: Mapping[str, Any]) -> str:
    return yaml.safe_dump(
        dict(config), sort_keys=False, default_flow_style=False, allow_unicode=True, width=1000
    )


def translate(
    objects: Iterable[Mapping[str, Any]],
    *,
    ingress_class: str | Collection[str] = DEFAULT_INGRESS_CLASS,
    validate: bool | Validator = True,
    gateway_controller: str = DEFAULT_CONTROLLER,
    combined_services: bool = False,
) -> TranslationResult:
    """Translate Kubernetes objects into a Kong declarative config.

    Parameters
    ----------
    objects:
        Kubernetes objects as dicts, in any order; kinds the translator does not read are skipped.
    ingress_class:
        The class (or classes) whose Ingresses, KongConsumers and KongClusterPlugins are ours:
        ``"fastkong"``, or KIC's ``"kong"`` to take over manifests written for KIC.
    validate:
        Check the result with :mod:`fastkong.config` and leave out entities that do not pass
        (skipped while that layer is not installed); or a validator function, for tests.
    gateway_controller:
        The ``spec.controllerName`` of our GatewayClasses (Gateway API).
    combined_services:
        KIC's ``--combined-services-from-different-httproutes``: rules with the same backends
        in HTTPRoutes of one namespace share a Kong service.
    """
    classes = {ingress_class} if isinstance(ingress_class, str) else set(ingress_class)

    def attempt(objects: list[Mapping[str, Any]]) -> TranslationResult:
        return _translate(objects, classes, validate, gateway_controller, combined_services)

    return translate_isolating(attempt, list(objects))


def _translate(
    objects: list[Mapping[str, Any]],
    classes: set[str],
    validate: bool | Validator,
    gateway_controller: str,
    combined_services: bool,
) -> TranslationResult:
    """The body of :func:`translate`, for one set of objects."""
    run = _Translation(Index(objects), classes, gateway_controller, combined_services)
    config = run.build()
    problems = run.problems
    validator = config_layer_validator() if validate is True else (validate or None)
    if validator is not None:
        pruner = Pruner(config, run.origin)
        pruner.run(validator)
        problems += pruner.problems
        drop_empty(config)
    return TranslationResult(config, sorted(set(problems)), _sources(config, run.origin))


def _sources(node: Any, origin: Mapping[int, ObjectRef]) -> frozenset[ObjectRef]:
    """The objects the entity records left in ``node`` were made from."""
    found: set[ObjectRef] = set()
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            ref = origin.get(id(item))
            if ref is not None:
                found.add(ref)
            stack.extend(v for v in item.values() if isinstance(v, (dict, list)))
        elif isinstance(item, list):
            stack.extend(v for v in item if isinstance(v, (dict, list)))
    return frozenset(found)


def service_record(
    kong_name: str, host: str, port: int, root_path: bool, protocol: str = "http"
) -> dict[str, Any]:
    """A Kong service as KIC writes one for a Service port: its defaults, and path ``/`` unless
    it serves an Ingress's default backend (KIC's translateIngressDefaultBackendService)."""
    record: dict[str, Any] = {
        "id": naming.entity_id("services", kong_name),
        "name": kong_name,
        "host": host,
        "port": port,
        "protocol": protocol,
        "connect_timeout": DEFAULT_TIMEOUT,
        "read_timeout": DEFAULT_TIMEOUT,
        "write_timeout": DEFAULT_TIMEOUT,
        "retries": DEFAULT_RETRIES,
        "routes": [],
        "plugins": [],
    }
    if root_path:
        record["path"] = "/"
    return record


class _Translation:
    def __init__(
        self,
        index: Index,
        classes: set[str],
        gateway_controller: str = DEFAULT_CONTROLLER,
        combined_services: bool = False,
    ) -> None:
        self.index = index
        self.classes = classes
        self.gateway_controller = gateway_controller
        self.combined_services = combined_services
        self.problems: list[Problem] = list(index.problems)
        #: ``id(record)`` -> the object each emitted entity record came from (for pruning).
        self.origin: dict[int, ObjectRef] = {}
        self.services: dict[str, dict[str, Any]] = {}
        self.upstreams: dict[str, dict[str, Any]] = {}
        #: Kubernetes Service (ns, name) -> the Kong services made from it.
        self.k8s_services: dict[tuple[str, str], list[str]] = {}
        #: Ingress (ns, name) -> its route records.
        self.ingress_routes: dict[tuple[str, str], list[dict[str, Any]]] = {}
        #: Route object (kind, ns, name) -> its route records, with the KongPlugins its
        #: ExtensionRefs name (HTTPRoute, TCPRoute, TLSRoute, UDPRoute, TCPIngress, UDPIngress).
        self.object_routes: dict[tuple[str, str, str], list[tuple[dict[str, Any], list[str]]]] = {}
        self.consumers: dict[tuple[str, str], dict[str, Any]] = {}
        #: TLS Secrets named by ``konghq.com/client-cert`` (ns, name) -> the Secret.
        self.client_certs: dict[tuple[str, str], Obj] = {}
        self.used_instance_names: set[str] = set()
        self.gateways = gatewayapi.GatewayView(gateway_controller)
        self._annotation_ours = annotation_class_filter(index, classes)
        self.params = class_parameters(index, classes, self.problems)
        #: Gateway API BackendTLSPolicies, read as their Services' TLS annotations.
        self.backend_tls = BackendTlsPolicies(index, self.problems)
        #: Kong services a BackendTLSPolicy made TLS: their routes send the policy's hostname.
        self.policy_services: set[str] = set()

    def note(self, record: dict[str, Any], ref: ObjectRef) -> dict[str, Any]:
        self.origin[id(record)] = ref
        return record

    def class_annotation_ok(self, obj: Obj) -> bool:
        """KongConsumers, KongClusterPlugins and KongVaults of our class (ingress.py)."""
        return self._annotation_ours(obj)

    # -- the whole config ----------------------------------------------------------------------
    def build(self) -> dict[str, Any]:
        ours = class_filter(self.index, self.classes)
        ingresses = sorted(
            (i for i in self.index.all("Ingress") if ours(i)),
            key=lambda i: (o.created(i), o.namespace(i), o.name(i)),
        )
        for ingress in ingresses:
            legacy = self.params.get("enableLegacyRegexDetection") is True
            for group in route_groups(ingress, self.problems, legacy):
                self.add_route(group)
        if (default := default_backend_group(ingresses, self.problems)) is not None:
            self.add_route(default)
        stream_ingresses = sorted(
            (i for kind in tcpingress.KINDS for i in self.index.all(kind) if ours(i)),
            key=lambda i: (o.created(i), o.namespace(i), o.name(i), i.get("kind", "")),
        )
        for ingress in stream_ingresses:
            for rule in tcpingress.rules(ingress, self.problems):
                self.add_stream_rule(rule)
        self.add_gateway_routes()
        self.add_consumers()
        self.attach_plugins()
        for name in self.policy_services:
            # Kong names the TLS server, and checks its certificate, by the Host it sends; a
            # BackendTLSPolicy's hostname must be both (Gateway API), so it is the Host: the
            # client's stays in X-Forwarded-Host. (KIC keeps preserve_host, so Kong checks the
            # pod's certificate against the client's Host.)
            for route in self.services[name]["routes"] if name in self.services else ():
                route["preserve_host"] = False
        config: dict[str, Any] = {"_format_version": FORMAT_VERSION}
        config["services"] = [self._sorted_service(self.services[k]) for k in sorted(self.services)]
        config["upstreams"] = [self.upstreams[k] for k in sorted(self.upstreams)]
        config["consumers"] = sorted(
            (self._sorted_consumer(c) for c in self.consumers.values()),
            key=lambda c: (c.get("username", ""), c.get("custom_id", "")),
        )
        config["plugins"] = self.globals()
        tcp_ingresses = [i for i in stream_ingresses if i.get("kind") == tcpingress.KIND]
        tls_objects = sorted(ingresses + tcp_ingresses, key=lambda i: o.created(i))
        config["certificates"] = self.certificates(tls_objects)
        config["ca_certificates"] = [
            self.note(record, ObjectRef.of(secret))
            for record, secret in service_tls.ca_certificates(self.index, self.problems)
        ]
        config["vaults"] = [
            self.note(record, ObjectRef.of(vault))
            for record, vault in vaults(self.index, self.class_annotation_ok, self.problems)
        ]
        drop_empty(config)
        order_keys(config)
        return config

    # -- ingresses -> services, routes, upstreams -----------------------------------------------
    def add_route(self, group: RouteGroup) -> None:
        ingress, backend = group.ingress, group.backend
        ns, ref = o.namespace(ingress), ObjectRef.of(ingress)
        service = self.index.get("Service", ns, backend.service)
        port: Mapping[str, Any] | None = None
        missing = "not found"
        if service is not None:
            found = find_port(service, backend)
            if isinstance(found, str):
                missing = found
            else:
                port = found
        if service is None or port is None:
            # KIC keeps the route and its service with an upstream of no targets, so requests
            # get 503 rather than falling through to a broader route (a catch-all).
            self.problems.append(
                Problem(
                    ref,
                    f"route {group.name!r} has no targets: service {ns}/{backend.service}: "
                    f"{missing}; its requests get 503",
                )
            )
        rewrite = o.anns(ingress).get(ann.REWRITE)
        try:
            uri = ann.rewrite_uri(rewrite) if rewrite is not None else None
        except ValueError as exc:
            self.problems.append(
                Problem(ref, f"route {group.name!r} left out: {ann.REWRITE}={rewrite!r}: {exc}")
            )
            return
        kong_name = naming.service_name(ns, backend.service, backend.port)
        if kong_name not in self.services:
            # KIC's translateIngressDefaultBackendService sets no path (rules' services: /).
            root_path = not group.default_backend
            if service is None or port is None:
                self.add_unbacked_service(kong_name, ns, backend, ref, root_path)
            else:
                self.add_service(kong_name, service, backend.port, port, root_path)
        route = self.note(route_record(group), ref)
        ann.apply_route_annotations(route, o.anns(ingress), ref, self.problems)
        if uri is not None:
            # KIC's MaybeRewriteURI: a request-transformer on the route, untagged.
            rewriter = {"name": "request-transformer", "config": {"replace": {"uri": uri}}}
            route["plugins"] = [self.note(rewriter, ref)]
        self.services[kong_name]["routes"].append(route)
        self.ingress_routes.setdefault((ns, o.name(ingress)), []).append(route)

    def add_stream_rule(self, rule: tcpingress.StreamRule) -> None:
        ingress, backend, kong_name = rule.ingress, rule.backend, rule.service_name
        ns, ref = o.namespace(ingress), ObjectRef.of(ingress)
        protocol = rule.protocol
        existing = self.services.get(kong_name)
        if existing is not None and existing["protocol"] != protocol:
            why = f"{kong_name} also serves HTTP routes (an Ingress); left out"
            self.problems.append(Problem(ref, f"route {rule.route['name']!r}: {why}"))
            return
        if existing is None:
            service = self.index.get("Service", ns, backend.service)
            udp = protocol == "udp"
            port = find_port(service, backend, udp) if service is not None else "not found"
            if service is None or isinstance(port, str):
                self.problems.append(
                    Problem(
                        ref,
                        f"route {rule.route['name']!r} has no targets: service "
                        f"{ns}/{backend.service}: {port}; its "
                        f"{'datagrams are dropped' if udp else 'connections are closed'}",
                    )
                )
                self.add_unbacked_service(kong_name, ns, backend, ref, False)
            elif not self.add_service(kong_name, service, backend.port, port, False, protocol):
                why = (
                    f"service {ns}/{backend.service}: its TCP and UDP ports {backend.port} "
                    "reach different endpoints, which one upstream cannot hold; left out"
                )
                self.problems.append(Problem(ref, f"route {rule.route['name']!r}: {why}"))
                return
            self.services[kong_name]["protocol"] = protocol
            if udp:
                # KIC's UDP service names the Service port, not its default 80.
                self.services[kong_name]["port"] = backend.number
        self.services[kong_name]["routes"].append(self.note(rule.route, ref))
        key = (str(ingress.get("kind")), ns, o.name(ingress))
        self.object_routes.setdefault(key, []).append((rule.route, []))

    def add_gateway_routes(self) -> None:
        gv = self.gateways = gateway_view(self.index, self.gateway_controller)
        for _, gateway in sorted(gv.gateways.items()):
            for listener in gatewayapi.listeners(gateway):
                found = gatewayapi.listener_certificate(self.index, gateway, listener)
                if isinstance(found, gatewayapi.RefFailure):
                    self.problems.append(
                        Problem(
                            ObjectRef.of(gateway),
                            f"listener {listener.get('name')!r}: {found.message}; no certificate",
                        )
                    )
        for rv in gv.routes:
            if not rv.accepted:
                reasons = "; ".join(f"{p.reason}: {p.message}" for p in rv.parents)
                self.problems.append(
                    Problem(ObjectRef.of(rv.route), f"not accepted by any Gateway ({reasons})")
                )
        done = httproute.translate(
            self.index, gv, self.problems, self.note, service_record, self.combined_services
        )
        self.add_translated(done, "HTTPRoute")
        for kind in l4route.STREAM_KINDS:
            done = l4route.translate(self.index, gv, kind, self.problems, self.note, service_record)
            self.add_translated(done, kind)

    def add_translated(self, done: httproute.Translated, kind: str) -> None:
        """Gateway API routes' services and upstreams, with their backend Services' annotations
        (a Kong service whose Services disagree on them is left out, with its routes)."""
        dropped: set[int] = set()
        for record, upstream in zip(done.services, done.upstreams, strict=True):
            backends = done.backends[record["name"]]
            if not self.consistent_annotations(record, backends):
                dropped.update(id(r) for r in record["routes"])
                continue
            if backends:
                self.apply_backend_service(record, upstream, backends[0], gateway_api=True)
            for service in backends:
                key = (o.namespace(service), o.name(service))
                self.k8s_services.setdefault(key, []).append(record["name"])
            self.services[record["name"]] = record
            self.upstreams[upstream["name"]] = upstream
        for (ns, name), pairs in done.routes.items():
            kept = [(r, ext) for r, ext in pairs if id(r) not in dropped]
            self.object_routes[(kind, ns, name)] = kept

    def consistent_annotations(self, record: dict[str, Any], services: list[Obj]) -> bool:
        """KIC's ``collectInconsistentAnnotations``: the Services behind one Kong service must
        carry the same ``konghq.com/*`` annotations, or the Kong service (with its routes) is
        left out; each Service and the HTTPRoute are told which annotation differs."""
        seen: dict[str, str] = {}
        for service in services:
            seen.update({k: v for k, v in o.anns(service).items() if k.startswith(ann.PREFIX)})
        bad = sorted(k for k, v in seen.items() if any(o.anns(s).get(k) != v for s in services))
        if not bad:
            return True
        name = record["name"]
        for service in services:
            for key in bad:
                self.problems.append(
                    Problem(
                        ObjectRef.of(service),
                        f"Service has inconsistent {key} annotation and is used in "
                        f"multi-Service backend {name}; {name} left out",
                    )
                )
        return False

    def apply_backend_service(
        self,
        record: dict[str, Any],
        upstream: dict[str, Any],
        service: Obj,
        gateway_api: bool = False,
    ) -> None:
        """A Kubernetes Service's annotations (service and upstream fields, TLS to the pods) and
        KongUpstreamPolicy on the Kong service and upstream made for it; a BackendTLSPolicy
        that targets the Service counts as its TLS annotations (backend_tls.py)."""
        if record.get("protocol") == "http":
            # HTTP services only: a stream service's protocol is tcp, tls or udp.
            with_policy = self.backend_tls.apply(service)
            if with_policy is not service:
                self.policy_services.add(record["name"])
                service = with_policy
        ref = ObjectRef.of(service)
        kong_ingress.apply(upstream, service, self.index, self.problems, gateway_api=gateway_api)
        ann.apply_service_annotations(record, upstream, o.anns(service), ref, self.problems)
        service_tls.apply(record, service, self.index, self.problems, self.client_certs)
        if (policy_name := o.anns(service).get(UPSTREAM_POLICY)) is not None:
            ns = o.namespace(service)
            policy = self.index.get("KongUpstreamPolicy", ns, policy_name)
            if policy is None:
                self.problems.append(
                    Problem(ref, f"KongUpstreamPolicy {ns}/{policy_name} not found; not applied")
                )
            else:
                upstream.update(policy_fields(o.spec(policy)))

    def add_service(
        self,
        kong_name: str,
        service: Obj,
        port_key: str,
        port: Mapping[str, Any],
        root_path: bool = True,
        protocol: str = "http",
    ) -> bool:
        """Add the Kong service of a Service port and its upstream; False (nothing added) when
        that upstream is already there with other targets: the TCP and the UDP port of one
        number, which KIC's upstream name (``<svc>.<ns>.<port>.svc``) cannot tell apart."""
        ns, name, ref = o.namespace(service), o.name(service), ObjectRef.of(service)
        host = naming.upstream_name(ns, name, port_key)
        upstream_dns = self.params.get("serviceUpstream") is True
        found = targets(self.index, service, port, upstream_dns)
        if host in self.upstreams and self.upstreams[host]["targets"] != found:
            return False
        record = service_record(kong_name, host, port.get("port", 80), root_path, protocol)
        record = self.note(record, ref)
        record["tags"] = o.tags(service)
        upstream = self.note({"name": host, "tags": o.tags(service)}, ref)
        self.apply_backend_service(record, upstream, service)
        for target in found:
            self.note(target, _tag_ref(target["tags"]) or ref)
        upstream["targets"] = found
        self.services[kong_name] = record
        self.upstreams[host] = upstream
        self.k8s_services.setdefault((ns, name), []).append(kong_name)
        return True

    def add_unbacked_service(
        self, kong_name: str, ns: str, backend: Backend, ref: ObjectRef, root_path: bool
    ) -> None:
        """The Kong service of a backend whose Service (or port) does not exist: KIC's
        defaults and an upstream with no targets (tagged for the Ingress that names it)."""
        host = naming.upstream_name(ns, backend.service, backend.port)
        # KIC takes the port from the Service it did not find: the default stays.
        record = self.note(service_record(kong_name, host, 80, root_path), ref)
        self.services[kong_name] = record
        self.upstreams[host] = self.note({"name": host, "targets": []}, ref)

    def _sorted_service(self, record: dict[str, Any]) -> dict[str, Any]:
        record["routes"].sort(key=lambda r: r["name"])
        for route in record["routes"]:
            route["plugins"] = sorted(route.get("plugins", []), key=_plugin_key)
        record["plugins"].sort(key=_plugin_key)
        return record

    # -- consumers -----------------------------------------------------------------------------
    def add_consumers(self) -> None:
        credentials: list[tuple[ObjectRef, ObjectRef, str, dict[str, Any]]] = []
        for obj in self.index.all("KongConsumer"):
            ref = ObjectRef.of(obj)
            if not self.class_annotation_ok(obj):
                if not o.anns(obj).get(o.INGRESS_CLASS_ANNOTATION):
                    self.problems.append(
                        Problem(
                            ref,
                            f"no {o.INGRESS_CLASS_ANNOTATION} annotation: ignored, as KIC does",
                            "warning",
                        )
                    )
                continue
            built = build_consumer(obj, self.index, self.problems)
            if built is None:
                continue
            consumer, found = built
            if consumer.get("username"):
                # go-kong's FillID needs a username: a custom_id-only consumer gets no ID.
                consumer["id"] = naming.entity_id("consumers", consumer["username"])
            self.note(consumer, ref)
            consumer["plugins"] = []
            self.consumers[(o.namespace(obj), o.name(obj))] = consumer
            credentials += [(ref, secret_ref, plural, rec) for secret_ref, plural, rec in found]
        clashes = conflicts(credentials)
        for i, (ref, secret_ref, plural, record) in enumerate(credentials):
            if i in clashes:
                self.problems.append(Problem(secret_ref, f"{clashes[i]}; left out"))
                where = f"{secret_ref.namespace}/{secret_ref.name}"
                self.problems.append(
                    Problem(ref, f"credential secret {where} left out: {clashes[i]}")
                )
                continue
            consumer = self.consumers[(ref.namespace, ref.name)]
            consumer.setdefault(plural, []).append(self.note(record, secret_ref))

    def _sorted_consumer(self, consumer: dict[str, Any]) -> dict[str, Any]:
        for plural in CREDENTIAL_ARRAYS:
            if plural in consumer:
                consumer[plural].sort(key=credential_sort_key)
        consumer["plugins"].sort(key=_plugin_key)
        return consumer

    # -- plugins -------------------------------------------------------------------------------
    def attach_plugins(self) -> None:
        """KIC's ``getPluginRelations`` + ``buildPlugins``: one Kong plugin per attachment; a
        plugin on both a consumer and routes/services is scoped to each (consumer, route) and
        (consumer, service) pair, nested in the consumer."""
        relations: dict[tuple[str, str], dict[str, list[Any]]] = {}
        referrers: dict[tuple[str, str], list[ObjectRef]] = {}

        def relate(obj: Obj, kind: str, target: dict[str, Any], more: Iterable[str] = ()) -> None:
            names = ann.plugin_names(o.anns(obj))
            for plugin in names + [n for n in more if n not in names]:
                key = (o.namespace(obj), plugin)
                relations.setdefault(key, {"services": [], "routes": [], "consumers": []})
                relations[key][kind].append(target)
                referrers.setdefault(key, []).append(ObjectRef.of(obj))

        for (ns, name), kong_names in sorted(self.k8s_services.items()):
            service = self.index.get("Service", ns, name)
            for kong_name in kong_names:
                relate(service or {}, "services", self.services[kong_name])
        for (ns, name), routes in sorted(self.ingress_routes.items()):
            ingress = self.index.get("Ingress", ns, name) or {}
            for route in routes:
                relate(ingress, "routes", route)
        for (kind, ns, name), pairs in sorted(self.object_routes.items()):
            parent = self.index.get(kind, ns, name) or {}
            for route, extension in pairs:
                relate(parent, "routes", route, extension)
        for (ns, name), consumer in sorted(self.consumers.items()):
            relate(self.index.get("KongConsumer", ns, name) or {}, "consumers", consumer)
        for key in sorted(relations):
            self._attach(key, relations[key], sorted(set(referrers[key])))

    def _attach(
        self, key: tuple[str, str], rel: dict[str, list[Any]], referrers: list[ObjectRef]
    ) -> None:
        obj, why = resolve(self.index, key[0], key[1], self.class_annotation_ok)
        if obj is None:
            for ref in referrers:
                self.problems.append(Problem(ref, f"plugin {key[1]!r} not attached: {why}"))
            return
        ref = ObjectRef.of(obj)
        try:
            template, warnings = build_plugin(obj, self.index)
        except PluginError as exc:
            self.problems.append(Problem(ref, f"{exc}; left out"))
            for referrer in referrers:
                self.problems.append(
                    Problem(referrer, f"plugin {key[1]!r} not attached: {ref} is invalid")
                )
            return
        self.problems.extend(Problem(ref, w, "warning") for w in warnings)
        #: (where the plugin goes, its scope fields, KIC's instance_name hash input, its scope
        #: for the ID)
        placements: list[tuple[list[Any], dict[str, Any], str, dict[str, str]]] = []
        if rel["consumers"]:
            for consumer in rel["consumers"]:
                cid = str(consumer.get("username") or consumer.get("custom_id"))
                scoped = [("service", s["name"]) for s in rel["services"]]
                scoped += [("route", r["name"]) for r in rel["routes"]]
                for field_name, value in scoped:
                    placements.append(
                        (
                            consumer["plugins"],
                            {field_name: value},
                            f"_{field_name}-{value}_consumer-{cid}",
                            {field_name: value, "consumer": cid},
                        )
                    )
                if not scoped:
                    placements.append(
                        (consumer["plugins"], {}, f"_consumer-{cid}", {"consumer": cid})
                    )
        else:
            for s in rel["services"]:
                name = s["name"]
                placements.append((s["plugins"], {}, f"_service-{name}", {"service": name}))
            for r in rel["routes"]:
                name = r["name"]
                holder = r.setdefault("plugins", [])
                placements.append((holder, {}, f"_route-{name}", {"route": name}))
        for holder, scope, scope_key, id_scope in placements:
            plugin = copy.deepcopy(template)
            plugin["id"] = naming.plugin_id(plugin["name"], id_scope)
            if "instance_name" in plugin:
                plugin["instance_name"] = naming.instance_name(
                    plugin["instance_name"], scope_key, self.used_instance_names
                )
            for k, v in scope.items():
                plugin[k] = v
            holder.append(self.note(plugin, ref))

    def globals(self) -> list[dict[str, Any]]:
        out = []
        for ref, record in global_plugins(self.index, self.class_annotation_ok, self.problems):
            record["id"] = naming.plugin_id(record["name"], {})
            out.append(self.note(record, ref))
        return sorted(out, key=_plugin_key)

    # -- TLS -----------------------------------------------------------------------------------
    def certificates(self, ingresses: list[Obj]) -> list[dict[str, Any]]:
        out = []
        by_secret = tls_hosts(ingresses)
        seen = {h for _, hosts in by_secret.values() for h in hosts}
        for gateway, tls_secret, sni in gatewayapi.listener_tls_hosts(self.index, self.gateways):
            key = (o.namespace(tls_secret), o.name(tls_secret))
            _, hosts = by_secret.setdefault(key, (ObjectRef.of(gateway), []))
            if sni not in seen:  # as for Ingresses: a host belongs to the first Secret
                seen.add(sni)
                hosts.append(sni)
        for (ns, name), (ref, hosts) in sorted(by_secret.items()):
            if not hosts:
                continue
            secret = self.index.get("Secret", ns, name)
            if secret is None:
                self.problems.append(Problem(ref, f"TLS secret {ns}/{name} not found"))
                continue
            try:
                data = o.secret_data(secret)
            except ValueError as exc:
                self.problems.append(Problem(ObjectRef.of(secret), str(exc)))
                continue
            if not data.get("tls.crt") or not data.get("tls.key"):
                self.problems.append(
                    Problem(ObjectRef.of(secret), "TLS secret needs tls.crt and tls.key")
                )
                continue
            cert: dict[str, Any] = {}
            uid = o.meta(secret).get("uid")
            if isinstance(uid, str) and _is_uuid(uid):
                cert["id"] = uid
            # KIC's getCertFromSecret trims surrounding whitespace from both.
            cert.update(
                cert=data["tls.crt"].strip(), key=data["tls.key"].strip(), tags=o.tags(secret)
            )
            cert["snis"] = [
                self.note({"name": h, "tags": o.tags(secret)}, ObjectRef.of(secret))
                for h in sorted(hosts)
            ]
            out.append(self.note(cert, ObjectRef.of(secret)))
        ids = {c.get("id") for c in out}
        for _, secret in sorted(self.client_certs.items()):
            record = service_tls.client_certificate(secret, self.problems)
            if record is not None and record["id"] not in ids:  # else: also an Ingress's TLS
                ids.add(record["id"])
                out.append(self.note(record, ObjectRef.of(secret)))
        return sorted(
            out, key=lambda c: (c["snis"][0]["name"] if c.get("snis") else "", c.get("id", ""))
        )


def _plugin_key(plugin: dict[str, Any]) -> tuple[str, ...]:
    return (
        plugin["name"],
        str(plugin.get("route", "")),
        str(plugin.get("service", "")),
        str(plugin.get("instance_name", "")),
        o.canonical(plugin.get("tags")),
    )


def _tag_ref(tags: list[str]) -> ObjectRef | None:
    values = dict(t.split(":", 1) for t in tags if ":" in t)
    if "k8s-kind" not in values or "k8s-name" not in values:
        return None
    return ObjectRef(values["k8s-kind"], values.get("k8s-namespace", ""), values["k8s-name"])


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
