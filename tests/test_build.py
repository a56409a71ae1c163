"""bench.report.build on hand-made records (no storage, no training): every section's values written out by hand.

The records are what bench.report.collect returns (trial and slot dicts), made small enough that each number in
the expected output can be checked with pencil and paper; each test says how its numbers come about.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Any

import numpy as np
import pytest
from scipy import stats as sps

import bench
from bench.report import build as build_mod
from bench.report import inference
from bench.report.build import (
    _expected_best,
    _score,
    _scored,
    _seed_trials,
    _tune,
    arm_summary,
    budget_analysis,
    build,
    comparison,
    diagnostics,
    fairness,
    missing,
    seeds_summary,
    tuning_curves,
    worst_score,
)
from bench.report.collect import Collected
from bench.report.provenance import report_provenance
from bench.report.verdict import verdict
from bench.spec import Arm, Spec, load_spec
from bench.tuning.studies import all_studies
from tests.conftest import tiny_spec

WORST = 1.0  # the trivial loss of every synthetic record here
_IDS = itertools.count(1)  # slot ids


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> Spec:
    """Depths 1 and 2, 3 studies x 3 trials, 2 fresh seeds per study, a random sampler, a fixed baseline."""
    path = tiny_spec(tmp_path_factory.mktemp("spec"), budget={"trials": 3, "studies": 3},
                     sampler={"kind": "random", "seed": 0}, evaluation={"seeds": 2}, baseline={"lr": 0.01})
    return load_spec(path)


def trial(spec: Spec, arm: Arm, study: int | None, number: int, state: str = "complete", value: float | None = None,
          role: str = "tune", **kw: Any) -> dict[str, Any]:
    """One trial as collect() returns it (the defaults: counted, lr 0.01, one second, 100 parameters)."""
    t = {"role": role, "arm": arm.label, "arm_key": arm.key, "depth": arm.depth, "study": study, "number": number,
         "state": state, "value": value, "counted": True, "params": {"lr": 0.01}, "seconds": 1.0, "n_params": 100,
         "hidden": 8, "epochs_run": 1, "seed": None, "test_loss": None, "rank": None, "source_trial": None,
         "source_study": None, "val_losses": [], "lost_reason": None, "spec_hash": spec.hash, "host": "h",
         "device": "cpu", "datetime_start": None}
    t.update(kw)
    return t


def slot(arm: Arm, study: int, idx: int, role: str = "tune", state: str = "done", lost: int = 0) -> dict[str, Any]:
    return {"id": next(_IDS), "role": role, "arm": arm.key, "study": study, "idx": idx,
            "state": state, "lost": lost, "trial_number": idx}


def collected(spec: Spec, trials: list[dict[str, Any]], slots: list[dict[str, Any]] | None = None,
              **kw: Any) -> Collected:
    base: dict[str, Any] = {"stored_spec_hash": spec.hash, "study_attrs": {}, "trivial_loss": WORST}
    base.update(kw)
    return Collected(spec, "sqlite:///b.db", trials=trials, slots=slots or [], **base)


# ---------------------------------------------------------------- scores


@pytest.mark.parametrize(("value", "state", "worst", "sign", "want"), [
    (0.5, "complete", 2.0, 1, 0.5),
    (3.0, "complete", 2.0, 1, 2.0),      # a loss above the trivial one is capped at it
    (2, "pruned", 3.0, 1, 2.0),           # an int comes back as a float
    (0.5, "diverged", 2.0, 1, 2.0),      # a diverged run scores worst, whatever its value
    (None, "pruned", 2.0, 1, 2.0),
    (math.nan, "complete", 2.0, 1, 2.0),
    (math.inf, "complete", 2.0, 1, 2.0),
    (-math.inf, "complete", 2.0, 1, 2.0),
    (0.9, "complete", 0.2, -1, 0.9),     # maximizing: above the floor stays
    (0.1, "complete", 0.2, -1, 0.2),     # ... below it is raised to it
])
def test_score(value: float | None, state: str, worst: float, sign: int, want: float) -> None:
    got = _score(value, state, worst, sign)
    assert got == want and isinstance(got, float)


def test_worst_score(spec: Spec) -> None:
    assert worst_score(collected(spec, [], trivial_loss=2)) == 2.0
    assert isinstance(worst_score(collected(spec, [], trivial_loss=2)), float)
    assert worst_score(collected(spec, [], trivial_loss=None)) == math.inf
    assert worst_score(collected(spec, [], trivial_loss=0.0)) == math.inf  # no trivial loss measured
    user = dataclasses.replace(spec, worst=1.5)
    assert worst_score(collected(user, [], trivial_loss=2.0)) == 1.5  # the spec's [metric] worst wins


def test_tune_and_scored_select_counted_tuning_trials_in_order(spec: Spec) -> None:
    a1, a2 = spec.arms
    trials = [trial(spec, a1, 1, 0), trial(spec, a1, 0, 2), trial(spec, a1, 0, 0), trial(spec, a1, 0, 0, role="eval"),
              trial(spec, a2, 0, 1), trial(spec, a1, 0, 1, counted=False), trial(spec, a1, 2, 5)]
    col = collected(spec, trials)
    assert [(t["study"], t["number"]) for t in _tune(col, a1)] == [(0, 0), (0, 2), (1, 0), (2, 5)]
    assert [(t["study"], t["number"]) for t in _tune(col, a1, 0)] == [(0, 0), (0, 2)]
    assert [(t["study"], t["number"]) for t in _tune(col, a1, 2)] == [(2, 5)]
    assert [(t["study"], t["number"]) for t in _tune(col, a2)] == [(0, 1)]
    mixed = [trial(spec, a1, 0, 0, "pruned", None), trial(spec, a1, 0, 1, "diverged", None),
             trial(spec, a1, 0, 2, "pruned", 0.4), trial(spec, a1, 0, 3, "complete", 0.5)]
    assert [t["number"] for t in _scored(mixed)] == [1, 2, 3]  # a run pruned before its first epoch has no score


# ---------------------------------------------------------------- best per arm


def _tuning(spec: Spec) -> list[dict[str, Any]]:
    """Depth 1's tuning trials (study, number: state value seconds):
    study 0: 0 complete 0.5 1.0 | 1 diverged (a stale value 0.05) 2.0 | 2 pruned 0.3 no seconds
    study 1: 0 complete 0.3 1.5 | 1 complete 0.3 0.5 | 2 pruned before its first epoch 0.25
    study 2: 0 complete 0.6 1.0 | 1 complete 0.35 1.0 (one slot unfinished)
    plus an uncounted 0.1 (a lost slot's rerun) and depth 2's trials, which must not leak in."""
    a1, a2 = spec.arms
    return [
        trial(spec, a1, 0, 0, "complete", 0.5, params={"lr": 0.001}),
        trial(spec, a1, 0, 1, "diverged", 0.05, seconds=2.0, params={"lr": 0.002}),
        trial(spec, a1, 0, 2, "pruned", 0.3, seconds=None, params={"lr": 0.003}, hidden=16, val_losses=[0.9, 0.3]),
        trial(spec, a1, 0, 3, "complete", 0.1, counted=False),
        trial(spec, a1, 1, 0, "complete", 0.3, seconds=1.5, params={"lr": 0.004}),
        trial(spec, a1, 1, 1, "complete", 0.3, seconds=0.5, params={"lr": 0.005}),
        trial(spec, a1, 1, 2, "pruned", None, seconds=0.25, n_params=None),
        trial(spec, a1, 2, 0, "complete", 0.6, params={"lr": 0.006}),
        trial(spec, a1, 2, 1, "complete", 0.35, params={"lr": 0.007}),
        trial(spec, a2, 0, 0, "complete", 0.01, n_params=200),
        trial(spec, a1, 0, 0, "complete", 0.01, role="eval"),
    ]


def _slots(spec: Spec) -> list[dict[str, Any]]:
    a1, a2 = spec.arms
    out = [slot(a1, k, i, lost={(0, 1): 1, (1, 0): 2}.get((k, i), 0)) for k in range(3) for i in range(3)]
    out[-1]["state"] = "free"
    return out + [slot(a2, 0, 0, lost=5), slot(a1, 0, 0, role="eval", lost=7)]


def test_arm_summary_by_hand(spec: Spec) -> None:
    """Study bests 0.3 (trial 2, pruned: pruned runs compete), 0.3 (trial 0: the tie goes to the earlier trial),
    0.35; the arm's best is the earliest study's 0.3; the AlgoPerf median of the study bests is 0.3 (their mean
    would be 0.3167). The diverged run's stale 0.05 and the uncounted 0.1 never count."""
    a1 = spec.arms[0]
    got = arm_summary(collected(spec, _tuning(spec), _slots(spec)), a1)
    assert got == {
        "arm": {"depth": 1}, "label": "depth 1", "depth": 1, "budget": 9, "n_finished": 8,
        "studies": [
            {"study": 0, "budget": 3, "n_finished": 3, "by_outcome": {"complete": 1, "pruned": 1, "diverged": 1},
             "best_value": 0.3, "best_params": {"lr": 0.003}, "best_trial": 2, "seconds": 3.0},
            {"study": 1, "budget": 3, "n_finished": 3, "by_outcome": {"complete": 2, "pruned": 1, "diverged": 0},
             "best_value": 0.3, "best_params": {"lr": 0.004}, "best_trial": 0, "seconds": 2.25},
            {"study": 2, "budget": 3, "n_finished": 2, "by_outcome": {"complete": 2, "pruned": 0, "diverged": 0},
             "best_value": 0.35, "best_params": {"lr": 0.007}, "best_trial": 1, "seconds": 2.0},
        ],
        "by_outcome": {"complete": 5, "pruned": 2, "diverged": 1},
        "median_best_value": 0.3, "best_value": 0.3, "best_params": {"lr": 0.003},
        "best_value_bits": 0.3 / math.log(2), "best_study": 0, "best_trial": 2, "best_val_losses": [0.9, 0.3],
        "n_params": 100, "hidden": 16,
        "mean_trial_seconds": pytest.approx(7.25 / 7), "total_seconds": 7.25, "lost": 3,
    }


def test_arm_summary_maximizing_and_without_results(spec: Spec) -> None:
    a1, a2 = spec.arms
    up = dataclasses.replace(spec, direction="maximize")
    got = arm_summary(collected(up, _tuning(up), _slots(up)), a1)
    assert [s["best_value"] for s in got["studies"]] == [0.5, 0.3, 0.6]
    assert [s["best_trial"] for s in got["studies"]] == [0, 0, 0]
    assert (got["best_value"], got["best_study"], got["best_trial"]) == (0.6, 2, 0)
    assert got["median_best_value"] == 0.5 and got["best_value_bits"] is None  # bits only for a loss
    # Depth 2: one complete trial; two sizes of model among its trials are both listed.
    two = _tuning(spec) + [trial(spec, a2, 1, 0, "complete", 0.2, n_params=300)]
    got2 = arm_summary(collected(spec, two), a2)
    assert got2["n_params"] == [200, 300] and got2["budget"] == 0 and got2["lost"] == 0
    assert [s["best_value"] for s in got2["studies"]] == [0.01, 0.2, None]
    assert got2["median_best_value"] == pytest.approx(0.105)
    empty = arm_summary(collected(spec, [trial(spec, a2, 0, 0, "diverged", None, n_params=None, seconds=None)]), a2)
    assert {k: empty[k] for k in ("median_best_value", "best_value", "best_params", "best_value_bits", "best_study",
                                  "best_trial", "best_val_losses", "n_params", "hidden", "mean_trial_seconds",
                                  "total_seconds", "n_finished")} == {
        "median_best_value": None, "best_value": None, "best_params": None, "best_value_bits": None,
        "best_study": None, "best_trial": None, "best_val_losses": None, "n_params": None, "hidden": None,
        "mean_trial_seconds": None, "total_seconds": 0, "n_finished": 1}
    assert empty["studies"][0] == {"study": 0, "budget": 0, "n_finished": 1,
                                   "by_outcome": {"complete": 0, "pruned": 0, "diverged": 1}, "best_value": None,
                                   "best_params": None, "best_trial": None, "seconds": 0.0}


# ---------------------------------------------------------------- what a partial run lacks


def test_missing_lists_every_unfinished_phase(spec: Spec) -> None:
    a1, a2 = spec.arms
    assert missing(collected(spec, [], stored_spec_hash=None), []) == [
        "experiment 'tiny' is not in this storage yet: run `bench init` or `bench run`"]
    names = {(arm.label, role, k): name for arm, role, k, name in all_studies(spec)}
    tuned = arm_summary(collected(spec, _tuning(spec), _slots(spec)), a1)
    slots = ([slot(a1, k, s, role="eval", state="done" if s < 2 - k else "free") for k in range(3) for s in range(2)]
             + [slot(a1, 0, 0, role="baseline"), slot(a1, 0, 1, role="baseline", state="claimed")]
             + [slot(a2, 0, s, role="baseline") for s in range(2)])
    col = collected(spec, [], slots, missing_studies=[names[("depth 1", "eval", 0)], "tiny-unknown"])
    assert missing(col, [tuned]) == [
        f"re-evaluation phase incomplete: study {names[('depth 1', 'eval', 0)]} is missing from the storage "
        "(deleted?)",
        "a phase incomplete: study tiny-unknown is missing from the storage (deleted?)",
        "depth 1 study 2: 2/3 tuning trials finished",
        "depth 1: 3/6 re-evaluation runs finished",   # 2 seeds x top 1 x 3 studies expected; 2 + 1 + 0 done
        "depth 2: 0/6 re-evaluation runs finished",
        "depth 1: 1/2 baseline runs finished",
    ]
    # More evaluation slots than seeds x studies (a larger top_k): the ledger's count is what is expected.
    more = [slot(a, k, s, role="eval") for a in (a1, a2) for k in range(3) for s in range(3)]
    more[0]["state"] = "claimed"
    base = [slot(a, 0, s, role="baseline") for a in (a1, a2) for s in range(2)]
    assert missing(collected(spec, [], more + base), []) == ["depth 1: 8/9 re-evaluation runs finished"]
    transfer = dataclasses.replace(spec, baseline_from=1)
    tr = [slot(a2, 0, 0, role="transfer")]
    assert missing(collected(transfer, [], more[1:] + more[:1] + base + tr), []) == [
        "depth 1: 8/9 re-evaluation runs finished", "depth 1: 0/2 transferred-config runs finished",
        "depth 2: 1/2 transferred-config runs finished"]
    # Without an evaluation phase only tuning is expected.
    none = dataclasses.replace(spec, evaluation=dataclasses.replace(spec.evaluation, seeds=0))
    assert missing(collected(none, []), [tuned]) == ["depth 1 study 2: 2/3 tuning trials finished"]


def test_missing_counts_at_their_edges(spec: Spec) -> None:
    """One fresh seed is an evaluation phase; no [baseline], no baseline runs expected; fewer evaluation slots than
    seeds x studies (not yet made) expect seeds x top_k x studies; exactly seeds x studies slots under top_k = 2
    (a study with one config to re-evaluate) expect just those."""
    a1, a2 = spec.arms
    plain = dataclasses.replace(spec, baseline=(), evaluation=dataclasses.replace(spec.evaluation, seeds=1))
    three = [slot(a1, k, 0, role="eval") for k in range(3)] + [slot(a2, 0, 0, role="eval")]
    assert missing(collected(plain, [], three), []) == ["depth 2: 1/3 re-evaluation runs finished"]
    assert missing(collected(spec, [], three[:3] + [slot(a, 0, s, role="baseline") for a in (a1, a2)
                                                    for s in range(2)]), []) == [
        "depth 1: 3/6 re-evaluation runs finished", "depth 2: 0/6 re-evaluation runs finished"]
    top2 = dataclasses.replace(plain, evaluation=dataclasses.replace(plain.evaluation, seeds=2, top_k=2))
    six = [slot(a, k, s, role="eval") for a in (a1, a2) for k in range(3) for s in range(2)]
    six[0]["state"] = "free"
    assert missing(collected(top2, [], six), []) == ["depth 1: 5/6 re-evaluation runs finished"]


# ---------------------------------------------------------------- tuning curves and budgets


def test_tuning_curves_by_hand(spec: Spec) -> None:
    """Scores per study (diverged = 1.0): [0.5, 1.0, 0.3], [0.3, 0.3] (trial 2 has no score), [0.6, 0.35];
    running bests [0.5, 0.5, 0.3], [0.3, 0.3], [0.6, 0.35]; over the first two trials (the shortest study):
    median [0.5, 0.35], band [0.3, 0.3] to [0.6, 0.5]."""
    a1 = spec.arms[0]
    col = collected(spec, _tuning(spec))
    got = tuning_curves(col, a1, WORST)
    assert got is not None
    ebn = got.pop("expected_best_of_n")
    assert got == {
        "studies": [{"study": 0, "best": [0.5, 0.5, 0.3], "seconds": [1.0, 3.0, 3.0]},
                    {"study": 1, "best": [0.3, 0.3], "seconds": [1.5, 2.0]},
                    {"study": 2, "best": [0.6, 0.35], "seconds": [1.0, 2.0]}],
        "n": [1, 2], "median": [0.5, 0.35], "low": [0.3, 0.3], "high": [0.6, 0.5],
        "median_seconds": [1.0, 2.0]}
    # The pooled trials, diverged at the trivial loss, in study and trial order (random sampler: valid).
    assert ebn == _expected_best(np.array([0.5, 1.0, 0.3, 0.3, 0.3, 0.6, 0.35]), "minimize")
    # A diverged run with no trivial loss to score it: the expectation would be infinite, so it is left out.
    assert "expected_best_of_n" not in (tuning_curves(col, a1, math.inf) or {})
    tpe = dataclasses.replace(spec, sampler=dataclasses.replace(spec.sampler, kind="tpe"))
    assert "expected_best_of_n" not in (tuning_curves(collected(tpe, _tuning(tpe)), a1, WORST) or {})
    # A study with nothing scored is left out of the curves; an arm with nothing scored has none.
    a2 = spec.arms[1]
    only = [trial(spec, a2, 0, 0, "pruned", None), trial(spec, a2, 1, 0, "complete", 0.7, seconds=2.0)]
    assert tuning_curves(collected(spec, only), a2, WORST) == {
        "studies": [{"study": 1, "best": [0.7], "seconds": [2.0]}], "n": [1], "median": [0.7], "low": [0.7],
        "high": [0.7], "median_seconds": [2.0],
        "expected_best_of_n": {"mean": [0.7], "low": [0.7], "high": [0.7]}}
    assert tuning_curves(collected(spec, only[:1]), a2, WORST) is None


def test_tuning_curves_maximizing(spec: Spec) -> None:
    up = dataclasses.replace(spec, direction="maximize")
    a2 = up.arms[1]
    trials = [trial(up, a2, 0, i, "complete", v) for i, v in enumerate([0.2, 0.5, 0.4])]
    trials.append(trial(up, a2, 0, 3, "diverged", None))
    got = tuning_curves(collected(up, trials), a2, 0.0)
    assert got is not None and got["studies"][0]["best"] == [0.2, 0.5, 0.5, 0.5]
    assert got["expected_best_of_n"] == _expected_best(np.array([0.2, 0.5, 0.4, 0.0]), "maximize")


def _brute(pool: list[float], pick: Any) -> tuple[list[float], list[float]]:
    """Mean and population sd of the best of n draws with replacement, over all len(pool)^n equally likely draws."""
    means, sds = [], []
    for n in range(1, len(pool) + 1):
        best = [pick(d) for d in itertools.product(pool, repeat=n)]
        means.append(float(np.mean(best)))
        sds.append(float(np.std(best)))
    return means, sds


def test_expected_best_band_clipped_at_the_best_observed() -> None:
    """Dodge et al. 2019's expected best of n with a one-sd band; no draw beats the best observed value, so the
    band stops there (at n = 1: 0.6 +- 0.255, inside; by n = 4 the lower edge would pass 0.3)."""
    pool = [0.5, 1.0, 0.3, 0.6]
    m, sd = _brute(pool, min)
    got = _expected_best(np.array(pool), "minimize")
    assert got["mean"] == pytest.approx(m)
    assert got["high"] == pytest.approx([a + b for a, b in zip(m, sd, strict=True)])
    assert got["low"] == pytest.approx([max(a - b, 0.3) for a, b in zip(m, sd, strict=True)])
    assert got["low"][0] == pytest.approx(0.6 - math.sqrt(0.065)) and got["low"][3] == 0.3
    m, sd = _brute(pool, max)
    got = _expected_best(np.array(pool), "maximize")
    assert got["mean"] == pytest.approx(m)
    assert got["low"] == pytest.approx([a - b for a, b in zip(m, sd, strict=True)])
    assert got["high"] == pytest.approx([min(a + b, 1.0) for a, b in zip(m, sd, strict=True)])
    assert got["high"][0] == pytest.approx(0.6 + math.sqrt(0.065)) and got["high"][3] == 1.0
    assert all(isinstance(v, float) for k in ("mean", "low", "high") for v in got[k])


def _curve(median: list[float], *studies: tuple[list[float], list[float]]) -> dict[str, Any]:
    return {"median": median, "studies": [{"best": b, "seconds": s} for b, s in studies]}


def test_budget_analysis_by_hand() -> None:
    """A leads at 3 trials (0.4 < 0.42); at B's compute (median final seconds 2.5 < A's 4.5) B leads: A's studies
    stand at 0.5 (2 s) and, having spent 3 s on its first trial, at the worst first score of any study, 1.25
    (median 0.875); B's at 0.45 and 0.7 (its second trial ends at 2.5 s, within rounding: median 0.575). The
    medians cross after trial 1."""
    tuning = {
        "A": _curve([1.075, 0.55, 0.4], ([0.9, 0.5, 0.4], [1.0, 2.0, 3.0]), ([1.25, 0.6, 0.4], [3.0, 4.0, 6.0])),
        "B": _curve([0.8, 0.7, 0.42], ([0.8, 0.7, 0.45], [1.0, 1.5, 2.0]),
                    ([0.8, 0.7, 0.39], [1.0, 2.5 * (1 + 1e-9), 3.0])),
        "C": None,
    }
    assert budget_analysis(tuning, "minimize") == {
        "equal_trials": {"n": 3, "ranking": ["A", "B"], "values": {"A": 0.4, "B": 0.42}},
        "equal_compute": {"seconds": 2.5, "ranking": ["B", "A"], "values": {"A": 0.875, "B": 0.575}},
        "agree": False, "crossings": [{"a": "A", "b": "B", "at_n": [2], "ahead_at_end": "A"}], "target": 0.4,
        # A's studies both reach 0.4 at trial 3 (3 s, 6 s); one of B's does (0.39 at trial 3), so half of B's
        # studies never reach it: the median is not finite and is reported as None.
        "to_target": {"A": {"trials": 3, "seconds": 4.5, "studies_reached": 2, "studies": 2},
                      "B": {"trials": None, "seconds": None, "studies_reached": 1, "studies": 2}},
    }
    assert budget_analysis({"A": tuning["A"], "C": None}, "minimize") == {
        "equal_trials": None, "equal_compute": None, "crossings": [], "to_target": {}, "agree": None}


def test_budget_analysis_maximizing_and_uneven_lengths() -> None:
    """Maximizing: higher is ahead. B's medians: below A at trial 1, tied at 2 (no change of sign), above at 3,
    below at 4; ranked at 4 trials, the shorter curve's length."""
    tuning: dict[str, dict[str, Any] | None] = {
        "A": _curve([0.5, 0.6, 0.6, 0.8, 0.9], ([0.5, 0.6, 0.6, 0.8, 0.9], [1.0, 2.0, 3.0, 4.0, 5.0])),
        "B": _curve([0.4, 0.6, 0.7, 0.7], ([0.4, 0.6, 0.7, 0.7], [1.0, 2.0, 3.0, 4.0])),
    }
    got = budget_analysis(tuning, "maximize")
    assert got["equal_trials"] == {"n": 4, "ranking": ["A", "B"], "values": {"A": 0.8, "B": 0.7}}
    assert got["equal_compute"] == {"seconds": 4.0, "ranking": ["A", "B"], "values": {"A": 0.8, "B": 0.7}}
    assert got["agree"] is True and got["target"] == 0.8
    assert got["crossings"] == [{"a": "A", "b": "B", "at_n": [3, 4], "ahead_at_end": "A"}]
    assert got["to_target"] == {"A": {"trials": 4, "seconds": 4.0, "studies_reached": 1, "studies": 1},
                                "B": {"trials": None, "seconds": None, "studies_reached": 0, "studies": 1}}


def test_budget_analysis_second_arm_ahead_after_a_tie() -> None:
    """B behind at trial 1, level at 2 (a tie is no crossing), ahead at 3: one crossing, at trial 3, with B ahead at
    the end and ranked first; A never reaches B's 0.4."""
    tuning: dict[str, dict[str, Any] | None] = {
        "A": _curve([0.5, 0.45, 0.45], ([0.5, 0.45, 0.45], [1.0, 2.0, 3.0])),
        "B": _curve([0.6, 0.45, 0.4], ([0.6, 0.45, 0.4], [1.0, 2.0, 3.0])),
    }
    assert budget_analysis(tuning, "minimize") == {
        "equal_trials": {"n": 3, "ranking": ["B", "A"], "values": {"A": 0.45, "B": 0.4}},
        "equal_compute": {"seconds": 3.0, "ranking": ["B", "A"], "values": {"A": 0.45, "B": 0.4}},
        "agree": True, "crossings": [{"a": "A", "b": "B", "at_n": [3], "ahead_at_end": "B"}], "target": 0.4,
        "to_target": {"A": {"trials": None, "seconds": None, "studies_reached": 0, "studies": 1},
                      "B": {"trials": 3, "seconds": 3.0, "studies_reached": 1, "studies": 1}},
    }


def test_budget_to_target_allows_rounding_only() -> None:
    """A study reaches the target when its best is within a relative 1e-9 of it (float noise), not 1e-9 beyond."""
    target = 0.4
    tuning: dict[str, dict[str, Any] | None] = {
        "A": _curve([target], ([target], [1.0])),
        "B": _curve([0.5], ([0.6, target * (1 + 5e-10)], [1.0, 2.0]), ([0.6, target + 1e-9], [1.0, 2.0]),
                    ([0.5, 0.5], [1.0, 2.0])),
    }
    got = budget_analysis(tuning, "minimize")
    assert got["target"] == target and got["to_target"]["B"] == {"trials": None, "seconds": None,
                                                                "studies_reached": 1, "studies": 3}


# ---------------------------------------------------------------- re-evaluation


def _evals(spec: Spec) -> list[dict[str, Any]]:
    """Depth 1's re-evaluation: log test losses study 0 [-1.1, -0.9], study 1 [-0.6, -0.4], study 2 [diverged
    (scores 1.0: log 0), -0.2]; per-study means -1.0, -0.5, -0.1. Given out of order, with a second-ranked config
    and an uncounted run that must be left out."""
    a1 = spec.arms[0]

    def ev(k: int, seed: int, log_test: float, val: float | None, **kw: Any) -> dict[str, Any]:
        given = {"role": "eval", "seed": seed, "rank": 0, "test_loss": math.exp(log_test),
                 "params": {"lr": 0.001 * (k + 1)}, "source_trial": k + 5, **kw}
        return trial(spec, a1, k, 10 * k + seed, given.pop("state", "complete"), val, **given)

    return [ev(1, 1, -0.4, 0.6), ev(0, 1, -0.9, 0.44), ev(2, 0, -3.0, None, state="diverged"), ev(0, 0, -1.1, 0.40),
            ev(2, 1, -0.2, 0.7), ev(1, 0, -0.6, 0.5), ev(0, 2, -5.0, 0.1, rank=1), ev(1, 2, -5.0, 0.1, counted=False),
            ev(0, 3, -5.0, 0.1, role="baseline")]


def test_seed_trials_rank_zero_in_study_and_seed_order(spec: Spec) -> None:
    got = _seed_trials(collected(spec, _evals(spec)), spec.arms[0], "eval")
    assert [(t["study"], t["seed"]) for t in got] == [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)]
    nulls = [dict(t, study=None, seed=None, rank=None) for t in _evals(spec)[:1]]
    assert len(_seed_trials(collected(spec, nulls), spec.arms[0], "eval")) == 1  # a fixed run: rank None is 0


