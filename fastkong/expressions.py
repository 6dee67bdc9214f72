"""Kong's router expressions (``router_flavor = expressions``): the ATC language, checked and run.

A route may carry ``expression: 'http.path ^= "/api" && http.method == "GET"'`` and a
``priority`` instead of ``paths``, ``hosts`` and the other matching fields. This module is
the language as Kong's ``atc-router`` defines it, written from its grammar and interpreter:

- **Grammar.** ``expression := term (("&&" | "||") term)*``; ``term := predicate |
  "!"? "(" expression ")"``; ``predicate := lhs op rhs``; ``lhs := field | func "(" lhs ")"``
  with the functions ``lower`` and ``any``. ``||`` binds *tighter* than ``&&`` (atc-router's
  Pratt table lists ``&&`` first, lowest): ``a && b || c`` is ``a && (b || c)``. ``!`` only
  negates a parenthesised expression. Chains are n-ary nodes, so a generated expression of
  thousands of terms is no deeper than its parentheses (at most :data:`MAX_DEPTH`).
- **Values.** Strings ``"..."`` (escapes ``\\" \\\\ \\n \\r \\t``) and raw strings
  ``r#"..."#``; integers (decimal, ``0x`` hexadecimal, ``0``-prefixed octal, a leading ``-``);
  IPv4/IPv6 addresses and CIDRs, unquoted.
- **Fields** (the schemas of ``kong/router/fields.lua``; a stream route has only the
  ``net.*`` fields and ``tls.sni``): strings ``net.protocol``,
  ``tls.sni``, ``http.method``, ``http.host``, ``http.path``, ``http.path.segments.N`` and
  ``.N_M``, ``http.headers.<name>`` (lower case, ``_`` for ``-``), ``http.queries.<name>``;
  integers ``net.src.port``, ``net.dst.port``, ``http.path.segments.len``; addresses
  ``net.src.ip``, ``net.dst.ip``.
- **Types.** Each operator takes the types atc-router's semantic check allows, with its
  messages: ``==``/``!=`` the field's own type, ``~`` a regex on a string, ``^=``/``=^``/
  ``contains`` strings, ``>``/``>=``/``<``/``<=`` integers, ``in``/``not in`` an address in a
  CIDR; ``lower()`` only on strings.
- **Evaluation.** A field the request lacks makes its predicate false (``!=`` included). A
  field with several values (a repeated header or query argument) needs *all* of them to
  satisfy the predicate, or any one under ``any()``. A predicate on ``http.path`` that holds
  records the matched part (the literal for ``==``, ``^=``, ``=^``; the regex's whole match for
  ``~``), which is what ``strip_path`` strips; every regex predicate that holds adds its groups
  to the captures (``uri_captures``).

Regexes are Python's ``re`` where atc-router has Rust's ``regex``: the same syntax for what
routes use, and look-around is accepted here (Rust refuses it), as for traditional regex paths.
Nothing here does I/O; :class:`Facts` is what a request offers, computed on demand.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

IpNet = ipaddress.IPv4Network | ipaddress.IPv6Network
IpAddr = ipaddress.IPv4Address | ipaddress.IPv6Address

STRING, INT, IP = "String", "Int", "IpAddr"
#: The stream schema's fields (tcp, tls, udp routes) and their types.
STREAM_FIELDS: Final = {
    "net.protocol": STRING,
    "tls.sni": STRING,
    "net.src.port": INT,
    "net.dst.port": INT,
    "net.src.ip": IP,
    "net.dst.ip": IP,
}
#: The HTTP schema's fixed fields and their types (prefixed fields are typed in _field_type).
FIELDS: Final = {
    "net.protocol": STRING,
    "tls.sni": STRING,
    "http.method": STRING,
    "http.host": STRING,
    "http.path": STRING,
    "net.src.port": INT,
    "net.dst.port": INT,
    "http.path.segments.len": INT,
    "net.src.ip": IP,
    "net.dst.ip": IP,
}
_SEGMENTS = "http.path.segments."
_SEGMENT_RANGE = re.compile(r"(0|[1-9]\d*)(_([1-9]\d*))?")
#: Fields whose values are not among the routing decision cache's key (proxy/routing.py).
REQUEST_FIELDS: Final = ("http.headers.", "http.queries.", "net.src.", "net.dst.ip")

_MSG_UNKNOWN_LHS = "Unknown LHS field"
_MSG_TYPE_MISMATCH = "Type mismatch between the LHS and RHS values of predicate"
_MSG_LOWER = "lower-case transformation function only supported with String type fields"
_MSG_REGEX = "Regex operators only supports string operands"
_MSG_PREFIX = "Prefix/Postfix operators only supports string operands"
_MSG_INT = "Greater/GreaterOrEqual/Less/LessOrEqual operators only supports integer operands"
_MSG_CIDR = "In/NotIn operators only supports IP in CIDR"
_MSG_CONTAINS = "Contains operator only supports string operands"


class ExpressionError(ValueError):
    """An expression that does not parse or does not type-check."""


# -- the syntax tree ----------------------------------------------------------------------------


class Predicate:
    """``lhs op rhs``: one test of one field."""

    __slots__ = ("field", "lower", "any", "op", "value")

    def __init__(self, field: str, lower: bool, any_: bool, op: str, value: Any) -> None:
        self.field = field
        self.lower = lower
        self.any = any_
        self.op = op
        self.value = value

    def __repr__(self) -> str:
        return f"<Predicate {self.field} {self.op} {self.value!r}>"


class Logical:
    """``a && b && ...``, ``a || b || ...`` (n-ary: a long chain is a list, not a deep tree)
    or ``!(a)`` (one item)."""

    __slots__ = ("op", "items")

    def __init__(self, op: str, items: Sequence[Node]) -> None:
        self.op = op
        self.items = tuple(items)

    def __repr__(self) -> str:
        return f"<Logical {self.op} x{len(self.items)}>"


Node = Predicate | Logical


# -- parsing ------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<rawstr>r\#"(?:(?!"\#).)*"\#)
  | (?P<str>"(?:[^"\\]|\\.)*")
  | (?P<cidr6>(?:[0-9A-Fa-f]{1,4}|:):[0-9A-Fa-f:]*/\d{1,3})
  | (?P<cidr4>\d{1,3}(?:\.\d{1,3}){3}/\d{1,2})
  | (?P<ip4>\d{1,3}(?:\.\d{1,3}){3})
  | (?P<ip6>(?:[0-9A-Fa-f]{1,4}|:):[0-9A-Fa-f:]*)
  | (?P<int>-?(?:0x[0-9A-Fa-f]+|\d+))
  | (?P<op>==|!=|\^=|=\^|>=|<=|&&|\|\||[~><!()])
  | (?P<ident>[A-Za-z][A-Za-z0-9_.]*)
    """,
    re.VERBOSE | re.DOTALL,
)
#: Parentheses (and transformation calls) one expression may nest: deeper is refused rather
#: than met with the interpreter's recursion limit.
MAX_DEPTH: Final = 64
_ESCAPES: Final = {'"': '"', "\\": "\\", "n": "\n", "r": "\r", "t": "\t"}
_BINARY: Final = frozenset({"==", "!=", "~", "^=", "=^", ">=", ">", "<=", "<"})


