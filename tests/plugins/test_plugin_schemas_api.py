"""``GET /schemas/plugins/{name}``: what KIC fills each plugin's defaults from before it pushes a
config (go-kong's ``FillPluginsDefaultsWithOpts``, FillDefaults on, FillAuto off).

``fill`` below follows go-kong's ``fillConfigRecord`` step by step (a set field stays; a record
is filled when given or required; an array of records has each record filled; an ``auto``
field is skipped; otherwise the default, or an explicit null). For every bundled plugin, its
least config filled from fastkong's schema must load, and must be the very config fastkong
makes of the least config itself: what KIC pushes is what fastkong would have done.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import httpx
import pytest

from fastkong.config import load_config
from fastkong.control.schemas import plugin_schema
from fastkong.plugins import registry
from tests.helpers import Gateway
from tests.plugins.test_plugin_protocols import BUNDLED, least_config

pytestmark = pytest.mark.integration


def fill(schema: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """go-kong's fillConfigRecord with FillDefaults and without FillAuto."""
    out = copy.deepcopy(config)
    record_default = schema.get("default") if isinstance(schema.get("default"), dict) else {}
    for entry in schema["fields"]:
        ((name, field),) = entry.items()
        if name in config:
            value = config[name]
            if isinstance(value, dict):
                if "keys" in field and "values" in field:
                    continue  # an arbitrary map: set as given
            elif isinstance(value, list):
                if (field.get("elements") or {}).get("type") != "record":
                    continue
            else:
                continue
        if field["type"] == "record" and (config.get(name) is not None or field.get("required")):
            given = config.get(name)
            sub = fill(field, given if isinstance(given, dict) else {})
            if sub:
                out[name] = sub
            continue
        if (
            field["type"] in ("array", "set")
            and (field.get("elements") or {}).get("type") == "record"
        ):
            items = config.get(name)
            if isinstance(items, list) and items:
                out[name] = [
                    fill(field["elements"], i) if isinstance(i, dict) else i for i in items
                ]
                continue
        if field.get("auto"):
            continue
        # the record's own default for the field first (Kong's record defaults), then the field's
        chosen = record_default[name] if name in record_default else field.get("default")
        out[name] = copy.deepcopy(chosen)
    return out


def _config_schema(name: str) -> dict[str, Any]:
    spec = registry.lookup(name)
    assert spec is not None
    ((key, config),) = plugin_schema(spec)["fields"][-1].items()
    assert key == "config"
    return config


def _normalized(name: str, config: dict[str, Any]) -> dict[str, Any]:
    doc = {"_format_version": "3.0", "plugins": [{"name": name, "config": config}]}
    loaded: dict[str, Any] = load_config(json.dumps(doc)).config.plugins[0].config
    return loaded


#: go-kong nulls an empty array of records (a quirk Kong meets too: its own check then refuses
#: the null); these plugins' least configs get one record instead.
NON_EMPTY = {"ai-prompt-template": {"templates": [{"name": "t", "template": "Say {{x}}"}]}}


@pytest.mark.parametrize("name", BUNDLED)
def test_what_kic_fills_from_the_schema_is_what_fastkong_makes(name: str) -> None:
    least = NON_EMPTY.get(name) or least_config(name)
    filled = fill(_config_schema(name), least)
    expected = _normalized(name, least)
    got = _normalized(name, filled)
    if name == "session":
        # the per-node secret is left to the node (auto): equal but for its value
        got.pop("secret"), expected.pop("secret")
    assert got == expected


def test_the_endpoint_on_the_admin_api(tmp_path: Any) -> None:
    gateway = Gateway(tmp_path, '_format_version: "3.0"\n').start()
    try:
        admin = f"http://127.0.0.1:{gateway.admin_port}"
        answer = httpx.get(f"{admin}/schemas/plugins/rate-limiting")
        assert answer.status_code == 200
        names = [next(iter(f)) for f in answer.json()["fields"]]
        assert names == ["consumer", "route", "service", "protocols", "config"]
        config = answer.json()["fields"][-1]["config"]
        fields = {k: v for f in config["fields"] for k, v in f.items()}
        assert fields["policy"]["default"] == "local"
        assert set(fields["policy"]["one_of"]) == {"local", "redis"}  # no "cluster": DB-less
        assert fields["minute"] == {"type": "number"}  # optional, no default
        assert fields["redis"]["type"] == "record"
        missing = httpx.get(f"{admin}/schemas/plugins/no-such-plugin")
        assert (missing.status_code, missing.json()) == (
            404,
            {"message": "No plugin named 'no-such-plugin'"},
        )
        # the validate endpoint beside it is still a POST
        assert httpx.get(f"{admin}/schemas/plugins/validate").status_code == 405
        acme = httpx.get(f"{admin}/schemas/plugins/acme").json()["fields"]
        assert acme[0] == {"consumer": {"type": "foreign", "reference": "consumers", "eq": None}}
    finally:
        gateway.stop()
