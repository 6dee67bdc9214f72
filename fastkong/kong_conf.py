"""Value types of Kong's ``kong.conf`` settings, read the way Kong's conf loader reads them, for
the CLI and the modules that take settings (one reading, one error text per type)."""

from __future__ import annotations

import re

_SIZE = re.compile(r"(\d+)([kKmMgG]?)")
_UNITS = {"": 1, "k": 1024, "m": 1024 * 1024, "g": 1024 * 1024 * 1024}


def on_off(value: str, setting: str) -> bool:
    """A boolean setting: ``on``/``off`` (also ``true``/``false``, as Kong's conf loader)."""
    text = value.strip().lower()
    if text in ("on", "true"):
        return True
    if text in ("off", "false"):
        return False
    raise ValueError(f"{setting}: expected on or off, got {value!r}")


def parse_size(value: str, setting: str) -> int:
    """An nginx size (``8k``, ``24K``, ``1m``, ``512``) in bytes; ValueError naming the setting."""
    match = _SIZE.fullmatch(value.strip())
    if match is None:
        raise ValueError(f"{setting}: invalid size {value!r} (expected e.g. 8k, 1m, 512)")
    return int(match.group(1)) * _UNITS[match.group(2).lower()]
