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
:class:`TranscodeError` naming the message and field.
"""

from __future__ import annotations

import base64
import binascii
import math
import struct
from typing import Any, Final

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


def _wire(field: Field) -> int:
    if field.kind in SCALARS:
        return SCALARS[field.kind]
    return 0 if field.kind == "enum" else 2


def _packable(field: Field) -> bool:
    return field.kind == "enum" or (field.kind in SCALARS and SCALARS[field.kind] != 2)


# -- JSON -> protobuf --------------------------------------------------------------------------


def _varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


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
        data = encode(field.message, value)
        return _varint(len(data)) + data, False
    return _scalar_bytes(field, value, where)


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


def _json_scalar(field: Field, value: Any) -> Any:
    kind = field.kind
    if kind in _AS_STRING:
        return str(value)
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
        return bool(value == "0")
    return not value and not (isinstance(value, float) and math.copysign(1, value) < 0)


def _field_value(field: Field, raw: Any, wire: int, where: str) -> Any:
    if wire != _wire(field):
        raise TranscodeError(f"{where}: wire type {wire} for a {field.kind or field.type_name}")
    if field.kind == "message":
        assert field.message is not None
        return decode(field.message, bytes(raw))
    return _json_scalar(field, _scalar_value(field, raw, where))


def _map_entry(field: Field, raw: bytes, where: str) -> tuple[str, Any]:
    assert field.map is not None
    key_field, value_field = field.map
    key: Any = None
    value: Any = None
    pos = 0
    while pos < len(raw):
        tag, pos = _read_varint(raw, pos, where)
        item, pos = _read(raw, pos, tag & 7, where)
        if tag >> 3 == 1:
            key = _field_value(key_field, item, tag & 7, where)
        elif tag >> 3 == 2:
            value = _field_value(value_field, item, tag & 7, where)
    if key is None:
        key = _default_json(key_field)
    if value is None:
        value = _default_json(value_field)
    if isinstance(key, bool):
        return ("true" if key else "false"), value
    return str(key), value


def _default_json(field: Field) -> Any:
    kind = field.kind
    if kind == "message":
        return {}
    if kind == "enum":
        assert field.enum is not None
        return field.enum.names.get(0, 0)
    if kind in _AS_STRING:
        return "0"
    if kind in ("string", "bytes"):
        return ""
    if kind == "bool":
        return False
    if kind in ("float", "double"):
        return 0.0
    return 0


def decode(message: Message, data: bytes) -> dict[str, Any]:
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
            key, value = _map_entry(field, raw, where)
            values.setdefault(number, {})[key] = value
        elif field.repeated:
            items = values.setdefault(number, [])
            if wire == 2 and _packable(field):
                inner = 0
                item_wire = _wire(field)
                while inner < len(raw):
                    item, inner = _read(raw, inner, item_wire, where)
                    items.append(_json_scalar(field, _scalar_value(field, item, where)))
            else:
                items.append(_field_value(field, raw, wire, where))
        else:
            if field.oneof is not None:
                for other in message.fields:
                    if other.oneof == field.oneof:
                        values.pop(other.number, None)
            values[number] = _field_value(field, raw, wire, where)
    out: dict[str, Any] = {}
    for field in message.fields:
        if field.number not in values:
            continue
        value = values[field.number]
        if (field.repeated or field.map is not None) and not value:
            continue
        if not field.repeated and not field.presence and _is_default(field, value):
            continue
        out[field.json_name] = value
    return out


__all__ = ["TranscodeError", "decode", "encode"]
