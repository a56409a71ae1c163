"""The answer in plain words, claiming only what the corrected tests carry (DESIGN.md, inference rules)."""

from __future__ import annotations

from typing import Any

from bench.report.inference import groups_text, join_labels
from bench.report.orientation import words

ROLE_WORDS = {"test": "tuned (each arm's best configs, re-evaluated)", "baseline": "fixed config",
              "transfer": "transferred config"}


def _pair(fam: dict[str, Any], a: str, b: str) -> dict[str, Any] | None:
    return next((p for p in fam["pairs"] if {p["a"], p["b"]} == {a, b}), None)


def _oriented(p: dict[str, Any], first: str) -> tuple[float, list[float] | None]:
    """The pair's ratio (and interval) as first / other."""
    if p["a"] == first:
        return p["ratio"], p["ratio_ci"]
    ci = p["ratio_ci"]
    return 1.0 / p["ratio"], None if ci is None else [1.0 / ci[1], 1.0 / ci[0]]


def _ratio_words(ratio: float, ci: list[float] | None) -> str:
    return f"{ratio:.2f}×" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else " (no interval: too few units)")


def _unit_words(fam: dict[str, Any], doc: dict[str, Any], key: str) -> str:
    n = sorted(set(fam["n_units"].values()))
    count = "/".join(map(str, n))
    if fam["unit"] == "study":
        return f"{count} tuning studies per arm, each re-evaluated over {doc['settings']['seeds']} fresh seeds"
    return f"{count} seeds per arm"


def _significant_but_small(fam: dict[str, Any], group: list[str], alpha: float) -> list[str]:
    """Pairs inside one group whose difference is significant after Holm but not beyond the practical threshold
    (decision undecided, or equivalent: within it): the text must not call them 'no detectable difference'."""
    out = []
    for p in fam["pairs"]:
        if not (p["a"] in group and p["b"] in group and p["decision"] in ("undecided", "equivalent")
                and p["p_holm"] is not None and p["p_holm"] <= alpha):
            continue
        first = p["a"] if group.index(p["a"]) < group.index(p["b"]) else p["b"]
        other = p["b"] if first == p["a"] else p["a"]
        ratio, ci = _oriented(p, first)
        out.append(f"{first} / {other} {_ratio_words(ratio, ci)} (adjusted p = {p['p_holm']:.3g})")
    return out


def _at_worst(doc: dict[str, Any], key: str) -> list[str]:
    """Arms whose every re-evaluated seed scored the worst value (the trivial loss, or [metric] worst)."""
    worst = (doc.get("settings") or {}).get("diverged_scored_as")
    if worst is None:
        return []
    out = []
    for label, summary in (doc.get(key) or {}).items():
        losses = [x for ps in (summary or {}).get("per_study") or [] for x in ps.get("test_losses") or []]
        if losses and all(x == worst for x in losses):
            out.append(label)
    return out


def _decided_within(fam: dict[str, Any], group: list[str]) -> list[str]:
    """Pairs inside one group that the tests did decide (tiers are not transitive: the group's leader may be
    inseparable from two arms that are separable from each other). Said in words so the text never calls a
    decided pair 'no detectable difference'."""
    out = []
    for p in fam["pairs"]:
        if p["a"] in group and p["b"] in group and p["decision"] in ("a", "b"):
            win, lose = (p["a"], p["b"]) if p["decision"] == "a" else (p["b"], p["a"])
            ratio, ci = _oriented(p, win)
            out.append(f"{win} beats {lose} ({_ratio_words(ratio, ci)}, adjusted p = {p['p_holm']:.3g})")
    return out