def test_seeds_summary_by_hand(spec: Spec) -> None:
    """Units = per-study means [-1.0, -0.5, -0.1]; a t interval on 2 df; one-way ANOVA with MSW = 0.02 (each
    study's two seeds differ by 0.2), MSB = 2 * sum((mean - grand)^2) / 2, n0 = (6 - 12 / 6) / 2 = 2. Tuner
    optimism: (tuning best - mean of the seeds' validation scores) / their sd, median over studies 0 and 1 (study
    2's tuning best is unknown)."""
    a1 = spec.arms[0]
    tuned = {"studies": [{"study": 0, "best_value": 0.3}, {"study": 1, "best_value": 0.5},
                         {"study": 2, "best_value": None}]}
    got = seeds_summary(collected(spec, _evals(spec)), a1, "eval", WORST, tuned)
    assert got is not None
    units = [-1.0, -0.5, -0.1]
    m, sd = sum(units) / 3, float(np.std(units, ddof=1))
    half = sps.t.ppf(0.975, 2) * sd / math.sqrt(3)
    msb = 2 * sum((u - m) ** 2 for u in units) / 2
    val_logs = [np.log([0.40, 0.44]), np.log([0.5, 0.6]), np.log([1.0, 0.7])]
    val_msw = sum(float(((g - g.mean()) ** 2).sum()) for g in val_logs) / 3
    opt = [(0.3 - 0.42) / float(np.std([0.40, 0.44], ddof=1)), (0.5 - 0.55) / float(np.std([0.5, 0.6], ddof=1))]
    per_study = [
        {"study": 0, "params": {"lr": 0.001}, "source_trial": 5, "n_seeds": 2, "n_diverged": 0,
         "test_losses": pytest.approx([math.exp(-1.1), math.exp(-0.9)]), "val_losses": [0.40, 0.44],
         "log_mean": pytest.approx(-1.0), "geo_mean": pytest.approx(math.exp(-1.0))},
        {"study": 1, "params": {"lr": 0.002}, "source_trial": 6, "n_seeds": 2, "n_diverged": 0,
         "test_losses": pytest.approx([math.exp(-0.6), math.exp(-0.4)]), "val_losses": [0.5, 0.6],
         "log_mean": pytest.approx(-0.5), "geo_mean": pytest.approx(math.exp(-0.5))},
        {"study": 2, "params": {"lr": 0.003}, "source_trial": 7, "n_seeds": 2, "n_diverged": 1,
         "test_losses": pytest.approx([1.0, math.exp(-0.2)]), "val_losses": [1.0, 0.7],
         "log_mean": pytest.approx(-0.1), "geo_mean": pytest.approx(math.exp(-0.1))},
    ]
    assert got == {
        "unit": "study", "units": pytest.approx(units), "n_studies": 3, "n_seeds": 6, "n_diverged": 1,
        "per_study": per_study, "median": pytest.approx(math.exp(-0.5)), "geo_mean": pytest.approx(math.exp(m)),
        "geo_mean_ci": pytest.approx([math.exp(m - half), math.exp(m + half)]),
        "sd_between_studies": pytest.approx(math.sqrt((msb - 0.02) / 2)),
        "sd_within_study": pytest.approx(math.sqrt(0.02)),
        "val_sd_within_study": pytest.approx(math.sqrt(val_msw)), "params": None,
        "tuner_optimism": pytest.approx(float(np.median(opt))),
    }
    assert got["tuner_optimism"] == pytest.approx((-0.12 / math.sqrt(0.0008) - 0.05 / math.sqrt(0.005)) / 2)
    # Maximizing (a worst score of 0.01, below every value): the same values read the other way, so the
    # optimism of each study flips sign (the tuning bests 0.3 and 0.5 lie below their seeds' means).
    up = dataclasses.replace(spec, direction="maximize")
    got_up = seeds_summary(collected(up, _evals(up)), a1, "eval", 0.01, tuned)
    assert got_up is not None and got_up["tuner_optimism"] == pytest.approx(-got["tuner_optimism"])
    assert seeds_summary(collected(spec, _evals(spec)), spec.arms[1], "eval", WORST, tuned) is None
    no_best = {"studies": [{"study": k, "best_value": None} for k in range(3)]}
    blind = seeds_summary(collected(spec, _evals(spec)), a1, "eval", WORST, no_best)
    assert blind is not None and blind["tuner_optimism"] is None


