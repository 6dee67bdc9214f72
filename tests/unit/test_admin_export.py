"""``GET /config``'s export (``export_yaml``) as Kong writes it
(``kong/db/declarative/export.lua``): every field of every entity, the unset ones as nulls, and a
text that loads back to the same config, entity for entity."""

from __future__ import annotations

import json

import yaml

from fastkong.config.loader import load_config
from fastkong.control.admin import ENTITY_STRUCTS, _admin_rows, export_yaml
from tests.helpers import pem_block
from tests.pki import Pki

PKI = Pki("export-ca")
CERT, KEY = PKI.issue("export.test", dns="export.test")

#: One of each kind of entity, with nested records, lists, maps and unset fields.
CONFIG = f"""
_format_version: "3.0"
vaults:
- {{name: env, prefix: my-env, config: {{prefix: KONG_}}}}
certificates:
- cert: {pem_block(CERT, 4)}  key: {pem_block(KEY, 4)}  snis: [{{name: export.test}}]
ca_certificates:
- cert: {pem_block(PKI.pem, 4)}services:
- name: svc
  url: https://backend.internal:8443/base
  tls_verify: true
  routes:
  - name: r1
    paths: ["/a", "~/b/(?<id>\\\\d+)$"]
    methods: [GET, POST]
    headers: {{x-version: ["1", "2"]}}
    regex_priority: 3
    plugins:
    - name: request-transformer
      config: {{add: {{headers: ["x-a:1"]}}}}
  - name: r2
    hosts: ["*.example.com"]
    protocols: [https]
    snis: [export.test]
upstreams:
- name: backend.internal
  algorithm: consistent-hashing
  hash_on: header
  hash_on_header: x-user
  healthchecks:
    active: {{healthy: {{interval: 5, successes: 2}}, http_path: /health}}
  targets:
  - {{target: "127.0.0.1:9001", weight: 50}}
  - {{target: "127.0.0.1:9002"}}
consumers:
- username: alice
  custom_id: a-1
  tags: [team-a]
  keyauth_credentials: [{{key: alice-key}}]
  basicauth_credentials: [{{username: alice, password: s3cret}}]
  jwt_secrets: [{{key: alice-iss, secret: alice-secret}}]
  hmacauth_credentials: [{{username: alice-hmac, secret: hmac-secret}}]
  acls: [{{group: admins}}]
  plugins:
  - name: rate-limiting
    config: {{minute: 10, policy: local}}
plugins:
- name: cors
  config: {{origins: ["https://app.example.com"], credentials: true}}
- name: prometheus
"""


def rows(text: str | bytes) -> dict[str, list[dict[str, object]]]:
    config = load_config(text).config
    return {name: _admin_rows(config, name) for name in ENTITY_STRUCTS}


def test_export_loads_back_to_the_same_config() -> None:
    loaded = load_config(CONFIG).config
    exported = export_yaml(loaded)
    assert rows(exported) == rows(CONFIG)
    # and once more: the export of the export is the same text
    assert export_yaml(load_config(exported).config) == exported


def test_export_writes_unset_fields_as_nulls() -> None:
    document = yaml.safe_load(export_yaml(load_config(CONFIG).config))
    assert document["_format_version"] == "3.0" and document["_transform"] is False
    (route,) = [r for r in document["routes"] if r["name"] == "r2"]
    # Kong's export reads with nulls = true: fields without a value are there, as null
    assert route["paths"] is None and route["methods"] is None and route["headers"] is None
    assert route["hosts"] == ["*.example.com"]
    consumer = document["consumers"][0]
    assert consumer["custom_id"] == "a-1" and consumer["tags"] == ["team-a"]
    # foreign keys are ids
    assert route["service"] == document["services"][0]["id"]
    # the basic-auth password is exported as stored (hashed), so it loads back with _transform
    # false as the same credential
    (basic,) = document["basicauth_credentials"]
    assert basic["password"] != "s3cret" and len(basic["password"]) == 40
    json.dumps(document)  # plain data: nothing YAML-only
