"""A test plug-in whose answer is known: an accuracy-like score where a wider arm is clearly better.

accuracy = 0.5 + 0.1 * log2(width) - 0.05 * log10(lr / 0.1)^2 + seed noise (sd 0.01): width 2, 4, 8 reach about
0.6, 0.7 and 0.8 at their best lr (ratios 1.17 and 1.14, beyond the default 10% threshold). `[fixed] error = true`
returns the same numbers as an error rate, 1 - accuracy, to minimize instead (the consistency property). A learning
rate above 1 diverges (a non-finite score)."""

from __future__ import annotations

import math
import random
from typing import Any

from bench.trainer import Result


def fit(params: dict[str, Any], arm: dict[str, Any], seed: int, report: Any) -> Result | float:
    if params["lr"] > 1.0:
        return math.nan
    noise = random.Random(seed).gauss(0.0, 0.01)
    acc = 0.5 + 0.1 * math.log2(arm["width"]) - 0.05 * math.log10(params["lr"] / 0.1) ** 2 + noise
    as_score = (lambda a: 1.0 - a) if params.get("error") else (lambda a: a)
    for step in range(3):
        report(step, as_score(acc - 0.05 * (2 - step)))  # rises to `acc` at the last step
    test = as_score(acc - 0.005) if report.wants_test else None  # the held-out split: a little worse
    return Result(value=as_score(acc), test=test, n_params=arm["width"])
