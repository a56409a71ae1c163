"""Assemble the report document (the `report.json` schema) from collected records and the pure statistics."""

from __future__ import annotations

import json
import math
from collections import Counter
from statistics import mean
from typing import Any

import numpy as np

import bench
from bench.report import stats
from bench.report.collect import Collected

OUTCOMES = ("complete", "pruned", "diverged")


def _tune(col: Collected, depth: int) -> list[dict[str, Any]]:
    return [t for t in col.trials if t["role"] == "tune" and t["depth"] == depth and t["counted"]]


def _scored(trials: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The finished trials that have a score: complete, diverged, and pruned ones (scored at the epoch where the
    pruner stopped them, a conservative value: they count toward the budget, so they count in best-of-n too)."""
    return [t for t in trials if t["state"] == "diverged" or t["value"] is not None]


def _scores(trials: list[dict[str, Any]], worst: float) -> np.ndarray:
    """Objective values of the scored trials; diverged ones score `worst` (a finite stand-in for +inf)."""
    return np.array([worst if t["state"] == "diverged" else t["value"] for t in _scored(trials)], float)


def worst_value(col: Collected) -> float:
    """A finite 'worst' for diverged trials: the largest finite tuning loss seen in any depth (documented)."""
    finite = [t["value"] for t in col.trials if t["role"] == "tune" and t["value"] is not None]
    return max(finite) if finite else math.nan


def arm(col: Collected, depth: int) -> dict[str, Any]:
    trials = _tune(col, depth)
    budget = sum(1 for s in col.slots if s["role"] == "tune" and s["depth"] == depth)
    counts = Counter(t["state"] for t in trials)
    complete = [t for t in trials if t["state"] == "complete" and t["value"] is not None]
    best = min(complete, key=lambda t: (t["value"], t["number"])) if complete else None
    n_params = sorted({t["n_params"] for t in trials if t["n_params"]})
    secs = [t["seconds"] for t in trials if t["seconds"] is not None]
    lost = sum(s["lost"] for s in col.slots if s["role"] == "tune" and s["depth"] == depth)
    return {
        "depth": depth, "budget": budget, "n_finished": len(trials),
        "by_outcome": {o: counts.get(o, 0) for o in OUTCOMES},
        "best_value": best["value"] if best else None, "best_params": best["params"] if best else None,
        "best_value_bits": best["value"] / math.log(2) if best else None,
        "best_trial": best["number"] if best else None,
        "best_val_losses": best["val_losses"] if best else None,
        "n_params": n_params[0] if len(n_params) == 1 else (n_params or None),
        "hidden": best["hidden"] if best else None,
        "mean_trial_seconds": mean(secs) if secs else None, "total_seconds": sum(secs),
        "lost": lost,
    }


def build(col: Collected, reps: int = 2000, seed: int = 0) -> dict[str, Any]:
    """The whole report document. Keys are stable; later sections are added, never renamed."""
    spec = col.spec
    arms = [arm(col, d) for d in spec.depths]
    worst = worst_value(col)
    doc: dict[str, Any] = {
        "experiment": spec.name, "spec_hash": spec.hash, "bench_version": bench.__version__,
        "storage": col.storage, "arms": arms,
        "missing": missing(col, arms),
        "settings": {"bootstrap_reps": reps, "bootstrap_seed": seed, "diverged_scored_as": worst,
                     "sampler": spec.sampler.kind, "adaptive_sampler": spec.sampler.kind == "tpe"},
        "trivial_loss": col.trivial_loss, "metric": col.metric,
    }
    doc["complete"] = bool(arms) and not doc["missing"]
    doc["evp"] = {str(d): best_of_n(col, d, worst) for d in spec.depths}
    doc["prob_best"] = prob_best(col, worst, reps, seed)
    doc["test"] = {str(d): seeds_summary(col, d, "eval", reps, seed) for d in spec.depths}
    doc["baseline"] = {str(d): seeds_summary(col, d, "baseline", reps, seed) for d in spec.depths}
    doc["pairwise"] = pairwise(col, "eval", reps, seed)
    doc["baseline_pairwise"] = pairwise(col, "baseline", reps, seed)
    doc["importance"] = {str(d): col.importance.get(d) for d in spec.depths}
    doc["diagnostics"] = diagnostics(col, doc)
    doc["fairness"] = fairness(col, arms)
    doc["verdict"] = verdict(doc)
    return doc


def missing(col: Collected, arms: list[dict[str, Any]]) -> list[str]:
    """What a partial run still lacks, in words (the report of a run in progress says so instead of failing)."""
    out = []
    if col.stored_spec_hash is None:
        return [f"experiment {col.spec.name!r} is not in this storage yet: run `bench init` or `bench run`"]
    for a in arms:
        if a["n_finished"] < a["budget"]:
            out.append(f"depth {a['depth']}: {a['n_finished']}/{a['budget']} tuning trials finished")
    ev = col.spec.evaluation
    phases = [("eval", "re-evaluation", ev.seeds * ev.top_k)] + ([("baseline", "baseline", ev.seeds)]
                                                                 if col.spec.baseline else [])
    for role, words, per_depth in phases:
        if ev.seeds < 1:
            continue
        for d in col.spec.depths:
            mine = [s for s in col.slots if s["role"] == role and s["depth"] == d]
            done = sum(1 for s in mine if s["state"] == "done")
            per_depth = len(mine) or per_depth  # eval slots appear once tuning is done (fewer if top_k > finite)
            if done < per_depth:
                out.append(f"depth {d}: {done}/{per_depth} {words} runs finished")
    return out


def best_of_n(col: Collected, depth: int, worst: float) -> dict[str, Any] | None:
    """Expected best validation loss after n trials (Dodge et al. 2019) for one depth."""
    values = _scores(_tune(col, depth), worst)
    if values.size == 0:
        return None
    m, s = stats.expected_best_of_n(values)
    curve: dict[str, Any] = {"n": list(range(1, values.size + 1)), "mean": m.tolist(), "std": s.tolist()}
    secs = np.array([t["seconds"] or 0.0 for t in _scored(_tune(col, depth))], float)
    curve["seconds"] = stats.expected_best_vs_budget(values, secs)[0].tolist()
    return curve


def prob_best(col: Collected, worst: float, reps: int, seed: int) -> dict[str, float] | None:
    """Bootstrap probability that each depth's best tuning value is the best at the full budget."""
    arms = {d: _scores(_tune(col, d), worst) for d in col.spec.depths}
    if any(v.size == 0 for v in arms.values()):
        return None
    probs = stats.prob_best_bootstrap(list(arms.values()), reps=reps, seed=seed)
    return {str(d): float(p) for d, p in zip(arms, probs, strict=True)}


def _seed_trials(col: Collected, depth: int, role: str) -> list[dict[str, Any]]:
    # Only the top-ranked config (rank 0) is the depth's representative; other ranks are kept in trials.csv.
    return [t for t in col.trials if t["role"] == role and t["depth"] == depth and t["counted"]
            and (t["rank"] or 0) == 0]


def seeds_summary(col: Collected, depth: int, role: str, reps: int, seed: int) -> dict[str, Any] | None:
    """Held-out test loss over the M fresh seeds (mean and 95% bootstrap CI); validation too."""
    trials = _seed_trials(col, depth, role)
    if not trials:
        return None
    test = np.array([t["test_loss"] for t in trials if t["test_loss"] is not None], float)
    val = np.array([t["value"] for t in trials if t["value"] is not None], float)
    out: dict[str, Any] = {"n_seeds": len(trials), "n_diverged": sum(t["state"] == "diverged" for t in trials),
                           "test_losses": test.tolist(), "val_losses": val.tolist(),
                           "params": trials[0]["params"]}
    if test.size:
        m, lo, hi = stats.mean_ci_bootstrap(test, reps=reps, seed=seed)
        out.update(test_mean=m, test_ci=[lo, hi])
    if val.size:
        out["val_mean"] = float(val.mean())
    if role == "eval":
        best = next((a for a in [arm(col, depth)] if a["best_value"] is not None), None)
        if best is not None and val.size:
            out["tuning_best_value"] = best["best_value"]
            out["tuner_optimism"] = stats.tuner_optimism(best["best_value"], val)
    return out


def pairwise(col: Collected, role: str, reps: int, seed: int) -> list[dict[str, Any]]:
    """P(depth A has lower test loss than depth B) over seeds, with a bootstrap CI (Bouthillier et al. 2021)."""
    scores = {d: np.array([t["test_loss"] for t in _seed_trials(col, d, role) if t["test_loss"] is not None])
              for d in col.spec.depths}
    out = []
    depths = [d for d in col.spec.depths if scores[d].size]
    for i, a in enumerate(depths):
        for b in depths[i + 1:]:
            p, lo, hi = stats.prob_a_better_ci(scores[a], scores[b], reps=reps, seed=seed)
            out.append({"a": a, "b": b, "p_a_better": p, "ci": [lo, hi], **stats.pairwise_verdict(lo, hi),
                        "b_significant": hi < 0.5, "b_meaningful": lo < 0.25})
    return out


def diagnostics(col: Collected, doc: dict[str, Any]) -> dict[str, Any]:
    """Is the search adequate? Best values at a bound, divergence, and best-of-n curves still improving."""
    out: dict[str, Any] = {}
    for a in doc["arms"]:
        d = a["depth"]
        notes: list[str] = []
        at_bound: dict[str, str] = {}
        for p in col.spec.search_space:
            v = (a["best_params"] or {}).get(p.name)
            if p.type != "categorical" and v is not None and p.low is not None and p.high is not None:
                side = stats.near_bound(float(v), float(p.low), float(p.high), p.log)
                if side == "low" and not p.log and p.low == 0:
                    side = None  # a floor of 0 (no dropout, no decay) is a natural limit, not one to widen
                if side:
                    at_bound[p.name] = side
                    notes.append(f"best {p.name} = {v:.3g} is at the {side} end of its range: widen the space")
        trials = _tune(col, d)
        div = stats.divergence_fraction(np.array([t["state"] == "diverged" for t in trials])) if trials else 0.0
        if div > 0.25:
            notes.append(f"{div:.0%} of trials diverged")
        curve = doc["evp"].get(str(d))
        improving = bool(curve) and stats.still_improving(np.array(curve["mean"]))
        if improving:
            notes.append("best-of-n curve still improving over the last 20% of the budget: budget may be too small")
        out[str(d)] = {"at_bound": at_bound, "divergence_fraction": div, "still_improving": improving,
                       "notes": notes}
    return out


def fairness(col: Collected, arms: list[dict[str, Any]]) -> dict[str, Any]:
    """Each DESIGN.md invariant checked from the stored data, plus the asymmetries that remain."""
    spec_hash = col.spec.hash
    attrs_ok = all(a.get("spec_hash") == spec_hash for a in col.study_attrs.values()) and bool(col.study_attrs)
    trials_ok = all(t["spec_hash"] == spec_hash for t in col.trials if t["counted"])
    spaces = {name: d for name, d in col.distributions.items()}
    same_space = len({json.dumps(v, sort_keys=True) for v in spaces.values()}) <= 1
    exact = all(a["n_finished"] == a["budget"] for a in arms)
    done = [a["n_finished"] for a in arms]
    checks = [
        {"invariant": 1, "name": "one spec, hash on experiment and every study and trial",
         "held": col.stored_spec_hash == spec_hash and attrs_ok and trials_ok},
        {"invariant": 2, "name": "same search space, sampler, pruner, epochs, data split and seed for every depth",
         "held": same_space and attrs_ok,
         "detail": f"{len(spaces)} tuning studies with identical parameter distributions" if same_space
         else "parameter distributions differ between depths"},
        {"invariant": 3, "name": "every depth finished exactly budget.trials tuning trials", "held": exact,
         "detail": ", ".join(f"depth {a['depth']}: {a['n_finished']}/{a['budget']}" for a in arms)},
        {"invariant": 4, "name": "work spread across depths (parity)", "held": not done or max(done) - min(done) <= 1,
         "detail": f"max - min finished = {max(done) - min(done) if done else 0}"},
        {"invariant": 5, "name": "remaining asymmetries stated below", "held": True},
    ]
    asym = [{"depth": a["depth"], "n_params": a["n_params"], "hidden": a["hidden"],
             "total_seconds": a["total_seconds"], "mean_trial_seconds": a["mean_trial_seconds"],
             "lost_and_rerun": a["lost"], "diverged": a["by_outcome"]["diverged"],
             "pruned": a["by_outcome"]["pruned"]} for a in arms]
    return {"checks": checks, "all_held": all(c["held"] for c in checks), "asymmetries": asym}


def _ranking(summary: dict[str, Any]) -> list[int]:
    have = [(v["test_mean"], int(d)) for d, v in summary.items() if v and "test_mean" in v]
    return [d for _, d in sorted(have)]


def verdict(doc: dict[str, Any]) -> dict[str, Any]:
    """The answer in plain words: winner, confidence, how the fixed-config ranking differs, and caveats."""
    caveats = [f"depth {d}: {n}" for d, diag in doc["diagnostics"].items() for n in diag["notes"]]
    if doc["missing"]:
        caveats = ["run incomplete: " + "; ".join(doc["missing"])] + caveats
    tuned = _ranking(doc["test"])
    fixed = _ranking(doc["baseline"])
    out: dict[str, Any] = {"tuned_ranking": tuned, "fixed_ranking": fixed, "caveats": caveats}
    if len(tuned) >= 2:
        winner, runner = tuned[0], tuned[1]
        pair = next(p for p in doc["pairwise"] if {p["a"], p["b"]} == {winner, runner})
        p_win = pair["p_a_better"] if pair["a"] == winner else 1 - pair["p_a_better"]
        lo, hi = pair["ci"] if pair["a"] == winner else [1 - pair["ci"][1], 1 - pair["ci"][0]]
        sig, mean_ = lo > 0.5, hi > 0.75
        confidence = "significant and meaningful" if sig and mean_ else "significant" if sig else \
            "not significant"
        text = (f"depth {winner} is best after tuning each depth (re-evaluated test loss over "
                f"{doc['test'][str(winner)]['n_seeds']} fresh seeds); P(beats depth {runner}) = {p_win:.2f} "
                f"[{lo:.2f}, {hi:.2f}]: {confidence}.")
        basis = "re-evaluated test loss"
    elif any(doc["arms"][i]["best_value"] is not None for i in range(len(doc["arms"]))) and doc["prob_best"]:
        probs = doc["prob_best"]
        winner = int(max(probs, key=lambda d: probs[d]))
        confidence = f"P(best at full budget) = {probs[str(winner)]:.2f} (bootstrap over tuning trials)"
        text = (f"depth {winner} has the best tuning validation loss; {confidence}. No re-evaluation over fresh "
                "seeds yet ([evaluation] seeds = 0 or still running), so this is the optimistic best-of-N.")
        basis = "best tuning validation loss"
    else:
        out.update(winner=None, confidence=None, basis=None,
                   text="not enough evidence yet: no finished trials to compare.")
        return out
    if fixed and tuned:
        if fixed[0] != tuned[0]:
            text += (f" The fixed-config comparison would have picked depth {fixed[0]} "
                     f"(ranking {' > '.join(map(str, fixed))} vs tuned {' > '.join(map(str, tuned))}).")
        elif fixed != tuned:
            text += f" The fixed-config comparison agrees on the winner but ranks {' > '.join(map(str, fixed))}."
        else:
            text += " The fixed-config comparison gives the same ranking."
    if caveats:
        text += f" Caveats: {len(caveats)} (see diagnostics)."
    out.update(winner=winner, confidence=confidence, basis=basis, text=text)
    return out
