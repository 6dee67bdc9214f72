"""Kong's router expression language (``router_flavor = expressions``): parsing, atc-router's
type rules and messages, and its interpreter's semantics."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastkong.expressions import (
    ExpressionError,
    Facts,
    Logical,
    Predicate,
    Result,
    evaluate,
    fields_of,
    parse,
    route_expression,
)


def shape(node: Any) -> str:
    if isinstance(node, Predicate):
        return node.field
    assert isinstance(node, Logical)
    if node.op == "!":
        return f"!({shape(node.items[0])})"
    return "(" + f" {node.op} ".join(shape(item) for item in node.items) + ")"


def facts(**kw: Any) -> Facts:
    headers = kw.pop("headers", {})
    defaults: dict[str, Any] = {
        "method": "GET",
        "host": "api.example.com",
        "path": "/users/42/orders",
        "scheme": "http",
        "sni": None,
        "dst_port": 8000,
    }
    fixed = {k: kw.pop(k) for k in list(kw) if k in defaults}
    return Facts(**{**defaults, **fixed}, headers=lambda: headers, **kw)


def holds(source: str, **kw: Any) -> bool:
    return evaluate(parse(source), facts(**kw), Result())


# -- syntax --------------------------------------------------------------------------------------


def test_or_binds_tighter_than_and_as_in_atc_router() -> None:
    """atc-router's Pratt table lists ``&&`` first (lowest): ``a && b || c`` is
    ``a && (b || c)`` and ``a || b && c`` is ``(a || b) && c``."""
    assert shape(parse('http.host == "a" && http.path == "b" || http.method == "c"')) == (
        "(http.host && (http.path || http.method))"
    )
    assert shape(parse('http.host == "a" || http.path == "b" && http.method == "c"')) == (
        "((http.host || http.path) && http.method)"
    )
    assert shape(parse('!(http.host == "a") && (http.path == "b" && tls.sni == "c")')) == (
        "(!(http.host) && (http.path && tls.sni))"
    )
    # Chains are flat.
    assert shape(parse('http.host == "a" && http.path == "b" && tls.sni == "c"')) == (
        "(http.host && http.path && tls.sni)"
    )
    # So a request to another host with method c does not match `a && b || c`.
    assert not holds('http.host == "a" && http.path == "b" || http.method == "GET"')


@pytest.mark.parametrize(
    ("source", "value"),
    [
        (r'http.path == "a\"b\\c\n\t\r"', 'a"b\\c\n\t\r'),
        (r'http.path == r#"\d+ "quoted" "#', r'\d+ "quoted" '),
        ("net.dst.port == 0x1F90", 8080),
        ("net.dst.port == 017", 15),
        ("net.dst.port == -3", -3),
        ("net.src.ip == 10.0.0.1", ipaddress.ip_address("10.0.0.1")),
        ("net.src.ip == ::1", ipaddress.ip_address("::1")),
        ("net.src.ip in fd00::/8", ipaddress.ip_network("fd00::/8")),
        ("net.src.ip not in 192.168.0.0/16", ipaddress.ip_network("192.168.0.0/16")),
    ],
)
def test_literals(source: str, value: Any) -> None:
    node = parse(source)
    assert isinstance(node, Predicate) and node.value == value


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ('http.path == "a" &&', "expected a term at the end of the expression"),
        ('! http.path == "/"', "expected '(' after '!' at position 3"),
        ('(http.path == "/"', "expected ')' at the end of the expression"),
        ('http.path == "/" http.host == "a"', "expected '&&', '||' or the end at position 18"),
        ('http.path = "/"', "unexpected character at position 11"),
        ('upper(http.path) == "X"', "unknown transformation function: upper"),
        ('http.path ~ "("', 'invalid regex "("'),
        ("http.path ~ 1", "regex operator can only be used with String operands"),
        ('http.path == "\\q"', "invalid escape"),
        ("net.src.ip in 10.0.0.1/8", "invalid value '10.0.0.1/8'"),
    ],
)
def test_syntax_errors(source: str, message: str) -> None:
    with pytest.raises(ExpressionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse(source)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ('http.nope == "x"', "Unknown LHS field"),
        ('http.headers. == "x"', "Unknown LHS field"),
        ("http.path == 1", "Type mismatch between the LHS and RHS values of predicate"),
        ('net.src.ip == "10.0.0.1"', "Type mismatch between the LHS and RHS values of predicate"),
        ("lower(net.dst.port) == 1", "lower-case transformation function only supported with"),
        ('net.dst.port ~ "1"', "Regex operators only supports string operands"),
        ("http.path ^= 1", "Type mismatch"),
        ('http.path > "a"', "Greater/GreaterOrEqual/Less/LessOrEqual operators only supports"),
        ('http.path in "a"', "In/NotIn operators only supports IP in CIDR"),
        ("net.src.ip in 10.0.0.1", "In/NotIn operators only supports IP in CIDR"),
        ("http.path contains 1", "Type mismatch"),
        ('http.path.segments.2_1 == "x"', "illformed http.path.segments.* field"),
        ('http.path.segments.01 == "x"', "illformed http.path.segments.* field"),
        ('http.path.segments.a == "x"', "illformed http.path.segments.* field"),
    ],
)
def test_type_errors_carry_atc_routers_messages(source: str, message: str) -> None:
    with pytest.raises(ExpressionError, match=message.replace("*", r"\*")):
        parse(source)


def test_kongs_amendments() -> None:
    assert route_expression('http.path == "/"', ["http", "https"]) == (
        'http.path == "/" && (net.protocol == "http" || net.protocol == "https")'
    )
    # Only https: no protocol test, so that a plain request matches and is redirected (426).
    assert route_expression('http.path == "/"', ["https"]) == 'http.path == "/"'
    assert route_expression('http.path == "/"', ["grpcs"]) == (
        'http.path == "/" && (net.protocol == "https")'
    )
    assert route_expression("net.port == 80 && net.port>1", ["https"]) == (
        "net.dst.port == 80 && net.dst.port>1"
    )
    # As concatenated: with atc-router's precedence the appended test binds to the last term.
    node = parse(route_expression('http.path == "/a" || http.path == "/b"', ["http"]))
    assert shape(node) == "((http.path || http.path) && net.protocol)"


def test_long_chains_and_deep_nesting() -> None:
    """A generated expression of thousands of terms parses and runs (no recursion per term);
    nesting past MAX_DEPTH is refused with a message, not a RecursionError."""
    chain = " && ".join(['http.path ^= "/"'] * 5000)
    assert holds(chain)
    assert not holds(chain + ' && http.method == "POST"')
    assert holds(" || ".join(['http.method == "POST"'] * 5000 + ['http.method == "GET"']))
    nested = "(" * 64 + 'http.path ^= "/"' + ")" * 64
    assert holds(nested)
    with pytest.raises(ExpressionError, match="nested too deeply"):
        parse("(" * 65 + 'http.path ^= "/"' + ")" * 65)
    with pytest.raises(ExpressionError, match="nested too deeply"):
        parse("lower(" * 65 + "http.path" + ")" * 65 + ' == "/"')


@given(st.text(alphabet=list('()!&|=~^<>" #rabc.hpt_0123456789/:-\\'), max_size=60))
def test_any_text_parses_or_is_refused_with_an_expression_error(text: str) -> None:
    try:
        parse(text)
    except ExpressionError:
        pass


# -- evaluation ----------------------------------------------------------------------------------


def test_operators() -> None:
    assert holds('http.path ^= "/users" && http.path =^ "orders"')
    assert holds('http.path contains "42" && http.method != "POST"')
    assert holds('http.path ~ "^/users/\\\\d+"')
    assert holds("net.dst.port >= 8000 && net.dst.port < 8001 && net.dst.port > 7999")
    assert not holds("net.dst.port <= 7999")
    assert holds('lower(http.host) == "api.example.com"', host="API.Example.COM")
    assert not holds('http.host == "api.example.com"', host="API.Example.COM")


def test_absent_fields_make_every_predicate_false() -> None:
    assert not holds('http.headers.x_missing == "a"')
    assert not holds('http.headers.x_missing != "a"')  # absent is not "different"
    assert holds('!(http.headers.x_missing == "a")')
    assert not holds('tls.sni == "a"')
    assert not holds("net.src.ip in 0.0.0.0/0")  # no peer address given


def test_headers_are_read_by_kong_style_names_and_all_values_must_match() -> None:
    headers = {"x-env": ["prod", "staging"], "x-team": ["a"]}
    assert holds('http.headers.x_team == "a"', headers=headers)
    assert not holds('http.headers.x_env == "prod"', headers=headers)
    assert holds('any(http.headers.x_env) == "prod"', headers=headers)
    assert holds('http.headers.x_env != "dev"', headers=headers)
    assert not holds('http.headers.x_env != "prod"', headers=headers)
    assert holds('any(lower(http.headers.x_env)) == "prod"', headers={"x-env": ["PROD", "x"]})


def test_queries() -> None:
    query = b"tag=a&tag=b&flag&name=J%C3%B6rg+K"
    assert holds('http.queries.flag == ""', query=query)
    assert holds('http.queries.name == "Jörg K"', query=query)
    assert not holds('http.queries.tag == "a"', query=query)
    assert holds('any(http.queries.tag) == "b"', query=query)
    assert not holds('http.queries.none == ""', query=query)


def test_addresses() -> None:
    src = ("10.1.2.3", 40000)
    assert holds("net.src.ip in 10.0.0.0/8 && net.src.port == 40000", src=src)
    assert holds("net.src.ip not in 192.168.0.0/16", src=src)
    assert holds("net.src.ip not in ::/0", src=src)  # another family is never inside
    assert not holds("net.src.ip in ::/0", src=src)
    assert holds("net.dst.ip == 127.0.0.1", dst_ip="127.0.0.1")


def test_path_segments() -> None:
    assert holds('http.path.segments.0 == "users" && http.path.segments.1 == "42"')
    assert holds('http.path.segments.0_2 == "users/42/orders"')
    assert holds("http.path.segments.len == 3", path="/users/42/orders/")  # trailing '/' dropped
    assert not holds('http.path.segments.3 == ""')
    assert not holds('http.path.segments.1_3 == "x"')  # past the last segment


def test_what_a_match_records() -> None:
    result = Result()
    # (In a plain string literal a regex's backslash is written twice.)
    node = parse(r'http.path ~ r#"^/users/(?P<id>\d+)"# && http.host ~ "^(api)\\."')
    assert evaluate(node, facts(), result)
    assert result.path == "/users/42"
    assert result.captures == {0: "api.", 1: "api", "id": "42"}
    for source, path in [
        ('http.path ^= "/users/"', "/users/"),
        ('http.path == "/users/42/orders"', "/users/42/orders"),
        ('http.host == "api.example.com"', None),
    ]:
        result = Result()
        assert evaluate(parse(source), facts(), result)
        assert result.path == path


def test_fields_of() -> None:
    node = parse('http.path == "/" && (any(http.headers.x_a) == "1" || net.src.port == 1)')
    assert fields_of(node) == {"http.path", "http.headers.x_a", "net.src.port"}


# -- against a naive evaluator -------------------------------------------------------------------

ATOMS = [
    ('http.method == "GET"', lambda f: f["method"] == "GET"),
    ('http.path ^= "/a"', lambda f: f["path"].startswith("/a")),
    ('http.host =^ ".com"', lambda f: f["host"].endswith(".com")),
    ("net.dst.port > 8000", lambda f: f["port"] > 8000),
]


@st.composite
def trees(draw: st.DrawFn, depth: int = 0) -> tuple[str, Any]:
    if depth >= 3 or draw(st.booleans()):
        return draw(st.sampled_from(ATOMS))
    kind = draw(st.sampled_from(["&&", "||", "!"]))
    left = draw(trees(depth + 1))
    if kind == "!":
        return f"!({left[0]})", lambda f, a=left[1]: not a(f)
    right = draw(trees(depth + 1))
    if kind == "&&":
        return f"({left[0]} && {right[0]})", lambda f, a=left[1], b=right[1]: a(f) and b(f)
    return f"({left[0]} || {right[0]})", lambda f, a=left[1], b=right[1]: a(f) or b(f)


@given(
    trees(),
    st.fixed_dictionaries(
        {
            "method": st.sampled_from(["GET", "POST"]),
            "path": st.sampled_from(["/a", "/ab", "/b"]),
            "host": st.sampled_from(["x.com", "x.org"]),
            "port": st.sampled_from([80, 8000, 8443]),
        }
    ),
)
def test_fully_parenthesised_expressions_agree_with_python(
    tree: tuple[str, Any], request: dict[str, Any]
) -> None:
    source, reference = tree
    got = evaluate(
        parse(source),
        facts(
            method=request["method"],
            path=request["path"],
            host=request["host"],
            dst_port=request["port"],
        ),
        Result(),
    )
    assert got == reference(request)
