"""Gateway API BackendTLSPolicy (fastkong/k8s/backend_tls.py): its status, and translated as
KIC reads it, as TLS annotations on the Services it targets, with the policy's hostname as the
Host its routes send; then served: a gateway on the translated config reaches an HTTPS backend
on loopback whose certificate names the policy's hostname and is signed by the policy's CA
Secret, whatever Host the client sent, and refuses one that does not match."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from fastkong.config import load_config
from fastkong.k8s import translate
from fastkong.k8s.gateway_status import desired
from fastkong.k8s.gatewayapi import view
from fastkong.k8s.objects import Index
from tests.helpers import Gateway, HeadPeer
from tests.k8s.gateway_api_schema import schemas
from tests.k8s.kube import (
    CONTROLLER,
    backend_ref,
    endpoint_slice,
    gateway,
    gateway_class,
    httproute,
    listener,
    rule,
    service,
)
from tests.pki import Pki

HOST = "api.internal.test"
CA_ID = "0b1c0000-0000-4000-8000-0000000000cb"


def policy(
    name: str, target: str, hostname: str = HOST, options: dict[str, str] | None = None
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "targetRefs": [{"group": "", "kind": "Service", "name": target}],
        "validation": {
            "hostname": hostname,
            "caCertificateRefs": [{"group": "", "kind": "Secret", "name": "ca"}],
        },
    }
    if options is not None:
        spec["options"] = options
    return {
        "apiVersion": "gateway.networking.k8s.io/v1alpha3",
        "kind": "BackendTLSPolicy",
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
    }


def ca_secret(pki: Pki) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "ca",
            "namespace": "default",
            "labels": {"konghq.com/ca-cert": "true"},
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "stringData": {"id": CA_ID, "cert": pki.pem},
    }


CONFIGMAP_CA_ID = "0b1c0000-0000-4000-8000-0000000000cc"


def ca_configmap(pki: Pki, labelled: bool = True) -> dict[str, Any]:
    """A CA ConfigMap as trust-manager writes one, with KIC's label and ``id``."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "ca-bundle",
            "namespace": "default",
            "labels": {"konghq.com/ca-cert": "true"} if labelled else {},
        },
        "data": {"id": CONFIGMAP_CA_ID, "ca.crt": pki.pem},
    }


def cluster(pki: Pki, port: int, *extra: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        gateway_class(),
        gateway("main", listener()),
        httproute("api", rule("/", backend_ref("api", 443))),
        service("api", 443),
        endpoint_slice("api-1", "api", "127.0.0.1", port),
        ca_secret(pki),
        *extra,
    ]


def kong_service(result: Any) -> dict[str, Any]:
    (svc,) = result.config["services"]
    return dict(svc)


def test_a_policy_is_its_services_tls_annotations() -> None:
    pki = Pki("backend CA")
    deep = policy("api-tls", "api", options={"gateway.konghq.com/tls-verify-depth": "2"})
    assert not list(jsonschema.Draft7Validator(schemas()["BackendTLSPolicy"]).iter_errors(deep))
    result = translate(cluster(pki, 8443, deep))
    assert result.problems == []
    svc = kong_service(result)
    assert (svc["protocol"], svc["tls_verify"], svc["tls_verify_depth"]) == ("https", True, 2)
    assert svc["ca_certificates"] == [CA_ID]
    (upstream,) = result.config["upstreams"]
    assert upstream["host_header"] == HOST
    # The hostname is the Host sent, so Kong's TLS name and check (unlike KIC's routes, which
    # keep the client's Host and so have the pod's certificate checked against it).
    (route,) = svc["routes"]
    assert route["preserve_host"] is False
    load_config(result.to_yaml().encode())  # the gateway takes it


