"""A proto3 reader for grpc-web's JSON transcoding: ``.proto`` text -> message, enum and
method descriptors, with no protoc and no generated code.

What it reads: ``syntax``, ``package``, ``import`` (files next to the importing one, or under
its directory), ``option`` statements and field options (skipped, but ``[packed = false]`` and
``[json_name = "..."]`` are kept), messages (nested), enums, fields (scalars, messages, enums,
``repeated``, ``optional``, ``map<K, V>``, ``oneof``), ``reserved``/``extensions`` (skipped),
and services with their ``rpc`` methods (streaming or not). What it refuses, with the file
and line: anything else (proto2 ``group``s and ``required``, ``extend``), a type name that does
not resolve, a file that cannot be read. Imports of ``google/protobuf/*`` (the well-known
types) are not bundled, so they are refused as files that are not there.

Names resolve as protoc resolves them: a relative name is looked up from the innermost scope
outwards (``pkg.Outer.Inner``, ``pkg.Outer``, ``pkg``, the root), a leading dot is absolute.
The result, :class:`ProtoSet`, maps each method's gRPC path (``/pkg.Service/Method``) to its
input and output message (:func:`load`).
"""

from __future__ import annotations

import os
import re
from typing import Final

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


class ProtoSet:
    """The types of a .proto file and its imports, and its methods by gRPC path."""

    def __init__(self) -> None:
        self.messages: dict[str, Message] = {}
        self.enums: dict[str, Enum] = {}
        #: ``/pkg.Service/Method`` -> (input, output)
        self.methods: dict[str, tuple[Message, Message]] = {}

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

    def skip_block(self) -> None:
        self.expect("{")
        depth = 1
        while depth:
            tok = self.next()
            depth += (tok == "{") - (tok == "}")


class _Pending:
    """A type reference to resolve once every file is read: where it was and from what scope."""

    __slots__ = ("field", "scope", "where", "method")

    def __init__(self, field: Field | None, scope: str, where: str, method: tuple[str, ...] = ()):
        self.field = field
        self.scope = scope
        self.where = where
        self.method = method


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
                here = os.path.join(os.path.dirname(path), name)
                self.read_file(here if os.path.exists(here) else os.path.join(root, name), root)
            elif word == "option":
                toks.skip_statement()
            elif word == "message":
                self.message(toks, package)
            elif word == "enum":
                self.enum(toks, package)
            elif word == "service":
                self.service(toks, package)
            elif word == ";":
                continue
            else:
                toks.i -= 1
                raise toks.error(f"unsupported {word!r}")

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
            method = toks.name()
            types = []
            for keyword in ("", "returns"):
                if keyword:
                    toks.expect(keyword)
                toks.expect("(")
                toks.accept("stream")
                types.append(toks.next())
                toks.expect(")")
            if toks.peek() == "{":
                toks.skip_block()
            else:
                toks.expect(";")
            path = f"/{prefix}/{method}"
            self.services.append(_Pending(None, package, toks.path, (path, *types)))

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


def load(path: str) -> ProtoSet:
    """The types and methods of the .proto file at ``path`` and its imports."""
    reader = _Reader()
    reader.read_file(path, os.path.dirname(os.path.abspath(path)))
    reader.link()
    return reader.protos


__all__ = ["Enum", "Field", "Message", "ProtoError", "ProtoSet", "SCALARS", "load"]
