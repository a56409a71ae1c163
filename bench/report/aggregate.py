"""Suite statistics: several experiments (tasks) that share the same arms, aggregated across the tasks.

Pure numpy/scipy. Input: task name -> TaskData, where TaskData is
``{"trivial": float | None, "arms": {label: [[loss_seed0, loss_seed1, ...] for each study]}}``: per arm, per
replicate tuning study, the held-out test losses of the study's best config re-evaluated over M fresh seeds (finite,
> 0, lower is better; diverged seeds already scored as the trivial loss). Studies and seeds may differ in number
(a run in progress); a study with no seeds yet is skipped, and an arm with no study yet on a task is left out of
that arm's aggregates with a note.

``aggregate(...)`` returns a JSON-serialisable dict (plain floats, lists, dicts; None where a value does not exist,
never NaN):

- ``scope``: what the verdict is about (a fixed-effect claim about these tasks, not about unseen tasks).
- ``tasks``, ``arms``: task names (input order) and arm labels (the first task's order).
- ``settings``: ``{"alpha", "min_effect", "level", "reps", "seed"}`` as given.
- ``normalisation``: task -> ``{"method": "min-max" | "ratio", "trivial", "best"}``. min-max (rliable):
  score = (trivial - loss) / (trivial - best); ratio (where trivial is None or not above best): score = best / loss.
  ``best`` is the task's lowest per-study geometric-mean test loss over all arms; higher scores are better, the best
  study scores about 1 and the trivial predictor 0. None for a task with no data at all.
- ``normalised``: task -> arm -> mean normalised score over the arm's seeds (pooled over studies), or None.
- ``iqm``, ``median``: arm -> ``{"value", "ci": [lo, hi]}``: interquartile mean / median of the normalised scores
  pooled over tasks x studies x seeds, with a stratified two-stage bootstrap percentile interval (None: no data);
  the first stage expands each study's deviation by sqrt(S / (S - 1)) (expand_studies), as do the bands below.
- ``profiles``: ``{"tau": [...], "arms": {label: {"fraction": [...], "lo": [...], "hi": [...]}}}``: per threshold
  tau, the fraction of the arm's runs (seeds) with normalised score > tau, with its bootstrap band.
- ``p_improvement``: ``[{"a", "b", "p", "ci": [lo, hi], "n_tasks"}]`` for every pair once: the average over tasks of
  P(a seed of a has lower loss than a seed of b), ties 1/2.
- ``ranks``: ``{"n_tasks", "tasks", "average": {label: rank}, "friedman_chi2", "friedman_p", "iman_davenport_f",
  "iman_davenport_p", "df": [df1, df2], "p", "p_method", "rejects", "q_alpha", "cd", "beyond_cd": [{"a", "b",
  "rank_diff"}], "note"}`` (Demsar 2006), over the tasks where every arm has data; ``p`` (and ``rejects``) is the
  Friedman statistic's permutation p-value ("exact permutation" or "Monte Carlo permutation"), friedman_p and
  iman_davenport_p its chi-square and F approximations. Statistics are None where N < 2 tasks or k < 2 arms.
- ``pairs``, ``order``, ``groups``, ``winner``: the aggregate verdict rule (``fixed_effect_family``). Each pair:
  ``{"a", "b", "n_tasks", "log_ratio", "se", "df", "ratio", "ratio_ci", "p", "p_holm", "decision"}`` with decision
  in "a" | "b" | "equivalent" | "undecided" | "untestable"; ``order``: labels by the mean over tasks of per-task
  mean log loss; ``groups``: tiers that the tests cannot separate, best first; ``winner``: label or None.
- ``verdict_tasks``: the tasks the verdict and ranks rest on (those where every arm has data).
- ``per_task``: task -> ``{"winner", "groups", "n_studies": {label: n}, "pairs": [{"a", "b", "ratio", "ratio_ci",
  "p_holm", "decision"}]}`` from ``inference.family`` on that task's per-study units (one experiment's rule).
- ``best_by_task``: task -> the arm(s) leading that task's first group.
- ``disagreements``: ``[{"a", "b", "a_better_on": [tasks], "b_better_on": [tasks]}]``: pairs whose per-task
  decisions conflict.
- ``verdict``: ``{"text", "winner"}``: the conclusion in words, claiming only what the decisions carry.
- ``methods``: ``[{"name", "citation"}]``; ``notes``: what was left out and why, in words.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import stats as sps

from bench.report import inference, stats

FloatArray = npt.NDArray[np.float64]
Studies = list[FloatArray]  # one array (M_s,) of per-seed values per study
TaskData = Mapping[str, Any]  # {"trivial": float | None, "arms": {label: [[loss, ...] per study]}}

SCOPE = ("fixed effect over these tasks: the verdict says which arm is better on average over exactly these tasks, "
         "each weighted equally; it is not a claim about tasks that were not run")
PROFILE_POINTS = 41
# Profile thresholds span the observed scores, clipped to [-1, 2]: below -1 a run is worse than the trivial
# predictor by more than the whole trivial-to-best gap, above 2 it beats the best study by more than that gap;
# neither region says anything a reader needs, and a single wild seed would otherwise stretch the axis.
TAU_CLIP = (-1.0, 2.0)
METHODS = [
    {"name": "interquartile mean, stratified bootstrap, performance profiles, average probability of improvement",
     "citation": "Agarwal, Schwarzer, Castro, Courville & Bellemare 2021, Deep reinforcement learning at the edge "
                 "of the statistical precipice, NeurIPS"},
    {"name": "two-stage (study, seed) bootstrap of hierarchical data; first-stage deviations expanded by "
             "sqrt(S / (S - 1))",
     "citation": "Davison & Hinkley 1997, Bootstrap Methods and their Application, Cambridge University Press, "
                 "section 3.8; Hesterberg 2015, What teachers should know about the bootstrap, The American "
                 "Statistician 69"},
    {"name": "performance profiles", "citation": "Dolan & Moré 2002, Benchmarking optimization software with "
                                                 "performance profiles, Mathematical Programming 91"},
    {"name": "average ranks, Friedman test, Nemenyi critical difference",
     "citation": "Demšar 2006, Statistical comparisons of classifiers over multiple data sets, JMLR 7"},
    {"name": "Friedman test, permutation p-value (each task's ranks permuted independently)",
     "citation": "Friedman 1937, The use of ranks to avoid the assumption of normality implicit in the analysis of "
                 "variance, JASA 32; Hollander, Wolfe & Chicken 2014, Nonparametric Statistical Methods, 3rd ed., "
                 "section 7.1"},
    {"name": "Monte Carlo permutation p-value (1 + hits) / (1 + draws)",
     "citation": "Phipson & Smyth 2010, Permutation p-values should never be zero, Statistical Applications in "
                 "Genetics and Molecular Biology 9"},
    {"name": "Iman-Davenport F correction of the Friedman statistic",
     "citation": "Iman & Davenport 1980, Approximations of the critical region of the Friedman statistic, "
                 "Communications in Statistics A 9"},
    {"name": "Holm step-down correction", "citation": "Holm 1979, A simple sequentially rejective multiple test "
                                                      "procedure, Scandinavian Journal of Statistics 6"},
    {"name": "Welch t test (unequal variances)", "citation": "Welch 1947, The generalization of 'Student's' "
                                                             "problem when several different population variances "
                                                             "are involved, Biometrika 34"},
    {"name": "Satterthwaite degrees of freedom for a sum of variance estimates",
     "citation": "Satterthwaite 1946, An approximate distribution of estimates of variance components, "
                 "Biometrics Bulletin 2"},
    {"name": "region of practical equivalence on the loss ratio",
     "citation": "Benavoli, Corani, Demšar & Zaffalon 2017, Time for a change: a tutorial for comparing multiple "
                 "classifiers through Bayesian analysis, JMLR 18"},
]


# ---------------------------------------------------------------- input


def _losses(values: Any, task: str, arm: str, study: int) -> FloatArray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or not np.all(np.isfinite(arr)) or not np.all(arr > 0):
        raise ValueError(f"task {task!r}, arm {arm!r}, study {study}: test losses must be a flat list of finite "
                         "numbers > 0 (score diverged seeds as the trivial loss)")
    return arr


def _trivial(value: Any, task: str) -> float | None:
    if value is None:
        return None
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"task {task!r}: trivial loss must be finite or None, got {value!r}")
    return v


def read_tasks(tasks: Mapping[str, TaskData]) -> tuple[list[str], dict[str, dict[str, Studies]],
                                                        dict[str, float | None]]:
    """Validate the input: (arm labels in the first task's order, task -> arm -> studies, task -> trivial loss).

    Raises ValueError naming the task when its arm labels differ from the first task's, or naming task, arm and
    study for a loss that is not finite and > 0. Studies with no seeds are dropped (not yet evaluated).
    """
    if not tasks:
        raise ValueError("a suite needs at least one task")
    labels: list[str] | None = None
    data: dict[str, dict[str, Studies]] = {}
    trivial: dict[str, float | None] = {}
    for name, task in tasks.items():
        arms = task.get("arms")
        if not isinstance(arms, Mapping) or not arms:
            raise ValueError(f"task {name!r}: no arms")
        if labels is None:
            labels = [str(a) for a in arms]
        elif set(arms) != set(labels):
            raise ValueError(f"task {name!r}: arms {sorted(arms)} differ from the first task's {sorted(labels)}")
        data[name] = {a: [_losses(s, name, a, i) for i, s in enumerate(arms[a]) if len(s)] for a in labels}
        trivial[name] = _trivial(task.get("trivial"), name)
    assert labels is not None
    return labels, data, trivial


def study_units(data: Mapping[str, Mapping[str, Studies]]) -> dict[str, dict[str, FloatArray]]:
    """task -> arm -> per-study mean log test loss (S,), the unit of replication (as build.seeds_summary)."""
    return {t: {a: np.array([float(np.log(s).mean()) for s in ss]) for a, ss in arms.items()}
            for t, arms in data.items()}


# ---------------------------------------------------------------- normalisation and bootstrap


def normalise(arms: Mapping[str, Studies], trivial: float | None) -> tuple[dict[str, Studies], dict[str, Any]]:
    """Per-seed normalised scores (higher is better) of one task, and which normalisation was used.

    rliable-style min-max (Agarwal et al. 2021): score = (trivial - loss) / (trivial - best), best = the lowest
    per-study geometric-mean loss over all arms, so the best study scores about 1 and the trivial predictor 0.
    Where trivial is None or not above best, score = best / loss (1 = best, towards 0 as the loss grows).
    arms: label -> studies (arrays (M_s,) of losses), at least one study in all. Returns (label -> studies of
    scores, {"method", "trivial", "best"}).
    """
    best = min(math.exp(float(np.log(s).mean())) for ss in arms.values() for s in ss)
    if trivial is not None and trivial > best:
        gap = trivial - best
        scores = {a: [(trivial - s) / gap for s in ss] for a, ss in arms.items()}
        return scores, {"method": "min-max", "trivial": trivial, "best": best}
    return {a: [best / s for s in ss] for a, ss in arms.items()}, {"method": "ratio", "trivial": trivial, "best": best}


def two_stage_resample(studies: Studies, reps: int, rng: np.random.Generator) -> FloatArray:
    """Bootstrap one stratum (task) hierarchically: draw its studies with replacement, then, within each drawn
    study, its seeds with replacement (the hierarchy of DESIGN.md: studies, then seeds).

    studies: S arrays (M_s,), S >= 1. Returns (reps, S * max M_s); where studies hold fewer seeds than the most,
    the unused places are NaN (every row holds the seeds of S drawn studies, nothing else).
    """
    counts = np.array([s.size for s in studies])
    width = int(counts.max())
    padded = np.full((len(studies), width), np.nan)
    for i, s in enumerate(studies):
        padded[i, :s.size] = s
    drawn = rng.integers(0, len(studies), size=(reps, len(studies)))  # (reps, S)
    m = counts[drawn][..., None]  # (reps, S, 1) seeds of each drawn study
    seed = np.floor(rng.random((reps, len(studies), width)) * m).astype(np.int64)
    values = np.where(np.arange(width) < m, padded[drawn[..., None], seed], np.nan)
    out: FloatArray = values.reshape(reps, -1)
    return out


def expand_studies(studies: Studies) -> Studies:
    """The small-sample correction of the first (study) stage: each study's deviation from the mean of the study
    means is expanded by c = sqrt(S / (S - 1)), its seeds' deviations from their own study mean kept as they are.

    Drawing S studies with replacement gives their mean a variance (S - 1) / S times the unbiased s^2 / S, so a
    bootstrap over S = 3 studies per task understates the study-to-study variance by a third (Davison & Hinkley
    1997, Bootstrap Methods and their Application, section 3.8, on resampling the top stage of hierarchical data;
    Hesterberg 2015 calls this factor the bootstrap's narrowness bias). Expanded, each study is
    m + c (m_i - m) + (x_ij - m_i) (m_i: its mean score, m: the mean of the m_i, equal weights as the draw has),
    so a drawn study's mean has exactly the unbiased variance s^2 of the study means. Scores only: a constant task
    stays constant, a single study (S = 1) is returned as it is, and tasks are never mixed (one task's studies).
    studies: S arrays (M_s,). Returns S arrays of the same shapes.
    """
    if len(studies) < 2:
        return list(studies)
    means = np.array([float(s.mean()) for s in studies])
    shift = (math.sqrt(len(studies) / (len(studies) - 1.0)) - 1.0) * (means - means.mean())
    return [s + d for s, d in zip(studies, shift, strict=True)]


def stratified_resamples(strata: Sequence[Studies], reps: int, rng: np.random.Generator) -> FloatArray:
    """Stratified bootstrap (Agarwal et al. 2021): each task resampled on its own (two_stage_resample of its
    expand_studies), never mixed with another, then pooled. strata: per task, its studies. Returns (reps, n) with
    NaN padding (see above)."""
    return np.concatenate([two_stage_resample(expand_studies(s), reps, rng) for s in strata], axis=1)


def iqm_rows(values: FloatArray) -> FloatArray:
    """Interquartile mean of each row, NaN ignored: (r, n) -> (r,). The 25% trimmed mean of rliable, cut as
    scipy.stats.trim_mean(x, 0.25) cuts it: int(0.25 n) values from each end."""
    n = np.sum(~np.isnan(values), axis=1)
    ordered = np.sort(values, axis=1)  # NaN sorts last
    low = (0.25 * n).astype(np.int64)
    high = n - low
    j = np.arange(values.shape[1])
    keep = (j >= low[:, None]) & (j < high[:, None])
    out: FloatArray = np.where(keep, ordered, 0.0).sum(axis=1) / (high - low)
    return out


def iqm(values: npt.ArrayLike) -> float:
    """Interquartile mean of a flat array (n,), n >= 1 (Agarwal et al. 2021)."""
    return float(iqm_rows(np.asarray(values, dtype=np.float64).reshape(1, -1))[0])


def _interval(boot: FloatArray, level: float) -> FloatArray:
    """Percentile interval over the first axis: (reps, ...) -> (2, ...)."""
    out: FloatArray = np.quantile(boot, [(1.0 - level) / 2.0, (1.0 + level) / 2.0], axis=0)
    return out


def _flat(studies: Studies) -> FloatArray:
    return np.concatenate(studies)


def _p_better_rows(a: FloatArray, b: FloatArray) -> FloatArray:
    """P(a value of a row of `a` is lower than one of the same row of `b`), ties 1/2, NaN ignored: the Mann-Whitney
    U / (n m) of each row (Bouthillier et al. 2021; Agarwal et al. 2021). a (r, n), b (r, m) -> (r,)."""
    out = np.empty(a.shape[0])
    step = max(1, 2**22 // max(1, a.shape[1] * b.shape[1]))  # bound the (rows, n, m) block's memory
    for i in range(0, a.shape[0], step):
        d = a[i:i + step, :, None] - b[i:i + step, None, :]
        valid = ~np.isnan(d)
        out[i:i + step] = ((d < 0) + 0.5 * (d == 0)).sum(axis=(1, 2)) / valid.sum(axis=(1, 2))
    return out


def prob_improvement(a: npt.ArrayLike, b: npt.ArrayLike) -> float:
    """P(X_a < X_b) + P(X_a = X_b) / 2 for losses a (n,) and b (m,): Mann-Whitney U / (n m)."""
    va, vb = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(_p_better_rows(va[None, :], vb[None, :])[0])


# ---------------------------------------------------------------- rliable-style aggregates


def _point_and_ci(point: float, boot: FloatArray, level: float) -> dict[str, Any]:
    lo, hi = _interval(boot, level)
    return {"value": point, "ci": [float(lo), float(hi)]}


def _profile(pooled: FloatArray, boot: FloatArray, tau: FloatArray, level: float) -> dict[str, Any]:
    """Fraction of runs above each tau (Dolan & Moré 2002 in rliable's score form), with its bootstrap band.
    pooled (n,), boot (reps, n') with NaN padding, tau (g,)."""
    n_boot = np.sum(~np.isnan(boot), axis=1)
    frac = np.stack([np.sum(boot > t, axis=1) / n_boot for t in tau], axis=1)  # (reps, g)
    lo, hi = _interval(frac, level)
    return {"fraction": [float(np.mean(pooled > t)) for t in tau], "lo": lo.tolist(), "hi": hi.tolist()}


def _tau_grid(pooled: list[FloatArray]) -> FloatArray:
    if not pooled:
        return np.array([])
    allv = np.concatenate(pooled)
    lo = min(max(float(allv.min()), TAU_CLIP[0]), TAU_CLIP[1])
    hi = max(min(float(allv.max()), TAU_CLIP[1]), lo)
    return np.linspace(lo, hi, PROFILE_POINTS)


def rliable_summary(scores: Mapping[str, Mapping[str, Studies]], losses: Mapping[str, Mapping[str, Studies]],
                    labels: list[str], level: float, reps: int, rng: np.random.Generator) -> dict[str, Any]:
    """IQM, median, performance profiles and average probability of improvement, each with stratified bootstrap
    intervals (Agarwal et al. 2021). scores / losses: task -> arm -> studies (arrays (M_s,)); an arm with no
    studies on a task is left out there. One bootstrap draw per (arm, task), shared by all four statistics: the
    two-stage resample of the arm's studies on that task after expand_studies (the (S - 1) / S correction)."""
    boot: dict[str, dict[str, FloatArray]] = {a: {} for a in labels}
    for a in labels:
        for t, arms in scores.items():
            if arms[a]:
                boot[a][t] = two_stage_resample(expand_studies(arms[a]), reps, rng)
    pooled = {a: np.concatenate([_flat(arms[a]) for arms in scores.values() if arms[a]]) for a in labels
              if boot[a]}
    tau = _tau_grid(list(pooled.values()))
    out: dict[str, Any] = {"iqm": {}, "median": {}, "profiles": {"tau": tau.tolist(), "arms": {}}}
    for a in labels:
        if a not in pooled:
            out["iqm"][a] = out["median"][a] = {"value": None, "ci": None}
            out["profiles"]["arms"][a] = {"fraction": None, "lo": None, "hi": None}
            continue
        rows = np.concatenate(list(boot[a].values()), axis=1)
        out["iqm"][a] = _point_and_ci(iqm(pooled[a]), iqm_rows(rows), level)
        out["median"][a] = _point_and_ci(float(np.median(pooled[a])), np.nanmedian(rows, axis=1), level)
        out["profiles"]["arms"][a] = _profile(pooled[a], rows, tau, level)
    out["p_improvement"] = [_p_improvement(a, b, losses, boot, level)
                            for i, a in enumerate(labels) for b in labels[i + 1:]]
    return out


def _p_improvement(a: str, b: str, losses: Mapping[str, Mapping[str, Studies]],
                   boot: Mapping[str, Mapping[str, FloatArray]], level: float) -> dict[str, Any]:
    """Average over tasks of the per-task P(a beats b) (Agarwal et al. 2021). The bootstrap rows are of normalised
    scores, a decreasing function of the loss within a task, so 'lower loss' is 'higher score' there."""
    common = [t for t in losses if boot[a].get(t) is not None and boot[b].get(t) is not None]
    if not common:
        return {"a": a, "b": b, "p": None, "ci": None, "n_tasks": 0}
    point = float(np.mean([prob_improvement(_flat(losses[t][a]), _flat(losses[t][b])) for t in common]))
    rows = np.mean([_p_better_rows(-boot[a][t], -boot[b][t]) for t in common], axis=0)
    lo, hi = _interval(rows, level)
    return {"a": a, "b": b, "p": point, "ci": [float(lo), float(hi)], "n_tasks": len(common)}


# ---------------------------------------------------------------- ranks (Demšar 2006)


@functools.lru_cache(maxsize=256)  # the studentized range quantile integrates numerically: ~1 ms a call
def critical_difference(k: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Nemenyi critical difference for k arms on n tasks: (q_alpha, CD = q_alpha sqrt(k (k + 1) / (6 n))).

    q_alpha is the studentized range quantile (infinite df) / sqrt 2 (Demšar 2006, Table 5a: k = 4, alpha = 0.05
    gives 2.569)."""
    q = float(sps.studentized_range.ppf(1.0 - alpha, k, math.inf)) / math.sqrt(2.0)
    return q, q * math.sqrt(k * (k + 1) / (6.0 * n))


# The permutation p of the Friedman statistic is exact while the convolution below stays small: at most this many
# candidate rank-sum vectors in one step (4 arms stay exact up to about 40 tasks, 5 arms to 10); beyond, Monte Carlo.
PERMUTATION_EXACT_WORK = 1_000_000
PERMUTATION_DRAWS = 20_000  # Monte Carlo permutations: the p-value's standard error is below 0.0016 at p = 0.05
PERMUTATION_SEED = 0


def friedman_permutation_p(ranks: npt.ArrayLike, draws: int = PERMUTATION_DRAWS,
                           exact_work: int = PERMUTATION_EXACT_WORK) -> tuple[float, str]:
    """p-value of the Friedman statistic from its permutation distribution: (p, "exact" | "Monte Carlo").

    ranks: (N tasks, k arms) within-task ranks (ties averaged). Under H0 (the arms are interchangeable on every task)
    each task's ranks are equally likely in any order, independently across tasks: the permutation distribution of
    the Friedman statistic (Friedman 1937; Hollander, Wolfe & Chicken 2014, Nonparametric Statistical Methods, 3rd
    ed., section 7.1; Demšar 2006 points to exact tables for small N). The statistic is an increasing function of
    T = sum_j R_j^2 (R_j: rank sums), so p = P(T* >= T_obs), exact under H0 and valid with ties (the observed tie
    pattern of each task is kept).

    Exact: the distribution of the rank-sum vector is the convolution over tasks of each task's k! orderings.
    Because every task's set of orderings is closed under relabelling the arms and T is symmetric, the partial sums
    can be kept sorted (one state per multiset), which keeps the number of states small; ranks are doubled so the
    sums are integers and T compares exactly. Where a step would exceed `exact_work` candidate vectors, Monte Carlo:
    `draws` independent permutations of every task's ranks from np.random.default_rng(PERMUTATION_SEED), and
    p = (1 + #{T* >= T_obs}) / (1 + draws) (Phipson & Smyth 2010: never 0, valid at any number of draws).
    """
    twice = np.rint(2.0 * np.asarray(ranks, dtype=np.float64)).astype(np.int64)  # average ranks: multiples of 1/2
    n, k = twice.shape
    observed = int(np.sum(twice.sum(axis=0) ** 2))
    if math.factorial(k) <= exact_work:
        p = _friedman_exact(twice, observed, exact_work)
        if p is not None:
            return p, "exact"
    rng = np.random.default_rng(PERMUTATION_SEED)
    hits = 0
    step = max(1, 2**20 // max(1, n * k))
    for start in range(0, draws, step):
        block = rng.permuted(np.broadcast_to(twice, (min(step, draws - start), n, k)), axis=2)
        hits += int(np.sum(np.sum(block.sum(axis=1) ** 2, axis=1) >= observed))
    return (1.0 + hits) / (1.0 + draws), "Monte Carlo"


def _friedman_exact(twice: npt.NDArray[np.int64], observed: int, work: int) -> float | None:
    """P(T* >= observed) by convolving the tasks' orderings over sorted rank-sum states; None when too large."""
    n, k = twice.shape
    base = 2 * k * n + 1  # every partial sum of doubled ranks lies in [0, 2 k n]: a state packs into one integer
    if k * math.log2(base) >= 62:
        return None
    radix = base ** np.arange(k, dtype=np.int64)
    perms = np.array(list(itertools.permutations(range(k))), dtype=np.int64)  # (k!, k)
    states = np.sort(twice[0])[None, :]  # one task alone: every ordering gives the same sorted state
    weights = np.ones(1)
    for row in twice[1:]:
        options, counts = np.unique(row[perms], axis=0, return_counts=True)  # distinct orderings of this task
        if states.shape[0] * options.shape[0] > work:
            return None
        cand = np.sort((states[:, None, :] + options[None, :, :]).reshape(-1, k), axis=1)
        w = (weights[:, None] * (counts / perms.shape[0])[None, :]).reshape(-1)
        _, first, inverse = np.unique(cand @ radix, return_index=True, return_inverse=True)
        states = cand[first]
        weights = np.bincount(inverse.reshape(-1), weights=w, minlength=first.size).astype(np.float64)
    return float(min(1.0, weights[np.sum(states**2, axis=1) >= observed].sum()))


def friedman(losses: npt.ArrayLike, labels: list[str], alpha: float = 0.05) -> dict[str, Any]:
    """Average ranks, Friedman test (permutation p, Iman-Davenport F beside it), Nemenyi CD (Demšar 2006, 3.2.2).

    losses: (N tasks, k arms) of per-task geometric-mean test loss; rank 1 = lowest loss, ties averaged.
    chi2_F = 12 N / (k (k + 1)) [sum_j R_j^2 - k (k + 1)^2 / 4] (no tie correction, as in Demšar);
    F_F = (N - 1) chi2_F / (N (k - 1) - chi2_F) ~ F(k - 1, (k - 1)(N - 1)) (Iman & Davenport 1980), whose p-value
    (``iman_davenport_p``) is shown beside ``friedman_p`` (chi-square). ``p`` and ``rejects`` use the permutation
    p-value (friedman_permutation_p; ``p_method`` says exact or Monte Carlo): the F approximation rejected 6.5% of
    identical arms at N = 4 tasks (docs/suite_statistics.md), the permutation p is exact under H0.
    Statistics are None when N < 2 or k < 2; F is None (infinite, its p 0) when every task ranks the arms alike.
    """
    x = np.asarray(losses, dtype=np.float64).reshape(-1, len(labels))
    n, k = x.shape
    out: dict[str, Any] = {"n_tasks": n, "average": None, "friedman_chi2": None, "friedman_p": None,
                           "iman_davenport_f": None, "iman_davenport_p": None, "df": None, "p": None,
                           "p_method": None, "rejects": False, "q_alpha": None, "cd": None, "beyond_cd": [],
                           "note": None}
    if n == 0:
        out["note"] = "no task has data for every arm yet: no ranks"
        return out
    ranks = sps.rankdata(x, axis=1)
    avg = ranks.mean(axis=0)
    out["average"] = {a: float(r) for a, r in zip(labels, avg, strict=True)}
    if n < 2 or k < 2:
        out["note"] = f"{n} task(s) and {k} arm(s): the Friedman test needs at least 2 of each"
        return out
    chi2 = 12.0 * n / (k * (k + 1)) * (float(np.sum(avg**2)) - k * (k + 1) ** 2 / 4.0)
    df1, df2 = k - 1, (k - 1) * (n - 1)
    denom = n * (k - 1) - chi2
    f = (n - 1) * chi2 / denom if denom > 1e-12 else None
    p, method = friedman_permutation_p(ranks)
    q, cd = critical_difference(k, n, alpha)
    out.update(friedman_chi2=chi2, friedman_p=float(sps.chi2.sf(chi2, k - 1)), iman_davenport_f=f,
               iman_davenport_p=0.0 if f is None else float(sps.f.sf(f, df1, df2)), df=[df1, df2], p=p,
               p_method=f"{method} permutation", rejects=p <= alpha, q_alpha=q, cd=cd)
    out["beyond_cd"] = [{"a": a, "b": b, "rank_diff": float(avg[i] - avg[j])}
                        for i, a in enumerate(labels) for j, b in enumerate(labels)
                        if i < j and abs(avg[i] - avg[j]) > cd]
    if k - 1 <= cd:
        out["note"] = (f"with {n} tasks and {k} arms the Nemenyi test can never separate two arms: the largest "
                       f"possible difference of average ranks, {k - 1}, is not above CD = {cd:.2f}")
    return out


# ---------------------------------------------------------------- the verdict rule: fixed effect over tasks


def _fe_pair(a: str, b: str, xs: list[FloatArray], ys: list[FloatArray], level: float) -> dict[str, Any]:
    """Fixed-effect combination of per-task Welch comparisons (Welch 1947): xs, ys: per task, per-study units (n,).

    d_t = mean(x_t) - mean(y_t), v_t = var(x_t)/n_x + var(y_t)/n_y; D = mean_t d_t, SE = sqrt(sum_t v_t) / T;
    df by Satterthwaite (1946) over the 2T variance estimates: (sum q)^2 / sum (q^2 / (n - 1)).
    """
    out: dict[str, Any] = {"a": a, "b": b, "n_tasks": len(xs), "log_ratio": None, "se": None, "df": None,
                           "ratio": None, "ratio_ci": None, "p": None, "p_holm": None}
    if not xs:
        return out
    diff = float(np.mean([x.mean() - y.mean() for x, y in zip(xs, ys, strict=True)]))
    out.update(log_ratio=diff, ratio=math.exp(diff))
    if min(min(x.size for x in xs), min(y.size for y in ys)) < 2:
        return out
    q = np.array([s.var(ddof=1) / s.size for s in xs + ys])
    dof = np.array([s.size - 1 for s in xs + ys], dtype=np.float64)
    total = float(q.sum())
    se = math.sqrt(total) / len(xs)
    out["se"] = se
    if total == 0.0:
        out["p"] = 1.0 if diff == 0.0 else 0.0
        return out
    df = total**2 / float(np.sum(q**2 / dof))
    half = float(sps.t.ppf(0.5 + level / 2.0, df)) * se
    out.update(df=df, p=float(2.0 * sps.t.sf(abs(diff) / se, df)),
               ratio_ci=[math.exp(diff - half), math.exp(diff + half)])
    return out


def _decide(p: dict[str, Any], alpha: float, threshold: float) -> str:
    """The per-experiment rule (inference.family) on the aggregate: a win needs the Holm-adjusted p <= alpha and
    the ratio beyond 1 + min_effect; equivalence needs the ratio interval inside the ROPE (Benavoli et al. 2017)."""
    if p["p"] is None:
        return "untestable"
    diff = p["log_ratio"]
    if p["p_holm"] <= alpha and abs(diff) >= threshold:
        return "a" if diff < 0 else "b"
    ci = p["ratio_ci"]
    if ci is not None and -threshold < math.log(ci[0]) and math.log(ci[1]) < threshold:
        return "equivalent"
    return "undecided"


def fixed_effect_family(units: Mapping[str, Mapping[str, npt.ArrayLike]], labels: list[str], alpha: float = 0.05,
                        min_effect: float = 0.1, level: float = 0.95) -> dict[str, Any]:
    """Every pair of arms compared on average over the tasks; Holm over all pairs (Holm 1979); tiers and winner.

    units: task -> arm -> per-study mean log test loss (S_t,), every arm present on every task (the caller leaves
    incomplete tasks out). A fixed-effect claim: "on these tasks, on average", the tasks weighted equally.
    Returns {"tasks", "alpha", "min_effect", "threshold_log", "level", "means", "order", "pairs", "groups",
    "winner"}; a pair is "untestable" when some task has fewer than 2 studies for either arm.
    """
    arrays = {t: {a: np.asarray(arms[a], dtype=np.float64) for a in labels} for t, arms in units.items()}
    threshold = math.log1p(min_effect)
    pairs = [_fe_pair(a, b, [u[a] for u in arrays.values()], [u[b] for u in arrays.values()], level)
             for i, a in enumerate(labels) for b in labels[i + 1:]]
    testable = [p for p in pairs if p["p"] is not None]
    for p, adj in zip(testable, stats.holm([p["p"] for p in testable]), strict=True):
        p["p_holm"] = adj
    for p in pairs:
        p["decision"] = _decide(p, alpha, threshold)
    means = {a: float(np.mean([u[a].mean() for u in arrays.values()])) if arrays else None for a in labels}
    order = sorted(labels, key=lambda a: (means[a] if means[a] is not None else 0.0, labels.index(a)))
    groups = inference.tiers(order, pairs)
    winner = groups[0][0] if len(groups[0]) == 1 and len(labels) > 1 else None
    return {"tasks": list(arrays), "alpha": alpha, "min_effect": min_effect, "threshold_log": threshold,
            "level": level, "means": means, "order": order, "pairs": pairs, "groups": groups, "winner": winner}


# ---------------------------------------------------------------- per task, and where the tasks disagree


def per_task_summary(units: Mapping[str, Mapping[str, FloatArray]], alpha: float, min_effect: float,
                     level: float) -> dict[str, dict[str, Any]]:
    """task -> one experiment's verdict rule (inference.family) on its per-study units, summarised. The summary
    shows no P(A better) interval and no units_needed, so the family computes neither (decisions unchanged)."""
    out = {}
    for t, arms in units.items():
        fam = inference.family(arms, alpha, min_effect, level, p_better_interval=False, sizing=False)
        out[t] = {"winner": fam["winner"], "groups": fam["groups"], "n_studies": fam["n_units"],
                  "pairs": [{k: p[k] for k in ("a", "b", "ratio", "ratio_ci", "p_holm", "decision")}
                            for p in fam["pairs"]]}
    return out


def disagreements(per_task: Mapping[str, Mapping[str, Any]], labels: list[str]) -> list[dict[str, Any]]:
    """Pairs that one task decides one way and another task the other way (per-task decisions "a" / "b")."""
    out = []
    for i, a in enumerate(labels):
        for b in labels[i + 1:]:
            wins: dict[str, list[str]] = {a: [], b: []}
            for t, summary in per_task.items():
                for p in summary["pairs"]:
                    if {p["a"], p["b"]} == {a, b} and p["decision"] in ("a", "b"):
                        wins[p[p["decision"]]].append(t)
            if wins[a] and wins[b]:
                out.append({"a": a, "b": b, "a_better_on": wins[a], "b_better_on": wins[b]})
    return out


def _oriented(p: dict[str, Any], first: str) -> tuple[float, list[float] | None]:
    ci = p["ratio_ci"]
    if p["a"] == first:
        return p["ratio"], ci
    return 1.0 / p["ratio"], None if ci is None else [1.0 / ci[1], 1.0 / ci[0]]


def _ratio_words(p: dict[str, Any], first: str, level: float) -> str:
    ratio, ci = _oriented(p, first)
    return f"{ratio:.2f}×" + (f" ({level:.0%} CI [{ci[0]:.2f}, {ci[1]:.2f}])" if ci else " (no interval)")


def _beat_words(p: dict[str, Any], level: float) -> str:
    win, lose = (p["a"], p["b"]) if p["decision"] == "a" else (p["b"], p["a"])
    return f"{win} beats {lose} by {_ratio_words(p, win, level)}, Holm-adjusted p = {p['p_holm']:.3g}"


def verdict(fe: Mapping[str, Any], per_task: Mapping[str, Mapping[str, Any]], disagree: list[dict[str, Any]],
            left_out: list[str]) -> dict[str, Any]:
    """The conclusion in plain words: a winner only where fe["winner"] is set, a beaten pair only where its
    decision is "a" / "b", and every per-task disagreement said plainly."""
    groups, pairs, n = fe["groups"], fe["pairs"], len(fe["tasks"])
    rule = (f"Welch t on per-study mean log test loss, averaged over tasks; Holm-adjusted α = {fe['alpha']:g}, "
            f"practical threshold {fe['min_effect']:.0%}")
    head = f"Across {n} task{'s' if n != 1 else ''} (fixed effect over these tasks)"
    winner = fe["winner"]
    top = set(groups[0])
    inside = [_beat_words(p, fe["level"]) for p in pairs if p["decision"] in ("a", "b") and {p["a"], p["b"]} <= top]
    if n == 0:
        text = "No task has data for every arm yet: no verdict across tasks."
    elif winner is not None:
        runner = groups[1][0]
        p = next(q for q in pairs if {q["a"], q["b"]} == {winner, runner})
        text = (f"{head}, {winner} is best: on average over the tasks its geometric-mean test loss is "
                f"{_ratio_words(p, winner, fe['level'])} that of the runner-up {runner} "
                f"(adjusted p = {p['p_holm']:.3g}; {rule}).")
    elif all(p["decision"] == "equivalent" for p in pairs) and pairs:
        text = f"{head}, {inference.join_labels(groups[0])} are practically equivalent ({rule})."
    elif len(groups) > 1:
        text = f"{head}, no arm is best across the tasks: {inference.groups_text(groups)} ({rule})."
    elif inside:
        text = (f"{head}, no arm is shown best: {groups[0][0]} has the lowest average log loss but the tests cannot "
                f"separate it from {inference.join_labels(groups[0][1:])} ({rule}).")
    else:
        why = ("every pair is untestable: some task has fewer than 2 tuning studies for an arm"
               if all(p["decision"] == "untestable" for p in pairs) else rule)
        text = f"{head}, the tasks cannot tell the arms apart ({why})."
    if inside:
        text += " Within the top group the tests do separate: " + "; ".join(inside) + "."
    text += _disagreement_words(per_task, disagree)
    if left_out:
        text += f" Left out (not every arm has data yet): {', '.join(left_out)}."
    return {"text": text, "winner": winner}


def _disagreement_words(per_task: Mapping[str, Mapping[str, Any]], disagree: list[dict[str, Any]]) -> str:
    out = ""
    if disagree:
        out += " The tasks disagree: " + "; ".join(
            f"{d['a']} beats {d['b']} on {', '.join(d['a_better_on'])} but {d['b']} beats {d['a']} on "
            f"{', '.join(d['b_better_on'])}" for d in disagree) + "."
    winners = {t: s["winner"] for t, s in per_task.items() if s["winner"] is not None}
    if len(set(winners.values())) > 1:
        by_arm: dict[str, list[str]] = {}
        for t, w in winners.items():
            by_arm.setdefault(w, []).append(t)
        out += " The best arm differs by task: " + ", ".join(
            f"{w} best on {', '.join(ts)}" for w, ts in by_arm.items()) + "."
    return out


# ---------------------------------------------------------------- the whole suite


def aggregate(tasks: Mapping[str, TaskData], alpha: float = 0.05, min_effect: float = 0.1, level: float = 0.95,
              reps: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Every suite statistic of the module docstring, from task name -> TaskData. Bootstrap draws use
    np.random.default_rng(seed), `reps` resamples; intervals are percentile intervals at `level`."""
    if not 0.0 < level < 1.0 or not 0.0 < alpha < 1.0 or reps < 1 or min_effect < 0:
        raise ValueError("need 0 < level < 1, 0 < alpha < 1, reps >= 1 and min_effect >= 0")
    labels, data, trivial = read_tasks(tasks)
    notes = [f"task {t}: no data yet for {a}; left out of {a}'s aggregates" for t, arms in data.items()
             for a in labels if not arms[a]]
    filled = {t: arms for t, arms in data.items() if any(arms.values())}
    scores: dict[str, dict[str, Studies]] = {}
    norm: dict[str, dict[str, Any]] = {}
    for t, arms in filled.items():
        found, norm[t] = normalise({a: ss for a, ss in arms.items() if ss}, trivial[t])
        scores[t] = {a: found.get(a, []) for a in labels}
    units = study_units(filled)
    complete = [t for t, arms in data.items() if all(arms.values())]
    left_out = [t for t in data if t not in complete]
    fe = fixed_effect_family({t: units[t] for t in complete}, labels, alpha, min_effect, level)
    per_task = per_task_summary({t: {a: u for a, u in arms.items() if u.size} for t, arms in units.items()},
                                alpha, min_effect, level)
    disagree = disagreements(per_task, labels)
    geo = [[math.exp(float(np.log(_flat(data[t][a])).mean())) for a in labels] for t in complete]
    ranks = friedman(np.array(geo).reshape(len(complete), len(labels)), labels, alpha) | {"tasks": complete}
    notes += [f"task {t}: left out of the verdict and the ranks until every arm has data" for t in left_out]
    notes += [f"{p['a']} vs {p['b']}: untestable, some task has fewer than 2 tuning studies for one of them"
              for p in fe["pairs"] if p["decision"] == "untestable" and p["n_tasks"]]
    if ranks["note"]:
        notes.append("ranks: " + ranks["note"])
    rl = rliable_summary(scores, filled, labels, level, reps, np.random.default_rng(seed))
    return {
        "scope": SCOPE, "tasks": list(data), "arms": labels,
        "settings": {"alpha": alpha, "min_effect": min_effect, "level": level, "reps": reps, "seed": seed},
        "normalisation": {t: norm.get(t) for t in data},
        "normalised": {t: {a: float(np.mean(_flat(ss))) if ss else None for a, ss in scores[t].items()}
                       if t in scores else {a: None for a in labels} for t in data},
        **rl, "ranks": ranks,
        "pairs": fe["pairs"], "order": fe["order"], "groups": fe["groups"], "winner": fe["winner"],
        "verdict_tasks": complete, "per_task": per_task,
        "best_by_task": {t: s["groups"][0] if s["groups"] else [] for t, s in per_task.items()},
        "disagreements": disagree, "verdict": verdict(fe, per_task, disagree, left_out),
        "methods": METHODS, "notes": notes,
    }
