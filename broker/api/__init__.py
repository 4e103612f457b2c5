"""One thin handler per Kafka API (decode, check, delegate, answer); the registry drives dispatch and ApiVersions."""
