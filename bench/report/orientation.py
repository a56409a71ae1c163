"""How the report words the metric's direction: a loss (lower is better) or a maximized score (higher is better)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Words:
    direction: str  # minimize | maximize
    noun: str  # what the values are: "loss", or a maximized metric's own name (e.g. "accuracy")
    best: str  # the good end: "lowest" | "highest"
    better: str  # "lower is better" | "higher is better"
    sign: int  # +1 | -1: sign * value is lower-is-better (bench.spec.loss_sign)


def words(doc: dict[str, Any]) -> Words:
    """The document's direction (a report.json from before `direction` existed minimized a loss)."""
    if (doc.get("settings") or {}).get("direction", "minimize") == "minimize":
        return Words("minimize", "loss", "lowest", "lower is better", 1)
    return Words("maximize", str(doc.get("metric") or "score"), "highest", "higher is better", -1)
