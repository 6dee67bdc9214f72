"""Kong's ``required = true`` on plugin config fields that have a default (read from each
plugin's ``schema.lua``): left out, the field takes its default; given as ``null``, the config
is refused with "required field missing" at the field's path, as Kong refuses it."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from fastkong.config import ConfigError, load_config

# plugin -> (the least config it needs, the fields Kong requires and defaults)
REQUIRED: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {
    "rate-limiting": ({"minute": 5}, ("fault_tolerant", "hide_client_headers", "sync_rate")),
    "key-auth": (
        {},
        (
            "key_names",
            "hide_credentials",
            "key_in_header",
            "key_in_query",
            "key_in_body",
            "run_on_preflight",
        ),
    ),
    "jwt": ({}, ("secret_is_base64", "run_on_preflight")),
    "acl": ({"allow": ["a"]}, ("hide_groups_header", "always_use_authenticated_groups")),
    "cors": ({}, ("credentials", "private_network", "preflight_continue", "allow_origin_absent")),
    "basic-auth": ({}, ("hide_credentials", "realm")),
    "ldap-auth": (
        {"ldap_host": "ldap.example.com", "base_dn": "dc=example,dc=com", "attribute": "uid"},
        ("ldap_port", "ldaps", "start_tls", "verify_ldap_host", "cache_ttl", "hide_credentials"),
    ),
    "request-termination": ({}, ("echo", "status_code")),
    "request-size-limiting": ({}, ("require_content_length", "size_unit")),
    "correlation-id": ({}, ("echo_downstream", "generator")),
    "proxy-cache": (
        {"strategy": "memory"},
        (
            "cache_control",
            "content_type",
            "request_method",
            "response_code",
            "memory.dictionary_name",
        ),
    ),
    "file-log": ({"path": "/tmp/fastkong-test.log"}, ("reopen",)),
    "syslog": (
        {},
        (
            "log_level",
            "successful_severity",
            "client_errors_severity",
            "server_errors_severity",
            "facility",
        ),
    ),
    "response-transformer": ({}, ("add.json_types", "append.json_types", "replace.json_types")),
    "aws-lambda": (
        {},
        (
            "timeout",
            "keepalive",
            "invocation_type",
            "log_type",
            "aws_imds_protocol_version",
            "empty_arrays_mode",
        ),
    ),
    "azure-functions": ({"appname": "a", "functionname": "f"}, ("hostdomain",)),
    "zipkin": (
        {},
        (
            "local_service_name",
            "include_credential",
            "traceid_byte_count",
            "header_type",
            "default_header_type",
            "tags_header",
            "http_span_name",
            "phase_duration_flavor",
        ),
    ),
    "ai-prompt-guard": (
        {"deny_patterns": ["a"]},
        ("allow_all_conversation_history", "match_all_roles"),
    ),
    "ai-prompt-template": (
        {"templates": []},
        ("allow_untemplated_requests", "log_original_request"),
    ),
    "ai-request-transformer": (
        {"prompt": "p", "llm": {"route_type": "llm/v1/chat", "model": {"provider": "openai"}}},
        ("http_timeout", "https_verify", "llm.logging", "llm.logging.log_statistics"),
    ),
    "ai-response-transformer": (
        {"prompt": "p", "llm": {"route_type": "llm/v1/chat", "model": {"provider": "openai"}}},
        ("http_timeout", "https_verify", "parse_llm_response_json_instructions", "llm.logging"),
    ),
}
CASES = [(name, field) for name, (_, fields) in REQUIRED.items() for field in fields]


def document(name: str, config: dict[str, Any]) -> str:
    return yaml.safe_dump({"_format_version": "3.0", "plugins": [{"name": name, "config": config}]})


def with_null(config: dict[str, Any], path: str) -> dict[str, Any]:
    out: dict[str, Any] = {**config}
    head, _, rest = path.partition(".")
    if rest:
        out[head] = with_null(out.get(head, {}), rest)
    else:
        out[head] = None
    return out


@pytest.mark.parametrize(("name", "field"), CASES)
def test_null_is_refused_and_absent_takes_the_default(name: str, field: str) -> None:
    base, _ = REQUIRED[name]
    loaded = load_config(document(name, base)).config.plugins[0].config
    value: Any = loaded
    for part in field.split("."):
        value = value[part]
    assert value is not None  # the default
    with pytest.raises(ConfigError) as info:
        load_config(document(name, with_null(base, field)))
    assert [(e.path, e.message) for e in info.value.errors] == [
        (f"plugins[0].config.{field}", "required field missing")
    ]
