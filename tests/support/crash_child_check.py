"""The crash child's value function, importable by the parent test."""

from __future__ import annotations

import struct


def value_for(offset: int, size: int) -> bytes:
    return (struct.pack(">q", offset) * (size // 8 + 1))[:size]
