"""KongVault -> Kong ``vaults`` entities (KIC's ``FillVaults``).

A KongVault (``configuration.konghq.com/v1alpha1``, cluster-scoped) of our ingress class (its
``kubernetes.io/ingress.class`` annotation, or none while our IngressClass is the default)
becomes one vault: ``name`` its ``spec.backend``, ``prefix``, ``description``, ``config`` and
the object's tags. Secret references in plugin configs, ``{vault://<prefix>/<name>}``, then
resolve through it. Two KongVaults with one prefix: the older wins (then the first by name),
and the other is reported ``spec.prefix "<p>" is duplicate``, as KIC does. A backend the data
plane does not have (fastkong has Kong OSS's ``env``) is left out by the config check, with its
reason on the KongVault.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastkong.k8s import objects as o
from fastkong.k8s.objects import Index, Obj, ObjectRef, Problem

KIND = "KongVault"


def vaults(
    index: Index, ours: Callable[[Obj], bool], problems: list[Problem]
) -> list[tuple[dict[str, Any], Obj]]:
    """The vault records of ``index``'s KongVaults that ``ours`` accepts, each with its object."""
    chosen: dict[str, Obj] = {}
    for obj in sorted(index.all(KIND), key=lambda v: (o.created(v), o.name(v))):
        if not ours(obj):
            continue
        spec = obj.get("spec")
        prefix = spec.get("prefix") if isinstance(spec, dict) else None
        if not isinstance(prefix, str) or not prefix:
            problems.append(Problem(ObjectRef.of(obj), "spec.prefix is missing"))
            continue
        if prefix in chosen:
            problems.append(Problem(ObjectRef.of(obj), f'spec.prefix "{prefix}" is duplicate'))
            continue
        chosen[prefix] = obj
    out: list[tuple[dict[str, Any], Obj]] = []
    for prefix, obj in sorted(chosen.items()):
        spec = obj["spec"]
        config = spec.get("config", {})
        if config is None:
            config = {}
        if not isinstance(config, dict):
            problems.append(
                Problem(
                    ObjectRef.of(obj),
                    f"failed to parse configuration of vault {o.name(obj)!r} to JSON: "
                    "not an object",
                )
            )
            continue
        record: dict[str, Any] = {"name": spec.get("backend"), "prefix": prefix}
        if spec.get("description"):
            record["description"] = str(spec["description"])
        record["config"] = config
        record["tags"] = o.tags(obj)
        out.append((record, obj))
    return out


__all__ = ["KIND", "vaults"]
