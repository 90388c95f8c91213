"""Released schema versions: old data stays decodable after a compatible change, and the
history check catches what the change would break."""

from __future__ import annotations

import copy
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from hs_common.admin import release_schemas
from hs_common.codec import Codec
from hs_common.compat import history_problems
from hs_common.crypto import Keyring
from hs_common.errors import SchemaCatalogueError
from hs_common.schemas import SchemaCatalogue
from hs_common.settings import RuntimeSettings

V1: dict[str, Any] = {
    "type": "record",
    "name": "Reading",
    "namespace": "fx.device",
    "fields": [
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {
            "name": "subject",
            "hs.sensitivity": "identifying",
            "type": {
                "type": "record",
                "name": "Subject",
                "fields": [{"name": "id", "type": "string"}],
            },
        },
        {"name": "value", "type": "double"},
    ],
}


def _v2_compatible() -> dict[str, Any]:
    v2 = copy.deepcopy(V1)
    v2["fields"][1]["type"]["fields"].append(
        {"name": "ward", "type": ["null", "string"], "default": None}
    )
    v2["fields"].append({"name": "unit", "type": "string", "default": "mmol/L"})
    return v2


def _v2_breaking_inside_sealed() -> dict[str, Any]:
    v2 = copy.deepcopy(V1)
    v2["fields"][1]["type"]["fields"].append({"name": "ward", "type": "string"})  # no default
    return v2


@pytest.fixture
def fixture_root(tmp_path: Path, catalogue: SchemaCatalogue) -> Path:
    root = tmp_path / "schemas"
    (root / "device").mkdir(parents=True)
    shutil.copy(catalogue.get("hs.crypto.Sealed").path, root / "Sealed.avsc")
    _write(root, V1)
    release_schemas(RuntimeSettings(HS_SCHEMA_DIR=root))
    return root


def _write(root: Path, document: dict[str, Any]) -> None:
    (root / "device" / "Reading.avsc").write_text(json.dumps(document))


def test_data_written_with_a_released_version_decodes_into_the_current_shape(
    fixture_root: Path, keyring: Keyring
) -> None:
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    old_bytes = Codec(SchemaCatalogue.load(fixture_root), keyring).encode(
        "fx.device.Reading", {"at": at, "subject": {"id": "U1"}, "value": 5.5}
    )
    _write(fixture_root, _v2_compatible())
    current = SchemaCatalogue.load(fixture_root)
    assert current.get("fx.device.Reading").fingerprint != old_bytes[2:10]
    decoded = Codec(current, keyring).decode(old_bytes)
    assert decoded.record == {
        "at": at,
        "subject": {"id": "U1", "ward": None},
        "value": 5.5,
        "unit": "mmol/L",
    }


def test_a_change_inside_a_sealed_field_changes_the_fingerprint(fixture_root: Path) -> None:
    before = SchemaCatalogue.load(fixture_root).get("fx.device.Reading")
    _write(fixture_root, _v2_breaking_inside_sealed())
    after = SchemaCatalogue.load(fixture_root).get("fx.device.Reading")
    assert json.dumps(before.wire) == json.dumps(after.wire)  # the wire schema alone cannot tell
    assert before.fingerprint != after.fingerprint


def test_history_check_passes_for_a_released_compatible_change(fixture_root: Path) -> None:
    _write(fixture_root, _v2_compatible())
    release_schemas(RuntimeSettings(HS_SCHEMA_DIR=fixture_root))
    assert history_problems(SchemaCatalogue.load(fixture_root)) == []


def test_history_check_names_an_unreleased_version(fixture_root: Path) -> None:
    _write(fixture_root, _v2_compatible())
    problems = history_problems(SchemaCatalogue.load(fixture_root))
    assert len(problems) == 1
    assert "fx.device.Reading: current version" in problems[0]
    assert "make schemas-release" in problems[0]


def test_history_check_refuses_a_breaking_change_inside_a_sealed_field(fixture_root: Path) -> None:
    _write(fixture_root, _v2_breaking_inside_sealed())
    release_schemas(RuntimeSettings(HS_SCHEMA_DIR=fixture_root))
    problems = history_problems(SchemaCatalogue.load(fixture_root))
    assert any("sealed fx.device.Reading.subject: cannot read old data" in p for p in problems), (
        problems
    )


def _v2_sealing_the_value(value_type: Any = "double") -> dict[str, Any]:
    v2 = copy.deepcopy(V1)
    v2["fields"][2] = {"name": "value", "hs.sensitivity": "health", "type": value_type}
    return v2


def test_a_field_sealed_later_reads_old_data_in_the_clear_and_is_sealed_when_written_again(
    fixture_root: Path, keyring: Keyring
) -> None:
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    old_bytes = Codec(SchemaCatalogue.load(fixture_root), keyring).encode(
        "fx.device.Reading", {"at": at, "subject": {"id": "U1"}, "value": 5.5}
    )
    assert b"\x00\x00\x00\x00\x00\x00\x16@" in old_bytes  # 5.5 as an Avro double, in the clear
    _write(fixture_root, _v2_sealing_the_value())
    release_schemas(RuntimeSettings(HS_SCHEMA_DIR=fixture_root))
    current = SchemaCatalogue.load(fixture_root)
    assert history_problems(current) == []
    codec = Codec(current, keyring)
    record = codec.decode(old_bytes).record
    assert record == {"at": at, "subject": {"id": "U1"}, "value": 5.5}
    rewritten = codec.encode("fx.device.Reading", record)
    assert b"\x00\x00\x00\x00\x00\x00\x16@" not in rewritten
    assert Codec(current, Keyring.empty()).decode(rewritten).record["value"].key_id
    assert codec.decode(rewritten).record == record


def test_sealing_a_field_does_not_excuse_changing_its_type(fixture_root: Path) -> None:
    _write(fixture_root, _v2_sealing_the_value("string"))
    release_schemas(RuntimeSettings(HS_SCHEMA_DIR=fixture_root))
    problems = history_problems(SchemaCatalogue.load(fixture_root))
    assert any("not compatible with writer type: double" in p for p in problems), problems


def test_a_sealed_field_cannot_be_unsealed(fixture_root: Path) -> None:
    v2 = copy.deepcopy(V1)
    del v2["fields"][1]["hs.sensitivity"]
    _write(fixture_root, v2)
    release_schemas(RuntimeSettings(HS_SCHEMA_DIR=fixture_root))
    problems = history_problems(SchemaCatalogue.load(fixture_root))
    assert any("cannot read old data" in p for p in problems), problems


def test_a_history_file_must_be_named_by_its_fingerprint(fixture_root: Path) -> None:
    [recorded] = (fixture_root / "history" / "fx.device.Reading").glob("*.avsc")
    recorded.rename(recorded.with_name("0000000000000000.avsc"))
    with pytest.raises(SchemaCatalogueError, match="file name does not match its fingerprint"):
        SchemaCatalogue.load(fixture_root)


def test_the_project_s_schemas_are_released_and_read_every_released_version(
    catalogue: SchemaCatalogue,
) -> None:
    assert history_problems(catalogue) == []
