"""Kong's error bodies and content negotiation (kong.md 3.4; kong/tools/http.lua)."""

from __future__ import annotations

import pytest

from fastkong.proxy import errors

RID = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, errors.JSON),
        ("*/*", errors.JSON),
        ("text/html", errors.HTML),
        ("application/xml", errors.XML),
        ("text/plain", errors.PLAIN),
        ("text/*", errors.PLAIN),
        ("application/*", errors.JSON),
        ("image/png", errors.JSON),
        ("text/html;q=0.5, application/xml;q=0.9", errors.XML),
        ("text/html, application/xml;q=0.9", errors.HTML),
        ("garbage", errors.JSON),
    ],
)
def test_response_error_negotiates_on_accept(accept: str | None, expected: str) -> None:
    assert errors.response_type(accept) == expected


def test_json_template_is_kongs() -> None:
    ctype, body = errors.for_response_error(None, errors.NO_ROUTE, RID)
    assert ctype == "application/json; charset=utf-8"
    assert body == (
        b'{\n  "message":"no Route matched with those values",\n  "request_id":"'
        + RID.encode()
        + b'"\n}'
    )


def test_nginx_error_without_accept_or_content_type_is_plain_text() -> None:
    ctype, body = errors.for_nginx_error(502, None, None, RID)
    assert ctype == errors.PLAIN
    assert body == (
        b"An invalid response was received from the upstream server\nrequest_id: "
        + RID.encode()
        + b"\n"
    )


def test_nginx_error_falls_back_to_content_type() -> None:
    ctype, body = errors.for_nginx_error(504, None, "application/json", RID)
    assert ctype == errors.JSON
    assert b'"message":"The upstream server is timing out"' in body


def test_nginx_error_negotiates_accept_as_kong_3_3_and_later() -> None:
    # kong/error_handlers.lua runs get_response_type on the header: a browser's Accept gets HTML.
    ctype, body = errors.for_nginx_error(502, "text/html,application/xhtml+xml", None, RID)
    assert ctype == errors.HTML
    assert b"<p>An invalid response was received from the upstream server.</p>" in body
    ctype, _ = errors.for_nginx_error(502, "text/plain;q=0.5, application/xml", None, RID)
    assert ctype == errors.XML
    ctype, _ = errors.for_nginx_error(502, None, "text/html; charset=utf-8, x", RID)
    assert ctype == errors.HTML
    ctype, _ = errors.for_nginx_error(502, "", None, RID)
    assert ctype == errors.JSON  # an empty Accept is present: JSON, not the text/plain default


def test_unknown_status_message() -> None:
    _, body = errors.for_nginx_error(599, "text/plain", None, RID)
    assert body.startswith(b"The upstream server responded with 599\n")


def test_html_and_xml_templates() -> None:
    html = errors.render(errors.HTML, "Bad request", RID)
    assert b"<p>Bad request.</p>\n    <p>request_id: " in html
    assert b"<message>x</message>\n  <requestid>" in errors.render(errors.XML, "x", RID)
