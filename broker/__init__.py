"""Tidelog broker: a Kafka-compatible partitioned log.

Subpackages, lowest layer first (checked by import-linter, see pyproject.toml):
``protocol`` (wire types, record batches, errors; no I/O) → ``log`` (segmented partition logs)
→ ... → ``cli``.
"""
