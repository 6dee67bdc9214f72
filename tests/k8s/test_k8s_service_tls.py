"""KIC's upstream TLS annotations on Services (``konghq.com/client-cert``,
``konghq.com/ca-certificates-secrets``) and CA certificate Secrets, translated; the config the
translator writes passes fastkong's own validation (the runtime test is
tests/integration/test_upstream_mtls.py)."""

from __future__ import annotations

import base64
from typing import Any

from fastkong.config import load_config
from fastkong.k8s import translate
from fastkong.k8s.translator import dump_yaml
from tests.pki import Pki

CLIENT_UID = "6a5e0000-0000-4000-8000-000000000001"
CA_ID = "0b1c0000-0000-4000-8000-0000000000ca"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def service(anns: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "api", "namespace": "default", "annotations": anns},
        "spec": {"ports": [{"port": 443, "protocol": "TCP"}]},
    }


def ingress() -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "name": "api",
            "namespace": "default",
            "annotations": {"kubernetes.io/ingress.class": "fastkong"},
        },
        "spec": {
            "rules": [
                {
                    "http": {
                        "paths": [
                            {
                                "path": "/",
                                "pathType": "Prefix",
                                "backend": {"service": {"name": "api", "port": {"number": 443}}},
                            }
                        ]
                    }
                }
            ]
        },
    }


def secret(name: str, data: dict[str, str], uid: str | None = None, **meta: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": "default", **meta}
    if uid:
        metadata["uid"] = uid
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "data": {k: b64(v) for k, v in data.items()},
    }


def objects(pki: Pki, anns: dict[str, str]) -> list[dict[str, Any]]:
    cert, key = pki.issue("gateway")
    return [
        ingress(),
        service(anns),
        secret("client", {"tls.crt": cert, "tls.key": key}, uid=CLIENT_UID),
        secret(
            "ca",
            {"id": CA_ID, "cert": pki.pem},
            labels={"konghq.com/ca-cert": "true"},
            creationTimestamp="2026-01-01T00:00:00Z",
        ),
    ]


TLS = {
    "konghq.com/protocol": "https",
    "konghq.com/tls-verify": "true",
    "konghq.com/client-cert": "client",
    "konghq.com/ca-certificates-secrets": "ca",
}


def test_client_cert_and_ca_certificates_are_translated() -> None:
    pki = Pki("k8s CA")
    result = translate(objects(pki, TLS))
    assert result.problems == []
    (svc,) = result.config["services"]
    assert svc["client_certificate"] == CLIENT_UID
    assert svc["ca_certificates"] == [CA_ID]
    assert svc["tls_verify"] is True
    (cert,) = result.config["certificates"]
    assert cert["id"] == CLIENT_UID and "snis" not in cert
    (ca,) = result.config["ca_certificates"]
    assert ca["id"] == CA_ID and ca["cert"].strip() == pki.pem.strip()
    # What the controller writes loads in the gateway.
    loaded = load_config(dump_yaml(result.config))
    assert str(loaded.config.services[0].client_certificate) == CLIENT_UID


