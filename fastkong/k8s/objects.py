"""Kubernetes objects as plain dicts: references, problems, tags, the index the translator reads.

The translator never talks to an API server: it gets a list of objects (what ``kubectl get -o
yaml`` prints, or what a watch delivers) and indexes them here by kind, namespace and name.
Nothing in this module does I/O.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

#: API groups of the kinds the translator reads (``kind`` -> group; "" is the core group).
KNOWN_KINDS: Final[Mapping[str, str]] = {
    "Ingress": "networking.k8s.io",
    "IngressClass": "networking.k8s.io",
    "Service": "",
    "EndpointSlice": "discovery.k8s.io",
    "Secret": "",
    "KongPlugin": "configuration.konghq.com",
    "KongClusterPlugin": "configuration.konghq.com",
    "KongConsumer": "configuration.konghq.com",
    "KongUpstreamPolicy": "configuration.konghq.com",
    "KongIngress": "configuration.konghq.com",
    "IngressClassParameters": "configuration.konghq.com",
    "GatewayClass": "gateway.networking.k8s.io",
    "Gateway": "gateway.networking.k8s.io",
    "HTTPRoute": "gateway.networking.k8s.io",
    "TCPRoute": "gateway.networking.k8s.io",
    "TLSRoute": "gateway.networking.k8s.io",
    "UDPRoute": "gateway.networking.k8s.io",
    "TCPIngress": "configuration.konghq.com",
    "UDPIngress": "configuration.konghq.com",
    "KongVault": "configuration.konghq.com",
    "ReferenceGrant": "gateway.networking.k8s.io",
    "BackendTLSPolicy": "gateway.networking.k8s.io",
    "Namespace": "",
    "ConfigMap": "",
}

CLUSTER_SCOPED: Final = frozenset(
    {"IngressClass", "KongClusterPlugin", "GatewayClass", "Namespace", "KongVault"}
)

INGRESS_CLASS_ANNOTATION: Final = "kubernetes.io/ingress.class"
DEFAULT_CLASS_ANNOTATION: Final = "ingressclass.kubernetes.io/is-default-class"
SERVICE_NAME_LABEL: Final = "kubernetes.io/service-name"
CREDENTIAL_LABEL: Final = "konghq.com/credential"
TAGS_ANNOTATION: Final = "konghq.com/tags"

Obj = Mapping[str, Any]


@dataclass(frozen=True, order=True, slots=True)
class ObjectRef:
    """Which Kubernetes object something came from: ``Ingress default/echo``."""

    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.kind} {where}"

    @classmethod
    def of(cls, obj: Obj) -> ObjectRef:
        meta = obj.get("metadata")
        if not isinstance(meta, Mapping):
            meta = {}
        return cls(
            str(obj.get("kind", "")),
            str(meta.get("namespace") or ""),
            str(meta.get("name") or "<unnamed>"),
        )


@dataclass(frozen=True, order=True, slots=True)
class Problem:
    """An object (or part of one) the translator left out or changed, and why.

    ``level`` is ``"error"`` when something was left out of the config and ``"warning"`` when
    only a setting was ignored.
    """

    ref: ObjectRef
    message: str
    level: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        return f"{self.level}: {self.ref}: {self.message}"


def meta(obj: Obj) -> Mapping[str, Any]:
    m = obj.get("metadata")
    return m if isinstance(m, Mapping) else {}


def namespace(obj: Obj) -> str:
    return str(meta(obj).get("namespace") or "")


def name(obj: Obj) -> str:
    return str(meta(obj).get("name") or "")


def anns(obj: Obj) -> Mapping[str, str]:
    a = meta(obj).get("annotations")
    return {str(k): str(v) for k, v in a.items()} if isinstance(a, Mapping) else {}


def labels(obj: Obj) -> Mapping[str, str]:
    a = meta(obj).get("labels")
    return {str(k): str(v) for k, v in a.items()} if isinstance(a, Mapping) else {}


def spec(obj: Obj) -> Mapping[str, Any]:
    s = obj.get("spec")
    return s if isinstance(s, Mapping) else {}


def created(obj: Obj) -> str:
    """The creation timestamp (RFC 3339 sorts as text); objects without one sort last."""
    return str(meta(obj).get("creationTimestamp") or "~")


def split_comma(value: str) -> list[str]:
    """KIC's comma lists: split on ``,``, trim, drop empty items."""
    return [part.strip() for part in value.split(",") if part.strip()]


def group_version(obj: Obj) -> tuple[str, str]:
    api = str(obj.get("apiVersion", ""))
    group, _, version = api.rpartition("/")
    return group, version


