"""The supervisor's health side as Kong's ``healthcheckers.lua`` and lua-resty-healthcheck see it:
the health report's weights and which probes run."""

from __future__ import annotations

import math
from typing import Any

from fastkong.config import load_config
from fastkong.upstreams import health as H
from fastkong.upstreams.checker import ActiveChecker

CONFIG = """
_format_version: "3.0"
upstreams:
- name: pool.test
  healthchecks: {passive: {unhealthy: {http_failures: 1}}}
  targets: [{target: "svc.test:8001", weight: 25}, {target: "10.0.0.9:8000"}]
"""


def checker(text: str = CONFIG) -> tuple[ActiveChecker, Any]:
    config = load_config(text.encode()).config
    c = ActiveChecker(H.HealthTable(None, 1024))
    c.update(config)
    return c, config


def test_health_report_gives_each_address_the_target_weight() -> None:
    # Kong's getTargetStatus for an A record of two addresses and weight 25 (01-generic_spec
    # "adding a host"): each address weighs 25, the target 50, next to an IP target of 100.
    c, config = checker()
    c.dns["svc.test"] = (math.inf, ["1.2.3.4", "5.6.7.8"])
    uid = config.upstreams[0].id
    body = c.balancer_health(uid)
    assert body is not None and body["health"] == "HEALTHY"
    named = body["details"]["hosts"][0]
    assert named == {
        "host": "svc.test",
        "port": 8001,
        "dns": "A",
        "nodeWeight": 25,
        "weight": {"total": 50, "unavailable": 0, "available": 50},
        "addresses": [
            {"ip": "1.2.3.4", "port": 8001, "weight": 25, "health": "HEALTHY"},
            {"ip": "5.6.7.8", "port": 8001, "weight": 25, "health": "HEALTHY"},
        ],
    }
    assert body["details"]["weight"] == {"total": 150, "unavailable": 0, "available": 150}
