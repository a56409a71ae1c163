"""Tests for bench.report.stats."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy.stats import mannwhitneyu

from bench.report.stats import (
    divergence_fraction,
    expected_best_of_n,
    expected_best_vs_budget,
    mean_ci_bootstrap,
    near_bound,
    pairwise_verdict,
    prob_a_better,
    prob_a_better_ci,
    prob_best_bootstrap,
    still_improving,
    tuner_optimism,
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


def test_expected_best_vs_budget() -> None:
    budget, mean, std = expected_best_vs_budget(VALUES, np.array([1.0, 2.0, 3.0, 2.0]))
    np.testing.assert_allclose(budget, [2.0, 4.0, 6.0, 8.0])
    ref_mean, ref_std = expected_best_of_n(VALUES)
    np.testing.assert_array_equal(mean, ref_mean)
    np.testing.assert_array_equal(std, ref_std)
    with pytest.raises(ValueError, match="shape"):
        expected_best_vs_budget(VALUES, np.ones(3))
    with pytest.raises(ValueError, match="non-negative"):
        expected_best_vs_budget(VALUES, np.array([1.0, -1.0, 1.0, 1.0]))


def test_prob_best_dominant_arm() -> None:
    arms = [np.array([5.0, 6.0, 7.0]), np.array([0.1, 0.2, 0.3]), np.array([4.0, 9.0])]
    p = prob_best_bootstrap(arms, reps=500)
    assert p.shape == (3,)
    assert p.sum() == pytest.approx(1.0)
    assert p[1] == pytest.approx(1.0)
    p_max = prob_best_bootstrap(arms, direction="maximize", reps=500)
    assert p_max[2] > 0.5  # 9.0 is the overall max and is drawn in ~75% of reps


def test_prob_best_identical_arms_split_equally() -> None:
    arm = np.array([1.0, 2.0, 3.0])
    p = prob_best_bootstrap([arm, arm.copy(), arm.copy()], reps=1000, seed=1)
    assert p.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(p, 1.0 / 3.0, atol=0.05)
    # Constant arms always tie: the split is exact.
    q = prob_best_bootstrap([np.ones(2), np.ones(3)], reps=10)
    np.testing.assert_allclose(q, [0.5, 0.5])


def test_prob_best_is_seeded() -> None:
    arms = [np.array([1.0, 2.0, 3.0]), np.array([1.5, 2.5])]
    a = prob_best_bootstrap(arms, reps=200, seed=7)
    b = prob_best_bootstrap(arms, reps=200, seed=7)
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError):
        prob_best_bootstrap([], reps=10)


def test_mean_ci_contains_mean_and_narrows() -> None:
    rng = np.random.default_rng(0)
    small = rng.normal(size=10)
    large = rng.normal(size=400)
    m_s, lo_s, hi_s = mean_ci_bootstrap(small, reps=1000)
    m_l, lo_l, hi_l = mean_ci_bootstrap(large, reps=1000)
    assert lo_s <= m_s <= hi_s
    assert lo_l <= m_l <= hi_l
    assert m_s == pytest.approx(small.mean())
    assert hi_l - lo_l < hi_s - lo_s


def test_mean_ci_single_value_and_errors() -> None:
    assert mean_ci_bootstrap(np.array([4.2])) == (4.2, 4.2, 4.2)
    with pytest.raises(ValueError):
        mean_ci_bootstrap(np.array([]))
    with pytest.raises(ValueError, match="level"):
        mean_ci_bootstrap(np.array([1.0, 2.0]), level=1.0)


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


def test_prob_a_better_ci() -> None:
    a = np.array([0.1, 0.3, 0.2, 0.5, 0.25, 0.15])
    b = np.array([0.4, 0.35, 0.6, 0.2, 0.45])
    point, low, high = prob_a_better_ci(a, b, reps=1000)
    assert point == prob_a_better(a, b)
    assert 0.0 <= low <= point <= high <= 1.0
    assert low < high
    # Complete separation leaves no bootstrap spread.
    assert prob_a_better_ci(np.array([1.0, 2.0]), np.array([3.0, 4.0]), reps=50) == (
        1.0,
        1.0,
        1.0,
    )


def test_prob_a_better_ci_chunking_matches_single_chunk(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    a = np.array([0.1, 0.3, 0.2, 0.5])
    b = np.array([0.4, 0.35, 0.2])
    ref = prob_a_better_ci(a, b, reps=100, seed=3)
    monkeypatch.setattr("bench.report.stats._MAX_CHUNK_ELEMS", 25)
    assert prob_a_better_ci(a, b, reps=100, seed=3) == ref


@pytest.mark.parametrize(
    ("low", "high", "expected"),
    [
        (0.55, 0.9, {"significant": True, "meaningful": True}),
        (0.55, 0.7, {"significant": True, "meaningful": False}),
        (0.4, 0.8, {"significant": False, "meaningful": True}),
        (0.3, 0.6, {"significant": False, "meaningful": False}),
        (0.5, 0.75, {"significant": False, "meaningful": False}),  # strict bounds
    ],
)
def test_pairwise_verdict(low: float, high: float, expected: dict[str, bool]) -> None:
    assert pairwise_verdict(low, high) == expected


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


def test_still_improving() -> None:
    n = 20
    assert still_improving(np.linspace(1.0, 0.0, n))
    assert not still_improving(np.full(n, 0.3))
    # Plateaued: all progress in the first half, the last 20% is flat.
    plateau = np.concatenate([np.linspace(1.0, 0.0, 10), np.zeros(10)])
    assert not still_improving(plateau)
    assert still_improving(np.linspace(0.0, 1.0, n), direction="maximize")
    assert not still_improving(np.linspace(0.0, 1.0, n), direction="minimize")
    assert still_improving(np.full(4, 0.3))  # too few trials to tell


def test_still_improving_on_expected_best_curve() -> None:
    mean, _ = expected_best_of_n(np.linspace(0.0, 1.0, 30))
    assert still_improving(mean)


def test_divergence_fraction() -> None:
    assert divergence_fraction(np.array([True, False, False, True])) == 0.5
    assert divergence_fraction(np.zeros(3, dtype=bool)) == 0.0
    with pytest.raises(ValueError):
        divergence_fraction(np.array([], dtype=bool))
