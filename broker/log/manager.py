"""The log manager: every partition log of one data directory, and the one background task that
flushes, checkpoints, applies retention and runs compaction.

Layout: ``<data>/<topic>-<partition>/`` per log, the three checkpoint files, and a ``.lock`` held
with ``flock`` so two brokers never share a directory. fsyncs and compaction run in worker threads
on pinned descriptors; everything that changes a log's segment list runs on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tidelog.broker.log import checkpoint, cleaner, layout, retention
from tidelog.broker.log.config import LONG_MAX, LogConfig
from tidelog.broker.log.files import HandleCache
from tidelog.broker.log.io import DEFAULT_IO, FileIO
from tidelog.broker.log.log import PartitionLog, now_ms
from tidelog.broker.protocol.errors import KafkaStorageError

log = logging.getLogger(__name__)

TopicPartition = tuple[str, int]
_LOG_DIR = re.compile(r"^(?P<topic>[A-Za-z0-9._-]+)-(?P<partition>\d+)$")
_DELETED_DIR = re.compile(r"^.+-\d+\.[0-9a-f]{32}-delete$")


@dataclass(frozen=True, slots=True)
class ManagerSettings:
    """Broker-level log settings (Kafka's ``log.*`` names in comments)."""

    max_open_files: int = 1024
    tick_ms: int = 1000
    retention_check_interval_ms: int = 300_000  # log.retention.check.interval.ms
    checkpoint_interval_ms: int = 60_000  # log.flush.offset.checkpoint.interval.ms
    cleaner_backoff_ms: int = 15_000  # log.cleaner.backoff.ms
    cleaner_enable: bool = True  # log.cleaner.enable


class LogManager:
    """Owns the logs of one data directory. Create with ``open``; stop with ``close``."""

    def __init__(
        self,
        data_dir: Path,
        default_config: LogConfig,
        settings: ManagerSettings,
        io: FileIO,
        topic_config: Callable[[str], LogConfig] | None,
        high_watermark: Callable[[TopicPartition], int] | None,
    ) -> None:
        self.data_dir = data_dir
        self.default_config = default_config
        self.settings = settings
        self.io = io
        self.cache = HandleCache(settings.max_open_files)
        self._topic_config = topic_config
        self._high_watermark = high_watermark
        self.logs: dict[TopicPartition, PartitionLog] = {}
        self.cleaner_offsets: dict[TopicPartition, int] = {}
        self._lock_fd = -1
        self._task: asyncio.Task[None] | None = None
        self._last = {"retention": 0, "checkpoint": 0, "cleaner": 0}

    @classmethod
    def open(
        cls,
        data_dir: Path,
        default_config: LogConfig | None = None,
        *,
        settings: ManagerSettings | None = None,
        io: FileIO = DEFAULT_IO,
        topic_config: Callable[[str], LogConfig] | None = None,
        high_watermark: Callable[[TopicPartition], int] | None = None,
        node_id: int | None = None,
    ) -> LogManager:
        """Lock ``data_dir``, check its format and owner (``layout``; ``node_id`` None: any owner),
        and open (recovering as needed) every log in it."""
        data_dir.mkdir(parents=True, exist_ok=True)
        self = cls(
            data_dir, default_config or LogConfig(), settings or ManagerSettings(), io, topic_config, high_watermark
        )
        self._lock()
        try:
            layout.check_and_stamp(data_dir, node_id, io)
        except BaseException:
            self._unlock()
            raise
        recovery = checkpoint.read(data_dir / checkpoint.RECOVERY_POINT)
        starts = checkpoint.read(data_dir / checkpoint.LOG_START_OFFSET)
        self.cleaner_offsets = checkpoint.read(data_dir / checkpoint.CLEANER_OFFSET)
        for path in sorted(data_dir.iterdir()):
            if _DELETED_DIR.match(path.name):
                shutil.rmtree(path, ignore_errors=True)
                continue
            match = _LOG_DIR.match(path.name)
            if not match or not path.is_dir():
                continue
            tp = (match["topic"], int(match["partition"]))
            self.logs[tp] = PartitionLog.open(
                path,
                self.config_for(tp[0]),
                recovery_point=recovery.get(tp, 0),
                log_start_offset=starts.get(tp, 0),
                io=io,
                cache=self.cache,
            )
        # Everything just recovered is now the trusted prefix for the next start.
        self.checkpoint()
        return self

    def _lock(self) -> None:
        fd = os.open(self.data_dir / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise KafkaStorageError(f"{self.data_dir} is in use by another broker (lock held)") from None
        self._lock_fd = fd

    def _unlock(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    def set_high_watermark_source(self, high_watermark: Callable[[TopicPartition], int]) -> None:
        """Retention never deletes at or above a partition's high watermark (replication owns it)."""
        self._high_watermark = high_watermark

    def config_for(self, topic: str) -> LogConfig:
        return self._topic_config(topic) if self._topic_config else self.default_config

    # -- logs ------------------------------------------------------------------------------------

    def get(self, topic: str, partition: int) -> PartitionLog | None:
        return self.logs.get((topic, partition))

    def get_or_create(self, topic: str, partition: int, config: LogConfig | None = None) -> PartitionLog:
        tp = (topic, partition)
        existing = self.logs.get(tp)
        if existing is not None:
            return existing
        if not _LOG_DIR.match(f"{topic}-{partition}"):
            raise ValueError(f"invalid topic partition {topic!r}/{partition}")
        created = PartitionLog.open(
            self.data_dir / f"{topic}-{partition}", config or self.config_for(topic), io=self.io, cache=self.cache
        )
        self.logs[tp] = created
        return created

    def update_config(self, topic: str, config: LogConfig) -> None:
        """New settings for every partition of ``topic`` (they apply to new segments and checks)."""
        for (name, _), plog in self.logs.items():
            if name == topic:
                plog.config = config
                for segment in plog.segments:
                    segment.config = config

    def delete(self, topic: str, partition: int) -> None:
        """Remove a partition: its directory is renamed ``*-delete`` and removed."""
        plog = self.logs.pop((topic, partition), None)
        if plog is None:
            return
        for segment in plog.segments:
            segment.close()
        target = plog.directory.with_name(f"{plog.directory.name}.{uuid.uuid4().hex}-delete")
        self.io.rename(plog.directory, target)
        self.cleaner_offsets.pop((topic, partition), None)
        shutil.rmtree(target, ignore_errors=True)

    def __iter__(self) -> Iterator[tuple[TopicPartition, PartitionLog]]:
        return iter(list(self.logs.items()))

    # -- background work -------------------------------------------------------------------------

    def checkpoint(self) -> None:
        """Write the recovery points, log start offsets and cleaner offsets atomically."""
        d = self.data_dir
        checkpoint.write(self.io, d / checkpoint.RECOVERY_POINT, {tp: lg.recovery_point for tp, lg in self})
        checkpoint.write(self.io, d / checkpoint.LOG_START_OFFSET, {tp: lg.log_start_offset for tp, lg in self})
        checkpoint.write(self.io, d / checkpoint.CLEANER_OFFSET, dict(self.cleaner_offsets))

    async def flush_rolled(self, plog: PartitionLog) -> None:
        """fsync inactive segments with unsynced data (Kafka flushes a segment once it rolls), in a
        thread, then move the recovery point to the start of the active segment."""
        segments = [s for s in plog.segments[:-1] if s.dirty]
        if not segments:
            return
        target = plog.active.base_offset
        fds = [s.handle.pin() for s in segments]
        try:
            await asyncio.to_thread(_fdatasync_all, fds)
        finally:
            for segment in segments:
                segment.handle.unpin()
        for segment in segments:
            if segment in plog.segments:
                segment.offset_index.flush()
                segment.time_index.flush()
                segment.dirty = False
        if all(s in plog.segments for s in segments):
            plog.recovery_point = max(plog.recovery_point, min(target, plog.log_end_offset))

    async def tick(self, now: int | None = None) -> None:
        """One round of background work (the loop in ``run`` calls it every ``tick_ms``)."""
        now = now if now is not None else now_ms()
        s = self.settings
        for tp, plog in self:
            if plog.offline_reason is not None:
                continue
            try:
                await self.flush_rolled(plog)
                config = plog.config
                if (
                    config.flush_ms < LONG_MAX
                    and plog.unflushed_messages
                    and now - plog.last_flush_ms >= config.flush_ms
                ):
                    plog.flush(now)
                plog.purge_deleted(now)
            except (OSError, KafkaStorageError) as exc:
                plog.offline_reason = f"background flush failed: {exc}"
                log.error("%s-%d taken offline: %s", tp[0], tp[1], exc)
        if now - self._last["retention"] >= s.retention_check_interval_ms:
            self._last["retention"] = now
            self.apply_retention(now)
        if s.cleaner_enable and now - self._last["cleaner"] >= s.cleaner_backoff_ms:
            self._last["cleaner"] = now
            await self.compact(now)
        if now - self._last["checkpoint"] >= s.checkpoint_interval_ms:
            self._last["checkpoint"] = now
            self.checkpoint()

    def apply_retention(self, now: int) -> int:
        removed = 0
        for tp, plog in self:
            hw = self._high_watermark(tp) if self._high_watermark else plog.log_end_offset
            removed += retention.apply_retention(plog, now, hw)
        return removed

    async def compact(self, now: int) -> int:
        """Compact every log that needs it, one at a time, each in a worker thread."""
        cleaned = 0
        for tp, plog in self:
            job = cleaner.plan(plog, self.cleaner_offsets.get(tp, 0), now)
            if job is None:
                continue
            await asyncio.to_thread(job.run)
            if self.logs.get(tp) is plog and job.install():
                self.cleaner_offsets[tp] = job.end_offset
                cleaned += 1
                log.info(
                    "%s-%d compacted: %d records removed, %d -> %d bytes",
                    tp[0],
                    tp[1],
                    job.records_removed,
                    job.bytes_before,
                    job.bytes_after,
                )
        return cleaned

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.settings.tick_ms / 1000)
            try:
                await self.tick()
            except Exception:
                log.exception("log manager background work failed; retrying next tick")

    def start(self) -> None:
        """Start the background task on the running loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="log-manager")

    async def close(self) -> None:
        """Stop background work, flush every log, checkpoint, release the directory lock."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.close_sync()

    def close_sync(self) -> None:
        for tp, plog in self:
            try:
                plog.close()
            except (OSError, KafkaStorageError) as exc:
                log.error("%s-%d: flush at shutdown failed: %s", tp[0], tp[1], exc)
        self.checkpoint()
        self._unlock()


def _fdatasync_all(fds: list[int]) -> None:
    for fd in fds:
        os.fdatasync(fd)
