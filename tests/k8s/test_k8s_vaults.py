"""KongVault -> Kong vaults (KIC's ``FillVaults``): which KongVaults are ours, the record, the
duplicate-prefix rule, what the data plane cannot use, and plugin secrets that refer to one."""

from __future__ import annotations

import json
from typing import Any

from fastkong.config import load_config
from fastkong.k8s import ObjectRef, translate

GROUP = "configuration.konghq.com"


def vault(
    name: str,
    prefix: str = "my-env",
    backend: str = "env",
    cls: str | None = "fastkong",
    created: str = "2026-01-01T00:00:00Z",
    **spec: Any,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "uid": f"uid-{name}", "creationTimestamp": created}
    if cls is not None:
        meta["annotations"] = {"kubernetes.io/ingress.class": cls}
    return {
        "apiVersion": f"{GROUP}/v1alpha1",
        "kind": "KongVault",
        "metadata": meta,
        "spec": {"backend": backend, "prefix": prefix, **spec},
    }


def test_a_kong_vault_becomes_a_vault() -> None:
    result = translate(
        [vault("env", description="app secrets", config={"prefix": "APP_"}, tags=["ignored"])]
    )
    assert result.problems == []
    assert result.config["vaults"] == [
        {
            "name": "env",
            "prefix": "my-env",
            "description": "app secrets",
            "config": {"prefix": "APP_"},
            "tags": [
                "k8s-name:env",
                "k8s-kind:KongVault",
                "k8s-uid:uid-env",
                "k8s-group:configuration.konghq.com",
                "k8s-version:v1alpha1",
            ],
        }
    ]
    load_config(json.dumps(result.config))  # it loads on the data plane


def test_only_our_class_and_classless_ones_when_ours_is_the_default() -> None:
    objs = [
        vault("ours", "vault-a"),
        vault("theirs", "vault-b", cls="kong"),
        vault("classless", "vault-c", cls=None),
    ]
    assert [v["prefix"] for v in translate(objs).config["vaults"]] == ["vault-a"]
    default_class = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IngressClass",
        "metadata": {
            "name": "fastkong",
            "annotations": {"ingressclass.kubernetes.io/is-default-class": "true"},
        },
        "spec": {"controller": "ingress-controllers.konghq.com/kong"},
    }
    found = translate([*objs, default_class]).config["vaults"]
    assert [v["prefix"] for v in found] == ["vault-a", "vault-c"]
    # KIC's own class, when we take its manifests over
    taken = translate(objs, ingress_class="kong").config["vaults"]
    assert [v["prefix"] for v in taken] == ["vault-b"]


def test_one_prefix_twice_the_older_wins_then_the_first_name() -> None:
    newer = vault("newer", created="2026-03-01T00:00:00Z", config={"prefix": "NEW_"})
    older = vault("older", created="2026-02-01T00:00:00Z", config={"prefix": "OLD_"})
    twin = vault("a-twin", created="2026-02-01T00:00:00Z", config={"prefix": "TWIN_"})
    result = translate([newer, older, twin])
    assert [v["config"] for v in result.config["vaults"]] == [{"prefix": "TWIN_"}]
    refs = sorted((p.ref.name, p.message) for p in result.problems)
    assert refs == [
        ("newer", 'spec.prefix "my-env" is duplicate'),
        ("older", 'spec.prefix "my-env" is duplicate'),
    ]


def test_what_the_data_plane_cannot_use_is_left_out_with_its_reason() -> None:
    result = translate(
        [
            vault("aws", "aws-vault", backend="aws", config={"region": "eu-west-1"}),
            vault("bad-prefix", "not a prefix!"),
            vault("bad-config", "vault-cfg", config=["not", "a", "record"]),
            vault("fine", "vault-ok"),
        ]
    )
    assert [v["prefix"] for v in result.config["vaults"]] == ["vault-ok"]
    messages = {p.ref: p.message for p in result.problems}
    assert "vault 'aws' is not installed" in messages[ObjectRef("KongVault", "", "aws")]
    assert "failed to parse configuration" in messages[ObjectRef("KongVault", "", "bad-config")]
    assert ObjectRef("KongVault", "", "bad-prefix") in messages


def test_a_plugin_secret_refers_to_the_vault_by_its_prefix() -> None:
    plugin = {
        "apiVersion": f"{GROUP}/v1",
        "kind": "KongClusterPlugin",
        "metadata": {
            "name": "limits",
            "labels": {"global": "true"},
            "annotations": {"kubernetes.io/ingress.class": "fastkong"},
        },
        "plugin": "rate-limiting",
        "config": {
            "minute": 10,
            "policy": "redis",
            "redis": {"host": "redis", "password": "{vault://my-env/redis-password}"},
        },
    }
    with_vault = translate([plugin, vault("env", config={"prefix": "APP_"})])
    assert with_vault.problems == []
    (record,) = with_vault.config["plugins"]
    assert record["config"]["redis"]["password"] == "{vault://my-env/redis-password}"
