"""How every process of a node logs: Kong's ``log_level``, one line format.

The supervisor, the stream processes and the Granian processes (master and workers) each
configure Python's root logger alike: lines of ``time logger message`` on stderr, at the level
``fastkong start`` was given. A process that left it unconfigured would print its loggers'
warnings through Python's last-resort handler, bare and whatever the level.

The Granian workers are started by Granian, which applies its own ``dictConfig`` in each of
them before the app is loaded: :func:`root_config` is what the Granian process adds to it.
"""

from __future__ import annotations

import logging
from typing import Any

#: The line format of every fastkong process.
FORMAT = "%(asctime)s %(name)s %(message)s"


def configure(level: str) -> None:
    """Log at ``level`` (a Python level name, any case) in :data:`FORMAT` on stderr, unless
    this process's root logger already has a handler (its host server set one up)."""
    logging.basicConfig(level=level.upper(), format=FORMAT)


def root_config(level: str) -> dict[str, Any]:
    """:func:`configure` as ``logging.config.dictConfig`` sections: ``formatters``,
    ``handlers`` (each to merge into a config's own) and ``root``."""
    return {
        "formatters": {"fastkong": {"format": FORMAT}},
        "handlers": {"fastkong": {"class": "logging.StreamHandler", "formatter": "fastkong"}},
        "root": {"level": level.upper(), "handlers": ["fastkong"]},
    }
