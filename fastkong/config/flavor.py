"""Kong's ``router_flavor`` as the config layer sees it: a node-wide setting, as in Kong.

Kong reads ``kong.configuration.router_flavor`` when it loads its route schema: under
``expressions`` routes gain the ``expression`` and ``priority`` fields (and may be made of an
expression alone); under the other flavors those fields are unknown. The node sets it once at
start (``fastkong start``, ``fastkong config validate``...), before any config is loaded; it is
a plain module value, not a context variable, because configs are loaded on background threads.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

EXPRESSIONS = "expressions"
TRADITIONAL = "traditional"
_flavor = "traditional_compatible"


def router_flavor() -> str:
    return _flavor


def set_router_flavor(flavor: str) -> None:
    global _flavor
    _flavor = flavor


@contextlib.contextmanager
def using_router_flavor(flavor: str) -> Iterator[None]:
    """``flavor`` for the duration of the block (tests, one-off validations)."""
    before = _flavor
    set_router_flavor(flavor)
    try:
        yield
    finally:
        set_router_flavor(before)
