"""Assemble the report document (the `report.json` schema) from collected records and the pure statistics."""

from __future__ import annotations

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


def _scores(trials: list[dict[str, Any]], worst: float) -> np.ndarray:
    """Objective values of finished trials; diverged ones score `worst` (a finite stand-in for +inf)."""
    return np.array([worst if t["state"] == "diverged" else t["value"] for t in trials
                     if t["state"] == "diverged" or (t["state"] == "complete" and t["value"] is not None)], float)


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
        "best_trial": best["number"] if best else None,
        "best_val_losses": best["val_losses"] if best else None,
        "n_params": n_params[0] if len(n_params) == 1 else (n_params or None),
        "hidden": best["hidden"] if best else None,
        "mean_trial_seconds": mean(secs) if secs else None, "total_seconds": sum(secs),
        "lost": lost,
    }


def build(col: Collected) -> dict[str, Any]:
    """The whole report document. Keys are stable; later sections are added, never renamed."""
    spec = col.spec
    arms = [arm(col, d) for d in spec.depths]
    doc: dict[str, Any] = {
        "experiment": spec.name, "spec_hash": spec.hash, "bench_version": bench.__version__,
        "storage": col.storage, "arms": arms,
        "complete": bool(arms) and all(a["budget"] and a["n_finished"] == a["budget"] for a in arms),
        "missing": missing(col, arms),
    }
    return doc


def missing(col: Collected, arms: list[dict[str, Any]]) -> list[str]:
    """What a partial run still lacks, in words (the report of a run in progress says so instead of failing)."""
    out = []
    if col.stored_spec_hash is None:
        return [f"experiment {col.spec.name!r} is not in this storage yet: run `bench init` or `bench run`"]
    for a in arms:
        if a["n_finished"] < a["budget"]:
            out.append(f"depth {a['depth']}: {a['n_finished']}/{a['budget']} tuning trials finished")
    return out


def best_of_n(col: Collected, depth: int, worst: float) -> dict[str, Any] | None:
    """Expected best validation loss after n trials (Dodge et al. 2019) for one depth."""
    values = _scores(_tune(col, depth), worst)
    if values.size == 0:
        return None
    m, s = stats.expected_best_of_n(values)
    return {"n": list(range(1, values.size + 1)), "mean": m.tolist(), "std": s.tolist()}
