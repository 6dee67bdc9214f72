"""The layout of a translated config: what the YAML shows and in which order.

Empty entity lists are left out (nested ones too), and each entity's fields come in Kong's
schema order, identity first, then the other fields by name, ``tags``, and the nested entity
arrays: the same objects always give the same text, so the config hash changes only when the
config does.
"""

from __future__ import annotations

from typing import Any, Final

#: The credential arrays of a consumer, in output order.
CREDENTIAL_ARRAYS: Final = (
    "keyauth_credentials",
    "basicauth_credentials",
    "hmacauth_credentials",
    "jwt_secrets",
    "acls",
)


def drop_empty(record: dict[str, Any]) -> None:
    """Remove empty entity lists (nested too), so the YAML shows only what is there."""
    for key in list(record):
        value = record[key]
        if key in _NESTABLE and _is_entity_list(value):
            if not value:
                del record[key]
                continue
            for item in value:
                drop_empty(item)


#: Field order in the output, per entity array (Kong's schema order, identity first); fields not
#: listed follow in name order, then nested entity arrays.
_FIELD_ORDER: Final[dict[str, tuple[str, ...]]] = {
    "services": (
        "id",
        "name",
        "host",
        "port",
        "protocol",
        "path",
        "connect_timeout",
        "read_timeout",
        "write_timeout",
        "retries",
    ),
    "routes": (
        "id",
        "name",
        "hosts",
        "paths",
        "methods",
        "headers",
        "snis",
        "sources",
        "destinations",
        "protocols",
        "https_redirect_status_code",
        "strip_path",
        "preserve_host",
        "regex_priority",
        "path_handling",
        "request_buffering",
        "response_buffering",
    ),
    "upstreams": ("name", "host_header"),
    "targets": ("target", "weight"),
    "consumers": ("id", "username", "custom_id"),
    "plugins": (
        "id",
        "name",
        "instance_name",
        "route",
        "service",
        "consumer",
        "config",
        "protocols",
    ),
    "certificates": ("id", "cert", "key"),
    "ca_certificates": ("id", "cert"),
    "snis": ("name",),
    "keyauth_credentials": ("key", "ttl"),
    "basicauth_credentials": ("username", "password"),
    "hmacauth_credentials": ("username", "secret"),
    "jwt_secrets": ("key", "secret", "algorithm", "rsa_public_key"),
    "acls": ("group",),
    "vaults": ("name", "prefix", "description", "config"),
}


def _is_entity_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, dict) for v in value)


def order_keys(record: dict[str, Any], plural: str | None = None) -> None:
    """Rewrite ``record`` (and its nested entities) with its fields in :data:`_FIELD_ORDER`."""
    first = _FIELD_ORDER.get(plural, ()) if plural else ("_format_version",)
    nested = [k for k in record if k in _NESTABLE and _is_entity_list(record[k])]
    keys = [k for k in first if k in record]
    keys += sorted(k for k in record if k not in keys and k not in nested and k != "tags")
    keys += ["tags"] if "tags" in record else []
    keys += sorted(nested, key=list(_FIELD_ORDER).index) if plural else nested
    items = [(k, record.pop(k)) for k in keys]
    record.update(items)
    for key in nested:
        for child in record[key]:
            if isinstance(child, dict):
                order_keys(child, key)


_NESTABLE: Final = frozenset(
    {
        "services",
        "routes",
        "plugins",
        "upstreams",
        "targets",
        "consumers",
        "certificates",
        "ca_certificates",
        "snis",
        "vaults",
    }
    | set(CREDENTIAL_ARRAYS)
)


__all__ = ["CREDENTIAL_ARRAYS", "drop_empty", "order_keys"]
