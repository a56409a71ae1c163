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
         ) -> tuple[Outcome | None, Checked, float]:
    """Call the spec's trainer (the one path for every trainer); a pruned run comes back as its Outcome."""
    trainer = make_trainer(spec, device)
    reporter.device = device
    start = time.perf_counter()
    try:
        out = trainer({**dict(spec.fixed), **params}, dict(arm.values), seed, reporter)
    except Pruned:
        out = None
    seconds = time.perf_counter() - start
    if out is None or reporter.pruned:  # a trainer that swallowed the signal is still pruned
        return Outcome("pruned", math.nan, seconds, {"seconds": round(seconds, 4), "pruned": True}), \
            check_result(math.nan, False), seconds
    return None, check_result(out, reporter.wants_test), seconds


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
    pruned, checked, seconds = _fit(spec, arm, sampled, seed, device, reporter)
    return pruned or _outcome(spec, checked, seconds, reporter, {})


def run_fixed(spec: Spec, arm: Arm, params: dict[str, Any], seed: int, *, device: str) -> Outcome:
    """Train one fixed config from scratch with one seed, scoring validation and the held-out test split."""
    reporter = Reporter(wants_test=True)
    pruned, checked, seconds = _fit(spec, arm, params, seed, device, reporter)
    if pruned is not None:  # nothing prunes a fixed run; a trainer raising Pruned unasked has diverged
        checked = check_result(math.nan, True)
    return _outcome(spec, checked, seconds, reporter, {"seed": seed, "test_loss": checked.test})