def test_kics_rules_for_policies() -> None:
    pki = Pki("backend CA")
    # Another Service's policy, a ConfigMap CA and a bad depth change nothing here.
    other = policy("other-tls", "other")
    result = translate(cluster(pki, 8443, other))
    svc = kong_service(result)
    assert svc["protocol"] == "http" and "tls_verify" not in svc
    assert svc["routes"][0]["preserve_host"] is True
    configmap_ca = policy("api-tls", "api", options={"gateway.konghq.com/tls-verify-depth": "x"})
    configmap_ca["spec"]["validation"]["caCertificateRefs"] = [
        {"group": "", "kind": "ConfigMap", "name": "ca-bundle"}
    ]
    result = translate(cluster(pki, 8443, configmap_ca))
    svc = kong_service(result)
    assert svc["tls_verify"] is True and "ca_certificates" not in svc
    assert "tls_verify_depth" not in svc
    assert [str(p) for p in result.problems] == [
        "error: Service default/api: Failed to fetch configmap for CA Certificate "
        "'default/ca-bundle'"
    ]
    # The controller watches only labelled ConfigMaps; offline, an unlabelled one is refused
    # the same way, with the reason.
    result = translate(cluster(pki, 8443, configmap_ca, ca_configmap(pki, labelled=False)))
    assert "ca_certificates" not in kong_service(result)
    assert [str(p) for p in result.problems] == [
        "error: Service default/api: Failed to fetch configmap for CA Certificate "
        "'default/ca-bundle' (a CA ConfigMap needs the label konghq.com/ca-cert: \"true\")"
    ]
    # (Another CA than the Secret's: Kong refuses one certificate twice.)
    result = translate(cluster(pki, 8443, configmap_ca, ca_configmap(Pki("bundle CA"))))
    assert result.problems == []
    assert kong_service(result)["ca_certificates"] == [CONFIGMAP_CA_ID]
    assert {c["id"] for c in result.config["ca_certificates"]} == {CA_ID, CONFIGMAP_CA_ID}
    # Two policies on one Service: neither applies (KIC), and the Service is told.
    result = translate(cluster(pki, 8443, policy("a", "api"), policy("b", "api")))
    assert "tls_verify" not in kong_service(result)
    assert [str(p) for p in result.problems] == [
        "error: Service default/api: Multiple BackendTLSPolicies attached to service (a, b)"
    ]


class HttpsPeer(HeadPeer):
    """HTTPS with a certificate for ``name`` from ``pki``; answers 200 with the Host it got."""

    def __init__(self, pki: Pki, name: str, workdir: Path) -> None:
        cert, key = pki.issue(name, dns=name)
        (workdir / "peer.pem").write_text(cert)
        (workdir / "peer.key").write_text(key)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(workdir / "peer.pem", workdir / "peer.key")
        super().__init__(ssl=context)

    def answer(self, head: bytes, writer: asyncio.StreamWriter) -> bytes:
        host = [
            line.split(b":", 1)[1].strip()
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"host:")
        ]
        return b"host=" + (host[0] if host else b"")


@pytest.fixture(scope="module")
def pki() -> Pki:
    return Pki("backend CA")


@pytest.fixture(scope="module")
def peer(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpsPeer]:
    server = HttpsPeer(pki, HOST, tmp_path_factory.mktemp("https-peer")).start()
    yield server
    server.stop()


@pytest.mark.integration
@pytest.mark.parametrize(
    ("hostname", "status", "body"),
    [(HOST, 200, f"host={HOST}"), ("elsewhere.internal.test", 502, None)],
    ids=["verified", "wrong-hostname"],
)
def test_the_policy_is_served(
    tmp_path: Path, pki: Pki, peer: HttpsPeer, hostname: str, status: int, body: str | None
) -> None:
    result = translate(cluster(pki, peer.port, policy("api-tls", "api", hostname)))
    assert result.problems == []
    gw = Gateway(tmp_path, result.to_yaml(), 1).start()
    try:
        answer = httpx.get(gw.url("/x"), timeout=10)
    finally:
        gw.stop()
    assert answer.status_code == status, answer.text
    if body is not None:
        # Kong's Host: the upstream's host_header, with the port when not 443.
        assert answer.text == f"{body}:{peer.port}"


