"""Protobuf binary <-> JSON for grpc-web's transcoding, by the descriptors of
:mod:`fastkong.plugins.bundled._proto`, following protobuf's canonical JSON mapping (proto3).

JSON -> binary (:func:`encode`): an object's keys are a field's JSON name (lowerCamelCase) or
its proto name; ``null`` is the default; 64-bit integers as numbers or strings; floats as
numbers or ``"NaN"``/``"Infinity"``/``"-Infinity"``; bytes as base64 (standard or URL-safe,
padded or not); enums as a value's name or its number; maps as objects (keys as strings).
Repeated scalars are packed (proto3's default) unless the field says ``[packed = false]``.
A singular field without presence (not ``optional``, not in a ``oneof``) holding its default
value is not written, as proto3 serializers do.

Binary -> JSON (:func:`decode`): the same mapping back, with JSON names, fields at their default
left out (those with presence are kept when set), 64-bit integers as strings, bytes as padded
base64, enums by name (a number the enum does not name stays a number), unknown fields
skipped, packed and unpacked repeated fields both read. Anything malformed raises
:class:`TranscodeError` naming the message and field. :data:`KONG_GATEWAY` is the other output
style, Kong's grpc-gateway's (lua-protobuf's tables through cjson): proto field names, every
field without presence printed even at its default (repeated ones as ``[]``), 64-bit integers
as numbers.

The well-known types fastkong includes (:data:`fastkong.plugins.bundled._proto.INCLUDE`) take
their canonical JSON forms both ways: ``Timestamp`` an RFC 3339 string (``Z`` or an offset on
input; a zone-less time read as UTC, as Kong's date library does; ``Z`` on output, with 0, 3, 6
or 9 fraction digits), ``Duration`` ``"1.5s"``, the wrappers their value, ``Empty`` ``{}``.
"""

from __future__ import annotations

import base64
import binascii
import calendar
import datetime
import math
import re
import struct
from typing import Any, Final

from fastkong.plugins.bundled._otlp import varint as _varint  # protobuf's base-128 varint
from fastkong.plugins.bundled._proto import SCALARS, Field, Message

