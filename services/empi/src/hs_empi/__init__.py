"""HealthStream EMPI: one person, one record."""
