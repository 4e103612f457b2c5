"""Child process for the crash test: appends as fast as it can through a LogManager, reporting on
stdout each append (``A <last offset>``) and each flush + checkpoint (``F <recovery point>``)."""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "support"))

from crash_child_check import value_for  # each value derives from its offset: the parent checks every byte

from tidelog.broker.log.config import LogConfig
from tidelog.broker.log.manager import LogManager
from tidelog.broker.protocol.records import Record, build_batch

CONFIG = LogConfig(segment_bytes=2 * 1024 * 1024, index_interval_bytes=4096, max_message_bytes=1 << 20)


def main() -> None:
    data_dir = Path(sys.argv[1])
    seed = int(sys.argv[2])
    rng = random.Random(seed)
    manager = LogManager.open(data_dir, CONFIG)
    plog = manager.get_or_create("crash", 0)
    out = sys.stdout.fileno()
    appended = 0
    while True:
        base = plog.log_end_offset
        count = rng.randint(1, 20)
        size = rng.choice([10, 100, 1000, 20_000])
        records = [Record(i, 1_700_000_000_000 + base + i, None, value_for(base + i, size)) for i in range(count)]
        batch = bytearray(build_batch(records, compression=rng.choice([0, 0, 3])))
        info = plog.append_as_leader(memoryview(batch))
        os.write(out, f"A {info.last_offset}\n".encode())
        appended += 1
        if appended % 25 == 0:
            plog.flush()
            manager.checkpoint()
            os.write(out, f"F {plog.recovery_point}\n".encode())


if __name__ == "__main__":
    main()
