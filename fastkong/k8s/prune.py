"""Leave out what does not validate, instead of rejecting the whole config.

KIC pushes one config; if Kong rejects any part of it, nothing changes (unless the alpha
``FallbackConfiguration`` gate is on). We validate the translated config with fastkong's own
config layer, map every error to the innermost entity at its path, drop that entity (with its
nested children, and top-level records that referred to it) and validate again, until the
config is valid. Each dropped entity becomes a :class:`~fastkong.k8s.objects.Problem` on the
Kubernetes object it came from.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import Any, Final

from fastkong.k8s.objects import ObjectRef, Problem

#: Entity arrays that may be nested in a parent record, per parent array (Kong's nesting rules).
NESTED: Final[dict[str, tuple[str, ...]]] = {
    "services": ("routes", "plugins"),
    "routes": ("plugins",),
    "consumers": (
        "plugins",
        "keyauth_credentials",
        "basicauth_credentials",
        "hmacauth_credentials",
        "jwt_secrets",
        "acls",
    ),
    "upstreams": ("targets",),
    "certificates": ("snis",),
}
SINGULAR: Final = {
    "services": "service",
    "routes": "route",
    "plugins": "plugin",
    "consumers": "consumer",
    "upstreams": "upstream",
    "targets": "target",
    "certificates": "certificate",
    "ca_certificates": "CA certificate",
    "snis": "sni",
    "keyauth_credentials": "key-auth credential",
    "basicauth_credentials": "basic-auth credential",
    "hmacauth_credentials": "hmac-auth credential",
    "jwt_secrets": "jwt credential",
    "acls": "acl",
    "vaults": "vault",
}
#: How a top-level plugin refers to its scope, per entity array.
_REF_FIELDS: Final = {"services": "service", "routes": "route", "consumers": "consumer"}
MAX_ROUNDS: Final = 50
_TOKEN = re.compile(r"\[(\d+)\]|\[\"((?:[^\"\\]|\\.)*)\"\]|([^.\[\]]+)")

Loc = tuple[str | int, ...]
#: ``(errors as (loc, message) pairs)`` or an empty list when the config is valid.
Validator = Callable[[dict[str, Any]], list[tuple[Loc, str]]]


def parse_path(path: str) -> Loc:
    """``services[0].routes[1].paths[0]`` -> ``("services", 0, "routes", 1, "paths", 0)``."""
    out: list[str | int] = []
    for index, quoted, plain in _TOKEN.findall(path):
        if index:
            out.append(int(index))
        elif quoted:
            out.append(quoted)
        elif plain.isdigit():
            out.append(int(plain))
        else:
            out.append(plain)
    return tuple(out)


def describe(plural: str, record: dict[str, Any]) -> str:
    label = (
        record.get("name")
        or record.get("username")
        or record.get("custom_id")
        or record.get("target")
        or record.get("group")
        or ""
    )
    return f"{SINGULAR.get(plural, plural)} {label!r}" if label else SINGULAR.get(plural, plural)


class Pruner:
    """Drops invalid entities from a config built by the translator.

    ``origin`` maps ``id(record)`` to the Kubernetes object each entity record came from.
    """

    def __init__(self, config: dict[str, Any], origin: dict[int, ObjectRef]) -> None:
        self.config = config
        self.origin = origin
        self.problems: list[Problem] = []
        self._removed: list[tuple[str, dict[str, Any]]] = []

    def run(self, validate: Validator) -> None:
        for _ in range(MAX_ROUNDS):
            errors = validate(self.config)
            if not errors:
                return
            dropped = 0
            located: list[tuple[str, list[Any], dict[str, Any], Loc, str]] = []
            for loc, message in errors:
                found = self._locate(loc)
                if found is None:
                    continue
                plural, container, record, rest = found
                located.append((plural, container, record, rest, message))
            for plural, container, record, rest, message in located:
                if any(r is record for r in container):
                    where = format_loc(rest)
                    self._drop(
                        plural, container, record, f"{where}: {message}" if where else message
                    )
                    dropped += 1
            if not dropped:
                text = "; ".join(f"{format_loc(loc)}: {msg}" for loc, msg in errors[:5])
                self.problems.append(
                    Problem(ObjectRef("Config", "", ""), f"the config does not validate: {text}")
                )
                return
            self._drop_dangling()

    def _locate(self, loc: Loc) -> tuple[str, list[Any], dict[str, Any], Loc] | None:
        """The innermost entity record on ``loc``: (its array name, the list holding it, the
        record, the rest of ``loc`` inside it)."""
        found = None
        node: Any = self.config
        plural_ok: Sequence[str] = tuple(SINGULAR)  # at the top level, any entity array
        i = 0
        while i + 1 < len(loc):
            key, idx = loc[i], loc[i + 1]
            if not isinstance(key, str) or key not in plural_ok or not isinstance(idx, int):
                break
            container = node.get(key) if isinstance(node, dict) else None
            if not isinstance(container, list) or not 0 <= idx < len(container):
                break
            node = container[idx]
            found = (key, container, node, loc[i + 2 :])
            plural_ok = NESTED.get(key, ())
            i += 2
        return found

    def _drop(self, plural: str, container: list[Any], record: dict[str, Any], why: str) -> None:
        container[:] = [r for r in container if r is not record]
        self._report(plural, record, f"{describe(plural, record)} left out: {why}")
        self._removed.append((plural, record))

    def _report(self, plural: str, record: dict[str, Any], message: str) -> None:
        ref = self.origin.get(id(record), ObjectRef("Config", "", ""))
        self.problems.append(Problem(ref, message))
        parent = describe(plural, record)
        for child_plural in NESTED.get(plural, ()):
            for child in record.get(child_plural) or []:
                child_ref = self.origin.get(id(child))
                if child_ref is not None and child_ref != ref:
                    self._report(
                        child_plural,
                        child,
                        f"{describe(child_plural, child)} left out with its {parent}",
                    )

    def _drop_dangling(self) -> None:
        """Top-level plugins, and plugins nested in a consumer, that name a dropped route or
        service go too (they would fail as invalid references on the next round)."""
        gone: dict[str, set[str]] = {}
        for plural, record in self._removed:
            names = gone.setdefault(plural, set())
            for field in ("name", "username"):
                if record.get(field):
                    names.add(str(record[field]))
            for child in record.get("routes") or []:
                gone.setdefault("routes", set()).add(str(child.get("name")))
        self._removed.clear()
        holders: list[list[Any]] = [self.config.get("plugins") or []]
        holders += [c.get("plugins") or [] for c in self.config.get("consumers") or []]
        for plugins in holders:
            for plugin in list(plugins):
                for plural, field in _REF_FIELDS.items():
                    if plugin.get(field) is not None and str(plugin[field]) in gone.get(plural, ()):
                        reason = f"its {SINGULAR[plural]} {plugin[field]!r} was left out"
                        self._drop("plugins", plugins, plugin, reason)
                        break


def format_loc(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def config_layer_validator() -> Validator | None:
    """A validator backed by :func:`fastkong.config.load_config`, or None while that layer is
    not installed."""
    try:
        from fastkong.config import ConfigError, load_config  # noqa: PLC0415 (may not exist)
        from fastkong.config.vault import references_unresolved  # noqa: PLC0415
    except ImportError:
        return None

    def validate(config: dict[str, Any]) -> list[tuple[Loc, str]]:
        try:
            # The secrets that references name live in the gateways' environment, not here.
            with references_unresolved():
                load_config(json.dumps(config))
        except ConfigError as exc:
            out: list[tuple[Loc, str]] = []
            for error in exc.errors:
                loc = getattr(error, "loc", None) or parse_path(str(error.path))
                out.append((tuple(loc), str(error.message)))
            return out
        return []

    return validate