@pytest.mark.integration
def test_a_configmap_ca_is_served(tmp_path: Path, pki: Pki, peer: HttpsPeer) -> None:
    """The pod's certificate checked against a CA from a ConfigMap (the Gateway API's usual
    kind of CA ref), by a real gateway: verified, and refused with another CA."""
    tls = policy("api-tls", "api")
    tls["spec"]["validation"]["caCertificateRefs"] = [
        {"group": "", "kind": "ConfigMap", "name": "ca-bundle"}
    ]
    for ca, status in ((pki, 200), (Pki("another CA"), 502)):
        objects = [o for o in cluster(pki, peer.port, tls) if o["kind"] != "Secret"]
        result = translate([*objects, ca_configmap(ca)])
        assert result.problems == []
        where = tmp_path / str(status)
        where.mkdir()
        gw = Gateway(where, result.to_yaml(), 1).start()
        try:
            answer = httpx.get(gw.url("/x"), timeout=10)
        finally:
            gw.stop()
        assert answer.status_code == status, answer.text


def test_policy_status_names_our_gateways_and_kics_acceptance() -> None:
    pki = Pki("backend CA")
    ok = policy("api-tls", "api")
    ok["spec"]["validation"]["wellKnownCACertificates"] = "System"  # KIC: Invalid
    (entry,) = status_of(cluster(pki, 8443, ok))[POLICY]["ancestors"]
    assert entry["ancestorRef"] == {
        "group": "gateway.networking.k8s.io",
        "kind": "Gateway",
        "namespace": "default",
        "name": "main",
    }
    assert entry["controllerName"] == CONTROLLER
    assert accepted(entry) == ("True", "Accepted", "")
    # Another controller's entry is kept; ours follows the policy.
    theirs = {"ancestorRef": {"name": "x"}, "controllerName": "example.com/other"}
    sans = policy("api-tls", "api")
    validation = sans["spec"]["validation"]
    validation["subjectAltNames"] = [{"type": "Hostname", "hostname": "a.test"}]
    validation["caCertificateRefs"].append({"group": "", "kind": "Secret", "name": "gone"})
    sans["status"] = {"ancestors": [theirs]}
    kept, entry = status_of(cluster(pki, 8443, sans))[POLICY]["ancestors"]
    assert kept == theirs
    assert accepted(entry) == (
        "False",
        "Invalid",
        "Secret default/gone set as CACertificateRef not found - "
        "SubjectAltNames feature is not currently supported",
    )
    missing = policy("api-tls", "api")
    missing["spec"]["validation"]["caCertificateRefs"] = [
        {"group": "", "kind": "ConfigMap", "name": "ca-bundle"}
    ]
    (entry,) = status_of(cluster(pki, 8443, missing))[POLICY]["ancestors"]
    assert accepted(entry) == (
        "False",
        "Invalid",
        "ConfigMap default/ca-bundle set as CACertificateRef not found",
    )
    (entry,) = status_of(cluster(pki, 8443, missing, ca_configmap(pki)))[POLICY]["ancestors"]
    assert accepted(entry) == ("True", "Accepted", "")
    got = status_of(cluster(pki, 8443, policy("a", "api"), policy("b", "api")))
    for name in ("a", "b"):
        (entry,) = got[("BackendTLSPolicy", "default", name)]["ancestors"]
        assert accepted(entry)[:2] == ("False", "Conflicted")
    # A policy whose Service no route of ours carries: no status of ours.
    lonely = status_of(cluster(pki, 8443, policy("o", "other")))
    assert ("BackendTLSPolicy", "default", "o") not in lonely


POLICY = ("BackendTLSPolicy", "default", "api-tls")


def status_of(objs: list[dict[str, Any]]) -> Any:
    index = Index(objs)
    return desired(index, view(index))


def accepted(entry: dict[str, Any]) -> tuple[str, str, str]:
    (cond,) = entry["conditions"]
    assert cond["type"] == "Accepted"
    return cond["status"], cond["reason"], cond["message"]
