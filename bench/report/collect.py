"""Read an experiment from storage into tidy trial records (one dict per Optuna trial, every role)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import TrialState

from bench.report.audit import StudyTrials
from bench.spec import Arm, Spec
from bench.store.ledger import Ledger, has_schema
from bench.store.record import result_json
from bench.store.storage import display_url, make_engine, missing_sqlite_file, normalize_url, optuna_storage
from bench.tuning.studies import all_studies, study_direction, trial_record, tuning_score


@dataclass
class Collected:
    spec: Spec
    storage: str  # URL with the password hidden
    stored_spec_hash: str | None  # on the experiment row; None if the experiment is not in storage
    study_attrs: dict[str, dict[str, Any]]  # study name -> user attrs (None-valued when the study is missing)
    trials: list[dict[str, Any]] = field(default_factory=list)
    slots: list[dict[str, Any]] = field(default_factory=list)
    distributions: dict[str, dict[str, str]] = field(default_factory=dict)  # study -> param -> repr(distribution)
    importance: dict[str, dict[str, float] | None] = field(default_factory=dict)  # arm label -> param -> importance
    trivial_loss: float | None = None  # the task's input-independent baseline loss (stored on the studies)
    metric: str | None = None  # what the loss means, from the task (e.g. "cross-entropy per character (nats)")
    missing_studies: list[str] = field(default_factory=list)  # studies the spec implies but storage lacks
    # For the record audit: (role, arm key, replicate) -> the stored study's trial records (or its absence),
    # and whether the ledger has the record columns (False: written by an older bench).
    stored: dict[tuple[str, str, int], StudyTrials] = field(default_factory=dict)
    recorded: bool = False


class MalformedRecord(ValueError):
    """A stored attribute that bench reads has the wrong type (edited by hand or by another tool): bad input."""


_NUMBER, _INT, _TEXT = (int, float), (int,), (str,)
# The trial user attributes the report reads, with the types bench writes them as (None is always allowed).
TRIAL_ATTRS: dict[str, tuple[type, ...]] = {
    "seconds": _NUMBER, "n_params": _INT, "hidden": _INT, "epochs_run": _INT, "seed": _INT, "test_loss": _NUMBER,
    "rank": _INT, "source_trial": _INT, "source_study": _INT, "diverged": (bool,), "bench_lost": _TEXT,
    "provenance": (dict,), "val_losses": (list,),
}
PROVENANCE_ATTRS: dict[str, tuple[type, ...]] = {"spec_hash": _TEXT, "host": _TEXT, "device": _TEXT}
STUDY_ATTRS: dict[str, tuple[type, ...]] = {"trivial_loss": _NUMBER, "metric": _TEXT, "spec_hash": _TEXT}
_KIND_WORDS: dict[tuple[type, ...], str] = {
    _NUMBER: "a number", _INT: "an integer", _TEXT: "a string", (bool,): "true or false",
    (dict,): "an object", (list,): "a list",
}


def _ok(value: Any, kinds: tuple[type, ...]) -> bool:
    if value is None:
        return True
    if isinstance(value, bool) and bool not in kinds:
        return False  # JSON true is not a count or a number of seconds
    return isinstance(value, kinds)


def check_attrs(attrs: dict[str, Any], schema: dict[str, tuple[type, ...]], where: str) -> None:
    """MalformedRecord naming `where` and the attribute when one that bench reads has the wrong type."""
    for key, kinds in schema.items():
        value = attrs.get(key)
        bad = not _ok(value, kinds) or (key == "val_losses" and not all(_ok(v, _NUMBER) for v in value or []))
        if bad:
            want = "a list of numbers" if key == "val_losses" else _KIND_WORDS.get(kinds, "?")
            raise MalformedRecord(f"{where}: user attribute {key!r} is {str(value)[:60]!r}, expected {want}; "
                                  "the stored record was edited or is not bench's")


def _record(role: str, arm: Arm, depth: int | None, study: int | None, t: optuna.trial.FrozenTrial, counted: bool,
            where: str, direction: str) -> dict[str, Any]:
    ua = t.user_attrs
    check_attrs(ua, TRIAL_ATTRS, f"{where}trial {t.number}")
    prov = ua.get("provenance") or {}
    check_attrs(prov, PROVENANCE_ATTRS, f"{where}trial {t.number} provenance")
    state = t.state.name.lower()
    if state == "complete" and ua.get("diverged"):
        state = "diverged"
    # Tuning trials: one scoring rule for complete and pruned (best epoch, studies.tuning_score); fixed runs: value.
    score = tuning_score(t, direction) if role == "tune" else (t.value if t.value is not None else math.inf)
    value = score if math.isfinite(score) and state != "diverged" else None
    return {
        "role": role, "arm": arm.label, "arm_key": arm.key, "depth": depth, "study": study,
        "number": t.number, "state": state, "value": value, "counted": counted,
        "params": dict(t.params), "seconds": ua.get("seconds"), "n_params": ua.get("n_params"),
        "hidden": ua.get("hidden"), "epochs_run": ua.get("epochs_run"), "seed": ua.get("seed"),
        "test_loss": ua.get("test_loss"), "rank": ua.get("rank"), "source_trial": ua.get("source_trial"),
        "source_study": ua.get("source_study"),
        "val_losses": ua.get("val_losses") or [v for _, v in sorted(t.intermediate_values.items())],
        "lost_reason": ua.get("bench_lost"), "spec_hash": prov.get("spec_hash"), "host": prov.get("host"),
        "device": prov.get("device"), "datetime_start": t.datetime_start.isoformat() if t.datetime_start else None,
    }


def collect(spec: Spec, url: str) -> Collected:
    """Everything the report needs, read once; works on a run in progress or a storage without the experiment."""
    url = normalize_url(url)
    if missing_sqlite_file(url) is not None:
        return Collected(spec, display_url(url), None, {})  # nothing stored yet; reading must not create a file
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
        out.recorded = ledger.recorded
    finally:
        engine.dispose()
    # A trial counts only if a done ledger slot points at it: exactness comes from the ledger. The slot also
    # says which replicate study a fixed-config run belongs to.
    counted = {(s["role"], s["arm"], s["study"] if s["role"] == "tune" else 0, s["trial_number"]): s["study"]
               for s in out.slots if s["state"] == "done"}
    storage = optuna_storage(url)
    try:
        existing = {s.study_name for s in optuna.get_all_study_summaries(storage)}
        pooled: dict[str, list[optuna.trial.FrozenTrial]] = {}
        for arm, role, k, name in all_studies(spec):
            if name not in existing:
                out.missing_studies.append(name)
                out.stored[(role, arm.key, k)] = StudyTrials(name, present=False)
                continue
            study = optuna.load_study(study_name=name, storage=storage)
            check_attrs(study.user_attrs, STUDY_ATTRS, f"study {name!r}")
            out.study_attrs[name] = dict(study.user_attrs)
            out.trivial_loss = study.user_attrs.get("trivial_loss", out.trivial_loss)
            out.metric = study.user_attrs.get("metric", out.metric)
            trials = study.get_trials(deepcopy=False)
            depth = spec.arm_depth(arm)
            # As the ledger stores them (the same canonical JSON), so that the audit compares like with like.
            out.stored[(role, arm.key, k)] = StudyTrials(name, {t.number: json.loads(result_json(trial_record(t)))
                                                                for t in trials})
            for t in trials:
                key = (role, arm.key, k, t.number)
                out.trials.append(_record(role, arm, depth, counted.get(key, k if role == "tune" else None), t,
                                          key in counted, f"study {name!r} ", spec.direction))
            if role == "tune" and trials:
                # Every distinct distribution per parameter, so that one edited trial shows (not only the last).
                seen: dict[str, set[str]] = {}
                for t in trials:
                    for p, v in t.distributions.items():
                        seen.setdefault(p, set()).add(repr(v))
                out.distributions[name] = {p: " | ".join(sorted(v)) for p, v in seen.items()}
                pooled.setdefault(arm.label, []).extend(t for t in trials if (role, arm.key, k, t.number) in counted)
        out.importance = {label: importance(ts, spec.direction) for label, ts in pooled.items()}
    finally:
        storage.dispose()
    return out


def importance(trials: list[optuna.trial.FrozenTrial], direction: str) -> dict[str, float] | None:
    """Optuna's default importance (PED-ANOVA, Watanabe et al. 2023; no scikit-learn needed) over an arm's
    counted, finite trials of every replicate study; None when it cannot say. PED-ANOVA looks at the best
    trials, so the study it reads takes the metric's direction."""
    usable = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None and math.isfinite(t.value)]
    if len(usable) < 3 or len({t.value for t in usable}) < 2:
        return None
    study = optuna.create_study(direction=study_direction(direction))
    study.add_trials(usable)
    try:
        evaluator = optuna.importance.PedAnovaImportanceEvaluator()
        found = optuna.importance.get_param_importances(study, evaluator=evaluator)
    except (RuntimeError, ValueError):
        return None
    return {k: float(v) for k, v in found.items()}
