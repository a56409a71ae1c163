"""Where training meets tuning: suggest → trainer.fit → report and prune; also the fixed-config (eval/baseline) runs.

Every trainer, bench's own LSTM/GRU included, is called through the contract of bench.trainer."""

from __future__ import annotations

import math
import platform
import socket
import time
from dataclasses import dataclass, field
from typing import Any

import optuna
import torch

import bench
from bench.spec import Arm, Spec
from bench.trainer import Checked, Pruned, Reporter, check_result, make_trainer
from bench.tuning.search_space import suggest


@dataclass(frozen=True)
class Outcome:
    outcome: str  # complete | pruned | diverged
    value: float  # objective: the trainer's validation score; infinitely bad when diverged (+inf minimizing)
    seconds: float
    attrs: dict[str, Any] = field(default_factory=dict)  # provenance and measurements, stored on the trial


def provenance(spec: Spec, device: str) -> dict[str, Any]:
    """What every trial records about where and how it ran (asv-style results with provenance)."""
    return {"spec_hash": spec.hash, "bench_version": bench.__version__, "host": socket.gethostname(),
            "device": device, "torch_threads": torch.get_num_threads(), "torch_version": torch.__version__,
            "python": platform.python_version()}


def _fit(spec: Spec, arm: Arm, params: dict[str, Any], seed: int, device: str, reporter: Reporter
         ) -> tuple[Checked | None, float]:
    """Call the spec's trainer (the one path for every trainer): its checked result and the seconds it took; None
    for a pruned run (it raised Pruned, or swallowed the pruner's verdict: the reporter saw it)."""
    trainer = make_trainer(spec, device)
    reporter.device = device
    start = time.perf_counter()
    try:
        out = trainer({**dict(spec.fixed), **params}, dict(arm.values), seed, reporter)
    except Pruned:
        return None, time.perf_counter() - start
    seconds = time.perf_counter() - start
    return (None if reporter.pruned else check_result(out, reporter.wants_test)), seconds


def _outcome(spec: Spec, checked: Checked, seconds: float, reporter: Reporter, extra: dict[str, Any]) -> Outcome:
    """What a finished run records: diverged runs score the worst value of the metric's direction (+inf when
    minimising, -inf when maximizing), with the reason; the trainer's extras are stored flat beside bench's own
    attributes."""
    finite = [v for v in reporter.values if v is not None]
    attrs: dict[str, Any] = {"seconds": round(seconds, 4), "n_params": checked.n_params, **checked.extras,
                             "epochs_run": len(finite), "diverged": checked.diverged_reason is not None,
                             "val_losses": finite, **extra}
    if checked.diverged_reason is not None:
        attrs["diverged_reason"] = checked.diverged_reason
        return Outcome("diverged", spec.sign * math.inf, seconds, attrs)
    return Outcome("complete", checked.value, seconds, attrs)


def run_tuning_trial(spec: Spec, arm: Arm, trial: optuna.Trial, *, device: str, seed: int) -> Outcome:
    """Sample the nuisance hyperparameters, train, report each step's validation score and honour the pruner."""
    sampled = suggest(trial, spec.search_space)

    def on_step(step: int, value: float) -> None:
        trial.report(value, step)
        if trial.should_prune():
            raise Pruned

    reporter = Reporter(on_step)
    checked, seconds = _fit(spec, arm, sampled, seed, device, reporter)
    if checked is None:
        return Outcome("pruned", math.nan, seconds, {"seconds": round(seconds, 4), "pruned": True})
    return _outcome(spec, checked, seconds, reporter, {})


PRUNED_FIXED = "trainer raised Pruned in a fixed-config run, which nothing prunes"


def run_fixed(spec: Spec, arm: Arm, params: dict[str, Any], seed: int, *, device: str) -> Outcome:
    """Train one fixed config from scratch with one seed, scoring validation and the held-out test split."""
    reporter = Reporter(wants_test=True)
    checked, seconds = _fit(spec, arm, params, seed, device, reporter)
    if checked is None:  # nothing prunes a fixed run: a trainer that stops as pruned unasked did not finish it
        checked = Checked(math.inf, None, None, {}, PRUNED_FIXED)
    return _outcome(spec, checked, seconds, reporter, {"seed": seed, "test_loss": checked.test})
