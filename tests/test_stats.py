"""Tests for bench.report.stats."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from scipy.stats import mannwhitneyu

from bench.report.stats import (
    best_so_far,
    compare_means,
    divergence_fraction,
    expected_best_of_n,
    holm,
    log_scores,
    mean_ci_t,
    near_bound,
    prob_a_better,
    still_improving,
    tuner_optimism,
    units_needed,
    variance_components,
    welch,
)

# Small, with a tie, unsorted: exercises the sorted-list formula on ties.
VALUES = np.array([3.0, 1.0, 3.0, 0.5])


def _brute_force(values: np.ndarray, n: int, best: str) -> tuple[float, float]:
    """Mean and population std of the best over all N^n equally likely draws."""
    pick = min if best == "min" else max
    outcomes = [pick(draw) for draw in itertools.product(values.tolist(), repeat=n)]
    return float(np.mean(outcomes)), float(np.std(outcomes))


@pytest.mark.parametrize(("direction", "best"), [("minimize", "min"), ("maximize", "max")])
def test_expected_best_of_n_matches_brute_force(direction: str, best: str) -> None:
    mean, std = expected_best_of_n(VALUES, direction)
    assert mean.shape == std.shape == (VALUES.size,)
    for n in range(1, VALUES.size + 1):
        bf_mean, bf_std = _brute_force(VALUES, n, best)
        assert mean[n - 1] == pytest.approx(bf_mean, rel=1e-12)
        assert std[n - 1] == pytest.approx(bf_std, rel=1e-9, abs=1e-12)


def test_expected_best_of_n_properties() -> None:
    values = np.array([0.9, 0.2, 0.5, 0.5, 0.7, 0.1])
    mean, std = expected_best_of_n(values)
    # n = 1 is a single draw: the sample mean and population std.
    assert mean[0] == pytest.approx(values.mean())
    assert std[0] == pytest.approx(values.std())
    assert np.all(np.diff(mean) <= 1e-15)
    assert np.all(mean >= values.min())
    mean_max, _ = expected_best_of_n(values, "maximize")
    assert np.all(np.diff(mean_max) >= -1e-15)
    assert np.all(mean_max <= values.max())


def test_expected_best_of_n_constant_has_zero_std() -> None:
    mean, std = expected_best_of_n(np.full(5, 2.5))
    np.testing.assert_allclose(mean, 2.5)
    np.testing.assert_allclose(std, 0.0, atol=1e-12)


@pytest.mark.parametrize("bad", [np.array([]), np.array([1.0, np.nan]), np.array([np.inf]), np.ones((2, 2))])
def test_expected_best_of_n_rejects_bad_input(bad: np.ndarray) -> None:
    with pytest.raises(ValueError):
        expected_best_of_n(bad)


def test_expected_best_of_n_rejects_bad_direction() -> None:
    with pytest.raises(ValueError, match="direction"):
        expected_best_of_n(VALUES, "min")


def test_prob_a_better_by_hand() -> None:
    assert prob_a_better(np.array([1.0, 2.0]), np.array([3.0, 4.0])) == 1.0
    assert prob_a_better(np.array([1.0, 2.0]), np.array([3.0, 4.0]), "maximize") == 0.0
    assert prob_a_better(np.array([2.0, 2.0]), np.array([2.0])) == 0.5
    # Pairs (1,2): win, (1,1): tie, (3,2): loss, (3,1): loss -> 1.5 / 4.
    assert prob_a_better(np.array([1.0, 3.0]), np.array([2.0, 1.0])) == 0.375


def test_prob_a_better_matches_mann_whitney_u() -> None:
    a = np.array([0.3, 0.5, 0.5, 0.9, 0.1])
    b = np.array([0.5, 0.4, 0.8, 0.2])
    # scipy's U counts pairs with a > b (ties 1/2): that is "A better" for maximize.
    u = mannwhitneyu(a, b).statistic / (a.size * b.size)
    assert prob_a_better(a, b, "maximize") == pytest.approx(u)
    assert prob_a_better(a, b, "minimize") == pytest.approx(1.0 - u)


def test_tuner_optimism() -> None:
    # mean 2, sample std 1 -> (0.5 - 2) / 1.
    assert tuner_optimism(0.5, np.array([1.0, 2.0, 3.0])) == pytest.approx(-1.5)
    assert math.isnan(tuner_optimism(0.5, np.array([1.0])))
    assert math.isnan(tuner_optimism(0.5, np.array([])))
    assert math.isnan(tuner_optimism(0.5, np.array([2.0, 2.0])))


@pytest.mark.parametrize(
    ("value", "low", "high", "log", "expected"),
    [
        (0.02, 0.0, 1.0, False, "low"),
        (0.97, 0.0, 1.0, False, "high"),
        (0.5, 0.0, 1.0, False, None),
        (0.06, 0.0, 1.0, False, None),
        # Log range 1e-5..1e-1 spans 4 decades: 5% is 0.2 decades.
        (1.5e-5, 1e-5, 1e-1, True, "low"),
        (8e-2, 1e-5, 1e-1, True, "high"),
        (1e-3, 1e-5, 1e-1, True, None),
        # 0.02 is near 0.0 linearly (2%), but not in log space over 1e-3..1.
        (2e-2, 1e-3, 1.0, True, None),
    ],
)
def test_near_bound(value: float, low: float, high: float, log: bool, expected: str | None) -> None:
    assert near_bound(value, low, high, log) == expected


def test_near_bound_errors() -> None:
    with pytest.raises(ValueError):
        near_bound(0.5, 1.0, 1.0, False)
    with pytest.raises(ValueError):
        near_bound(0.5, 0.0, 1.0, True)


def test_divergence_fraction() -> None:
    assert divergence_fraction(np.array([True, False, False, True])) == 0.5
    assert divergence_fraction(np.zeros(3, dtype=bool)) == 0.0
    with pytest.raises(ValueError):
        divergence_fraction(np.array([], dtype=bool))


# ---------------------------------------------------------------- small-sample inference (hand-checkable)


def test_mean_ci_t_by_hand() -> None:
    # x = 1, 2, 3: mean 2, s = 1, t_{2, .975} = 4.302653 -> half-width 4.302653 / sqrt(3) = 2.484138.
    m, lo, hi = mean_ci_t([1.0, 2.0, 3.0])  # type: ignore[misc]
    assert m == 2.0
    assert lo == pytest.approx(2.0 - 2.484138, abs=1e-6) and hi == pytest.approx(2.0 + 2.484138, abs=1e-6)


def test_mean_ci_t_needs_two_values() -> None:
    assert mean_ci_t([0.3]) is None  # no spread: no interval, never a zero-width one


def test_welch_by_hand() -> None:
    # a = 1, 2, 3 (var 1), b = 2, 4, 6 (var 4): se^2 = 1/3 + 4/3 = 5/3; df = (5/3)^2 / ((1/3)^2/2 + (4/3)^2/2)
    diff, se, df = welch([1, 2, 3], [2, 4, 6])
    assert diff == -2.0
    assert se == pytest.approx(math.sqrt(5 / 3))
    assert df == pytest.approx((5 / 3) ** 2 / ((1 / 9) / 2 + (16 / 9) / 2))


def test_compare_means_matches_scipy_welch() -> None:
    from scipy.stats import ttest_ind

    a, b = np.array([0.1, 0.5, 0.2, 0.4]), np.array([0.9, 0.7, 1.2])
    r = compare_means(a, b)
    assert r["p"] == pytest.approx(ttest_ind(a, b, equal_var=False).pvalue)
    assert r["diff_low"] < r["diff"] < r["diff_high"]
    # A is clearly lower: P(A better) above one half, its interval non-degenerate and inside (0, 1).
    assert 0.5 < r["p_a_better"] < 1.0  # type: ignore[operator]
    assert 0.0 < r["p_a_better_low"] < r["p_a_better_high"] < 1.0  # type: ignore[operator]


def test_p_a_better_interval_not_degenerate_at_complete_separation() -> None:
    # 5 vs 5 that separate completely: the bootstrap of the Mann-Whitney statistic gives [1, 1]; this must not.
    a, b = [0.10, 0.11, 0.12, 0.13, 0.14], [0.15, 0.16, 0.17, 0.18, 0.19]
    assert prob_a_better(a, b) == 1.0
    r = compare_means(a, b)
    assert r["p_a_better_low"] < 0.99  # type: ignore[operator]
    assert r["p_a_better_high"] <= 1.0  # type: ignore[operator]


def test_p_a_better_is_symmetric() -> None:
    a, b = [0.3, 0.5, 0.4], [0.6, 0.5, 0.9]
    ab, ba = compare_means(a, b), compare_means(b, a)
    assert ab["p_a_better"] == pytest.approx(1 - ba["p_a_better"])  # type: ignore[operator]
    assert ab["p_a_better_low"] == pytest.approx(1 - ba["p_a_better_high"])  # type: ignore[operator]


def test_compare_means_without_spread() -> None:
    same = compare_means([1.0, 1.0], [1.0, 1.0])
    assert same["p"] == 1.0 and same["diff_low"] is None and same["p_a_better"] is None
    apart = compare_means([1.0, 1.0], [2.0, 2.0])  # no spread, different means: certain
    assert apart["p"] == 0.0 and apart["diff"] == -1.0 and apart["se"] == 0.0 and apart["p_a_better_low"] is None


def test_holm_by_hand() -> None:
    # sorted 0.01, 0.03, 0.04 -> 0.03, 0.06, max(0.06, 0.04) = 0.06
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert holm([]) == []


def test_holm_matches_brute_force_definition() -> None:
    rng = np.random.default_rng(3)
    for _ in range(50):
        p = rng.uniform(0, 0.2, size=5).tolist()
        adj = holm(p)
        order = np.argsort(p)
        expect = np.maximum.accumulate([min(1.0, (5 - r) * p[i]) for r, i in enumerate(order)])
        assert [adj[i] for i in order] == pytest.approx(list(expect))


def test_variance_components_by_hand() -> None:
    # groups (1,2,3), (4,5,6), (7,8,9): MSW = 1; MSB = 3 * ((2-5)^2 + 0 + (8-5)^2) / 2 = 27; n0 = 3
    # sigma_between^2 = (27 - 1) / 3 = 26/3
    between, within = variance_components([[1, 2, 3], [4, 5, 6], [7, 8, 9]])
    assert within == pytest.approx(1.0)
    assert between == pytest.approx(math.sqrt(26 / 3))


def test_variance_components_degenerate_layouts() -> None:
    assert variance_components([[1.0, 3.0]]) == (None, pytest.approx(math.sqrt(2.0)))
    between, within = variance_components([[1.0], [3.0]])
    assert within is None and between == pytest.approx(math.sqrt(2.0))
    assert variance_components([[2.0, 2.0], [2.0, 2.0]]) == (0.0, 0.0)


def test_units_needed_monotone_and_by_simulation() -> None:
    assert units_needed(0.0, 1.0, 0.05) is None
    small, large = units_needed(0.5, 1.0, 0.05), units_needed(1.0, 1.0, 0.05)
    assert small is not None and large is not None and small > large
    # Cohen's table: d = 1 at alpha .05 two-sided, 80% power -> 17 per group.
    assert units_needed(1.0, 1.0, 0.05) == 17


def test_best_so_far_and_log_scores() -> None:
    assert best_so_far([3.0, 1.0, 2.0, 0.5]).tolist() == [3.0, 1.0, 1.0, 0.5]
    assert best_so_far([1.0, 3.0, 2.0], "maximize").tolist() == [1.0, 3.0, 3.0]
    assert np.isfinite(log_scores([0.0, 1.0])).all()


def test_still_improving_compares_with_seed_noise() -> None:
    flat_end = [np.log([1, 0.5, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4])] * 3  # best found early (trial 3 of 10)
    late = [np.log([1, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.3])] * 3  # improved at the last trial
    assert still_improving(flat_end, noise_sd=0.05) is False
    assert still_improving(late, noise_sd=0.05) is True
    # An improvement smaller than the seed noise is not evidence that more budget helps.
    assert still_improving(late, noise_sd=2.0) is False
    assert still_improving([np.log([1, 0.9, 0.8])], noise_sd=0.1) is True  # too short to tell


def test_verdict_never_calls_a_decided_pair_no_difference() -> None:
    """Tiers are not transitive: A (mean -2, wide) cannot be separated from B or C, but B (-1.91) and C (-1.01),
    each nearly constant, clearly differ. The text must not say 'no detectable difference between A, B, C'."""
    from bench.report import inference
    from bench.report.verdict import decide

    units = {"A": [-2.0, -1.0, -3.0], "B": [-1.90, -1.91, -1.92], "C": [-1.00, -1.01, -1.02]}
    fam = inference.family(units)
    fam["unit"] = "study"
    bc = next(p for p in fam["pairs"] if (p["a"], p["b"]) == ("B", "C"))
    assert bc["decision"] == "a"  # t = 0.9 / 0.00816 = 110 on 4 df: Holm p ~ 1e-7
    assert fam["groups"] == [["A", "B", "C"]] and fam["winner"] is None
    out = decide({"comparisons": {"test": fam}, "settings": {"seeds": 5}}, "test")
    assert "No detectable difference" not in out["text"]
    assert out["text"].startswith("No arm is shown best: A")
    assert "B beats C (0.41×" in out["text"]  # exp(-1.91 + 1.01) = 0.407


# ---------------------------------------------------------------- properties on random small arrays (Hypothesis)

# Tenths in [-5, 5]: exact enough that scipy and the formulas here agree to many digits, and ties do occur.
_value = st.integers(-50, 50).map(lambda x: x / 10)
_sample = st.lists(_value, min_size=2, max_size=7)
_pvalues = st.lists(st.one_of(st.sampled_from([0.0, 0.01, 0.05, 1.0]), st.floats(0.0, 1.0)), max_size=6)


def _holm_brute_force(p: list[float]) -> list[float]:
    """Adjusted p_i = the smallest alpha at which Holm's step-down procedure rejects H_i (by trying every alpha
    at which the procedure's decisions can change)."""
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])

    def rejected(alpha: float) -> set[int]:
        out: set[int] = set()
        for k, i in enumerate(order):
            if p[i] * (m - k) > alpha:
                break
            out.add(i)
        return out

    candidates = sorted({min(1.0, (m - k) * p[i]) for k, i in enumerate(order)} | {1.0})
    return [next((a for a in candidates if i in rejected(a)), 1.0) for i in range(m)]  # never rejected: 1


