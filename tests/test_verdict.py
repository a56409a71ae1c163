"""The verdict's words, compared whole: each branch of bench.report.verdict on hand-made comparison families whose
sentences can be written out in advance. The numbers in the families are given, not computed, so every expected
string below is the format applied by hand (ratios and intervals to 2 decimals, p-values to 3 significant digits)."""

from __future__ import annotations

from typing import Any

from bench.report.verdict import decide, verdict

RULE = "Welch t on log test loss, Holm-adjusted α = 0.05, practical threshold 10%"
STUDIES3 = "3 tuning studies per arm, each re-evaluated over 5 fresh seeds"


def pair(a: str, b: str, decision: str, p: float | None, ratio: float = 1.0, ci: list[float] | None = None,
         needed: int | None = None) -> dict[str, Any]:
    return {"a": a, "b": b, "decision": decision, "p_holm": p, "ratio": ratio, "ratio_ci": ci,
            "units_needed": needed}


def family(pairs: list[dict[str, Any]], groups: list[list[str]], winner: str | None = None, n: int | dict[str, int] = 3,
           unit: str = "study") -> dict[str, Any]:
    labels = [x for g in groups for x in g]
    return {"pairs": pairs, "groups": groups, "winner": winner, "alpha": 0.05, "min_effect": 0.1,
            "n_units": n if isinstance(n, dict) else {x: n for x in labels}, "unit": unit}


def doc_of(settings: dict[str, Any] | None = None, **families: dict[str, Any]) -> dict[str, Any]:
    return {"comparisons": families, "settings": {"seeds": 5, **(settings or {})}}


THREE_TIERS = family([pair("B", "A", "b", 0.0123, 2.0, [1.25, 2.5]), pair("A", "C", "a", 0.001, 0.25, [0.2, 0.3]),
                      pair("B", "C", "a", 0.02, 0.5, [0.3, 0.8])], [["A"], ["B"], ["C"]], winner="A")


def test_a_winner_is_named_with_its_ratio_to_the_runner_up_read_winner_over_runner_up() -> None:
    """The stored pair is B vs A (ratio 2.0, interval [1.25, 2.5]); read as A / B it is 0.50× [0.40, 0.80]."""
    out = decide(doc_of(test=THREE_TIERS), "test")
    assert out["winner"] == "A" and out["groups"] == [["A"], ["B"], ["C"]]
    assert out["text"] == (
        f"A is best: its geometric-mean test loss is 0.50× [0.40, 0.80] that of the runner-up B (adjusted p = "
        f"0.0123; {STUDIES3}; {RULE}). Groups the tests can separate, best first: {{A}} > {{B}} > {{C}}.")


def test_a_winner_without_an_interval_says_so() -> None:
    fam = family([pair("A", "B", "a", 0.04, 0.5, None)], [["A"], ["B"]], winner="A", n=2, unit="seed")
    assert decide(doc_of(test=fam), "test")["text"] == (
        f"A is best: its geometric-mean test loss is 0.50× (no interval: too few units) that of the runner-up B "
        f"(adjusted p = 0.04; 2 seeds per arm; {RULE}). Groups the tests can separate, best first: {{A}} > {{B}}.")


def test_practically_equivalent_arms_and_unequal_unit_counts() -> None:
    fam = family([pair("A", "B", "equivalent", 0.5), pair("A", "C", "equivalent", 0.6),
                  pair("B", "C", "equivalent", 0.7)], [["A", "B", "C"]], n={"A": 4, "B": 3, "C": 4}, unit="seed")
    out = decide(doc_of(test=fam), "test")
    assert out["winner"] is None
    assert out["text"] == ("A, B, C are practically equivalent: every ratio interval lies within ±10% (3/4 seeds per "
                           "arm).")
    # One pair not shown equivalent: the arms are not called equivalent.
    fam["pairs"][2]["decision"] = "undecided"
    assert "practically equivalent" not in decide(doc_of(test=fam), "test")["text"]


def no_difference(n: int, needed: tuple[int | None, int | None]) -> dict[str, Any]:
    """Three inseparable arms (A leads), and a fourth, D, separated from them whose pairs need many units (those
    pairs are outside the top group and must not count)."""
    return family([pair("A", "B", "undecided", 0.5, needed=needed[0]), pair("A", "C", "undecided", 0.3,
                                                                            needed=needed[1]),
                   pair("B", "C", "undecided", 0.9), pair("A", "D", "a", 0.001, needed=900),
                   pair("B", "D", "a", 0.001, needed=900), pair("C", "D", "a", 0.001, needed=900)],
                  [["A", "B", "C"], ["D"]], n=n)


