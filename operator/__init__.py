"""Tidelog operator (kopf): reconciles Cluster and Topic resources. Imported as ``tidelog.operator``."""
