"""One thin handler per Kafka API (decode, check, delegate, answer) and the registry driving dispatch and ApiVersions."""