_INT_RANGES: Final = {
    "int32": (-(2**31), 2**31 - 1),
    "sint32": (-(2**31), 2**31 - 1),
    "sfixed32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
    "fixed32": (0, 2**32 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "sint64": (-(2**63), 2**63 - 1),
    "sfixed64": (-(2**63), 2**63 - 1),
    "uint64": (0, 2**64 - 1),
    "fixed64": (0, 2**64 - 1),
    "enum": (-(2**31), 2**31 - 1),
}
_AS_STRING: Final = frozenset({"int64", "uint64", "sint64", "fixed64", "sfixed64"})
_FIXED: Final = {
    "fixed32": "<I",
    "sfixed32": "<i",
    "float": "<f",
    "fixed64": "<Q",
    "sfixed64": "<q",
    "double": "<d",
}
_SPECIAL_FLOATS: Final = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


class TranscodeError(ValueError):
    """A JSON value or a protobuf message that does not fit its type."""


class Style:
    """How :func:`decode` prints: field names, defaults, 64-bit integers."""

    __slots__ = ("proto_names", "defaults", "int64_strings")

    def __init__(self, proto_names: bool, defaults: bool, int64_strings: bool) -> None:
        self.proto_names = proto_names
        self.defaults = defaults
        self.int64_strings = int64_strings

    def __repr__(self) -> str:
        return (
            f"<Style proto_names={self.proto_names} defaults={self.defaults} "
            f"int64_strings={self.int64_strings}>"
        )


#: protobuf's canonical JSON mapping (grpc-web's output).
CANONICAL: Final = Style(proto_names=False, defaults=False, int64_strings=True)
#: Kong's grpc-gateway output (see the module docstring).
KONG_GATEWAY: Final = Style(proto_names=True, defaults=True, int64_strings=False)
_WRAPPERS: Final = frozenset(
    f"google.protobuf.{n}Value"
    for n in ("Double", "Float", "Int64", "UInt64", "Int32", "UInt32", "Bool", "String", "Bytes")
)
_TIMESTAMP: Final = "google.protobuf.Timestamp"
_DURATION: Final = "google.protobuf.Duration"
_RFC3339: Final = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[Tt](\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?([Zz]|[+-]\d\d:\d\d)?"
)
_DURATION_TEXT: Final = re.compile(r"(-)?(\d+)(?:\.(\d{1,9}))?s")
#: Timestamp's range: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z.
_MIN_SECONDS: Final = -62135596800
_MAX_SECONDS: Final = 253402300799
_EPOCH: Final = datetime.datetime(1970, 1, 1)


def _wire(field: Field) -> int:
    if field.kind in SCALARS:
        return SCALARS[field.kind]
    return 0 if field.kind == "enum" else 2


def _packable(field: Field) -> bool:
    return field.kind == "enum" or (field.kind in SCALARS and SCALARS[field.kind] != 2)


# -- JSON -> protobuf --------------------------------------------------------------------------


def _where(message: Message, field: Field) -> str:
    return f"{message.full_name}.{field.name}"


def _json_int(value: Any, kind: str, where: str) -> int:
    if isinstance(value, bool):
        raise TranscodeError(f"{where}: expected an integer, got a boolean")
    if isinstance(value, str):
        try:
            number: Any = int(value)
        except ValueError:
            try:
                number = float(value)
            except ValueError:
                raise TranscodeError(f"{where}: {value!r} is not an integer") from None
    else:
        number = value
    if isinstance(number, float):
        if not number.is_integer():
            raise TranscodeError(f"{where}: {value!r} is not an integer")
        number = int(number)
    if not isinstance(number, int):
        raise TranscodeError(f"{where}: expected an integer")
    low, high = _INT_RANGES[kind]
    if not low <= number <= high:
        raise TranscodeError(f"{where}: {number} is out of range for {kind}")
    return number


def _json_float(value: Any, where: str) -> float:
    if isinstance(value, str):
        if value in _SPECIAL_FLOATS:
            return _SPECIAL_FLOATS[value]
        try:
            return float(value)
        except ValueError:
            raise TranscodeError(f"{where}: {value!r} is not a number") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TranscodeError(f"{where}: expected a number")
    return float(value)


def _json_bytes(value: Any, where: str) -> bytes:
    if not isinstance(value, str):
        raise TranscodeError(f"{where}: expected base64 text")
    text = value.replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise TranscodeError(f"{where}: invalid base64") from None


def _scalar_bytes(field: Field, value: Any, where: str) -> tuple[bytes, bool]:
    """The encoded value of a scalar or enum, and whether it is the type's default."""
    kind = field.kind
    if kind == "enum":
        assert field.enum is not None
        if isinstance(value, str):
            if value not in field.enum.numbers:
                raise TranscodeError(f"{where}: {value!r} is not a value of {field.enum.full_name}")
            number = field.enum.numbers[value]
        else:
            number = _json_int(value, "enum", where)
        return _varint(number), number == 0
    if kind == "string":
        if not isinstance(value, str):
            raise TranscodeError(f"{where}: expected a string")
        data = value.encode("utf-8")
        return _varint(len(data)) + data, not data
    if kind == "bytes":
        data = _json_bytes(value, where)
        return _varint(len(data)) + data, not data
    if kind == "bool":
        if not isinstance(value, bool):
            raise TranscodeError(f"{where}: expected true or false")
        return (b"\x01" if value else b"\x00"), not value
    if kind in ("float", "double"):
        number_f = _json_float(value, where)
        if kind == "float" and math.isfinite(number_f) and abs(number_f) > 3.4028234663852886e38:
            raise TranscodeError(f"{where}: {value!r} is out of range for float")
        return struct.pack(_FIXED[kind], number_f), number_f == 0 and math.copysign(1, number_f) > 0
    number = _json_int(value, kind, where)
    if kind in _FIXED:
        return struct.pack(_FIXED[kind], number), number == 0
    if kind in ("sint32", "sint64"):
        return _varint((number << 1) ^ (number >> 63)), number == 0
    return _varint(number), number == 0


def _tag(field: Field, wire: int) -> bytes:
    return _varint((field.number << 3) | wire)


def _value_bytes(field: Field, value: Any, where: str) -> tuple[bytes, bool]:
    if field.kind == "message":
        assert field.message is not None
        data = _encode_known(field.message, value, where)
        return _varint(len(data)) + data, False
    return _scalar_bytes(field, value, where)


def _fraction(digits: str | None) -> int:
    return int((digits or "").ljust(9, "0"))


def _encode_known(message: Message, value: Any, where: str) -> bytes:
    """A message field's value: a well-known type from its JSON form, else an object."""
    name = message.full_name
    if name == _TIMESTAMP:
        seconds, nanos = _parse_timestamp(value, where)
        return encode(message, {"seconds": seconds, "nanos": nanos})
    if name == _DURATION:
        seconds, nanos = _parse_duration(value, where)
        return encode(message, {"seconds": seconds, "nanos": nanos})
    if name in _WRAPPERS:
        return encode(message, {"value": value})
    return encode(message, value)


def _parse_timestamp(value: Any, where: str) -> tuple[int, int]:
    m = _RFC3339.fullmatch(value) if isinstance(value, str) else None
    if m is None:
        raise TranscodeError(f"{where}: expected an RFC 3339 time, got {value!r}")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    try:
        datetime.datetime(year, month, day, hour, minute, second)
    except ValueError:
        raise TranscodeError(f"{where}: {value!r} is not a valid time") from None
    seconds = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    zone = m.group(8)
    if zone and zone not in ("Z", "z"):
        offset = int(zone[1:3]) * 3600 + int(zone[4:6]) * 60
        seconds -= offset if zone[0] == "+" else -offset
    if not _MIN_SECONDS <= seconds <= _MAX_SECONDS:
        raise TranscodeError(f"{where}: {value!r} is out of the Timestamp range")
    return seconds, _fraction(m.group(7))


def _parse_duration(value: Any, where: str) -> tuple[int, int]:
    m = _DURATION_TEXT.fullmatch(value) if isinstance(value, str) else None
    if m is None:
        raise TranscodeError(f'{where}: expected a duration like "1.5s", got {value!r}')
    seconds, nanos = int(m.group(2)), _fraction(m.group(3))
    if seconds > 315576000000:
        raise TranscodeError(f"{where}: {value!r} is out of the Duration range")
    return (-seconds, -nanos) if m.group(1) else (seconds, nanos)


def _fraction_text(nanos: int) -> str:
    """0, 3, 6 or 9 digits, as protobuf's printers write a fraction of a second."""
    if nanos == 0:
        return ""
    if nanos % 1_000_000 == 0:
        return f".{nanos // 1_000_000:03d}"
    if nanos % 1000 == 0:
        return f".{nanos // 1000:06d}"
    return f".{nanos:09d}"


def _decode_known(message: Message, data: bytes, style: Style) -> Any:
    """A message field's JSON: a well-known type's form, else an object."""
    name = message.full_name
    if name in _WRAPPERS:
        return decode(message, data, KONG_GATEWAY if not style.int64_strings else _ALL)["value"]
    if name not in (_TIMESTAMP, _DURATION):
        return decode(message, data, style)
    parts = decode(message, data, _NUMBERS)
    seconds, nanos = int(parts["seconds"]), int(parts["nanos"])
    where = message.full_name
    if name == _DURATION:
        if seconds < 0 or nanos < 0:
            return f"-{-seconds}{_fraction_text(-nanos)}s"
        return f"{seconds}{_fraction_text(nanos)}s"
    if not _MIN_SECONDS <= seconds <= _MAX_SECONDS or not 0 <= nanos <= 999_999_999:
        raise TranscodeError(f"{where}: seconds {seconds} nanos {nanos} is not a valid time")
    when = _EPOCH + datetime.timedelta(seconds=seconds)
    return when.strftime("%Y-%m-%dT%H:%M:%S").rjust(19, "0") + _fraction_text(nanos) + "Z"


#: Inner styles for well-known types: every field, proto names (numbers / canonical strings).
_NUMBERS: Final = Style(proto_names=True, defaults=True, int64_strings=False)
_ALL: Final = Style(proto_names=True, defaults=True, int64_strings=True)


def encode(message: Message, value: Any) -> bytes:
    """The protobuf encoding of the JSON value ``value`` (already parsed) as ``message``."""
    if not isinstance(value, dict):
        raise TranscodeError(f"{message.full_name}: expected an object")
    out = bytearray()
    oneofs: dict[str, str] = {}
    for key, item in value.items():
        field = message.by_json.get(key)
        if field is None:
            raise TranscodeError(f"{message.full_name} has no field {key!r}")
        if item is None:
            continue
        where = _where(message, field)
        if field.oneof is not None:
            if field.oneof in oneofs:
                raise TranscodeError(f"{where}: oneof {field.oneof} is already set")
            oneofs[field.oneof] = field.name
        if field.map is not None:
            out += _encode_map(field, item, where)
        elif field.repeated:
            out += _encode_list(field, item, where)
        else:
            data, default = _value_bytes(field, item, where)
            if not default or field.presence:
                out += _tag(field, _wire(field)) + data
    return bytes(out)


def _encode_list(field: Field, items: Any, where: str) -> bytes:
    if not isinstance(items, list):
        raise TranscodeError(f"{where}: expected an array")
    if field.packed and _packable(field):
        packed = b"".join(_scalar_bytes(field, item, where)[0] for item in items)
        return _tag(field, 2) + _varint(len(packed)) + packed if packed else b""
    out = bytearray()
    for item in items:
        if item is None:
            raise TranscodeError(f"{where}: null in an array")
        out += _tag(field, _wire(field)) + _value_bytes(field, item, where)[0]
    return bytes(out)


def _encode_map(field: Field, items: Any, where: str) -> bytes:
    assert field.map is not None
    key_field, value_field = field.map
    if not isinstance(items, dict):
        raise TranscodeError(f"{where}: expected an object")
    out = bytearray()
    for key, item in items.items():
        if key_field.kind == "bool":
            if key not in ("true", "false"):
                raise TranscodeError(f"{where}: map key {key!r} is not a boolean")
            key_value: Any = key == "true"
        elif key_field.kind == "string":
            key_value = key
        else:
            key_value = key
        entry = _tag(key_field, _wire(key_field)) + _scalar_bytes(key_field, key_value, where)[0]
        if item is None:
            raise TranscodeError(f"{where}: null map value")
        entry += _tag(value_field, _wire(value_field)) + _value_bytes(value_field, item, where)[0]
        out += _tag(field, 2) + _varint(len(entry)) + entry
    return bytes(out)


# -- protobuf -> JSON --------------------------------------------------------------------------


def _read_varint(data: bytes, pos: int, where: str) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise TranscodeError(f"{where}: truncated or overlong varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _read(data: bytes, pos: int, wire: int, where: str) -> tuple[Any, int]:
    """One wire value: an int (varint), bytes (fixed-size or length-delimited)."""
    if wire == 0:
        return _read_varint(data, pos, where)
    if wire == 1 or wire == 5:
        end = pos + (8 if wire == 1 else 4)
    elif wire == 2:
        size, pos = _read_varint(data, pos, where)
        end = pos + size
    else:
        raise TranscodeError(f"{where}: unsupported wire type {wire}")
    if end > len(data):
        raise TranscodeError(f"{where}: truncated message")
    return data[pos:end], end


def _signed(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def _float32(value: float) -> float:
    """The shortest decimal that reads back as the same float32."""
    if not math.isfinite(value):
        return value
    packed = struct.pack("<f", value)
    for digits in range(6, 10):
        short = float(f"{value:.{digits}g}")
        if struct.pack("<f", short) == packed:
            return short
    return value


def _scalar_value(field: Field, raw: Any, where: str) -> Any:
    kind = field.kind
    if kind == "enum":
        assert field.enum is not None
        number = _signed(raw, 32)
        return field.enum.names.get(number, number)
    if kind in _FIXED:
        (value,) = struct.unpack(_FIXED[kind], raw)
        if kind == "float":
            value = _float32(value)
    elif kind == "string":
        try:
            value = bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            raise TranscodeError(f"{where}: invalid UTF-8") from None
    elif kind == "bytes":
        value = bytes(raw)
    elif kind == "bool":
        value = raw != 0
    elif kind in ("sint32", "sint64"):
        value = (raw >> 1) ^ -(raw & 1)
    elif kind in ("int32",):
        value = _signed(raw, 32)
    elif kind == "int64":
        value = _signed(raw, 64)
    elif kind == "uint32":
        value = raw & 0xFFFFFFFF
    else:
        value = raw
    return value


def _json_scalar(field: Field, value: Any, style: Style) -> Any:
    kind = field.kind
    if kind in _AS_STRING:
        return str(value) if style.int64_strings else value
    if kind == "bytes":
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value


def _is_default(field: Field, value: Any) -> bool:
    if field.kind == "message":
        return False
    if field.kind == "enum":
        return value == 0 or (field.enum is not None and field.enum.numbers.get(value) == 0)
    if field.kind in _AS_STRING:
        return bool(value == "0" or value == 0)
    return not value and not (isinstance(value, float) and math.copysign(1, value) < 0)


def _field_value(field: Field, raw: Any, wire: int, where: str, style: Style) -> Any:
    if wire != _wire(field):
        raise TranscodeError(f"{where}: wire type {wire} for a {field.kind or field.type_name}")
    if field.kind == "message":
        assert field.message is not None
        return _decode_known(field.message, bytes(raw), style)
    return _json_scalar(field, _scalar_value(field, raw, where), style)


def _map_entry(field: Field, raw: bytes, where: str, style: Style) -> tuple[str, Any]:
    assert field.map is not None
    key_field, value_field = field.map
    key: Any = None
    value: Any = None
    pos = 0
    while pos < len(raw):
        tag, pos = _read_varint(raw, pos, where)
        item, pos = _read(raw, pos, tag & 7, where)
        if tag >> 3 == 1:
            key = _field_value(key_field, item, tag & 7, where, style)
        elif tag >> 3 == 2:
            value = _field_value(value_field, item, tag & 7, where, style)
    if key is None:
        key = _default_json(key_field, style)
    if value is None:
        value = _default_json(value_field, style)
    if isinstance(key, bool):
        return ("true" if key else "false"), value
    return str(key), value


def _default_json(field: Field, style: Style) -> Any:
    kind = field.kind
    if kind == "message":
        assert field.message is not None
        return _decode_known(field.message, b"", style)
    if kind == "enum":
        assert field.enum is not None
        return field.enum.names.get(0, 0)
    if kind in _AS_STRING:
        return "0" if style.int64_strings else 0
    if kind in ("string", "bytes"):
        return ""
    if kind == "bool":
        return False
    if kind in ("float", "double"):
        return 0.0
    return 0


def decode(message: Message, data: bytes, style: Style = CANONICAL) -> dict[str, Any]:
    """The JSON object (to be serialized) of the protobuf bytes ``data`` as ``message``."""
    values: dict[int, Any] = {}
    pos = 0
    while pos < len(data):
        tag, pos = _read_varint(data, pos, message.full_name)
        number, wire = tag >> 3, tag & 7
        raw, pos = _read(data, pos, wire, message.full_name)
        field = message.by_number.get(number)
        if field is None:
            continue  # an unknown field: skipped, as JSON printers do
        where = _where(message, field)
        if field.map is not None:
            key, value = _map_entry(field, raw, where, style)
            values.setdefault(number, {})[key] = value
        elif field.repeated:
            items = values.setdefault(number, [])
            if wire == 2 and _packable(field):
                inner = 0
                item_wire = _wire(field)
                while inner < len(raw):
                    item, inner = _read(raw, inner, item_wire, where)
                    items.append(_json_scalar(field, _scalar_value(field, item, where), style))
            else:
                items.append(_field_value(field, raw, wire, where, style))
        else:
            if field.oneof is not None:
                for other in message.fields:
                    if other.oneof == field.oneof:
                        values.pop(other.number, None)
            values[number] = _field_value(field, raw, wire, where, style)
    out: dict[str, Any] = {}
    for field in message.fields:
        name = field.name if style.proto_names else field.json_name
        if field.number not in values:
            if style.defaults and not field.presence:
                if field.map is not None:
                    out[name] = {}
                elif field.repeated:
                    out[name] = []
                elif field.kind != "message":
                    out[name] = _default_json(field, style)
            continue
        value = values[field.number]
        if not style.defaults:
            if (field.repeated or field.map is not None) and not value:
                continue
            if not field.repeated and not field.presence and _is_default(field, value):
                continue
        out[name] = value
    return out


__all__ = ["CANONICAL", "KONG_GATEWAY", "Style", "TranscodeError", "decode", "encode"]