def _tokens(source: str) -> list[tuple[str, str, int]]:
    out: list[tuple[str, str, int]] = []
    pos = 0
    while pos < len(source):
        m = _TOKEN.match(source, pos)
        if m is None:
            raise ExpressionError(f"unexpected character at position {pos + 1}: {source[pos]!r}")
        kind = m.lastgroup or ""
        if kind != "ws":
            out.append((kind, m.group(), pos + 1))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, source: str) -> None:
        self.tokens = _tokens(source)
        self.at = 0
        self.depth = 0

    def peek(self) -> tuple[str, str, int] | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def take(self) -> tuple[str, str, int]:
        token = self.peek()
        if token is None:
            raise ExpressionError("unexpected end of expression")
        self.at += 1
        return token

    def fail(self, expected: str) -> ExpressionError:
        token = self.peek()
        if token is None:
            return ExpressionError(f"expected {expected} at the end of the expression")
        return ExpressionError(f"expected {expected} at position {token[2]}, found {token[1]!r}")

    def expression(self) -> Node:
        # atc-router's precedence: "&&" lowest, then "||" (both associative, so a chain of
        # either is one n-ary node): a && b || c is a && (b || c).
        items = [self.disjunction()]
        while (token := self.peek()) is not None and token[1] == "&&":
            self.take()
            items.append(self.disjunction())
        return items[0] if len(items) == 1 else Logical("&&", items)

    def disjunction(self) -> Node:
        items = [self.term()]
        while (token := self.peek()) is not None and token[1] == "||":
            self.take()
            items.append(self.term())
        return items[0] if len(items) == 1 else Logical("||", items)

    def term(self) -> Node:
        token = self.peek()
        if token is not None and token[1] == "!":
            self.take()
            if (nxt := self.peek()) is None or nxt[1] != "(":
                raise self.fail("'(' after '!'")
            return Logical("!", [self.parenthesised()])
        if token is not None and token[1] == "(":
            return self.parenthesised()
        if token is None or token[0] != "ident":
            raise self.fail("a term")
        return self.predicate()

    def parenthesised(self) -> Node:
        self.take()  # "("
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ExpressionError(f"expression nested too deeply (at most {MAX_DEPTH} levels)")
        inner = self.expression()
        self.depth -= 1
        token = self.peek()
        if token is None or token[1] != ")":
            raise self.fail("')'")
        self.take()
        return inner

    def predicate(self) -> Predicate:
        field, lower, any_ = self.lhs()
        op = self.operator()
        kind, text, where = self.take()
        value = _literal(kind, text, where)
        if op == "~":
            if not isinstance(value, str):
                raise ExpressionError("regex operator can only be used with String operands")
            try:
                value = re.compile(value)
            except (re.error, OverflowError, RecursionError) as exc:
                raise ExpressionError(f"invalid regex {text}: {exc}") from None
        return Predicate(field, lower, any_, op, value)

    def lhs(self) -> tuple[str, bool, bool]:
        kind, name, where = self.take()
        if kind != "ident":
            raise ExpressionError(f"expected a field at position {where}, found {name!r}")
        token = self.peek()
        if token is None or token[1] != "(":
            return name, False, False
        if name not in ("lower", "any"):
            raise ExpressionError(f"unknown transformation function: {name}")
        self.take()
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ExpressionError(f"expression nested too deeply (at most {MAX_DEPTH} levels)")
        field, lower, any_ = self.lhs()
        self.depth -= 1
        if (close := self.peek()) is None or close[1] != ")":
            raise self.fail("')'")
        self.take()
        return field, lower or name == "lower", any_ or name == "any"

    def operator(self) -> str:
        token = self.peek()
        if token is not None and token[1] in _BINARY:
            self.take()
            return token[1]
        if token is not None and token[0] == "ident" and token[1] in ("in", "contains"):
            self.take()
            return token[1]
        if token is not None and token[0] == "ident" and token[1] == "not":
            self.take()
            nxt = self.peek()
            if nxt is not None and nxt[1] == "in":
                self.take()
                return "not in"
        raise self.fail("an operator")


