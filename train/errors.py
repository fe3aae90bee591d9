"""The error a training loop raises when a run cannot start or has to stop."""

from __future__ import annotations


class TrainingError(RuntimeError):
    """Training cannot start or had to stop; the message says why and what was kept."""