def decide(doc: dict[str, Any], key: str) -> dict[str, Any]:
    """One family's conclusion: winner (or none), the groups, and the sentence that says it."""
    fam = (doc.get("comparisons") or {}).get(key)
    if not fam:
        return {"winner": None, "groups": [], "text": None}
    groups = fam["groups"]
    alpha, eff = fam["alpha"], fam["min_effect"]
    w = words(doc)
    scale = w.noun if w.sign == 1 else f"{w.noun}, {w.better}"
    rule = f"Welch t on log test {scale}, Holm-adjusted α = {alpha:g}, practical threshold {eff:.0%}"
    winner = fam["winner"]
    inside = _decided_within(fam, groups[0] if groups else [])
    if winner is not None:
        runner = groups[1][0]
        p = _pair(fam, winner, runner)
        assert p is not None
        ratio, ci = _oriented(p, winner)
        text = (f"{winner} is best: its geometric-mean test {w.noun} is {_ratio_words(ratio, ci)} that of the "
                f"runner-up {runner} (adjusted p = {p['p_holm']:.3g}; {_unit_words(fam, doc, key)}; {rule}).")
    elif len(groups) == 1 and all(p["decision"] == "equivalent" for p in fam["pairs"]):
        text = (f"{', '.join(groups[0])} are practically equivalent: every ratio interval lies within "
                f"±{eff:.0%} ({_unit_words(fam, doc, key)}).")
    else:
        top = groups[0]
        lead = top[0]
        close = [x for x in top if x != lead]
        found = [(_pair(fam, lead, x) or {}).get("p_holm") for x in close]
        ps = [float(q) for q in found if q is not None]
        p_words = (f"adjusted p of {lead} against them {min(ps):.3g}" + (f"–{max(ps):.3g}" if len(ps) > 1 else "")
                   if ps else "no test possible")
        needed = [q["units_needed"] for q in fam["pairs"] if {q["a"], q["b"]} <= set(top) and q["units_needed"]]
        unit = "tuning studies" if fam["unit"] == "study" else "seeds"
        have = min(fam["n_units"][x] for x in top)
        small = _significant_but_small(fam, top, alpha)
        if needed and max(needed) <= have:  # the budget suffices for the threshold: the differences are smaller
            need = (f" At the measured variance {have} {unit} per arm would detect a {eff:.0%} difference: the "
                    "differences here are smaller than that, or not shown to reach it.")
        elif needed:
            need = (f" Detecting a {eff:.0%} difference among them at the measured variance would take about "
                    f"{max(needed)} {unit} per arm.")
        else:
            need = (f" Even 1000 {unit} per arm would not detect a {eff:.0%} difference at the measured variance."
                    if close and not inside else "")
        if small:
            need += (f" Significant, but not shown to exceed the practical threshold of {eff:.0%}: "
                     + "; ".join(small) + ".")
        if not inside and not small:
            text = (f"No detectable difference between {', '.join(top)} at this budget ({p_words}; "
                    f"{_unit_words(fam, doc, key)}; {rule})." + need)
        else:
            text = (f"No arm is shown best: {lead} has the {w.best} geometric-mean test {w.noun} but cannot be "
                    f"separated from {', '.join(close)} at this budget ({p_words}; {_unit_words(fam, doc, key)}; "
                    f"{rule})." + need)
    if inside:
        text += " Within the top group the tests do separate: " + "; ".join(inside) + "."
    stuck = _at_worst(doc, key)
    if stuck:
        text += (f" {join_labels(stuck)} scored the worst value ({doc['settings']['diverged_scored_as']:.4g}) on "
                 "every seed: nothing was learned there, so their order among themselves means nothing.")
    if len(groups) > 1:
        text += f" Groups the tests can separate, best first: {groups_text(groups)}."
    return {"winner": winner, "groups": groups, "text": text}


