"""The project's own asyncio Kafka client (the CLI, follower replication): connections, requests, producer and fetcher helpers."""
