"""Strict JSON schemas of the Gateway API kinds the controller reads (``gateway.networking.k8s.io``
standard channel: GatewayClass, Gateway, HTTPRoute v1; ReferenceGrant v1beta1; TLSRoute v1 (else
v1alpha3, v1alpha2) and BackendTLSPolicy v1 (else v1alpha3); experimental channel: TCPRoute,
UDPRoute v1alpha2), written for the offline manifest tests: every field of the API's specs by
name and type, unknown fields errors (as ``kubectl apply --validate=strict`` refuses them). A
cluster gets the CRDs from the Gateway API project itself; these only catch a misspelt or
misplaced field in fastkong's examples and test inputs."""

from __future__ import annotations

from typing import Any


def _obj(required: tuple[str, ...] = (), **props: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": False}
    if required:
        out["required"] = list(required)
    return out


def _list(item: Any) -> dict[str, Any]:
    return {"type": "array", "items": item}


STR: dict[str, Any] = {"type": "string"}
INT: dict[str, Any] = {"type": "integer"}
ANY_OBJECT: dict[str, Any] = {"type": "object"}
STR_MAP: dict[str, Any] = {"type": "object", "additionalProperties": STR}

_LABEL_SELECTOR = _obj(
    matchLabels=STR_MAP,
    matchExpressions=_list(_obj(("key", "operator"), key=STR, operator=STR, values=_list(STR))),
)
_OBJECT_REF = _obj(("name",), group=STR, kind=STR, name=STR, namespace=STR)
_LOCAL_REF = _obj(("group", "kind", "name"), group=STR, kind=STR, name=STR)
_PARENT_REF = _obj(
    ("name",), group=STR, kind=STR, namespace=STR, name=STR, sectionName=STR, port=INT
)
_HEADER = _obj(("name", "value"), name=STR, value=STR)
_HEADER_FILTER = _obj(set=_list(_HEADER), add=_list(_HEADER), remove=_list(STR))
_PATH_MODIFIER = _obj(("type",), type=STR, replaceFullPath=STR, replacePrefixMatch=STR)
_BACKEND_REF = _obj(("name",), group=STR, kind=STR, name=STR, namespace=STR, port=INT, weight=INT)
_FILTER = _obj(
    ("type",),
    type=STR,
    requestHeaderModifier=_HEADER_FILTER,
    responseHeaderModifier=_HEADER_FILTER,
    requestMirror=_obj(
        ("backendRef",),
        backendRef=_BACKEND_REF,
        percent=INT,
        fraction=_obj(("numerator",), numerator=INT, denominator=INT),
    ),
    requestRedirect=_obj(scheme=STR, hostname=STR, path=_PATH_MODIFIER, port=INT, statusCode=INT),
    urlRewrite=_obj(hostname=STR, path=_PATH_MODIFIER),
    extensionRef=_LOCAL_REF,
)
_MATCH = _obj(
    path=_obj(type=STR, value=STR),
    headers=_list(_obj(("name", "value"), type=STR, name=STR, value=STR)),
    queryParams=_list(_obj(("name", "value"), type=STR, name=STR, value=STR)),
    method=STR,
)
_RULE = _obj(
    name=STR,
    matches=_list(_MATCH),
    filters=_list(_FILTER),
    backendRefs=_list(
        {**_BACKEND_REF, "properties": {**_BACKEND_REF["properties"], "filters": _list(_FILTER)}}
    ),
    timeouts=_obj(request=STR, backendRequest=STR),
)
# TCPRoute, TLSRoute and UDPRoute rules (at least one): backends only, no matches or filters.
_STREAM_RULES = {**_list(_obj(name=STR, backendRefs=_list(_BACKEND_REF))), "minItems": 1}
_LISTENER = _obj(
    ("name", "port", "protocol"),
    name=STR,
    hostname=STR,
    port=INT,
    protocol=STR,
    tls=_obj(mode=STR, certificateRefs=_list(_OBJECT_REF), options=STR_MAP),
    allowedRoutes=_obj(
        namespaces=_obj(**{"from": STR}, selector=_LABEL_SELECTOR),
        kinds=_list(_obj(("kind",), group=STR, kind=STR)),
    ),
)

SPECS: dict[str, dict[str, Any]] = {
    "GatewayClass": _obj(
        ("controllerName",),
        controllerName=STR,
        description=STR,
        parametersRef=_obj(("group", "kind", "name"), group=STR, kind=STR, name=STR, namespace=STR),
    ),
    "Gateway": _obj(
        ("gatewayClassName", "listeners"),
        gatewayClassName=STR,
        listeners=_list(_LISTENER),
        addresses=_list(_obj(("value",), type=STR, value=STR)),
        infrastructure=_obj(labels=STR_MAP, annotations=STR_MAP, parametersRef=_LOCAL_REF),
    ),
    "HTTPRoute": _obj(
        parentRefs=_list(_PARENT_REF),
        hostnames=_list(STR),
        rules=_list(_RULE),
    ),
    "TCPRoute": _obj(("rules",), parentRefs=_list(_PARENT_REF), rules=_STREAM_RULES),
    "UDPRoute": _obj(("rules",), parentRefs=_list(_PARENT_REF), rules=_STREAM_RULES),
    "TLSRoute": _obj(
        ("rules",), parentRefs=_list(_PARENT_REF), hostnames=_list(STR), rules=_STREAM_RULES
    ),
    "BackendTLSPolicy": _obj(
        ("targetRefs", "validation"),
        targetRefs=_list(
            _obj(("group", "kind", "name"), group=STR, kind=STR, name=STR, sectionName=STR)
        ),
        validation=_obj(
            ("hostname",),
            caCertificateRefs=_list(_LOCAL_REF),
            wellKnownCACertificates=STR,
            hostname=STR,
            subjectAltNames=_list(_obj(("type",), type=STR, hostname=STR, uri=STR)),
        ),
        options=STR_MAP,
    ),
    "ReferenceGrant": _obj(
        ("from", "to"),
        **{
            "from": _list(_obj(("group", "kind", "namespace"), group=STR, kind=STR, namespace=STR)),
            "to": _list(_obj(("group", "kind"), group=STR, kind=STR, name=STR)),
        },
    ),
}


# The API versions a kind is written in (the served ones of the channel the kind is in).
_EXPERIMENTAL: dict[str, tuple[str, ...]] = {
    "TCPRoute": ("v1alpha2",),
    "TLSRoute": ("v1", "v1alpha3", "v1alpha2"),
    "UDPRoute": ("v1alpha2",),
    "BackendTLSPolicy": ("v1", "v1alpha3"),
}
VERSIONS: dict[str, tuple[str, ...]] = {
    kind: _EXPERIMENTAL.get(kind, ("v1", "v1beta1")) for kind in SPECS
}


def schemas() -> dict[str, dict[str, Any]]:
    """``kind`` -> the schema of a whole object of that kind."""
    return {
        kind: _obj(
            ("apiVersion", "kind", "metadata", "spec"),
            apiVersion={"enum": [f"gateway.networking.k8s.io/{v}" for v in VERSIONS[kind]]},
            kind={"const": kind},
            metadata=ANY_OBJECT,
            spec=spec,
            status=ANY_OBJECT,
        )
        for kind, spec in SPECS.items()
    }
