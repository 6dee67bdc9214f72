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
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Final

from fastkong.k8s import objects as o
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


def _generation(obj: Obj) -> int:
    value = o.meta(obj).get("generation")
    return value if isinstance(value, int) else 1


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
        condition = {
            "type": PROGRAMMED,
            "status": "True" if ok else "False",
            "reason": reason,
            "message": message,
            "observedGeneration": _generation(obj),
        }
        kept = [c for c in conditions if c.get("type") != PROGRAMMED]
        key = (str(kind), ref.namespace, ref.name)
        out[key] = {**(status or {}), "conditions": [*kept, condition]}
    return out


__all__ = ["KINDS", "desired"]
