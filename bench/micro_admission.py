"""What an admission review costs: the webhook's answer time against the cluster's size.

A review translates the controller's cache with the reviewed object put in (one translation),
plus, once per cache generation, the cache as it is. Both grow with the cluster: this measures
them for clusters of N Ingresses, each with its Service, EndpointSlice and a KongPlugin, so
that the chart's ``timeoutSeconds`` (10) can be judged against real sizes.

    python bench/micro_admission.py [--sizes 100,500,2000] [--runs 5]

Prints, per size: the objects, the first review at a new generation (baseline + candidate),
and a review at an unchanged generation (the candidate alone), medians in milliseconds.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fastkong.k8s.admission import Reviewer  # noqa: E402
from fastkong.k8s.translator import translate  # noqa: E402


def cluster(n: int) -> list[dict[str, Any]]:
    objects: list[dict[str, Any]] = []
    for i in range(n):
        ns, name = f"team{i % 20}", f"app{i}"
        objects += [
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "Ingress",
                "metadata": {
                    "name": name,
                    "namespace": ns,
                    "annotations": {"konghq.com/plugins": f"rl-{name}"},
                },
                "spec": {
                    "ingressClassName": "fastkong",
                    "rules": [
                        {
                            "host": f"{name}.example.com",
                            "http": {
                                "paths": [
                                    {
                                        "path": "/api",
                                        "pathType": "Prefix",
                                        "backend": {
                                            "service": {"name": name, "port": {"number": 80}}
                                        },
                                    }
                                ]
                            },
                        }
                    ],
                },
            },
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": name, "namespace": ns},
                "spec": {"ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]},
            },
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": f"{name}-x",
                    "namespace": ns,
                    "labels": {"kubernetes.io/service-name": name},
                },
                "addressType": "IPv4",
                "ports": [{"port": 8080, "protocol": "TCP"}],
                "endpoints": [
                    {"addresses": [f"10.{i // 250 % 250}.{i % 250}.{k}"]} for k in (1, 2)
                ],
            },
            {
                "apiVersion": "configuration.konghq.com/v1",
                "kind": "KongPlugin",
                "metadata": {"name": f"rl-{name}", "namespace": ns},
                "plugin": "rate-limiting",
                "config": {"minute": 100, "policy": "local"},
            },
        ]
    return objects


def measure(n: int, runs: int) -> tuple[int, float, float]:
    objects = cluster(n)
    reviewer = Reviewer(functools.partial(translate, ingress_class=["fastkong"]), ["fastkong"])
    changed = dict(objects[3])
    changed["config"] = {"minute": 50, "policy": "local"}
    request = {"uid": "u", "operation": "UPDATE", "object": changed, "namespace": "team0"}
    cold: list[float] = []
    warm: list[float] = []
    for generation in range(runs):
        started = time.perf_counter()
        verdict = reviewer.review(request, objects, generation)
        cold.append(time.perf_counter() - started)
        started = time.perf_counter()
        reviewer.review(request, objects, generation)
        warm.append(time.perf_counter() - started)
        assert verdict.allowed, verdict
    return len(objects), statistics.median(cold) * 1000, statistics.median(warm) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100,500,2000")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print("| Ingresses | objects | new generation ms | same generation ms |")
    print("|---:|---:|---:|---:|")
    for n in (int(x) for x in args.sizes.split(",")):
        objects, cold, warm = measure(n, args.runs)
        print(f"| {n} | {objects} | {cold:.0f} | {warm:.0f} |")


if __name__ == "__main__":
    main()
