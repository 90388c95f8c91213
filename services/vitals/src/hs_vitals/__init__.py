"""HealthStream vitals: wearable streams and real-time clinical alerts."""