def tags(obj: Obj) -> list[str]:
    """KIC's tags for an object: name, namespace, kind, uid, group, version, then
    ``konghq.com/tags``. Like KIC's ``GenerateTagsForObject``, a core object (Service, Secret)
    has no ``k8s-group`` tag: its group is empty."""
    group, version = group_version(obj)
    out: list[str] = []
    if name(obj):
        out.append(f"k8s-name:{name(obj)}")
    if namespace(obj):
        out.append(f"k8s-namespace:{namespace(obj)}")
    if obj.get("kind"):
        out.append(f"k8s-kind:{obj['kind']}")
    uid = meta(obj).get("uid")
    if uid:
        out.append(f"k8s-uid:{uid}")
    if group:
        out.append(f"k8s-group:{group}")
    if version:
        out.append(f"k8s-version:{version}")
    for tag in split_comma(anns(obj).get(TAGS_ANNOTATION, "")):
        if tag not in out:
            out.append(tag)
    return out


def secret_data(secret: Obj) -> dict[str, str]:
    """A Secret's values as text: ``data`` is base64 (what the API returns), ``stringData`` is
    plain (what manifests may hold) and wins, as it does on the API server."""
    out: dict[str, str] = {}
    data = secret.get("data")
    if isinstance(data, Mapping):
        for key, value in data.items():
            try:
                # Go's base64 decoder (the API server's) skips line breaks: wrapped base64 in a
                # manifest is valid.
                text = str(value).replace("\r", "").replace("\n", "")
                out[str(key)] = base64.b64decode(text, validate=True).decode()
            except (binascii.Error, UnicodeDecodeError) as exc:
                raise ValueError(f"data.{key} is not base64-encoded UTF-8 text") from exc
    string_data = secret.get("stringData")
    if isinstance(string_data, Mapping):
        out.update({str(k): str(v) for k, v in string_data.items()})
    return out


def canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


class Index:
    """The objects by kind, then by ``(namespace, name)``; duplicates resolved deterministically.

    Objects of kinds the translator does not read are counted in :attr:`ignored` and otherwise
    skipped; malformed ones become problems.
    """

    def __init__(self, objects: Iterable[Obj]) -> None:
        self.by_kind: dict[str, dict[tuple[str, str], Obj]] = defaultdict(dict)
        self.slices: dict[tuple[str, str], list[Obj]] = defaultdict(list)
        self.problems: list[Problem] = []
        self.ignored = 0
        candidates: dict[tuple[str, str, str], list[Obj]] = defaultdict(list)
        for obj in objects:
            if not isinstance(obj, Mapping):
                continue
            kind = str(obj.get("kind", ""))
            if kind not in KNOWN_KINDS or group_version(obj)[0] != KNOWN_KINDS[kind]:
                self.ignored += 1
                continue
            if not name(obj):
                self.problems.append(Problem(ObjectRef.of(obj), "metadata.name is missing"))
                continue
            ns = "" if kind in CLUSTER_SCOPED else (namespace(obj) or "default")
            candidates[(kind, ns, name(obj))].append(_with_namespace(obj, ns))
        for (kind, ns, nm), objs in sorted(candidates.items()):
            chosen = max(objs, key=canonical)
            if len(objs) > 1 and len({canonical(o) for o in objs}) > 1:
                self.problems.append(
                    Problem(
                        ObjectRef(kind, ns, nm),
                        f"given {len(objs)} times with different content; using one of them",
                        "warning",
                    )
                )
            self.by_kind[kind][(ns, nm)] = chosen
        for key, eps in self.by_kind["EndpointSlice"].items():
            owner = labels(eps).get(SERVICE_NAME_LABEL)
            if owner:
                self.slices[(key[0], owner)].append(eps)

    def __repr__(self) -> str:
        counts = " ".join(f"{k}={len(v)}" for k, v in sorted(self.by_kind.items()) if v)
        return f"<Index {counts} ignored={self.ignored}>"

    def get(self, kind: str, ns: str, nm: str) -> Obj | None:
        return self.by_kind[kind].get((ns, nm))

    def all(self, kind: str) -> list[Obj]:
        """Every object of ``kind``, sorted by namespace and name."""
        return [obj for _, obj in sorted(self.by_kind[kind].items())]


def _with_namespace(obj: Obj, ns: str) -> Obj:
    if ns == namespace(obj) or not ns:
        return obj
    copy = dict(obj)
    copy["metadata"] = {**meta(obj), "namespace": ns}
    return copy
