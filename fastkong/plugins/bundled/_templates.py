"""request-transformer's value templates: ``$(expression)`` inside a config value.

Kong renders these values with Penlight templates whose ``$(...)`` parts are Lua expressions run
in a sandbox, with four lazily loaded tables in scope: ``headers``, ``query_params``,
``uri_captures`` and ``shared``. fastkong does not embed Lua. It compiles each template once,
when the config is loaded, into Python closures that evaluate a small subset of Lua expressions
with Lua's semantics. That subset covers the forms the Kong docs and tests use:

- literals: ``nil``, ``true``, ``false``, numbers, ``'...'``, ``"..."`` and ``[[...]]`` strings;
- names: the four tables plus ``type``, ``tostring`` and ``tonumber``; any other global is nil,
  so calling it fails at run time, as it does in Kong's sandbox;
- indexing (``headers.x_foo``, ``headers["x-foo"]``, ``uri_captures[1]``) and calls;
- the operators ``or and not == ~= < <= > >= .. + - * / % ^ #`` with Lua's precedence.

Rules carried over from Kong:

- ``$(`` is followed by a balanced parenthesis group (Lua's ``%b()``; quotes are not special);
  an unbalanced ``$(`` stays literal text;
- an expression that is nil or false renders as the empty string (Penlight's ``x or ''``);
- header lookups are case-insensitive and ``_`` matches ``-`` (``ngx.req.get_headers``);
- Lua tables are 1-based, and a repeated header or query argument is a table of its values.

One deliberate difference: a table renders as its values joined by ``", "``, where Lua would
render an address such as ``table: 0x7f...``.

Errors at compile time (syntax) and at render time (calling nil, arithmetic on a non-number...)
are raised as :class:`TemplateError`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final
from urllib.parse import unquote_plus

__all__ = [
    "Env",
    "HeaderTable",
    "Template",
    "TemplateError",
    "decode_args",
    "header_table",
    "lua_tostring",
]


class TemplateError(Exception):
    """A template that does not compile, or an expression that fails when evaluated.

    ``template`` is the text of the template that failed, once :meth:`Template.render` knows it.
    """

    template: str | None = None


class _Unplaced(TemplateError):
    """An error Lua raises without a position (``error(msg, -1)``: the sandbox's ``require``)."""


def _require(name: Any = None) -> Any:
    raise _Unplaced(f"require '{lua_tostring(name)}' not allowed within sandbox")


class HeaderTable(dict[str, Any]):
    """``ngx.req.get_headers()``: lower-case names; lookups fold case and ``_`` to ``-``."""

    def lookup(self, key: str) -> Any:
        found = self.get(key)
        if found is None:
            found = self.get(key.lower().replace("_", "-"))
        return found


def header_table(pairs: Iterable[tuple[str, list[str]]]) -> HeaderTable:
    """``kong.request.get_headers()``: one value as a string, repeated ones as a list."""
    table = HeaderTable()
    for name, values in pairs:
        if values:
            table[name] = values[0] if len(values) == 1 else list(values)
    return table


def decode_args(text: str) -> dict[str, Any]:
    """``ngx.decode_args`` (``kong.request.get_query``): ``a=1&a=2&flag&e=`` ->
    ``{"a": ["1", "2"], "flag": True, "e": ""}``; ``+`` is a space, empty names are skipped.

    Bytes that are not UTF-8 are kept as lone surrogates, so re-encoding gives them back."""
    args: dict[str, Any] = {}
    for piece in text.split("&"):
        if not piece:
            continue
        name, eq, value = piece.partition("=")
        key = unquote_plus(name, errors="surrogateescape")
        if not key:
            continue
        item: str | bool = unquote_plus(value, errors="surrogateescape") if eq else True
        found = args.get(key)
        if found is None:
            args[key] = item
        elif isinstance(found, list):
            found.append(item)
        else:
            args[key] = [found, item]
    return args


class _LuaFunction:
    __slots__ = ("name", "fn")

    def __init__(self, name: str, fn: Callable[..., Any]) -> None:
        self.name = name
        self.fn = fn

    def __repr__(self) -> str:
        return f"<lua function {self.name}>"


Value = Any  # None, bool, int, float, str, dict, list, HeaderTable, _LuaFunction
Code = Callable[["Env"], Value]


class Env:
    """The names a template sees; each table is loaded on first use, then kept (as Kong does)."""

    __slots__ = ("_loaders", "_values")

    def __init__(self, loaders: Mapping[str, Callable[[], Any]]) -> None:
        self._loaders = loaders
        self._values: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"<Env loaded={sorted(self._values)}>"

    def lookup(self, name: str) -> Value:
        try:
            return self._values[name]
        except KeyError:
            pass
        loader = self._loaders.get(name)
        if loader is None:
            return _BUILTINS.get(name)
        value = self._values[name] = loader()
        return value


# -- Lua semantics -------------------------------------------------------------------------------


def lua_type(value: Value) -> str:
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, _LuaFunction):
        return "function"
    return "table"


