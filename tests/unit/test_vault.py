"""Secret references (``{vault://env/...}``) as Kong parses and resolves them
(``kong/pdk/vault.lua``, ``kong/vaults/env``), and what fastkong does with them: the config
keeps the reference, a worker's plugin gets the secret, and a reference that cannot be
resolved is a config error at its path instead of Kong's silent nil."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import httpx
import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from fastkong.config import ConfigError, load_config
from fastkong.config.ids import generate
from fastkong.config.vault import Reference, VaultError, parse_reference, resolve
from fastkong.control.admin import export_yaml
from fastkong.proxy.app import Gateway
from fastkong.runtime import compile_runtime
from tests.helpers import Echo, HttpRequest, read_request
from tests.unit.test_config_kong_certs import make


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "{vault://env/cert/key?prefix=SSL_#1}",
            Reference("env", "cert", "key", {"prefix": "SSL_"}, 1),
        ),
        ("{vault://env/pg-password}", Reference("env", "pg-password")),
        ("{vault://env/a/b/c}", Reference("env", "a/b", "c")),
        ("{vault://env/dir/sub/}", Reference("env", "dir/sub")),
        ("{vault://env/a%20b}", Reference("env", "a b")),
        ("{vault://my-vault/token#2}", Reference("my-vault", "token", version=2)),
    ],
)
def test_references_parse_as_kongs(text: str, expected: Reference) -> None:
    assert parse_reference(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{vault://env}", "reference url is missing path [{vault://env}]"),
        ("{vault://env/}", "reference url has empty path [{vault://env/}]"),
        ("{vault:///x}", "reference url is missing host [{vault:///x}]"),
        ("{vault://env/x#one}", "reference url has invalid version [{vault://env/x#one}]"),
        ("vault://env/x", "not a reference [vault://env/x]"),
    ],
)
def test_malformed_references(text: str, message: str) -> None:
    with pytest.raises(VaultError, match=re.escape(message)):
        parse_reference(text)


def test_env_names_values_and_subfields() -> None:
    env = {
        "PG_PASSWORD": "s1",
        "SSL_CERT": "c1",
        "TOKEN_PREVIOUS": "old",
        "TOKEN": "new",
        "CREDS": json.dumps({"user": "u", "port": 5432}),
    }
    assert resolve("{vault://env/pg-password}", env) == "s1"  # upper-case, '-' as '_'
    assert resolve("{vault://env/cert?prefix=ssl_}", env) == "c1"
    assert resolve("{vault://env/token#2}", env) == "old"
    assert resolve("{vault://env/token#1}", env) == "new"
    assert resolve("{vault://env/creds/user}", env) == "u"
    for text, message in [
        ("{vault://env/missing}", "no value found"),
        ("{vault://aws/x}", "could not find vault (aws)"),
        ("{vault://env/creds/nope}", "subfield nope not found in JSON secret"),
        ("{vault://env/creds/port}", "unexpected number value in JSON secret for subfield port"),
        ("{vault://env/pg-password/key}", "unable to json decode value"),
        ("{vault://env/x?prefix=1bad}", "invalid prefix"),
    ]:
        with pytest.raises(VaultError, match=re.escape(message)):
            resolve(text, env)


def document(plugins: list[dict[str, Any]], **more: Any) -> str:
    return json.dumps({"_format_version": "3.0", "plugins": plugins, **more})


def errors(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(text)
    return [f"{e.path}: {e.message}" for e in info.value.errors]


def test_a_referenceable_field_keeps_the_reference_and_skips_its_own_checks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LOG_ENDPOINT", "http://127.0.0.1:9/log")
    plugin = {"name": "http-log", "config": {"http_endpoint": "{vault://env/log-endpoint}"}}
    config = load_config(document([plugin])).config
    assert config.plugins[0].config["http_endpoint"] == "{vault://env/log-endpoint}"
    # GET /config shows the reference, never the secret (as Kong's admin API)
    exported = export_yaml(config)
    assert "{vault://env/log-endpoint}" in exported and "127.0.0.1:9" not in exported


def test_unresolved_and_invalid_references_are_errors_at_their_paths(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("NOWHERE", raising=False)
    monkeypatch.setenv("NOT_A_URL", "just-words")
    text = document(
        [
            {"name": "http-log", "config": {"http_endpoint": "{vault://env/nowhere}"}},
            {
                "name": "http-log",
                "service": "s",
                "config": {"http_endpoint": "{vault://env/not-a-url}"},
            },
        ],
        services=[{"name": "s", "url": "http://127.0.0.1:9"}],
    )
    found = errors(text)
    assert found == [
        "plugins[0].config.http_endpoint: unable to resolve reference {vault://env/nowhere} "
        "(could not get value from external vault (no value found))",
        "plugins[1].config.http_endpoint: the value of {vault://env/not-a-url} is invalid: "
        "missing host in url",
    ]
    assert not any("just-words" in e for e in found)
    # a check whose message would quote the value: the secret is left out of it
    monkeypatch.setenv("DD_HOST", "not a host!")
    host = {"name": "datadog", "config": {"host": "{vault://env/dd-host}"}}
    assert errors(document([host])) == [
        "plugins[0].config.host: the value of {vault://env/dd-host} is invalid: "
        "it does not pass the field's checks"
    ]


def test_a_reference_in_a_field_kong_does_not_mark_is_a_plain_string() -> None:
    plugin = {
        "name": "request-transformer",
        "config": {"add": {"headers": ["x-note:{vault://env/not-resolved}"]}},
    }
    config = load_config(document([plugin])).config
    assert config.plugins[0].config["add"]["headers"] == ["x-note:{vault://env/not-resolved}"]


def test_certificate_pairs_are_checked_on_their_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    cert, key = make(ec.generate_private_key(ec.SECP256R1()))
    _, other_key = make(ec.generate_private_key(ec.SECP256R1()))
    monkeypatch.setenv("TLS_CERT", cert)
    monkeypatch.setenv("TLS_KEY", key)
    monkeypatch.setenv("OTHER_KEY", other_key)
    good = {"cert": "{vault://env/tls-cert}", "key": "{vault://env/tls-key}"}
    config = load_config(json.dumps({"_format_version": "3.0", "certificates": [good]})).config
    assert config.certificates[0].key == "{vault://env/tls-key}"
    bad = {**good, "key": "{vault://env/other-key}"}
    text = json.dumps({"_format_version": "3.0", "certificates": [bad]})
    assert errors(text) == ["certificates[0]: certificate does not match key"]


def test_a_worker_plugin_uses_the_secret(echo: Echo, monkeypatch: pytest.MonkeyPatch) -> None:
    """http-log with its endpoint and a header from the environment: the collector on loopback
    gets the log entry at the secret URL with the secret header."""

    async def main() -> HttpRequest:
        got: asyncio.Queue[HttpRequest] = asyncio.Queue()

        async def collector(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            request = await read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            await writer.drain()
            writer.close()
            await got.put(request)

        server = await asyncio.start_server(collector, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        monkeypatch.setenv("LOG_URL", json.dumps({"url": f"http://127.0.0.1:{port}/secret-path"}))
        monkeypatch.setenv("LOG_TOKEN", "Bearer t0ken")
        config = {
            "_format_version": "3.0",
            "services": [
                {
                    "name": "svc",
                    "url": f"http://127.0.0.1:{echo.port}",
                    "routes": [{"name": "r", "paths": ["/"]}],
                    "plugins": [
                        {
                            "name": "http-log",
                            "config": {
                                "http_endpoint": "{vault://env/log-url/url}",
                                "headers": {"Authorization": "{vault://env/log-token}"},
                            },
                        }
                    ],
                }
            ],
        }
        loaded = load_config(json.dumps(config)).config
        assert "t0ken" not in msgspec.json.encode(loaded).decode()
        gw = Gateway(compile_runtime(loaded, "1"))
        await gw.startup()
        try:
            transport = httpx.ASGITransport(app=gw)
            async with httpx.AsyncClient(transport=transport, timeout=5) as client:
                assert (await client.get("http://gw.test/x")).status_code == 200
            return await asyncio.wait_for(got.get(), 10)
        finally:
            await gw.shutdown()
            server.close()
            await server.wait_closed()

    request = asyncio.run(main())
    assert request.target == "/secret-path"
    assert request.lowered["authorization"] == "Bearer t0ken"
    assert json.loads(request.body)["request"]["uri"] == "/x"


def test_the_controller_checks_references_without_the_gateways_secrets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The controller validates what it sends, where the gateway's environment is not: a
    reference must parse and name a vault there, and is not fetched."""
    from fastkong.k8s.prune import config_layer_validator  # noqa: PLC0415

    validate = config_layer_validator()
    assert validate is not None
    monkeypatch.delenv("REDIS_PASSWORD", raising=False)
    limit = {"minute": 5, "policy": "redis", "redis": {"host": "redis", "password": ""}}
    config = {"_format_version": "3.0", "plugins": [{"name": "rate-limiting", "config": limit}]}
    limit["redis"]["password"] = "{vault://env/redis-password}"
    assert validate(config) == []
    limit["redis"]["password"] = "{vault://hcv/redis-password}"
    assert validate(config) == [
        (
            ("plugins", 0, "config", "redis", "password"),
            "unable to resolve reference {vault://hcv/redis-password} (could not find vault (hcv))",
        )
    ]
    # outside the controller the same reference is fetched, and must resolve
    limit["redis"]["password"] = "{vault://env/redis-password}"
    assert errors(json.dumps(config))[0].endswith("(no value found))")


