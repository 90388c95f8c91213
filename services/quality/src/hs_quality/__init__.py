"""HealthStream quality: data-quality checks declared as data, scored as records stream."""
