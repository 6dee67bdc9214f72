"""The ``Programmed`` condition of Kong's CRDs (KIC's ``EnsureProgrammedCondition``).

``kubectl get kongplugins`` (and KongClusterPlugins, KongConsumers, KongVaults) shows a
PROGRAMMED column read from ``status.conditions``. After each config is delivered, every such
object the controller answers for gets KIC's condition:

- ``True`` / ``Programmed`` ("Object was successfully configured in Kong.") when an entity of
  the delivered config came from it;
- ``False`` / ``Invalid`` ("... see its attached Events ...") when a problem (an Event) names
  it: it did not translate, or its entity was left out because it did not validate;
- ``False`` / ``Pending`` otherwise (a KongPlugin nothing attaches, say). As in KIC, an object
  that already has a ``Programmed`` condition keeps it rather than turn Pending.

KongPlugins have no class: all are ours (KIC's reconciler takes every one). KongClusterPlugins,
KongConsumers and KongVaults are ours by their ``kubernetes.io/ingress.class`` annotation (or
none while our IngressClass is the default). Only the ``Programmed`` entry of the conditions is
changed; the write is skipped when it would change nothing.

**KongUpstreamPolicy** status is a Gateway API policy status instead (KIC's
``enforceKongUpstreamPolicyStatus``): ``status.ancestors``, one per Service that names the
policy (``konghq.com/upstream-policy``), oldest first, 16 at most, each with our controller
name and two conditions: ``Accepted`` (False ``Conflicted`` when an HTTPRoute rule sends to the
Service together with a Service that does not name the policy: one Kong upstream cannot follow
two policies) and ``Programmed`` (False ``Pending`` when the Service made no entity of the
delivered config, or is conflicted). A policy none of whose Services is in the delivered config
is left alone, as KIC leaves a policy no backend of its class uses.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Final

from fastkong.k8s import objects as o
from fastkong.k8s.gateway_status import condition as status_condition
from fastkong.k8s.gateway_status import generation
from fastkong.k8s.objects import Obj, ObjectRef, Problem

Key = tuple[str, str, str]
#: The kinds whose status carries the condition.
KINDS: Final = ("KongPlugin", "KongClusterPlugin", "KongConsumer", "KongVault")
PROGRAMMED: Final = "Programmed"
TRUE_MESSAGE: Final = "Object was successfully configured in Kong."
INVALID_MESSAGE: Final = (
    "Object failed to be configured in Kong - see its attached Events for more information."
)
PENDING_MESSAGE: Final = "Object is pending configuration in Kong."


def desired(
    objects: Iterable[Obj],
    translated: Iterable[ObjectRef],
    problems: Iterable[Problem],
    ours: Callable[[Obj], bool],
) -> dict[Key, dict[str, Any]]:
    """The status each of our Kong CRD objects should have (its other conditions kept), for
    the objects whose ``Programmed`` condition is to be written."""
    done = set(translated)
    failed = {p.ref for p in problems if p.level == "error"}
    out: dict[Key, dict[str, Any]] = {}
    for obj in objects:
        kind = obj.get("kind")
        if kind not in KINDS or (kind != "KongPlugin" and not ours(obj)):
            continue
        ref = ObjectRef.of(obj)
        status = obj.get("status") if isinstance(obj.get("status"), dict) else {}
        conditions = [c for c in (status or {}).get("conditions") or [] if isinstance(c, dict)]
        had = any(c.get("type") == PROGRAMMED for c in conditions)
        if ref in failed:
            entry = (False, "Invalid", INVALID_MESSAGE)
        elif ref in done:
            entry = (True, PROGRAMMED, TRUE_MESSAGE)
        elif had:
            continue  # KIC never turns a known state back to Pending
        else:
            entry = (False, "Pending", PENDING_MESSAGE)
        ok, reason, message = entry
        condition = status_condition(PROGRAMMED, ok, reason, generation(obj), message)
        kept = [c for c in conditions if c.get("type") != PROGRAMMED]
        key = (str(kind), ref.namespace, ref.name)
        out[key] = {**(status or {}), "conditions": [*kept, condition]}
    return out


POLICY_KIND: Final = "KongUpstreamPolicy"
POLICY_ANNOTATION: Final = "konghq.com/upstream-policy"
MAX_ANCESTORS: Final = 16


def _rule_services(route: Obj) -> list[set[tuple[str, str]]]:
    """Each rule of an HTTPRoute: the Services (namespace, name) its backendRefs name."""
    ns = o.namespace(route)
    out = []
    for rule in o.spec(route).get("rules") or []:
        found = set()
        for ref in rule.get("backendRefs") or [] if isinstance(rule, dict) else []:
            if (
                isinstance(ref, dict)
                and ref.get("kind", "Service") == "Service"
                and (ref.get("group") or "") in ("", "core")
            ):
                found.add((str(ref.get("namespace") or ns), str(ref.get("name"))))
        out.append(found)
    return out


def policy_status(
    policies: Iterable[Obj],
    services: Iterable[Obj],
    routes: Iterable[Obj],
    translated: Iterable[ObjectRef],
    controller: str,
) -> dict[Key, dict[str, Any]]:
    """The ``status`` each KongUpstreamPolicy should have (see the module docstring)."""
    done = set(translated)
    naming: dict[tuple[str, str], list[Obj]] = {}
    for svc in services:
        name = o.anns(svc).get(POLICY_ANNOTATION)
        if name:
            naming.setdefault((o.namespace(svc), name), []).append(svc)
    rules = [r for route in routes for r in _rule_services(route)]
    out: dict[Key, dict[str, Any]] = {}
    for policy in policies:
        ns, name = o.namespace(policy), o.name(policy)
        users = naming.get((ns, name), [])
        if not any(ObjectRef.of(s) in done for s in users):
            continue
        mine = {(o.namespace(s), o.name(s)) for s in users}
        version = generation(policy)
        ancestors = []
        for svc in sorted(users, key=lambda s: (o.created(s), o.namespace(s), o.name(s))):
            key = (o.namespace(svc), o.name(svc))
            conflicted = any(key in rule and not rule <= mine for rule in rules)
            programmed = ObjectRef.of(svc) in done and not conflicted
            ancestors.append(
                {
                    "ancestorRef": {
                        "group": "core",
                        "kind": "Service",
                        "namespace": key[0],
                        "name": key[1],
                    },  # fmt: skip
                    "controllerName": controller,
                    "conditions": [
                        status_condition(
                            "Accepted",
                            not conflicted,
                            "Conflicted" if conflicted else "Accepted",
                            version,
                        ),
                        status_condition(
                            "Programmed",
                            programmed,
                            "Programmed" if programmed else "Pending",
                            version,
                        ),
                    ],  # fmt: skip
                }
            )
        out[(POLICY_KIND, ns, name)] = {"ancestors": ancestors[:MAX_ANCESTORS]}
    return out


__all__ = ["KINDS", "desired", "policy_status"]