@given(_pvalues)
def test_holm_property_matches_the_step_down_procedure(p: list[float]) -> None:
    adj = holm(p)
    assert adj == pytest.approx(_holm_brute_force(p), rel=1e-12, abs=1e-15)
    assert all(a >= x for a, x in zip(adj, p, strict=True)) and all(a <= 1.0 for a in adj)
    # Monotone: a smaller raw p never gets a larger adjusted p.
    assert all(adj[i] <= adj[j] for i in range(len(p)) for j in range(len(p)) if p[i] <= p[j])


@pytest.mark.filterwarnings("ignore:Precision loss occurred:RuntimeWarning")  # scipy, on nearly equal samples
@given(_sample, _sample)
def test_welch_property_matches_scipy(a: list[float], b: list[float]) -> None:
    from scipy.stats import ttest_ind

    assume(np.var(a) > 0 or np.var(b) > 0)
    diff, se, df = welch(a, b)
    ref = ttest_ind(a, b, equal_var=False)
    assert diff == pytest.approx(np.mean(a) - np.mean(b), abs=1e-12)
    assert diff / se == pytest.approx(ref.statistic, rel=1e-9, abs=1e-9)
    assert df == pytest.approx(ref.df, rel=1e-9)
    r = compare_means(a, b)
    assert r["p"] == pytest.approx(ref.pvalue, rel=1e-8, abs=1e-12)
    assert r["diff_low"] is not None and r["diff_high"] is not None
    assert r["diff_low"] <= diff <= r["diff_high"]


