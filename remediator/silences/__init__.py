"""Silences: what Alertmanager says a human is on, read before acting (``watch``)."""
