"""A proto3 reader for grpc-web's JSON transcoding: ``.proto`` text -> message, enum and
method descriptors, with no protoc and no generated code.

What it reads: ``syntax``, ``package``, ``import`` (files next to the importing one, or under
its directory), ``option`` statements and field options (skipped, but ``[packed = false]`` and
``[json_name = "..."]`` are kept), messages (nested), enums, fields (scalars, messages, enums,
``repeated``, ``optional``, ``map<K, V>``, ``oneof``), ``reserved``/``extensions`` (skipped),
and services with their ``rpc`` methods (streaming or not), whose ``option (google.api.http) =
{...}`` (a message literal in protobuf's text format) is kept for grpc-gateway
(:attr:`Rpc.http`). Top-level ``extend`` blocks are skipped (extensions have no JSON form
here). What it refuses, with the file and line: anything else (proto2 ``group``s and
``required``), a type name that does not resolve, a file that cannot be read.

Imports resolve next to the importing file, then under the first file's directory, then in
fastkong's own include files (``protos/`` beside this module): ``google/api/annotations.proto``
and ``google/api/http.proto`` (grpc-gateway's annotations) and the well-known types
``google/protobuf/{empty,timestamp,duration,wrappers}.proto`` (their JSON forms are in
:mod:`._proto_json`). Any other ``google/protobuf/*`` import is refused by name.

Names resolve as protoc resolves them: a relative name is looked up from the innermost scope
outwards (``pkg.Outer.Inner``, ``pkg.Outer``, ``pkg``, the root), a leading dot is absolute.
The result, :class:`ProtoSet`, maps each method's gRPC path (``/pkg.Service/Method``) to its
input and output message (:func:`load`).
"""

from __future__ import annotations

import os
import re
from typing import Any, Final

#: fastkong's include files (google/api annotations, the supported well-known types).
INCLUDE: Final = os.path.join(os.path.dirname(os.path.abspath(__file__)), "protos")

#: Scalar types: name -> wire type (0 varint, 1 64-bit, 2 length-delimited, 5 32-bit).
SCALARS: Final = {
    "double": 1,
    "float": 5,
    "int32": 0,
    "int64": 0,
    "uint32": 0,
    "uint64": 0,
    "sint32": 0,
    "sint64": 0,
    "fixed32": 5,
    "fixed64": 1,
    "sfixed32": 5,
    "sfixed64": 1,
    "bool": 0,
    "string": 2,
    "bytes": 2,
}
_MAP_KEYS: Final = frozenset(SCALARS) - {"double", "float", "bytes"}
_TOKEN: Final = re.compile(
    r"""\s+|//[^\n]*|/\*.*?\*/|(?P<tok>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'"""
    r"""|[A-Za-z_.][A-Za-z0-9_.]*|[-+]?(?:0[xX][0-9A-Fa-f]+|\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+)"""
    r"""|[{}()\[\]<>;,=:])""",
    re.S,
)


class ProtoError(Exception):
    """A .proto file this reader cannot use (the message names the file and line)."""


class Field:
    """One message field. ``kind`` is a scalar name, ``"message"`` or ``"enum"``; ``map``
    holds the key and value fields of a map field (its entries)."""

    __slots__ = (
        "name",
        "json_name",
        "number",
        "kind",
        "type_name",
        "repeated",
        "packed",
        "presence",
        "oneof",
        "map",
        "message",
        "enum",
    )

    def __init__(self, name: str, number: int, type_name: str, repeated: bool) -> None:
        self.name = name
        self.json_name = _camel(name)
        self.number = number
        self.type_name = type_name
        self.kind = type_name if type_name in SCALARS else ""
        self.repeated = repeated
        self.packed = True
        #: Explicit presence: ``optional`` or in a ``oneof`` (a default value is still sent).
        self.presence = False
        self.oneof: str | None = None
        self.map: tuple[Field, Field] | None = None
        self.message: Message | None = None
        self.enum: Enum | None = None

    def __repr__(self) -> str:
        return f"<Field {self.name} = {self.number} {self.kind or self.type_name}>"


