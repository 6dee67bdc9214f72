"""The acme plugin's Admin API (``kong/plugins/acme/api.lua``) and daily renewal, run by the
supervisor: one per node, like the health checker.

- ``POST /acme`` ``host=`` orders the host's certificate now (``201``), or with
  ``test_http_challenge_flow=true`` only checks that ``http://<host>/.well-known/acme-challenge/x``
  reaches this plugin (Kong's sanity check: a route must catch the path);
- ``PATCH /acme`` starts a renewal run (``202``);
- ``GET /acme/certificates`` (``?invalid_only``) and ``GET /acme/certificates/<host>``: the
  stored certificates as Kong describes them (SHA-1 digest, subject and issuer CN, validity in
  UTC, serial, key type).

Kong renews from a timer in every worker, once a day; here the supervisor runs it once a day
for the node (the storage's lock keeps nodes sharing a Redis from ordering twice).
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import msgspec
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from fastkong.acme.manager import DAY, AcmeManager, CertKey
from fastkong.config import Config
from fastkong.control.httpserver import Response
from fastkong.plugins.bundled import _aws_http
from fastkong.plugins.bundled.acme import AcmeConfig, DomainMatcher, storage_for

log = logging.getLogger("fastkong.acme")

SANITY_TIMEOUT: Final = 5.0
_TIME: Final = "%Y-%m-%d %H:%M:%S"


def _hex_pairs(data: bytes) -> str:
    return ":".join(f"{b:02X}" for b in data)


def describe(certkey: CertKey, now: float | None = None) -> dict[str, Any]:
    """Kong's ``parse_certkey``: what the Admin API shows of a stored certificate."""
    cert = x509.load_pem_x509_certificate(certkey.cert.encode())

    def cn(name: x509.Name) -> str | None:
        found = name.get_attributes_for_oid(NameOID.COMMON_NAME)
        return str(found[0].value) if found else None

    before = cert.not_valid_before_utc
    after = cert.not_valid_after_utc
    moment = (
        datetime.datetime.now(datetime.UTC)
        if now is None
        else (datetime.datetime.fromtimestamp(now, datetime.UTC))
    )
    serial = cert.serial_number
    serial_bytes = serial.to_bytes(max(1, (serial.bit_length() + 7) // 8), "big")
    key = cert.public_key()
    key_type = (
        "rsaEncryption"
        if isinstance(key, rsa.RSAPublicKey)
        else "id-ecPublicKey"
        if isinstance(key, ec.EllipticCurvePublicKey)
        else type(key).__name__
    )
    return {
        "digest": _hex_pairs(cert.fingerprint(hashes.SHA1())),  # noqa: S303 - Kong's digest
        "host": cn(cert.subject),
        "issuer_cn": cn(cert.issuer),
        "not_before": before.strftime(_TIME),
        "not_after": after.strftime(_TIME),
        "valid": before < moment < after,
        "serial_number": _hex_pairs(serial_bytes),
        "pubkey_type": key_type,
    }


def _message(status: int, message: str) -> Response:
    return Response.json(status, {"message": message})


class AcmeAdmin:
    """The node's acme endpoints and renewal timer (see the module docstring)."""

    def __init__(self, current_config: Callable[[], Config | None], state_dir: Path) -> None:
        self.current_config = current_config
        self.state_dir = state_dir
        self.tasks: set[asyncio.Task[Any]] = set()
        self.timer: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"<AcmeAdmin running={len(self.tasks)} timer={self.timer is not None}>"

    def plugin_config(self) -> AcmeConfig | None:
        config = self.current_config()
        for plugin in config.plugins if config is not None else ():
            if plugin.name == "acme":
                return msgspec.convert(plugin.config, AcmeConfig)
        return None

    def manager(self) -> AcmeManager | None:
        config = self.plugin_config()
        if config is None:
            return None
        return AcmeManager(config, storage_for(config, self.state_dir), self.current_config())

    # -- renewal -------------------------------------------------------------------------------

    def start(self, interval: float = DAY) -> None:
        self.timer = asyncio.get_running_loop().create_task(self._every(interval))

    def stop(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        for task in self.tasks:
            task.cancel()

    async def _every(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            await self.renew()

    async def renew(self) -> list[str]:
        manager = self.manager()
        if manager is None:
            return []
        log.info("acme: renewing the certificates in %r", manager.storage)
        return await manager.renew()

    def _background(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # -- endpoints -----------------------------------------------------------------------------

    @staticmethod
    def allowed_methods(parts: list[str]) -> str | None:
        if parts == ["acme"]:
            return "OPTIONS, POST, PATCH"
        if parts[:2] == ["acme", "certificates"] and len(parts) <= 3:
            return "GET, HEAD, OPTIONS"
        return None

    async def handle(self, method: str, parts: list[str], params: dict[str, Any]) -> Response:
        manager = self.manager()
        if parts == ["acme"] and method == "PATCH":
            if manager is not None:
                self._background(self.renew())
            return _message(202, "Renewal process started successfully")
        if manager is None:
            return Response(404)
        if parts == ["acme"]:
            return await self.order(manager, params)
        try:
            if len(parts) == 3:
                certkey = await manager.load_certkey(parts[2])
                if certkey is None:
                    # Kong's text, its missing space included
                    return _message(404, f"Certificate for host {parts[2]}not found in storage")
                return Response.json(200, {"data": describe(certkey)})
            data = []
            for host in await manager.renew_hosts():
                certkey = await manager.load_certkey(host)
                if certkey is None:
                    log.warning("[acme] %s is defined in renew_config but its cert and key is "
                                "missing", host)  # fmt: skip
                    continue
                row = describe(certkey)
                if not params.get("invalid_only") or not row["valid"]:
                    data.append(row)
        except Exception as exc:  # noqa: BLE001 - Kong's 500 with the storage's error
            return _message(500, str(exc))
        return Response.json(200, {"data": data})

    async def order(self, manager: AcmeManager, params: dict[str, Any]) -> Response:
        host = params.get("host")
        if not isinstance(host, str) or not host:
            return _message(400, "host must be provided and containing a single domain")
        if ":" in host:
            return _message(400, "port is not allowed in host")
        if params.get("test_http_challenge_flow") in (True, "true"):
            return await self.sanity_check(manager, host)
        try:
            _, err = await manager.update_certificate(host)
        except Exception as exc:  # noqa: BLE001
            err = str(exc)
        if err is not None:
            return _message(500, f"failed to update certificate: {err}")
        try:
            await manager.store_renew_config(host)
        except Exception as exc:  # noqa: BLE001
            return _message(500, f"failed to store renew config: {exc}")
        return _message(201, f"certificate for host {host} is created")

    async def sanity_check(self, manager: AcmeManager, host: str) -> Response:
        problem = f"problem found running sanity check for {host}: "
        if not DomainMatcher(manager.config).listed(host):
            return _message(400, problem + "host is not included in plugin config.domains")
        check_path = f"http://{host}/.well-known/acme-challenge/"
        try:
            answer = await _aws_http.request(
                "GET", "http", host, 80, "/.well-known/acme-challenge/x",
                [("Host", host)], b"", timeout=SANITY_TIMEOUT,
            )  # fmt: skip
        except _aws_http.AwsHttpError as exc:
            return _message(400, problem + str(exc))
        body = answer.body.decode("utf-8", "replace")
        if "no Route matched with those values" in body:
            err = (
                f"{check_path}* doesn't map to a Route in Kong; please refer to docs on how to "
                "create dummy Route and Service"
            )
        elif body != "Not found\n":
            err = f'unexpected response: "{body}"'
            if answer.status != 404:
                err += f", unexpected status code: {answer.status}"
        else:
            return _message(200, f"sanity test for host {host} passed")
        return _message(400, problem + err)


__all__ = ["AcmeAdmin", "describe"]