@given(_sample, _sample)
def test_compare_means_property_direction_and_symmetry(a: list[float], b: list[float]) -> None:
    """Lower is better: P(A better) is above one half exactly when mean(a) < mean(b), and swapping the arms
    mirrors every number."""
    assume(np.var(a) > 0 or np.var(b) > 0)
    ab, ba = compare_means(a, b), compare_means(b, a)
    assert ab["diff"] == pytest.approx(-ba["diff"])  # type: ignore[operator]
    assert ab["p"] == pytest.approx(ba["p"])
    pa = ab["p_a_better"]
    assert pa is not None and ba["p_a_better"] is not None
    assert pa == pytest.approx(1.0 - ba["p_a_better"], abs=1e-9)
    if np.mean(a) < np.mean(b) - 1e-9:
        assert pa > 0.5
    elif np.mean(a) > np.mean(b) + 1e-9:
        assert pa < 0.5
    assert ab["p_a_better_low"] <= pa + 1e-9 and pa <= ab["p_a_better_high"] + 1e-9  # type: ignore[operator]


@given(_sample, st.sampled_from([0.5, 0.9, 0.95, 0.99]))
def test_mean_ci_t_property_matches_scipy(x: list[float], level: float) -> None:
    from scipy import stats as sps

    out = mean_ci_t(x, level)
    assert out is not None
    m, lo, hi = out
    assert m == pytest.approx(np.mean(x), abs=1e-12)
    ref_lo, ref_hi = sps.t.interval(level, len(x) - 1, loc=np.mean(x), scale=sps.sem(x)) if np.var(x) > 0 \
        else (m, m)
    assert lo == pytest.approx(ref_lo, abs=1e-9) and hi == pytest.approx(ref_hi, abs=1e-9)