def _number_text(value: float) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "nan" if math.copysign(1.0, value) > 0 else "-nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
    return f"{value:.14g}"


def lua_tostring(value: Value) -> str:
    """Lua's ``tostring`` (tables: their values joined by ``", "``, see the module docstring)."""
    if value is None:
        return "nil"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return _number_text(value)
    if isinstance(value, list):
        return ", ".join(lua_tostring(v) for v in value)
    if isinstance(value, _LuaFunction):
        return f"function: builtin: {value.name}"
    return "table"


_NUMBER_TEXT = re.compile(
    r"\s*(?:0[xX][0-9a-fA-F]+|[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*", re.ASCII
)
_INTEGER_TEXT = re.compile(r"[-+]?\d+", re.ASCII)


def lua_tonumber(value: Value) -> int | float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str) and _NUMBER_TEXT.fullmatch(value):
        text = value.strip()
        if text[:2].lower() == "0x":
            return int(text, 16)
        if _INTEGER_TEXT.fullmatch(text):
            return int(text)
        return float(text)
    return None


def _truthy(value: Value) -> bool:
    return value is not None and value is not False


def _arith_operand(value: Value) -> int | float:
    number = lua_tonumber(value) if isinstance(value, str) else value
    if isinstance(number, bool) or not isinstance(number, (int, float)):
        raise TemplateError(f"attempt to perform arithmetic on a {lua_type(value)} value")
    return number


def _concat_operand(value: Value) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _number_text(value)
    raise TemplateError(f"attempt to concatenate a {lua_type(value)} value")


def _index(container: Value, key: Value, what: str) -> Value:
    if isinstance(key, float) and key.is_integer():
        key = int(key)
    if isinstance(container, HeaderTable):
        return container.lookup(key) if isinstance(key, str) else None
    if isinstance(container, dict):
        return container.get(key)
    if isinstance(container, list):
        if isinstance(key, int) and not isinstance(key, bool) and 1 <= key <= len(container):
            return container[key - 1]
        return None
    raise TemplateError(f"attempt to index {what} (a {lua_type(container)} value)")


def _length(value: Value) -> int:
    if isinstance(value, str):
        return len(value.encode("utf-8", "surrogateescape"))
    if isinstance(value, list):
        return len(value)
    if isinstance(value, dict):
        n = 0
        while (n + 1) in value:
            n += 1
        return n
    raise TemplateError(f"attempt to get length of a {lua_type(value)} value")


def _equal(a: Value, b: Value) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, (str, type(None))) or isinstance(b, (str, type(None))):
        return type(a) is type(b) and a == b
    return a is b


def _less(a: Value, b: Value, or_equal: bool) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return a <= b if or_equal else a < b
    if _is_number(a) and _is_number(b):
        return bool(a <= b) if or_equal else bool(a < b)
    raise TemplateError(f"attempt to compare {lua_type(a)} with {lua_type(b)}")


