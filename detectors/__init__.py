"""Drift, data-quality and performance-decay detectors (issue 3); nothing here yet."""
