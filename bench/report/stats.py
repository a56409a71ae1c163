"""Statistics for hyperparameter-fair comparisons: expected best-of-n, bootstraps, P(A>B)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

_DIRECTIONS = ("minimize", "maximize")
# Bound on the size of the (reps, n_a, n_b) comparison tensor built per chunk in
# prob_a_better_ci, so memory stays small whatever the arm sizes.
_MAX_CHUNK_ELEMS = 2_000_000


def _check_direction(direction: str) -> None:
    if direction not in _DIRECTIONS:
        raise ValueError(f"direction must be one of {_DIRECTIONS}, got {direction!r}")


def _finite_1d(values: npt.ArrayLike, name: str) -> FloatArray:
    """Return `values` as a non-empty finite float array (n,), else raise ValueError."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} must not be empty")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite (replace diverged trials first)")
    return arr


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")


def _check_reps(reps: int) -> None:
    if reps < 1:
        raise ValueError(f"reps must be >= 1, got {reps}")


def _percentile_interval(samples: FloatArray, level: float) -> tuple[float, float]:
    """Two-sided percentile interval of bootstrap `samples` (reps,)."""
    alpha = 1.0 - level
    low, high = np.quantile(samples, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(low), float(high)


def expected_best_of_n(values: npt.ArrayLike, direction: str = "minimize") -> tuple[FloatArray, FloatArray]:
    """Expected best of n i.i.d. trials drawn from the observed ones, for n = 1..N.

    Dodge et al. 2019, "Show Your Work: Improved Reporting of Experimental
    Results" (EMNLP). Draws are WITH replacement from the empirical distribution
    of the N observed trial values. For minimize, with sorted values
    v_(1) <= ... <= v_(N), P(min of n <= v_(i)) = P_i = 1 - (1 - i/N)^n, so the
    best takes value v_(i) with weight w_i = P_i - P_{i-1} and
    E[min] = sum_i w_i v_(i). Ties need no special handling: the weights of a
    tied block sum to the probability of that value. Maximize uses the same
    formula on values sorted in descending order.

    values: array (N,), finite (diverged trials already replaced by a finite
        worst value).
    Returns (mean, std): arrays (N,), index n-1 holds the statistic for n draws.
    Raises ValueError on empty or non-finite input or an unknown direction.
    Builds an (N, N) weight matrix: fine for the few thousand trials of a study.
    """
    _check_direction(direction)
    v = np.sort(_finite_1d(values, "values"))
    if direction == "maximize":
        v = v[::-1]
    n_total = v.size
    n = np.arange(1, n_total + 1, dtype=np.float64)[:, None]  # (N, 1)
    i = np.arange(0, n_total + 1, dtype=np.float64)[None, :]  # (1, N+1)
    cdf = 1.0 - (1.0 - i / n_total) ** n  # (N, N+1), column 0 is P_0 = 0
    weights = np.diff(cdf, axis=1)  # (N, N)
    mean = weights @ v
    # Var = E[X^2] - E[X]^2, computed in the centred form sum_i w_i (v_i - mean)^2:
    # mathematically identical but free of catastrophic cancellation when the
    # values are large relative to their spread; the clip guards rounding anyway.
    var = np.einsum("nk,nk->n", weights, (v[None, :] - mean[:, None]) ** 2)
    std = np.sqrt(np.clip(var, 0.0, None))
    return mean.astype(np.float64), std.astype(np.float64)


def expected_best_vs_budget(
    values: npt.ArrayLike, seconds: npt.ArrayLike, direction: str = "minimize"
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Expected best of n trials against the expected compute spent on n trials.

    Dodge et al. 2019 plot expected validation performance against budget. The
    budget axis here is the simple approximation budget[n-1] = n * mean(seconds):
    the expected wall time of n trials drawn i.i.d. from the observed ones. It
    ignores the (weak) correlation between a trial's duration and its value.

    values: array (N,), finite trial values.
    seconds: array (N,), finite non-negative wall time of each trial.
    Returns (budget_seconds, mean, std): arrays (N,).
    """
    v = _finite_1d(values, "values")
    s = _finite_1d(seconds, "seconds")
    if s.shape != v.shape:
        raise ValueError(f"seconds shape {s.shape} != values shape {v.shape}")
    if np.any(s < 0):
        raise ValueError("seconds must be non-negative")
    mean, std = expected_best_of_n(v, direction)
    budget = np.arange(1, v.size + 1, dtype=np.float64) * float(np.mean(s))
    return budget, mean, std


def prob_best_bootstrap(
    arms: Sequence[npt.ArrayLike],
    direction: str = "minimize",
    reps: int = 2000,
    seed: int = 0,
) -> FloatArray:
    """Bootstrap probability that each arm yields the best single trial.

    For each of `reps` replicates every arm's trial values are resampled with
    replacement (same size as the arm), each arm keeps its best, and the arm with
    the overall best wins; ties split the win equally among the tied arms.
    This is the bootstrap view of "which depth would win a rerun of the study"
    (cf. Dodge et al. 2019; Bouthillier et al. 2021, MLSys).

    arms: sequence of arrays (n_k,), one per arm, finite, non-empty.
    Returns: array (n_arms,), sums to 1.
    """
    _check_direction(direction)
    _check_reps(reps)
    if len(arms) == 0:
        raise ValueError("arms must not be empty")
    rng = np.random.default_rng(seed)
    best = np.empty((reps, len(arms)), dtype=np.float64)
    for k, arm in enumerate(arms):
        v = _finite_1d(arm, f"arms[{k}]")
        draws = v[rng.integers(0, v.size, size=(reps, v.size))]  # (reps, n_k)
        best[:, k] = draws.min(axis=1) if direction == "minimize" else draws.max(axis=1)
    winner = best.min(axis=1) if direction == "minimize" else best.max(axis=1)
    tied = best == winner[:, None]  # (reps, n_arms), at least one True per row
    share: FloatArray = tied / tied.sum(axis=1, keepdims=True)
    prob: FloatArray = np.mean(share, axis=0, dtype=np.float64)
    return prob


def mean_ci_bootstrap(
    x: npt.ArrayLike, level: float = 0.95, reps: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """Sample mean with a percentile-bootstrap confidence interval.

    Efron & Tibshirani 1993, "An Introduction to the Bootstrap", ch. 13.
    x: array (n,), finite, non-empty.
    Returns (mean, low, high). With n == 1 there is no spread to resample, so
    (x, x, x) is returned.
    """
    _check_level(level)
    _check_reps(reps)
    v = _finite_1d(x, "x")
    mean = float(np.mean(v))
    if v.size == 1:
        return mean, mean, mean
    rng = np.random.default_rng(seed)
    boot = v[rng.integers(0, v.size, size=(reps, v.size))].mean(axis=1)
    low, high = _percentile_interval(boot, level)
    return mean, low, high


def _pairwise_prob(a: FloatArray, b: FloatArray, direction: str) -> FloatArray:
    """P(A better than B) for stacked samples: a (r, n_a), b (r, n_b) -> (r,)."""
    diff = a[:, :, None] - b[:, None, :]  # (r, n_a, n_b)
    wins = (diff < 0) if direction == "minimize" else (diff > 0)
    score: FloatArray = wins + 0.5 * (diff == 0)
    prob: FloatArray = np.mean(score, axis=(1, 2), dtype=np.float64)
    return prob


def prob_a_better(a: npt.ArrayLike, b: npt.ArrayLike, direction: str = "minimize") -> float:
    """Probability that a random trial of A beats a random trial of B.

    P(A > B) = U / (n_a n_b) with the Mann-Whitney U statistic, ties counted 1/2
    (Bouthillier et al. 2021, "Accounting for Variance in Machine Learning
    Benchmarks", MLSys). Computed by explicit pairwise comparison: the arrays are
    small. For minimize "better" means lower.

    a: array (n_a,), b: array (n_b,), finite, non-empty.
    Returns a float in [0, 1].
    """
    _check_direction(direction)
    va = _finite_1d(a, "a")
    vb = _finite_1d(b, "b")
    return float(_pairwise_prob(va[None, :], vb[None, :], direction)[0])


def prob_a_better_ci(
    a: npt.ArrayLike,
    b: npt.ArrayLike,
    direction: str = "minimize",
    level: float = 0.95,
    reps: int = 2000,
    seed: int = 0,
) -> tuple[float, float, float]:
    """P(A better than B) with a percentile-bootstrap confidence interval.

    Bouthillier et al. 2021 (MLSys): a and b are resampled independently with
    replacement (each at its own size) and P(A > B) is recomputed per replicate.
    a: array (n_a,), b: array (n_b,), finite, non-empty.
    Returns (point, low, high); point is prob_a_better on the original data.
    """
    _check_level(level)
    _check_reps(reps)
    point = prob_a_better(a, b, direction)
    va = _finite_1d(a, "a")
    vb = _finite_1d(b, "b")
    rng = np.random.default_rng(seed)
    ra = va[rng.integers(0, va.size, size=(reps, va.size))]  # (reps, n_a)
    rb = vb[rng.integers(0, vb.size, size=(reps, vb.size))]  # (reps, n_b)
    chunk = max(1, _MAX_CHUNK_ELEMS // (va.size * vb.size))
    boot = np.concatenate(
        [_pairwise_prob(ra[s : s + chunk], rb[s : s + chunk], direction) for s in range(0, reps, chunk)]
    )
    low, high = _percentile_interval(boot, level)
    return point, low, high


def pairwise_verdict(low: float, high: float) -> dict[str, bool]:
    """Verdict on a CI [low, high] of P(A better than B).

    Bouthillier et al. 2021 (MLSys), section 4: A is "significantly" better when
    the lower bound exceeds 0.5, and the difference is "meaningful" when the upper
    bound exceeds gamma = 0.75. Both keys are always present.
    """
    return {"significant": bool(low > 0.5), "meaningful": bool(high > 0.75)}


def tuner_optimism(best_tuning_value: float, reeval_values: npt.ArrayLike) -> float:
    """How far the tuning-time best lies from its own re-evaluations, in std units.

    (best_tuning_value - mean(reeval)) / std(reeval, ddof=1). Picking the best of
    many noisy trials biases its value (winner's curse; cf. Cawley & Talbot 2010,
    "On Over-fitting in Model Selection", JMLR). The sign follows the objective:
    for minimize a negative result means the tuning value looked better than the
    configuration really is.

    reeval_values: array (k,) of re-evaluations (e.g. fresh seeds) of the winner.
    Returns nan when k < 2 or the re-evaluations have zero spread.
    """
    r = np.asarray(reeval_values, dtype=np.float64).ravel()
    if r.size < 2:
        return math.nan
    sd = float(np.std(r, ddof=1))
    if sd == 0.0 or not math.isfinite(sd):
        return math.nan
    return (float(best_tuning_value) - float(np.mean(r))) / sd


def near_bound(value: float, low: float, high: float, log: bool, tol: float = 0.05) -> str | None:
    """Whether a tuned hyperparameter sits at the edge of its search range.

    A best value at a bound suggests the range was too narrow, so the depth may
    be under-tuned. Distances are fractions of the range, in log10 space if `log`.
    Returns "low" if (value - low) / (high - low) <= tol, "high" if
    (high - value) / (high - low) <= tol, else None ("low" wins if both hold).
    Raises ValueError if high <= low, or if log and a non-positive number is given.
    """
    if not high > low:
        raise ValueError(f"need high > low, got low={low}, high={high}")
    if log:
        if min(value, low, high) <= 0:
            raise ValueError("log-scale bounds and value must be positive")
        value, low, high = math.log10(value), math.log10(low), math.log10(high)
    frac = (value - low) / (high - low)
    if frac <= tol:
        return "low"
    if 1.0 - frac <= tol:
        return "high"
    return None


def still_improving(
    curve: npt.ArrayLike,
    tail: float = 0.2,
    rel_tol: float = 1e-3,
    direction: str = "minimize",
) -> bool:
    """Whether an expected-best-of-n curve is still improving at the end.

    curve: array (N,), the mean from expected_best_of_n (index n-1 is n trials).
    Let k = max(1, round(tail * N)) and gain = curve[N-1-k] - curve[N-1] for
    minimize (curve[N-1] - curve[N-1-k] for maximize), i.e. the improvement over
    the last k steps. Returns True iff gain > rel_tol * (max(curve) - min(curve)).
    A flat curve (zero range) returns False. With N < 5 returns True: too few
    trials to tell, so the conservative answer is "more budget might help".
    """
    _check_direction(direction)
    if not 0.0 < tail <= 1.0:
        raise ValueError(f"tail must be in (0, 1], got {tail}")
    c = _finite_1d(curve, "curve")
    n = c.size
    if n < 5:
        return True
    k = min(n - 1, max(1, round(tail * n)))
    gain = c[n - 1 - k] - c[n - 1]
    if direction == "maximize":
        gain = -gain
    total = float(c.max() - c.min())
    if total == 0.0:
        return False
    return bool(gain > rel_tol * total)


def divergence_fraction(diverged: npt.ArrayLike) -> float:
    """Fraction of trials that diverged (NaN/inf loss or explicit failure).

    diverged: bool array (N,). Raises ValueError if empty.
    """
    d = np.asarray(diverged, dtype=bool).ravel()
    if d.size == 0:
        raise ValueError("diverged must not be empty")
    return float(np.mean(d))
