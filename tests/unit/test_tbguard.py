"""tbguard: pytest formats a failure whose traceback has an entry without a line number."""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator

from _pytest._code import ExceptionInfo
from tbguard import entry_line


def _paused_generator() -> Iterator[int]:
    try:
        yield 1
    finally:
        pass


_KEEP: list[Iterator[int]] = []  # the generators stay suspended (not finalised) while tested


def _lineless_traceback() -> types.TracebackType:
    """A traceback entry at an instruction of a suspended generator that has no line (CPython 3.11)."""
    gen = _paused_generator()
    next(gen)
    _KEEP.append(gen)
    frame = gen.gi_frame
    assert frame is not None
    for lasti in range(0, len(frame.f_code.co_code), 2):
        tb = types.TracebackType(None, frame, lasti, -1)
        if tb.tb_lineno is None:
            return tb
    raise AssertionError(f"no line-less instruction in {frame.f_code.co_name} on {sys.version}")


def test_entry_line_falls_back_to_the_frame() -> None:
    tb = _lineless_traceback()
    assert tb.tb_lineno is None
    assert entry_line(tb) == tb.tb_frame.f_lineno == _paused_generator.__code__.co_firstlineno + 2  # `yield 1`


def test_pytest_formats_such_a_failure() -> None:
    tb = _lineless_traceback()
    error = RuntimeError("raised where no line is")
    excinfo = ExceptionInfo.from_exc_info((RuntimeError, error, tb))
    text = str(excinfo.getrepr(style="long"))
    assert "RuntimeError: raised where no line is" in text
    assert "_paused_generator" in text or "yield 1" in text
