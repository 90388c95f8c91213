"""Errors of the shared runtime. Each says what was wrong and, where it helps, what to do.

Messages name schemas, fields, topics, offsets and key ids; never the values of records.
"""

from __future__ import annotations


class HealthStreamError(Exception):
    """Base of every error the platform raises on purpose."""


class SchemaCatalogueError(HealthStreamError):
    """The .avsc files cannot be loaded into a consistent catalogue."""


class RejectedInput(HealthStreamError):
    """Input a stage cannot handle: answered and dead-lettered with `reason_code`."""

    reason_code: str = "input.rejected"

    def __init__(self, message: str, reason_code: str | None = None) -> None:
        super().__init__(message)
        if reason_code is not None:
            self.reason_code = reason_code


class CodecError(RejectedInput):
    """Bytes cannot be decoded, or a record cannot be encoded, with the catalogue's schemas."""

    reason_code = "codec.invalid"


class UnknownSchemaError(CodecError):
    """The fingerprint of a single-object encoded message names no schema in the catalogue."""

    reason_code = "codec.unknown_schema"


class NotSingleObjectError(CodecError):
    """The bytes do not start with the Avro single-object marker."""

    reason_code = "codec.not_single_object"


class SealedFieldError(CodecError):
    """A sealed field failed authentication: tampered, moved to another field, or wrong key."""

    reason_code = "codec.sealed_field_invalid"


class KeyringError(HealthStreamError):
    """A keyring file or setting is malformed, or a needed key is absent."""


class SettingsError(HealthStreamError):
    """Settings are missing or unsafe for the environment (e.g. placeholder secrets)."""


class NotStoredError(HealthStreamError):
    """Kafka did not confirm a write (acks=all): the sender must not be acknowledged."""
