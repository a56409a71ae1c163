"""Assemble the report document (the `report.json` schema) from collected records and the pure statistics."""

from __future__ import annotations

import json
import math
from collections import Counter
from statistics import mean, median
from typing import Any

import numpy as np

import bench
from bench.report import inference, stats
from bench.report.audit import audit
from bench.report.collect import Collected
from bench.report.provenance import report_provenance
from bench.report.verdict import verdict
from bench.spec import Arm, loss_sign
from bench.tuning.studies import all_studies

OUTCOMES = ("complete", "pruned", "diverged")
PHASES = {"tune": "tuning", "eval": "re-evaluation", "baseline": "baseline", "transfer": "transferred-config"}
FIXED_ROLES = (("eval", "test"), ("baseline", "baseline"), ("transfer", "transfer"))


def worst_score(col: Collected) -> float:
    """The score of a run that learned nothing: the task's trivial (input-independent) loss. Arm-independent by
    construction; diverged runs get it, and any worse score is capped at it (documented in the README). A user
    trainer's spec states it as [metric] worst (for a maximized metric a floor: lower scores are raised to it)."""
    if col.spec.worst is not None:
        return float(col.spec.worst)
    return float(col.trivial_loss) if col.trivial_loss else math.inf


def _score(value: float | None, state: str, worst: float, sign: int) -> float:
    """A run's score for the statistics: `worst` if it diverged, else its value capped at `worst` from the bad
    side (sign: +1 minimizing, a loss above worst is lowered to it; -1 maximizing, a score below is raised)."""
    if state == "diverged" or value is None or not math.isfinite(value):
        return worst
    return sign * min(sign * float(value), sign * worst)


def _tune(col: Collected, arm: Arm, study: int | None = None) -> list[dict[str, Any]]:
    """Counted tuning trials of an arm (one replicate study, or all), in trial order."""
    return sorted((t for t in col.trials if t["role"] == "tune" and t["arm_key"] == arm.key and t["counted"]
                   and (study is None or t["study"] == study)), key=lambda t: (t["study"], t["number"]))


