"""hmac-auth through a running gateway (Kong's spec/03-plugins/19-hmac-auth), the credential
entity in the config and the admin API, and the signing-string rules on their own."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable
from email.utils import formatdate
from typing import Any

import httpx
import pytest

from fastkong.config import ConfigError, load_config
from fastkong.plugins.bundled.hmac_auth import date_within, parse_authorization
from tests.helpers import Echo, Gateway, echo_config, echoed_headers

pytestmark = pytest.mark.integration

ANONYMOUS_ID = "a0000000-0000-4000-8000-000000000001"
BOB_ID = "b0000000-0000-4000-8000-000000000002"
SECRET = "secret"
DIGESTS = {"hmac-sha1": "sha1", "hmac-sha256": "sha256", "hmac-sha384": "sha384"}


def config(echo: Echo) -> str:
    consumers = f"""consumers:
- {{id: {ANONYMOUS_ID}, username: no-body}}
- id: {BOB_ID}
  username: bob
  custom_id: bob-custom
  hmacauth_credentials:
  - {{username: bob, secret: {SECRET}}}
  - {{username: "q\\"uote", secret: other}}
"""
    configs = {
        "plain": "{}",
        "realm": "{realm: test-realm}",
        "hide": "{hide_credentials: true}",
        "anon": f"{{anonymous: {ANONYMOUS_ID}}}",
        "enforce": "{enforce_headers: [date, '@request-target']}",
        "sha256-only": "{algorithms: [hmac-sha256]}",
        "body": "{validate_request_body: true}",
        "skew": "{clock_skew: 10}",
    }
    routes = {name: f"{{name: hmac-auth, config: {c}}}" for name, c in configs.items()}
    return echo_config(echo, routes, consumers)


@pytest.fixture(scope="module")
def gateway(gateway_with: Callable[[str], Gateway], echo: Echo) -> Gateway:
    return gateway_with(config(echo))


def signature(text: str, algorithm: str = "hmac-sha1", secret: str = SECRET) -> str:
    mac = hmac.new(secret.encode(), text.encode(), DIGESTS[algorithm]).digest()
    return base64.b64encode(mac).decode()


def authorization(
    signed: str, names: str, algorithm: str = "hmac-sha1", username: str = "bob"
) -> str:
    return (
        f'hmac username="{username}", algorithm="{algorithm}", headers="{names}", '
        f'signature="{signature(signed, algorithm)}"'
    )


def now() -> str:
    return formatdate(usegmt=True)


def send(gateway: Gateway, path: str, headers: dict[str, str], **kw: Any) -> httpx.Response:
    return httpx.request(kw.pop("method", "GET"), gateway.url(path), headers=headers, **kw)


def assert_401(r: httpx.Response, message: str, www: str = "hmac") -> None:
    assert r.status_code == 401, r.text
    assert r.json()["message"] == message
    assert r.headers["www-authenticate"] == www


NOT_VALID = "HMAC signature cannot be verified"
NOT_SAME = "HMAC signature does not match"
BAD_DATE = (
    "HMAC signature cannot be verified, a valid date or x-date header is required for HMAC "
    "Authentication"
)


# -- refusals, in Kong's order -----------------------------------------------------------------
def test_no_authorization_is_unauthorized(gateway: Gateway) -> None:
    assert_401(send(gateway, "/plain", {"date": now()}), "Unauthorized")
    assert_401(send(gateway, "/realm", {}), "Unauthorized", 'hmac realm="test-realm"')


def test_a_date_is_required_and_checked_for_skew(gateway: Gateway) -> None:
    date = now()
    auth = authorization(f"date: {date}", "date")
    assert_401(send(gateway, "/plain", {"authorization": auth}), BAD_DATE)
    assert_401(send(gateway, "/plain", {"authorization": auth, "date": "yesterday"}), BAD_DATE)
    old = formatdate(timeval=time.time() - 60, usegmt=True)
    old_auth = authorization(f"date: {old}", "date")
    assert_401(send(gateway, "/skew", {"authorization": old_auth, "date": old}), BAD_DATE)
    # The default skew (300 s) takes the same request.
    assert send(gateway, "/plain", {"authorization": old_auth, "date": old}).status_code == 200


@pytest.mark.parametrize(
    "value",
    [
        "hmac nonsense",
        'hmac username="bob", algorithm="hmac-sha1", headers="date"',  # no signature
        'Basic username="bob"',
    ],
)
def test_a_malformed_header_cannot_be_verified(gateway: Gateway, value: str) -> None:
    assert_401(send(gateway, "/plain", {"authorization": value, "date": now()}), NOT_VALID)


def test_unknown_user_algorithm_and_enforced_headers_cannot_be_verified(
    gateway: Gateway,
) -> None:
    date = now()
    nobody = authorization(f"date: {date}", "date", username="nobody")
    assert_401(send(gateway, "/plain", {"authorization": nobody, "date": date}), NOT_VALID)
    unknown = authorization(f"date: {date}", "date").replace("hmac-sha1", "hmac-md5")
    assert_401(send(gateway, "/plain", {"authorization": unknown, "date": date}), NOT_VALID)
    sha1 = authorization(f"date: {date}", "date")
    assert_401(send(gateway, "/sha256-only", {"authorization": sha1, "date": date}), NOT_VALID)
    assert_401(send(gateway, "/enforce", {"authorization": sha1, "date": date}), NOT_VALID)


def test_a_wrong_signature_does_not_match(gateway: Gateway) -> None:
    date = now()
    wrong = authorization(f"date: {date} ", "date")
    assert_401(send(gateway, "/plain", {"authorization": wrong, "date": date}), NOT_SAME)
    not_base64 = 'hmac username="bob", algorithm="hmac-sha1", headers="date", signature="!!"'
    assert_401(send(gateway, "/plain", {"authorization": not_base64, "date": date}), NOT_SAME)


# -- success -----------------------------------------------------------------------------------
@pytest.mark.parametrize("algorithm", ["hmac-sha1", "hmac-sha256", "hmac-sha384"])
def test_a_valid_signature_authenticates(gateway: Gateway, algorithm: str) -> None:
    date = now()
    auth = authorization(f"date: {date}", "date", algorithm)
    r = send(gateway, "/plain", {"authorization": auth, "date": date, "x-consumer-id": "evil"})
    assert r.status_code == 200, r.text
    seen = echoed_headers(r.json())
    assert seen["x-consumer-id"] == [BOB_ID]
    assert seen["x-consumer-username"] == ["bob"]
    assert seen["x-consumer-custom-id"] == ["bob-custom"]
    assert seen["x-credential-identifier"] == ["bob"]
    assert "x-anonymous-consumer" not in seen
    assert seen["authorization"] == [auth]


def test_x_date_request_target_and_request_line(gateway: Gateway) -> None:
    date = now()
    signed = (
        f"x-date: {date}\n@request-target: get /enforce/a%20b?q=1&r\n"
        f"GET /enforce/a%20b?q=1&r HTTP/1.1\nContent-MD5:"
    )
    auth = authorization(signed, "x-date @request-target request-line Content-MD5")
    r = send(gateway, "/enforce/a%20b?q=1&r", {"authorization": auth, "x-date": date})
    assert r.status_code == 401  # enforce_headers names date, which is not signed
    signed = f"date: {date}\n@request-target: get /enforce/x?q=1"
    auth = authorization(signed, "date @request-target")
    r = send(gateway, "/enforce/x?q=1", {"authorization": auth, "date": date})
    assert r.status_code == 200, r.text
    signed = (
        f"x-date: {date}\n@request-target: get /plain/a%20b?q=1&r\n"
        f"GET /plain/a%20b?q=1&r HTTP/1.1\nContent-MD5:"
    )
    auth = authorization(signed, "x-date @request-target request-line Content-MD5")
    r = send(gateway, "/plain/a%20b?q=1&r", {"authorization": auth, "x-date": date})
    assert r.status_code == 200, r.text


def test_proxy_authorization_first_and_hidden(gateway: Gateway) -> None:
    date = now()
    auth = authorization(f"date: {date}", "date")
    r = send(gateway, "/hide", {"proxy-authorization": auth, "authorization": "keep", "date": date})
    seen = echoed_headers(r.json())
    assert "proxy-authorization" not in seen and seen["authorization"] == ["keep"]
    r = send(gateway, "/hide", {"authorization": auth, "date": date})
    assert r.status_code == 200 and "authorization" not in echoed_headers(r.json())


def test_a_username_with_a_quote(gateway: Gateway) -> None:
    date = now()
    mac = hmac.new(b"other", f"date: {date}".encode(), hashlib.sha1).digest()
    auth = (
        'hmac username="q"uote", algorithm="hmac-sha1", headers="date", '
        f'signature="{base64.b64encode(mac).decode()}"'
    )
    r = send(gateway, "/plain", {"authorization": auth, "date": date})
    assert r.status_code == 200, r.text
    assert echoed_headers(r.json())["x-credential-identifier"] == ['q"uote']


def test_the_body_digest(gateway: Gateway) -> None:
    date = now()
    auth = authorization(f"date: {date}", "date")
    body = b'{"a": 1}'
    digest = "SHA-256=" + base64.b64encode(hashlib.sha256(body).digest()).decode()
    headers = {"authorization": auth, "date": date}
    ok = send(gateway, "/body", {**headers, "digest": digest}, method="POST", content=body)
    assert ok.status_code == 200, ok.text
    assert ok.json()["body_length"] == len(body)  # the body read for the check still goes up
    wrong = send(gateway, "/body", {**headers, "digest": digest}, method="POST", content=b"{}")
    assert_401(wrong, NOT_SAME)
    assert_401(send(gateway, "/body", headers, method="POST", content=body), NOT_SAME)
    assert send(gateway, "/body", headers).status_code == 200  # no digest, no body


def test_anonymous(gateway: Gateway) -> None:
    seen = echoed_headers(send(gateway, "/anon", {"authorization": "hmac x"}).json())
    assert seen["x-anonymous-consumer"] == ["true"]
    assert seen["x-consumer-id"] == [ANONYMOUS_ID]


def test_the_credentials_on_the_admin_api(gateway: Gateway) -> None:
    admin = f"http://127.0.0.1:{gateway.admin_port}"
    rows = httpx.get(f"{admin}/hmac-auths").json()["data"]
    assert sorted(row["username"] for row in rows) == ["bob", 'q"uote']
    nested = httpx.get(f"{admin}/consumers/bob/hmac-auth").json()["data"]
    assert {row["username"] for row in nested} == {'q"uote', "bob"}
    one = httpx.get(f"{admin}/hmac-auths/bob").json()
    assert one["consumer"] == {"id": BOB_ID} and one["secret"] == SECRET


# -- the config --------------------------------------------------------------------------------
def test_config_rules() -> None:
    text = f"""
_format_version: "3.0"
consumers:
- id: {BOB_ID}
  username: bob
  hmacauth_credentials:
  - username: bob
  - username: bob
    secret: x
  - secret: y
"""
    with pytest.raises(ConfigError) as caught:
        load_config(text)
    paths = {(e.path, e.message) for e in caught.value.errors}
    assert ("consumers[0].hmacauth_credentials[2].username", "required field missing") in paths
    assert any("hmacauth_credentials[1]" in path for path, _ in paths)  # username taken twice
    loaded = load_config(text.split("  - username: bob\n    secret: x")[0]).config
    (cred,) = loaded.hmacauth_credentials
    assert cred.consumer == BOB_ID and len(cred.secret) == 32  # Kong's generated secret
    with pytest.raises(ConfigError) as caught:
        load_config(
            '_format_version: "3.0"\nplugins:\n- name: hmac-auth\n'
            "  config: {clock_skew: 0, algorithms: [hmac-md5]}\n"
        )
    paths = {e.path for e in caught.value.errors}
    assert {"plugins[0].config.clock_skew", "plugins[0].config.algorithms[0]"} <= paths


def test_an_asctime_date_is_gmt_whatever_the_local_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        assert date_within("Wed Nov 25 10:00:00 2026", 1, 1795600800)
    finally:
        monkeypatch.undo()
        time.tzset()


def test_signing_rules() -> None:
    parsed = parse_authorization(
        ' Hmac username="a", algorithm="hmac-sha256", headers="date  x", signature="c2ln"'
    )
    assert parsed is not None
    assert (parsed.username, parsed.algorithm, parsed.signature) == ("a", "hmac-sha256", "c2ln")
    assert parsed.headers == ["date", "", "x"]  # split on each space, as Kong's splitn
    assert parse_authorization(None) is None
    assert parse_authorization('hmac username="a"') is None
    assert date_within("Wed, 25 Nov 2026 10:00:00 GMT", 300, 1795600800 + 200)
    assert not date_within("Wed, 25 Nov 2026 10:00:00 GMT", 300, 1795600800 + 301)
    assert date_within("Wednesday, 25-Nov-26 10:00:00 GMT", 1, 1795600800)  # RFC 850
    assert date_within("Wed Nov 25 10:00:00 2026", 1, 1795600800)  # asctime
    assert not date_within("not a date", 300, 1795600800)
