"""Avro binary writers compiled once per schema into plain Python closures.

fastavro's generic writer re-examines the schema for every value and picks union branches by
validating the datum against each branch, a whole record at a time; the events here are
mostly nullable unions and small records, so a writer specialised for one schema is two to
three times faster. The output is the Avro binary encoding, byte for byte what fastavro
writes (`tests/test_avrowrite.py` checks that on every schema). Errors name the field path
and the expected type, never the value.
"""

from __future__ import annotations

import io
import struct
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from typing import Any

import fastavro

Writer = Callable[[Any, bytearray], None]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_DATE = date(1970, 1, 1)
_DOUBLE = struct.Struct("<d").pack
_FLOAT = struct.Struct("<f").pack
_MISSING = object()


class AvroWriteError(Exception):
    """A value does not fit its schema; `path` says where (field names and [index])."""

    def __init__(self, expected: str, path: list[str] | None = None) -> None:
        super().__init__(expected)
        self.expected = expected
        self.path = path or []

    def __str__(self) -> str:
        where = ".".join(self.path) or "value"
        return f"{where}: {self.expected}"


def write_long(n: int, out: bytearray) -> None:
    """Zig-zag variable-length integer."""
    if 0 <= n < 64:  # lengths, enum and union indexes: one byte
        out.append(n << 1)
        return
    n = (n << 1) ^ (n >> 63)
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def compile_writer(parsed: Any) -> Writer:
    """A writer for a fastavro-parsed schema (named types referenced by full name); fastavro's
    own writer for a schema with a union whose branches Python types cannot tell apart."""
    named: Mapping[str, Any] = parsed.get("__named_schemas", {}) if isinstance(parsed, dict) else {}
    try:
        return _Compiler(named).writer(parsed)
    except NotImplementedError:
        return _fastavro_writer(parsed)


def _fastavro_writer(parsed: Any) -> Writer:
    def write(value: Any, out: bytearray) -> None:
        body = io.BytesIO()
        try:
            fastavro.schemaless_writer(body, parsed, value)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise AvroWriteError(f"{type(exc).__name__} from fastavro (value withheld)") from None
        out += body.getvalue()

    return write


class _Compiler:
    def __init__(self, named: Mapping[str, Any]) -> None:
        self.named = named
        self.records: dict[str, Writer] = {}

    def writer(self, schema: Any) -> Writer:
        if isinstance(schema, list):
            return self.union(schema)
        if isinstance(schema, str):
            if schema in self.named:
                return self.reference(schema)
            schema = {"type": schema}
        kind = schema["type"]
        if isinstance(kind, (dict, list)) or kind in self.named:
            return self.writer(kind)
        logical = schema.get("logicalType")
        if kind in {"record", "error"}:
            return self.record(schema)
        if kind == "enum":
            return _enum(schema["symbols"])
        if kind == "array":
            return _array(self.writer(schema["items"]))
        if kind == "map":
            return _map(self.writer(schema["values"]))
        if kind == "fixed":
            return _fixed(schema["size"])
        if kind == "long" and logical == "timestamp-micros":
            return _timestamp(1_000_000)
        if kind == "long" and logical == "timestamp-millis":
            return _timestamp(1_000)
        if kind == "int" and logical == "date":
            return _date
        if kind == "string" and logical == "uuid":
            return _uuid
        return _PRIMITIVES[kind]

    def reference(self, name: str) -> Writer:
        if name not in self.records:
            return self.writer(self.named[name])

        def write(value: Any, out: bytearray) -> None:  # a recursive type: bound when called
            self.records[name](value, out)

        return write

    def record(self, schema: Mapping[str, Any]) -> Writer:
        name = schema["name"]
        self.records[name] = _unbound
        fields = tuple(
            (
                f["name"],
                self.writer(f["type"]),
                f.get("default", _MISSING),
            )
            for f in schema["fields"]
        )

        def write(value: Any, out: bytearray) -> None:
            if not isinstance(value, Mapping):
                raise AvroWriteError(f"expected a {name} record, got {type(value).__name__}")
            for field_name, field_writer, default in fields:
                item = value.get(field_name, default)
                if item is _MISSING:
                    raise AvroWriteError("no value and no default", [field_name])
                try:
                    field_writer(item, out)
                except AvroWriteError as error:
                    error.path.insert(0, field_name)
                    raise
                except (TypeError, ValueError, AttributeError, KeyError, struct.error):
                    raise AvroWriteError(
                        f"a {type(item).__name__} does not fit its type", [field_name]
                    ) from None

        self.records[name] = write
        return write

    def union(self, branches: list[Any]) -> Writer:
        kinds = [_python_kind(self._resolve(b)) for b in branches]
        if len(set(kinds)) != len(kinds):
            raise NotImplementedError(f"union branches not told apart by Python type: {kinds}")
        writers = [self.writer(b) for b in branches]
        if len(branches) == 2 and "null" in kinds:
            null_index = kinds.index("null")
            null_tag, other_tag = bytes([null_index * 2]), bytes([(1 - null_index) * 2])
            other = writers[1 - null_index]

            def nullable(value: Any, out: bytearray) -> None:
                if value is None:
                    out += null_tag
                else:
                    out += other_tag
                    other(value, out)

            return nullable
        tests = [
            (_KIND_TEST[k], bytes([i * 2]), w)
            for i, (k, w) in enumerate(zip(kinds, writers, strict=True))
        ]

        def write(value: Any, out: bytearray) -> None:
            for test, tag, branch in tests:
                if test(value):
                    out += tag
                    branch(value, out)
                    return
            raise AvroWriteError(f"a {type(value).__name__} fits no branch of the union")

        return write

    def _resolve(self, schema: Any) -> Any:
        if isinstance(schema, str) and schema in self.named:
            return self.named[schema]
        if (
            isinstance(schema, dict)
            and isinstance(schema["type"], str)
            and schema["type"] in self.named
        ):
            return self.named[schema["type"]]
        return schema


