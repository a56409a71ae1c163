"""bench: hyperparameter-fair benchmarking of model variants (tune every depth, compare the best of each)."""

from __future__ import annotations

__version__ = "0.1.0"