HEAD = "No detectable difference between A, B, C at this budget (adjusted p of A against them 0.3–0.5; "
TAIL = " Groups the tests can separate, best first: {A, B, C} > {D}."


def test_no_detectable_difference_says_how_many_units_the_threshold_would_take() -> None:
    assert decide(doc_of(test=no_difference(3, (12, 40))), "test")["text"] == (
        f"{HEAD}{STUDIES3}; {RULE}). Detecting a 10% difference among them at the measured variance would take about "
        f"40 tuning studies per arm.{TAIL}")


def test_no_detectable_difference_when_the_budget_already_suffices() -> None:
    """40 units needed at most and 40 at hand: the differences are smaller than the threshold (40 <= 40)."""
    text = decide(doc_of(test=no_difference(40, (12, 40))), "test")["text"]
    assert text == (
        f"{HEAD}40 tuning studies per arm, each re-evaluated over 5 fresh seeds; {RULE}). At the measured variance "
        f"40 tuning studies per arm would detect a 10% difference: the differences here are smaller than that, or "
        f"not shown to reach it.{TAIL}")
    # One unit fewer than needed: more would be needed.
    assert "would take about 40 tuning studies" in decide(doc_of(test=no_difference(39, (12, 40))), "test")["text"]


def test_no_detectable_difference_even_with_a_thousand_units() -> None:
    assert decide(doc_of(test=no_difference(3, (None, None))), "test")["text"] == (
        f"{HEAD}{STUDIES3}; {RULE}). Even 1000 tuning studies per arm would not detect a 10% difference at the "
        f"measured variance.{TAIL}")


def test_one_close_arm_gives_one_p_value_and_a_missing_test_says_so() -> None:
    fam = family([pair("A", "B", "undecided", 0.25, needed=7), pair("A", "C", "a", 0.01)], [["A", "B"], ["C"]],
                 unit="seed")
    assert decide(doc_of(test=fam), "test")["text"].startswith(
        f"No detectable difference between A, B at this budget (adjusted p of A against them 0.25; 3 seeds per arm; "
        f"{RULE}). Detecting a 10% difference among them at the measured variance would take about 7 seeds per arm.")
    fam["pairs"][0]["p_holm"] = None
    assert "(no test possible; 3 seeds per arm;" in decide(doc_of(test=fam), "test")["text"]


def test_a_pair_decided_inside_the_top_group_is_said_in_words() -> None:
    """Tiers are not transitive: A cannot be separated from B or C, but B beats C."""
    fam = family([pair("A", "B", "undecided", 0.4, needed=20), pair("A", "C", "undecided", 0.06, needed=8),
                  pair("C", "B", "b", 0.01, 2.0, [1.25, 10 / 3]), pair("A", "D", "a", 0.001),
                  pair("B", "D", "a", 0.001), pair("C", "D", "a", 0.001)], [["A", "B", "C"], ["D"]])
    assert decide(doc_of(test=fam), "test")["text"] == (
        f"No arm is shown best: A has the lowest geometric-mean test loss but cannot be separated from B, C at this "
        f"budget (adjusted p of A against them 0.06–0.4; {STUDIES3}; {RULE}). Detecting a 10% difference among them "
        f"at the measured variance would take about 20 tuning studies per arm. Within the top group the tests do "
        f"separate: B beats C (0.50× [0.30, 0.80], adjusted p = 0.01). Groups the tests can separate, best first: "
        f"{{A, B, C}} > {{D}}.")
    # With no pair needing more units, a decided pair inside means nothing more is said about the budget.
    for p in fam["pairs"]:
        p["units_needed"] = None
    assert "Detecting" not in decide(doc_of(test=fam), "test")["text"]
    assert "Even 1000" not in decide(doc_of(test=fam), "test")["text"]