def _is_number(value: Value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _divide(a: Value, b: Value) -> float:
    x, y = _arith_operand(a), _arith_operand(b)
    if y == 0:
        if x == 0:
            return math.nan
        return math.copysign(math.inf, x) * math.copysign(1.0, y)
    return x / y


def _modulo(a: Value, b: Value) -> int | float:
    x, y = _arith_operand(a), _arith_operand(b)
    if y == 0:
        return math.nan
    return x - math.floor(x / y) * y


def _builtin_type(*args: Value) -> str:
    if not args:
        raise TemplateError("bad argument #1 to 'type' (value expected)")
    return lua_type(args[0])


def _builtin_tostring(*args: Value) -> str:
    if not args:
        raise TemplateError("bad argument #1 to 'tostring' (value expected)")
    return lua_tostring(args[0])


def _builtin_tonumber(*args: Value) -> Value:
    if not args:
        raise TemplateError("bad argument #1 to 'tonumber' (value expected)")
    if len(args) > 1 and args[1] is not None:
        base = _arith_operand(args[1])
        try:
            return int(str(args[0]).strip(), int(base))
        except ValueError:
            return None
    return lua_tonumber(args[0])


_BUILTINS: Final[dict[str, _LuaFunction]] = {
    "type": _LuaFunction("type", _builtin_type),
    "tostring": _LuaFunction("tostring", _builtin_tostring),
    "tonumber": _LuaFunction("tonumber", _builtin_tonumber),
    # Kong's sandbox require refuses every module (kong/tools/sandbox denied_require)
    "require": _LuaFunction("require", _require),
}

# -- tokenizer ----------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<number>0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<long>\[(?P<level>=*)\[(?P<body>.*?)\](?P=level)\])
  | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<op>\.\.\.|\.\.|==|~=|<=|>=|[-+*/%^#<>()\[\].,:;{}=])
    """,
    re.VERBOSE | re.DOTALL,
)
_KEYWORDS: Final = frozenset(
    "and break do else elseif end false for function goto if in local nil not or repeat return"
    " then true until while".split()
)
_ESCAPES: Final = {
    "n": "\n",
    "t": "\t",
    "r": "\r",
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "v": "\v",
    "\\": "\\",
    '"': '"',
    "'": "'",
    "\n": "\n",
}
_STRING_ESCAPE = re.compile(r"\\(\d{1,3}|x[0-9a-fA-F]{2}|.)", re.DOTALL)


def _unescape(body: str) -> str:
    def one(m: re.Match[str]) -> str:
        e = m.group(1)
        if e[0].isdigit():
            code = int(e)
            if code > 255:
                raise TemplateError("decimal escape too large")
            return chr(code)
        if e[0] == "x":
            return chr(int(e[1:], 16))
        if e in _ESCAPES:
            return _ESCAPES[e]
        raise TemplateError(f"invalid escape sequence '\\{e}'")

    return _STRING_ESCAPE.sub(one, body)


Token = tuple[str, Any]  # (kind, value): kinds "number", "string", "name", "op", "kw", "end"


def _tokenize(source: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(source):
        m = _TOKEN.match(source, pos)
        if m is None:
            raise TemplateError(f"unexpected symbol near '{source[pos]}'")
        pos = m.end()
        kind = m.lastgroup
        if kind == "space":
            continue
        if kind == "number":
            number = lua_tonumber(m.group())
            if number is None:
                raise TemplateError(f"malformed number near '{m.group()}'")
            tokens.append(("number", number))
        elif kind == "name":
            word = m.group()
            tokens.append(("kw" if word in _KEYWORDS else "name", word))
        elif kind in ("long", "level", "body"):
            body = m.group("body")
            tokens.append(("string", body[1:] if body.startswith("\n") else body))
        elif kind == "string":
            tokens.append(("string", _unescape(m.group()[1:-1])))
        else:
            tokens.append(("op", m.group()))
    tokens.append(("end", None))
    return tokens


# -- parser: Lua expressions compiled to closures ------------------------------------------------

#: Binary operators: (left binding power, right binding power); right-associative ones bind
#: tighter on the right (Lua 5.1's table in lparser.c).
_BINARY: Final = {
    "or": (1, 1),
    "and": (2, 2),
    "<": (3, 3),
    ">": (3, 3),
    "<=": (3, 3),
    ">=": (3, 3),
    "~=": (3, 3),
    "==": (3, 3),
    "..": (5, 4),
    "+": (6, 6),
    "-": (6, 6),
    "*": (7, 7),
    "/": (7, 7),
    "%": (7, 7),
    "^": (10, 9),
}
_UNARY_POWER: Final = 8


def _constant(value: Value) -> Code:
    return lambda env: value


def _binary(op: str, left: Code, right: Code) -> Code:
    if op == "or":
        return lambda env: a if _truthy(a := left(env)) else right(env)
    if op == "and":
        return lambda env: right(env) if _truthy(a := left(env)) else a
    if op == "==":
        return lambda env: _equal(left(env), right(env))
    if op == "~=":
        return lambda env: not _equal(left(env), right(env))
    if op == "<":
        return lambda env: _less(left(env), right(env), False)
    if op == "<=":
        return lambda env: _less(left(env), right(env), True)
    if op == ">":
        return lambda env: _less(right(env), left(env), False)
    if op == ">=":
        return lambda env: _less(right(env), left(env), True)
    if op == "..":
        return lambda env: _concat_operand(left(env)) + _concat_operand(right(env))
    if op == "+":
        return lambda env: _arith_operand(left(env)) + _arith_operand(right(env))
    if op == "-":
        return lambda env: _arith_operand(left(env)) - _arith_operand(right(env))
    if op == "*":
        return lambda env: _arith_operand(left(env)) * _arith_operand(right(env))
    if op == "/":
        return lambda env: _divide(left(env), right(env))
    if op == "%":
        return lambda env: _modulo(left(env), right(env))
    assert op == "^"
    return lambda env: float(_arith_operand(left(env)) ** _arith_operand(right(env)))


def _unary(op: str, operand: Code) -> Code:
    if op == "not":
        return lambda env: not _truthy(operand(env))
    if op == "-":
        return lambda env: -_arith_operand(operand(env))
    return lambda env: _length(operand(env))


def _call(fn: Code, args: list[Code], what: str) -> Code:
    def call(env: Env) -> Value:
        target = fn(env)
        if not isinstance(target, _LuaFunction):
            raise TemplateError(f"attempt to call {what} (a {lua_type(target)} value)")
        return target.fn(*(a(env) for a in args))

    return call


class _Parser:
    def __init__(self, source: str) -> None:
        self.tokens = _tokenize(source)
        self.i = 0

    def peek(self) -> Token:
        return self.tokens[self.i]

    def take(self) -> Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def expect(self, op: str) -> None:
        kind, value = self.take()
        if kind != "op" or value != op:
            raise TemplateError(f"'{op}' expected near '{_show(kind, value)}'")

    def parse(self) -> Code:
        code = self.expression(0)
        kind, value = self.peek()
        if kind != "end":
            raise TemplateError(f"')' expected near '{_show(kind, value)}'")
        return code

    def expression(self, limit: int) -> Code:
        kind, value = self.peek()
        if (kind == "kw" and value == "not") or (kind == "op" and value in ("-", "#")):
            self.take()
            left = _unary(value, self.expression(_UNARY_POWER))
        else:
            left = self.suffixed()
        while True:
            kind, value = self.peek()
            if kind not in ("op", "kw") or value not in _BINARY:
                return left
            lbp, rbp = _BINARY[value]
            if lbp <= limit:
                return left
            self.take()
            right = self.expression(rbp)
            left = _binary(value, left, right)

    def primary(self) -> tuple[Code, str]:
        kind, value = self.take()
        if kind == "number" or kind == "string":
            return _constant(value), "a constant"
        if kind == "kw" and value in ("nil", "true", "false"):
            return _constant({"nil": None, "true": True, "false": False}[value]), value
        if kind == "name":
            name = value
            return (lambda env: env.lookup(name)), f"global '{name}'"
        if kind == "op" and value == "(":
            inner = self.expression(0)
            self.expect(")")
            return inner, "a value"
        raise TemplateError(f"unexpected symbol near '{_show(kind, value)}'")

    def suffixed(self) -> Code:
        code, what = self.primary()
        while True:
            kind, value = self.peek()
            if kind != "op":
                return code
            if value == ".":
                self.take()
                kind, field = self.take()
                if kind not in ("name", "kw"):
                    raise TemplateError(f"<name> expected near '{_show(kind, field)}'")
                code, what = self._indexer(code, _constant(field), what), f"field '{field}'"
            elif value == "[":
                self.take()
                key = self.expression(0)
                self.expect("]")
                code, what = self._indexer(code, key, what), "field '?'"
            elif value == "(":
                self.take()
                args: list[Code] = []
                if self.peek() != ("op", ")"):
                    args.append(self.expression(0))
                    while self.peek() == ("op", ","):
                        self.take()
                        args.append(self.expression(0))
                self.expect(")")
                code, what = _call(code, args, what), "a value"
            elif value in (":", "{"):
                raise TemplateError(f"unsupported syntax near '{value}'")
            else:
                return code

    @staticmethod
    def _indexer(container: Code, key: Code, what: str) -> Code:
        return lambda env: _index(container(env), key(env), what)


def _show(kind: str, value: Any) -> str:
    return "<eof>" if kind == "end" else str(value)


def compile_expression(source: str) -> Code:
    """Compile one Lua expression (the inside of ``$(...)``)."""
    return _Parser(source).parse()


# -- templates ----------------------------------------------------------------------------------


def _split(text: str) -> list[str | tuple[str]]:
    """Literal text and ``(expression,)`` parts, found the way Lua's ``%$(%b())`` finds them."""
    parts: list[str | tuple[str]] = []
    pos = 0
    start = text.find("$(", pos)
    while start != -1:
        depth = 0
        end = -1
        for j in range(start + 1, len(text)):
            c = text[j]
            if c == "(":
                depth += 1
            elif c == ")":
                depth -= 1
                if depth == 0:
                    end = j
                    break
        if end == -1:
            break  # unbalanced: the rest is literal text
        if start > pos:
            parts.append(text[pos:start])
        parts.append((text[start + 2 : end],))
        pos = end + 1
        start = text.find("$(", pos)
    if pos < len(text):
        parts.append(text[pos:])
    return parts


class Template:
    """A config value compiled once; :meth:`render` evaluates its expressions in an :class:`Env`.

    Raises :class:`TemplateError` when ``text`` has an expression that does not compile.
    """

    __slots__ = ("text", "static", "_parts")

    def __init__(self, text: str) -> None:
        self.text = text
        parts: list[str | Code] = []
        for part in _split(text):
            if isinstance(part, tuple):
                try:
                    parts.append(compile_expression(part[0]))
                except TemplateError as exc:
                    raise TemplateError(f'[string "TMP"]:1: {exc}') from None
            else:
                parts.append(part)
        self._parts = parts
        #: The value itself when it has no expression (rendering is then free).
        self.static: str | None = text if all(isinstance(p, str) for p in parts) else None

    def __repr__(self) -> str:
        return f"<Template {self.text!r}{' static' if self.static is not None else ''}>"

    def render(self, env: Env) -> str:
        if self.static is not None:
            return self.static
        out: list[str] = []
        for part in self._parts:
            if isinstance(part, str):
                out.append(part)
                continue
            try:
                value = part(env)
            except _Unplaced as exc:
                exc.template = self.text
                raise
            except TemplateError as exc:
                # Penlight runs the template as the chunk "TMP": Lua places its errors there
                placed = TemplateError(f'[string "TMP"]:1: {exc}')
                placed.template = self.text
                raise placed from None
            out.append(lua_tostring(value) if _truthy(value) else "")
        return "".join(out)