@given(st.lists(_value, min_size=1, max_size=6), st.lists(_value, min_size=1, max_size=6),
       st.sampled_from(["minimize", "maximize"]))
def test_prob_a_better_property_by_enumeration(a: list[float], b: list[float], direction: str) -> None:
    better = (lambda x, y: x < y) if direction == "minimize" else (lambda x, y: x > y)
    wins = sum(1.0 if better(x, y) else 0.5 if x == y else 0.0 for x in a for y in b)
    assert prob_a_better(a, b, direction) == pytest.approx(wins / (len(a) * len(b)))


@given(st.lists(_value, min_size=1, max_size=4), st.sampled_from([("minimize", "min"), ("maximize", "max")]))
def test_expected_best_of_n_property_by_enumeration(values: list[float], how: tuple[str, str]) -> None:
    arr = np.array(values)
    mean, std = expected_best_of_n(arr, how[0])
    for n in range(1, arr.size + 1):
        bf_mean, bf_std = _brute_force(arr, n, how[1])
        assert mean[n - 1] == pytest.approx(bf_mean, abs=1e-9)
        assert std[n - 1] == pytest.approx(bf_std, abs=1e-6)


@given(st.lists(_value, min_size=1, max_size=8), st.sampled_from(["minimize", "maximize"]))
def test_best_so_far_property(values: list[float], direction: str) -> None:
    pick = min if direction == "minimize" else max
    assert best_so_far(values, direction).tolist() == [pick(values[: i + 1]) for i in range(len(values))]