def test_a_significant_but_small_difference_is_named_oriented_by_the_group_order() -> None:
    """The pair is stored as B vs A; A comes first in the group, so it reads A / B: 1 / 1.05 = 0.95, interval
    [1 / 1.1, 1 / 1.01] = [0.91, 0.99]."""
    fam = family([pair("B", "A", "undecided", 0.012, 1.05, [1.01, 1.1], needed=2)], [["A", "B"]], n=5, unit="seed")
    assert decide(doc_of(test=fam), "test")["text"] == (
        f"No arm is shown best: A has the lowest geometric-mean test loss but cannot be separated from B at this "
        f"budget (adjusted p of A against them 0.012; 5 seeds per arm; {RULE}). At the measured variance 5 seeds per "
        f"arm would detect a 10% difference: the differences here are smaller than that, or not shown to reach it. "
        f"Significant, but not shown to exceed the practical threshold of 10%: A / B 0.95× [0.91, 0.99] (adjusted "
        f"p = 0.012).")
    # At the significance level exactly it still counts; above it, it does not.
    fam["pairs"][0]["p_holm"] = 0.05
    assert "Significant, but" in decide(doc_of(test=fam), "test")["text"]
    fam["pairs"][0]["p_holm"] = 0.0501
    assert "Significant, but" not in decide(doc_of(test=fam), "test")["text"]


def test_arms_stuck_at_the_worst_value_are_named() -> None:
    fam = family([pair("A", "B", "undecided", 0.5), pair("A", "C", "undecided", 0.5),
                  pair("B", "C", "undecided", 0.5)], [["A", "B", "C"]], unit="seed")
    worst = 2.302585
    doc = doc_of({"diverged_scored_as": worst}, test=fam)
    doc["test"] = {"A": {"per_study": [{"test_losses": [1.0, worst]}]},
                   "B": {"per_study": [{"test_losses": [worst, worst]}, {"test_losses": [worst]}]},
                   "C": {"per_study": [{"test_losses": [worst]}]}, "D": {"per_study": [{"test_losses": []}]}}
    assert decide(doc, "test")["text"].endswith(
        "would not detect a 10% difference at the measured variance. B, C scored the worst value (2.303) on every "
        "seed: nothing was learned there, so their order among themselves means nothing.")
    del doc["settings"]["diverged_scored_as"]
    assert "worst value" not in decide(doc, "test")["text"]


def test_maximized_metric_words() -> None:
    fam = family([pair("A", "B", "undecided", 0.4), pair("A", "C", "b", 0.01, 0.5, [0.25, 0.8])],
                 [["A", "C", "B"]], unit="seed")
    doc = doc_of({"direction": "maximize"}, test=fam)
    doc["metric"] = "accuracy"
    assert decide(doc, "test")["text"].startswith(
        "No arm is shown best: A has the highest geometric-mean test accuracy but cannot be separated from C, B at "
        "this budget (adjusted p of A against them 0.01–0.4; 3 seeds per arm; Welch t on log test accuracy, higher "
        "is better, Holm-adjusted α = 0.05, practical threshold 10%).")


def test_no_family_no_text() -> None:
    assert decide(doc_of(), "test") == {"winner": None, "groups": [], "text": None}


def arm(label: str, seconds: float | None = 10.0, n_params: Any = 100, best: float | None = 0.5) -> dict[str, Any]:
    return {"label": label, "total_seconds": seconds, "n_params": n_params, "median_best_value": best}


def test_cannot_tell_without_test_scores_names_the_validation_leader() -> None:
    doc = doc_of({"studies": 3, "adaptive_sampler": False})
    doc["arms"] = [arm("A", best=0.2), arm("B", best=0.123456), arm("C", best=None)]
    out = verdict(doc)
    assert out["text"] == (
        "Cannot tell yet: no re-evaluated test scores in at least two arms ([evaluation] seeds = 0, or still "
        "running). By tuning-time validation loss (optimistic, untested) B leads with a median best of 0.1235 over "
        "its studies.")
    assert out["basis"] == "best tuning validation loss (untested)" and out["winner"] is None
    doc["settings"]["direction"], doc["metric"] = "maximize", "accuracy"
    out = verdict(doc)
    assert "By tuning-time validation accuracy (optimistic, untested) A leads with a median best of 0.2" in out["text"]
    assert out["basis"] == "best tuning validation accuracy (untested)"
    doc["arms"] = [arm("A", best=None)]
    out = verdict(doc)
    assert (out["text"], out["basis"]) == ("Cannot tell yet: no finished trials to compare.", None)


