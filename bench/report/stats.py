"""Statistics for hyperparameter-fair comparisons (pure numpy/scipy): best-of-n, small-sample intervals and tests.

Every interval and test here is calibrated by simulation in benchmarks/calibration.py (coverage, false-positive
rate, power); tests/test_stats.py checks each on tiny data against hand computation or brute force.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from scipy import optimize
from scipy import stats as sps

FloatArray = npt.NDArray[np.float64]

_DIRECTIONS = ("minimize", "maximize")


def _check_direction(direction: str) -> None:
    if direction not in _DIRECTIONS:
        raise ValueError(f"direction must be one of {_DIRECTIONS}, got {direction!r}")


def _sign(direction: str) -> float:
    """+1 for minimize, -1 for maximize: sign * value is lower-is-better (ValueError on an unknown direction)."""
    _check_direction(direction)
    return 1.0 if direction == "minimize" else -1.0


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


def tuner_optimism(best_tuning_value: float, reeval_values: npt.ArrayLike, direction: str = "minimize") -> float:
    """How far the tuning-time best lies from its own re-evaluations, in std units, signed so that a negative
    result means the tuning value looked better than the configuration really is (in either direction).

    minimize: (best_tuning_value - mean(reeval)) / std(reeval, ddof=1); maximize: the negation,
    (mean(reeval) - best_tuning_value) / std. Picking the best of many noisy trials biases its value (winner's
    curse; cf. Cawley & Talbot 2010, "On Over-fitting in Model Selection", JMLR).

    reeval_values: array (k,) of re-evaluations (e.g. fresh seeds) of the winner.
    Returns nan when k < 2 or the re-evaluations have zero spread.
    """
    sign = _sign(direction)
    r = np.asarray(reeval_values, dtype=np.float64).ravel()
    if r.size < 2:
        return math.nan
    sd = float(np.std(r, ddof=1))
    if sd == 0.0 or not math.isfinite(sd):
        return math.nan
    return sign * (float(best_tuning_value) - float(np.mean(r))) / sd


def near_bound(value: float, low: float, high: float, log: bool, tol: float = 0.05) -> str | None:
    """Whether a tuned hyperparameter sits at the edge of its search range.

    A best value at a bound suggests the range was too narrow, so the arm may
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


def divergence_fraction(diverged: npt.ArrayLike) -> float:
    """Fraction of trials that diverged (NaN/inf loss or explicit failure).

    diverged: bool array (N,). Raises ValueError if empty.
    """
    d = np.asarray(diverged, dtype=bool).ravel()
    if d.size == 0:
        raise ValueError("diverged must not be empty")
    return float(np.mean(d))


# ---------------------------------------------------------------- small-sample inference


def log_scores(x: npt.ArrayLike, floor: float = 1e-12) -> FloatArray:
    """Natural log of losses (floored so that a perfect 0 stays finite): differences become log ratios."""
    return np.log(np.maximum(np.asarray(x, dtype=np.float64), floor))


def mean_ci_t(x: npt.ArrayLike, level: float = 0.95) -> tuple[float, float, float] | None:
    """Mean with a Student t interval: mean ± t_{n-1, (1+level)/2} s / sqrt(n) (Student 1908).

    x: array (n,), finite. Returns (mean, low, high), or None when n < 2 (no spread to measure: the report says
    so in words instead of printing a zero-width interval). At n = 5 this keeps its nominal coverage for normal
    data, where a percentile bootstrap covers about 82% (benchmarks/calibration.py).
    """
    _check_level(level)
    v = _finite_1d(x, "x")
    m = float(v.mean())
    if v.size < 2:
        return None
    half = float(sps.t.ppf(0.5 + level / 2.0, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))
    return m, m - half, m + half


def welch(a: npt.ArrayLike, b: npt.ArrayLike) -> tuple[float, float, float]:
    """Difference of means with its standard error and Welch-Satterthwaite degrees of freedom (Welch 1947).

    a: array (n_a,), b: array (n_b,), finite, each with n >= 2. Returns (mean(a) - mean(b), se, df); se is 0 when
    neither sample varies (df is then nan).
    """
    va, vb = _finite_1d(a, "a"), _finite_1d(b, "b")
    if va.size < 2 or vb.size < 2:
        raise ValueError("welch needs at least 2 values per sample")
    qa, qb = va.var(ddof=1) / va.size, vb.var(ddof=1) / vb.size
    se2 = qa + qb
    diff = float(va.mean() - vb.mean())
    if se2 == 0.0:
        return diff, 0.0, math.nan
    df = se2**2 / (qa**2 / (va.size - 1) + qb**2 / (vb.size - 1))
    return diff, math.sqrt(se2), float(df)


