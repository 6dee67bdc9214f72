"""TLS towards a Service's pods, as KIC translates it: ``konghq.com/client-cert`` and
``konghq.com/ca-certificates-secrets`` on the Service, and CA certificate Secrets.

KIC (``internal/dataplane/translator/ingressrules.go`` and ``translate_cacerts.go``):

- ``konghq.com/client-cert: <secret>`` names a TLS Secret in the Service's namespace; it becomes
  a Kong certificate (id: the Secret's UID) and the service's ``client_certificate``. Refused on
  a service whose protocol is not a TLS one.
- ``konghq.com/ca-certificates-secrets: a,b`` names CA certificate Secrets in the namespace;
  their ``id`` values become the service's ``ca_certificates``. Refused unless
  ``konghq.com/tls-verify`` is ``true`` and the protocol is a TLS one.
- ``konghq.com/ca-certificates-configmaps: a,b`` does the same with CA certificate
  ConfigMaps (KIC 3.4+: what trust-manager and cert-manager's CA injection distribute).
- Every Secret or ConfigMap labelled ``konghq.com/ca-cert: "true"`` becomes a Kong CA
  certificate: ``id`` from its data, the PEM from ``cert`` (or ``ca.crt``); one certificate
  only, a CA, not expired. Two objects with one ``id``: the oldest wins (then namespace, then
  name).

The controller watches only the ConfigMaps with that label (a cluster's ConfigMaps are many
and large); so that offline translation agrees, an unlabelled ConfigMap is not a CA
certificate here either, and an annotation naming one says so.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Mapping
from typing import Any, Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from fastkong.k8s import annotations as ann
from fastkong.k8s import objects as o
from fastkong.k8s.objects import Index, Obj, ObjectRef, Problem

CLIENT_CERT: Final = ann.PREFIX + "client-cert"
CA_SECRETS: Final = ann.PREFIX + "ca-certificates-secrets"
CA_CONFIGMAPS: Final = ann.PREFIX + "ca-certificates-configmaps"
CA_LABEL: Final = "konghq.com/ca-cert"
TLS_PROTOCOLS: Final = frozenset({"https", "grpcs", "tls", "tls_passthrough"})
#: Ids for Secrets without a UID (manifests translated offline): stable per namespace/name.
_OFFLINE_IDS: Final = uuid.UUID("7c0a8f0e-5f46-4b8e-9a53-0d6c1e4c2f10")


def secret_id(secret: Obj) -> str:
    """A Secret's UID, which KIC uses as the certificate id (or a name-derived one offline)."""
    uid = o.meta(secret).get("uid")
    if isinstance(uid, str):
        try:
            return str(uuid.UUID(uid))
        except ValueError:
            pass
    return str(uuid.uuid5(_OFFLINE_IDS, f"{o.namespace(secret)}/{o.name(secret)}"))


def apply(
    record: dict[str, Any],
    service: Obj,
    index: Index,
    problems: list[Problem],
    client_certs: dict[tuple[str, str], Obj],
) -> None:
    """Set ``client_certificate`` and ``ca_certificates`` on a Kong service ``record`` from the
    Kubernetes ``service``'s annotations; the client certificate Secrets used go to
    ``client_certs`` (to become certificates)."""
    anns, ns, ref = o.anns(service), o.namespace(service), ObjectRef.of(service)
    protocol = record.get("protocol", "http")
    if name := anns.get(CLIENT_CERT):
        secret = index.get("Secret", ns, name)
        if secret is None:
            problems.append(Problem(ref, f"Failed to fetch secret '{ns}/{name}'"))
        elif protocol not in TLS_PROTOCOLS:
            problems.append(
                Problem(
                    ref,
                    f"Client certificate requested for incompatible service protocol '{protocol}'",
                )
            )
        else:
            client_certs[(ns, name)] = secret
            record["client_certificate"] = secret_id(secret)
    names = [("Secret", n) for n in o.split_comma(anns.get(CA_SECRETS, ""))]
    names += [("ConfigMap", n) for n in o.split_comma(anns.get(CA_CONFIGMAPS, ""))]
    if not names:
        return
    if record.get("tls_verify") is not True:
        problems.append(
            Problem(ref, "CA certificates requested for service without TLS verification enabled")
        )
        return
    if protocol not in TLS_PROTOCOLS:
        problems.append(
            Problem(
                ref, f"CA certificates requested for incompatible service protocol '{protocol}'"
            )
        )
        return
    ids = []
    for kind, name in names:
        found = index.get(kind, ns, name)
        if found is None or (kind == "ConfigMap" and not is_ca_object(found)):
            why = ""
            if found is not None:
                why = f' (a CA ConfigMap needs the label {CA_LABEL}: "true")'
            problems.append(
                Problem(
                    ref,
                    f"Failed to fetch {kind.lower()} for CA Certificate '{ns}/{name}'{why}",
                )
            )
            continue
        try:
            cert_id = ca_data(found).get("id")
        except ValueError as exc:
            problems.append(Problem(ObjectRef.of(found), str(exc)))
            continue
        if not cert_id:
            problems.append(
                Problem(ref, f"Invalid CA certificate '{ns}/{name}': missing 'id' field in data")
            )
            continue
        ids.append(cert_id.strip())
    if ids:
        record["ca_certificates"] = ids


