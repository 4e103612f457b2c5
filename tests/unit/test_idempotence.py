"""Idempotent producers: duplicates answered with their original offsets, gaps and old epochs
refused with Kafka's codes, state rebuilt from snapshots and the log after a restart."""

from __future__ import annotations

from pathlib import Path

import pytest
from logtesting import client_batch, read_all

from tidelog.broker.groups import producer_state
from tidelog.broker.groups.idempotence import Idempotence
from tidelog.broker.groups.producer_ids import BLOCK, ProducerIdManager
from tidelog.broker.log.config import LogConfig
from tidelog.broker.log.log import PartitionLog
from tidelog.broker.protocol.errors import KafkaError

TP = ("t", 0)
CONFIG = LogConfig(segment_bytes=4096)


def batch(pid: int, epoch: int, seq: int, n: int = 2) -> memoryview:
    data = client_batch([b"s%d-%d" % (seq, i) for i in range(n)], producer_id=pid, base_sequence=seq)
    data[51:53] = epoch.to_bytes(2, "big")  # producerEpoch (kafka-python's builder sets 0)
    import struct

    from tidelog.broker.protocol import batch as rb

    struct.pack_into(">I", data, rb.CRC_OFFSET, rb.batch_crc(data, 0, len(data)))
    return memoryview(data)


def test_retries_get_the_original_offsets(tmp_path: Path) -> None:
    plog = PartitionLog.open(tmp_path / "t-0", CONFIG)
    idem = Idempotence(tmp_path)
    first = idem.append(TP, plog, batch(7, 0, 0))
    second = idem.append(TP, plog, batch(7, 0, 2))
    assert (first.first_offset, second.first_offset) == (0, 2)
    again = idem.append(TP, plog, batch(7, 0, 0))  # a retry of the first batch
    assert again.duplicate
    assert again.first_offset == 0
    assert plog.log_end_offset == 4
    assert len(read_all(plog)) == 4


@pytest.mark.parametrize(
    ("pid", "epoch", "seq", "code"),
    [(7, 0, 5, 45), (7, 0, 1, 45), (9, 0, 3, 45), (7, 1, 2, 45)],
    ids=["gap", "overlap", "new-producer-not-at-zero", "new-epoch-not-at-zero"],
)
def test_bad_sequences_are_refused(tmp_path: Path, pid: int, epoch: int, seq: int, code: int) -> None:
    plog = PartitionLog.open(tmp_path / "t-0", CONFIG)
    idem = Idempotence(tmp_path)
    idem.append(TP, plog, batch(7, 0, 0))
    with pytest.raises(KafkaError) as info:
        idem.append(TP, plog, batch(pid, epoch, seq))
    assert info.value.error_code == code
    assert plog.log_end_offset == 2  # nothing appended


def test_old_epochs_are_fenced_and_new_epochs_restart_at_zero(tmp_path: Path) -> None:
    plog = PartitionLog.open(tmp_path / "t-0", CONFIG)
    idem = Idempotence(tmp_path)
    idem.append(TP, plog, batch(7, 3, 0))
    assert idem.append(TP, plog, batch(7, 4, 0)).first_offset == 2
    with pytest.raises(KafkaError) as info:
        idem.append(TP, plog, batch(7, 3, 2))
    assert info.value.error_code == 47


def test_state_survives_restart_from_snapshot_and_log(tmp_path: Path) -> None:
    plog = PartitionLog.open(tmp_path / "t-0", CONFIG)
    idem = Idempotence(tmp_path)
    for seq in range(0, 40, 2):
        idem.append(TP, plog, batch(7, 0, seq))
    idem.snapshot({TP: plog}, now_ms=1_700_000_000_000)
    for seq in range(40, 60, 2):  # after the snapshot: only in the log
        idem.append(TP, plog, batch(7, 0, seq))
    plog.close()
    reopened = PartitionLog.open(tmp_path / "t-0", CONFIG, recovery_point=0)
    idem2 = Idempotence(tmp_path)
    retry = idem2.append(TP, reopened, batch(7, 0, 58))
    assert retry.duplicate
    assert retry.first_offset == 58
    assert idem2.append(TP, reopened, batch(7, 0, 60)).first_offset == 60
    assert list(tmp_path.glob("t-0/*.producer-state.json"))


def test_expiry_forgets_idle_producers(tmp_path: Path) -> None:
    plog = PartitionLog.open(tmp_path / "t-0", CONFIG)
    idem = Idempotence(tmp_path, expiration_ms=1000)
    idem.append(TP, plog, batch(7, 0, 0))
    last_ts = idem.tables[TP].producers[7].last_timestamp
    idem.snapshot({TP: plog}, now_ms=last_ts + 5000)
    assert 7 not in idem.tables[TP].producers
    assert producer_state.load(plog).producers == {}  # the snapshot after expiry is what a restart loads


def test_producer_ids_are_never_reused_across_restarts(tmp_path: Path) -> None:
    ids = ProducerIdManager(tmp_path)
    first = [ids.init()[0] for _ in range(5)]
    again = ProducerIdManager(tmp_path)
    assert again.init()[0] >= BLOCK > max(first)
    assert ids.init(first[0], 3) == (first[0], 4)  # KIP-360 epoch bump
