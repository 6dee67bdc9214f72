"""Hypothesis: any mangling of a valid config loads, or is refused with errors that have paths.

Valid configs (the bundled example, the Kubernetes golden outputs and one with every kind of
entity and many plugins) are changed in one to three places: a field removed, a value of the
wrong type or an odd value of the right one put in, a value of another document's field of
the same name put in, a list item repeated. Whatever comes out, the loader must either refuse
it with a :class:`ConfigError` whose every error has a message and a path (and whose Admin API
renderings work), or accept it, and then the runtime must build from it: an unexpected
exception in either is a config that takes a gateway's reload, or a controller's push, down
with it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastkong.config import ConfigError, load_config
from fastkong.runtime import compile_runtime
from tests.mangle import by_name, mangle

ROOT = Path(__file__).resolve().parents[2]

RICH = """
_format_version: "3.0"
services:
- name: s
  url: http://127.0.0.1:9/base
  retries: 3
  routes:
  - {name: plain, paths: [/plain], methods: [GET, POST]}
  - {name: rx, paths: ["~/rx/(?<id>[0-9]+)$"], regex_priority: 5, strip_path: false}
  - {name: hosty, hosts: ["*.example.com"], headers: {x-v: ["~*^v[0-9]+$"]}, paths: [/h]}
  - {name: tls, paths: [/tls], protocols: [https], https_redirect_status_code: 308}
  - name: auth
    paths: [/auth]
    plugins:
    - {name: key-auth, config: {key_names: [apikey], hide_credentials: true}}
    - {name: acl, config: {allow: [gold]}}
    - {name: rate-limiting, config: {second: 5, hour: 100, policy: local, limit_by: consumer}}
  - name: xform
    paths: [/x]
    plugins:
    - name: request-transformer
      config: {add: {headers: ["x-a:1"], querystring: ["q:1"]}, remove: {headers: [x-b]}}
    - {name: response-transformer, config: {add: {json: ["j:1"]}, remove: {headers: [x-c]}}}
    - {name: cors, config: {origins: ["http://a.example"], credentials: true, max_age: 60}}
    - {name: request-size-limiting, config: {allowed_payload_size: 1}}
    - {name: ip-restriction, config: {deny: ["10.0.0.0/8"]}}
    - {name: proxy-cache, config: {strategy: memory, content_type: [text/plain]}}
    - {name: correlation-id, config: {generator: uuid}}
  - name: stream
    protocols: [tcp]
    destinations: [{port: 9000}]
- name: balanced
  host: up.internal
  routes: [{name: balanced, paths: [/balanced]}]
upstreams:
- name: up.internal
  algorithm: consistent-hashing
  hash_on: header
  hash_on_header: x-user
  healthchecks:
    active: {healthy: {interval: 5, successes: 2}, unhealthy: {interval: 5, http_failures: 2}}
  targets:
  - {target: "127.0.0.1:9001", weight: 100}
  - {target: "127.0.0.1:9002", weight: 0}
consumers:
- username: u
  custom_id: c-1
  keyauth_credentials: [{key: k1}]
  basicauth_credentials: [{username: bob, password: pw}]
  jwt_secrets: [{key: issuer, secret: s3cret}]
  hmacauth_credentials: [{username: hm, secret: s3cret}]
  acls: [{group: gold}]
  plugins: [{name: rate-limiting, config: {minute: 10}}]
plugins:
- {name: prometheus, config: {per_consumer: true}}
- {name: bot-detection, config: {deny: [curl]}}
"""


def _seeds() -> list[dict[str, Any]]:
    texts = [RICH, (ROOT / "configs" / "kong.yml").read_text()]
    texts += [p.read_text() for p in sorted((ROOT / "tests/k8s/golden").glob("*/expected.yaml"))]
    seeds = []
    for text in texts:
        doc = yaml.safe_load(text)
        load_config(json.dumps(doc))  # each seed is valid as it is
        seeds.append(doc)
    return seeds


SEEDS = _seeds()
_FORMAT = frozenset({("_format_version",)})


#: Every value the seeds hold under each field name.
BY_NAME = by_name(SEEDS)

ODD = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from([0, -1, 1, 2**31, 2**53, 2**63, 65536, 1.5, -0.0, 1e308]),
    st.sampled_from(["", " ", "~", "/", "~(", "*", "é", "\x00", "%", "/%zz", "a" * 300]),
    st.sampled_from(["http://", "[::1]:80", "::1", "*.example.com", "example.*", "1.2.3.4/33"]),
    st.sampled_from(["{vault://env/FASTKONG_NOT_SET}", "00000000-0000-0000-0000-000000000000"]),
    st.just([]),
    st.just({}),
    st.just([None]),
    st.just({"name": "x"}),
)


@st.composite
def mangled(draw: st.DrawFn) -> dict[str, Any]:
    seed = draw(st.sampled_from(SEEDS))
    doc: dict[str, Any] = mangle(draw, seed, ODD, borrow=BY_NAME, keep=_FORMAT)
    return doc


PATH = re.compile(r"(?:[A-Za-z_@][\w@-]*|\[\d+\])(?:\.[^.\[\]]+|\[\d+\])*")


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mangled())
def test_a_mangled_config_loads_or_every_error_has_a_path(doc: dict[str, Any]) -> None:
    raw = json.dumps(doc)
    try:
        loaded = load_config(raw)
    except ConfigError as exc:
        assert exc.errors
        for error in exc.errors:
            assert error.message
            assert error.path == "" or PATH.fullmatch(error.path), error.path
        assert str(exc)
        exc.flattened(doc)  # POST /config's flattened_errors
        exc.fields()  # and its fields
        return
    compile_runtime(loaded.config, loaded.hash)
