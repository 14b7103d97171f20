"""Alerts without fatigue: specs, the pure fatigue policy, anomalies, delivery, the alerter."""
