"""Drift methods computed from aggregate summaries, mirroring Evidently 0.7.23's legacy stattests."""

from detectors.methods.base import DriftMethod, DriftScore
from detectors.methods.registry import ALIASES, METHODS, get_method, methods_for

__all__ = ["ALIASES", "METHODS", "DriftMethod", "DriftScore", "get_method", "methods_for"]
