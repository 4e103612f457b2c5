"""Property: any sequence of appends, truncations, rolls, flushes and reopenings reads back exactly
what a simple model (a list of records) says remains."""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from logtesting import client_batch, read_all

from tidelog.broker.log.config import LogConfig
from tidelog.broker.log.log import PartitionLog

NOW = 1_700_000_000_000
CONFIG = LogConfig(segment_bytes=2048, index_interval_bytes=64, segment_index_bytes=256)

appends = st.tuples(
    st.just("append"),
    st.lists(st.binary(min_size=0, max_size=300), min_size=1, max_size=6),
    st.sampled_from([0, 1, 2, 3, 4]),
)
truncations = st.tuples(st.just("truncate"), st.integers(min_value=0, max_value=200), st.just(0))
others = st.tuples(st.sampled_from(["roll", "flush", "reopen", "reopen_unclean"]), st.just(None), st.just(0))
operations = st.lists(st.one_of(appends, appends, appends, truncations, others), min_size=1, max_size=40)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=operations, max_bytes=st.sampled_from([1, 100, 700, 1 << 20]))
def test_any_history_reads_back_what_remains(ops: list[tuple[str, object, int]], max_bytes: int) -> None:
    root = Path(tempfile.mkdtemp())
    try:
        directory = root / "p-0"
        plog = PartitionLog.open(directory, CONFIG)
        model: list[bytes] = []  # value at each offset
        batch_starts: list[int] = []  # base offsets of the batches in the model
        for op, arg, codec in ops:
            if op == "append":
                values = list(arg)  # type: ignore[call-overload]
                info = plog.append_as_leader(memoryview(client_batch(values, codec=codec)), clock_ms=NOW)
                assert info.first_offset == len(model)
                batch_starts.append(len(model))
                model.extend(values)
            elif op == "truncate":
                target = min(int(arg), len(model))  # type: ignore[call-overload]
                # the log drops the whole batch holding ``target``
                cut = target
                if target < len(model):
                    cut = max(b for b in batch_starts if b <= target)
                plog.truncate_to(target)
                del model[cut:]
                batch_starts = [b for b in batch_starts if b < cut]
            elif op == "roll":
                plog.roll(NOW)
            elif op == "flush":
                plog.flush()
            elif op == "reopen":
                plog.close()
                plog = PartitionLog.open(directory, CONFIG, recovery_point=plog.recovery_point)
            elif op == "reopen_unclean":
                # no flush, no close: a recovery point of 0 rescans everything
                plog = PartitionLog.open(directory, CONFIG, recovery_point=0)
            assert plog.log_end_offset == len(model)
        records = read_all(plog, max_bytes=max_bytes)
        assert [r.offset for r in records] == list(range(len(model)))
        assert [r.value for r in records] == model
    finally:
        shutil.rmtree(root)


@settings(max_examples=25, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=1, max_value=400), min_size=1, max_size=60),
    start=st.integers(min_value=0, max_value=80),
    max_bytes=st.integers(min_value=1, max_value=3000),
    hw=st.integers(min_value=0, max_value=80),
)
def test_reads_are_batch_aligned_bounded_and_below_the_high_watermark(
    sizes: list[int], start: int, max_bytes: int, hw: int
) -> None:
    root = Path(tempfile.mkdtemp())
    try:
        plog = PartitionLog.open(root / "p-0", dataclasses.replace(CONFIG, segment_bytes=1 << 20))
        for size in sizes:
            plog.append_as_leader(memoryview(client_batch([b"x" * size])), clock_ms=NOW)
        start = min(start, plog.log_end_offset)
        info = plog.read(start, max_bytes, max_offset=hw)
        if info.region is None:
            assert start >= min(hw, plog.log_end_offset)
            return
        data = info.region.read()
        info.release()
        from logtesting import iter_batches

        headers = [h for h, _ in iter_batches(data)]
        assert sum(h.size for h in headers) == len(data)
        assert headers[0].base_offset <= start <= headers[0].last_offset
        assert headers[-1].last_offset < hw
        assert len(data) <= max_bytes or len(headers) == 1
    finally:
        shutil.rmtree(root)
