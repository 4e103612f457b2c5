"""Keep pytest able to report failures whose traceback has an entry without a line number.

CPython 3.11 leaves ``tb_lineno`` as ``None`` for an exception raised at an instruction that has no
line (seen in e2e: a failure inside an async generator's cleanup under ``asyncio.wait_for``). pytest
9.0.1 computes ``tb_lineno - 1`` while formatting the failure, raises TypeError there, and the whole
session stops with INTERNALERROR, hiding the real failure. ``install()`` makes such an entry report
the frame's current line (or the function's first line) instead. Installed by both conftests.
"""

from __future__ import annotations

from types import TracebackType

from _pytest._code import code


def entry_line(raw: TracebackType) -> int:
    """The 1-based line a traceback entry points at, never ``None``."""
    if raw.tb_lineno is not None:
        return raw.tb_lineno
    frame_line = raw.tb_frame.f_lineno
    return frame_line if frame_line is not None else raw.tb_frame.f_code.co_firstlineno


def _lineno(self: code.TracebackEntry) -> int:
    return entry_line(self._rawentry) - 1


def install() -> None:
    code.TracebackEntry.lineno = property(_lineno)  # type: ignore[assignment,method-assign]
