"""Kafka wire-level building blocks with no I/O: error codes, record batches, compression codecs."""