def _nct_lambda_interval(t_obs: float, df: float, level: float) -> tuple[float, float]:
    """Interval for the noncentrality of a t statistic by inverting the noncentral t CDF (Steiger & Fouladi 1997).

    The CDF at t_obs falls as the noncentrality grows; the bounds solve cdf = 1 - alpha/2 and cdf = alpha/2.
    """
    alpha = 1.0 - level

    def cdf(lam: float) -> float:
        # scipy's nct.cdf returns nan deep in a tail (t = -9.8, df = 4, lambda = 10.8): fall back to 1 - sf there,
        # and to the tail's limit if both fail.
        c = float(sps.nct.cdf(t_obs, df, lam))
        if not math.isfinite(c):
            c = 1.0 - float(sps.nct.sf(t_obs, df, lam))
        if not math.isfinite(c):
            c = 0.0 if lam > t_obs else 1.0
        return c

    def root(target: float) -> float:
        def f(lam: float) -> float:
            return cdf(lam) - target

        lo, hi = t_obs - 1.0, t_obs + 1.0
        while f(lo) < 0:
            lo -= 2.0 * (abs(lo) + 1.0)
        while f(hi) > 0:
            hi += 2.0 * (abs(hi) + 1.0)
        return float(optimize.brentq(f, lo, hi, xtol=1e-8))

    return root(1.0 - alpha / 2.0), root(alpha / 2.0)


