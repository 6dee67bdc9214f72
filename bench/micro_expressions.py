"""What matching an expression route costs (``router_flavor = expressions``).

Expression routes are tried one by one in priority order, like atc-router's matchers; the
router keeps them per pinned first path segment, so a request tries only those that could match
it. This measures the match of one request for N routes of Kong's usual shape
(``http.path ^= "/svcI/" && http.method == "GET"``), for the route tried first and last;
the same with anchored regexes (``http.path ~ "^/svcI/"``, pinned too); and with regexes whose
first segment is a group (``http.path ~ "^/(svcI)/"``), which pin nothing: the worst case, every
route ahead of the matching one is tried.

    python bench/micro_expressions.py [--routes 10,100,1000] [--repeat 2000]

Prints microseconds per match (median of 5 runs of ``--repeat`` matches).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fastkong.expression_router import ExpressionRoute, ExpressionRouter  # noqa: E402
from fastkong.expressions import Facts, parse, route_expression  # noqa: E402

SHAPES = {
    "prefix": 'http.path ^= "/svc{i}/"',
    "regex": 'http.path ~ "^/svc{i}/"',
    "group": 'http.path ~ "^/(svc{i})/"',
}


def router(n: int, shape: str) -> ExpressionRouter:
    routes = []
    for i in range(n):
        test = SHAPES[shape].format(i=i)
        text = route_expression(f'{test} && http.method == "GET"', ["http", "https"])
        routes.append(ExpressionRoute(i, parse(text), n - i, f"id-{i:06d}"))
    return ExpressionRouter(routes)


def per_match(r: ExpressionRouter, path: str, repeat: int) -> float:
    runs = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(repeat):
            r.match(Facts("GET", "api.example.com", path, "http", None, 8000))
        runs.append((time.perf_counter() - started) / repeat * 1e6)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--routes", default="10,100,1000")
    parser.add_argument("--repeat", type=int, default=2000)
    args = parser.parse_args()
    print("| routes | " + " | ".join(f"{s} first us | {s} last us" for s in SHAPES) + " |")
    print("|---:|" + "---:|" * 2 * len(SHAPES))
    for n in (int(x) for x in args.routes.split(",")):
        cells = []
        for shape in SHAPES:
            r = router(n, shape)
            repeat = max(20, args.repeat // (max(1, n // 10) if shape == "group" else 1))
            cells += [per_match(r, "/svc0/x", repeat), per_match(r, f"/svc{n - 1}/x", repeat)]
        print(f"| {n} | " + " | ".join(f"{c:.1f}" for c in cells) + " |")


if __name__ == "__main__":
    main()
