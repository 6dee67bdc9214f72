"""Plugins: a config schema (msgspec Struct) plus a handler with Kong's priority and phase hooks."""

from fastkong.plugins.registry import PluginSpec, lookup, names, register

__all__ = ["PluginSpec", "lookup", "names", "register"]
