"""User trainers that break the contract in every way a worker must survive (test plug-ins)."""

from __future__ import annotations

import contextlib
import math
from typing import Any

from bench.trainer import Pruned, Result


def text(params: dict[str, Any], arm: dict[str, Any], seed: int, report: Any) -> Any:
    return "not a score"


def nan(params: dict[str, Any], arm: dict[str, Any], seed: int, report: Any) -> float:
    report(0, math.nan)
    return math.nan


def no_test(params: dict[str, Any], arm: dict[str, Any], seed: int, report: Any) -> Result:
    report(0, 0.5)
    return Result(value=0.5)  # ignores report.wants_test


def good(params: dict[str, Any], arm: dict[str, Any], seed: int, report: Any) -> Result:
    """A score that depends on the arm and the params only: lower lr and larger k are better."""
    value = params["lr"] + 1.0 / arm["k"]
    for step in range(3):
        report(step, value + (2 - step) * 0.1)
    return Result(value=value, test=value + 0.01 if report.wants_test else None, n_params=10 * arm["k"],
                  extras={"note": f"k={arm['k']}"})


def swallows(params: dict[str, Any], arm: dict[str, Any], seed: int, report: Any) -> float:
    for step in range(3):
        # The contract says not to catch Pruned; bench still records the trial as pruned.
        with contextlib.suppress(Pruned):
            report(step, params["lr"] + step)  # a larger lr than the median's: the median pruner stops it
    return 1.0


def two_args(params: dict[str, Any], arm: dict[str, Any]) -> float:
    return 0.0


NOT_CALLABLE = 3


def good_accuracy(params: dict[str, Any], arm: dict[str, Any], seed: int, report: Any) -> Result:
    """An accuracy-like score to maximize: higher k and lower lr are better, rising over the steps."""
    value = 0.9 - params["lr"] / 2 + 0.02 * arm["k"]
    for step in range(3):
        report(step, value - (2 - step) * 0.05)
    return Result(value=value, test=value - 0.01 if report.wants_test else None, n_params=10 * arm["k"])


def device_echo(params: dict[str, Any], arm: dict[str, Any], seed: int, report: Any) -> Result:
    """Records the device bench hands over (report.device) among its extras."""
    report(0, 0.5)
    return Result(value=0.5, test=0.5 if report.wants_test else None, extras={"device_seen": report.device})


def stops_as_pruned(params: dict[str, Any], arm: dict[str, Any], seed: int, report: Any) -> float:
    """Raises Pruned although nothing asked it to (a fixed-config run has no pruner)."""
    report(0, 0.5)
    raise Pruned
