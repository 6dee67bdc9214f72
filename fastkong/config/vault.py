"""Kong's secret references, ``{vault://env/<name>[/<key>][?prefix=...][#version]}``, with
Kong's bundled ``env`` vault (``kong/pdk/vault.lua``, ``kong/vaults/env``).

A field Kong marks ``referenceable`` (certificates' ``cert``/``key``, Redis passwords, the log
plugins' endpoints and keys, the AWS and LLM credentials, ...) may hold a reference instead of
its value: in Kubernetes, a Secret mounted as an environment variable, and a ``kong.yml`` that
names it. As in Kong:

- the config keeps the reference (so ``GET /config`` and the admin API show it, never the
  secret); the value is fetched when a worker builds the plugin or the upstream TLS context
  that uses it (:func:`resolve_fields`);
- the field's own checks (URL, host, PEM) do not apply to the reference text;
- ``env`` reads the variable ``<prefix><name>`` upper-cased with ``-`` as ``_`` (version 2 adds
  ``_PREVIOUS``); with a ``/<key>``, the variable holds a JSON object and the value is its key.

Where fastkong does better than Kong: Kong loads a reference it cannot resolve, logs a
warning and leaves the field without a value (a plugin then fails on every request, or a
Redis connection goes out without its password). fastkong resolves every reference when it
loads the config, and one that does not resolve, or whose value fails the field's own checks,
is a config error at the field's path, the last good config kept (the secret's value is never
put in a message).

A Kubernetes controller validating the config it will send is not where the secrets live:
under :func:`references_unresolved`, a reference is only parsed and its vault looked up.

Only the bundled ``env`` vault exists here (Kong's other vaults are Enterprise). A ``vaults``
entity names a prefix for it with its own config (``{vault://my-env/x}`` with ``prefix:
my-env``, ``name: env``, ``config: {prefix: APP_}`` reads ``APP_X``); a reference's query
overrides that config.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final
from urllib.parse import parse_qsl, unquote

from fastkong.config import checks as C

_START: Final = "{vault://"


class VaultError(ValueError):
    """A reference that does not parse or resolve; the message is Kong's wording."""


def is_reference(value: object) -> bool:
    """Kong's ``is_reference``: a string that starts ``{vault://`` and ends ``}``."""
    return isinstance(value, str) and value.startswith(_START) and value.endswith("}")


@dataclass(frozen=True, slots=True)
class Reference:
    """A parsed reference (Kong's ``parse_reference`` result)."""

    name: str
    resource: str
    key: str | None = None
    config: dict[str, str] = field(default_factory=dict)
    version: int | None = None


def parse_reference(text: str) -> Reference:
    """Split ``{vault://name/resource[/key][?query][#version]}`` as Kong does."""
    if not is_reference(text):
        raise VaultError(f"not a reference [{text}]")
    url = text[1:-1]
    rest = url[len("vault://") :]
    rest, _, fragment = rest.partition("#")
    rest, _, query = rest.partition("?")
    name, slash, path = rest.partition("/")
    if not name:
        raise VaultError(f"reference url is missing host [{text}]")
    if not slash:
        raise VaultError(f"reference url is missing path [{text}]")
    if not path:
        raise VaultError(f"reference url has empty path [{text}]")
    version = None
    if fragment:
        if not fragment.isdigit():
            raise VaultError(f"reference url has invalid version [{text}]")
        version = int(fragment)
    is_directory = path.endswith("/")
    parts = [p for p in path.split("/") if p]
    if not parts:
        raise VaultError(f"reference url has invalid path [{text}]")
    key = None
    if len(parts) == 1:
        resource = unquote(parts[0])
    elif is_directory:
        resource = unquote("/".join(parts))
    else:
        resource = unquote("/".join(parts[:-1]))
        key = unquote(parts[-1])
    config = dict(parse_qsl(query, keep_blank_values=True)) if query else {}
    return Reference(name, resource, key, config, version)


_RESOLVING: ContextVar[bool] = ContextVar("fastkong_vault_resolving", default=True)


@contextlib.contextmanager
def references_unresolved() -> Iterator[None]:
    """Validate references without fetching their values (in a process that is not the
    gateway, such as the controller: the gateway's environment holds the secrets)."""
    token = _RESOLVING.set(False)
    try:
        yield
    finally:
        _RESOLVING.reset(token)


def resolving() -> bool:
    """Whether references are resolved while a config is validated (see
    :func:`references_unresolved`)."""
    return _RESOLVING.get()


@dataclass(frozen=True, slots=True)
class NamedVault:
    """A ``vaults`` entity as references use it: an installed vault and its config."""

    name: str
    config: Mapping[str, Any]


#: The config's ``vaults`` by prefix, while that config is validated (:func:`named_vaults`).
_NAMED: ContextVar[Mapping[str, NamedVault]] = ContextVar(
    "fastkong_named_vaults", default=MappingProxyType({})
)


