"""Gateway API BackendTLSPolicy -> TLS towards a Service's pods, as KIC 3 translates it
(``kic:internal/dataplane/translator/ingressrules.go``, ``handleBackendTLSPolices``).

A policy (``gateway.networking.k8s.io``, ``v1alpha3`` as KIC reads it; ``v1`` has the same
fields) names Services in its namespace in ``spec.targetRefs`` (group ``""``, kind
``Service``). For the Kong services made from such a Service (for any route kind, Ingress
included, as in KIC), the policy reads as these annotations on the Service:

- ``konghq.com/protocol: https`` and ``konghq.com/tls-verify: "true"``;
- ``konghq.com/host-header``: ``spec.validation.hostname``, which Kong then sends as the Host
  and as the TLS server name, and checks the pod's certificate against;
- ``konghq.com/ca-certificates-secrets``: the ``spec.validation.caCertificateRefs`` of kind
  Secret (CA certificate Secrets, labelled ``konghq.com/ca-cert: "true"``, as for the
  annotation). Refs of kind ConfigMap are reported: fastkong does not read CA ConfigMaps;
- ``konghq.com/tls-verify-depth``: ``spec.options["gateway.konghq.com/tls-verify-depth"]``
  when it is a whole number of 0 or more.

``wellKnownCACertificates: System`` needs nothing more (Kong verifies against the system's
CAs when a service names none); ``subjectAltNames`` is not read (KIC does not either). A Service
that two or more policies target gets none of them and a problem, as in KIC.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from fastkong.k8s import annotations as ann
from fastkong.k8s import objects as o
from fastkong.k8s.objects import Index, Obj, ObjectRef, Problem

KIND: Final = "BackendTLSPolicy"
DEPTH_OPTION: Final = "gateway.konghq.com/tls-verify-depth"


class BackendTlsPolicies:
    """The translation's policies, by the Service they target (built once per translation, so a
    Service's problem is reported once however many Kong services it backs)."""

    def __init__(self, index: Index, problems: list[Problem]) -> None:
        targeted: dict[tuple[str, str], list[Obj]] = {}
        for policy in sorted(index.all(KIND), key=lambda p: (o.namespace(p), o.name(p))):
            for ref in o.spec(policy).get("targetRefs") or []:
                if not isinstance(ref, Mapping):
                    continue
                if (ref.get("group") or "") != "" or ref.get("kind") != "Service":
                    continue
                key = (o.namespace(policy), str(ref.get("name")))
                if policy not in targeted.setdefault(key, []):
                    targeted[key].append(policy)
        #: (namespace, Service name) -> the annotations its one policy stands for.
        self.annotations: dict[tuple[str, str], dict[str, str]] = {}
        for (ns, name), policies in sorted(targeted.items()):
            service = index.get("Service", ns, name)
            if len(policies) > 1:
                names = ", ".join(o.name(p) for p in policies)
                where = ObjectRef.of(service) if service is not None else ObjectRef.of(policies[0])
                problems.append(
                    Problem(where, f"Multiple BackendTLSPolicies attached to service ({names})")
                )
                continue
            self.annotations[(ns, name)] = _annotations(policies[0], problems)

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


def _annotations(policy: Obj, problems: list[Problem]) -> dict[str, str]:
    spec = o.spec(policy)
    validation = spec.get("validation")
    validation = validation if isinstance(validation, Mapping) else {}
    out = {ann.PREFIX + "protocol": "https", ann.PREFIX + "tls-verify": "true"}
    if hostname := validation.get("hostname"):
        out[ann.PREFIX + "host-header"] = str(hostname)
    secrets: list[str] = []
    for ref in validation.get("caCertificateRefs") or []:
        if not isinstance(ref, Mapping):
            continue
        if ref.get("kind") == "Secret":
            secrets.append(str(ref.get("name")))
        elif ref.get("kind") == "ConfigMap":
            problems.append(
                Problem(
                    ObjectRef.of(policy),
                    f"caCertificateRefs ConfigMap {ref.get('name')!r}: CA certificates from "
                    "ConfigMaps are not supported yet; not used",
                    "warning",
                )
            )
    if secrets:
        out[ann.PREFIX + "ca-certificates-secrets"] = ",".join(secrets)
    options: Any = spec.get("options")
    depth = options.get(DEPTH_OPTION) if isinstance(options, Mapping) else None
    if isinstance(depth, str) and depth.strip().isdigit():
        out[ann.PREFIX + "tls-verify-depth"] = depth.strip()
    return out


__all__ = ["BackendTlsPolicies", "KIND"]
