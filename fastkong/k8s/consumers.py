"""KongConsumer + credential Secrets -> Kong consumers with nested credentials.

A credential is a Secret in the consumer's namespace, named in the KongConsumer's
``credentials`` list and labelled ``konghq.com/credential`` with ``key-auth``, ``basic-auth``,
``hmac-auth``, ``jwt`` or ``acl``; its data holds the credential's fields (KIC's
``FillConsumersAndCredentials``). A credential that cannot be used is left out and reported; the
consumer keeps the others.
"""

from __future__ import annotations

from typing import Any, Final, Literal

from fastkong.k8s import objects as o
from fastkong.k8s.objects import Index, Obj, ObjectRef, Problem

#: credential type -> (Kong entity array, required fields, optional fields).
CREDENTIALS: Final[dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]]] = {
    "key-auth": ("keyauth_credentials", ("key",), ("ttl",)),
    "basic-auth": ("basicauth_credentials", ("username", "password"), ()),
    "hmac-auth": ("hmacauth_credentials", ("username",), ("secret",)),
    "jwt": ("jwt_secrets", ("key",), ("secret", "algorithm", "rsa_public_key")),
    "acl": ("acls", ("group",), ()),
}
#: Entity array -> the field that must be unique across all consumers (KIC's
#: ``CredentialConflictsDetector``, ``kic:internal/dataplane/kongstate/credentials_conflicts.go``).
UNIQUE_FIELD: Final = {
    "keyauth_credentials": "key",
    "basicauth_credentials": "username",
    "hmacauth_credentials": "username",
    "jwt_secrets": "key",
}
#: How KIC 1.x named the type, inside the Secret's data. KIC 3 reads only the label
#: (``util.ExtractKongCredentialType``): a Secret with just this key is no credential.
LEGACY_TYPE_KEY: Final = "kongCredType"


def build_consumer(
    obj: Obj, index: Index, problems: list[Problem]
) -> tuple[dict[str, Any], list[tuple[ObjectRef, str, dict[str, Any]]]] | None:
    """The consumer record (without credentials) and its credentials as ``(secret ref, entity
    array, record)``; None (and a problem) when the KongConsumer cannot be a consumer."""
    ref = ObjectRef.of(obj)
    username, custom_id = obj.get("username"), obj.get("custom_id")
    if not username and not custom_id:
        problems.append(Problem(ref, "neither 'username' nor 'custom_id' is set"))
        return None
    consumer: dict[str, Any] = {}
    if username:
        consumer["username"] = str(username)
    if custom_id:
        consumer["custom_id"] = str(custom_id)
    consumer["tags"] = o.tags(obj)
    if obj.get("consumerGroups"):
        problems.append(
            Problem(ref, "consumerGroups ignored: consumer groups are Kong Enterprise", "warning")
        )
    credentials: list[tuple[ObjectRef, str, dict[str, Any]]] = []
    names = obj.get("credentials") or []
    if not isinstance(names, list):
        problems.append(Problem(ref, "'credentials' must be a list of Secret names"))
        names = []
    ns = o.namespace(obj)
    for secret_name in dict.fromkeys(str(n) for n in names):
        secret = index.get("Secret", ns, secret_name)
        if secret is None:
            problems.append(Problem(ref, f"credential secret {ns}/{secret_name} not found"))
            continue
        built = _credential(secret, ref, problems)
        if built is not None:
            credentials.append((ObjectRef.of(secret), *built))
    return consumer, credentials


def _credential(
    secret: Obj, ref: ObjectRef, problems: list[Problem]
) -> tuple[str, dict[str, Any]] | None:
    what = f"credential secret {o.namespace(secret)}/{o.name(secret)}"

    def report(message: str, level: Literal["error", "warning"] = "error") -> None:
        problems.append(Problem(ref, message, level))

    try:
        data = o.secret_data(secret)
    except ValueError as exc:
        report(f"{what}: {exc}")
        return None
    kind = o.labels(secret).get(o.CREDENTIAL_LABEL)
    if not kind:
        legacy = (
            f" ({LEGACY_TYPE_KEY} in data is KIC 1.x's, not read)"
            if data.get(LEGACY_TYPE_KEY)
            else ""
        )
        report(f"{what} has no label {o.CREDENTIAL_LABEL}{legacy}")
        return None
    if kind not in CREDENTIALS:
        report(f"{what}: unsupported credential type {kind!r}")
        return None
    plural, required, optional = CREDENTIALS[kind]
    missing = [f for f in required if not data.get(f)]
    if missing:
        report(f"{what}: {kind} credential needs {', '.join(repr(m) for m in missing)}")
        return None
    record: dict[str, Any] = {}
    for field in (*required, *optional):
        if field in data:
            record[field] = data[field]
    if "ttl" in record:
        try:
            record["ttl"] = int(record["ttl"])
        except ValueError:
            report(f"{what}: ttl {record['ttl']!r} is not an integer; ttl ignored", "warning")
            del record["ttl"]
    extra = sorted(set(data) - set(record) - {LEGACY_TYPE_KEY} - set(optional))
    if extra:
        report(f"{what}: unknown {kind} fields ignored: {', '.join(extra)}", "warning")
    record["tags"] = o.tags(secret)
    return plural, record


def credential_sort_key(record: dict[str, Any]) -> tuple[str, ...]:
    return tuple(str(record.get(f, "")) for f in ("key", "username", "group", "secret"))


def conflicts(
    credentials: list[tuple[ObjectRef, ObjectRef, str, dict[str, Any]]],
) -> dict[int, str]:
    """Among ``(consumer ref, secret ref, entity array, record)``, the indexes of the credentials
    that share their unique field with another one, and why. KIC leaves out every credential
    (and consumer) in a conflict; no side of one is kept, so that a key never authenticates as
    whichever consumer happens to sort first."""
    by_value: dict[tuple[str, str], list[int]] = {}
    for i, (_, _, plural, record) in enumerate(credentials):
        field = UNIQUE_FIELD.get(plural)
        if field is not None and field in record:
            by_value.setdefault((plural, str(record[field])), []).append(i)
    out: dict[int, str] = {}
    for (plural, _), indexes in by_value.items():
        if len(indexes) < 2:
            continue
        field = UNIQUE_FIELD[plural]
        owners = sorted({str(credentials[i][0]) for i in indexes})
        for i in indexes:
            out[i] = f"{plural} {field!r} is also used by another credential ({', '.join(owners)})"
    return out
