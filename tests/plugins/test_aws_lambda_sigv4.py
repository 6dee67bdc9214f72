"""SigV4: the tests' own signer (``aws_fakes.SigV4``, which the fake AWS endpoints verify the
gateway's requests with) and the plugin's (``_aws_sigv4``), each checked against the examples
AWS publishes (the SigV4 test suite's ``get-vanilla`` family, credentials ``AKIDEXAMPLE``,
2015-08-30T12:36:00Z, and the derived-key and IAM ``ListUsers`` examples of the SigV4 guide),
then against each other on the requests the plugin makes."""

from __future__ import annotations

import calendar
import time

import pytest

from fastkong.plugins.bundled import _aws_sigv4
from fastkong.plugins.bundled._aws_sigv4 import Credentials, sign
from tests.plugins.aws_fakes import Received, SigV4, verify

SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
AMZ_DATE = "20150830T123600Z"
NOW = calendar.timegm(time.strptime(AMZ_DATE, "%Y%m%dT%H%M%SZ"))
HOST = "example.amazonaws.com"
STS_TOKEN = (
    "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSP"
    "fIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7"
    "WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8"
    "FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA=="
)

# (name, method, path, query as sent, extra headers, body, signature): AWS's test suite.
VECTORS = [
    (
        "get-vanilla",
        "GET",
        "/",
        "",
        [],
        b"",
        "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
    ),
    (
        "post-vanilla",
        "POST",
        "/",
        "",
        [],
        b"",
        "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
    ),
    (
        "get-vanilla-query-order-key-case",
        "GET",
        "/",
        "Param2=value2&Param1=value1",
        [],
        b"",
        "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
    ),
    (
        "post-x-www-form-urlencoded",
        "POST",
        "/",
        "",
        [("Content-Type", "application/x-www-form-urlencoded")],
        b"Param1=value1",
        "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a",
    ),
    (
        "get-space",
        "GET",
        "/example space/",
        "",
        [],
        b"",
        "652487583200325589f1fba4c7e578f72c47cb61beeca81406b39ddec1366741",
    ),
    (
        "get-utf8",
        "GET",
        "/\u1234",
        "",
        [],
        b"",
        "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85",
    ),
    (
        "post-sts-header-before",
        "POST",
        "/",
        "",
        [("X-Amz-Security-Token", STS_TOKEN)],
        b"",
        "85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead",
    ),
]
GET_VANILLA_CANONICAL = (
    "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n"
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
)


@pytest.mark.parametrize(
    ("name", "method", "path", "query", "headers", "body", "signature"),
    VECTORS,
    ids=[v[0] for v in VECTORS],
)
def test_test_signer_matches_aws_suite(
    name: str,
    method: str,
    path: str,
    query: str,
    headers: list[tuple[str, str]],
    body: bytes,
    signature: str,
) -> None:
    signer = SigV4("AKIDEXAMPLE", SECRET, "us-east-1", "service")
    all_headers = [("Host", HOST), ("X-Amz-Date", AMZ_DATE), *headers]
    auth = signer.authorization(method, path, query, all_headers, body, AMZ_DATE)
    assert auth.endswith(f"Signature={signature}")


@pytest.mark.parametrize(
    ("name", "method", "path", "query", "headers", "body", "signature"),
    VECTORS,
    ids=[v[0] for v in VECTORS],
)
def test_plugin_signer_matches_aws_suite(
    name: str,
    method: str,
    path: str,
    query: str,
    headers: list[tuple[str, str]],
    body: bytes,
    signature: str,
) -> None:
    pairs = [tuple(p.split("=", 1)) for p in query.split("&")] if query else []
    out = sign(
        method=method,
        host=HOST,
        path=path,
        query=pairs,  # type: ignore[arg-type]
        headers=headers,
        body=body,
        credentials=Credentials("AKIDEXAMPLE", SECRET),
        region="us-east-1",
        service="service",
        now=NOW,
    )
    assert dict(out)["Authorization"].endswith(f"Signature={signature}")
    assert dict(out)["X-Amz-Date"] == AMZ_DATE


def test_canonical_request_of_get_vanilla() -> None:
    headers = [("Host", HOST), ("X-Amz-Date", AMZ_DATE)]
    canonical = SigV4.canonical_request("GET", "/", "", headers, ["host", "x-amz-date"], b"")
    assert canonical == GET_VANILLA_CANONICAL


def test_derived_keys_of_the_guide() -> None:
    # The SigV4 guide's derived-key example and the key of its IAM ListUsers example.
    guide = "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"
    assert SigV4("AKIDEXAMPLE", SECRET, "us-east-1", "iam").key("20120215").hex() == guide
    assert _aws_sigv4.signing_key(SECRET, "20120215", "us-east-1", "iam").hex() == guide
    list_users = "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9"
    assert SigV4("AKIDEXAMPLE", SECRET, "us-east-1", "iam").key("20150830").hex() == list_users


def test_iam_list_users_example() -> None:
    headers = [
        ("Content-Type", "application/x-www-form-urlencoded; charset=utf-8"),
        ("Host", "iam.amazonaws.com"),
        ("X-Amz-Date", AMZ_DATE),
    ]
    auth = SigV4("AKIDEXAMPLE", SECRET, "us-east-1", "iam").authorization(
        "GET", "/", "Action=ListUsers&Version=2010-05-08", headers, b"", AMZ_DATE
    )
    expected = "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
    assert auth.endswith(f"Signature={expected}")
    assert "SignedHeaders=content-type;host;x-amz-date," in auth


@pytest.mark.parametrize(
    ("wire_path", "query", "qualifier"),
    [
        ("/2015-03-31/functions/my-function/invocations", "", None),
        (
            "/2015-03-31/functions/arn:aws:lambda:us-east-1:123456789012:function:f/invocations",
            "Qualifier=%24LATEST",
            "$LATEST",
        ),
        ("/2015-03-31/functions/f%24x/invocations", "Qualifier=a%20b%2Bc", "a b+c"),
    ],
)
def test_plugin_requests_verify_with_the_test_signer(
    wire_path: str, query: str, qualifier: str | None
) -> None:
    """What the gateway sends (path as on the wire, decoded query) verifies independently."""
    body = b'{"key": "value"}'
    headers = sign(
        method="POST",
        host="lambda.us-east-1.amazonaws.com",
        path=wire_path,
        query=[("Qualifier", qualifier)] if qualifier is not None else [],
        headers=[("X-Amz-Invocation-Type", "RequestResponse"), ("X-Amz-Log-Type", "Tail")],
        body=body,
        credentials=Credentials("AKIDTEST", "secret/key", "session-token"),
        region="us-east-1",
        service="lambda",
    )
    target = wire_path + (f"?{query}" if query else "")
    request = Received("POST", target, [*headers, ("User-Agent", "x")], body)
    keys: dict[str, tuple[str, str | None]] = {"AKIDTEST": ("secret/key", "session-token")}
    assert verify(request, keys, "us-east-1", "lambda") is None
    assert request.signed_by == "AKIDTEST"
    # ... and a changed byte anywhere does not.
    tampered = Received("POST", target, request.headers, body + b" ")
    assert verify(tampered, keys, "us-east-1", "lambda") == "signature mismatch"
    assert verify(request, {"AKIDTEST": ("other", "session-token")}, "us-east-1", "lambda")
    assert verify(request, keys, "eu-west-1", "lambda") is not None