# ---------------------------------------------------------------- input checks name the argument


@pytest.mark.parametrize(("call", "message"), [
    (lambda: expected_best_of_n([]), "values must not be empty"),
    (lambda: expected_best_of_n([[1.0]]), r"values must be 1-D, got shape \(1, 1\)"),
    (lambda: expected_best_of_n([1.0, math.inf]), r"values must be finite \(replace diverged trials first\)"),
    (lambda: prob_a_better([1.0], []), "b must not be empty"),
    (lambda: prob_a_better([math.nan], [1.0]), "a must be finite"),
    (lambda: prob_a_better([1.0], [1.0], "best"), r"direction must be one of \('minimize', 'maximize'\), got 'best'"),
    (lambda: best_so_far([1.0], "up"), "direction must be one of"),
    (lambda: mean_ci_t([1.0, 2.0], 1.0), r"level must be in \(0, 1\), got 1.0"),
    (lambda: mean_ci_t([1.0, 2.0], 0.0), r"level must be in \(0, 1\), got 0.0"),
    (lambda: mean_ci_t([]), "x must not be empty"),
    (lambda: welch([1.0], [1.0, 2.0]), "^welch needs at least 2 values per sample$"),
    (lambda: welch([1.0, 2.0], [2.0]), "welch needs at least 2 values per sample"),
    (lambda: welch([1.0, math.inf], [1.0, 2.0]), "a must be finite"),
    (lambda: welch([1.0, 2.0], [1.0, math.inf]), "b must be finite"),
    (lambda: compare_means([1.0, 2.0], [math.nan, 2.0]), "b must be finite"),
    (lambda: variance_components([[1.0], []]), r"groups\[1\] must not be empty"),
    (lambda: still_improving([[1.0] * 5], None, tail=0.0), r"tail must be in \(0, 1\], got 0.0"),
    (lambda: near_bound(0.5, 1.0, 1.0, False), "need high > low, got low=1.0, high=1.0"),
    (lambda: near_bound(0.5, 0.0, 1.0, True), "log-scale bounds and value must be positive"),
    (lambda: divergence_fraction([]), "diverged must not be empty"),
])
def test_bad_input_messages_name_the_argument(call: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message) as err:
        call()
    assert not str(err.value).startswith("XX") and not str(err.value).isupper()  # the message as written


