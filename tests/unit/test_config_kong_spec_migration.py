"""Port of Kong's on-the-fly migration spec for declarative config.

File: ``spec/01-unit/01-db/01-schema/11-declarative_config/``
``04-on-the-fly-migration_spec.lua``.

Ported: lines 72-162 ("routes handling for format version" 1.1, 2.1 and 3.0, both the
top-level and the nested form of the document) and 164-188 ("validation should happens after
migration"). Kong's spec sorts entities by name and their arrays (``helpers.deep_sort``) before
comparing; the tests below look entities up by name and sort ``paths`` the same way.

Left out: the spec's ``idempotent`` helper replaces ids, ``created_at``/``updated_at`` and the
oauth2 secrets with placeholders; ids are checked in test_config_ids, timestamps and oauth2
are not fastkong's (the spec compares none of them).
"""

from __future__ import annotations

import pytest

from fastkong.config import ConfigError, load_config
from tests import kong_declarative_docs as docs

ROUTE = """\
- name: foo
  path_handling: v0
  protocols: ["https"]
  paths: ["/regex.+", "/prefix" ]
  snis:
  - "example.com"
"""
TOP_LEVEL = (
    docs.SERVICES_FOO_DISABLED_BAR_TAGGED.format(nested="")
    + "routes:\n"
    + ROUTE
    + "  service: foo\n"
)


def indented(text: str) -> str:
    return "".join(f"  {line}\n" for line in text.splitlines())


NESTED = docs.SERVICES_FOO_DISABLED_BAR_TAGGED.format(nested="  routes:\n" + indented(ROUTE))


@pytest.mark.parametrize("form", [TOP_LEVEL, NESTED], ids=["top-level", "nested"])
@pytest.mark.parametrize("version", ["1.1", "2.1", "3.0"])
def test_routes_handling_for_format_version(version: str, form: str) -> None:
    config = load_config(f'_format_version: "{version}"\n' + form).config
    services = {s.name: s for s in config.services}
    bar, foo = services["bar"], services["foo"]
    assert (bar.name, bar.host, bar.protocol, bar.port) == ("bar", "example.test", "http", 3000)
    assert (foo.name, foo.host, foo.protocol, foo.enabled) == ("foo", "example.com", "https", False)
    (route,) = config.routes
    assert (route.name, route.protocols, route.service) == ("foo", ["https"], foo.id)
    # 1.1 and 2.1 paths are migrated: one that is a regex to PCRE gets the "~" prefix
    expected = ["/prefix", "/regex.+"] if version == "3.0" else ["/prefix", "~/regex.+"]
    assert sorted(route.paths or []) == expected


def test_validation_should_happen_after_migration() -> None:
    # Kong's document has no _ignore on its services nor tags on bar: the same one error.
    text = (
        '_format_version: "2.1"\n'
        + docs.SERVICES_FOO_DISABLED_BAR_TAGGED.format(nested="")
        + "  routes:\n"
        + indented(ROUTE.replace('"/regex.+"', '"/regex.+("'))
    )
    with pytest.raises(ConfigError) as info:
        load_config(text)
    (err,) = info.value.errors
    assert err.path == "services[1].routes[0].paths[0]"
    for part in ("invalid regex:", "/regex.+(", "missing closing parenthesis"):
        assert part in err.message
