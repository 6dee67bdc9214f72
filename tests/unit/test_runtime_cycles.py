"""A retired runtime snapshot is freed by reference counting alone.

Workers ``gc.freeze()`` after installing a snapshot (so full collections never re-scan it and
stall the event loop); frozen objects are never examined by the cyclic GC again, so a snapshot
that formed a reference cycle would leak at every reload. This test keeps it cycle-free.
"""

from __future__ import annotations

import gc

from fastkong.config import load_config
from fastkong.runtime import compile_runtime

CONFIG = """
_format_version: "3.0"
services:
- name: s
  host: pool.internal
  routes:
  - name: r
    paths: ["/a", "~/b/(?<id>\\\\d+)$"]
    hosts: ["*.example.com"]
    headers: {x-env: ["a", "~*b.*"]}
    plugins:
    - {name: key-auth}
    - {name: basic-auth}
    - {name: jwt}
    - {name: ldap-auth, config: {ldap_host: 127.0.0.1, base_dn: "dc=x", attribute: uid}}
    - {name: acl, config: {allow: ["gold"]}}
    - {name: cors}
    - {name: ip-restriction, config: {allow: ["10.0.0.0/8"]}}
    - {name: bot-detection, config: {allow: ["^curl/"], deny: ["(?i)evil"]}}
    - {name: session, config: {secret: s, response_headers: [id]}}
    - {name: request-size-limiting}
    - {name: request-transformer, config: {add: {headers: ["x:$(headers.y)"]}}}
    - {name: response-transformer, config: {add: {json: ["a:1"]}}}
    - {name: correlation-id}
    - {name: proxy-cache, config: {strategy: memory}}
    - {name: prometheus}
    - {name: file-log, config: {path: /tmp/fastkong-cycles.log}}
    - {name: http-log, config: {http_endpoint: "http://127.0.0.1:9/log"}}
    - {name: rate-limiting, config: {minute: 5}}
  - name: t
    paths: ["/t"]
    plugins:
    - {name: request-termination}
consumers:
- username: a
  keyauth_credentials: [{key: k}]
  basicauth_credentials: [{username: u, password: p}]
  jwt_secrets: [{key: iss, secret: s}]
  acls: [{group: gold}]
  plugins:
  - {name: rate-limiting, config: {minute: 10}}
upstreams:
- name: pool.internal
  algorithm: consistent-hashing
  hash_on: header
  hash_on_header: x-user
  healthchecks:
    passive: {unhealthy: {http_failures: 2}}
    active: {healthy: {interval: 5}, unhealthy: {interval: 5}}
  targets: [{target: "127.0.0.1:9"}, {target: "127.0.0.2:9", weight: 50}]
"""


def test_a_dropped_runtime_leaves_no_cyclic_garbage() -> None:
    loaded = load_config(CONFIG)
    runtime = compile_runtime(loaded.config, loaded.hash)
    plan = runtime.routes[0]
    assert plan.service is not None and plan.plugins
    runtime.plugins.consumer_chain(plan.id, plan.service.id, runtime.config.consumers[0].id)
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        del runtime, plan
        gc.collect()
        garbage = [type(o).__name__ for o in gc.garbage]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    assert garbage == []