def test_units_needed_edge_cases() -> None:
    assert units_needed(math.inf, 1.0, 0.05) is None and units_needed(-0.5, 1.0, 0.05) is None
    assert units_needed(math.nan, 1.0, 0.05) is None
    assert units_needed(0.5, 0.0, 0.05) == 2  # no spread: the smallest t test already detects it
    assert units_needed(0.01, 1.0, 0.05, limit=50) is None  # needs far more than the limit
    # Monotone in power and in alpha: more power or a stricter alpha needs more units.
    n80, n90 = units_needed(0.5, 1.0, 0.05), units_needed(0.5, 1.0, 0.05, power=0.9)
    n01 = units_needed(0.5, 1.0, 0.01)
    assert n80 is not None and n90 is not None and n01 is not None and n80 < n90 and n80 < n01
    # Cohen's table (two-sided alpha .05, 80% power): d = 0.5 -> 64 per group.
    assert n80 == 64


def _power(n: int, delta: float, sd: float, alpha: float) -> float:
    """Two-sided two-sample t test power with n per group, from the noncentral t (the definition, by hand)."""
    from scipy import stats as sps

    df = 2 * n - 2
    crit = sps.t.ppf(1 - alpha / 2, df)
    ncp = delta / (sd * math.sqrt(2 / n))
    return float(sps.nct.sf(crit, df, ncp) + sps.nct.cdf(-crit, df, ncp))


@pytest.mark.parametrize(("delta", "sd", "alpha", "power"), [(2.0, 1.0, 0.05, 0.8), (3.0, 1.0, 0.01, 0.9),
                                                             (1.5, 0.5, 0.05, 0.8), (0.8, 1.0, 0.1, 0.5)])
def test_units_needed_is_the_smallest_n_with_the_power(delta: float, sd: float, alpha: float, power: float) -> None:
    n = units_needed(delta, sd, alpha, power)
    assert n is not None and _power(n, delta, sd, alpha) >= power
    assert n == 2 or _power(n - 1, delta, sd, alpha) < power


def test_units_needed_limits_and_tails() -> None:
    assert units_needed(10.0, 1.0, 0.05) == 2  # the smallest t test already has the power
    assert units_needed(0.5, 1.0, 0.05, limit=64) == 64 and units_needed(0.5, 1.0, 0.05, limit=63) is None
    # Both tails count: at a negligible effect the power is about alpha, reached only with the lower tail added.
    assert units_needed(1e-3, 1.0, 0.05, power=0.05) == 2


def test_tuner_optimism_with_two_values_and_spread_not_one() -> None:
    # mean 2, sample sd sqrt(2): (0.5 - 2) / sqrt(2); two re-evaluations are enough to measure a spread.
    assert tuner_optimism(0.5, [1.0, 3.0]) == pytest.approx(-1.5 / math.sqrt(2))
    assert tuner_optimism(5.0, [[2.0, 4.0], [2.0, 4.0]]) == pytest.approx(2.0 / math.sqrt(4 / 3))  # ravelled


@pytest.mark.parametrize(("t_obs", "df"), [(2.0, 4.0), (-1.3, 7.5), (0.0, 3.0), (12.0, 6.0),
                                           (-9.8, 4.0), (-30.0, 4.0)])  # the last two pass where scipy's cdf is nan
def test_noncentrality_interval_solves_its_definition(t_obs: float, df: float) -> None:
    """[lo, hi] with P(T <= t_obs | lo) = 0.975 and P(T <= t_obs | hi) = 0.025 (Steiger & Fouladi 1997)."""
    from scipy import stats as sps

    from bench.report.stats import _nct_lambda_interval

    lo, hi = _nct_lambda_interval(t_obs, df, 0.95)
    assert lo < hi
    assert sps.nct.cdf(t_obs, df, lo) == pytest.approx(0.975, abs=1e-6)
    assert sps.nct.cdf(t_obs, df, hi) == pytest.approx(0.025, abs=1e-6)
    lo90, hi90 = _nct_lambda_interval(t_obs, df, 0.90)
    assert lo < lo90 < hi90 < hi  # a lower level, a narrower interval


def test_p_a_better_interval_has_real_width() -> None:
    from scipy import stats as sps

    a, b = np.array([0.1, 0.5, 0.2, 0.4]), np.array([0.9, 0.7, 1.2])
    r = compare_means(a, b)
    diff, se, df = welch(a, b)
    c = math.sqrt((1 / 4 + 1 / 3) / 2)
    assert r["p_a_better"] == pytest.approx(sps.norm.cdf(-diff / se * c))
    lo, hi = r["p_a_better_low"], r["p_a_better_high"]
    assert lo is not None and hi is not None and hi - lo > 0.2
    # The bounds map the noncentrality bounds through Phi(-lambda c): check one against its definition.
    lam = -sps.norm.ppf(lo) / c
    assert sps.nct.cdf(diff / se, df, lam) == pytest.approx(0.025, abs=1e-6)


