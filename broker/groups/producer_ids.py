"""Producer ids for idempotent producers (InitProducerId), unique for the life of the data directory.

Ids are handed out from blocks: the end of the current block is persisted before any id in it is
used (``tidelog-producer-ids.json``, written atomically), so a restart never reuses an id and the
file is written once per ``BLOCK`` ids. Every broker hands out ids on its own, so a cluster member
draws them from its own range, ``node_id << NODE_BITS`` upwards (node 0, a lone broker, from 0): two
brokers never give two producers the same id. An idempotent producer asking again with its id and epoch
(KIP-360) gets the same id with the epoch bumped, or a new id once the epoch would overflow.
"""

from __future__ import annotations

import json
from pathlib import Path

from tidelog.broker.log.io import DEFAULT_IO, FileIO

FILE = "tidelog-producer-ids.json"
BLOCK = 1000
MAX_EPOCH = 2**15 - 1
NODE_BITS = 40  # ids per broker: 2^40; node ids up to 2^23 keep every id a positive int64


class ProducerIdManager:
    def __init__(self, data_dir: Path, io: FileIO = DEFAULT_IO, *, node_id: int = 0) -> None:
        self.path = data_dir / FILE
        self.io = io
        self.next_id = self.block_end = node_id << NODE_BITS
        if self.path.exists():
            persisted = int(json.loads(self.path.read_text())["block_end"])
            self.next_id = self.block_end = max(persisted, self.block_end)

    def _new_id(self) -> int:
        if self.next_id >= self.block_end:
            self.block_end = self.next_id + BLOCK
            self.io.write_file_atomically(self.path, json.dumps({"block_end": self.block_end}).encode())
        producer_id = self.next_id
        self.next_id += 1
        return producer_id

    def init(self, producer_id: int = -1, epoch: int = -1) -> tuple[int, int]:
        """(producer id, epoch) for an idempotent producer: new, or the caller's with a bumped epoch."""
        if producer_id >= 0 and 0 <= epoch < MAX_EPOCH - 1 and producer_id < self.next_id:
            return producer_id, epoch + 1
        return self._new_id(), 0
