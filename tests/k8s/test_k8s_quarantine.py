"""An object the translator fails on is left out with a problem; the rest is translated.

Kong's controller is known for one bad object blocking every later config (kong.md section 8).
The API server checks object shapes, so these objects come from CRDs installed without their
schema, or stand in for a translator bug: either way the other objects must keep flowing.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastkong.config import load_config
from fastkong.k8s import translate
from fastkong.k8s.objects import ObjectRef
from fastkong.k8s.quarantine import MAX_LEFT_OUT, translate_isolating
from fastkong.k8s.translator import TranslationResult
from fastkong.runtime import compile_runtime
from tests.k8s.conftest import CASES, GOLDEN, ODD, load_objects
from tests.k8s.fake_apiserver import FakeApiServer
from tests.k8s.kube import (
    backend,
    backend_ref,
    controller,
    eventually,
    gateway,
    gateway_class,
    httproute,
    ingress,
    rule,
)
from tests.mangle import mangle

FAILED = "left out: the translator failed on it"


def _malformed_route() -> dict[str, Any]:
    """An HTTPRoute whose rule's backendRefs is not a list (its CRD schema would refuse it)."""
    route = httproute("odd", rule("/odd", backend_ref("echo")))
    route["spec"]["rules"][0]["backendRefs"] = True
    return route


def _malformed_ingress() -> dict[str, Any]:
    """An Ingress whose TLS hosts hold a list, not a name."""
    bad = ingress("odd-tls", "/odd-tls", "echo")
    bad["spec"]["tls"] = [{"hosts": [["a.example"]], "secretName": "cert"}]
    return bad


def _objects(case: str) -> list[dict[str, Any]]:
    return load_objects(GOLDEN / case / "in.yaml")


@pytest.mark.parametrize(
    ("case", "bad"),
    [("httproute-basic", _malformed_route()), ("annotations", _malformed_ingress())],
)
def test_the_object_is_left_out_and_the_rest_translated(case: str, bad: dict[str, Any]) -> None:
    objects = _objects(case)
    clean = translate(objects)
    assert not clean.left_out
    got = translate([*objects, bad])
    ref = ObjectRef.of(bad)
    assert got.left_out == {ref}
    assert got.config == clean.config
    (problem,) = [p for p in got.problems if p.ref == ref]
    assert problem.message.startswith(FAILED + " (TypeError: ")
    assert set(got.problems) - {problem} == set(clean.problems)


def test_several_objects_are_left_out_in_one_translation() -> None:
    objects = _objects("httproute-basic")
    second = _malformed_route()
    second["metadata"]["name"] = "odd-2"
    got = translate([_malformed_route(), *objects, second])
    assert got.left_out == {ObjectRef.of(_malformed_route()), ObjectRef.of(second)}
    assert got.config == translate(objects).config


def test_metadata_that_is_not_a_mapping_is_a_problem_not_a_failure() -> None:
    odd = ingress("x", "/x", "echo")
    odd["metadata"] = ["x"]
    got = translate([*_objects("httproute-basic"), odd])
    assert not got.left_out
    assert any(p.message == "metadata.name is missing" for p in got.problems)


def test_past_the_limit_the_failure_is_raised() -> None:
    """So many failing objects that the fault is unlikely to be theirs: the caller keeps its
    last config (the controller retries with backoff)."""
    bad = []
    for n in range(MAX_LEFT_OUT + 1):
        route = _malformed_route()
        route["metadata"]["name"] = f"odd-{n}"
        bad.append(route)
    with pytest.raises(TypeError):
        translate([*_objects("httproute-basic"), *bad])


def _fails_on(*names: str) -> Any:
    """A translation that raises while any of ``names`` is among its objects."""
    calls: list[int] = []

    def attempt(objects: list[Any]) -> TranslationResult:
        calls.append(len(objects))
        if any(obj["metadata"]["name"] in names for obj in objects):
            raise ValueError("odd")
        return TranslationResult({"_format_version": "3.0"})

    attempt.calls = calls  # type: ignore[attr-defined]
    return attempt


def _named(n: int) -> list[dict[str, Any]]:
    return [{"kind": "Ingress", "metadata": {"name": f"i{k}"}} for k in range(n)]


def test_bisection_costs_about_log2_n_translations_per_object() -> None:
    attempt = _fails_on("i700")
    got = translate_isolating(attempt, _named(1000))
    assert got.left_out == {ObjectRef("Ingress", "", "i700")}
    assert len(attempt.calls) <= 2 + 10 + 1  # the first, the empty one, log2(1000), the rest


def test_a_translation_that_fails_on_nothing_blames_no_object() -> None:
    attempt = _fails_on()

    def always(objects: list[Any]) -> TranslationResult:
        raise ValueError("broken")

    with pytest.raises(ValueError, match="broken"):
        translate_isolating(always, _named(50))
    assert translate_isolating(attempt, []).left_out == frozenset()


# -- any object, mangled ---------------------------------------------------------------------


@st.composite
def mangled(draw: st.DrawFn) -> list[dict[str, Any]]:
    objects: list[dict[str, Any]] = mangle(
        draw, _objects(draw(st.sampled_from(CASES))), ODD, depth=2
    )
    return objects


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mangled())
def test_no_object_stops_the_translation_and_its_config_loads(
    objects: list[dict[str, Any]],
) -> None:
    result = translate(objects)
    loaded = load_config(result.to_yaml())
    compile_runtime(loaded.config, loaded.hash)
    for ref in result.left_out:
        assert any(p.ref == ref and p.message.startswith(FAILED) for p in result.problems)


# -- the controller --------------------------------------------------------------------------


async def test_the_controller_delivers_the_rest_and_reports_the_object() -> None:
    async with FakeApiServer() as api:
        backend(api, "echo", 9001)
        api.create(ingress("good", "/good", "echo"))
        api.create(gateway_class())
        api.create(gateway())
        api.create(_malformed_route())
        async with controller(api) as ctl:

            def routes() -> list[str]:
                if ctl.result is None:
                    return []
                services = ctl.result.config.get("services", [])
                return [r["name"] for s in services for r in s.get("routes", [])]

            await eventually(lambda: any("good" in name for name in routes()), what="delivered")
            assert ctl.result is not None
            assert ctl.result.left_out == {ObjectRef("HTTPRoute", "default", "odd")}
            await eventually(
                lambda: any(
                    e["involvedObject"]["name"] == "odd" and FAILED in e["message"]
                    for e in api.all("Event")
                ),
                what="an Event on the HTTPRoute",
            )
            # A later change still goes through, and the Gateway's status is still written.
            api.create(ingress("later", "/later", "echo"))
            await eventually(lambda: any("later" in name for name in routes()), what="later")
            await eventually(
                lambda: (api.get("Gateway", "default", "main") or {}).get("status"),
                what="the Gateway's status",
            )
            assert ctl.last_sync_error == ""