def test_variance_components_one_value_in_one_group() -> None:
    assert variance_components([[1.5]]) == (None, None)
    assert variance_components([]) == (None, None)


def test_compare_means_reports_its_inputs() -> None:
    a, b = [0.1, 0.5, 0.2, 0.4], [0.9, 0.7, 1.2]
    r = compare_means(a, b)
    diff, se, df = welch(a, b)
    assert set(r) == {"diff", "se", "df", "n_a", "n_b", "p", "diff_low", "diff_high", "p_a_better",
                      "p_a_better_low", "p_a_better_high"}
    assert (r["diff"], r["se"], r["df"], r["n_a"], r["n_b"]) == (diff, se, df, 4.0, 3.0)
    with pytest.raises(ValueError, match="a must be finite"):
        compare_means([math.nan, 1.0], b)


def test_noncentrality_interval_where_scipy_gives_nan(monkeypatch: pytest.MonkeyPatch) -> None:
    """scipy's noncentral t returns nan far in a tail (cdf and sf alike at some points): there the CDF's limit is
    used (0 to the right of t_obs, 1 to the left), so the bracket search still ends and the roots are unchanged."""
    from scipy import stats as sps

    from bench.report import stats as stats_mod

    t_obs, df = -9.8, 4.0
    want = stats_mod._nct_lambda_interval(t_obs, df, 0.95)
    real = sps.nct

    class NanTails:
        @staticmethod
        def cdf(t: float, d: float, lam: float) -> float:
            return math.nan if abs(lam - t_obs) > 8 else float(real.cdf(t, d, lam))

        @staticmethod
        def sf(t: float, d: float, lam: float) -> float:
            return math.nan if abs(lam - t_obs) > 8 else float(real.sf(t, d, lam))

    monkeypatch.setattr(stats_mod.sps, "nct", NanTails)
    got = stats_mod._nct_lambda_interval(t_obs, df, 0.95)
    assert got == pytest.approx(want, abs=1e-6)


def test_welch_when_one_sample_does_not_vary() -> None:
    # a = 0, 2: var 2, var / n = 1; b constant: se^2 = 1, df = 1^2 / (1^2 / 1) = 1 (all of the spread is a's).
    assert welch([0.0, 2.0], [5.0, 5.0]) == (-4.0, 1.0, 1.0)
    diff, se, df = welch([5.0, 5.0], [5.0, 5.0, 5.0])
    assert (diff, se) == (0.0, 0.0) and math.isnan(df)


def test_verdict_words_orient_the_pair_toward_the_winner() -> None:
    """The winner is the pair's second arm here (pair X vs Y decided 'b'): its ratio and interval are inverted to
    read winner / runner-up. By hand: diff = -1.02, se = sqrt(2 * 0.0001 / 3) = 0.008165, t(0.975, 4) = 2.776, so
    exp(-1.02) = 0.36 with [exp(-1.0427), exp(-0.9973)] = [0.35, 0.37]."""
    from bench.report import inference
    from bench.report.verdict import decide

    units = {"X": [0.0, 0.01, 0.02], "Y": [-1.0, -1.01, -1.02]}
    fam = inference.family(units)
    fam["unit"] = "study"
    assert fam["pairs"][0]["decision"] == "b" and fam["winner"] == "Y"
    text = decide({"comparisons": {"test": fam}, "settings": {"seeds": 5}}, "test")["text"]
    assert text.startswith("Y is best: its geometric-mean test loss is 0.36× [0.35, 0.37] that of the runner-up X")
    assert "3 tuning studies per arm, each re-evaluated over 5 fresh seeds" in text
    # The same pair decided inside a group, listed in words with its interval, whichever side won.
    units3 = {"A": [-3.0, -1.0, -2.0], "C": [-1.00, -1.01, -1.02], "B": [-1.90, -1.91, -1.92]}
    fam3 = inference.family(units3)
    fam3["unit"] = "seed"
    cb = next(p for p in fam3["pairs"] if (p["a"], p["b"]) == ("C", "B"))
    assert cb["decision"] == "b"
    out = decide({"comparisons": {"test": fam3}, "settings": {"seeds": 5}}, "test")["text"]
    # exp(-0.9) = 0.41 with [exp(-0.9227), exp(-0.8773)] = [0.40, 0.42] (the same se and t as above)
    assert "B beats C (0.41× [0.40, 0.42], adjusted p = " in out and "3 seeds per arm" in out