def test_seeds_summary_of_one_fixed_config(spec: Spec) -> None:
    """One study (a fixed baseline): the seeds are the units; no between-study spread, no tuner optimism."""
    a2 = spec.arms[1]
    runs = [trial(spec, a2, 0, s, "complete", 0.5, role="baseline", seed=s, test_loss=math.exp(lt))
            for s, lt in enumerate([-0.7, -0.5, -0.3])]
    got = seeds_summary(collected(spec, runs), a2, "baseline", WORST, {"studies": []})
    assert got is not None and "tuner_optimism" not in got
    assert got["unit"] == "seed" and got["units"] == pytest.approx([-0.7, -0.5, -0.3])
    assert (got["n_studies"], got["n_seeds"], got["params"]) == (1, 3, {"lr": 0.01})
    assert got["geo_mean"] == pytest.approx(math.exp(-0.5)) and got["median"] == pytest.approx(math.exp(-0.5))
    half = sps.t.ppf(0.975, 2) * 0.2 / math.sqrt(3)
    assert got["geo_mean_ci"] == pytest.approx([math.exp(-0.5 - half), math.exp(-0.5 + half)])
    assert got["sd_between_studies"] is None and got["sd_within_study"] == pytest.approx(0.2)
    one = seeds_summary(collected(spec, runs[:1]), a2, "baseline", WORST, {"studies": []})
    assert one is not None and one["geo_mean_ci"] is None and one["sd_within_study"] is None


