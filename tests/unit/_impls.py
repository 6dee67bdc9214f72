"""The implementations the router and uri tests run against.

Every test is parametrized over the compiled extension and its pure-Python twin. With
``FASTKONG_NO_EXTENSIONS`` set the compiled parameter is left out (not skipped).
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

import pytest

from fastkong._core import NO_EXTENSIONS


def impl_params(name: str) -> list[object]:
    """``pytest.param`` of each implementation of kernel ``name``: compiled, then twin."""
    params: list[object] = []
    if not NO_EXTENSIONS:
        params.append(pytest.param(f"fastkong._core.{name}", id="compiled"))
    params.append(pytest.param(f"fastkong._core._{name}_py", id="twin"))
    return params


def load(module_name: str) -> ModuleType:
    return importlib.import_module(module_name)


def key_of(
    router: Any,
    path: str = "/",
    host: str = "",
    method: str = "GET",
    port: int = 80,
    headers: dict[str, list[str]] | None = None,
    sni: str | None = None,
) -> int | None:
    """The key of the route ``router`` picks for one request, or None."""
    found = router.match(method, host, port, path, headers, sni)
    return None if found is None else found.key
