"""The YAML documents Kong's declarative-config specs share, for their ports.

Kong's ``spec/01-unit/01-db/01-schema/11-declarative_config/`` specs feed the same documents to
``validate`` (01: ``01-validate_spec.lua``, ported in test_config_kong_spec_declarative.py),
``process_auto_fields`` (02: ``02-process_auto_fields_spec.lua``,
test_config_kong_spec_auto_fields.py), ``flatten`` (03: ``03-flatten_spec.lua``,
test_config_kong_spec_flatten.py) and the on-the-fly migration (04:
``04-on-the-fly-migration_spec.lua``, test_config_kong_spec_migration.py). Each constant says
which spec cases use it (by the spec's number and case name, with flatten's line numbers as its
port gives them); where the specs' copies differ in a field the
assertions do not look at, the note says which copy this is.
"""

from __future__ import annotations

from typing import Any

# Used by "services: accepts entities" of validate (01) and process_auto_fields (02).
# process_auto_fields' copy also sets ``enabled: true`` on foo: the default, the same entity.
SERVICES_ENTITIES = """
_format_version: "1.1"
services:
- name: foo
  host: example.com
  protocol: https
  _comment: my comment
  _ignore:
  - foo: bar
- name: bar
  host: example.test
  port: 3000
  _comment: my comment
  _ignore:
  - foo: bar
"""

# The services of flatten's (03) "services: accepts entities" (its l.103) and of the on-the-fly
# migration's (04) "routes handling" and "validation should happens after migration": foo
# disabled, bar tagged. ``{nested}`` is what goes under foo (the
# migration nests its route there); flatten's document is SERVICES_DISABLED_TAGGED.
SERVICES_FOO_DISABLED_BAR_TAGGED = """\
services:
- name: foo
  host: example.com
  protocol: https
  enabled: false
  _comment: my comment
  _ignore:
  - foo: bar
{nested}- name: bar
  host: example.test
  port: 3000
  _comment: my comment
  _ignore:
  - foo: bar
  tags: [hello, world]
"""
SERVICES_DISABLED_TAGGED = '_format_version: "1.1"\n' + SERVICES_FOO_DISABLED_BAR_TAGGED.format(
    nested=""
)

# Used by "services: allows url shorthand" of validate (01), process_auto_fields (02) and
# flatten (03, l.210).
SERVICE_URL_SHORTHAND = """
_format_version: "1.1"
services:
- name: foo
  # url shorthand also works, and expands into multiple fields
  url: https://example.com:8000/hello/world
"""

# Used by "plugins: accepts entities" of validate (01), process_auto_fields (02) and flatten
# (03, l.256).
PLUGINS_ENTITIES = """
_format_version: "1.1"
plugins:
  - name: key-auth
    _comment: my comment
    _ignore:
    - foo: bar
  - name: http-log
    config:
      http_endpoint: https://example.com
    _comment: my comment
    _ignore:
    - foo: bar
"""

# Used by "plugins: allows foreign relationships as strings" of validate (01) and
# process_auto_fields (02), plus the entities its references name (the ports' loader resolves
# them; the two ports had them in another order).
PLUGINS_FOREIGN_AS_STRINGS = """
_format_version: "1.1"
services:
- {name: svc1, host: example.com}
routes:
- {name: foo, paths: [/]}
consumers:
- {username: my-consumer}
plugins:
  - name: key-auth
    route: foo
  - name: http-log
    service: svc1
    consumer: my-consumer
    config:
      http_endpoint: https://example.com
"""

# Used by "plugins in services" and "routes in services": "accepts an empty list" of
# validate (01), process_auto_fields (02) and flatten (03, l.512 and l.724). ``{children}`` is
# "  plugins: []\n" or "  routes: []\n".
SERVICE_WITH_EMPTY_CHILDREN = (
    '_format_version: "1.1"\nservices:\n- name: foo\n{children}  host: example.com\n'
)

