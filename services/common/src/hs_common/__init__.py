"""HealthStream shared runtime: schema catalogue, codec with sealed fields, Kafka clients,
exactly-once processing, dead letters, settings, metrics and logs."""
