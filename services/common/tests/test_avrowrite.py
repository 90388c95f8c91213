"""The compiled Avro writers against fastavro: the same bytes for every schema and for
records drawn at random from each schema, and errors that say where without saying what."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import Any

import fastavro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hs_common.avrowrite import AvroWriteError, compile_writer
from hs_common.codec import Codec
from hs_common.errors import CodecError
from hs_common.schemas import EventSchema, SchemaCatalogue, default_schema_root
from hs_common.testing import golden_example

OBSERVATION = "hs.clinical.Observation"


def fastavro_bytes(parsed: Any, record: Any) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, parsed, record)
    return out.getvalue()


def compiled_bytes(parsed: Any, record: Any) -> bytes:
    out = bytearray()
    compile_writer(parsed)(record, out)
    return bytes(out)


def values_of(schema: Any, named: dict[str, Any], depth: int = 0) -> st.SearchStrategy[Any]:
    """Records (and values) that fit a fastavro-parsed schema."""
    if isinstance(schema, list):
        return st.one_of([values_of(branch, named, depth) for branch in schema])
    if isinstance(schema, str):
        if schema in named:
            return values_of(named[schema], named, depth)
        schema = {"type": schema}
    kind, logical = schema["type"], schema.get("logicalType")
    if isinstance(kind, (dict, list)) or kind in named:
        return values_of(kind, named, depth)
    if kind == "record":
        return st.fixed_dictionaries(
            {f["name"]: values_of(f["type"], named, depth + 1) for f in schema["fields"]}
        )
    if kind == "enum":
        return st.sampled_from(schema["symbols"])
    if kind == "array":
        return st.lists(
            values_of(schema["items"], named, depth + 1), max_size=3 if depth < 4 else 0
        )
    if kind == "map":
        return st.dictionaries(
            st.text(max_size=5), values_of(schema["values"], named, depth + 1), max_size=2
        )
    if kind == "fixed":
        return st.binary(min_size=schema["size"], max_size=schema["size"])
    if logical in ("timestamp-micros", "timestamp-millis"):
        return st.datetimes(
            min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
        ).map(
            lambda moment: (
                moment - timedelta(microseconds=moment.microsecond % 1000)
                if logical == "timestamp-millis"
                else moment
            )
        )
    if logical == "date":
        return st.dates()
    if logical == "uuid":
        return st.uuids().map(str)
    return {
        "null": st.none(),
        "boolean": st.booleans(),
        "int": st.integers(-(2**31), 2**31 - 1),
        "long": st.integers(-(2**63), 2**63 - 1),
        "float": st.floats(width=32, allow_nan=False),
        "double": st.floats(allow_nan=False),
        "string": st.text(max_size=20),
        "bytes": st.binary(max_size=20),
    }[kind]


def test_every_golden_example_is_written_as_fastavro_writes_it(
    catalogue: SchemaCatalogue, codec: Codec
) -> None:
    for schema in catalogue:
        if schema.plan is not None:
            continue  # sealed types are checked through the codec below
        parsed = schema.logical_parsed
        example = codec.decode(codec.encode(schema.name, _golden(schema))).record
        assert compiled_bytes(parsed, example) == fastavro_bytes(parsed, example), schema.name


def _golden(schema: EventSchema) -> dict[str, Any]:
    return golden_example(schema, default_schema_root())


@pytest.mark.parametrize("form", ["logical", "wire"])
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_random_records_of_every_schema_are_written_as_fastavro_writes_them(
    catalogue: SchemaCatalogue, form: str, data: st.DataObject
) -> None:
    for schema in catalogue:
        parsed = schema.logical_parsed if form == "logical" else schema.wire_parsed
        record = data.draw(values_of(parsed, parsed["__named_schemas"]), label=schema.name)
        assert compiled_bytes(parsed, record) == fastavro_bytes(parsed, record), schema.name


def test_a_missing_field_is_named_with_its_path(codec: Codec, catalogue: SchemaCatalogue) -> None:
    record = _golden(catalogue.get(OBSERVATION))
    del record["envelope"]["source"]["institution"]
    with pytest.raises(CodecError, match=r"envelope\.source\.institution: no value and no default"):
        codec.encode(OBSERVATION, record)


def test_a_wrong_value_is_described_by_path_and_type_without_the_value(
    codec: Codec, catalogue: SchemaCatalogue
) -> None:
    record = _golden(catalogue.get(OBSERVATION))
    record["result"]["value_quantity"] = "SECRET-VALUE-123"
    with pytest.raises(CodecError) as caught:
        codec.encode(OBSERVATION, record)
    assert "result.value_quantity" in str(caught.value)
    assert "SECRET-VALUE-123" not in str(caught.value)


def test_unknown_enum_symbol_and_naive_timestamp_are_refused(
    codec: Codec, catalogue: SchemaCatalogue
) -> None:
    record = _golden(catalogue.get(OBSERVATION))
    record["status"] = "MAYBE"
    with pytest.raises(CodecError, match=r"status: not one of the enum's symbols"):
        codec.encode(OBSERVATION, record)
    record = _golden(catalogue.get(OBSERVATION))
    record["effective_at"] = datetime(2026, 1, 1)
    with pytest.raises(CodecError, match=r"effective_at: a timestamp needs a time zone"):
        codec.encode(OBSERVATION, record)


def test_a_union_python_types_cannot_split_falls_back_to_fastavro() -> None:
    parsed = fastavro.parse_schema(
        {
            "type": "record",
            "name": "T",
            "fields": [
                {
                    "name": "u",
                    "type": [
                        {"type": "record", "name": "A", "fields": [{"name": "a", "type": "int"}]},
                        {
                            "type": "record",
                            "name": "B",
                            "fields": [{"name": "b", "type": "string"}],
                        },
                    ],
                }
            ],
        }
    )
    for record in ({"u": {"a": 5}}, {"u": {"b": "x"}}):
        assert compiled_bytes(parsed, record) == fastavro_bytes(parsed, record)
    with pytest.raises(AvroWriteError):
        compiled_bytes(parsed, {"u": 3})
