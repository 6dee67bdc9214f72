"""The controller's object cache: every watched object by ``(kind, namespace, name)``.

The reflectors (:mod:`fastkong.k8s.watch`) are its only writers. Watch events go through
:meth:`Store.apply`; a (re-)list goes through :meth:`Store.replace`, which diffs the listed
objects against the cache so that an object deleted while no watch was open (a dropped stream,
a 410 Gone) is removed as if its DELETED event had arrived. Every change bumps
:attr:`Store.generation` and calls the change callback, which the controller uses to schedule
a (debounced) translation. Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, Literal

Key = tuple[str, str, str]
Obj = dict[str, Any]
Delta = tuple[Literal["ADDED", "MODIFIED", "DELETED"], Obj]

#: Metadata that changes on every write but means nothing to the translator.
_VOLATILE_METADATA: Final = ("managedFields",)


def key_of(obj: Mapping[str, Any]) -> Key:
    meta = obj.get("metadata") or {}
    return (str(obj.get("kind", "")), str(meta.get("namespace") or ""), str(meta.get("name", "")))


def resource_version(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


def slim(obj: Obj) -> Obj:
    """Drop what the controller never reads (``managedFields`` is often the bulk of an object)."""
    meta = obj.get("metadata")
    if isinstance(meta, dict) and any(k in meta for k in _VOLATILE_METADATA):
        obj = {**obj, "metadata": {k: v for k, v in meta.items() if k not in _VOLATILE_METADATA}}
    return obj


class Store:
    """Objects by ``(kind, namespace, name)``, plus per-kind bookkeeping for the reflectors."""

    def __init__(self, on_change: Callable[[str, Delta], None] | None = None) -> None:
        self._objects: dict[Key, Obj] = {}
        self._on_change = on_change
        #: Bumped on every change; the controller compares it to skip idle translations.
        self.generation = 0
        #: Kinds whose first list has completed (the cache is complete for them).
        self.synced: set[str] = set()

    def __repr__(self) -> str:
        counts: dict[str, int] = {}
        for kind, _, _ in self._objects:
            counts[kind] = counts.get(kind, 0) + 1
        shown = " ".join(f"{k}={n}" for k, n in sorted(counts.items())) or "empty"
        return f"<Store gen={self.generation} {shown} synced={len(self.synced)}>"

    def __len__(self) -> int:
        return len(self._objects)

    def get(self, kind: str, namespace: str, name: str) -> Obj | None:
        return self._objects.get((kind, namespace, name))

    def objects(self, kind: str | None = None) -> list[Obj]:
        """Every object (of ``kind``), in key order."""
        return [obj for key, obj in sorted(self._objects.items()) if kind is None or key[0] == kind]

    def keys(self, kind: str) -> set[Key]:
        return {key for key in self._objects if key[0] == kind}

    def apply(self, event_type: str, obj: Obj) -> bool:
        """One watch event (``ADDED``, ``MODIFIED``, ``DELETED``); True when the cache changed."""
        obj = slim(obj)
        key = key_of(obj)
        if event_type == "DELETED":
            old = self._objects.pop(key, None)
            if old is None:
                return False
            self._changed(key[0], ("DELETED", old))
            return True
        old = self._objects.get(key)
        if old is not None and old == obj:
            return False
        self._objects[key] = obj
        self._changed(key[0], ("ADDED" if old is None else "MODIFIED", obj))
        return True

    def replace(self, kind: str, objects: Iterable[Obj]) -> list[Delta]:
        """A complete list of ``kind``: add what is new, update what changed, delete what is
        gone (objects deleted while no watch was open). Returns the deltas it applied."""
        listed: dict[Key, Obj] = {}
        for obj in objects:
            obj = slim(obj)
            listed[key_of(obj)] = obj
        deltas: list[Delta] = []
        for key in sorted(self.keys(kind) - listed.keys()):
            deltas.append(("DELETED", self._objects.pop(key)))
        for key, obj in sorted(listed.items()):
            old = self._objects.get(key)
            if old == obj:
                continue
            self._objects[key] = obj
            deltas.append(("ADDED" if old is None else "MODIFIED", obj))
        self.synced.add(kind)
        for delta in deltas:
            self._changed(kind, delta)
        return deltas

    def _changed(self, kind: str, delta: Delta) -> None:
        self.generation += 1
        if self._on_change is not None:
            self._on_change(kind, delta)
