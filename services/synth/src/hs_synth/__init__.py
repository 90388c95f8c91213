"""Seeded synthetic health data for HealthStream: people, institutions with their own habits,
clinical courses and noise with ground truth kept apart, and a tool that replays it."""
