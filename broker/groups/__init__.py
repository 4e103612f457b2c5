"""Coordination above the logs: idempotent producers (producer ids, per-partition sequence state);
the consumer group coordinator joins here with its issue."""
