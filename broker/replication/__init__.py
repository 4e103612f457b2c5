"""Partition replication: leader and follower replicas, ISR, high watermark, leader epochs."""
