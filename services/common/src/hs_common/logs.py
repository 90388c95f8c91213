"""Structured JSON logs that cannot carry message values.

A log line has a constant message (no %-arguments) and context fields from an allowlist:
positions (topic, partition, offset), ids (event_id, trace_id), counts, codes. Any other
field is dropped and named in `dropped_fields`, so a careless `extra={"name": ...}`
leaks nothing. Exceptions are logged by type and raise site; only HealthStream's own
errors, whose messages name fields and positions by policy, keep their message.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import traceback
from typing import Any

from hs_common.errors import HealthStreamError

SAFE_FIELDS = frozenset(
    {
        "service",
        "instance",
        "topic",
        "partition",
        "offset",
        "group",
        "event_id",
        "trace_id",
        "schema",
        "stage",
        "reason_code",
        "count",
        "outcome",
        "attempt",
        "key_id",
        "transactional_id",
        "duration_ms",
        "port",
        "peer",
        "status",
        "error_type",
        "topics",
        "created",
        "fingerprint",
        "transport",
        "content_type",
        "size",
    }
)
INFRASTRUCTURE_LOGGERS = frozenset({"librdkafka"})
_STANDARD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
}


class SafeJsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            # the template only: arguments may hold values (librdkafka's name brokers and states)
            "msg": record.getMessage()
            if record.name in INFRASTRUCTURE_LOGGERS
            else str(record.msg),
        }
        dropped = []
        for name, value in record.__dict__.items():
            if name in _STANDARD_ATTRS:
                continue
            if name in SAFE_FIELDS and isinstance(value, (str, int, float, bool, type(None), list)):
                line[name] = value
            else:
                dropped.append(name)
        if record.args and record.name not in INFRASTRUCTURE_LOGGERS:
            dropped.append("args")
        if dropped:
            line["dropped_fields"] = sorted(dropped)
        if record.exc_info and record.exc_info[1] is not None:
            line["error"] = describe_exception(record.exc_info[1])
        return json.dumps(line, ensure_ascii=False)


def describe_exception(exc: BaseException) -> dict[str, str]:
    """Type and raise site; the message only for our own errors."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f"{frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno}" if frames else "?"
    described = {"type": type(exc).__name__, "at": where}
    if isinstance(exc, HealthStreamError):
        described["message"] = str(exc)[:500]
    return described


def configure_logging(service: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(SafeJsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
