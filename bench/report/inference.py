"""Which arms the numbers can tell apart: a family of pairwise tests, Holm-corrected, with effect sizes and tiers.

Pure (numpy/scipy through bench.report.stats). The report and benchmarks/calibration.py call the same `family`
and `decide`, so the calibration measured there is the calibration of the published verdicts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from bench.report import stats
from bench.spec import loss_sign

DECISIONS = ("a", "b", "equivalent", "undecided", "untestable")


def family(units: Mapping[str, npt.ArrayLike], alpha: float = 0.05, min_effect: float = 0.1,
           level: float = 0.95, p_better_interval: bool = True, direction: str = "minimize", sizing: bool = True
           ) -> dict[str, Any]:
    """Every pair of arms compared on their unit scores (log scores: lower is better when minimizing a loss,
    higher when maximizing).

    units: arm label -> array (n,) of unit scores, e.g. one per replicate tuning study (the mean log test score
        of its re-evaluation seeds), or one per seed for a fixed config. Arms keep the mapping's order.
    Each pair gets Welch's t test, the ratio of geometric means exp(mean_a - mean_b) with its t interval, and
    P(A better) with its noncentral-t interval (stats.compare_means). p-values are Holm-adjusted over all pairs
    (Holm 1979), so the chance of any false claim in the family stays at most alpha. A pair is decided:
    - "a" / "b": the adjusted p <= alpha AND the ratio is beyond the practical threshold 1 + min_effect (either
      way), so a significant but negligible difference is never called a win; A is better when its ratio is
      below 1 (minimize) or above 1 (maximize);
    - "equivalent": the ratio interval lies inside (1 / (1 + min_effect), 1 + min_effect), the region of
      practical equivalence (Benavoli et al. 2017);
    - "undecided": neither; "untestable": an arm has fewer than 2 units.
    Maximizing is minimizing the negated units: the test, the interval and the threshold are symmetric under
    negation, so the calibration of benchmarks/calibration.py holds for both directions; only the reading of the
    ratio (and the order: best first) flips.
    Returns {"alpha", "min_effect", "threshold_log", "direction", "pairs": [...], "order": labels best first,
    "groups": tiers, "winner": label or None}. p_better_interval=False leaves P(A better) and its interval out
    (decisions are unchanged; benchmarks/calibration.py uses it to simulate decisions quickly). sizing=False sets
    every pair's units_needed to None instead of sizing the undecided pairs (the slow part: a power search per
    pair); decisions, groups and winner are unchanged (bench.report.aggregate's per-task summaries use it).
    """
    sign = loss_sign(direction)
    arrays = {k: np.asarray(v, dtype=np.float64) for k, v in units.items()}
    labels = [k for k, v in arrays.items() if v.size]
    threshold = math.log1p(min_effect)
    pairs: list[dict[str, Any]] = []
    for i, a in enumerate(labels):
        for b in labels[i + 1:]:
            pairs.append(_pair(a, b, arrays[a], arrays[b], level, p_better_interval, direction))
    testable = [p for p in pairs if p["p"] is not None]
    for p, adj in zip(testable, stats.holm([p["p"] for p in testable]), strict=True):
        p["p_holm"] = adj
    n_tests = max(1, len(testable))
    for p in pairs:
        p["decision"] = _decide_pair(p, alpha, threshold, sign)
        sized = sizing and p["decision"] == "undecided"
        p["units_needed"] = _needed(p, threshold, alpha / n_tests) if sized else None
    means = {k: float(arrays[k].mean()) for k in labels}
    order = sorted(labels, key=lambda k: (sign * means[k], labels.index(k)))
    groups = tiers(order, pairs)
    winner = groups[0][0] if groups and len(groups[0]) == 1 and len(labels) > 1 else None
    return {"alpha": alpha, "min_effect": min_effect, "threshold_log": threshold, "level": level,
            "direction": direction, "n_units": {k: int(arrays[k].size) for k in labels}, "means": means,
            "pairs": pairs, "order": order, "groups": groups, "winner": winner}


def _pair(a: str, b: str, va: npt.NDArray[np.float64], vb: npt.NDArray[np.float64], level: float,
          p_better_interval: bool = True, direction: str = "minimize") -> dict[str, Any]:
    """One pair on its own units; the test runs on sign * units (lower is better), the ratio stays the metric's."""
    sign = loss_sign(direction)
    base: dict[str, Any] = {"a": a, "b": b, "n_a": int(va.size), "n_b": int(vb.size), "p": None, "p_holm": None,
                            "ratio": math.exp(float(va.mean() - vb.mean())), "ratio_ci": None,
                            "p_a_better": None, "p_a_better_ci": None, "sd_pooled": None,
                            "p_a_better_empirical": stats.prob_a_better(va, vb, direction)}
    if va.size < 2 or vb.size < 2:
        return base
    r = stats.compare_means(sign * va, sign * vb, level, p_better_interval)
    base["p"] = r["p"]
    if r["diff_low"] is not None and r["diff_high"] is not None:
        base["ratio_ci"] = sorted([math.exp(sign * r["diff_low"]), math.exp(sign * r["diff_high"])])
    if r["p_a_better_low"] is not None:
        base["p_a_better"] = r["p_a_better"]
        base["p_a_better_ci"] = [r["p_a_better_low"], r["p_a_better_high"]]
    pooled = ((va.size - 1) * va.var(ddof=1) + (vb.size - 1) * vb.var(ddof=1)) / (va.size + vb.size - 2)
    base["sd_pooled"] = math.sqrt(pooled)
    return base


def _decide_pair(p: dict[str, Any], alpha: float, threshold: float, sign: int = 1) -> str:
    if p["p"] is None:
        return "untestable"
    gain = -sign * math.log(p["ratio"])  # > 0: A is better
    if p["p_holm"] <= alpha and abs(gain) >= threshold:
        return "a" if gain > 0 else "b"
    ci = p["ratio_ci"]
    if ci is not None and -threshold < math.log(ci[0]) and math.log(ci[1]) < threshold:
        return "equivalent"
    return "undecided"


def _needed(p: dict[str, Any], threshold: float, alpha: float) -> int | None:
    """Units per arm that would detect the threshold difference at the pair's measured spread (80% power, at the
    strictest Holm level alpha / m so the figure holds for any pair)."""
    sd = p["sd_pooled"]
    if sd is None or threshold <= 0:
        return None
    return stats.units_needed(threshold, sd, alpha)


def beats(pairs: list[dict[str, Any]], x: str, y: str) -> bool:
    """Whether the family decided that arm x is better than arm y."""
    for p in pairs:
        if (p["a"], p["b"]) == (x, y):
            return bool(p["decision"] == "a")
        if (p["a"], p["b"]) == (y, x):
            return bool(p["decision"] == "b")
    return False


def tiers(order: list[str], pairs: list[dict[str, Any]]) -> list[list[str]]:
    """Groups that the tests cannot separate, best first: the best remaining arm by mean leads a group holding
    every remaining arm it has not been shown to beat. A ranking is never finer than these groups."""
    left = list(order)
    out: list[list[str]] = []
    while left:
        lead = left[0]
        group = [lead] + [x for x in left[1:] if not beats(pairs, lead, x)]
        out.append(group)
        left = [x for x in left if x not in group]
    return out


def join_labels(labels: list[str]) -> str:
    """Arm labels as a list in words: ``depth 1, depth 2``, but ``depth 1, cell gru; depth 2, cell gru`` where a
    label holds several values (a comma there would blur where one arm ends)."""
    return ("; " if any(", " in x for x in labels) else ", ").join(labels)


def groups_text(groups: list[list[str]]) -> str:
    """``{depth 6} > {depth 3, depth 2}``: the order the tests support, and nothing finer."""
    return " > ".join("{" + join_labels(g) + "}" for g in groups)
