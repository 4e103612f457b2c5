"""Partition logs: segmented, append-only files of v2 record batches (the only writer of partition data).

Modules: ``config`` (topic-level log settings, Kafka's names), ``io`` (the file-system seam tests
inject faults into), ``files`` (open-file budget), ``index`` (offset and time indexes), ``segment``
(one ``.log`` file with its indexes), ``appender`` (validating produced batches), ``log`` (one
partition), ``retention``, ``cleaner`` (compaction), ``checkpoint``, ``manager`` (many partitions and
the background work).
"""
