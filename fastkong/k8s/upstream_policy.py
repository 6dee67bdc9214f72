"""KongUpstreamPolicy (``configuration.konghq.com/v1beta1``) -> Kong upstream fields.

A Service annotated ``konghq.com/upstream-policy: <name>`` gets the policy of that name from its
own namespace on each upstream made from it (KIC's ``FillUpstreamOverrides`` and
``TranslateKongUpstreamPolicy``, ``kic:internal/dataplane/kongstate/kongupstreampolicy.go``):
camelCase spec fields become Kong's snake_case ones, ``hashOn``/``hashOnFallback`` become
``hash_on``/``hash_fallback`` plus the field their variant names, ``stickySessions`` becomes
``sticky_sessions_cookie(_path)``. Fields the policy leaves out keep the upstream's value.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

ANNOTATION: Final = "konghq.com/upstream-policy"

#: ``hashOn`` variant -> (the ``hash_on`` value, the field holding its argument).
_HASH_VARIANTS: Final = (
    ("header", "header", "header"),
    ("cookie", "cookie", "cookie"),
    ("queryArg", "query_arg", "query_arg"),
    ("uriCapture", "uri_capture", "uri_capture"),
)
_ACTIVE: Final = (
    ("type", "type"),
    ("concurrency", "concurrency"),
    ("httpPath", "http_path"),
    ("httpsSni", "https_sni"),
    ("httpsVerifyCertificate", "https_verify_certificate"),
    ("timeout", "timeout"),
    ("headers", "headers"),
)
_HEALTHY: Final = (
    ("httpStatuses", "http_statuses"),
    ("interval", "interval"),
    ("successes", "successes"),
)
_UNHEALTHY: Final = (
    ("httpFailures", "http_failures"),
    ("httpStatuses", "http_statuses"),
    ("tcpFailures", "tcp_failures"),
    ("timeouts", "timeouts"),
    ("interval", "interval"),
)


def _map(src: Any, fields: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    src = src if isinstance(src, Mapping) else {}
    return {kong: src[k8s] for k8s, kong in fields if src.get(k8s) is not None}


def _hash_type(hash_on: Mapping[str, Any]) -> str | None:
    if hash_on.get("input") is not None:
        return str(hash_on["input"])
    for k8s, kong, _ in _HASH_VARIANTS:
        if hash_on.get(k8s) is not None:
            return kong
    return None


def _health(src: Any, active: bool) -> dict[str, Any] | None:
    if not isinstance(src, Mapping):
        return None
    out = _map(src, _ACTIVE if active else (("type", "type"),))
    for key, fields in (("healthy", _HEALTHY), ("unhealthy", _UNHEALTHY)):
        if isinstance(src.get(key), Mapping):
            out[key] = _map(src[key], fields)
    return out


def policy_fields(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The upstream fields a KongUpstreamPolicy ``spec`` sets."""
    out: dict[str, Any] = {}
    for k8s, kong in (("algorithm", "algorithm"), ("slots", "slots")):
        if spec.get(k8s) is not None:
            out[kong] = spec[k8s]
    hc = spec.get("healthchecks")
    if isinstance(hc, Mapping):
        checks: dict[str, Any] = {}
        for key in ("active", "passive"):
            if (health := _health(hc.get(key), key == "active")) is not None:
                checks[key] = health
        if hc.get("threshold") is not None:
            checks["threshold"] = float(hc["threshold"])
        out["healthchecks"] = checks
    on = spec.get("hashOn") if isinstance(spec.get("hashOn"), Mapping) else None
    fallback = spec.get("hashOnFallback")
    fallback = fallback if isinstance(fallback, Mapping) else None
    for src, prefix in ((on, "hash_on"), (fallback, "hash_fallback")):
        if src is None:
            continue
        if (kind := _hash_type(src)) is not None:
            out[prefix] = kind
        for k8s, _, field in _HASH_VARIANTS:
            # KIC reads the cookie name of the fallback into hash_on_cookie (Kong has no
            # hash_fallback_cookie: a cookie fallback shares the primary's cookie fields).
            if k8s == "cookie":
                continue
            if src.get(k8s) is not None:
                out[f"{prefix}_{field}"] = src[k8s]
    for field, key in (("hash_on_cookie", "cookie"), ("hash_on_cookie_path", "cookiePath")):
        for src in (on, fallback):
            if src is not None and src.get(key) is not None:
                out[field] = src[key]
                break
    sticky = spec.get("stickySessions")
    if isinstance(sticky, Mapping):
        out["sticky_sessions_cookie"] = sticky.get("cookie", "")
        if sticky.get("cookiePath") is not None:
            out["sticky_sessions_cookie_path"] = sticky["cookiePath"]
    return out