def test_caveats_each_said_once_with_its_numbers() -> None:
    doc = doc_of({"studies": 1, "adaptive_sampler": True})
    doc["missing"] = ["A: 2 of 12 trials", "B: seeds"]
    doc["arms"] = [arm("A", 10.0, 100), arm("B", 16.0, 121), arm("C", None, None), arm("D", 0.0, "n/a")]
    doc["diagnostics"] = {"B": {"notes": ["still improving"]}, "A": {"notes": []}}
    assert verdict(doc)["caveats"] == [
        "run incomplete: A: 2 of 12 trials; B: seeds",
        "one tuning study per arm: the tuning procedure's own variance is not measured, so the comparison is of the "
        "particular configs found, not of the arms (set [budget] studies >= 2)",
        "the sampler is adaptive (TPE): curves are best-so-far in trial order, not i.i.d. best-of-n",
        "B used 1.6× the tuning compute of A (16 s vs 10 s): equal trials are not equal compute",
        "B has 1.2× the parameters of A (121 vs 100): a difference may be capacity, not the arm itself",
        "B: still improving"]
    # At exactly 1.5× the compute and 1.2× the parameters, and with 2 studies and random search: nothing to say.
    doc = doc_of({"studies": 2, "adaptive_sampler": False})
    doc["arms"] = [arm("A", 10.0, 100), arm("B", 15.0, 120)]
    assert verdict(doc)["caveats"] == []


def test_budget_note_only_when_the_rankings_disagree() -> None:
    doc = doc_of({"studies": 3, "adaptive_sampler": False})
    doc["arms"] = [arm("A"), arm("B")]
    doc["budget"] = {"equal_trials": {"n": 12, "ranking": ["A", "B"]},
                     "equal_compute": {"seconds": 100.4, "ranking": ["B", "A"]}, "agree": False}
    note = ("Budget matters: by best tuning validation loss the order at equal trials (12 per study) is A > B, but "
            "at equal compute (100 s per study) it is B > A.")
    out = verdict(doc)
    assert out["budget_note"] == note and out["text"].endswith(" " + note)
    doc["budget"]["agree"] = True
    assert verdict(doc)["budget_note"] is None
    doc["budget"] = {"agree": False}
    assert verdict(doc)["budget_note"] is None


def test_the_whole_verdict_puts_the_tuned_answer_first_then_the_fixed_and_transferred_configs() -> None:
    fixed = family([pair("A", "B", "b", 0.03, 2.0, [1.25, 4.0])], [["B"], ["A"]], winner="B", unit="seed")
    transfer = family([pair("A", "B", "a", 0.02, 0.5, [0.25, 0.8])], [["A"], ["B"]], winner="A", unit="seed")
    tuned = family([pair("A", "B", "a", 0.0123, 0.5, [0.4, 0.8])], [["A"], ["B"]], winner="A")
    doc = doc_of({"studies": 1, "adaptive_sampler": False}, test=tuned, baseline=fixed, transfer=transfer)
    doc["arms"] = [arm("A"), arm("B")]
    out = verdict(doc)
    tuned_text = decide(doc, "test")["text"]
    fixed_text = decide(doc, "baseline")["text"]
    transfer_text = decide(doc, "transfer")["text"]
    assert fixed_text.startswith("B is best: its geometric-mean test loss is 0.50× [0.25, 0.80] that of the "
                                 "runner-up A (adjusted p = 0.03; 3 seeds per arm;")
    assert out["text"] == (f"{tuned_text} With a fixed config instead, B would have been called best. Fixed config: "
                           f"{fixed_text} Transferred config: {transfer_text} Caveats: 1 (listed below).")
    assert (out["winner"], out["fixed_winner"], out["transfer_winner"]) == ("A", "B", "A")
    assert (out["groups"], out["fixed_groups"], out["transfer_groups"]) == ([["A"], ["B"]], [["B"], ["A"]],
                                                                            [["A"], ["B"]])
    assert out["basis"] == "re-evaluated test loss"
    assert (out["tuned_text"], out["fixed_text"], out["transfer_text"]) == (tuned_text, fixed_text, transfer_text)
    # Without the fixed family, and with the tuned answer undecided: the transferred config's winner is news.
    tuned["winner"], tuned["groups"], tuned["pairs"][0]["decision"] = None, [["A", "B"]], "undecided"
    tuned["pairs"][0]["p_holm"] = 0.2
    del doc["comparisons"]["baseline"]
    out = verdict(doc)
    assert "Fixed config" not in out["text"] and out["fixed_text"] is None
    assert out["text"].startswith("No detectable difference between A, B")
    assert " With a transferred config instead, A would have been called best. Transferred config: A is best" in (
        out["text"])
    # The same winner as the tuned answer is not news.
    tuned["winner"], tuned["groups"], tuned["pairs"][0]["decision"] = "A", [["A"], ["B"]], "a"
    assert "would have been called best" not in verdict(doc)["text"]
