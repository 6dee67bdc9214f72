"""What the ports of Kong's entity schema specs share.

Kong's ``spec/01-unit/01-db/01-schema/`` specs (``05-services_spec.lua``, ``06-routes_spec.lua``,
``08-targets_spec.lua``, ``09-upstreams_spec.lua``, ``11-snis_spec.lua``, ``14-consumers_spec.lua``)
call ``Schema:validate(entity)``; their ports (tests/unit/test_config_kong_spec_services.py,
``_routes.py``, ``_upstreams.py``, ``_entities.py``) load the entity in a declarative config and
compare Kong's errors as ``path: message`` lines. The host and name tables below are the ones
those specs repeat.
"""

from __future__ import annotations

import json
from typing import Any, Generic, TypeVar, cast

import pytest

from fastkong.config import ConfigError, load_config

T = TypeVar("T")

A_VALID_UUID = "cbb297c0-a956-486d-ad1d-f9b42df9465a"
CONDITIONAL = "failed conditional validation given value of field '{}'"
NAME_CHARS = "the only accepted ascii characters are alphanumerics or ., -, _, and ~"


def config_errors(text: str) -> list[str]:
    """The errors of loading ``text``, as ``path: message`` lines (it must fail)."""
    with pytest.raises(ConfigError) as info:
        load_config(text)
    return [f"{e.path}: {e.message}" for e in info.value.errors]


class OneEntity(Generic[T]):
    """Kong's ``<Schema>:validate(entity)`` as a document with that one entity in ``plural``."""

    def __init__(self, plural: str) -> None:
        self.plural = plural

    def doc(self, **fields: Any) -> str:
        return json.dumps({"_format_version": "3.0", self.plural: [fields]})

    def load(self, **fields: Any) -> T:
        return cast(T, getattr(load_config(self.doc(**fields)).config, self.plural)[0])

    def errors(self, **fields: Any) -> list[str]:
        return config_errors(self.doc(**fields))


def invalid_name(name: str) -> str:
    """Kong's message for a name or username outside ``typedefs.utf8_name``."""
    return f"invalid value '{name}': {NAME_CHARS}"


#: The valid names of "name attribute" (services, routes) and of the consumers' usernames.
VALID_NAMES = [
    "example",
    "EXAMPLE",
    "exa.mp.le",
    "3x4mp13",
    "3x4-mp-13",
    "3x4_mp_13",
    "~3x4~mp~13",
    "~3..x4~.M-p~1__3_",
    "孔",
    "Конг",
    "🦍",
]

#: "accepts valid hosts" (services, routes): the host names each spec lists first.
VALID_HOSTNAMES = [
    "hello.com",
    "hello.fr",
    "test.hello.com",
    "1991.io",
    "hello.COM",
    "HELLO.com",
    "123helloWORLD.com",
    "example.123",
    "example-api.com",
    "hello.abcd",
    "example_api.com",
    "localhost",
]
#: ... and the punycode examples from RFC 3492 (Japanese: ascii mixed with escaped characters).
PUNYCODE_HOSTS = [
    "3B-ww4c5e180e575a65lsy2b",
    "-with-SUPER-MONKEYS-pc58ag80a8qai00g7n9n",
    "Hello-Another-Way--fc4qua05auwb3674vfr0b",
    "2-u9tlzr9756bt3uc0v",
    "MajiKoi5-783gue6qz075azm5e",
    "de-jg4avhby1noc0d",
    "d9juau41awczczp",
]

#: "rejects invalid hostnames" (services, routes, upstreams' ``healthchecks.active.https_sni``).
INVALID_HOSTNAMES = [
    "/example",
    ".example",
    "example:",
    "mock;bin",
    "example.com/org",
    "example-.org",
    "example.org-",
    "hello..example.com",
    "hello-.example.com",
]
#: ... and the wildcards in the wrong place that services and routes list after them.
MISPLACED_WILDCARDS = ["*example.com", "www.example*", "mock*bin.com"]

#: "rejects badly percent-encoded values" (services' and routes' paths): path, bad escape.
BAD_PERCENT_ENCODED = [
    ("/some%2words", "%2w"),
    ("/some%0Xwords", "%0X"),
    ("/some%2Gwords", "%2G"),
    ("/some%20words%", "%"),
    ("/some%20words%a", "%a"),
    ("/some%20words%ax", "%ax"),
]
