"""Pieces of the status API in Kong's shapes: ``GET /status``'s ``memory`` section
(``kong.node.get_memory_stats``) and the reading of a ``POST /status/ready``.

Kong reports each worker's Lua VM allocation; a fastkong worker's analog is its resident set
(what ``kong_memory_workers_lua_vms_bytes`` reports in ``/metrics`` too), read from ``/proc``.
The sizes are written as Kong's ``bytes_to_str`` writes them, in the ``unit`` and ``scale`` the
request asks for (Kong's status route: MiB with two decimals unless asked otherwise).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from typing import Any, Final
from urllib.parse import parse_qs

_UNITS: Final = {"k": (2**10, "KiB"), "m": (2**20, "MiB"), "g": (2**30, "GiB")}
_PAGE: Final = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def bytes_to_str(count: int, unit: str = "b", scale: int = 2) -> str:
    """Kong's ``kong.tools.string.bytes_to_str``; ValueError in Kong's words."""
    if unit.lower() == "b":
        return str(int(count))
    if scale < 0:
        raise ValueError("scale must be equal or greater than 0")
    found = _UNITS.get(unit.lower())
    if found is None:
        raise ValueError(f"invalid unit '{unit}' (expected 'k/K', 'm/M', or 'g/G')")
    size, name = found
    return f"{count / size:.{scale}f} {name}"


def resident_bytes(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/statm") as statm:
            return int(statm.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


def memory_query(query: dict[str, list[str]]) -> tuple[str, int]:
    """``unit`` and ``scale`` of a ``/status`` request (Kong: ``m`` and 2; ``tonumber`` of a
    scale that is not a number is nil, so the default)."""
    unit = (query.get("unit") or ["m"])[-1]
    raw = (query.get("scale") or [""])[-1]
    try:
        scale = int(float(raw))
    except ValueError:
        scale = 2
    return unit, scale


def memory_stats(pids: Iterable[int], unit: str = "m", scale: int = 2) -> dict[str, Any]:
    """``{"workers_lua_vms": [{"pid", "http_allocated_gc"}...], "lua_shared_dicts": {}}``, the
    workers by pid (no nginx shared dicts here)."""
    bytes_to_str(0, unit, scale)  # (the arguments are checked even with no worker)
    workers = []
    for pid in sorted(pids):
        rss = resident_bytes(pid)
        entry: dict[str, Any] = {"pid": pid}
        if rss is None:
            entry["err"] = f"could not get worker's HTTP Lua VM memory (pid: {pid})"
        else:
            entry["http_allocated_gc"] = bytes_to_str(rss, unit, scale)
        workers.append(entry)
    return {"workers_lua_vms": workers, "lua_shared_dicts": {}}


def ready_status(
    query: Mapping[str, list[str]], content_type: str, body: bytes
) -> tuple[str | None, str | None]:
    """The ``status`` a ``POST /status/ready`` asks for (query, JSON or form body, as Kong's
    ``ready.lua`` reads it), and an error message for a JSON body that does not parse."""
    params = dict(query)
    if content_type.startswith("application/json"):
        try:
            parsed = json.loads(body or b"{}")
        except ValueError:
            return None, "Cannot parse JSON body"
        if isinstance(parsed, dict) and isinstance(parsed.get("status"), str):
            params["status"] = [parsed["status"]]
    elif content_type.startswith("application/x-www-form-urlencoded"):
        params.update(parse_qs(body.decode("utf-8", "replace")))
    return (params.get("status") or [""])[-1], None