def vaults_document(vaults: list[dict[str, Any]], password: str) -> str:
    limit = {"minute": 5, "policy": "redis", "redis": {"host": "redis", "password": password}}
    return json.dumps(
        {
            "_format_version": "3.0",
            "plugins": [{"name": "rate-limiting", "config": limit}],
            # after the plugin: a reference may name a vault written anywhere in the document
            "vaults": vaults,
        }
    )


def test_a_named_vault_gives_its_prefix_and_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_REDIS_PASSWORD", "from-app")
    monkeypatch.setenv("OTHER_REDIS_PASSWORD", "from-other")
    named = [{"name": "env", "prefix": "my-env", "config": {"prefix": "APP_"}}]
    loaded = load_config(vaults_document(named, "{vault://my-env/redis-password}")).config
    vault_entity = loaded.vaults[0]
    # Kong's id: its cache key, the prefix
    assert vault_entity.id == generate("vaults", "vaults:*:my-env")
    assert "my-env" in export_yaml(loaded)
    plugin = compile_runtime(loaded, "1").plugins.by_name["rate-limiting"][(None, None, None)]
    assert plugin.config.redis.password == "from-app"
    # the reference's query overrides the vault's config
    text = vaults_document(named, "{vault://my-env/redis-password?prefix=OTHER_}")
    plugin = compile_runtime(load_config(text).config, "1").plugins.by_name["rate-limiting"]
    assert plugin[(None, None, None)].config.redis.password == "from-other"