def _scored(trials: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Finished trials with a score: complete, diverged, and pruned ones with at least one epoch reported."""
    return [t for t in trials if t["state"] == "diverged" or t["value"] is not None]


def arm_summary(col: Collected, arm: Arm) -> dict[str, Any]:
    spec = col.spec
    studies: list[dict[str, Any]] = []
    for k in range(spec.budget.studies):
        trials = _tune(col, arm, k)
        budget = sum(1 for s in col.slots if s["role"] == "tune" and s["arm"] == arm.key and s["study"] == k)
        finite = [t for t in trials if t["value"] is not None and t["state"] != "diverged"]
        best = min(finite, key=lambda t: (spec.sign * t["value"], t["number"])) if finite else None
        studies.append({"study": k, "budget": budget, "n_finished": len(trials),
                        "by_outcome": {o: sum(t["state"] == o for t in trials) for o in OUTCOMES},
                        "best_value": best["value"] if best else None, "best_params": best["params"] if best else None,
                        "best_trial": best["number"] if best else None,
                        "seconds": sum(t["seconds"] or 0.0 for t in trials)})
    trials = _tune(col, arm)
    counts = Counter(t["state"] for t in trials)
    finite = [t for t in trials if t["value"] is not None and t["state"] != "diverged"]
    best = min(finite, key=lambda t: (spec.sign * t["value"], t["study"], t["number"])) if finite else None
    n_params = sorted({t["n_params"] for t in trials if t["n_params"]})
    secs = [t["seconds"] for t in trials if t["seconds"] is not None]
    study_bests: list[float] = [s["best_value"] for s in studies if s["best_value"] is not None]
    return {
        "arm": dict(arm.values), "label": arm.label, "depth": col.spec.arm_depth(arm),
        "budget": sum(s["budget"] for s in studies), "n_finished": len(trials), "studies": studies,
        "by_outcome": {o: counts.get(o, 0) for o in OUTCOMES},
        # AlgoPerf's rule: an arm's tuning result is the median over its replicate studies of each study's best.
        "median_best_value": median(study_bests) if study_bests else None,
        "best_value": best["value"] if best else None, "best_params": best["params"] if best else None,
        "best_value_bits": best["value"] / math.log(2) if best and spec.direction == "minimize" else None,
        "best_study": best["study"] if best else None, "best_trial": best["number"] if best else None,
        "best_val_losses": best["val_losses"] if best else None,
        "n_params": n_params[0] if len(n_params) == 1 else (n_params or None),
        "hidden": best["hidden"] if best else None,
        "mean_trial_seconds": mean(secs) if secs else None, "total_seconds": sum(secs),
        "lost": sum(s["lost"] for s in col.slots if s["role"] == "tune" and s["arm"] == arm.key),
    }


def build(col: Collected) -> dict[str, Any]:
    """The whole report document (schema in the README)."""
    spec = col.spec
    arms = [arm_summary(col, a) for a in spec.arms]
    worst = worst_score(col)
    doc: dict[str, Any] = {
        "experiment": spec.name, "spec_hash": spec.hash, "bench_version": bench.__version__,
        "storage": col.storage, "arms": arms, "missing": missing(col, arms),
        "settings": {"studies": spec.budget.studies, "trials_per_study": spec.budget.trials,
                     "seeds": spec.evaluation.seeds, "direction": spec.direction, "alpha": spec.analysis.alpha,
                     "min_effect": spec.analysis.min_effect, "diverged_scored_as": worst,
                     "sampler": spec.sampler.kind, "adaptive_sampler": spec.sampler.kind == "tpe",
                     "transfer_from": spec.transfer_arm.label if spec.transfer_arm else None},
        "trivial_loss": col.trivial_loss, "metric": col.metric, "provenance": report_provenance(),
    }
    doc["complete"] = bool(arms) and not doc["missing"]
    doc["tuning"] = {a.label: tuning_curves(col, a, worst) for a in spec.arms}
    doc["budget"] = budget_analysis(doc["tuning"], spec.direction)
    for role, key in FIXED_ROLES:
        doc[key] = {a.label: seeds_summary(col, a, role, worst, s) for a, s in zip(spec.arms, arms, strict=True)}
    doc["comparisons"] = {key: comparison(doc, key) for _, key in FIXED_ROLES}
    doc["importance"] = {a.label: col.importance.get(a.label) for a in spec.arms}
    doc["diagnostics"] = diagnostics(col, doc)
    doc["fairness"] = fairness(col, arms)
    doc["verdict"] = verdict(doc)
    return doc


def missing(col: Collected, arms: list[dict[str, Any]]) -> list[str]:
    """What a partial run still lacks, in words (the report of a run in progress says so instead of failing)."""
    if col.stored_spec_hash is None:
        return [f"experiment {col.spec.name!r} is not in this storage yet: run `bench init` or `bench run`"]
    phase = {name: role for _, role, _, name in all_studies(col.spec)}
    out = [f"{PHASES.get(phase.get(name, ''), 'a')} phase incomplete: study {name} is missing from the storage "
           "(deleted?)" for name in col.missing_studies]
    for a in arms:
        for s in a["studies"]:
            if s["n_finished"] < s["budget"]:
                out.append(f"{a['label']} study {s['study']}: {s['n_finished']}/{s['budget']} tuning trials finished")
    ev = col.spec.evaluation
    if ev.seeds < 1:
        return out
    phases = [("eval", "re-evaluation", ev.seeds * ev.top_k * col.spec.budget.studies)]
    phases += [("baseline", "baseline", ev.seeds)] if col.spec.baseline else []
    phases += [("transfer", "transferred-config", ev.seeds)] if col.spec.transfer_arm else []
    for role, words, expected in phases:
        for arm in col.spec.arms:
            mine = [s for s in col.slots if s["role"] == role and s["arm"] == arm.key]
            done = sum(1 for s in mine if s["state"] == "done")
            want = len(mine) if role == "eval" and len(mine) >= ev.seeds * col.spec.budget.studies else expected
            if done < want:
                out.append(f"{arm.label}: {done}/{want} {words} runs finished")
    return out


# ---------------------------------------------------------------- tuning curves and budgets


def tuning_curves(col: Collected, arm: Arm, worst: float) -> dict[str, Any] | None:
    """Per replicate study, the best-so-far validation score in trial order (in the metric's direction), against
    trials and seconds.

    The median over studies is the arm's curve (AlgoPerf's median rule at every budget); min and max over studies
    are its band, so no band ever leaves the observed range. For i.i.d. samplers (random, qmc) the expected
    best-of-n of the pooled trials (Dodge et al. 2019) is added; for TPE it is not valid and is left out.
    """
    spec = col.spec
    per_study = []
    for k in range(spec.budget.studies):
        trials = _scored(_tune(col, arm, k))
        if not trials:
            continue
        scores = np.array([_score(t["value"], t["state"], worst, spec.sign) for t in trials])
        secs = np.cumsum([t["seconds"] or 0.0 for t in trials])
        per_study.append({"study": k, "best": stats.best_so_far(scores, spec.direction).tolist(),
                          "seconds": secs.tolist()})
    if not per_study:
        return None
    n = min(len(s["best"]) for s in per_study)
    grid = np.array([s["best"][:n] for s in per_study])
    out: dict[str, Any] = {"studies": per_study, "n": list(range(1, n + 1)),
                           "median": np.median(grid, axis=0).tolist(), "low": grid.min(axis=0).tolist(),
                           "high": grid.max(axis=0).tolist(),
                           "median_seconds": np.median([s["seconds"][:n] for s in per_study], axis=0).tolist()}
    if spec.sampler.kind != "tpe":
        pool = np.array([_score(t["value"], t["state"], worst, spec.sign) for t in _scored(_tune(col, arm))])
        if np.all(np.isfinite(pool)):
            out["expected_best_of_n"] = _expected_best(pool, spec.direction)
    return out


def _expected_best(pool: np.ndarray, direction: str) -> dict[str, list[float]]:
    """Dodge et al.'s expected best-of-n with a ±1 sd band, clipped on the good side at the best observed value
    (no draw of n trials can beat it): the lowest when minimizing, the highest when maximizing."""
    m, sd = stats.expected_best_of_n(pool, direction)
    if direction == "minimize":
        return {"mean": m.tolist(), "low": np.maximum(m - sd, pool.min()).tolist(), "high": (m + sd).tolist()}
    return {"mean": m.tolist(), "low": (m - sd).tolist(), "high": np.minimum(m + sd, pool.max()).tolist()}


def _at_seconds(study: dict[str, Any], budget: float, worst: float) -> float:
    """A study's best-so-far after spending at most `budget` seconds (worst if its first trial took longer)."""
    within = [b for b, s in zip(study["best"], study["seconds"], strict=True) if s <= budget * (1 + 1e-9)]
    return within[-1] if within else worst


def budget_analysis(tuning: dict[str, dict[str, Any] | None], direction: str) -> dict[str, Any]:
    """Rankings at equal trials and at equal compute, where median curves cross, and the budget each arm needed
    to reach the best arm's result, best first in the metric's direction. Descriptive (tuning-time validation
    scores), not tested."""
    sign = loss_sign(direction)
    curves = {k: v for k, v in tuning.items() if v}
    if len(curves) < 2:
        return {"equal_trials": None, "equal_compute": None, "crossings": [], "to_target": {}, "agree": None}
    n = min(len(c["median"]) for c in curves.values())
    at_trials = {k: c["median"][n - 1] for k, c in curves.items()}
    worst = sign * max(sign * s["best"][0] for c in curves.values() for s in c["studies"])
    compute = min(median(s["seconds"][-1] for s in c["studies"]) for c in curves.values())
    at_compute = {k: median(_at_seconds(s, compute, worst) for s in c["studies"]) for k, c in curves.items()}
    rank_t = sorted(at_trials, key=lambda k: sign * at_trials[k])
    rank_c = sorted(at_compute, key=lambda k: sign * at_compute[k])
    crossings = []
    labels = list(curves)
    for i, a in enumerate(labels):
        for b in labels[i + 1:]:
            diff = np.sign(sign * (np.array(curves[a]["median"][:n]) - np.array(curves[b]["median"][:n])))
            nz = [(j + 1, d) for j, d in enumerate(diff) if d != 0]
            at = [nz[j][0] for j in range(1, len(nz)) if nz[j][1] != nz[j - 1][1]]
            if at:
                crossings.append({"a": a, "b": b, "at_n": at,
                                  "ahead_at_end": a if nz[-1][1] < 0 else b})
    target = at_trials[rank_t[0]]
    to_target = {}
    for k, c in curves.items():
        hits = []
        for s in c["studies"]:
            j = next((j for j, v in enumerate(s["best"]) if sign * (v - target) <= 1e-9 * abs(target)), None)
            hits.append((math.inf, math.inf) if j is None else (j + 1, s["seconds"][j]))
        reached = sum(math.isfinite(h[0]) for h in hits)
        trials_needed = median(h[0] for h in hits)
        seconds_needed = median(h[1] for h in hits)
        to_target[k] = {"trials": trials_needed if math.isfinite(trials_needed) else None,
                        "seconds": seconds_needed if math.isfinite(seconds_needed) else None,
                        "studies_reached": reached, "studies": len(hits)}
    return {"equal_trials": {"n": n, "ranking": rank_t, "values": at_trials},
            "equal_compute": {"seconds": compute, "ranking": rank_c, "values": at_compute},
            "agree": rank_t == rank_c, "crossings": crossings, "target": target, "to_target": to_target}


# ---------------------------------------------------------------- re-evaluation and baselines


def _seed_trials(col: Collected, arm: Arm, role: str) -> list[dict[str, Any]]:
    # Only the top-ranked config (rank 0) of each study represents it; other ranks are kept in trials.csv.
    return sorted((t for t in col.trials if t["role"] == role and t["arm_key"] == arm.key and t["counted"]
                   and (t["rank"] or 0) == 0), key=lambda t: (t["study"] or 0, t["seed"] or 0))


def seeds_summary(col: Collected, arm: Arm, role: str, worst: float, tuned: dict[str, Any]) -> dict[str, Any] | None:
    """Held-out test scores of the arm's re-evaluated (or fixed) configs, per replicate study and pooled.

    Diverged seeds score `worst` (never dropped: dropping them would flatter erratic arms). The arm's headline is
    the median over studies of each study's geometric-mean test score (AlgoPerf); the interval is a t interval of
    the mean log score over the units the comparison uses (studies, or seeds when there is one study). `tuned` is
    the arm's arm_summary (its per-study tuning bests, for tuner optimism).
    """
    trials = _seed_trials(col, arm, role)
    if not trials:
        return None
    by_study: dict[int, list[dict[str, Any]]] = {}
    for t in trials:
        by_study.setdefault(int(t["study"] or 0), []).append(t)
    per_study = []
    for k, ts in sorted(by_study.items()):
        test = [_score(t["test_loss"], t["state"], worst, col.spec.sign) for t in ts]
        val = [_score(t["value"], t["state"], worst, col.spec.sign) for t in ts]
        logs = stats.log_scores(test)
        per_study.append({"study": k, "params": ts[0]["params"], "source_trial": ts[0]["source_trial"],
                          "n_seeds": len(ts), "n_diverged": sum(t["state"] == "diverged" for t in ts),
                          "test_losses": test, "val_losses": val, "log_mean": float(logs.mean()),
                          "geo_mean": float(np.exp(logs.mean()))})
    unit = "study" if len(per_study) >= 2 else "seed"
    units = ([s["log_mean"] for s in per_study] if unit == "study"
             else stats.log_scores(per_study[0]["test_losses"]).tolist())
    ci = stats.mean_ci_t(units)
    between, within = stats.variance_components([stats.log_scores(s["test_losses"]) for s in per_study])
    val_between, val_within = stats.variance_components([stats.log_scores(s["val_losses"]) for s in per_study])
    out: dict[str, Any] = {
        "unit": unit, "units": units, "n_studies": len(per_study), "n_seeds": len(trials),
        "n_diverged": sum(s["n_diverged"] for s in per_study), "per_study": per_study,
        "median": float(median(s["geo_mean"] for s in per_study)),
        "geo_mean": float(np.exp(np.mean(units))),
        "geo_mean_ci": None if ci is None else [math.exp(ci[1]), math.exp(ci[2])],
        "sd_between_studies": between, "sd_within_study": within, "val_sd_within_study": val_within,
        "params": per_study[0]["params"] if len(per_study) == 1 else None,
    }
    if role == "eval":
        optimism = []
        for s in per_study:
            best = next((x["best_value"] for x in tuned["studies"] if x["study"] == s["study"]), None)
            opt = stats.tuner_optimism(best, s["val_losses"], col.spec.direction) if best is not None else math.nan
            if math.isfinite(opt):
                optimism.append(opt)
        out["tuner_optimism"] = median(optimism) if optimism else None
    return out


def comparison(doc: dict[str, Any], key: str) -> dict[str, Any] | None:
    """The family of pairwise tests over one role's test scores (tuned, fixed config, transferred config)."""
    summaries = {label: s for label, s in (doc.get(key) or {}).items() if s}
    if len(summaries) < 2:
        return None
    units = {label: s["units"] for label, s in summaries.items()}
    fam = inference.family(units, doc["settings"]["alpha"], doc["settings"]["min_effect"],
                           direction=doc["settings"]["direction"])
    fam["unit"] = "study" if all(s["unit"] == "study" for s in summaries.values()) else "seed"
    return fam


# ---------------------------------------------------------------- diagnostics and fairness


def diagnostics(col: Collected, doc: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for arm, a in zip(col.spec.arms, doc["arms"], strict=True):
        label = a["label"]
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
        trials = _tune(col, arm)
        div = stats.divergence_fraction(np.array([t["state"] == "diverged" for t in trials])) if trials else 0.0
        if div > 0.25:
            notes.append(f"{div:.0%} of tuning trials diverged")
        curve = doc["tuning"].get(label)
        test = doc["test"].get(label) or {}
        noise = test.get("val_sd_within_study")
        improving = None
        if curve:
            logs = [stats.log_scores(s["best"]) for s in curve["studies"]]
            improving = stats.still_improving(logs, noise, direction=col.spec.direction)
        if improving:
            notes.append("best-so-far still improving over the last 20% of the budget by more than seed noise"
                         + ("" if noise is not None else " (noise unmeasured: no re-evaluation)")
                         + ": budget may be too small")
        out[label] = {"at_bound": at_bound, "divergence_fraction": div, "still_improving": improving,
                      "seed_noise_log_sd": noise, "notes": notes}
    return out


def fairness(col: Collected, arms: list[dict[str, Any]]) -> dict[str, Any]:
    """Each DESIGN.md invariant checked from the stored data, plus the asymmetries that remain."""
    spec_hash = col.spec.hash
    attrs_ok = all(a.get("spec_hash") == spec_hash for a in col.study_attrs.values()) and bool(col.study_attrs)
    trials_ok = all(t["spec_hash"] == spec_hash for t in col.trials if t["counted"])
    spaces = dict(col.distributions)
    same_space = len({json.dumps(v, sort_keys=True) for v in spaces.values()}) <= 1
    studies = [s for a in arms for s in a["studies"]]
    exact = bool(studies) and all(s["n_finished"] == s["budget"] == col.spec.budget.trials for s in studies)
    done = [s["n_finished"] for s in studies]
    checks = [
        {"invariant": 1, "name": "one spec, hash on experiment and every study and trial",
         "held": col.stored_spec_hash == spec_hash and attrs_ok and trials_ok and not col.missing_studies},
        {"invariant": 2, "name": "same search space, sampler, pruner, epochs, data split and seed for every arm",
         "held": same_space and attrs_ok,
         "detail": f"{len(spaces)} tuning studies with identical parameter distributions" if same_space
         else "parameter distributions differ between studies"},
        {"invariant": 3, "name": "every study finished exactly budget.trials tuning trials", "held": exact,
         "detail": inference.join_labels([f"{a['label']}: " + "/".join(str(s["n_finished"]) for s in a["studies"])
                                          + f" of {col.spec.budget.trials}" for a in arms])},
        {"invariant": 4, "name": "work spread across arms and studies (parity)",
         "held": not done or max(done) - min(done) <= 1,
         "detail": f"max - min finished per study = {max(done) - min(done) if done else 0}"},
    ]
    record = audit(col.slots, col.stored, col.spec.name, col.stored_spec_hash, col.recorded)
    checks += _record_checks(col, record)
    checks.append({"invariant": 5, "name": "remaining asymmetries stated below", "held": True})
    asym = [{"arm": a["label"], "n_params": a["n_params"], "hidden": a["hidden"],
             "total_seconds": a["total_seconds"], "mean_trial_seconds": a["mean_trial_seconds"],
             "lost_and_rerun": a["lost"], "diverged": a["by_outcome"]["diverged"],
             "pruned": a["by_outcome"]["pruned"]} for a in arms]
    return {"checks": checks, "all_held": all(c["held"] for c in checks), "asymmetries": asym, "record": record}


def _record_checks(col: Collected, record: dict[str, Any]) -> list[dict[str, Any]]:
    """Invariant 5's checks of the stored record against the ledger (bench.report.audit)."""
    def listed(items: list[dict[str, Any]], n: int) -> str:
        more = f" (and {n - len(items)} more)" if n > len(items) else ""
        return "; ".join(f"{i['study']} trial {i['trial']}: {i['detail']}" if "field" in i else i["detail"]
                         for i in items) + more

    return [
        {"invariant": 5, "name": "every phase's studies are in the storage", "held": not col.missing_studies,
         "detail": "missing: " + ", ".join(col.missing_studies) if col.missing_studies else "all present"},
        {"invariant": 5, "name": "every counted trial matches its ledger record (value, state, params, "
                                 "distributions, spec hash)",
         "held": record["n_mismatches"] == 0 and record["status"] != "not verifiable",
         "detail": listed(record["mismatches"], record["n_mismatches"]) or record["text"]},
        {"invariant": 5, "name": "every finished trial is accounted for by a ledger slot",
         "held": record["n_unaccounted"] == 0,
         "detail": listed(record["unaccounted"], record["n_unaccounted"]) or "none unaccounted"},
        {"invariant": 5, "name": "the record's digest chain verifies", "held": not record["chain_problems"]
         and record["status"] != "not verifiable",
         "detail": "; ".join(record["chain_problems"]) or (f"head {record['head']}" if record["head"]
                                                            else record["text"])},
    ]
