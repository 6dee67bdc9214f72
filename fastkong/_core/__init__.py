"""The compiled core and its pure-Python twins.

Each kernel exists twice with one API: ``<name>.pyx`` (Cython, compiled by ``setup.py``) and
``_<name>_py.py`` (pure Python). :func:`load` picks one, yarl-style: the twin when
``FASTKONG_NO_EXTENSIONS`` is set or the extension is missing (not built, or not CPython).
Type checkers always see the twin.
"""

from __future__ import annotations

import importlib
import os
import sys
from types import ModuleType

NO_EXTENSIONS: bool = bool(os.environ.get("FASTKONG_NO_EXTENSIONS")) or (
    sys.implementation.name != "cpython"
)


def load(name: str) -> ModuleType:
    """Return the compiled kernel ``name``, or its pure-Python twin."""
    if not NO_EXTENSIONS:
        try:
            return importlib.import_module(f"fastkong._core.{name}")
        except ImportError:
            pass
    return importlib.import_module(f"fastkong._core._{name}_py")


def is_compiled(module: ModuleType) -> bool:
    """True when ``module`` is a compiled extension rather than a ``.py`` twin."""
    return not (getattr(module, "__file__", "") or "").endswith(".py")
