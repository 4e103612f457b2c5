"""Cluster metadata: topics, partitions, configs and topic ids (standalone backend now; etcd and Kubernetes later)."""
