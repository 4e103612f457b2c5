"""Prometheus metrics of the broker, served on their own port."""
