"""Micro-benchmark of the router: build and match at 10,000 routes, compiled vs twin.

Method: a seeded mix of routes (mostly distinct prefixes ``/svcN``; some with exact or
wildcard hosts, some regex paths, some methods or headers, a few regexes with no literal
prefix) and 2,000 seeded requests cycled over, ~90% of which match. ``match`` is timed per
call with ``perf_counter_ns`` over 100,000 calls after a warm-up pass (the figures include the
~40-150 ns cost of reading the clock twice), and as a plain loop (``loop mean``), without that
overhead. Build is timed 4 times: ``cold`` is the
first build of the process (every regex compiled), ``warm`` the median of the next 3 (a config
reload: regexes come from the per-process cache). Both routers must agree on every request.

Run: ``python setup.py build_ext --inplace -q && python bench/micro_router.py``
"""

from __future__ import annotations

import argparse
import gc
import importlib
import platform
import random
import re
import statistics
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastkong._core.routespec import RouteSpec

Request = tuple[str, str, int, str, "dict[str, list[str]] | None", None]


def make_routes(n: int, rng: random.Random) -> tuple[list[RouteSpec], list[Request]]:
    from fastkong._core.routespec import RouteSpec

    specs: list[RouteSpec] = []
    requests: list[Request] = []
    for i in range(n):
        roll = rng.random()
        base = f"/svc{i}"
        fields: dict[str, Any] = {"paths": (base,)}
        req: Request = ("GET", "", 8000, f"{base}/items/{i % 97}", None, None)
        if roll < 0.10:
            host = f"api{i % 200}.example.com"
            fields["hosts"] = (host,)
            req = ("GET", host, 8000, f"{base}/x", None, None)
        elif roll < 0.15:
            fields["hosts"] = (f"*.t{i % 50}.example.com",)
            req = ("GET", f"web.t{i % 50}.example.com", 8000, f"{base}/y", None, None)
        elif roll < 0.25:
            fields["paths"] = (rf"~{base}/items/(?<id>\d+)$",)
            req = ("GET", "", 8000, f"{base}/items/{i}", None, None)
        elif roll < 0.33:
            fields["methods"] = ("GET", "POST")
            req = ("POST", "", 8000, f"{base}/", None, None)
        elif roll < 0.38:
            fields["headers"] = (("x-version", ("v1", "v2")),)
            req = ("GET", "", 8000, f"{base}/z", {"x-version": ["v2"]}, None)
        elif roll < 0.50:
            fields["paths"] = (base, f"{base}-legacy", f"/v2{base}")
            req = ("GET", "", 8000, f"/v2{base}/q", None, None)
        elif roll < 0.5010:
            # A few regexes with no literal prefix: candidates for every request.
            fields["paths"] = (rf"~/(?<ver>v\d+)/svc{i}/raw$",)
            req = ("GET", "", 8000, f"/v3/svc{i}/raw", None, None)
        specs.append(RouteSpec(key=i, **fields))
        requests.append(req)
    rng.shuffle(requests)
    requests = requests[:1800]
    misses: list[Request] = [("GET", "", 8000, f"/nosuch/{k}", None, None) for k in range(100)] + [
        ("GET", f"h{k}.other.org", 8000, "/other", None, None) for k in range(100)
    ]
    requests += misses
    rng.shuffle(requests)
    return specs, requests


def bench(
    module_name: str, specs: list[RouteSpec], requests: list[Request], calls: int
) -> dict[str, Any]:
    from fastkong._core import is_compiled

    mod = importlib.import_module(module_name)
    regex_paths = importlib.import_module("fastkong._core._regex_paths")
    # Each implementation starts cold: both routers take their regexes from one per-process
    # cache (and the compiled one its path sources too).
    for cache in (regex_paths._regexes, regex_paths._path_sources):
        cache.current.clear()
        cache.previous.clear()
    re.purge()
    builds = []
    router = None
    for _ in range(4):
        gc.collect()
        t0 = time.perf_counter()
        router = mod.Router(specs)
        builds.append(time.perf_counter() - t0)
    assert router is not None
    match = router.match
    for req in requests:  # warm-up
        match(*req)
    n = len(requests)
    samples = [0] * calls
    clock = time.perf_counter_ns
    gc.disable()
    try:
        for k in range(calls):
            req = requests[k % n]
            t0 = clock()
            match(*req)
            samples[k] = clock() - t0
        t0 = clock()
        for k in range(calls):
            match(*requests[k % n])
        loop_ns = (clock() - t0) / calls
    finally:
        gc.enable()
    samples.sort()
    return {
        "impl": "compiled" if is_compiled(mod) else "twin",
        "router": repr(router),
        "build_cold": builds[0],
        "build_warm": statistics.median(builds[1:]),
        "median": samples[calls // 2],
        "p99": samples[int(calls * 0.99)],
        "loop": loop_ns,
        "results": [_view(router.match(*r)) for r in requests],
    }


def _view(found: Any) -> Any:
    return None if found is None else (found.key, found.path, found.matched_len, found.captures)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--routes", type=int, default=10_000)
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from the checkout
    specs, requests = make_routes(args.routes, random.Random(args.seed))
    print(
        f"python {platform.python_version()} on {platform.machine()}, "
        f"{args.routes} routes, {len(requests)} distinct requests, {args.calls} timed calls, "
        f"seed {args.seed}"
    )
    rows = [
        bench(name, specs, requests, args.calls)
        for name in ("fastkong._core.router", "fastkong._core._router_py")
    ]
    assert rows[0]["results"] == rows[1]["results"], "compiled and twin disagree"
    matched = sum(r is not None for r in rows[0]["results"])
    print(f"{rows[0]['router']}; {matched}/{len(requests)} requests match\n")
    header = ("impl", "build cold", "build warm", "match med", "match p99", "loop mean")
    print(f"{header[0]:<10}" + "".join(f"{h:>12}" for h in header[1:]))
    for row in rows:
        cells = [f"{row['build_cold'] * 1e3:.0f}ms", f"{row['build_warm'] * 1e3:.0f}ms"]
        cells += [f"{row[k] / 1e3:.2f}us" for k in ("median", "p99", "loop")]
        print(f"{row['impl']:<10}" + "".join(f"{c:>12}" for c in cells))
    print(f"\nspeed-up (loop mean): x{rows[1]['loop'] / rows[0]['loop']:.1f}")


if __name__ == "__main__":
    main()
