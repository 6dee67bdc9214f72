"""standard-webhooks through a running gateway (Kong's spec/03-plugins/44-standard-webhooks)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable

import httpx
import pytest

from fastkong.config import ConfigError, load_config
from tests.helpers import Echo, Gateway, echo_config

pytestmark = pytest.mark.integration

SECRET = "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.fixture(scope="module")
def gateway(gateway_with: Callable[[str], Gateway], echo: Echo) -> Gateway:
    plugin = f"{{name: standard-webhooks, config: {{secret_v1: {SECRET}, tolerance_second: 60}}}}"
    return gateway_with(echo_config(echo, {"hooks": plugin}))


def signed(body: bytes, msg_id: str = "msg_1", ts: int | None = None) -> dict[str, str]:
    ts = int(time.time()) if ts is None else ts
    mac = hmac.new(SECRET.encode(), f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": "v1," + base64.b64encode(mac).decode(),
    }


def post(gateway: Gateway, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(gateway.url("/hooks"), content=body, headers=headers)


def test_a_signed_delivery_passes_with_its_body(gateway: Gateway) -> None:
    body = b'{"type": "invoice.paid"}'
    r = post(gateway, body, signed(body))
    assert r.status_code == 200, r.text
    assert r.json()["body_length"] == len(body)
    # A timestamp ahead of the clock is not refused (Kong checks the age only).
    assert post(gateway, body, signed(body, ts=int(time.time()) + 3600)).status_code == 200


def test_any_listed_signature_may_match(gateway: Gateway) -> None:
    body = b"{}"
    headers = signed(body)
    headers["webhook-signature"] = "v1,c29tZSBvbGQgc2lnbmF0dXJl " + headers["webhook-signature"]
    assert post(gateway, body, headers).status_code == 200


@pytest.mark.parametrize(
    "spoil",
    ["no id", "no signature", "no timestamp", "old", "bad timestamp", "wrong", "other body"],
)
def test_refusals_are_400(gateway: Gateway, spoil: str) -> None:
    body = b'{"a": 1}'
    headers = signed(body, ts=int(time.time()) - 120 if spoil == "old" else None)
    sent = body
    if spoil == "no id":
        del headers["webhook-id"]
    elif spoil == "no signature":
        del headers["webhook-signature"]
    elif spoil == "no timestamp":
        del headers["webhook-timestamp"]
    elif spoil == "bad timestamp":
        headers["webhook-timestamp"] = "yesterday"
    elif spoil == "wrong":
        headers["webhook-signature"] = "v1," + base64.b64encode(b"x" * 32).decode()
    elif spoil == "other body":
        sent = b'{"a": 2}'
    r = post(gateway, sent, headers)
    assert r.status_code == 400
    assert r.json()["message"] == "Bad request"


def test_an_empty_body_is_refused(gateway: Gateway) -> None:
    assert post(gateway, b"", signed(b"")).status_code == 400


def test_schema() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(
            '_format_version: "3.0"\nplugins: [{name: standard-webhooks, '
            "config: {tolerance_second: -1}}]\n"
        )
    assert sorted(f"{e.path}: {e.message}" for e in info.value.errors) == [
        "plugins[0].config.secret_v1: required field missing",
        "plugins[0].config.tolerance_second: value must be greater than -1",
    ]
    config = (
        load_config(
            '_format_version: "3.0"\nplugins: [{name: standard-webhooks, config: {secret_v1: s}}]\n'
        )
        .config.plugins[0]
        .config
    )
    assert config == {"secret_v1": "s", "tolerance_second": 300}
