"""The translator's rules one at a time (the golden cases cover them together)."""

from __future__ import annotations

from typing import Any

import pytest

from fastkong.k8s import ObjectRef, Problem, translate
from fastkong.k8s.annotations import parse_bool
from fastkong.k8s.ingress import kong_paths
from fastkong.k8s.naming import instance_name
from fastkong.k8s.prune import parse_path


def ingress(name: str = "echo", cls: str | None = "fastkong", **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "default", **extra.pop("meta", {})}
    spec: dict[str, Any] = {
        "rules": [
            {
                "host": "echo.example.com",
                "http": {
                    "paths": [
                        {
                            "path": "/",
                            "pathType": "Prefix",
                            "backend": {"service": {"name": "echo", "port": {"number": 80}}},
                        }
                    ]
                },
            }
        ]
    }
    if cls:
        spec["ingressClassName"] = cls
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": meta, "spec": spec}


SERVICE = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "echo", "namespace": "default"},
    "spec": {"ports": [{"port": 80, "targetPort": 8080}]},
}


@pytest.mark.parametrize(
    ("path", "path_type", "expected"),
    [
        ("/foo", "Prefix", ["/foo/", "~/foo$"]),
        ("/foo/", "Prefix", ["/foo/", "~/foo$"]),
        ("/", "Prefix", ["/"]),
        ("/foo", "Exact", ["~/foo$"]),
        ("/a.b", "Exact", ["~/a\\.b$"]),
        ("/a-b", "Exact", ["~/a-b$"]),
        ("/foo", "ImplementationSpecific", ["/foo"]),
        ("", "ImplementationSpecific", ["/"]),
        ("/~/v[0-9]+", "ImplementationSpecific", ["~/v[0-9]+"]),
        ("//x//y", "ImplementationSpecific", ["/x/y"]),
    ],
)
def test_kic_path_types(path: str, path_type: str, expected: list[str]) -> None:
    assert kong_paths(path, path_type, "/~") == expected


def test_go_parse_bool() -> None:
    assert [parse_bool(v) for v in ("1", "t", "TRUE", "True", "0", "F", "false")] == [
        True,
        True,
        True,
        True,
        False,
        False,
        False,
    ]
    assert parse_bool("yes") is None


def test_instance_name_suffix_is_kics() -> None:
    used: set[str] = set()
    first = instance_name("limit", "route-a", used)
    assert first.startswith("limit-") and len(first) == len("limit-") + 9
    assert instance_name("limit", "route-a", used) != first  # collision: the full hash


def test_parse_error_paths() -> None:
    assert parse_path("services[0].routes[1].paths[0]") == ("services", 0, "routes", 1, "paths", 0)
    assert parse_path('plugins[2].config["a.b"]') == ("plugins", 2, "config", "a.b")


def test_other_class_is_ignored_and_kong_class_can_be_taken_over() -> None:
    objs = [ingress(cls="kong"), SERVICE]
    assert translate(objs).config == {"_format_version": "3.0"}
    routes = translate(objs, ingress_class="kong").config["services"][0]["routes"]
    assert [r["name"] for r in routes] == ["default.echo.echo.echo.example.com.80"]
    both = translate([*objs, ingress("mine")], ingress_class=["kong", "fastkong"])
    assert len(both.config["services"][0]["routes"]) == 2


def test_legacy_class_annotation() -> None:
    obj = ingress(cls=None, meta={"annotations": {"kubernetes.io/ingress.class": "fastkong"}})
    assert translate([obj, SERVICE]).config["services"][0]["routes"]


def test_missing_service_keeps_the_route_with_no_targets() -> None:
    """As KIC: the route and its service stay, the upstream has no targets, so requests get
    503 instead of falling through to a broader route; the Ingress is told."""
    result = translate([ingress()])
    (service,) = result.config["services"]
    assert service["name"] == "default.echo.80"
    assert service["host"] == "echo.default.80.svc" and service["port"] == 80
    assert [r["name"] for r in service["routes"]] == ["default.echo.echo.echo.example.com.80"]
    (upstream,) = result.config["upstreams"]
    assert upstream["name"] == "echo.default.80.svc" and not upstream.get("targets")
    assert result.problems == [
        Problem(
            ObjectRef("Ingress", "default", "echo"),
            "route 'default.echo.echo.echo.example.com.80' has no targets: "
            "service default/echo: not found; its requests get 503",
        )
    ]


def test_namespace_defaults_and_duplicates_are_resolved_by_content() -> None:
    a = ingress()
    b = ingress(meta={"annotations": {"konghq.com/strip-path": "true"}})
    one = translate([a, b, SERVICE])
    two = translate([b, a, SERVICE])
    assert one == two
    assert one.problems[0].message.startswith("given 2 times with different content")


