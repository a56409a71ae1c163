"""The calibration benchmark's three properties, pinned on few replicates (benchmarks/calibration.py prints them on
many). Seeds are fixed, so each figure is deterministic; the bounds are wide enough that they hold for any seed
with overwhelming probability (binomial tails below 1e-4 at the figures measured on 1000 replicates), and narrow
enough that a broken rule fails them: e.g. dropping the Holm correction raises the null rate to about 16%, and a
z interval in place of the t interval at 3 studies covers about 81%."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.report import inference, stats
from tests.conftest import load_calibration

cal = load_calibration()


@pytest.mark.parametrize("design", [cal.Design(), cal.Design(heavy=True), cal.Design(noisy_arm=2.0)],
                         ids=["normal", "heavy", "unequal"])
def test_null_rate_of_naming_any_winner_is_at_most_alpha(design: object) -> None:
    hits, n = cal.null_fpr(design, 200, np.random.default_rng(11))
    assert n == 200
    assert hits / n <= 0.1  # 5% target; 200 draws at a true 5% reach 10% with probability 0.002


def test_power_at_the_stated_effect_reaches_80_percent() -> None:
    won, n = cal.power(cal.Design(), 0.25, 120, np.random.default_rng(12))
    assert won / n >= 0.7  # measured 85% on 1000 replicates
    won5, n5 = cal.power(cal.Design(studies=5), 0.5, 120, np.random.default_rng(13))
    assert won5 / n5 >= 0.8  # measured 93% on 1000 replicates


def test_power_grows_with_the_effect_and_the_studies() -> None:
    rng = np.random.default_rng(14)
    small = cal.power(cal.Design(), 0.7, 100, rng)[0]
    large = cal.power(cal.Design(), 0.35, 100, rng)[0]
    more = cal.power(cal.Design(studies=8), 0.7, 100, rng)[0]
    assert small < large and small < more


def test_every_printed_interval_keeps_its_coverage() -> None:
    for label, (h, n) in cal.coverage(cal.Design(), 200, np.random.default_rng(15)).items():
        assert 0.88 <= h / n <= 0.995, label  # 95% target; SE at 200 draws is 1.5%


def test_the_replaced_percentile_bootstrap_undercovers() -> None:
    h, n = cal.percentile_bootstrap_coverage(5, 400, np.random.default_rng(16))
    assert h / n < 0.9


def test_the_simulation_is_the_report_hierarchy() -> None:
    """Study units are per-study means of the seeds: their spread is sd_study^2 + sd_seed^2 / M."""
    d = cal.Design(studies=4000, seeds=5)
    units = cal.simulate(d, np.zeros(2), np.random.default_rng(17))
    expect = math.sqrt(d.sd_study**2 + d.sd_seed**2 / d.seeds)
    assert abs(float(np.std(units["arm 0"], ddof=1)) - expect) < 0.01


def test_fast_path_decides_exactly_as_the_report() -> None:
    """The benchmark skips only the P(A better) interval: decisions and groups are those of the full family."""
    rng = np.random.default_rng(18)
    for _ in range(20):
        units = cal.simulate(cal.Design(), np.array([math.log(0.4), 0.0, 0.0, 0.2]), rng)
        full, fast = inference.family(units), inference.family(units, p_better_interval=False)
        assert [p["decision"] for p in full["pairs"]] == [p["decision"] for p in fast["pairs"]]
        assert full["groups"] == fast["groups"] and full["winner"] == fast["winner"]
        assert all(p["p_a_better_ci"] is None for p in fast["pairs"])
        assert stats.compare_means(units["arm 0"], units["arm 1"], p_better_interval=False)["p_a_better"] is None


def test_mutation_sample_interval_covers_the_true_share() -> None:
    """60 of 600 mutants at a true 90% caught: the exact interval covers at least 95% of the time (measured 97.7%
    on 2000 replicates)."""
    hits, n = cal.mutation_sample_coverage(0.9, 300, np.random.default_rng(15))
    assert n == 300 and hits / n >= 0.93  # 300 draws at a true 97.7% fall to 93% with probability below 1e-4