class Message:
    __slots__ = ("full_name", "fields", "by_number", "by_json")

    def __init__(self, full_name: str) -> None:
        self.full_name = full_name
        self.fields: list[Field] = []
        self.by_number: dict[int, Field] = {}
        #: Both the JSON name and the proto name of each field (a JSON reader takes either).
        self.by_json: dict[str, Field] = {}

    def __repr__(self) -> str:
        return f"<Message {self.full_name} fields={len(self.fields)}>"

    def add(self, field: Field) -> None:
        self.fields.append(field)
        self.by_number[field.number] = field
        self.by_json[field.json_name] = field
        self.by_json[field.name] = field


class Enum:
    __slots__ = ("full_name", "numbers", "names")

    def __init__(self, full_name: str) -> None:
        self.full_name = full_name
        self.numbers: dict[str, int] = {}
        self.names: dict[int, str] = {}

    def __repr__(self) -> str:
        return f"<Enum {self.full_name} values={len(self.numbers)}>"


class Rpc:
    """One rpc method: its gRPC path, types, and its ``google.api.http`` option (the message
    literal as a dict of field name -> list of values; nested literals are dicts too)."""

    __slots__ = ("path", "input", "output", "http", "where")

    def __init__(
        self, path: str, input: Message, output: Message, http: dict[str, Any] | None, where: str
    ) -> None:
        self.path = path
        self.input = input
        self.output = output
        self.http = http
        #: ``file:line`` of the rpc, for errors about its option.
        self.where = where

    def __repr__(self) -> str:
        return f"<Rpc {self.path} http={self.http is not None}>"


class ProtoSet:
    """The types of a .proto file and its imports, and its methods by gRPC path."""

    def __init__(self) -> None:
        self.messages: dict[str, Message] = {}
        self.enums: dict[str, Enum] = {}
        #: ``/pkg.Service/Method`` -> (input, output)
        self.methods: dict[str, tuple[Message, Message]] = {}
        #: Every rpc of the file (and of files it imports), in the order they were read.
        self.rpcs: list[Rpc] = []

    def __repr__(self) -> str:
        return f"<ProtoSet messages={len(self.messages)} methods={len(self.methods)}>"


def _camel(name: str) -> str:
    """protoc's JSON name: underscores dropped, the letter after each upper-cased."""
    out = []
    upper = False
    for ch in name:
        if ch == "_":
            upper = True
        elif upper:
            out.append(ch.upper())
            upper = False
        else:
            out.append(ch)
    return "".join(out)


