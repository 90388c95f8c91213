"""HealthStream ingestion: the single door into the platform."""
