"""Kong's auth plugin schema specs, ported: each ``v({config}, schema_def)`` becomes a plugin
``config`` in a declarative document (:func:`tests.helpers.plugin_config`), Kong's ``err.config``
fields become ``plugins[0].config.<field>`` paths and its ``@entity`` lists the path of the record
they belong to, with ``FieldError.entity`` set.

- ``spec/03-plugins/16-jwt/06-schema_spec.lua``: lines 6-37 ported; 39-47 (``maximum_expiration``
  without ``exp`` in ``claims_to_verify``) is covered by
  ``tests/plugins/test_jwt.py::test_config_defaults_and_validation``.
- ``spec/03-plugins/19-hmac-auth/01-schema_spec.lua``: lines 5-25 ported (the existing
  ``test_hmac_auth.py::test_config_rules`` checks other values and only the paths).
- ``spec/03-plugins/20-ldap-auth/02-schema_spec.lua``: lines 6-10 ported (``test_ldap_auth.py``
  asserts this case at ``plugins[0]``, not at Kong's ``config`` record); 14-24 (default port 389,
  port override) are covered by ``test_ldap_auth.py::test_config_defaults`` and
  ``::test_config_validation``.

Nothing left out: these specs need no database and use only values JSON can carry.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from fastkong.config import ConfigError
from tests.helpers import plugin_config, plugin_config_errors

Problem = tuple[str, str, bool]


def problems(name: str, config: dict[str, Any]) -> list[Problem]:
    """``(path, message, entity)`` of every error loading plugin ``name`` with ``config``."""
    with pytest.raises(ConfigError) as info:
        plugin_config(name, config)
    return [(e.path, e.message, e.entity) for e in info.value.errors]


# -- jwt (16-jwt/06-schema_spec.lua) -------------------------------------------------------------
def test_jwt_validates_maximum_expiration() -> None:  # spec line 6
    config = msgspec.to_builtins(
        plugin_config("jwt", {"maximum_expiration": 60, "claims_to_verify": ["exp", "nbf"]})
    )
    assert (config["maximum_expiration"], config["claims_to_verify"]) == (60, ["exp", "nbf"])


@pytest.mark.parametrize("claims", [["exp", "nbf"], ["nbf"]])
def test_jwt_negative_maximum_expiration(claims: list[str]) -> None:  # spec line 17
    # With a negative value Kong's conditional (gt 0 -> contains exp) does not apply, so
    # ``claims_to_verify: [nbf]`` adds no error: err.config is exactly this one field.
    assert plugin_config_errors("jwt", {"maximum_expiration": -1, "claims_to_verify": claims}) == [
        "plugins[0].config.maximum_expiration: value should be between 0 and 31536000"
    ]


# -- hmac-auth (19-hmac-auth/01-schema_spec.lua) --------------------------------------------------
@pytest.mark.parametrize(
    "config",
    [{}, {"clock_skew": 10}],
    ids=["accepts empty config", "accepts correct clock skew"],
)
def test_hmac_auth_accepts(config: dict[str, Any]) -> None:  # spec lines 5, 10
    assert msgspec.to_builtins(plugin_config("hmac-auth", config))["clock_skew"] == config.get(
        "clock_skew", 300
    )


@pytest.mark.parametrize(
    ("config", "error"),
    [
        (
            {"clock_skew": -10},
            "plugins[0].config.clock_skew: value must be greater than 0",
        ),
        (
            {"algorithms": ["sha1024"]},
            "plugins[0].config.algorithms[0]: expected one of: hmac-sha1, hmac-sha256, "
            "hmac-sha384, hmac-sha512",
        ),
    ],
    ids=["negative clock skew", "wrong algorithm"],
)
def test_hmac_auth_errors(config: dict[str, Any], error: str) -> None:  # spec lines 15, 20
    assert plugin_config_errors("hmac-auth", config) == [error]


# -- ldap-auth (20-ldap-auth/02-schema_spec.lua) -------------------------------------------------
def test_ldap_auth_ldaps_and_start_tls_are_mutually_exclusive() -> None:  # spec line 6
    # Kong: the conditional is an entity check of the ``config`` record
    # (kong/plugins/ldap-auth/schema.lua, ``entity_checks`` inside ``config``), so its then_err
    # is ``err.config["@entity"][1]``: entity-level at ``plugins[0].config``.
    config = {
        "ldap_host": "none",
        "ldap_port": 389,
        "ldaps": True,
        "start_tls": True,
        "base_dn": "ou=users",
        "attribute": "cn",
    }
    found = problems("ldap-auth", config)
    message = "'ldaps' and 'start_tls' cannot be enabled simultaneously"
    assert ("plugins[0].config", message, True) in found, found
