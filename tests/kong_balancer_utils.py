"""A twin of Kong's ``spec/fixtures/balancer_utils.lua``: what its health-check specs share.

Used by the ports of ``spec/02-integration/05-proxy/10-balancer/01-healthchecks_spec.lua``
(tests/integration/test_kong_healthchecks_spec.py and test_kong_healthchecks_spec_more.py).
"""

from __future__ import annotations

import copy
from typing import Any

SLOTS = 10  # bu.SLOTS
HEALTHCHECK_INTERVAL = 0.1  # bu.HEALTHCHECK_INTERVAL is 1 s

#: bu's ``healthchecks_defaults``, merged under every case's healthchecks.
HEALTHCHECKS_DEFAULTS: dict[str, Any] = {
    "active": {
        "timeout": 1,
        "concurrency": 10,
        "http_path": "/",
        "healthy": {"interval": 0, "http_statuses": [200, 302], "successes": 2},
        "unhealthy": {
            "interval": 0,
            "http_statuses": [429, 404, 500, 501, 502, 503, 504, 505],
            "tcp_failures": 2,
            "timeouts": 3,
            "http_failures": 5,
        },
    },
    "passive": {
        "healthy": {
            "http_statuses": [200, 201, 202, 203, 204, 205, 206, 207, 208, 226]
            + list(range(300, 309)),
            "successes": 5,
        },
        "unhealthy": {
            "http_statuses": [429, 500, 503],
            "tcp_failures": 2,
            "timeouts": 7,
            "http_failures": 5,
        },
    },
}


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        both = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = _merge(out[key], value) if both else value
    return out


def healthchecks_config(config: dict[str, Any]) -> dict[str, Any]:
    """``bu.healthchecks_config``: ``config`` deep-merged over :data:`HEALTHCHECKS_DEFAULTS`."""
    return _merge(HEALTHCHECKS_DEFAULTS, config)