def compare_means(a: npt.ArrayLike, b: npt.ArrayLike, level: float = 0.95, p_better_interval: bool = True
                  ) -> dict[str, float | None]:
    """Two independent samples of unit scores (lower is better), e.g. per-study mean log test loss per arm.

    Welch's unequal-variance t test (Welch 1947) of mean(a) = mean(b), two-sided, with:
    - ``diff``, ``diff_ci``: mean(a) - mean(b) and its Welch t interval (on log losses: a log ratio of geometric
      means, the effect size);
    - ``p_a_better``, ``p_a_better_ci``: P(a fresh unit of A scores below one of B) under the normal model,
      Phi(-(mu_a - mu_b) / sqrt(sigma_a^2 + sigma_b^2)) (McGraw & Wong 1992, the common-language effect size),
      with an interval from the noncentral t (Steiger & Fouladi 1997). Unlike a bootstrap of the Mann-Whitney
      statistic (Bouthillier et al. 2021) it does not collapse to [1, 1] when 5 vs 5 values separate completely.
    a: array (n_a,), b: array (n_b,), finite, n >= 2 each. Values are None where there is no spread.
    p_better_interval=False skips the noncentral-t inversion (the slow part; the test and the decision do not use
    it), for simulations that only need decisions.
    """
    va, vb = _finite_1d(a, "a"), _finite_1d(b, "b")
    diff, se, df = welch(va, vb)
    out: dict[str, float | None] = {"diff": diff, "se": se, "df": df, "n_a": float(va.size), "n_b": float(vb.size),
                                    "p": None, "diff_low": None, "diff_high": None, "p_a_better": None,
                                    "p_a_better_low": None, "p_a_better_high": None}
    if se == 0.0:
        out["p"] = 1.0 if diff == 0.0 else 0.0
        return out
    t_obs = diff / se
    half = float(sps.t.ppf(0.5 + level / 2.0, df)) * se
    out.update(p=float(2.0 * sps.t.sf(abs(t_obs), df)), diff_low=diff - half, diff_high=diff + half)
    if not p_better_interval:
        return out
    lam_lo, lam_hi = _nct_lambda_interval(t_obs, df, level)
    # Equal variances: (mu_a - mu_b) / (sigma sqrt 2) = lambda * sqrt((1/n_a + 1/n_b) / 2).
    c = math.sqrt((1.0 / va.size + 1.0 / vb.size) / 2.0)
    out.update(p_a_better=float(sps.norm.cdf(-t_obs * c)), p_a_better_low=float(sps.norm.cdf(-lam_hi * c)),
               p_a_better_high=float(sps.norm.cdf(-lam_lo * c)))
    return out


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm (1979) step-down adjusted p-values: p_(k) * (m - k + 1), made monotone, capped at 1.

    Rejecting H_i when adjusted p_i <= alpha controls the family-wise error rate at alpha for any dependence.
    """
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    out = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * float(pvalues[i])))
        out[i] = running
    return out


def variance_components(groups: Sequence[npt.ArrayLike]) -> tuple[float | None, float | None]:
    """Between-group and within-group standard deviations of a one-way random-effects layout.

    groups: one array (n_g,) per replicate study (its seeds). Method of moments (ANOVA estimator; Searle, Casella
    & McCulloch 1992, ch. 3): MSW = pooled within variance, MSB = sum n_g (mean_g - grand)^2 / (k - 1),
    n0 = (N - sum n_g^2 / N) / (k - 1), sigma_between^2 = max(0, (MSB - MSW) / n0).
    Returns (sd_between, sd_within); None where the layout cannot say (one group, or no group with 2 values).
    """
    gs = [_finite_1d(g, f"groups[{i}]") for i, g in enumerate(groups)]
    if not gs:
        return None, None
    sizes = np.array([g.size for g in gs], float)
    total = float(sizes.sum())
    df_w = total - len(gs)
    msw = sum(float(((g - g.mean()) ** 2).sum()) for g in gs) / df_w if df_w > 0 else None
    if len(gs) < 2:
        return None, None if msw is None else math.sqrt(msw)
    grand = float(np.concatenate(gs).mean())
    msb = sum(g.size * (float(g.mean()) - grand) ** 2 for g in gs) / (len(gs) - 1)
    n0 = (total - float((sizes**2).sum()) / total) / (len(gs) - 1)
    if msw is None:  # one value per study: all variation is between studies (seed noise included)
        return math.sqrt(msb), None
    return math.sqrt(max(0.0, (msb - msw) / n0)), math.sqrt(msw)


def units_needed(delta: float, sd_unit: float, alpha: float, power: float = 0.8, limit: int = 1000) -> int | None:
    """Smallest n per group for a two-sided two-sample t test of size alpha to reach `power` at a true mean
    difference `delta` when one unit's score has standard deviation `sd_unit` (noncentral t; Cohen 1988, ch. 2).

    Returns None when even `limit` units are not enough (or delta is 0).
    """
    if delta <= 0 or not math.isfinite(delta):
        return None
    if sd_unit <= 0:
        return 2
    for lo, hi in ((2, min(limit, 64)), (65, limit)):  # vectorised over n; most answers lie in the first chunk
        if lo > hi:
            break
        n = np.arange(lo, hi + 1, dtype=np.float64)
        df = 2.0 * n - 2.0
        crit = sps.t.ppf(1.0 - alpha / 2.0, df)
        ncp = delta / (sd_unit * np.sqrt(2.0 / n))
        achieved = sps.nct.sf(crit, df, ncp) + sps.nct.cdf(-crit, df, ncp)
        ok = np.flatnonzero(achieved >= power)
        if ok.size:
            return int(n[ok[0]])
    return None


def best_so_far(values: npt.ArrayLike, direction: str = "minimize") -> FloatArray:
    """Running best in trial order: array (N,) -> (N,). Unlike expected best-of-n it makes no i.i.d. assumption,
    so it is the honest curve for an adaptive sampler (TPE)."""
    _check_direction(direction)
    v = np.asarray(values, dtype=np.float64)
    out: FloatArray = np.minimum.accumulate(v) if direction == "minimize" else np.maximum.accumulate(v)
    return out


def still_improving(curves: Sequence[npt.ArrayLike], noise_sd: float | None, tail: float = 0.2,
                    direction: str = "minimize") -> bool:
    """Whether the last `tail` of the budget still bought an improvement larger than seed noise.

    curves: per replicate study, the best-so-far log score in trial order (array (N,)). The gain of a study is
    curve[N-1-k] - curve[N-1] with k = max(1, round(tail * N)) when minimizing (curve[N-1] - curve[N-1-k] when
    maximizing: a best-so-far then rises); the median gain over studies is compared with
    `noise_sd`, the seed-to-seed standard deviation of a fixed config's log validation score measured in
    re-evaluation (Tuning Playbook: an improvement below the noise is not evidence that more budget helps).
    Without a noise estimate any median gain above 1% (0.01 in log units) counts. Curves shorter than 5 trials
    count as improving (too few to tell).
    """
    if not 0.0 < tail <= 1.0:
        raise ValueError(f"tail must be in (0, 1], got {tail}")
    sign = _sign(direction)
    gains = []
    for c in curves:
        v = np.asarray(c, dtype=np.float64)
        if v.size < 5:
            return True
        k = min(v.size - 1, max(1, round(tail * v.size)))
        gains.append(sign * float(v[v.size - 1 - k] - v[v.size - 1]))
    if not gains:
        return False
    threshold = noise_sd if noise_sd is not None and math.isfinite(noise_sd) else 0.01
    return bool(float(np.median(gains)) > threshold)
