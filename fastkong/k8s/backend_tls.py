"""Gateway API BackendTLSPolicy -> TLS towards a Service's pods, as KIC 3 translates it
(``kic:internal/dataplane/translator/ingressrules.go``, ``handleBackendTLSPolices``).

A policy (``gateway.networking.k8s.io``: ``v1``, standard since Gateway API v1.4, else
``v1alpha3``, the version KIC reads; the fields are the same) names Services in its namespace
in ``spec.targetRefs`` (group ``""``, kind ``Service``). For the Kong services made from such a
Service (for any route kind, Ingress included, as in KIC), the policy reads as these
annotations on the Service:

- ``konghq.com/protocol: https`` and ``konghq.com/tls-verify: "true"``;
- ``konghq.com/host-header``: ``spec.validation.hostname``, which Kong then sends as the Host
  and as the TLS server name, and checks the pod's certificate against;
- ``konghq.com/ca-certificates-secrets`` and ``konghq.com/ca-certificates-configmaps``: the
  ``spec.validation.caCertificateRefs`` of kind Secret and ConfigMap (CA certificates,
  labelled ``konghq.com/ca-cert: "true"`` and holding an ``id``, as for the annotations);
- ``konghq.com/tls-verify-depth``: ``spec.options["gateway.konghq.com/tls-verify-depth"]``
  when it is a whole number of 0 or more.

``wellKnownCACertificates: System`` needs nothing more (Kong verifies against the system's
CAs when a service names none); ``subjectAltNames`` is not read (KIC does not either). A Service
that two or more policies target gets none of them and a problem, as in KIC.

**Status** (:func:`ancestors`, written with the rest of the Gateway API status): one
``status.ancestors`` entry per Gateway of ours that carries an HTTPRoute to a Service the
policy targets (at most 16), with our ``controllerName`` and KIC's ``Accepted`` condition:
True, or False ``Conflicted`` (another policy targets one of its Services) or ``Invalid`` (a CA
ref that is not a core Secret or ConfigMap, a CA Secret or ConfigMap that does not exist,
``subjectAltNames``). Unlike KIC, ``wellKnownCACertificates: System`` is accepted. Other
controllers' entries are kept.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from fastkong.k8s import annotations as ann
from fastkong.k8s import objects as o
from fastkong.k8s import service_tls
from fastkong.k8s.objects import Index, Obj, ObjectRef, Problem

KIND: Final = "BackendTLSPolicy"
DEPTH_OPTION: Final = "gateway.konghq.com/tls-verify-depth"
#: The Gateway API's limit on a policy's ``status.ancestors``.
MAX_ANCESTORS: Final = 16


def targets(policy: Obj) -> list[tuple[str, str]]:
    """The (namespace, name) of each Service the policy's ``targetRefs`` name."""
    out: list[tuple[str, str]] = []
    for ref in o.spec(policy).get("targetRefs") or []:
        if not isinstance(ref, Mapping) or ref.get("kind") != "Service":
            continue
        key = (o.namespace(policy), str(ref.get("name")))
        if ref.get("group") in (None, "", "core") and key not in out:
            out.append(key)
    return out


def targeted(index: Index) -> dict[tuple[str, str], list[Obj]]:
    """Service (namespace, name) -> the policies that target it, by namespace and name."""
    out: dict[tuple[str, str], list[Obj]] = {}
    for policy in sorted(index.all(KIND), key=lambda p: (o.namespace(p), o.name(p))):
        for key in targets(policy):
            out.setdefault(key, []).append(policy)
    return out


class BackendTlsPolicies:
    """The translation's policies, by the Service they target (built once per translation, so a
    Service's problem is reported once however many Kong services it backs)."""

    def __init__(self, index: Index, problems: list[Problem]) -> None:
        #: (namespace, Service name) -> the annotations its one policy stands for.
        self.annotations: dict[tuple[str, str], dict[str, str]] = {}
        for (ns, name), policies in sorted(targeted(index).items()):
            service = index.get("Service", ns, name)
            if len(policies) > 1:
                names = ", ".join(o.name(p) for p in policies)
                where = ObjectRef.of(service) if service is not None else ObjectRef.of(policies[0])
                problems.append(
                    Problem(where, f"Multiple BackendTLSPolicies attached to service ({names})")
                )
                continue
            self.annotations[(ns, name)] = _annotations(policies[0])

    def __repr__(self) -> str:
        return f"<BackendTlsPolicies services={sorted(self.annotations)}>"

    def apply(self, service: Obj) -> Obj:
        """``service`` as the translator reads it: a copy carrying its policy's annotations,
        or itself when no policy targets it."""
        extra = self.annotations.get((o.namespace(service), o.name(service)))
        if not extra:
            return service
        meta = dict(service.get("metadata") or {})
        meta["annotations"] = {**o.anns(service), **extra}
        return {**service, "metadata": meta}