class _Tokens:
    def __init__(self, text: str, path: str) -> None:
        self.path = path
        self.items: list[tuple[str, int]] = []
        pos = 0
        line = 1
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if m is None:
                raise ProtoError(f"{path}:{line}: unexpected {text[pos]!r}")
            tok = m.group("tok")
            if tok is not None:
                self.items.append((tok, line))
            line += text.count("\n", pos, m.end())
            pos = m.end()
        self.i = 0

    def error(self, message: str) -> ProtoError:
        line = self.items[min(self.i, len(self.items) - 1)][1] if self.items else 1
        return ProtoError(f"{self.path}:{line}: {message}")

    def peek(self) -> str:
        return self.items[self.i][0] if self.i < len(self.items) else ""

    def next(self) -> str:
        if self.i >= len(self.items):
            raise self.error("unexpected end of file")
        tok = self.items[self.i][0]
        self.i += 1
        return tok

    def expect(self, want: str) -> None:
        tok = self.next()
        if tok != want:
            self.i -= 1
            raise self.error(f"expected {want!r}, found {tok!r}")

    def accept(self, want: str) -> bool:
        if self.peek() == want:
            self.i += 1
            return True
        return False

    def name(self) -> str:
        tok = self.next()
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", tok):
            self.i -= 1
            raise self.error(f"expected a name, found {tok!r}")
        return tok

    def integer(self) -> int:
        tok = self.next()
        try:
            return int(tok, 0)
        except ValueError:
            self.i -= 1
            raise self.error(f"expected an integer, found {tok!r}") from None

    def string(self) -> str:
        tok = self.next()
        if tok[:1] not in ("'", '"'):
            self.i -= 1
            raise self.error(f"expected a string, found {tok!r}")
        return tok[1:-1]

    def skip_statement(self) -> None:
        """Up to and including the next ``;`` (an option's value may hold braces)."""
        depth = 0
        while True:
            tok = self.next()
            if tok == "{":
                depth += 1
            elif tok == "}":
                depth -= 1
            elif tok == ";" and depth <= 0:
                return

    def literal(self) -> dict[str, Any]:
        """A text-format message literal after its ``{`` (or ``<``): ``name: value``, ``name
        {...}``, ``name: [v, ...]``, separators ``,``/``;`` optional. Adjacent strings join."""
        out: dict[str, list[Any]] = {}
        while not (self.accept("}") or self.accept(">")):
            if self.accept(",") or self.accept(";"):
                continue
            key = self.name()
            colon = self.accept(":")
            values = out.setdefault(key, [])
            if self.accept("["):
                while not self.accept("]"):
                    if not self.accept(","):
                        values.append(self.value())
            elif self.accept("{") or self.accept("<"):
                values.append(self.literal())
            elif colon:
                values.append(self.value())
            else:
                raise self.error(f"expected ':' or '{{' after {key!r}")
        return out

    def value(self) -> Any:
        """A text-format value: a message literal, a string (adjacent ones joined), a name or
        a number (kept as its token)."""
        if self.accept("{") or self.accept("<"):
            return self.literal()
        tok = self.peek()
        if tok[:1] in ("'", '"'):
            text = self.string()
            while self.peek()[:1] in ("'", '"'):
                text += self.string()
            return text
        if tok in ("", "}", "]", ",", ";", ":", "{", "[", ">"):
            raise self.error(f"expected a value, found {tok!r}")
        return self.next()

    def skip_block(self) -> None:
        self.expect("{")
        depth = 1
        while depth:
            tok = self.next()
            depth += (tok == "{") - (tok == "}")


class _Pending:
    """A type reference to resolve once every file is read: where it was and from what scope."""

    __slots__ = ("field", "scope", "where", "method", "http")

    def __init__(self, field: Field | None, scope: str, where: str, method: tuple[str, ...] = ()):
        self.field = field
        self.scope = scope
        self.where = where
        self.method = method
        self.http: dict[str, Any] | None = None