def test_ca_certificates_from_configmaps_join_the_secrets_ones() -> None:
    """``konghq.com/ca-certificates-configmaps`` (KIC 3.4+): a labelled ConfigMap's ``id``,
    beside the Secrets', and the ConfigMap becomes a Kong CA certificate."""
    pki, bundle = Pki("k8s CA"), Pki("bundle CA")
    bundle_id = "0b1c0000-0000-4000-8000-0000000000cd"
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "bundle",
            "namespace": "default",
            "labels": {"konghq.com/ca-cert": "true"},
        },
        "data": {"id": bundle_id, "ca.crt": bundle.pem},
    }
    anns = {**TLS, "konghq.com/ca-certificates-configmaps": "bundle"}
    result = translate([*objects(pki, anns), configmap])
    assert result.problems == []
    (svc,) = result.config["services"]
    assert svc["ca_certificates"] == [CA_ID, bundle_id]
    by_id = {c["id"]: c["cert"].strip() for c in result.config["ca_certificates"]}
    assert by_id == {CA_ID: pki.pem.strip(), bundle_id: bundle.pem.strip()}
    load_config(dump_yaml(result.config))
    # One without its id: the service does without it, and is told why.
    del configmap["data"]["id"]
    result = translate([*objects(pki, anns), configmap])
    (svc,) = result.config["services"]
    assert svc["ca_certificates"] == [CA_ID]
    assert sorted(str(p) for p in result.problems) == [
        "error: ConfigMap default/bundle: invalid secret CA certificate: missing 'id' field "
        "in data",
        "error: Service default/api: Invalid CA certificate 'default/bundle': missing 'id' "
        "field in data",
    ]


def test_kics_refusals() -> None:
    pki = Pki("k8s CA")
    plain = translate(
        objects(pki, {"konghq.com/protocol": "http", "konghq.com/client-cert": "client"})
    )
    assert [p.message for p in plain.problems] == [
        "Client certificate requested for incompatible service protocol 'http'"
    ]
    assert "client_certificate" not in plain.config["services"][0]
    # tls-verify on a plain service: KIC's CA check names the protocol; Kong's schema refuses
    # the service (tls_verify must be null), so it is left out with its route.
    mixed = translate(objects(pki, {**TLS, "konghq.com/protocol": "http"}))
    messages = [p.message for p in mixed.problems]
    assert "CA certificates requested for incompatible service protocol 'http'" in messages
    assert "services" not in mixed.config
    unverified = translate(objects(pki, {**TLS, "konghq.com/tls-verify": "false"}))
    assert [p.message for p in unverified.problems] == [
        "CA certificates requested for service without TLS verification enabled"
    ]
    missing = translate(
        objects(
            pki,
            {
                **TLS,
                "konghq.com/client-cert": "nope",
                "konghq.com/ca-certificates-secrets": "ca,gone",
            },
        )
    )
    assert [p.message for p in missing.problems] == [
        "Failed to fetch secret 'default/nope'",
        "Failed to fetch secret for CA Certificate 'default/gone'",
    ]
    assert missing.config["services"][0]["ca_certificates"] == [CA_ID]


def test_bad_ca_secrets_are_left_out_and_reported() -> None:
    pki = Pki("k8s CA")
    label = {"konghq.com/ca-cert": "true"}
    bad = [
        secret("no-id", {"cert": pki.pem}, labels=label),
        secret("no-cert", {"id": "a"}, labels=label),
        secret("leaf", {"id": "b", "cert": pki.issue("leaf")[0]}, labels=label),
        secret("two", {"id": "c", "cert": pki.pem + Pki("x").pem}, labels=label),
        secret("junk", {"id": "d", "ca.crt": "not a pem"}, labels=label),
        secret(
            "dupe",
            {"id": CA_ID, "cert": pki.pem},
            labels=label,
            creationTimestamp="2026-02-01T00:00:00Z",
        ),
    ]
    result = translate([*objects(pki, TLS), *bad])
    assert [c["id"] for c in result.config["ca_certificates"]] == [CA_ID]
    found = sorted((p.ref.name if p.ref else "", p.message) for p in result.problems)
    assert found == [
        ("dupe", "invalid secret CA certificate: duplicate 'id' field in multiple objects"),
        ("junk", "invalid secret CA certificate: invalid PEM block"),
        ("leaf", "invalid secret CA certificate: certificate is missing the 'CA' basic constraint"),
        (
            "no-cert",
            'invalid secret CA certificate default/no-cert, neither "cert" nor "ca.crt" key exist',
        ),
        ("no-id", "invalid secret CA certificate: missing 'id' field in data"),
        ("two", "invalid secret CA certificate: multiple PEM certificates found"),
    ]
