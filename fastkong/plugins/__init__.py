"""Plugins: a config schema (msgspec Struct) plus a handler with Kong's priority and phase hooks.

Importing this package registers the bundled plugins (:mod:`fastkong.plugins.bundled`); third
parties register through the ``fastkong.plugins`` entry-point group
(:func:`~fastkong.plugins.registry.load_entry_points`).
"""

from fastkong.plugins import bundled as _bundled  # noqa: F401  (registers the bundled plugins)
from fastkong.plugins.base import Exit, Plugin, kong_error, kong_exit
from fastkong.plugins.registry import (
    PluginSpec,
    load_entry_points,
    lookup,
    names,
    register,
    register_plugin,
)

__all__ = [
    "Exit",
    "Plugin",
    "PluginSpec",
    "kong_error",
    "kong_exit",
    "load_entry_points",
    "lookup",
    "names",
    "register",
    "register_plugin",
]
