"""Kong's ``spec/03-plugins/44-standard-webhooks`` specs (DB-less run): ``01-unit_spec.lua``
(the schema) against fastkong's config loader, ``02-integration_spec.lua`` against a real
``fastkong start`` gateway and the echo upstream (Kong's default blueprint service, the
``mock_upstream``).

Ported:

- 01-unit 18-25 (a valid config), 45-57 and 94-106 (``null`` is "required field missing", a
  declarative ``null`` being Kong's ``ngx.null``), 60-72 (a number secret), 109-121 (a fractional
  tolerance).
- 02-integration 114-131 "fails because the timestamp tolerance is exceeded": with Kong's
  default ``tolerance_second`` (300), a correctly signed delivery 6 minutes old; the same
  delivery signed now passes (95-112), so the refusal is the age alone. The signature is Kong's
  ``internal.sign`` (``v1,`` + base64 HMAC-SHA256 of ``id.ts.body``), the body the spec's
  ``{"foo":"bar"}`` as its client encodes it.

Covered by ``test_standard_webhooks.py`` (not repeated): 01-unit 30-42 and 124-136
(``test_schema``), 80-91 (``test_schema``'s defaults); 02-integration 51-64
(``test_refusals_are_400`` "no signature"), 66-80 ("bad timestamp"), 82-93
(``test_an_empty_body_is_refused``), 95-112 (``test_a_signed_delivery_passes_with_its_body``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.helpers import Echo, Gateway, plugin_config, plugin_config_errors

SECRET = "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
MESSAGE_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
BODY = b'{"foo":"bar"}'


# -- 01-unit_spec.lua --------------------------------------------------------------------------
def test_accepts_a_valid_config() -> None:
    """01-unit 18-25."""
    config = {"secret_v1": "abc123", "tolerance_second": 5 * 60}
    assert plugin_config("standard-webhooks", config) == config


MISSING = "required field missing"


@pytest.mark.parametrize(
    ("line", "secret", "tolerance", "error"),
    [
        (45, None, 300, f"secret_v1: {MISSING}"),
        (60, 123, 300, "secret_v1: expected a string"),
        (94, "abc123", None, f"tolerance_second: {MISSING}"),
        (109, "abc123", 5.67, "tolerance_second: expected an integer"),
    ],
)
def test_schema_refusals(line: int, secret: Any, tolerance: Any, error: str) -> None:
    config = {"secret_v1": secret, "tolerance_second": tolerance}
    errors = plugin_config_errors("standard-webhooks", config)
    assert errors == [f"plugins[0].config.{error}"], line


# -- 02-integration_spec.lua -------------------------------------------------------------------
@pytest.fixture(scope="module")
def gateway(gateway_with: Callable[[str], Gateway], echo: Echo) -> Gateway:
    """Kong's route ``paths = {"/"}`` with the plugin, ``secret_v1`` only."""
    plugin = {"name": "standard-webhooks", "config": {"secret_v1": SECRET}}
    route = {"name": "hooks", "paths": ["/"], "plugins": [plugin]}
    service = {"name": "echo", "url": f"http://127.0.0.1:{echo.port}", "routes": [route]}
    return gateway_with(json.dumps({"_format_version": "3.0", "services": [service]}))


def sign(ts: int) -> str:
    """Kong's ``internal.sign(SECRET, MESSAGE_ID, ts, '{"foo":"bar"}')``."""
    mac = hmac.new(SECRET.encode(), f"{MESSAGE_ID}.{ts}.".encode() + BODY, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def deliver(gateway: Gateway, ts: int) -> httpx.Response:
    headers = {
        "content-type": "application/json",
        "webhook-id": MESSAGE_ID,
        "webhook-signature": sign(ts),
        "webhook-timestamp": str(ts),
    }
    return httpx.post(gateway.url("/"), content=BODY, headers=headers)


@pytest.mark.integration
def test_fails_because_the_timestamp_tolerance_is_exceeded(gateway: Gateway) -> None:
    """02-integration 114-131."""
    r = deliver(gateway, int(time.time()) - 6 * 60)
    assert r.status_code == 400, r.text
    assert r.json()["message"] == "Bad request"
    assert deliver(gateway, int(time.time())).status_code == 200  # 95-112