def test_comparison_passes_the_settings_on() -> None:
    doc = {"settings": {"alpha": 0.2, "min_effect": 0.3, "direction": "maximize"},
           "test": {"A": {"unit": "study", "units": [0.1, 0.2, 0.3]}, "B": {"unit": "study", "units": [1.0, 1.1, 1.3]},
                    "C": None},
           "baseline": {"A": {"unit": "seed", "units": [0.1, 0.2]}, "B": {"unit": "study", "units": [0.3, 0.5]}},
           "transfer": {"A": {"unit": "seed", "units": [0.1, 0.2]}}}
    got = comparison(doc, "test")
    want = inference.family({"A": [0.1, 0.2, 0.3], "B": [1.0, 1.1, 1.3]}, 0.2, 0.3, direction="maximize")
    assert got == {**want, "unit": "study"}
    assert got["winner"] == "B"  # maximizing: the higher scores win
    assert comparison(doc, "baseline")["unit"] == "seed"  # type: ignore[index]
    assert comparison(doc, "transfer") is None and comparison(doc, "nothing") is None


# ---------------------------------------------------------------- diagnostics


def test_diagnostics_notes_by_hand(spec: Spec) -> None:
    """Depth 1: lr 0.0295 is 99.5% of the way up its log range (high end); dropout 0 sits at a natural floor (no
    note); 2 of 8 trials diverged (25%: not above the 25% threshold); its best-so-far fell from 0.7 to 0.5 over
    the last trial (log gain 0.34 > seed noise 0.1). Depth 2: lr 0.00102 (low end), dropout 0.29 (high end,
    within 5% of 0.3; the space's parameters in name order); 2 of 4 diverged; improving by 0.336 > 0.01 with no
    noise measured."""
    a1, a2 = spec.arms
    trials = ([trial(spec, a1, 0, i, "diverged" if i < 2 else "complete", 0.5) for i in range(8)]
              + [trial(spec, a2, 0, i, "diverged" if i % 2 else "complete", 0.5) for i in range(4)])
    falling = {"studies": [{"best": [1.0, 0.9, 0.8, 0.7, 0.5]}, {"best": [1.0, 0.9, 0.8, 0.7, 0.5]}]}
    doc = {"arms": [{"label": "depth 1", "best_params": {"lr": 0.0295, "dropout": 0.0, "init": "orthogonal"}},
                    {"label": "depth 2", "best_params": {"lr": 0.00102, "dropout": 0.29}}],
           "tuning": {"depth 1": falling, "depth 2": falling},
           "test": {"depth 1": {"val_sd_within_study": 0.1}, "depth 2": None}}
    improving = "best-so-far still improving over the last 20% of the budget by more than seed noise"
    assert diagnostics(collected(spec, trials), doc) == {
        "depth 1": {"at_bound": {"lr": "high"}, "divergence_fraction": 0.25, "still_improving": True,
                    "seed_noise_log_sd": 0.1,
                    "notes": ["best lr = 0.0295 is at the high end of its range: widen the space",
                              improving + ": budget may be too small"]},
        "depth 2": {"at_bound": {"lr": "low", "dropout": "high"}, "divergence_fraction": 0.5, "still_improving": True,
                    "seed_noise_log_sd": None,
                    "notes": ["best dropout = 0.29 is at the high end of its range: widen the space",
                              "best lr = 0.00102 is at the low end of its range: widen the space",
                              "50% of tuning trials diverged",
                              improving + " (noise unmeasured: no re-evaluation): budget may be too small"]},
    }
    # Gains below the noise, no curve, no trials, no best config: nothing to note.
    # lr 0.002 is 3.4% up its range on a linear scale but 20% on the log scale it is tuned on: not at a bound.
    doc = {"arms": [{"label": "depth 1", "best_params": {"lr": 0.002}}, {"label": "depth 2", "best_params": None}],
           "tuning": {"depth 1": falling, "depth 2": None},
           "test": {"depth 1": {"val_sd_within_study": 0.5}, "depth 2": {"val_sd_within_study": 0.5}}}
    assert diagnostics(collected(spec, []), doc) == {
        label: {"at_bound": {}, "divergence_fraction": 0.0, "still_improving": imp, "seed_noise_log_sd": 0.5,
                "notes": []} for label, imp in (("depth 1", False), ("depth 2", None))}