@pytest.mark.parametrize(
    ("vault", "message"),
    [
        ({"name": "env", "prefix": "Env-1"}, "vaults[0].prefix: invalid value: Env-1"),
        ({"name": "env", "prefix": "x"}, "vaults[0].prefix: invalid value: x"),
        ({"name": "env", "prefix": "env"}, "vaults[0].prefix: must not be one of: env"),
        ({"name": "aws", "prefix": "my-aws"}, "vaults[0].name: vault 'aws' is not installed"),
        (
            {"name": "env", "prefix": "my-env", "config": {"prefix": "1X"}},
            "vaults[0].config.prefix: invalid value: 1X",
        ),
        (
            {"name": "env", "prefix": "my-env", "config": {"region": "x"}},
            "vaults[0].config.region: unknown field",
        ),
        ({"prefix": "my-env"}, "vaults[0].name: required field missing"),
    ],
)
def test_vault_entities_kong_refuses(vault: dict[str, Any], message: str) -> None:
    text = json.dumps({"_format_version": "3.0", "vaults": [vault]})
    assert errors(text) == [message]


def test_a_reference_to_a_vault_that_is_not_there(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_PASSWORD", "x")
    found = errors(vaults_document([], "{vault://my-env/redis-password}"))
    assert found == [
        "plugins[0].config.redis.password: unable to resolve reference "
        "{vault://my-env/redis-password} (could not find vault (my-env))"
    ]


def test_config_validate_fetches_secrets_unless_told_not_to(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``fastkong config validate`` resolves references as the gateway will; with
    ``--no-secrets`` (a CI job without the gateway's environment) it only checks them."""
    import contextlib  # noqa: PLC0415
    import io  # noqa: PLC0415

    from fastkong.cli import main  # noqa: PLC0415

    monkeypatch.delenv("LOG_TOKEN", raising=False)
    plugin = {
        "name": "http-log",
        "config": {
            "http_endpoint": "http://127.0.0.1:9/log",
            "headers": {"authorization": "{vault://env/log-token}"},
        },
    }
    path = tmp_path / "kong.yml"
    path.write_text(document([plugin]))

    def run(*args: str) -> tuple[int, str]:
        out = io.StringIO()
        with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as done:
            main(["config", "validate", str(path), *args])
        return int(done.value.code or 0), out.getvalue()

    code, out = run()
    assert code == 1
    assert out.startswith(
        "plugins[0].config.headers: unable to resolve reference {vault://env/log-token}"
    )
    code, out = run("--no-secrets")
    assert code == 0 and "valid" in out
    path.write_text(
        document(
            [{**plugin, "config": {**plugin["config"], "headers": {"a": "{vault://nowhere/x}"}}}]
        )
    )
    assert run("--no-secrets")[0] == 1