def test_verdict_never_calls_a_significant_small_difference_undetectable() -> None:
    """The published charlm fixed-config case: every arm near the trivial loss, differences significant (p 0.002)
    but not shown beyond the 10% threshold. By hand: diff of mean log loss = -0.09, se = sqrt(2 * 1e-4 / 3) =
    0.008165, t(0.975, 4) = 2.776, interval [-0.1127, -0.0673]: it crosses -log(1.1) = -0.0953, so the pair is
    undecided although p < 0.05; exp(-0.09) = 0.91 with [exp(-0.1127), exp(-0.0673)] = [0.89, 0.93]."""
    from bench.report import inference
    from bench.report.verdict import decide

    fam = inference.family({"A": [0.0, 0.01, -0.01], "B": [0.09, 0.10, 0.08]})
    fam["unit"] = "seed"
    pair = fam["pairs"][0]
    assert pair["decision"] == "undecided" and pair["p_holm"] < 0.05
    text = decide({"comparisons": {"test": fam}, "settings": {"seeds": 5}}, "test")["text"]
    assert "No detectable difference" not in text
    assert "Significant, but not shown to exceed the practical threshold of 10%: A / B 0.91× [0.89, 0.93]" in text
    # With 5 seeds per arm the measured variance already suffices for the threshold: the text says the
    # difference is smaller, not that more seeds are needed (the charlm case said "about 2 seeds" beside 5).
    a = [0.0, 0.01, -0.01, 0.005, -0.005]
    fam5 = inference.family({"A": a, "B": [x + 0.09 for x in a]})
    fam5["unit"] = "seed"
    assert fam5["pairs"][0]["decision"] == "undecided" and fam5["pairs"][0]["units_needed"] <= 5
    text5 = decide({"comparisons": {"test": fam5}, "settings": {"seeds": 5}}, "test")["text"]
    assert "At the measured variance 5 seeds per arm would detect a 10% difference" in text5
    assert "would take about" not in text5


def test_verdict_says_when_arms_learned_nothing_and_names_significant_equivalent_pairs() -> None:
    """Three arms whose every seed scored the worst value (capped at the trivial loss) and one just below: the
    verdict says the three learned nothing, and lists the significant-but-equivalent pairs instead of calling
    everything 'no detectable difference'. By hand: depth 1's mean log loss is 0.05 below the others' (ratio
    exp(-0.05) = 0.95), its units' sd 0.0079 over 5 seeds: interval inside ±10% (equivalent), p < 0.001."""
    from bench.report import inference
    from bench.report.verdict import decide

    worst = 3.0
    low = [math.log(worst) - 0.05 + d for d in (0.0, 0.01, -0.01, 0.005, -0.005)]
    units = {"depth 1": low, **{f"depth {k}": [math.log(worst)] * 5 for k in (2, 3, 6)}}
    fam = inference.family(units)
    fam["unit"] = "seed"
    doc = {"comparisons": {"baseline": fam}, "settings": {"seeds": 5, "diverged_scored_as": worst},
           "baseline": {"depth 1": {"per_study": [{"test_losses": [math.exp(x) for x in low]}]},
                        **{f"depth {k}": {"per_study": [{"test_losses": [worst] * 5}]} for k in (2, 3, 6)}}}
    text = decide(doc, "baseline")["text"]
    assert "No detectable difference" not in text, text
    assert "depth 2, depth 3, depth 6 scored the worst value (3) on every seed" in text
    assert "Significant, but not shown to exceed the practical threshold of 10%: depth 1 / depth 2 0.95×" in text


def test_still_improving_over_the_whole_budget_compares_first_and_last_trial() -> None:
    """tail = 1 on 5 trials: k = min(N - 1, round(1 * 5)) = 4, the gain is curve[0] - curve[4] = 1.0 - 0.5 = 0.5,
    above a noise of 0.1; a k of 5 would wrap to curve[-1] and see no gain at all."""
    curve = [1.0, 0.9, 0.8, 0.7, 0.5]
    assert still_improving([curve], 0.1, tail=1.0)
    assert not still_improving([curve], 0.6, tail=1.0)  # 0.5 is within that noise