def _caveats(doc: dict[str, Any]) -> list[str]:
    out = []
    if doc.get("missing"):
        out.append("run incomplete: " + "; ".join(doc["missing"]))
    s = doc["settings"]
    if s["studies"] < 2:
        out.append("one tuning study per arm: the tuning procedure's own variance is not measured, so the "
                   "comparison is of the particular configs found, not of the arms (set [budget] studies >= 2)")
    if s["adaptive_sampler"]:
        out.append("the sampler is adaptive (TPE): curves are best-so-far in trial order, not i.i.d. best-of-n")
    arms = [a for a in doc["arms"] if a["total_seconds"]]
    if len(arms) >= 2:
        lo = min(arms, key=lambda a: a["total_seconds"])
        hi = max(arms, key=lambda a: a["total_seconds"])
        if hi["total_seconds"] > 1.5 * lo["total_seconds"]:
            out.append(f"{hi['label']} used {hi['total_seconds'] / lo['total_seconds']:.1f}× the tuning compute of "
                       f"{lo['label']} ({hi['total_seconds']:.0f} s vs {lo['total_seconds']:.0f} s): equal trials "
                       "are not equal compute")
    sized = [a for a in doc["arms"] if isinstance(a["n_params"], int)]
    if len(sized) >= 2:
        lo = min(sized, key=lambda a: a["n_params"])
        hi = max(sized, key=lambda a: a["n_params"])
        if hi["n_params"] > 1.2 * lo["n_params"]:
            out.append(f"{hi['label']} has {hi['n_params'] / lo['n_params']:.1f}× the parameters of {lo['label']} "
                       f"({hi['n_params']} vs {lo['n_params']}): a difference may be capacity, not the arm itself")
    for label, diag in (doc.get("diagnostics") or {}).items():
        out += [f"{label}: {n}" for n in diag["notes"]]
    return out


def _budget_text(doc: dict[str, Any]) -> str | None:
    b = doc.get("budget") or {}
    if not b.get("equal_trials") or b.get("agree"):
        return None
    t, c = b["equal_trials"], b["equal_compute"]
    return (f"Budget matters: by best tuning validation {words(doc).noun} the order at equal trials ({t['n']} per "
            f"study) is "
            f"{' > '.join(t['ranking'])}, but at equal compute ({c['seconds']:.0f} s per study) it is "
            f"{' > '.join(c['ranking'])}.")


def verdict(doc: dict[str, Any]) -> dict[str, Any]:
    """The verdict section: the tuned conclusion first, then how the fixed and transferred configs compare."""
    tuned = decide(doc, "test")
    fixed = decide(doc, "baseline")
    transfer = decide(doc, "transfer")
    caveats = _caveats(doc)
    w = words(doc)
    out: dict[str, Any] = {"winner": tuned["winner"], "groups": tuned["groups"], "fixed_winner": fixed["winner"],
                           "fixed_groups": fixed["groups"], "transfer_winner": transfer["winner"],
                           "transfer_groups": transfer["groups"], "caveats": caveats,
                           "budget_note": _budget_text(doc)}
    if tuned["text"] is None:
        have = [a for a in doc["arms"] if a["median_best_value"] is not None]
        if not have:
            out.update(basis=None, text="Cannot tell yet: no finished trials to compare.")
            return out
        best = min(have, key=lambda a: w.sign * a["median_best_value"])
        text = (f"Cannot tell yet: no re-evaluated test scores in at least two arms ([evaluation] seeds = 0, or "
                f"still running). By tuning-time validation {w.noun} (optimistic, untested) {best['label']} leads "
                f"with a median best of {best['median_best_value']:.4g} over its studies.")
        out.update(basis=f"best tuning validation {w.noun} (untested)", text=text)
    else:
        text = tuned["text"]
        out["basis"] = f"re-evaluated test {w.noun}"
    for name, res in (("fixed config", fixed), ("transferred config", transfer)):
        if res["text"] is None:
            continue
        if res["winner"] is not None and res["winner"] != tuned["winner"]:
            text += f" With a {name} instead, {res['winner']} would have been called best."
        text += f" {name.capitalize()}: " + res["text"]
    if out["budget_note"]:
        text += " " + out["budget_note"]
    if caveats:
        text += f" Caveats: {len(caveats)} (listed below)."
    out["text"] = text
    out["tuned_text"], out["fixed_text"], out["transfer_text"] = tuned["text"], fixed["text"], transfer["text"]
    return out