class _Reader:
    def __init__(self) -> None:
        self.protos = ProtoSet()
        self.pending: list[_Pending] = []
        self.services: list[_Pending] = []
        self.seen: set[str] = set()

    def read_file(self, path: str, root: str) -> None:
        path = os.path.normpath(path)
        if path in self.seen:
            return
        self.seen.add(path)
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise ProtoError(f"cannot read {path}: {reason}") from None
        toks = _Tokens(text, path)
        package = ""
        while toks.peek():
            word = toks.next()
            if word == "syntax" or word == "edition":
                toks.expect("=")
                syntax = toks.string()
                toks.expect(";")
                if syntax != "proto3":
                    raise toks.error(f"syntax {syntax!r}: only proto3 is read")
            elif word == "package":
                package = toks.next()
                toks.expect(";")
            elif word == "import":
                if toks.peek() in ("public", "weak"):
                    toks.next()
                name = toks.string()
                toks.expect(";")
                self.read_file(self.locate(toks, name, path, root), root)
            elif word == "option":
                toks.skip_statement()
            elif word == "message":
                self.message(toks, package)
            elif word == "enum":
                self.enum(toks, package)
            elif word == "service":
                self.service(toks, package)
            elif word == "extend":
                toks.next()
                toks.skip_block()
            elif word == ";":
                continue
            else:
                toks.i -= 1
                raise toks.error(f"unsupported {word!r}")

    def locate(self, toks: _Tokens, name: str, path: str, root: str) -> str:
        """An import's file: next to the importer, under the root, in fastkong's includes."""
        for base in (os.path.dirname(path), root):
            here = os.path.join(base, name)
            if os.path.exists(here):
                return here
        bundled = os.path.join(INCLUDE, name)
        if os.path.exists(bundled):
            return bundled
        if name.startswith("google/protobuf/"):
            raise toks.error(
                f"import {name!r}: this well-known type is not supported (supported: "
                "google/protobuf/empty.proto, timestamp.proto, duration.proto, wrappers.proto)"
            )
        return os.path.join(root, name)

    def message(self, toks: _Tokens, scope: str) -> None:
        name = toks.name()
        full = f"{scope}.{name}" if scope else name
        message = self.protos.messages[full] = Message(full)
        toks.expect("{")
        while not toks.accept("}"):
            self.member(toks, message, full, None)

    def member(self, toks: _Tokens, message: Message, full: str, oneof: str | None) -> None:
        word = toks.peek()
        if word == ";":
            toks.next()
        elif word == "message" and oneof is None:
            toks.next()
            self.message(toks, full)
        elif word == "enum" and oneof is None:
            toks.next()
            self.enum(toks, full)
        elif word in ("option", "reserved", "extensions"):
            toks.skip_statement()
        elif word == "oneof" and oneof is None:
            toks.next()
            group = toks.name()
            toks.expect("{")
            while not toks.accept("}"):
                self.member(toks, message, full, group)
        elif word == "map" and oneof is None and toks.items[toks.i + 1][0] == "<":
            toks.i += 2
            key = toks.next()
            toks.expect(",")
            value = toks.next()
            toks.expect(">")
            if key not in _MAP_KEYS:
                raise toks.error(f"map key type {key!r} is not allowed")
            field = self.field(toks, message, full, "message", repeated=True)
            entry = Message(f"{full}.{field.name}Entry")
            key_field = Field("key", 1, key, False)
            value_field = Field("value", 2, value, False)
            entry.add(key_field)
            entry.add(value_field)
            field.map = (key_field, value_field)
            field.message = entry
            field.kind = "message"
            if value not in SCALARS:
                self.pending.append(_Pending(value_field, full, toks.path))
        elif word in ("extend", "group", "required"):
            raise toks.error(f"unsupported {word!r}")
        else:
            repeated = toks.accept("repeated") if oneof is None else False
            optional = not repeated and oneof is None and toks.accept("optional")
            field = self.field(toks, message, full, toks.next(), repeated)
            field.presence = optional or oneof is not None
            field.oneof = oneof
            if field.kind == "":
                self.pending.append(_Pending(field, full, toks.path))

    def field(
        self, toks: _Tokens, message: Message, full: str, type_name: str, repeated: bool
    ) -> Field:
        name = toks.name()
        toks.expect("=")
        number = toks.integer()
        if not 1 <= number <= 536870911 or 19000 <= number <= 19999:
            raise toks.error(f"field number {number} is not allowed")
        if number in message.by_number:
            raise toks.error(f"field number {number} is used twice in {full}")
        field = Field(name, number, type_name, repeated)
        if toks.accept("["):
            while True:
                option = toks.next()
                toks.expect("=")
                value = toks.next()
                if option == "packed":
                    field.packed = value != "false"
                elif option == "json_name":
                    field.json_name = value[1:-1]
                if not toks.accept(","):
                    break
            toks.expect("]")
        toks.expect(";")
        message.add(field)
        return field

    def enum(self, toks: _Tokens, scope: str) -> None:
        name = toks.name()
        full = f"{scope}.{name}" if scope else name
        enum = self.protos.enums[full] = Enum(full)
        toks.expect("{")
        while not toks.accept("}"):
            word = toks.next()
            if word in ("option", "reserved"):
                toks.skip_statement()
                continue
            if word == ";":
                continue
            toks.expect("=")
            number = toks.integer()
            if toks.peek() == "[":
                while toks.next() != "]":
                    pass
            toks.expect(";")
            enum.numbers[word] = number
            enum.names.setdefault(number, word)

    def service(self, toks: _Tokens, package: str) -> None:
        name = toks.name()
        prefix = f"{package}.{name}" if package else name
        toks.expect("{")
        while not toks.accept("}"):
            word = toks.next()
            if word == "option":
                toks.skip_statement()
                continue
            if word == ";":
                continue
            if word != "rpc":
                toks.i -= 1
                raise toks.error(f"unsupported {word!r} in a service")
            line = toks.items[toks.i][1] if toks.i < len(toks.items) else 0
            method = toks.name()
            types = []
            for keyword in ("", "returns"):
                if keyword:
                    toks.expect(keyword)
                toks.expect("(")
                toks.accept("stream")
                types.append(toks.next())
                toks.expect(")")
            http = self.rpc_options(toks) if toks.accept("{") else None
            if http is None:
                toks.accept(";")
            path = f"/{prefix}/{method}"
            pending = _Pending(None, package, f"{toks.path}:{line}", (path, *types))
            pending.http = http
            self.services.append(pending)

    def rpc_options(self, toks: _Tokens) -> dict[str, Any] | None:
        """An rpc's ``{ option ...; }`` block after its ``{``: the ``(google.api.http)`` value,
        whole (``= {...}``) or field by field (``(google.api.http).get = "/x"``); the other
        options skipped."""
        http: dict[str, Any] | None = None
        while not toks.accept("}"):
            if toks.accept(";"):
                continue
            if toks.peek() != "option":
                raise toks.error(f"unsupported {toks.peek()!r} in an rpc")
            toks.next()
            if toks.peek() == "(" and toks.items[toks.i + 1][0].lstrip(".") == "google.api.http":
                toks.i += 2
                toks.expect(")")
                member = toks.next()[1:] if toks.peek().startswith(".") else None
                toks.expect("=")
                if member is None:
                    toks.expect("{")
                    http = toks.literal()
                else:
                    http = http or {}
                    http.setdefault(member, []).append(toks.value())
                toks.expect(";")
            else:
                toks.skip_statement()
        return http

    def resolve(self, name: str, scope: str, where: str) -> Message | Enum:
        if name.startswith("."):
            candidates = [name[1:]]
        else:
            candidates = []
            parts = scope.split(".") if scope else []
            while True:
                candidates.append(".".join((*parts, name)))
                if not parts:
                    break
                parts.pop()
        for candidate in candidates:
            found = self.protos.messages.get(candidate) or self.protos.enums.get(candidate)
            if found is not None:
                return found
        raise ProtoError(f"{where}: unknown type {name!r}")

    def link(self) -> None:
        for ref in self.pending:
            field = ref.field
            assert field is not None
            found = self.resolve(field.type_name, ref.scope, ref.where)
            if isinstance(found, Message):
                field.kind, field.message = "message", found
            else:
                field.kind, field.enum = "enum", found
        for ref in self.services:
            path, input_name, output_name = ref.method
            types = []
            for type_name in (input_name, output_name):
                found = self.resolve(type_name, ref.scope, ref.where)
                if not isinstance(found, Message):
                    raise ProtoError(f"{ref.where}: {type_name!r} of {path} is not a message")
                types.append(found)
            self.protos.methods[path] = (types[0], types[1])
            self.protos.rpcs.append(Rpc(path, types[0], types[1], ref.http, ref.where))


def load(path: str) -> ProtoSet:
    """The types and methods of the .proto file at ``path`` and its imports."""
    reader = _Reader()
    reader.read_file(path, os.path.dirname(os.path.abspath(path)))
    reader.link()
    return reader.protos


__all__ = [
    "Enum",
    "Field",
    "INCLUDE",
    "Message",
    "ProtoError",
    "ProtoSet",
    "Rpc",
    "SCALARS",
    "load",
]