def test_diagnostics_maximizing_reads_a_rising_curve(spec: Spec) -> None:
    up = dataclasses.replace(spec, direction="maximize")
    rising = {"studies": [{"best": [0.1, 0.2, 0.3, 0.4, 0.6]}]}
    doc = {"arms": [{"label": "depth 1", "best_params": {}}, {"label": "depth 2", "best_params": {}}],
           "tuning": {"depth 1": rising, "depth 2": None}, "test": {}}
    got = diagnostics(collected(up, []), doc)
    assert got["depth 1"]["still_improving"] is True and got["depth 1"]["seed_noise_log_sd"] is None


# ---------------------------------------------------------------- fairness


def _fair_col(spec: Spec, **kw: Any) -> Collected:
    h = spec.hash
    a1 = spec.arms[0]
    base: dict[str, Any] = {
        "study_attrs": {"s0": {"spec_hash": h}, "s1": {"spec_hash": h}},
        "trials": [trial(spec, a1, 0, 0), trial(spec, a1, 0, 1, counted=False, spec_hash="edited")],
        "distributions": {"s0": {"lr": "Float(0.001, 0.03, log)"}, "s1": {"lr": "Float(0.001, 0.03, log)"}},
        "slots": [slot(a1, 0, 0)], "stored": {}, "recorded": True,
    }
    base.update(kw)
    return collected(spec, base.pop("trials"), base.pop("slots"), **base)


