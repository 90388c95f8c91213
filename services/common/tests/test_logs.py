from __future__ import annotations

import json
import logging
import sys

from hs_common.errors import CodecError
from hs_common.logs import SafeJsonFormatter


def _format(record: logging.LogRecord) -> dict[str, object]:
    return dict(json.loads(SafeJsonFormatter("test").format(record)))


def _record(msg: str, args: tuple[object, ...] = (), **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("hs", logging.INFO, __file__, 1, msg, args, None)
    record.__dict__.update(extra)
    return record


def test_allowed_fields_are_kept() -> None:
    line = _format(
        _record("batch committed", topic="hs.ingest.raw.v1", partition=2, offset=41, count=500)
    )
    assert line["msg"] == "batch committed"
    assert (line["topic"], line["partition"], line["offset"], line["count"]) == (
        "hs.ingest.raw.v1",
        2,
        41,
        500,
    )
    assert "dropped_fields" not in line


def test_fields_outside_the_allowlist_are_dropped_and_named() -> None:
    line = _format(_record("registered", patient_name="王小明", id_number="330102198703150023"))
    text = json.dumps(line, ensure_ascii=False)
    assert "王小明" not in text
    assert "330102198703150023" not in text
    assert line["dropped_fields"] == ["id_number", "patient_name"]


def test_format_arguments_are_never_interpolated() -> None:
    line = _format(_record("patient %s registered", ("王小明",)))
    assert line["msg"] == "patient %s registered"
    assert "王小明" not in json.dumps(line, ensure_ascii=False)


def test_foreign_exception_messages_are_withheld_own_kept() -> None:
    for exc, kept in [
        (ValueError("'王小明' is not a date"), False),
        (CodecError("field birth_date invalid"), True),
    ]:
        try:
            raise exc
        except Exception:
            record = logging.LogRecord(
                "hs", logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
            )
        line = _format(record)
        error = line["error"]
        assert isinstance(error, dict)
        assert error["type"] == type(exc).__name__
        assert ("message" in error) is kept
        assert "王小明" not in json.dumps(line, ensure_ascii=False)


def test_librdkafka_lines_keep_their_text() -> None:
    record = logging.LogRecord(
        "librdkafka",
        logging.ERROR,
        __file__,
        1,
        "%s [%s] %s",
        ("FAIL", "rdkafka#producer-1", "Connect to 127.0.0.1:1 failed"),
        None,
    )
    line = _format(record)
    assert line["msg"] == "FAIL [rdkafka#producer-1] Connect to 127.0.0.1:1 failed"
    assert "dropped_fields" not in line