def _literal(kind: str, text: str, where: int) -> Any:
    if kind == "str":
        out, i = [], 1
        while i < len(text) - 1:
            ch = text[i]
            if ch == "\\":
                escaped = _ESCAPES.get(text[i + 1])
                if escaped is None:
                    raise ExpressionError(f"invalid escape at position {where + i}")
                out.append(escaped)
                i += 2
            else:
                out.append(ch)
                i += 1
        return "".join(out)
    if kind == "rawstr":
        return text[3:-2]
    try:
        if kind == "int":
            negative = text.startswith("-")
            digits = text.lstrip("-")
            if digits.startswith("0x"):
                number = int(digits[2:], 16)
            elif len(digits) > 1 and digits.startswith("0"):
                number = int(digits[1:], 8)
            else:
                number = int(digits)
            return -number if negative else number
        if kind in ("ip4", "ip6"):
            return ipaddress.ip_address(text)
        if kind in ("cidr4", "cidr6"):
            return ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        raise ExpressionError(f"invalid value {text!r} at position {where}: {exc}") from None
    raise ExpressionError(f"expected a value at position {where}, found {text!r}")


def parse(source: str, *, stream: bool = False) -> Node:
    """The syntax tree of ``source``, type-checked against the HTTP schema (or the stream
    one: tcp, tls and udp routes have only the ``net.*`` and ``tls.sni`` fields); raises
    :class:`ExpressionError`."""
    parser = _Parser(source)
    node = parser.expression()
    if parser.peek() is not None:
        raise parser.fail("'&&', '||' or the end")
    _check(node, stream)
    return node


def _field_type(field: str, stream: bool = False) -> str | None:
    if stream:
        return STREAM_FIELDS.get(field)
    if field in FIELDS:
        return FIELDS[field]
    if field.startswith(("http.headers.", "http.queries.")) and len(field) > 13:
        return STRING
    if field.startswith(_SEGMENTS):
        return STRING
    return None