# Used by "plugins in services: accepts entities" of validate (01), process_auto_fields (02)
# and flatten (03, l.547).
PLUGINS_IN_SERVICES = """
_format_version: "1.1"
services:
- name: foo
  host: example.com
  protocol: https
  _comment: my comment
  _ignore:
  - foo: bar
  plugins:
    - name: key-auth
      _comment: my comment
      _ignore:
      - foo: bar
    - name: http-log
      config:
        http_endpoint: https://example.com
- name: bar
  host: example.test
  port: 3000
  plugins:
  - name: basic-auth
  - name: tcp-log
    config:
      host: 127.0.0.1
      port: 10000
"""

# Used by "routes in services: accepts entities" of validate (01) and process_auto_fields
# (02): process_auto_fields' copy, with ``path_handling: v1`` (validate's has none; its
# assertions do not look at it). flatten's copy (03, l.821) names its routes: kept in its port.
ROUTES_IN_SERVICES = """
_format_version: "1.1"
services:
- name: foo
  host: example.com
  protocol: https
  routes:
    - path_handling: v1
      paths:
      - /path
    - path_handling: v1
      hosts:
      - example.com
    - path_handling: v1
      methods: ["GET", "POST"]
- name: bar
  host: example.test
  port: 3000
  routes:
    - path_handling: v1
      paths:
      - /path
      hosts:
      - example.com
      methods: ["GET", "POST"]
"""

# Used by "plugins in routes in services: accepts an empty list" of validate (01),
# process_auto_fields (02) and flatten (03, l.995). ``{path_handling}`` is v1 for
# process_auto_fields, v0 for flatten (the default its expected routes show); the validate copy
# has neither that line nor ``protocol: https``, and gives ``plugins: []``, none of which its
# assertions look at.
PLUGINS_IN_ROUTES_IN_SERVICES_EMPTY = """
_format_version: "1.1"
services:
- name: foo
  host: example.com
  protocol: https
  routes:
  - name: foo
    path_handling: {path_handling}
    methods: ["GET"]
    plugins:
"""

# Used by "plugins in routes in services: accepts entities" of validate (01),
# process_auto_fields (02) and flatten (03, l.1062); ``{path_handling}`` as above.
# It is the empty-list document with foo's route's plugins and a second service.
PLUGINS_IN_ROUTES_IN_SERVICES = (
    PLUGINS_IN_ROUTES_IN_SERVICES_EMPTY
    + """\
      - name: key-auth
      - name: http-log
        config:
          http_endpoint: https://example.com
- name: bar
  host: example.test
  port: 3000
  routes:
  - name: bar
    path_handling: {path_handling}
    paths:
    - /
    plugins:
    - name: basic-auth
    - name: tcp-log
      config:
        host: 127.0.0.1
        port: 10000
"""
)


# The configs of the plugins these documents name, as flatten (03) expects them: every default,
# null fields shown. process_auto_fields (02) expects the same without the null fields.
HTTP_LOG_CONFIG: dict[str, Any] = {
    "http_endpoint": "https://example.com",
    "content_type": "application/json",
    "flush_timeout": None,
    "keepalive": 60000,
    "method": "POST",
    "queue_size": None,
    "retry_count": None,
    "timeout": 10000,
    "headers": None,
    "custom_fields_by_lua": None,
    "queue": {
        "initial_retry_delay": 0.01,
        "max_batch_size": 1,
        "max_entries": 10000,
        "max_coalescing_delay": 1,
        "max_retry_delay": 60,
        "max_retry_time": 60,
        "max_bytes": None,
        "concurrency_limit": 1,
    },
}
KEY_AUTH_CONFIG: dict[str, Any] = {
    "anonymous": None,
    "hide_credentials": False,
    "realm": None,
    "key_in_header": True,
    "key_in_query": True,
    "key_in_body": False,
    "key_names": ["apikey"],
    "run_on_preflight": True,
}
BASIC_AUTH_CONFIG: dict[str, Any] = {
    "anonymous": None,
    "hide_credentials": False,
    "realm": "service",
}
TCP_LOG_CONFIG: dict[str, Any] = {
    "host": "127.0.0.1",
    "keepalive": 60000,
    "port": 10000,
    "timeout": 10000,
    "tls": False,
    "tls_sni": None,
    "custom_fields_by_lua": None,
}
