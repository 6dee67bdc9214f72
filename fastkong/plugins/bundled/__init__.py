"""Kong's bundled plugins, one module each; importing this package registers all of them.

Every module in this package is imported (modules whose name starts with ``_`` are shared
helpers and are imported by the plugins that use them).
"""

from __future__ import annotations

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")
