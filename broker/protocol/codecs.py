"""Kafka's batch compression codecs: none, gzip, snappy (xerial framing), lz4 (frame), zstd.

Used off the hot path only (compaction, timestamp lookups, tests): the broker stores and serves
compressed batches exactly as producers sent them.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from collections.abc import Callable

import cramjam
import lz4.frame
import zstandard

from tidelog.broker.protocol.errors import CorruptRecordError, UnsupportedCompressionTypeError

NONE, GZIP, SNAPPY, LZ4, ZSTD = 0, 1, 2, 3, 4
NAMES = {NONE: "none", GZIP: "gzip", SNAPPY: "snappy", LZ4: "lz4", ZSTD: "zstd"}
BY_NAME = {name: code for code, name in NAMES.items()}

# Java's xerial SnappyOutputStream framing: magic, version 1, compatible version 1, then blocks of
# (int32 compressed length, raw snappy block). librdkafka may send unframed raw snappy instead.
_XERIAL_MAGIC = b"\x82SNAPPY\x00"
_XERIAL_HEADER = _XERIAL_MAGIC + struct.pack(">ii", 1, 1)
_XERIAL_BLOCK = 32 * 1024
_INT32 = struct.Struct(">i")


def _snappy_compress(data: bytes | memoryview) -> bytes:
    out = bytearray(_XERIAL_HEADER)
    view = memoryview(data)
    for start in range(0, len(view), _XERIAL_BLOCK):
        block = bytes(cramjam.snappy.compress_raw(view[start : start + _XERIAL_BLOCK]))
        out += _INT32.pack(len(block))
        out += block
    return bytes(out)


def _snappy_decompress(data: bytes | memoryview) -> bytes:
    view = memoryview(data)
    if bytes(view[:8]) != _XERIAL_MAGIC:
        return bytes(cramjam.snappy.decompress_raw(view))
    out = bytearray()
    pos = len(_XERIAL_HEADER)
    while pos < len(view):
        if pos + 4 > len(view):
            raise CorruptRecordError("truncated xerial snappy block length")
        (length,) = _INT32.unpack_from(view, pos)
        pos += 4
        if length < 0 or pos + length > len(view):
            raise CorruptRecordError("xerial snappy block overruns the batch")
        out += bytes(cramjam.snappy.decompress_raw(view[pos : pos + length]))
        pos += length
    return bytes(out)


def _zstd_decompress(data: bytes | memoryview) -> bytes:
    # Producers' frames may omit the content size: stream-decompress instead of one-shot.
    return zstandard.ZstdDecompressor().decompressobj().decompress(bytes(data))


_COMPRESS: dict[int, Callable[[bytes | memoryview], bytes]] = {
    NONE: bytes,
    GZIP: lambda data: gzip.compress(bytes(data), compresslevel=6),
    SNAPPY: _snappy_compress,
    # Independent blocks: Kafka's Java LZ4 stream reads the frame format without block linking.
    LZ4: lambda data: lz4.frame.compress(bytes(data), block_linked=False),
    ZSTD: lambda data: zstandard.ZstdCompressor(level=3).compress(bytes(data)),
}

_DECOMPRESS: dict[int, Callable[[bytes | memoryview], bytes]] = {
    NONE: bytes,
    GZIP: lambda data: gzip.decompress(bytes(data)),
    SNAPPY: _snappy_decompress,
    LZ4: lambda data: lz4.frame.decompress(bytes(data)),
    ZSTD: _zstd_decompress,
}


def compress(codec: int, data: bytes | memoryview) -> bytes:
    """Compress ``data`` as Kafka's ``codec`` (attribute bits 0-2) writes it."""
    try:
        return _COMPRESS[codec](data)
    except KeyError:
        raise UnsupportedCompressionTypeError(f"unknown compression codec {codec}") from None


def decompress(codec: int, data: bytes | memoryview) -> bytes:
    """Decompress a batch's record block; a damaged block raises ``CorruptRecordError``."""
    try:
        fn = _DECOMPRESS[codec]
    except KeyError:
        raise UnsupportedCompressionTypeError(f"unknown compression codec {codec}") from None
    try:
        return fn(data)
    except (OSError, EOFError, ValueError, RuntimeError, zlib.error, zstandard.ZstdError) as exc:
        raise CorruptRecordError(f"cannot decompress {NAMES[codec]} batch: {exc}") from exc
