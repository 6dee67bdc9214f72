from __future__ import annotations

from typing import Any

from fastkong.config.ids import generate
from fastkong.config.schema import (
    ActiveHealthcheck,
    ActiveHealthy,
    ActiveUnhealthy,
    Healthchecks,
    PassiveHealthcheck,
    PassiveHealthy,
    PassiveUnhealthy,
    Target,
    Upstream,
)


def upstream(name: str = "pool.test", **fields: Any) -> Upstream:
    return Upstream(id=generate("upstreams", name), name=name, **fields)


def targets(u: Upstream, *specs: tuple[str, int]) -> list[Target]:
    return [
        Target(id=generate("targets", f"{u.id}:{t}"), upstream=u.id, target=t, weight=w)
        for t, w in specs
    ]


def passive(http: int = 0, tcp: int = 0, timeouts: int = 0, successes: int = 0) -> Healthchecks:
    return Healthchecks(
        passive=PassiveHealthcheck(
            healthy=PassiveHealthy(successes=successes),
            unhealthy=PassiveUnhealthy(http_failures=http, tcp_failures=tcp, timeouts=timeouts),
        )
    )


def active(
    interval: float,
    successes: int = 1,
    tcp: int = 1,
    http: int = 1,
    timeouts: int = 1,
    path: str = "/",
    kind: str = "http",
) -> ActiveHealthcheck:
    return ActiveHealthcheck(
        type=kind,  # type: ignore[arg-type]
        timeout=0.5,
        http_path=path,
        healthy=ActiveHealthy(interval=interval, successes=successes),
        unhealthy=ActiveUnhealthy(
            interval=interval, tcp_failures=tcp, http_failures=http, timeouts=timeouts
        ),
    )
