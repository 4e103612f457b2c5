"""Kafka outcomes as typed exceptions, each carrying Kafka's numeric ``error_code``.

Every failure reachable from a client request is one of these, so the server maps it to the wire in
one place (``for_code`` goes the other way, for the project's own client). Codes and names follow
Apache Kafka's ``org.apache.kafka.common.protocol.Errors``.
"""

from __future__ import annotations

from typing import ClassVar


class KafkaError(Exception):
    """Base of all Kafka-coded errors. Subclasses fix ``error_code`` and ``retriable``."""

    error_code: ClassVar[int] = -1
    retriable: ClassVar[bool] = False
    name: ClassVar[str] = "UNKNOWN_SERVER_ERROR"

    def __str__(self) -> str:
        detail = super().__str__()
        return f"{self.name} ({self.error_code}): {detail}" if detail else f"{self.name} ({self.error_code})"


class UnknownServerError(KafkaError):
    error_code = -1
    name = "UNKNOWN_SERVER_ERROR"


class OffsetOutOfRangeError(KafkaError):
    error_code = 1
    name = "OFFSET_OUT_OF_RANGE"


class CorruptRecordError(KafkaError):
    """A batch whose bytes are inconsistent: bad CRC, impossible length, unknown magic."""

    error_code = 2
    retriable = True
    name = "CORRUPT_MESSAGE"


class UnknownTopicOrPartitionError(KafkaError):
    error_code = 3
    retriable = True
    name = "UNKNOWN_TOPIC_OR_PARTITION"


class MessageTooLargeError(KafkaError):
    """A batch larger than ``max.message.bytes``."""

    error_code = 10
    name = "MESSAGE_TOO_LARGE"


class InvalidTopicError(KafkaError):
    error_code = 17
    name = "INVALID_TOPIC_EXCEPTION"


class RecordListTooLargeError(KafkaError):
    """A whole produce record set larger than ``segment.bytes``."""

    error_code = 18
    name = "RECORD_LIST_TOO_LARGE"


class InvalidTimestampError(KafkaError):
    error_code = 32
    name = "INVALID_TIMESTAMP"


class UnsupportedForMessageFormatError(KafkaError):
    """Magic v0/v1 batches: the log stores only the v2 format."""

    error_code = 43
    name = "UNSUPPORTED_FOR_MESSAGE_FORMAT"


class KafkaStorageError(KafkaError):
    """Disk full or an I/O error: the log stays readable up to its last complete batch."""

    error_code = 56
    retriable = True
    name = "KAFKA_STORAGE_ERROR"


class UnsupportedCompressionTypeError(KafkaError):
    error_code = 76
    name = "UNSUPPORTED_COMPRESSION_TYPE"


class InvalidRecordError(KafkaError):
    """A well-formed batch that breaks a rule: count mismatch, control batch from a client, no key
    on a compacted topic."""

    error_code = 87
    name = "INVALID_RECORD"


_BY_CODE: dict[int, type[KafkaError]] = {
    cls.error_code: cls
    for cls in (
        UnknownServerError,
        OffsetOutOfRangeError,
        CorruptRecordError,
        UnknownTopicOrPartitionError,
        MessageTooLargeError,
        InvalidTopicError,
        RecordListTooLargeError,
        InvalidTimestampError,
        UnsupportedForMessageFormatError,
        KafkaStorageError,
        UnsupportedCompressionTypeError,
        InvalidRecordError,
    )
}


def for_code(code: int) -> type[KafkaError]:
    """The exception class for a Kafka error code (``UnknownServerError`` for codes not listed)."""
    return _BY_CODE.get(code, UnknownServerError)
