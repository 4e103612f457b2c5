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
    """``cluster=True``: blocks come from the cluster's metadata store (``add_block``), which never
    hands one out twice, so nothing is kept in the data directory and a wiped broker reuses nothing."""

    def __init__(self, data_dir: Path, io: FileIO = DEFAULT_IO, *, node_id: int = 0, cluster: bool = False) -> None:
        self.path = data_dir / FILE
        self.io = io
        self.cluster = cluster
        self.next_id = self.block_end = node_id << NODE_BITS
        if cluster:
            self.next_id = self.block_end = 0
        elif self.path.exists():
            persisted = int(json.loads(self.path.read_text())["block_end"])
            self.next_id = self.block_end = max(persisted, self.block_end)

    def needs_block(self) -> bool:
        """A cluster member whose block is used up: get the next from the store first."""
        return self.cluster and self.next_id >= self.block_end

    def add_block(self, start: int) -> None:
        self.next_id, self.block_end = start, start + BLOCK

    def _new_id(self) -> int:
        if self.cluster and self.next_id >= self.block_end:
            raise RuntimeError("no producer id block: call add_block first")
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
