"""HealthStream edge: the only synchronous surface, answering from a read model."""