@contextlib.contextmanager
def named_vaults(vaults: Mapping[str, NamedVault]) -> Iterator[None]:
    """References checked inside may name these vault prefixes."""
    token = _NAMED.set(vaults)
    try:
        yield
    finally:
        _NAMED.reset(token)


def vaults_by_prefix(entities: Iterable[Any]) -> dict[str, NamedVault]:
    """Prefix -> :class:`NamedVault` of ``vaults`` entities (Structs or dicts as written;
    malformed ones are left out: their own checks report them)."""
    out: dict[str, NamedVault] = {}
    for entity in entities:
        get = entity.get if isinstance(entity, dict) else lambda k, e=entity: getattr(e, k, None)
        prefix, name, config = get("prefix"), get("name"), get("config") or {}
        if isinstance(prefix, str) and isinstance(name, str) and isinstance(config, dict):
            out[prefix] = NamedVault(name, config)
    return out


def check(
    text: str, vaults: Mapping[str, NamedVault] | None = None
) -> tuple[Reference, str, dict[str, Any]]:
    """``text`` parsed, and the vault it names with the config it gets (the vault entity's,
    then the reference's query); :class:`VaultError` otherwise. Nothing is fetched."""
    ref = parse_reference(text)
    if ref.name in C.INSTALLED_VAULTS:
        name, config = ref.name, dict(ref.config)
    else:
        named = (_NAMED.get() if vaults is None else vaults).get(ref.name)
        if named is None:
            raise VaultError(f"could not find vault ({ref.name})")
        name, config = (
            named.name,
            {**{k: v for k, v in named.config.items() if v is not None}, **ref.config},
        )
    if name not in C.INSTALLED_VAULTS:
        raise VaultError(f"could not find vault ({name})")
    unknown = sorted(set(config) - {"prefix"})
    if unknown:
        raise VaultError(f"vault {name} has no config field {unknown[0]!r}")
    prefix = config.get("prefix")
    if prefix is not None and (not isinstance(prefix, str) or C.check_env_vault_prefix(prefix)):
        raise VaultError(f"vault {name}: invalid prefix {prefix!r}")
    return ref, name, config


def resolve(
    text: str,
    environ: Mapping[str, str] | None = None,
    vaults: Mapping[str, NamedVault] | None = None,
) -> str:
    """The secret ``text`` refers to; :class:`VaultError` with Kong's message otherwise."""
    ref, _, config = check(text, vaults)
    name = (config.get("prefix", "") + ref.resource).replace("-", "_").upper()
    if ref.version == 2:
        name += "_PREVIOUS"
    value = (os.environ if environ is None else environ).get(name)
    if value is None:
        raise VaultError("could not get value from external vault (no value found)")
    if ref.key is None:
        return value
    return _subfield(value, ref.key)


def _subfield(value: str, key: str) -> str:
    try:
        decoded = json.loads(value)
    except json.JSONDecodeError as exc:
        raise VaultError(
            "could not get value from external vault (could not get subfield value: "
            f"unable to json decode value: {exc.msg})"
        ) from None
    if not isinstance(decoded, dict):
        raise VaultError(
            "could not get value from external vault (could not get subfield value: "
            "unable to json decode value: not an object)"
        )
    found = decoded.get(key)
    if found is None:
        raise VaultError(
            "could not get value from external vault (could not get subfield value: "
            f"subfield {key} not found in JSON secret)"
        )
    if not isinstance(found, str):
        raise VaultError(
            "could not get value from external vault (could not get subfield value: "
            f"unexpected {_lua_type(found)} value in JSON secret for subfield {key})"
        )
    return found


def _lua_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return "table"


def unresolved(text: str, exc: VaultError) -> str:
    """A config error's message for a reference that does not resolve (Kong's log line)."""
    return f"unable to resolve reference {text} ({exc})"


#: A function that fetches one referenced value (tests give their own environment).
Resolver = Callable[[str], str]


def resolve_fields(value: Any, referenceable: Any, resolver: Resolver = resolve) -> Any:
    """``value`` (builtins) with every reference in a referenceable place replaced by its
    secret. ``referenceable`` is the shape :func:`fastkong.config.validate.referenceable_shape`
    gives: ``True`` for a referenceable string, a dict of field shapes for a record, ``("*",
    shape)`` for every value of a map or list. Nothing is copied when nothing is referenced."""
    if referenceable is True:
        return resolver(value) if is_reference(value) else value
    if isinstance(referenceable, tuple):
        item = referenceable[1]
        if isinstance(value, dict):
            out = {k: resolve_fields(v, item, resolver) for k, v in value.items()}
            return value if all(out[k] is value[k] for k in value) else out
        if isinstance(value, list):
            items = [resolve_fields(v, item, resolver) for v in value]
            return value if all(a is b for a, b in zip(items, value, strict=True)) else items
        return value
    if isinstance(referenceable, dict) and isinstance(value, dict):
        changed = {
            k: resolve_fields(value[k], shape, resolver)
            for k, shape in referenceable.items()
            if value.get(k) is not None
        }
        changed = {k: v for k, v in changed.items() if v is not value[k]}
        return {**value, **changed} if changed else value
    return value
