"""The plugin registry: Kong plugin name -> :class:`PluginSpec`.

Config validation asks the registry whether a plugin name exists and how to validate its
``config``; the runtime compiler asks it for the handler. Bundled plugins register themselves when
their module is imported; third-party plugins come from the ``fastkong.plugins`` entry-point group.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec

#: A plugin's extra config check: returns ``(sub_path, message)`` pairs, e.g.
#: ``("minute", "must be greater than 0")``; ``""`` for the plugin entity, ``"@entity"`` for an
#: entity check of ``config`` itself (Kong's ``config["@entity"]``), ``"a.b.@entity"`` for one of
#: a record inside it; an empty list means valid.
ConfigCheck = Callable[[Any], list[tuple[str, str]]]

#: Kong's protocols of the HTTP subsystem (``typedefs.protocols_http``), sorted as Kong sorts them.
HTTP_PROTOCOLS: Final = ("grpc", "grpcs", "http", "https")
#: Every protocol Kong knows (``typedefs.protocols``): a plugin taking these loads with stream
#: protocols in its ``protocols``; fastkong proxies no stream routes, so those never run.
ALL_PROTOCOLS: Final = ("grpc", "grpcs", "http", "https", "tcp", "tls", "tls_passthrough", "udp")


@dataclass(frozen=True, slots=True)
class PluginSpec:
    """What fastkong knows about one plugin name."""

    name: str
    priority: int
    config_type: type[msgspec.Struct]
    #: Kong's ``typedefs.no_consumer``: the plugin may not be scoped to a consumer.
    no_consumer: bool = False
    #: Kong's ``typedefs.no_route`` / ``no_service`` equivalents.
    no_route: bool = False
    no_service: bool = False
    #: What the plugin's ``protocols`` may hold, and its default when the config leaves it out.
    protocols: tuple[str, ...] = HTTP_PROTOCOLS
    default_protocols: tuple[str, ...] | None = None
    check: ConfigCheck | None = None
    #: Kong's entity checks that run on a config whose fields failed (``run_with_invalid_fields``):
    #: given the config as written; a field message takes the place of the field's own errors.
    check_invalid: ConfigCheck | None = None
    handler: type[Any] | None = field(default=None, compare=False)

    def protocols_default(self) -> tuple[str, ...]:
        """``protocols`` when the config leaves it out: the given default, else the allowed
        HTTP protocols (Kong's ``typedefs.protocols`` allows stream protocols too but defaults to
        the HTTP ones)."""
        if self.default_protocols is not None:
            return self.default_protocols
        return tuple(p for p in self.protocols if p in HTTP_PROTOCOLS)


#: Kong 3.x's bundled plugins (``kong:kong/constants.lua`` ``BUNDLED_PLUGINS``): a config naming
#: one fastkong lacks is told so, rather than Kong's "not enabled" (the controller also uses it to
#: tell a known plugin from a misspelt one).
KONG_BUNDLED_PLUGINS: Final = frozenset(
    {
        "acl",
        "acme",
        "ai-azure-content-safety",
        "ai-prompt-decorator",
        "ai-prompt-guard",
        "ai-prompt-template",
        "ai-proxy",
        "ai-request-transformer",
        "ai-response-transformer",
        "aws-lambda",
        "azure-functions",
        "basic-auth",
        "bot-detection",
        "correlation-id",
        "cors",
        "datadog",
        "file-log",
        "grpc-gateway",
        "grpc-web",
        "hmac-auth",
        "http-log",
        "ip-restriction",
        "jwt",
        "key-auth",
        "ldap-auth",
        "loggly",
        "oauth2",
        "opentelemetry",
        "post-function",
        "pre-function",
        "prometheus",
        "proxy-cache",
        "rate-limiting",
        "redirect",
        "request-size-limiting",
        "request-termination",
        "request-transformer",
        "response-ratelimiting",
        "response-transformer",
        "session",
        "standard-webhooks",
        "statsd",
        "syslog",
        "tcp-log",
        "udp-log",
        "zipkin",
    }
)

#: Bundled plugins that run Lua code: fastkong runs none.
LUA_PLUGINS: Final = frozenset({"pre-function", "post-function"})


def missing_message(name: str) -> str | None:
    """Why a Kong plugin is not here, in a config error; None for a name Kong does not bundle
    (Kong's own message then)."""
    if name in LUA_PLUGINS:
        return f"plugin '{name}' runs Lua code, which fastkong does not run"
    if name in KONG_BUNDLED_PLUGINS:
        return f"plugin '{name}' is one of Kong's bundled plugins that fastkong does not implement"
    return None


_REGISTRY: dict[str, PluginSpec] = {}
_ENTRY_POINTS_LOADED = False
_log = logging.getLogger(__name__)


def register(spec: PluginSpec) -> PluginSpec:
    """Add ``spec`` to the registry (a later registration of the same name replaces it)."""
    _REGISTRY[spec.name] = spec
    return spec


def register_plugin(cls: type[Any]) -> type[Any]:
    """Class decorator: register a :class:`~fastkong.plugins.base.Plugin` subclass."""
    register(
        PluginSpec(
            name=cls.name,
            priority=cls.priority,
            config_type=cls.Config,
            no_consumer=cls.no_consumer,
            no_route=cls.no_route,
            no_service=cls.no_service,
            protocols=cls.allowed_protocols,
            default_protocols=cls.default_protocols,
            check=cls.check,
            check_invalid=cls.check_invalid,
            handler=cls,
        )
    )
    return cls


def load_entry_points(group: str = "fastkong.plugins") -> list[str]:
    """Register third-party plugins: each entry point names a Plugin subclass.

    An entry point that fails to load is logged and left out (a config naming it then gets
    the unknown-plugin error), so one broken package cannot stop a gateway that does not use
    it."""
    from importlib.metadata import entry_points  # noqa: PLC0415  (rarely used, slow to import)

    loaded = []
    for ep in entry_points(group=group):
        try:
            cls = ep.load()
            register_plugin(cls)
        except Exception:  # noqa: BLE001  (any failure of third-party code: report, go on)
            _log.exception("plugin entry point %r (%s) did not load", ep.name, ep.value)
            continue
        loaded.append(cls.name)
    return loaded


def _ensure_entry_points() -> None:
    """Load the entry-point group once per process, the first time the registry is asked
    (config validation, the runtime compiler, the Admin API): the scan of installed
    distributions costs tens of milliseconds, which an ``import fastkong`` should not pay."""
    global _ENTRY_POINTS_LOADED  # noqa: PLW0603  (one process-wide flag)
    if not _ENTRY_POINTS_LOADED:
        _ENTRY_POINTS_LOADED = True
        load_entry_points()


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)


def lookup(name: str) -> PluginSpec | None:
    """The spec registered under ``name``, or None."""
    _ensure_entry_points()
    return _REGISTRY.get(name)


def names() -> list[str]:
    _ensure_entry_points()
    return sorted(_REGISTRY)
