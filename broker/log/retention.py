"""Which old segments to delete: the log start offset, ``retention.ms`` and ``retention.bytes``.

Kafka's rules: a segment goes only when its successor starts at or below the high watermark (data
consumers may still be catching up to is never removed early), oldest first, never the active
segment (it is rolled first when it alone breaches ``retention.ms``). Time and size rules apply
only to ``cleanup.policy`` containing ``delete``; the log start offset rule always applies.
"""

from __future__ import annotations

from tidelog.broker.log.log import PartitionLog
from tidelog.broker.log.segment import LogSegment


def _deletable(log: PartitionLog, high_watermark: int) -> list[LogSegment]:
    """Inactive segments that lie wholly below the high watermark, oldest first."""
    out = []
    for segment, successor in zip(log.segments, log.segments[1:], strict=False):
        if successor.base_offset > high_watermark:
            break
        out.append(segment)
    return out


def expired_segments(log: PartitionLog, now_ms: int, high_watermark: int) -> list[LogSegment]:
    """The oldest segments that retention removes now."""
    config = log.config
    candidates = _deletable(log, high_watermark)
    doomed: list[LogSegment] = []
    successors = {id(s): n for s, n in zip(log.segments, log.segments[1:], strict=False)}
    for segment in candidates:
        if successors[id(segment)].base_offset <= log.log_start_offset:
            doomed.append(segment)
        else:
            break
    if not config.delete:
        return doomed
    remaining = candidates[len(doomed) :]
    if config.retention_ms >= 0:
        for segment in remaining:
            if now_ms - segment.largest_timestamp > config.retention_ms:
                doomed.append(segment)
            else:
                break
        remaining = candidates[len(doomed) :]
    if config.retention_bytes >= 0:
        excess = log.size_bytes - sum(s.size for s in doomed) - config.retention_bytes
        for segment in remaining:
            if excess - segment.size < 0:
                break
            doomed.append(segment)
            excess -= segment.size
    return doomed


def apply_retention(log: PartitionLog, now_ms: int, high_watermark: int | None = None) -> int:
    """Delete what retention allows; returns the number of segments removed."""
    hw = log.log_end_offset if high_watermark is None else high_watermark
    active = log.active
    if (
        log.config.delete
        and log.config.retention_ms >= 0
        and active.size > 0
        and now_ms - active.largest_timestamp > log.config.retention_ms
        and log.log_end_offset <= hw
    ):
        log.roll(now_ms)  # the active segment alone breaches retention: roll it so it can go
    doomed = expired_segments(log, now_ms, hw)
    if doomed:
        log.delete_segments(doomed, now_ms)
    return len(doomed)
