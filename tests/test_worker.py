"""Tests for bench.service.worker with training replaced by a stub: what each outcome does to the ledger, fast."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

import bench.service.worker as worker_mod
from bench.service.run import attach, init_experiment
from bench.spec import Arm, Spec, load_spec
from bench.store.ledger import Ledger
from bench.store.storage import make_engine, optuna_storage
from bench.tuning.objective import Outcome
from bench.tuning.studies import spec_study_name
from tests.conftest import tiny_spec


def _stub(outcomes: list[str], limit: int) -> tuple[list[int], Any]:
    """A run_tuning_trial that returns the given outcomes in turn; more than `limit` calls is a runaway loop."""
    calls: list[int] = []

    def fake(spec: Spec, arm: Arm, trial: optuna.Trial, *, device: str, seed: int) -> Outcome:
        calls.append(seed)
        if len(calls) > limit:
            raise RuntimeError(f"run_tuning_trial called {len(calls)} times for a budget of {limit}")
        kind = outcomes[(len(calls) - 1) % len(outcomes)]
        if kind == "diverged":
            return Outcome("diverged", math.inf, 0.01, {"diverged": True, "seconds": 0.01})
        trial.report(0.5, 0)
        if kind == "pruned":
            return Outcome("pruned", math.nan, 0.01, {"pruned": True, "seconds": 0.01})
        return Outcome("complete", 0.5, 0.01, {"diverged": False, "seconds": 0.01})

    return calls, fake


def _run(tmp_path: Path, url: str, outcomes: list[str], monkeypatch: pytest.MonkeyPatch) -> tuple[Spec, list[int]]:
    spec = load_spec(tiny_spec(tmp_path, budget={"trials": 3}))
    init_experiment(spec, url)
    calls, fake = _stub(outcomes, 6)
    monkeypatch.setattr(worker_mod, "run_tuning_trial", fake)
    loop = worker_mod.WorkerLoop(spec, url, attach(spec, url),
                                 worker_mod.WorkerOptions(lease_seconds=30, poll_seconds=0.05))
    loop.run()
    return spec, calls


def _slots(spec: Spec, url: str) -> list[dict[str, Any]]:
    engine = make_engine(url)
    try:
        return Ledger(engine, Ledger.find_experiment(engine, spec.name)[0]).slots("tune")  # type: ignore[index]
    finally:
        engine.dispose()


def test_diverged_trials_are_counted_not_released(tmp_path: Path, sqlite_url: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    spec, calls = _run(tmp_path, sqlite_url, ["diverged"], monkeypatch)
    assert len(calls) == 6  # 2 arms x 3 slots, each run once
    slots = _slots(spec, sqlite_url)
    assert [(s["state"], s["outcome"], s["lost"], s["attempts"]) for s in slots] == [("done", "diverged", 0, 1)] * 6
    study = optuna.load_study(study_name=spec_study_name(spec, spec.arms[0]), storage=optuna_storage(sqlite_url))
    assert [(t.state, t.value) for t in study.trials] == [(TrialState.COMPLETE, math.inf)] * 3


def test_each_outcome_is_recorded_as_such(tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    spec, calls = _run(tmp_path, sqlite_url, ["complete", "pruned", "diverged"], monkeypatch)
    assert len(calls) == 6
    slots = _slots(spec, sqlite_url)
    # Claims alternate arms (least-advanced first): calls 1, 3, 5 go to depth 1, calls 2, 4, 6 to depth 2.
    by_arm: dict[str, list[tuple[str, float | None]]] = {}
    for s in slots:
        by_arm.setdefault(s["arm"], []).append((s["outcome"], s["value"]))
    assert by_arm == {spec.arms[0].key: [("complete", 0.5), ("diverged", None), ("pruned", None)],
                      spec.arms[1].key: [("pruned", None), ("complete", 0.5), ("diverged", None)]}
    study = optuna.load_study(study_name=spec_study_name(spec, spec.arms[1]), storage=optuna_storage(sqlite_url))
    assert [t.state for t in study.trials] == [TrialState.PRUNED, TrialState.COMPLETE, TrialState.COMPLETE]


def test_a_crashed_trial_is_released_as_lost(tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = load_spec(tiny_spec(tmp_path, depths=[1], budget={"trials": 1}))
    init_experiment(spec, sqlite_url)

    def boom(*args: object, **kwargs: object) -> Outcome:
        raise ValueError("disk on fire")

    monkeypatch.setattr(worker_mod, "run_tuning_trial", boom)
    loop = worker_mod.WorkerLoop(spec, sqlite_url, attach(spec, sqlite_url), worker_mod.WorkerOptions())
    with pytest.raises(ValueError, match="disk on fire"):
        loop.run()
    (slot,) = _slots(spec, sqlite_url)
    assert (slot["state"], slot["lost"], slot["worker_id"]) == ("free", 1, None)
    study = optuna.load_study(study_name=spec_study_name(spec, spec.arms[0]), storage=optuna_storage(sqlite_url))
    (t,) = study.trials
    assert t.state == TrialState.FAIL and "disk on fire" in t.user_attrs["bench_lost"]