def _unbound(value: Any, out: bytearray) -> None:
    raise AssertionError("recursive record writer used before it was compiled")


def _python_kind(schema: Any) -> str:
    kind = schema if isinstance(schema, str) else schema["type"]
    logical = schema.get("logicalType") if isinstance(schema, dict) else None
    if logical in ("timestamp-micros", "timestamp-millis", "date"):
        return "time"
    return {
        "int": "int",
        "long": "int",
        "float": "float",
        "double": "float",
        "string": "str",
        "enum": "str",
        "bytes": "bytes",
        "fixed": "bytes",
        "record": "mapping",
        "error": "mapping",
        "map": "mapping",
        "array": "list",
    }.get(kind, kind)


_KIND_TEST: dict[str, Callable[[Any], bool]] = {
    "null": lambda v: v is None,
    "boolean": lambda v: isinstance(v, bool),
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "str": lambda v: isinstance(v, (str, uuid.UUID)),
    "bytes": lambda v: isinstance(v, (bytes, bytearray, memoryview)),
    "mapping": lambda v: isinstance(v, Mapping),
    "list": lambda v: isinstance(v, (list, tuple)),
    "time": lambda v: isinstance(v, (date, int)) and not isinstance(v, bool),
}


def _null(value: Any, out: bytearray) -> None:
    if value is not None:
        raise AvroWriteError(f"expected null, got {type(value).__name__}")


def _boolean(value: Any, out: bytearray) -> None:
    if not isinstance(value, bool):
        raise AvroWriteError(f"expected a boolean, got {type(value).__name__}")
    out.append(1 if value else 0)


def _long(value: Any, out: bytearray) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise AvroWriteError(f"expected an integer, got {type(value).__name__}")
    write_long(value, out)


def _double(value: Any, out: bytearray) -> None:
    out += _DOUBLE(value)


def _float(value: Any, out: bytearray) -> None:
    out += _FLOAT(value)


def _string(value: Any, out: bytearray) -> None:
    data = value.encode()
    write_long(len(data), out)
    out += data


def _bytes(value: Any, out: bytearray) -> None:
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise AvroWriteError(f"expected bytes, got {type(value).__name__}")
    write_long(len(value), out)
    out += value


_PRIMITIVES: dict[str, Writer] = {
    "null": _null,
    "boolean": _boolean,
    "int": _long,
    "long": _long,
    "float": _float,
    "double": _double,
    "string": _string,
    "bytes": _bytes,
}


def _uuid(value: Any, out: bytearray) -> None:
    _string(str(value) if isinstance(value, uuid.UUID) else value, out)


def _date(value: Any, out: bytearray) -> None:
    _long(value if isinstance(value, int) else (value - _EPOCH_DATE).days, out)


def _timestamp(per_second: int) -> Writer:
    per_micro = 1_000_000 // per_second

    def write(value: Any, out: bytearray) -> None:
        if isinstance(value, datetime):
            if value.tzinfo is None:
                raise AvroWriteError("a timestamp needs a time zone")
            delta = value - _EPOCH
            micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
            value = micros // per_micro
        _long(value, out)

    return write


def _enum(symbols: list[str]) -> Writer:
    indexes = {symbol: bytes(_varint(i)) for i, symbol in enumerate(symbols)}

    def write(value: Any, out: bytearray) -> None:
        tag = indexes.get(value)
        if tag is None:
            raise AvroWriteError("not one of the enum's symbols")
        out += tag

    return write


def _fixed(size: int) -> Writer:
    def write(value: Any, out: bytearray) -> None:
        if not isinstance(value, (bytes, bytearray)) or len(value) != size:
            raise AvroWriteError(f"expected {size} bytes")
        out += value

    return write


def _array(items: Writer) -> Writer:
    def write(value: Any, out: bytearray) -> None:
        if value:
            write_long(len(value), out)
            for index, item in enumerate(value):
                try:
                    items(item, out)
                except AvroWriteError as error:
                    error.path.insert(0, f"[{index}]")
                    raise
        out.append(0)

    return write


def _map(values: Writer) -> Writer:
    def write(value: Any, out: bytearray) -> None:
        if value:
            write_long(len(value), out)
            for key, item in value.items():
                _string(key, out)
                values(item, out)
        out.append(0)

    return write


def _varint(n: int) -> bytearray:
    out = bytearray()
    write_long(n, out)
    return out