def is_ca_object(obj: Obj) -> bool:
    """A Secret or ConfigMap that holds a CA certificate for Kong (KIC's label)."""
    return o.labels(obj).get(CA_LABEL) == "true"


def ca_data(obj: Obj) -> dict[str, str]:
    """A CA Secret's or ConfigMap's values as text (a ConfigMap's ``data`` is text already)."""
    if obj.get("kind") != "ConfigMap":
        return o.secret_data(obj)
    data = obj.get("data")
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ValueError("data must be a map of strings")
    return {str(k): str(v) for k, v in data.items()}


def client_certificate(secret: Obj, problems: list[Problem]) -> dict[str, Any] | None:
    """The Kong certificate of a client-cert TLS Secret (no SNIs), or None (reported)."""
    ref = ObjectRef.of(secret)
    try:
        data = o.secret_data(secret)
    except ValueError as exc:
        problems.append(Problem(ref, str(exc)))
        return None
    if not data.get("tls.crt") or not data.get("tls.key"):
        problems.append(Problem(ref, "TLS secret needs tls.crt and tls.key"))
        return None
    return {
        "id": secret_id(secret),
        "cert": data["tls.crt"].strip(),
        "key": data["tls.key"].strip(),
        "tags": o.tags(secret),
    }


def ca_certificates(index: Index, problems: list[Problem]) -> list[tuple[dict[str, Any], Obj]]:
    """KIC's getCACerts over the Secrets and ConfigMaps labelled ``konghq.com/ca-cert:
    "true"``: each CA certificate record with the object it came from, sorted by id."""
    winners: dict[str, tuple[Obj, dict[str, str]]] = {}
    candidates = sorted(
        (x for kind in ("Secret", "ConfigMap") for x in index.all(kind) if is_ca_object(x)),
        key=lambda s: (o.created(s), o.namespace(s), o.name(s)),
    )
    for secret in candidates:
        ref = ObjectRef.of(secret)
        try:
            data = ca_data(secret)
        except ValueError as exc:
            problems.append(Problem(ref, str(exc)))
            continue
        cert_id = data.get("id")
        if cert_id is None:
            problems.append(
                Problem(ref, "invalid secret CA certificate: missing 'id' field in data")
            )
            continue
        if cert_id in winners:  # candidates are in KIC's order of preference
            problems.append(
                Problem(
                    ref, "invalid secret CA certificate: duplicate 'id' field in multiple objects"
                )
            )
            continue
        winners[cert_id] = (secret, data)
    out = []
    for cert_id in sorted(winners):
        secret, data = winners[cert_id]
        ref = ObjectRef.of(secret)
        pem = data.get("cert", data.get("ca.crt"))
        if pem is None:
            problems.append(
                Problem(
                    ref,
                    f"invalid secret CA certificate {o.namespace(secret)}/{o.name(secret)}, "
                    'neither "cert" nor "ca.crt" key exist',
                )
            )
            continue
        try:
            single = _one_ca(pem)
        except ValueError as exc:
            problems.append(Problem(ref, f"invalid secret CA certificate: {exc}"))
            continue
        out.append(({"id": cert_id, "cert": single, "tags": o.tags(secret)}, secret))
    return out


def _one_ca(pem: str) -> str:
    """KIC's toKongCACertificate: exactly one PEM certificate, a CA, not expired; re-encoded."""
    text = pem.strip()
    if not text.startswith("-----BEGIN CERTIFICATE-----"):
        raise ValueError(
            "invalid PEM block type" if text.startswith("-----BEGIN") else "invalid PEM block"
        )
    try:
        certs = x509.load_pem_x509_certificates(text.encode())
    except ValueError:
        raise ValueError("failed to parse certificate") from None
    if len(certs) > 1:
        raise ValueError("multiple PEM certificates found")
    cert = certs[0]
    try:
        is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if not is_ca:
        raise ValueError("certificate is missing the 'CA' basic constraint")
    if datetime.datetime.now(datetime.UTC) > cert.not_valid_after_utc:
        raise ValueError("expired")
    return cert.public_bytes(serialization.Encoding.PEM).decode()
