"""Which plugin instances a request runs, in which order: computed once per config snapshot.

Kong's precedence (``lookup_cfg`` in ``kong/runloop/plugins_iterator.lua``): when one plugin name
is configured at several scopes, exactly one configuration runs, the first found in

    route+service+consumer > route+consumer > service+consumer > route+service
    > consumer > route > service > global

The chain of a route (no consumer known yet) is precomputed for every route. Consumer-scoped
configurations can only be chosen once an auth plugin identified the consumer; those chains are
computed on first use per (route, consumer) and cached in the snapshot. Instances run by
``priority`` descending, ties by name.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import msgspec

from fastkong.config import vault
from fastkong.config.validate import referenceable_shape
from fastkong.plugins.base import Plugin
from fastkong.plugins.registry import lookup

if TYPE_CHECKING:
    from fastkong.runtime import Runtime

Scope = tuple[str | None, str | None, str | None]  # (route id, service id, consumer id)

_CONSUMER_ORDER: tuple[tuple[bool, bool, bool], ...] = (
    (True, True, True),
    (True, False, True),
    (False, True, True),
    (True, True, False),
    (False, False, True),
    (True, False, False),
    (False, True, False),
    (False, False, False),
)
_PLAIN_ORDER = tuple(o for o in _CONSUMER_ORDER if not o[2])


def order_key(plugin: Plugin) -> tuple[int, str]:
    return (-plugin.priority, plugin.name)


class PluginSet:
    """Every enabled plugin instance of one snapshot, indexed by name and scope."""

    def __init__(self, instances: Iterable[Plugin]) -> None:
        self.by_name: dict[str, dict[Scope, Plugin]] = {}
        for p in instances:
            e = p.entity
            self.by_name.setdefault(p.name, {})[(e.route, e.service, e.consumer)] = p
        self.consumer_scoped = any(
            scope[2] is not None for scopes in self.by_name.values() for scope in scopes
        )
        self._consumer_chains: dict[tuple[str | None, str | None, str], tuple[Plugin, ...]] = {}
        self._phases: dict[tuple[Plugin, ...], Phases] = {}
        #: The global plugins with a response, body or log hook, in order: what an answer no
        #: route led to runs (Kong's global iterator, which its error paths fall back to).
        self.unrouted: tuple[Plugin, ...] = tuple(
            p for p in self.chain(None, None) if p.has_response or p.has_body or p.has_log
        )

    def __repr__(self) -> str:
        n = sum(len(v) for v in self.by_name.values())
        return f"<PluginSet instances={n} names={sorted(self.by_name)}>"

    def __len__(self) -> int:
        return sum(len(v) for v in self.by_name.values())

    def _resolve(
        self,
        scopes: dict[Scope, Plugin],
        route: str | None,
        service: str | None,
        consumer: str | None,
        order: tuple[tuple[bool, bool, bool], ...],
    ) -> Plugin | None:
        for use_route, use_service, use_consumer in order:
            if (use_route and route is None) or (use_service and service is None):
                continue
            if use_consumer and consumer is None:
                continue
            key = (
                route if use_route else None,
                service if use_service else None,
                consumer if use_consumer else None,
            )
            found = scopes.get(key)
            if found is not None:
                return found
        return None

    def phases(self, chain: tuple[Plugin, ...]) -> Phases:
        """The response, body and log hooks of ``chain`` (a request's effective chain)."""
        found = self._phases.get(chain)
        if found is None:
            found = self._phases[chain] = Phases(chain)
        return found

    def chain(self, route: str | None, service: str | None) -> tuple[Plugin, ...]:
        """The chain before any consumer is known."""
        found = []
        for scopes in self.by_name.values():
            p = self._resolve(scopes, route, service, None, _PLAIN_ORDER)
            if p is not None:
                found.append(p)
        return tuple(sorted(found, key=order_key))

    def consumer_chain(
        self, route: str | None, service: str | None, consumer: str
    ) -> tuple[Plugin, ...]:
        """The chain once ``consumer`` is authenticated (cached per route and consumer)."""
        key = (route, service, consumer)
        cached = self._consumer_chains.get(key)
        if cached is not None:
            return cached
        found = []
        for scopes in self.by_name.values():
            p = self._resolve(scopes, route, service, consumer, _CONSUMER_ORDER)
            if p is not None:
                found.append(p)
        chain = tuple(sorted(found, key=order_key))
        self._consumer_chains[key] = chain
        return chain


class Phases:
    """The plugins of one effective chain that have each later hook, in order (computed once
    per chain and snapshot, not per request)."""

    __slots__ = ("buffered", "response", "body", "log")

    def __init__(self, chain: tuple[Plugin, ...]) -> None:
        self.buffered = tuple(p for p in chain if p.has_buffered)
        self.response = tuple(p for p in chain if p.has_response)
        self.body = tuple(p for p in chain if p.has_body)
        self.log = tuple(p for p in chain if p.has_log)

    def __repr__(self) -> str:
        return (
            f"<Phases buffered={len(self.buffered)} response={len(self.response)} "
            f"body={len(self.body)} log={len(self.log)}>"
        )


def build_plugins(entities: Iterable[Any], runtime: Runtime) -> PluginSet:
    """One handler instance per enabled plugin entity (Kong's ``configure``)."""
    instances: list[Plugin] = []
    for entity in entities:
        if not entity.enabled:
            continue
        spec = lookup(entity.name)
        if spec is None or spec.handler is None:
            continue  # validated config: a spec without handler is schema-only
        config = entity.config
        shape = referenceable_shape(spec.config_type)
        if shape is not None and config:
            config = vault.resolve_fields(config, shape)  # the secrets, fetched per worker
        config = _typed_config(spec.config_type, config)
        plugin = spec.handler(config, runtime, entity)
        plugin.protocols = frozenset(entity.protocols or ())
        instances.append(plugin)
    return PluginSet(instances)


def _typed_config(config_type: Any, config: Any) -> Any:
    if isinstance(config, config_type):
        return config
    return msgspec.convert(config or {}, config_type)
