"""Tests for bench.tuning.objective: the pruner's verdict is honoured, divergence is an outcome, values are recorded."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from bench.spec import Spec, load_spec
from bench.tuning import objective
from bench.tuning.objective import run_fixed, run_tuning_trial
from bench.tuning.search_space import distributions
from bench.tuning.studies import make_pruner
from tests.conftest import tiny_spec

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _spec(tmp_path: Path, **over: Any) -> Spec:
    budget = {"trials": 2, "epochs": 3, "batch_size": 32, **over.pop("budget", {})}
    return load_spec(tiny_spec(tmp_path, budget=budget, **over))


class _PruneAt(optuna.pruners.BasePruner):
    """Prunes a trial once it has reported `step` (a deterministic pruner)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        return trial.last_step is not None and trial.last_step >= self.step


def test_pruner_verdict_stops_training(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    study = optuna.create_study(pruner=_PruneAt(1))
    trial = study.ask()
    out = run_tuning_trial(spec, spec.arms[0], trial, device="cpu", seed=0)
    assert out.outcome == "pruned" and math.isnan(out.value) and out.attrs["pruned"] is True
    frozen = study._storage.get_trial(trial._trial_id)
    assert sorted(frozen.intermediate_values) == [0, 1]  # reported epochs 0 and 1, then stopped: no epoch 2


def test_no_pruning_runs_every_epoch(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    study = optuna.create_study(pruner=optuna.pruners.NopPruner())
    trial = study.ask()
    out = run_tuning_trial(spec, spec.arms[0], trial, device="cpu", seed=0)
    assert out.outcome == "complete" and out.attrs["epochs_run"] == 3
    assert out.value == min(out.attrs["val_losses"])
    assert sorted(study._storage.get_trial(trial._trial_id).intermediate_values) == [0, 1, 2]


def test_the_spec_median_pruner_prunes_a_worse_trial(tmp_path: Path) -> None:
    """The pruner the spec configures, on a study whose earlier trial was far better at every epoch."""
    spec = _spec(tmp_path, pruner={"kind": "median", "n_startup_trials": 1, "n_warmup_steps": 0})
    study = optuna.create_study(pruner=make_pruner(spec))
    dists = distributions(spec.search_space)
    study.add_trial(optuna.trial.create_trial(
        params={"lr": 0.01, "init": "default", "dropout": 0.1}, distributions=dists, value=1e-6,
        intermediate_values={0: 1e-6, 1: 1e-6, 2: 1e-6}))
    trial = study.ask()
    out = run_tuning_trial(spec, spec.arms[0], trial, device="cpu", seed=0)
    assert out.outcome == "pruned"
    assert sorted(study._storage.get_trial(trial._trial_id).intermediate_values) == [0]


def test_diverged_trial_is_an_outcome_scored_inf(tmp_path: Path) -> None:
    spec = _spec(tmp_path, task={"name": "tests.nan_task:make_task"})
    study = optuna.create_study()
    out = run_tuning_trial(spec, spec.arms[0], study.ask(), device="cpu", seed=0)
    assert out.outcome == "diverged" and out.value == math.inf and out.attrs["diverged"] is True
    fixed = run_fixed(spec, spec.arms[0], {"lr": 0.01}, 3, device="cpu")
    assert fixed.outcome == "diverged" and fixed.value == math.inf
    assert fixed.attrs["test_loss"] is None and fixed.attrs["seed"] == 3


def test_fixed_run_records_seed_and_test_loss(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    out = run_fixed(spec, spec.arms[1], {"lr": 0.01, "init": "orthogonal", "dropout": 0.0}, 7, device="cpu")
    assert out.outcome == "complete" and out.attrs["seed"] == 7
    assert math.isfinite(out.attrs["test_loss"]) and out.value == min(out.attrs["val_losses"])
    again = run_fixed(spec, spec.arms[1], {"lr": 0.01, "init": "orthogonal", "dropout": 0.0}, 7, device="cpu")
    assert again.value == out.value  # same seed on CPU: the same run


def test_provenance_names_the_spec_and_machine(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    prov = objective.provenance(spec, "cpu")
    assert prov["spec_hash"] == spec.hash and prov["device"] == "cpu" and prov["torch_threads"] == 1
    assert {"bench_version", "host", "torch_version", "python"} <= set(prov)


def test_pruned_state_reaches_optuna_through_the_worker(tmp_path: Path, sqlite_url: str) -> None:
    """End to end on one worker: a spec pruner that prunes is honoured, and the slot counts the pruned trial."""
    from bench.service.run import attach, init_experiment
    from bench.service.worker import WorkerLoop, WorkerOptions
    from bench.store.ledger import Ledger
    from bench.store.storage import make_engine, optuna_storage
    from bench.tuning.studies import spec_study_name

    spec = _spec(tmp_path, depths=[1], budget={"trials": 3},
                 pruner={"kind": "median", "n_startup_trials": 1, "n_warmup_steps": 0})
    init_experiment(spec, sqlite_url)
    storage = optuna_storage(sqlite_url)
    study = optuna.load_study(study_name=spec_study_name(spec, spec.arms[0]), storage=storage)
    # A finished trial far better at every epoch than anything the tiny model reaches: every later trial is pruned.
    study.add_trial(optuna.trial.create_trial(
        params={"lr": 0.01, "init": "default", "dropout": 0.1}, distributions=distributions(spec.search_space),
        value=1e-6, intermediate_values={0: 1e-6, 1: 1e-6, 2: 1e-6}))
    loop = WorkerLoop(spec, sqlite_url, attach(spec, sqlite_url), WorkerOptions(lease_seconds=30, poll_seconds=0.1))
    assert loop.run().finished == {"pruned": 3}
    pruned = [t for t in study.get_trials() if t.state == TrialState.PRUNED]
    assert len(pruned) == 3 and all(sorted(t.intermediate_values) == [0] for t in pruned)
    engine = make_engine(sqlite_url)
    led = Ledger(engine, Ledger.find_experiment(engine, spec.name)[0])  # type: ignore[index]
    assert [s["outcome"] for s in led.slots("tune")] == ["pruned"] * 3
    engine.dispose()
    storage.dispose()


# ---------------------------------------------------------------- what each outcome records, value by value
# With a user trainer whose scores are known in advance (tests.bad_trainers): `good` reports lr + 1/k + 0.2, + 0.1,
# + 0.0 over its three steps and returns lr + 1/k, with test score + 0.01, 10 * k parameters and one extra.


def _user_spec(fit: str) -> Spec:
    from bench.spec import parse_spec
    from tests.test_trainer import user_spec

    return parse_spec(user_spec(f"tests.bad_trainers:{fit}"))


def _timed(run: Any) -> tuple[objective.Outcome, float]:
    """The outcome and the wall time around the call (an upper bound for the seconds it records)."""
    import time

    start = time.perf_counter()
    out = run()
    return out, time.perf_counter() - start


def _fixed_trial(params: dict[str, Any], pruner: optuna.pruners.BasePruner | None = None) -> optuna.Trial:
    study = optuna.create_study(pruner=pruner or optuna.pruners.NopPruner())
    study.enqueue_trial(params)
    return study.ask({"lr": optuna.distributions.FloatDistribution(0.01, 0.5, log=True)})


def test_a_complete_tuning_trial_records_exactly_its_measurements() -> None:
    spec = _user_spec("good")
    out, wall = _timed(lambda: run_tuning_trial(spec, spec.arms[1], _fixed_trial({"lr": 0.25}), device="cpu",
                                                seed=0))
    assert out.outcome == "complete" and out.value == 0.5  # 0.25 + 1/4
    assert 0 <= out.seconds <= wall
    assert out.attrs == {"seconds": round(out.seconds, 4), "n_params": 40, "note": "k=4", "epochs_run": 3,
                         "diverged": False, "val_losses": [0.7, 0.6, 0.5]}


def test_a_pruned_tuning_trial_records_its_time_and_the_prune_only() -> None:
    spec = _user_spec("good")
    trial = _fixed_trial({"lr": 0.25}, _PruneAt(1))
    out, wall = _timed(lambda: run_tuning_trial(spec, spec.arms[0], trial, device="cpu", seed=0))
    assert out.outcome == "pruned" and math.isnan(out.value) and 0 <= out.seconds <= wall
    assert out.attrs == {"seconds": round(out.seconds, 4), "pruned": True}
    assert trial.study._storage.get_trial(trial._trial_id).intermediate_values == {0: 1.45, 1: 1.35}


def test_a_trainer_that_swallows_the_prune_is_pruned_all_the_same() -> None:
    """`swallows` catches Pruned at every step and returns 1.0: the reporter saw the verdict, so it is pruned."""
    spec = _user_spec("swallows")
    out = run_tuning_trial(spec, spec.arms[0], _fixed_trial({"lr": 0.25}, _PruneAt(0)), device="cpu", seed=0)
    assert out.outcome == "pruned" and out.attrs == {"seconds": round(out.seconds, 4), "pruned": True}
    # Without a pruner the same trainer completes with its own value.
    out = run_tuning_trial(spec, spec.arms[0], _fixed_trial({"lr": 0.25}), device="cpu", seed=0)
    assert (out.outcome, out.value, out.attrs["val_losses"]) == ("complete", 1.0, [0.25, 1.25, 2.25])


def test_a_diverged_tuning_trial_records_why_and_scores_the_worst_of_its_direction() -> None:
    spec = _user_spec("nan")
    out, wall = _timed(lambda: run_tuning_trial(spec, spec.arms[0], _fixed_trial({"lr": 0.25}), device="cpu",
                                                seed=0))
    assert out.outcome == "diverged" and out.value == math.inf and 0 <= out.seconds <= wall
    assert out.attrs == {"seconds": round(out.seconds, 4), "n_params": None, "epochs_run": 0, "diverged": True,
                         "val_losses": [], "diverged_reason": "trainer returned a non-finite or non-numeric score nan"}


def test_fixed_runs_record_seed_and_test_score_and_an_unasked_prune_is_a_divergence() -> None:
    spec = _user_spec("good")
    out, wall = _timed(lambda: run_fixed(spec, spec.arms[0], {"lr": 0.25}, 7, device="cpu"))
    assert out.outcome == "complete" and out.value == 1.25 and 0 <= out.seconds <= wall
    assert out.attrs == {"seconds": round(out.seconds, 4), "n_params": 10, "note": "k=1", "epochs_run": 3,
                         "diverged": False, "val_losses": [1.45, 1.35, 1.25], "seed": 7, "test_loss": 1.26}
    spec = _user_spec("stops_as_pruned")
    out, wall = _timed(lambda: run_fixed(spec, spec.arms[0], {"lr": 0.25}, 3, device="cpu"))
    assert out.outcome == "diverged" and out.value == math.inf and 0 <= out.seconds <= wall
    assert out.attrs == {"seconds": round(out.seconds, 4), "n_params": None, "epochs_run": 1, "diverged": True,
                         "val_losses": [0.5], "seed": 3, "test_loss": None, "diverged_reason": objective.PRUNED_FIXED}


def test_recorded_seconds_are_rounded_to_four_places_and_the_outcome_keeps_them_whole() -> None:
    """A stubbed run is too quick to tell 4 places from none (both round to 0), so _outcome on a stated time."""
    from bench.trainer import Checked, Reporter

    reporter = Reporter()
    reporter(0, 0.75)
    out = objective._outcome(_user_spec("good"), Checked(0.75, None, 7, {}), 1.23456789, reporter, {})
    assert out.seconds == 1.23456789 and out.attrs["seconds"] == 1.2346
    assert out.attrs == {"seconds": 1.2346, "n_params": 7, "epochs_run": 1, "diverged": False, "val_losses": [0.75]}
