"""The admission webhook: what ``kubectl apply`` is refused, and the HTTPS server around it.

The decisions are tested on the reviewer with the real translator; the server through a real
controller on the fake API server, answering real HTTPS requests, verified against a throwaway
CA, as the API server would send them.
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import ssl
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastkong.k8s.admission import (
    API_VERSION,
    MAX_WARNING,
    Reviewer,
    ReviewError,
    Verdict,
    answer,
    parse_review,
)
from fastkong.k8s.admission_server import NOT_SYNCED
from fastkong.k8s.controller_cli import add_parser, options_from_args
from fastkong.k8s.objects import ObjectRef
from fastkong.k8s.translator import TranslationResult, translate
from tests.k8s.conftest import CASES, GOLDEN, ODD, load_objects
from tests.k8s.fake_apiserver import FakeApiServer
from tests.k8s.kube import backend, controller, eventually, ingress
from tests.mangle import mangle
from tests.pki import Pki

CLASS = "fastkong"


def reviewer() -> Reviewer:
    return Reviewer(functools.partial(translate, ingress_class=[CLASS]), [CLASS])


def request(obj: dict[str, Any], operation: str = "CREATE", **extra: Any) -> dict[str, Any]:
    meta = obj.get("metadata") or {}
    return {
        "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
        "kind": {"group": "", "version": "v1", "kind": obj.get("kind")},
        "operation": operation,
        "namespace": meta.get("namespace", "default"),
        "name": meta.get("name", ""),
        "object": obj,
        **extra,
    }


def plugin(name: str, kind: str = "KongPlugin", **fields: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if kind == "KongPlugin":
        meta["namespace"] = "default"
    else:
        meta["annotations"] = {"kubernetes.io/ingress.class": CLASS}
    return {"apiVersion": "configuration.konghq.com/v1", "kind": kind, "metadata": meta, **fields}


def secret(name: str, data: dict[str, str], **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": "default", "labels": labels},
        "stringData": data,
    }


def consumer(name: str, username: str, *credentials: str) -> dict[str, Any]:
    return {
        "apiVersion": "configuration.konghq.com/v1",
        "kind": "KongConsumer",
        "metadata": {
            "name": name,
            "namespace": "default",
            "annotations": {"kubernetes.io/ingress.class": CLASS},
        },
        "username": username,
        "credentials": list(credentials),
    }


def regex_ingress(name: str, path: str, cls: str = CLASS) -> dict[str, Any]:
    obj = ingress(name, path, "echo", cls=cls)
    obj["spec"]["rules"][0]["http"]["paths"][0]["pathType"] = "ImplementationSpecific"
    return obj


def with_echo() -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "echo", "namespace": "default"},
            "spec": {"ports": [{"port": 80, "protocol": "TCP"}]},
        }
    ]


# -- plugins -----------------------------------------------------------------------------------


def test_a_plugin_whose_config_breaks_its_schema_is_refused_with_the_field() -> None:
    bad = plugin("rl", plugin="rate-limiting", config={"minute": "often", "policyy": "local"})
    verdict = reviewer().review(request(bad), [], 1)
    assert not verdict.allowed
    assert "plugin failed schema validation: config.minute: expected a number" in verdict.message
    assert "config.policyy: unknown field" in verdict.message


def test_a_plugin_is_checked_before_anything_uses_it() -> None:
    """Until an Ingress names it, no translation holds it: it is checked on its own."""
    good = plugin("rl", plugin="rate-limiting", config={"minute": 5})
    assert reviewer().review(request(good), [], 1) == Verdict(True)
    unknown = plugin("x", plugin="no-such-plugin")
    verdict = reviewer().review(request(unknown), [], 1)
    assert not verdict.allowed and "unknown plugin 'no-such-plugin'" in verdict.message


def test_a_cluster_plugin_of_another_class_is_not_ours_to_judge() -> None:
    bad = plugin("rl", "KongClusterPlugin", plugin="rate-limiting", config={"minute": "x"})
    assert not reviewer().review(request(bad), [], 1).allowed
    bad["metadata"]["annotations"]["kubernetes.io/ingress.class"] = "someone-else"
    assert reviewer().review(request(bad), [], 1).allowed


def test_a_plugin_whose_config_secret_is_missing_is_allowed_with_a_warning() -> None:
    """``kubectl apply -f dir/`` may create the Secret next."""
    obj = plugin(
        "t", plugin="request-transformer", configFrom={"secretKeyRef": {"name": "s", "key": "k"}}
    )
    verdict = reviewer().review(request(obj), [], 1)
    assert verdict.allowed
    assert verdict.warnings == ("secret default/s not found",)


def test_a_plugin_created_without_a_namespace_gets_the_requests() -> None:
    obj = plugin(
        "t", plugin="request-transformer", configFrom={"secretKeyRef": {"name": "s", "key": "k"}}
    )
    del obj["metadata"]["namespace"]
    team_secret = secret("s", {"k": '{"add": {"headers": ["a:1"]}}'})
    team_secret["metadata"]["namespace"] = "team"
    verdict = reviewer().review(request(obj, namespace="team"), [team_secret], 1)
    assert verdict == Verdict(True)


# -- Secrets -----------------------------------------------------------------------------------


def test_a_secret_change_that_breaks_a_plugin_reading_it_is_refused() -> None:
    conf = secret("plugin-conf", {"transformer": 'add:\n  headers: ["x-a:1"]\n'})
    reader = plugin(
        "t",
        plugin="request-transformer",
        configFrom={"secretKeyRef": {"name": "plugin-conf", "key": "transformer"}},
    )
    cluster = [conf, reader]
    r = reviewer()
    assert r.review(request(conf, "UPDATE"), cluster, 1).allowed

    broken = copy.deepcopy(conf)
    broken["stringData"]["transformer"] = "add:\n  headerz: 1\n"
    verdict = r.review(request(broken, "UPDATE"), cluster, 1)
    assert not verdict.allowed
    assert verdict.message == (
        "Change on Secret default/plugin-conf will generate invalid configuration for "
        "KongPlugin default/t: plugin failed schema validation: config.add.headerz: unknown field"
    )
    emptied = secret("plugin-conf", {"other": "1"})
    verdict = r.review(request(emptied, "UPDATE"), cluster, 1)
    assert not verdict.allowed
    assert "secret default/plugin-conf has no key 'transformer'" in verdict.message
    # A Secret no plugin reads says nothing.
    assert r.review(request(secret("unrelated", {"x": "y"})), cluster, 1) == Verdict(True)


def test_a_credential_secret_without_its_key_is_refused() -> None:
    cluster = [consumer("alice", "alice", "alice-key"), secret("alice-key", {"key": "k1"})]
    cluster[1]["metadata"]["labels"] = {"konghq.com/credential": "key-auth"}
    broken = secret("alice-key", {"kee": "k1"}, **{"konghq.com/credential": "key-auth"})
    verdict = reviewer().review(request(broken, "UPDATE"), cluster, 1)
    assert not verdict.allowed
    assert "invalid configuration for KongConsumer default/alice" in verdict.message
    assert "key-auth credential needs 'key'" in verdict.message


def test_a_second_consumer_with_a_taken_username_is_refused() -> None:
    cluster = [consumer("alice", "alice")]
    verdict = reviewer().review(request(consumer("alice-again", "alice")), cluster, 1)
    assert not verdict.allowed
    assert "username set to 'alice' already declared" in verdict.message
    assert reviewer().review(request(consumer("bob", "bob")), cluster, 1).allowed


# -- Ingress -----------------------------------------------------------------------------------


def test_an_ingress_with_a_path_kong_refuses_is_refused() -> None:
    verdict = reviewer().review(request(regex_ingress("bad", "/~/([")), with_echo(), 1)
    assert not verdict.allowed
    assert "invalid regex" in verdict.message and "paths[0]" in verdict.message
    good = reviewer().review(request(regex_ingress("good", "/~/v[0-9]+/")), with_echo(), 1)
    assert good == Verdict(True)


def test_an_ingress_of_another_class_is_not_ours_to_judge() -> None:
    obj = regex_ingress("bad", "/~/([", cls="nginx")
    assert reviewer().review(request(obj), with_echo(), 1) == Verdict(True)


def test_an_ingress_whose_service_and_plugin_do_not_exist_yet_is_allowed_with_warnings() -> None:
    obj = ingress("early", "/early", "later-service")
    obj["metadata"]["annotations"] = {"konghq.com/plugins": "later-plugin"}
    verdict = reviewer().review(request(obj), [], 1)
    assert verdict.allowed
    assert any("later-plugin" in w for w in verdict.warnings), verdict
    assert any("later-service" in w and "not found" in w for w in verdict.warnings), verdict


def test_an_ingress_already_failing_for_another_reason_does_not_block_unrelated_changes() -> None:
    """Only problems the change brings are blamed on it."""
    cluster = [*with_echo(), regex_ingress("old-bad", "/~/([")]
    verdict = reviewer().review(request(regex_ingress("new", "/new")), cluster, 1)
    assert verdict == Verdict(True)


# -- what is not judged ------------------------------------------------------------------------


def test_deletes_and_kinds_the_translator_does_not_read_are_allowed() -> None:
    bad = plugin("rl", plugin="rate-limiting", config={"minute": "x"})
    assert reviewer().review(request(bad, "DELETE"), [], 1) == Verdict(True)
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}, "spec": {}}
    assert reviewer().review(request(pod), [], 1) == Verdict(True)


def counting_reviewer() -> tuple[Reviewer, list[int]]:
    """A reviewer, and the sizes of the object lists it translates, in order."""
    calls: list[int] = []

    def counting(objects: list[Any]) -> TranslationResult:
        calls.append(len(objects))
        return translate(objects, ingress_class=[CLASS])

    return Reviewer(counting, [CLASS]), calls


def test_the_cluster_without_the_change_is_translated_once_per_generation() -> None:
    r, calls = counting_reviewer()
    cluster = with_echo()
    for n in range(3):
        r.review(request(ingress(f"i{n}", f"/{n}", "echo")), cluster, 7)
    assert calls == [1, 2, 2, 2]  # the baseline once, then one candidate per review
    r.review(request(ingress("i9", "/9", "echo")), cluster, 8)
    assert calls[4:] == [1, 2]
    assert repr(r) == "<Reviewer reviews=4 refused=0 baseline_gen=8>"


def test_the_controllers_translation_is_the_baseline_of_its_generation() -> None:
    r, calls = counting_reviewer()
    cluster = [*with_echo(), regex_ingress("old-bad", "/~/([")]
    r.seed(3, translate(cluster, ingress_class=[CLASS]))
    assert r.review(request(regex_ingress("new", "/new")), cluster, 3) == Verdict(True)
    assert calls == [3]  # the candidate only
    r.seed(2, translate([], ingress_class=[CLASS]))  # an older one is not taken
    assert r.review(request(regex_ingress("new", "/new")), cluster, 3) == Verdict(True)
    assert calls == [3, 3]


def test_long_and_many_warnings_are_cut_to_what_the_api_server_keeps() -> None:
    obj = ingress("early", "/early", "s" * 300)
    obj["metadata"]["annotations"] = {"konghq.com/plugins": ",".join(f"p{n}" for n in range(20))}
    verdict = reviewer().review(request(obj), [], 1)
    assert verdict.allowed
    assert 1 <= len(verdict.warnings) <= 10
    assert all(len(w) <= MAX_WARNING for w in verdict.warnings)


# -- the wire format ---------------------------------------------------------------------------


def test_parse_review_refuses_what_is_not_an_admission_review() -> None:
    for body in (b"{", b"[]", b'{"kind": "Pod"}', b'{"kind": "AdmissionReview"}', b"\xff"):
        with pytest.raises(ReviewError):
            parse_review(body)
    review = {"apiVersion": API_VERSION, "kind": "AdmissionReview", "request": {"uid": "u"}}
    assert parse_review(json.dumps(review).encode()) == {"uid": "u"}


def test_answers_carry_the_uid_the_code_and_the_warnings() -> None:
    req = {"uid": "u-1"}
    assert answer(req, Verdict(True)) == {
        "apiVersion": API_VERSION,
        "kind": "AdmissionReview",
        "response": {"uid": "u-1", "allowed": True},
    }
    refused = answer(req, Verdict(False, "no", ("careful",)))["response"]
    assert refused == {
        "uid": "u-1",
        "allowed": False,
        "status": {"message": "no", "code": 400},
        "warnings": ["careful"],
    }


def test_the_cli_flags_are_kics() -> None:
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    args = parser.parse_args(["ingress-controller"])
    assert options_from_args(args).admission_listen == ""
    args = parser.parse_args(
        [
            "ingress-controller",
            "--admission-webhook-listen",
            "0.0.0.0:8080",
            "--admission-webhook-cert-file",
            "/c/tls.crt",
            "--admission-webhook-key-file",
            "/c/tls.key",
        ]
    )
    opts = options_from_args(args)
    assert (opts.admission_listen, opts.admission_cert_file, opts.admission_key_file) == (
        "0.0.0.0:8080",
        "/c/tls.crt",
        "/c/tls.key",
    )


# -- the server, in a controller on the fake API server ---------------------------------------


def _write_pair(pki: Pki, directory: Path) -> tuple[str, str]:
    cert, key = pki.issue("fastkong-validation-webhook", dns="localhost", ip="127.0.0.1")
    (directory / "tls.crt").write_text(cert)
    (directory / "tls.key").write_text(key)
    return str(directory / "tls.crt"), str(directory / "tls.key")


def webhook_controller(api: FakeApiServer, cert_file: str, key_file: str) -> Any:
    """A controller on ``api`` serving the admission webhook on a free loopback port."""
    return controller(
        api,
        admission_listen="127.0.0.1:0",
        admission_cert_file=cert_file,
        admission_key_file=key_file,
    )


async def _post(port: int, ca: str, body: Any) -> tuple[int, Any]:
    context = ssl.create_default_context(cadata=ca)
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"https://127.0.0.1:{port}/", data=data, ssl=context) as response,
    ):
        text = await response.text()
        try:
            return response.status, json.loads(text)
        except ValueError:
            return response.status, text


def _review(obj: dict[str, Any], operation: str = "CREATE") -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "AdmissionReview",
        "request": request(obj, operation),
    }


async def test_the_controller_serves_reviews_over_https(tmp_path: Path) -> None:
    pki = Pki("webhook-ca")
    cert_file, key_file = _write_pair(pki, tmp_path)
    conf = secret("plugin-conf", {"transformer": 'add:\n  headers: ["x-a:1"]\n'})
    reader = plugin(
        "t",
        plugin="request-transformer",
        configFrom={"secretKeyRef": {"name": "plugin-conf", "key": "transformer"}},
    )
    async with FakeApiServer() as api:
        backend(api, "echo", 9001)
        api.create(conf)
        api.create(reader)
        async with webhook_controller(api, cert_file, key_file) as ctl:
            assert ctl.admission is not None
            port = ctl.admission.port
            await eventually(ctl.ready.is_set, what="caches synced")

            bad = plugin("rl", plugin="rate-limiting", config={"minute": "often"})
            status, body = await _post(port, pki.pem, _review(bad))
            assert status == 200
            assert body["apiVersion"] == API_VERSION and body["kind"] == "AdmissionReview"
            response = body["response"]
            assert response["uid"] == request(bad)["uid"]
            assert response["allowed"] is False and response["status"]["code"] == 400
            assert "config.minute: expected a number" in response["status"]["message"]

            status, body = await _post(port, pki.pem, _review(ingress("ok", "/ok", "echo")))
            assert (status, body["response"]["allowed"]) == (200, True)

            # The Secret a stored plugin reads: judged with what the controller watched.
            broken = copy.deepcopy(conf)
            broken["stringData"]["transformer"] = "add:\n  headerz: 1\n"
            status, body = await _post(port, pki.pem, _review(broken, "UPDATE"))
            assert body["response"]["allowed"] is False
            assert "KongPlugin default/t" in body["response"]["status"]["message"]

            status, text = await _post(port, pki.pem, b"not json")
            assert status == 400 and "not JSON" in text
            assert "refused=2" in ctl.state()["admission"]


async def test_reviews_before_the_caches_are_synced_are_allowed_with_a_warning(
    tmp_path: Path,
) -> None:
    pki = Pki("webhook-ca")
    cert_file, key_file = _write_pair(pki, tmp_path)
    async with FakeApiServer() as api:
        api.fail("GET", "/ingresses", 500, times=10_000)  # the Ingress list never completes
        async with webhook_controller(api, cert_file, key_file) as ctl:
            assert ctl.admission is not None
            bad = plugin("rl", plugin="rate-limiting", config={"minute": "often"})
            status, body = await _post(ctl.admission.port, pki.pem, _review(bad))
            assert status == 200
            assert body["response"]["allowed"] is True
            assert body["response"]["warnings"] == [NOT_SYNCED]


async def test_a_renewed_certificate_is_served_to_new_connections(tmp_path: Path) -> None:
    first, second = Pki("first-ca"), Pki("second-ca")
    cert_file, key_file = _write_pair(first, tmp_path)
    async with FakeApiServer() as api, webhook_controller(api, cert_file, key_file) as ctl:
        server = ctl.admission
        assert server is not None
        review = _review(ingress("ok", "/ok", "echo"))
        assert (await _post(server.port, first.pem, review))[0] == 200
        assert not server.reload_if_changed()  # nothing changed yet

        # A key that does not match the certificate: refused, the old pair stays.
        (tmp_path / "tls.key").write_text(second.issue("x")[1])
        assert not server.reload_if_changed()
        assert (await _post(server.port, first.pem, review))[0] == 200

        _write_pair(second, tmp_path)  # what cert-manager does on renewal
        assert server.reload_if_changed()
        assert (await _post(server.port, second.pem, review))[0] == 200
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await _post(server.port, first.pem, review)
        assert server.reloads == 1


# -- every golden input ------------------------------------------------------------------------


def _golden(case: str) -> list[dict[str, Any]]:
    return load_objects(GOLDEN / case / "in.yaml")


@pytest.mark.parametrize("case", CASES)
def test_objects_the_translator_takes_are_admitted_as_they_are(case: str) -> None:
    """No false refusals: re-applying any object the controller translates without an error
    is admitted (the plugin schema check agrees with the translation)."""
    cluster = _golden(case)
    classes = ["kong", CLASS]
    result = translate(cluster, ingress_class=classes)
    failing = {p.ref for p in result.problems if p.level == "error"}
    r = Reviewer(functools.partial(translate, ingress_class=classes), classes)
    r.seed(1, result)
    checked = 0
    for obj in cluster:
        if ObjectRef.of(obj) in failing:
            continue
        verdict = r.review(request(obj, "UPDATE"), cluster, 1)
        assert verdict.allowed, (ObjectRef.of(obj), verdict)
        checked += 1
    assert checked


@st.composite
def mangled_review(draw: st.DrawFn) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    cluster = _golden(draw(st.sampled_from(CASES)))
    obj = mangle(draw, draw(st.sampled_from(cluster)), ODD, depth=2)
    operation = draw(st.sampled_from(["CREATE", "UPDATE"]))
    return request(obj, operation), cluster


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mangled_review())
def test_any_object_gets_a_verdict(review: tuple[dict[str, Any], list[dict[str, Any]]]) -> None:
    """Whatever shape an object comes in (a CRD without its schema lets anything through), the
    review answers: a refusal with its reason, or an admission."""
    req, cluster = review
    verdict = reviewer().review(req, cluster, 1)
    assert verdict.allowed == (not verdict.message)
    assert all(0 < len(w) <= MAX_WARNING for w in verdict.warnings)
    json.dumps(answer(req, verdict))


def test_a_ca_configmap_edit_that_breaks_a_service_is_refused() -> None:
    pki = Pki("bundle CA")
    bundle = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "bundle",
            "namespace": "default",
            "labels": {"konghq.com/ca-cert": "true"},
        },
        "data": {"id": "0b1c0000-0000-4000-8000-0000000000cd", "ca.crt": pki.pem},
    }
    svc = with_echo()[0]
    svc["metadata"]["annotations"] = {
        "konghq.com/protocol": "https",
        "konghq.com/tls-verify": "true",
        "konghq.com/ca-certificates-configmaps": "bundle",
    }
    cluster = [svc, ingress("app", "/app", "echo"), bundle]
    r = reviewer()
    assert r.review(request(bundle, "UPDATE"), cluster, 1).allowed
    broken = copy.deepcopy(bundle)
    del broken["data"]["id"]
    verdict = r.review(request(broken, "UPDATE"), cluster, 1)
    assert not verdict.allowed
    assert (
        "Change on ConfigMap default/bundle will generate invalid configuration for Service "
        "default/echo: Invalid CA certificate 'default/bundle': missing 'id' field in data"
    ) in verdict.message