def _annotations(policy: Obj) -> dict[str, str]:
    spec = o.spec(policy)
    validation = spec.get("validation")
    validation = validation if isinstance(validation, Mapping) else {}
    out = {ann.PREFIX + "protocol": "https", ann.PREFIX + "tls-verify": "true"}
    if hostname := validation.get("hostname"):
        out[ann.PREFIX + "host-header"] = str(hostname)
    refs: dict[str, list[str]] = {"Secret": [], "ConfigMap": []}
    for ref in validation.get("caCertificateRefs") or []:
        if isinstance(ref, Mapping) and ref.get("kind") in refs:
            refs[str(ref["kind"])].append(str(ref.get("name")))
    if refs["Secret"]:
        out[ann.PREFIX + "ca-certificates-secrets"] = ",".join(refs["Secret"])
    if refs["ConfigMap"]:
        out[ann.PREFIX + "ca-certificates-configmaps"] = ",".join(refs["ConfigMap"])
    options: Any = spec.get("options")
    depth = options.get(DEPTH_OPTION) if isinstance(options, Mapping) else None
    if isinstance(depth, str) and depth.strip().isdigit():
        out[ann.PREFIX + "tls-verify-depth"] = depth.strip()
    return out


def accepted(
    index: Index, policy: Obj, by_service: Mapping[tuple[str, str], list[Obj]]
) -> tuple[bool, str, str]:
    """KIC's ``Accepted`` condition of ``policy``: (status, reason, message)."""
    if any(len(by_service.get(key, ())) > 1 for key in targets(policy)):
        return False, "Conflicted", "Multiple BackendTLSPolicies target the same service"
    ns = o.namespace(policy)
    validation = o.spec(policy).get("validation")
    validation = validation if isinstance(validation, Mapping) else {}
    invalid = []
    for ref in validation.get("caCertificateRefs") or []:
        ref = ref if isinstance(ref, Mapping) else {}
        kind, name = ref.get("kind"), str(ref.get("name"))
        if ref.get("group") not in (None, "", "core") or kind not in ("Secret", "ConfigMap"):
            invalid.append(
                "CACertificateRefs must reference ConfigMaps or Secrets in the core group"
            )
            break
        found = index.get(str(kind), ns, name)
        if found is None or (kind == "ConfigMap" and not service_tls.is_ca_object(found)):
            invalid.append(f"{kind} {ns}/{name} set as CACertificateRef not found")
            break
    if validation.get("subjectAltNames"):
        invalid.append("SubjectAltNames feature is not currently supported")
    if invalid:
        return False, "Invalid", " - ".join(invalid)
    return True, "Accepted", ""


Condition = Callable[[str, bool, str, int, str], dict[str, Any]]


def ancestors(
    index: Index,
    policy: Obj,
    by_service: Mapping[tuple[str, str], list[Obj]],
    gateways_of: Callable[[tuple[str, str]], list[tuple[str, str]]],
    controller: str,
    condition: Condition,
) -> list[dict[str, Any]]:
    """Our ``status.ancestors`` entries for ``policy`` (module docstring): ``gateways_of`` gives
    the Gateways of ours that carry a route to a Service, ``condition`` builds a condition."""
    found: list[tuple[str, str]] = []
    for key in targets(policy):
        found += [g for g in gateways_of(key) if g not in found]
    ok, reason, message = accepted(index, policy, by_service)
    generation = o.meta(policy).get("generation")
    generation = generation if isinstance(generation, int) else 1
    return [
        {
            "ancestorRef": {
                "group": "gateway.networking.k8s.io",
                "kind": "Gateway",
                "namespace": ns,
                "name": name,
            },
            "controllerName": controller,
            "conditions": [condition("Accepted", ok, reason, generation, message)],
        }
        for ns, name in sorted(found)[:MAX_ANCESTORS]
    ]


__all__ = ["BackendTlsPolicies", "KIND", "accepted", "ancestors", "targeted", "targets"]