def _value_type(value: Any) -> str:
    if isinstance(value, (str, re.Pattern)):
        return STRING
    if isinstance(value, int):
        return INT
    if isinstance(value, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
        return "IpCidr"
    return IP


def _check(node: Node, stream: bool = False) -> None:
    """atc-router's semantic check, with its messages, and Kong's rule for segment fields."""
    if isinstance(node, Logical):
        for item in node.items:
            _check(item, stream)
        return
    ftype = _field_type(node.field, stream)
    if ftype is None:
        raise ExpressionError(_MSG_UNKNOWN_LHS)
    if node.field.startswith(_SEGMENTS) and node.field != "http.path.segments.len":
        m = _SEGMENT_RANGE.fullmatch(node.field[len(_SEGMENTS) :])
        if m is None or (m.group(3) and int(m.group(1)) >= int(m.group(3))):
            raise ExpressionError("illformed http.path.segments.* field")
    vtype = _value_type(node.value)
    if node.op not in ("~", "in", "not in") and ftype != vtype:
        raise ExpressionError(_MSG_TYPE_MISMATCH)
    if node.lower and ftype != STRING:
        raise ExpressionError(_MSG_LOWER)
    if node.op == "~" and ftype != STRING:
        raise ExpressionError(_MSG_REGEX)
    if node.op in ("^=", "=^") and vtype != STRING:
        raise ExpressionError(_MSG_PREFIX)
    if node.op in (">", ">=", "<", "<=") and vtype != INT:
        raise ExpressionError(_MSG_INT)
    if node.op in ("in", "not in") and not (ftype == IP and vtype == "IpCidr"):
        raise ExpressionError(_MSG_CIDR)
    if node.op == "contains" and vtype != STRING:
        raise ExpressionError(_MSG_CONTAINS)


def fields_of(node: Node) -> set[str]:
    """The fields an expression reads."""
    if isinstance(node, Predicate):
        return {node.field}
    return set().union(*(fields_of(item) for item in node.items))


# -- Kong's amendments (kong/router/expressions.lua, transform.lua) ------------------------------

_NET_PORT = re.compile(r"(net\.port)(\s*)([=><!])")
#: Protocols the ``net.protocol`` test names otherwise (expressions.lua PROTOCOLS_OVERRIDE).
_PROTOCOL_AS = {"tls_passthrough": "tcp", "grpc": "http", "grpcs": "https"}


def route_expression(expression: str, protocols: Sequence[str]) -> str:
    """The expression Kong runs for a route: ``net.port`` read as ``net.dst.port``, and
    ``&& (net.protocol == "..." || ...)`` appended unless the route takes only ``https``
    (which lets a plain-HTTP request match, to be redirected or refused with 426)."""
    expression = _NET_PORT.sub(r"net.dst.port\2\3", expression)
    if len(protocols) == 1 and protocols[0] in ("https", "tls", "tls_passthrough"):
        return expression
    tests = " || ".join(f'net.protocol == "{_PROTOCOL_AS.get(p, p)}"' for p in protocols)
    return f"{expression} && ({tests})" if tests else expression


# -- evaluation ---------------------------------------------------------------------------------


class Facts:
    """What one request offers the expressions: fixed values, and the rest on demand."""

    __slots__ = (
        "method",
        "host",
        "path",
        "scheme",
        "sni",
        "dst_port",
        "_headers",
        "_query",
        "_queries",
        "_src",
        "_dst_ip",
        "_segments",
    )

    def __init__(
        self,
        method: str,
        host: str,
        path: str,
        scheme: str,
        sni: str | None,
        dst_port: int,
        *,
        headers: Callable[[], Mapping[str, Sequence[str]]] | None = None,
        query: bytes = b"",
        src: tuple[str, int] | None = None,
        dst_ip: str | None = None,
    ) -> None:
        self.method = method
        self.host = host
        self.path = path
        self.scheme = scheme
        self.sni = sni
        self.dst_port = dst_port
        self._headers: Any = headers
        self._query = query
        self._queries: dict[str, list[str]] | None = None
        self._src = src
        self._dst_ip = dst_ip
        self._segments: list[str] | None = None

    def values(self, field: str) -> list[Any] | None:
        """The field's values for this request, or None when it has none."""
        if field == "http.path":
            return [self.path]
        if field == "http.method":
            return [self.method]
        if field == "http.host":
            return [self.host]
        if field == "net.protocol":
            return [self.scheme]
        if field == "net.dst.port":
            return [self.dst_port]
        if field == "tls.sni":
            return [self.sni] if self.sni else None
        if field.startswith("http.headers."):
            if callable(self._headers):
                self._headers = self._headers()
            found = (self._headers or {}).get(field[13:].replace("_", "-"))
            return list(found) if found else None
        if field.startswith("http.queries."):
            if self._queries is None:
                self._queries = _parse_query(self._query)
            got = self._queries.get(field[13:])
            return list(got) if got is not None else None
        if field.startswith(_SEGMENTS):
            return self._segment(field[len(_SEGMENTS) :])
        if field in ("net.src.ip", "net.src.port"):
            if self._src is None:
                return None
            if field == "net.src.port":
                return [self._src[1]]
            return _address(self._src[0])
        if field == "net.dst.ip":
            return _address(self._dst_ip) if self._dst_ip else None
        return None

    def _segment(self, which: str) -> list[Any] | None:
        if self._segments is None:
            parts = self.path[1:].split("/")
            while parts and parts[-1] == "":
                parts.pop()
            self._segments = parts
        segments = self._segments
        if which == "len":
            return [len(segments)]
        first, _, last = which.partition("_")
        if not last:
            i = int(first)
            return [segments[i]] if i < len(segments) else None
        a, b = int(first), int(last)
        if a >= b or b >= len(segments):
            return None
        return ["/".join(segments[a : b + 1])]


def _address(text: str) -> list[Any] | None:
    try:
        return [ipaddress.ip_address(text)]
    except ValueError:
        return None


def _parse_query(query: bytes) -> dict[str, list[str]]:
    """ngx.req.get_uri_args: repeated arguments keep every value; ``?flag`` is ``""``."""
    from urllib.parse import unquote_plus  # noqa: PLC0415 (only routes that read queries)

    out: dict[str, list[str]] = {}
    for part in query.decode("latin-1").split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        out.setdefault(unquote_plus(name), []).append(unquote_plus(value))
    return out


class Result:
    """What a matching expression found: the ``http.path`` part and the regex captures."""

    __slots__ = ("path", "captures")

    def __init__(self) -> None:
        self.path: str | None = None
        self.captures: dict[int | str, str] = {}


def evaluate(node: Node, facts: Facts, result: Result) -> bool:
    """Whether ``node`` holds for ``facts``; fills ``result`` as atc-router's interpreter does."""
    if isinstance(node, Logical):
        if node.op == "&&":
            return all(evaluate(item, facts, result) for item in node.items)
        if node.op == "||":
            return any(evaluate(item, facts, result) for item in node.items)
        return not evaluate(node.items[0], facts, result)
    values = facts.values(node.field)
    if not values:
        return False
    op, rhs = node.op, node.value
    for value in values:
        if node.lower:
            value = value.lower()
        matched = False
        if op == "==":
            matched = value == rhs
            if matched and node.field == "http.path":
                result.path = rhs
        elif op == "!=":
            matched = value != rhs
        elif op == "~":
            m = rhs.search(value)
            if m is not None:
                matched = True
                if node.field == "http.path":
                    result.path = m.group(0)
                captures = result.captures
                captures[0] = m.group(0)
                for i, group in enumerate(m.groups(), 1):
                    if group is not None:
                        captures[i] = group
                for name, group in m.groupdict().items():
                    if group is not None:
                        captures[name] = group
        elif op == "^=":
            matched = value.startswith(rhs)
            if matched and node.field == "http.path":
                result.path = rhs
        elif op == "=^":
            matched = value.endswith(rhs)
            if matched and node.field == "http.path":
                result.path = rhs
        elif op == ">":
            matched = value > rhs
        elif op == ">=":
            matched = value >= rhs
        elif op == "<":
            matched = value < rhs
        elif op == "<=":
            matched = value <= rhs
        elif op == "in":
            matched = value.version == rhs.version and value in rhs
        elif op == "not in":
            matched = not (value.version == rhs.version and value in rhs)
        elif op == "contains":
            matched = rhs in value
        if node.any and matched:
            return True
        if not node.any and not matched:
            return False
    return not node.any


__all__ = [
    "ExpressionError",
    "Facts",
    "Result",
    "evaluate",
    "fields_of",
    "parse",
    "route_expression",
]