def _fair_arms(finished: list[list[int]], budget: int = 3) -> list[dict[str, Any]]:
    return [{"label": f"depth {i + 1}", "studies": [{"n_finished": n, "budget": budget} for n in ns],
             "n_params": 100 * (i + 1), "hidden": 8, "total_seconds": 10.0 + i, "mean_trial_seconds": 1.0 + i,
             "lost": i, "by_outcome": {"complete": 3, "pruned": i, "diverged": 2 * i}} for i, ns in enumerate(finished)]


RECORD = {"status": "verified", "text": "3 slots verified", "head": "ab12", "mismatches": [], "n_mismatches": 0,
          "unaccounted": [], "n_unaccounted": 0, "chain_problems": []}


@pytest.fixture
def record(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The record audit's result as fairness() sees it (bench.report.audit has its own tests); edit it per test.
    Also checks that fairness passes the audit the collected record."""
    rec = dict(RECORD)
    seen: list[tuple[Any, ...]] = []

    def fake(slots: Any, stored: Any, name: str, spec_hash: Any, recorded: bool) -> dict[str, Any]:
        seen.append((slots, stored, name, spec_hash, recorded))
        return rec

    monkeypatch.setattr(build_mod, "audit", fake)
    rec["_seen"] = seen
    return rec


def test_fairness_all_held_by_hand(spec: Spec, record: dict[str, Any]) -> None:
    col = _fair_col(spec)
    got = fairness(col, _fair_arms([[3, 3, 3], [3, 3, 3]]))
    assert record["_seen"] == [(col.slots, col.stored, "tiny", spec.hash, True)]
    assert got == {
        "checks": [
            {"invariant": 1, "name": "one spec, hash on experiment and every study and trial", "held": True},
            {"invariant": 2, "name": "same search space, sampler, pruner, epochs, data split and seed for every arm",
             "held": True, "detail": "2 tuning studies with identical parameter distributions"},
            {"invariant": 3, "name": "every study finished exactly budget.trials tuning trials", "held": True,
             "detail": "depth 1: 3/3/3 of 3, depth 2: 3/3/3 of 3"},
            {"invariant": 4, "name": "work spread across arms and studies (parity)", "held": True,
             "detail": "max - min finished per study = 0"},
            {"invariant": 5, "name": "every phase's studies are in the storage", "held": True, "detail": "all present"},
            {"invariant": 5, "name": "every counted trial matches its ledger record (value, state, params, "
                                     "distributions, spec hash)", "held": True, "detail": "3 slots verified"},
            {"invariant": 5, "name": "every finished trial is accounted for by a ledger slot", "held": True,
             "detail": "none unaccounted"},
            {"invariant": 5, "name": "the record's digest chain verifies", "held": True, "detail": "head ab12"},
            {"invariant": 5, "name": "remaining asymmetries stated below", "held": True},
        ],
        "all_held": True,
        "asymmetries": [
            {"arm": "depth 1", "n_params": 100, "hidden": 8, "total_seconds": 10.0, "mean_trial_seconds": 1.0,
             "lost_and_rerun": 0, "diverged": 0, "pruned": 0},
            {"arm": "depth 2", "n_params": 200, "hidden": 8, "total_seconds": 11.0, "mean_trial_seconds": 2.0,
             "lost_and_rerun": 1, "diverged": 2, "pruned": 1},
        ],
        "record": record,
    }


def _held(got: dict[str, Any]) -> list[bool]:
    return [c["held"] for c in got["checks"]]


@pytest.mark.parametrize(("change", "failed"), [
    ({"stored_spec_hash": "other"}, [0]),
    ({"study_attrs": {"s0": {"spec_hash": "other"}, "s1": {}}}, [0, 1]),
    ({"study_attrs": {}}, [0, 1]),  # no study attributes at all: nothing vouches for the spec
    ({"trials": "edited"}, [0]),
    ({"missing_studies": ["tiny-depth1-eval"]}, [0, 4]),
    ({"distributions": {"s0": {"lr": "Float(0.001, 0.03, log)"}, "s1": {"lr": "Float(0.001, 0.1, log)"}}}, [1]),
])
def test_fairness_each_stored_check_fails_alone(spec: Spec, record: dict[str, Any], change: dict[str, Any],
                                                failed: list[int]) -> None:
    if change.get("trials") == "edited":
        change = {"trials": [trial(spec, spec.arms[0], 0, 0, spec_hash="edited")]}
    got = fairness(_fair_col(spec, **change), _fair_arms([[3, 3, 3], [3, 3, 3]]))
    assert _held(got) == [i not in failed for i in range(9)] and got["all_held"] is False
    if "distributions" in change:
        assert got["checks"][1]["detail"] == "parameter distributions differ between studies"
    if "missing_studies" in change:
        assert got["checks"][4]["detail"] == "missing: tiny-depth1-eval"


def test_fairness_budget_checks_fail_on_counts(spec: Spec, record: dict[str, Any]) -> None:
    col = _fair_col(spec)
    short = fairness(col, _fair_arms([[3, 2, 3], [3, 3, 3]]))  # one trial short: exact fails, parity holds
    assert _held(short)[2:4] == [False, True] and not short["all_held"]
    assert short["checks"][2]["detail"] == "depth 1: 3/2/3 of 3, depth 2: 3/3/3 of 3"
    assert short["checks"][3]["detail"] == "max - min finished per study = 1"
    lag = fairness(col, _fair_arms([[3, 3, 3], [1, 3, 3]]))  # two behind: parity fails too
    assert _held(lag)[2:4] == [False, False] and lag["checks"][3]["detail"] == "max - min finished per study = 2"
    over = fairness(col, _fair_arms([[4, 4, 4], [4, 4, 4]], budget=4))  # as many as slots, but not budget.trials
    assert _held(over)[2:4] == [False, True]
    empty = fairness(col, [])
    assert _held(empty)[2:4] == [False, True] and empty["checks"][3]["detail"] == "max - min finished per study = 0"
    assert empty["checks"][2]["detail"] == "" and empty["asymmetries"] == []


def test_fairness_record_checks_fail_with_details(spec: Spec, record: dict[str, Any]) -> None:
    col = _fair_col(spec)
    arms = _fair_arms([[3, 3, 3], [3, 3, 3]])
    record.update(mismatches=[{"study": "s0", "trial": 3, "field": "value", "detail": "stored 0.5, ledger 0.4"}],
                  n_mismatches=2, unaccounted=[{"detail": "s1 trial 9 has no slot"}], n_unaccounted=1,
                  chain_problems=["slot 4: digest differs", "slot 5: digest differs"])
    got = fairness(col, arms)
    assert _held(got) == [True] * 5 + [False, False, False, True]
    assert [c["detail"] for c in got["checks"][5:8]] == [
        "s0 trial 3: stored 0.5, ledger 0.4 (and 1 more)", "s1 trial 9 has no slot",
        "slot 4: digest differs; slot 5: digest differs"]
    record.update(RECORD, status="not verifiable", text="the ledger predates records", head=None)
    got = fairness(col, arms)
    assert _held(got) == [True] * 5 + [False, True, False, True]
    assert [c["detail"] for c in got["checks"][5:8]] == [
        "the ledger predates records", "none unaccounted", "the ledger predates records"]


# ---------------------------------------------------------------- the whole document


def test_build_assembles_every_section(spec: Spec, record: dict[str, Any]) -> None:
    col = collected(spec, _tuning(spec) + _evals(spec), _slots(spec), metric="nats",
                    importance={"depth 1": {"lr": 1.0}})
    doc = build(col)
    arms = [arm_summary(col, a) for a in spec.arms]
    assert doc["arms"] == arms
    assert {k: doc[k] for k in ("experiment", "spec_hash", "bench_version", "storage", "trivial_loss", "metric",
                                "complete", "importance")} == {
        "experiment": "tiny", "spec_hash": spec.hash, "bench_version": bench.__version__, "storage": "sqlite:///b.db",
        "trivial_loss": WORST, "metric": "nats", "complete": False, "importance": {"depth 1": {"lr": 1.0},
                                                                                  "depth 2": None}}
    assert doc["settings"] == {"studies": 3, "trials_per_study": 3, "seeds": 2, "direction": "minimize",
                               "alpha": 0.05, "min_effect": 0.1, "diverged_scored_as": WORST, "sampler": "random",
                               "adaptive_sampler": False, "transfer_from": None}
    assert doc["missing"] == missing(col, arms) and doc["missing"]
    assert doc["tuning"] == {a.label: tuning_curves(col, a, WORST) for a in spec.arms}
    assert doc["budget"] == budget_analysis(doc["tuning"], "minimize")
    for role, key in (("eval", "test"), ("baseline", "baseline"), ("transfer", "transfer")):
        assert doc[key] == {a.label: seeds_summary(col, a, role, WORST, s) for a, s in zip(spec.arms, arms,
                                                                                           strict=True)}
        assert doc["comparisons"][key] == comparison(doc, key)
    assert doc["test"]["depth 1"]["n_seeds"] == 7 and doc["test"]["depth 2"] is None  # 6 + _tuning's eval run
    assert doc["baseline"]["depth 1"]["n_seeds"] == 1 and doc["baseline"]["depth 2"] is None
    assert doc["diagnostics"] == diagnostics(col, doc)
    assert doc["fairness"] == fairness(col, arms) and doc["fairness"]["record"] is record
    assert doc["verdict"] == verdict({k: v for k, v in doc.items() if k != "verdict"})
    assert {k: v for k, v in doc["provenance"].items() if k != "date"} == {
        k: v for k, v in report_provenance().items() if k != "date"}
    tpe = dataclasses.replace(spec, sampler=dataclasses.replace(spec.sampler, kind="tpe"), baseline_from=2)
    settings = build(collected(tpe, [], []))["settings"]
    assert (settings["sampler"], settings["adaptive_sampler"], settings["transfer_from"]) == ("tpe", True, "depth 2")


def test_build_of_a_complete_record_is_complete(spec: Spec, record: dict[str, Any]) -> None:
    """Every slot done, every study finished: nothing missing and the report says complete; no arms, not."""
    a1, a2 = spec.arms
    trials = [trial(spec, a, k, i, "complete", 0.5) for a in (a1, a2) for k in range(3) for i in range(3)]
    slots = ([slot(a, k, i) for a in (a1, a2) for k in range(3) for i in range(3)]
             + [slot(a, k, s, role="eval") for a in (a1, a2) for k in range(3) for s in range(2)]
             + [slot(a, 0, s, role="baseline") for a in (a1, a2) for s in range(2)])
    doc = build(collected(spec, trials, slots))
    assert doc["missing"] == [] and doc["complete"] is True
    no_arms = dataclasses.replace(spec, scientific=(("depth", ()),))
    assert build(collected(no_arms, [], []))["complete"] is False
