"""The Kafka listener: connections, framing, dispatch by API key and version, lifecycle."""
