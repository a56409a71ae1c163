"""Read an experiment from storage into tidy trial records (one dict per Optuna trial, every role)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import TrialState

from bench.ledger import Ledger, has_schema
from bench.spec import Spec
from bench.storage import display_url, make_engine, optuna_storage, prepare
from bench.studies import study_name


@dataclass
class Collected:
    spec: Spec
    storage: str  # URL with the password hidden
    stored_spec_hash: str | None  # on the experiment row; None if the experiment is not in storage
    study_attrs: dict[str, dict[str, Any]]  # study name -> user attrs (None-valued when the study is missing)
    trials: list[dict[str, Any]] = field(default_factory=list)
    slots: list[dict[str, Any]] = field(default_factory=list)
    distributions: dict[str, dict[str, str]] = field(default_factory=dict)  # study -> param -> repr(distribution)
    importance: dict[int, dict[str, float] | None] = field(default_factory=dict)  # depth -> param -> importance
    trivial_loss: float | None = None  # the task's input-independent baseline loss (stored on the studies)
    metric: str | None = None  # what the loss means, from the task (e.g. "cross-entropy per character (nats)")


def _record(role: str, depth: int, t: optuna.trial.FrozenTrial, counted: set[int]) -> dict[str, Any]:
    ua = t.user_attrs
    prov = ua.get("provenance") or {}
    state = t.state.name.lower()
    if state == "complete" and ua.get("diverged"):
        state = "diverged"
    value = t.value if t.value is not None and math.isfinite(t.value) else None
    return {
        "role": role, "depth": depth, "number": t.number, "state": state, "value": value,
        "counted": t.number in counted,
        "params": dict(t.params), "seconds": ua.get("seconds"), "n_params": ua.get("n_params"),
        "hidden": ua.get("hidden"), "epochs_run": ua.get("epochs_run"), "seed": ua.get("seed"),
        "test_loss": ua.get("test_loss"), "rank": ua.get("rank"), "source_trial": ua.get("source_trial"),
        "val_losses": ua.get("val_losses") or [v for _, v in sorted(t.intermediate_values.items())],
        "lost_reason": ua.get("bench_lost"), "spec_hash": prov.get("spec_hash"), "host": prov.get("host"),
        "device": prov.get("device"), "datetime_start": t.datetime_start.isoformat() if t.datetime_start else None,
    }


def collect(spec: Spec, url: str) -> Collected:
    """Everything the report needs, read once; works on a run in progress or a storage without the experiment."""
    url = prepare(url)
    engine = make_engine(url)
    try:
        found = Ledger.find_experiment(engine, spec.name) if has_schema(engine) else None
        out = Collected(spec, display_url(url), found[1] if found else None, {})
        if found is None:
            return out
        # A report of another spec under the same name would mislabel everything: refuse, naming the fields.
        Ledger.check_experiment(engine, spec.name, spec.to_dict(), spec.hash)
        ledger = Ledger(engine, found[0])
        out.slots = ledger.slots()
    finally:
        engine.dispose()
    storage = optuna_storage(url)
    try:
        existing = {s.study_name for s in optuna.get_all_study_summaries(storage)}
        for depth in spec.depths:
            for role in ("tune", "eval", "baseline"):
                # A trial counts only if a done ledger slot points at it: exactness comes from the ledger.
                counted = {s["trial_number"] for s in out.slots
                           if s["role"] == role and s["depth"] == depth and s["state"] == "done"}
                name = study_name(spec.name, depth, role)
                if name not in existing:
                    continue
                study = optuna.load_study(study_name=name, storage=storage)
                out.study_attrs[name] = dict(study.user_attrs)
                out.trivial_loss = study.user_attrs.get("trivial_loss", out.trivial_loss)
                out.metric = study.user_attrs.get("metric", out.metric)
                trials = study.get_trials(deepcopy=False)
                out.trials += [_record(role, depth, t, counted) for t in trials]
                if role == "tune" and trials:
                    merged: dict[str, str] = {}
                    for t in trials:
                        merged.update({k: repr(v) for k, v in t.distributions.items()})
                    out.distributions[name] = merged
                    out.importance[depth] = importance([t for t in trials if t.number in counted])
    finally:
        storage.dispose()
    return out


def importance(trials: list[optuna.trial.FrozenTrial]) -> dict[str, float] | None:
    """Optuna's default importance (PED-ANOVA, Watanabe et al. 2023; no scikit-learn needed) over a depth's
    counted, finite trials; None when it cannot say."""
    usable = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None and math.isfinite(t.value)]
    if len(usable) < 3 or len({t.value for t in usable}) < 2:
        return None
    study = optuna.create_study(direction="minimize")
    study.add_trials(usable)
    try:
        evaluator = optuna.importance.PedAnovaImportanceEvaluator()
        found = optuna.importance.get_param_importances(study, evaluator=evaluator)
    except (RuntimeError, ValueError):
        return None
    return {k: float(v) for k, v in found.items()}
