"""nginx's access log details (fastkong/proxy/access_log.py), without sockets."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastkong.cli import access_log_setting
from fastkong.proxy.access_log import AccessLog, escape, remote_user


def test_escape_is_nginxs() -> None:
    assert escape(b"plain text/1.0") == "plain text/1.0"
    assert escape(b'a"b\\c\x01\x7f\xe2\x82\xac') == r"a\x22b\x5Cc\x01\x7F\xE2\x82\xAC"


@given(st.binary(max_size=64))
def test_escaped_values_are_one_printable_quote_free_field(value: bytes) -> None:
    out = escape(value)
    assert out.isascii() and out.isprintable() and '"' not in out
    assert len(out) >= len(value)


def test_remote_user() -> None:
    def basic(text: bytes) -> bytes:
        return b"Basic " + base64.b64encode(text)

    assert remote_user(basic(b"alice:pw")) == "alice"
    assert remote_user(basic(b"alice")) == "-"  # no colon: no user
    assert remote_user(basic(b":pw")) == "-"
    assert remote_user(b"Bearer abc") == "-"
    assert remote_user(b"Basic %%%") == "-"
    assert remote_user(None) == "-"


def test_time_local_and_line() -> None:
    log = AccessLog("/dev/null")
    assert log.time_local(0) == log.time_local(0.9)
    scope = {
        "method": "POST",
        "raw_path": b"/a b",
        "query_string": b"x=1",
        "http_version": "2",
        "headers": [(b"referer", b"r"), (b"referer", b"second")],
    }
    line = log.line(scope, 201, 7, "f" * 32, "10.0.0.1")
    assert line.startswith("10.0.0.1 - - [")
    assert line.endswith(
        '] "POST /a b?x=1 HTTP/2.0" 201 7 "r" "-" kong_request_id: "' + "f" * 32 + '"\n'
    )


def test_the_setting() -> None:
    assert access_log_setting("off") == "off"
    assert access_log_setting(" /dev/stdout ") == "/dev/stdout"
    with pytest.raises(ValueError, match="custom log formats are not supported"):
        access_log_setting("/dev/stdout custom_fmt")
