"""Tests for bench.report.inference: direction (lower loss is better), Holm, decisions and tiers on tiny data."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.report import inference
from bench.report.inference import beats, family, groups_text, tiers

LOW = [-1.02, -1.0, -0.98, -1.01, -0.99]  # log losses around -1.0: the better arm
HIGH = [-0.52, -0.5, -0.48, -0.51, -0.49]  # around -0.5: ratio exp(0.5) = 1.65 worse


def test_lower_loss_is_better_whichever_arm_comes_first() -> None:
    for units in ({"good": LOW, "bad": HIGH}, {"bad": HIGH, "good": LOW}):
        fam = family(units)
        assert fam["winner"] == "good" and fam["order"] == ["good", "bad"]
        assert fam["groups"] == [["good"], ["bad"]]
        (p,) = fam["pairs"]
        first_is_good = p["a"] == "good"
        assert p["decision"] == ("a" if first_is_good else "b")
        assert (p["ratio"] < 1) == first_is_good
        assert (p["p_a_better"] > 0.5) == first_is_good
        assert p["p_a_better_empirical"] == (1.0 if first_is_good else 0.0)
        assert beats(fam["pairs"], "good", "bad") and not beats(fam["pairs"], "bad", "good")


def test_pair_values_by_hand() -> None:
    fam = family({"a": LOW, "b": HIGH})
    (p,) = fam["pairs"]
    assert p["ratio"] == pytest.approx(math.exp(-0.5))
    assert p["ratio_ci"][0] < p["ratio"] < p["ratio_ci"][1] < 1
    sd = float(np.std(LOW, ddof=1))
    assert p["sd_pooled"] == pytest.approx(sd)  # equal spreads: pooled sd is either one
    assert p["p_holm"] == p["p"] < 1e-6
    assert fam["means"] == pytest.approx({"a": -1.0, "b": -0.5})
    assert fam["n_units"] == {"a": 5, "b": 5} and fam["threshold_log"] == pytest.approx(math.log(1.1))


def test_significant_but_negligible_difference_is_not_a_win() -> None:
    tiny = [x + 0.04 for x in LOW]  # 4% worse, very precisely measured
    fam = family({"a": LOW, "b": tiny})
    (p,) = fam["pairs"]
    assert p["p_holm"] < 0.05 and p["decision"] == "equivalent" and fam["winner"] is None
    assert fam["groups"] == [["a", "b"]]


def test_undecided_pair_gets_units_needed() -> None:
    noisy_a, noisy_b = [-1.0, -0.2, -1.4, -0.6], [-0.9, -0.1, -1.3, -0.3]
    fam = family({"a": noisy_a, "b": noisy_b})
    (p,) = fam["pairs"]
    assert p["decision"] == "undecided" and p["units_needed"] is not None and p["units_needed"] > 4
    assert fam["winner"] is None and fam["groups"] == [["a", "b"]]


def test_one_unit_is_untestable() -> None:
    fam = family({"a": [-1.0], "b": HIGH})
    (p,) = fam["pairs"]
    assert p["decision"] == "untestable" and p["p"] is None and p["p_holm"] is None
    assert fam["winner"] is None


def test_holm_applies_across_the_family() -> None:
    mid = [x + 0.25 for x in LOW]
    fam = family({"a": LOW, "b": mid, "c": HIGH})
    ps = {(p["a"], p["b"]): p for p in fam["pairs"]}
    raw = sorted(p["p"] for p in fam["pairs"])
    adj = sorted(p["p_holm"] for p in fam["pairs"])
    assert adj[0] == pytest.approx(3 * raw[0]) and all(x >= y for x, y in zip(adj, raw, strict=True))
    assert fam["order"] == ["a", "b", "c"] and fam["winner"] == "a"
    assert fam["groups"] == [["a"], ["b"], ["c"]] and groups_text(fam["groups"]) == "{a} > {b} > {c}"
    assert ps[("a", "c")]["decision"] == "a"


def test_tiers_group_what_the_tests_cannot_separate() -> None:
    pairs = [{"a": "x", "b": "y", "decision": "undecided"}, {"a": "x", "b": "z", "decision": "a"},
             {"a": "y", "b": "z", "decision": "undecided"}]
    # x cannot be separated from y; z is beaten by x but not by y: z leads the next group on its own.
    assert tiers(["x", "y", "z"], pairs) == [["x", "y"], ["z"]]
    assert tiers(["x", "y", "z"], [{**p, "decision": "b"} if p["b"] == "z" else p for p in pairs]) == \
        [["x", "y", "z"]]
    assert inference.beats(pairs, "z", "x") is False


def test_empty_arm_is_left_out() -> None:
    fam = family({"a": LOW, "b": [], "c": HIGH})
    assert fam["order"] == ["a", "c"] and len(fam["pairs"]) == 1


def test_groups_text() -> None:
    assert groups_text([["depth 6"], ["depth 3", "depth 2"]]) == "{depth 6} > {depth 3, depth 2}"
    assert groups_text([["a", "b", "c"]]) == "{a, b, c}" and groups_text([]) == ""


PAIR_KEYS = {"a", "b", "n_a", "n_b", "p", "p_holm", "ratio", "ratio_ci", "p_a_better", "p_a_better_ci", "sd_pooled",
             "p_a_better_empirical", "decision", "units_needed"}


def test_family_and_pair_fields() -> None:
    fam = family({"a": LOW, "b": HIGH, "c": [-0.7]}, level=0.9)
    assert set(fam) == {"alpha", "min_effect", "threshold_log", "level", "direction", "n_units", "means", "pairs",
                        "order", "groups", "winner"}
    assert (fam["alpha"], fam["min_effect"], fam["level"], fam["direction"]) == (0.05, 0.1, 0.9, "minimize")
    assert fam["n_units"] == {"a": 5, "b": 5, "c": 1}
    for p in fam["pairs"]:
        assert set(p) == PAIR_KEYS
    ab, ac, _ = fam["pairs"]
    assert (ab["n_a"], ab["n_b"], ac["n_a"], ac["n_b"]) == (5, 5, 5, 1)
    assert ab["decision"] == "a" and ab["units_needed"] is None  # decided: nothing more needed
    assert ac["decision"] == "untestable" and ac["ratio_ci"] is None and ac["p_a_better"] is None
    assert ac["p_a_better_ci"] is None and ac["sd_pooled"] is None and ac["units_needed"] is None


def test_single_arm_has_no_winner() -> None:
    fam = family({"only": LOW})
    assert fam["winner"] is None and fam["pairs"] == [] and fam["groups"] == [["only"]]


def test_units_needed_uses_the_strictest_holm_level() -> None:
    """An undecided pair's units_needed is computed at alpha / (number of tests), the first Holm step."""
    from bench.report import stats

    noisy = {"a": [-1.0, -0.2, -1.4, -0.6], "b": [-0.9, -0.1, -1.3, -0.3], "c": [-1.1, -0.3, -1.2, -0.5]}
    for units, m in ((noisy, 3), ({"a": noisy["a"], "b": noisy["b"]}, 1)):
        fam = family(units)
        for p in fam["pairs"]:
            assert p["decision"] == "undecided"
            assert p["units_needed"] == stats.units_needed(math.log(1.1), p["sd_pooled"], 0.05 / m)