def test_validation_failures_drop_the_entity_and_what_refers_to_it() -> None:
    """A fake validator that rejects every route: the routes go, the service stays, and the
    Ingress is told why."""

    def reject_routes(config: dict[str, Any]) -> list[tuple[tuple[str | int, ...], str]]:
        errors: list[tuple[tuple[str | int, ...], str]] = []
        for i, service in enumerate(config.get("services", [])):
            for j, _ in enumerate(service.get("routes", [])):
                errors.append((("services", i, "routes", j, "paths", 0), "nope"))
        return errors

    result = translate([ingress(), SERVICE], validate=reject_routes)
    assert "routes" not in result.config["services"][0]
    assert result.problems == [
        Problem(
            ObjectRef("Ingress", "default", "echo"),
            "route 'default.echo.echo.echo.example.com.80' left out: paths[0]: nope",
        )
    ]


def test_unattributable_errors_are_reported_once() -> None:
    result = translate([SERVICE], validate=lambda c: [(("_format_version",), "bad")])
    assert result.problems == [
        Problem(ObjectRef("Config", "", ""), "the config does not validate: _format_version: bad")
    ]


def test_repr_shows_counts() -> None:
    assert repr(translate([ingress(), SERVICE])) == (
        "<TranslationResult services=1 upstreams=1 problems=0>"
    )


MALFORMED: list[Any] = [
    None,
    "text",
    {"kind": "Ingress", "apiVersion": "networking.k8s.io/v1"},
    {
        "kind": "Ingress",
        "apiVersion": "networking.k8s.io/v1",
        "metadata": {"name": "x"},
        "spec": None,
    },
    {
        "kind": "Ingress",
        "apiVersion": "networking.k8s.io/v1",
        "metadata": {"name": "y", "annotations": {"konghq.com/plugins": ",,"}},
        "spec": {
            "ingressClassName": "fastkong",
            "defaultBackend": {"resource": {"kind": "Bucket", "apiGroup": "s3", "name": "b"}},
            "rules": [
                "nope",
                {"http": None},
                {
                    "http": {
                        "paths": [
                            "nope",
                            {"backend": {"service": {"name": "s", "port": {"number": "x"}}}},
                        ]
                    }
                },
                {"http": {"paths": [{"path": "/", "backend": {"service": {"port": {}}}}]}},
                {
                    "host": "h",
                    "http": {"paths": [{"path": "/", "backend": {"service": {"name": "s"}}}]},
                },
            ],
            "tls": ["nope", {"secretName": "t", "hosts": ["h"]}],
        },
    },
    {"kind": "Service", "apiVersion": "v1", "metadata": {"name": "s"}, "spec": {"ports": "nope"}},
    {"kind": "Secret", "apiVersion": "v1", "metadata": {"name": "t"}, "data": {"tls.crt": "%%%"}},
    {
        "kind": "EndpointSlice",
        "apiVersion": "discovery.k8s.io/v1",
        "metadata": {"name": "e", "labels": {"kubernetes.io/service-name": "s"}},
        "ports": ["x", {"port": "80"}],
        "endpoints": ["x", {"addresses": []}, {"conditions": "x", "addresses": ["10.0.0.1"]}],
    },
    {"kind": "KongPlugin", "apiVersion": "configuration.konghq.com/v1", "metadata": {"name": "p"}},
    {
        "kind": "KongPlugin",
        "apiVersion": "configuration.konghq.com/v1",
        "metadata": {"name": "q"},
        "plugin": "cors",
        "config": [1],
        "configPatches": [{"path": "x"}],
    },
    {
        "kind": "KongConsumer",
        "apiVersion": "configuration.konghq.com/v1",
        "metadata": {"name": "c", "annotations": {"kubernetes.io/ingress.class": "fastkong"}},
        "username": "c",
        "credentials": "nope",
    },
    {"kind": "Ingress", "apiVersion": "extensions/v1beta1", "metadata": {"name": "old"}},
]


def test_malformed_objects_are_reported_never_raised() -> None:
    result = translate(MALFORMED)
    assert [c["username"] for c in result.config["consumers"]] == ["c"]
    messages = {str(p) for p in result.problems}
    assert "error: Ingress <unnamed>: metadata.name is missing" in messages
    assert "error: Secret default/t: data.tls.crt is not base64-encoded UTF-8 text" in messages
    assert (
        "error: Ingress default/y: defaultBackend: backend resource s3/Bucket is not supported"
        in messages
    )
