"""Where training meets tuning: suggest → train → report and prune; also the fixed-config (eval/baseline) runs."""

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
from bench.search_space import suggest
from bench.spec import Spec
from bench.tasks.registry import load_task
from bench.training import TrainResult, train


@dataclass(frozen=True)
class Outcome:
    outcome: str  # complete | pruned | diverged
    value: float  # objective: best validation loss; +inf when diverged
    seconds: float
    attrs: dict[str, Any] = field(default_factory=dict)  # provenance and measurements, stored on the trial


class _Pruned(Exception):
    """Raised from the epoch callback to stop training; carries nothing but the decision."""


def provenance(spec: Spec, device: str) -> dict[str, Any]:
    """What every trial records about where and how it ran (asv-style results with provenance)."""
    return {"spec_hash": spec.hash, "bench_version": bench.__version__, "host": socket.gethostname(),
            "device": device, "torch_threads": torch.get_num_threads(), "torch_version": torch.__version__,
            "python": platform.python_version()}


def _attrs(result: TrainResult) -> dict[str, Any]:
    return {"seconds": round(result.seconds, 4), "n_params": result.n_params, "hidden": result.hidden,
            "epochs_run": result.epochs_run, "diverged": result.diverged,
            "val_losses": [v if math.isfinite(v) else None for v in result.val_losses]}


def run_tuning_trial(spec: Spec, depth: int, trial: optuna.Trial, *, device: str, seed: int) -> Outcome:
    """Sample the nuisance hyperparameters, train, report each epoch's validation loss and honour the pruner."""
    sampled = suggest(trial, spec.search_space)
    task = load_task(spec.task)

    def on_epoch(epoch: int, val_loss: float) -> None:
        trial.report(val_loss, epoch)
        if trial.should_prune():
            raise _Pruned

    start = time.perf_counter()
    try:
        result = train(task, spec.model, depth, spec.hparams(sampled), epochs=spec.budget.epochs,
                       batch_size=spec.budget.batch_size, seed=seed, clip_norm=spec.budget.clip_norm,
                       device=device, on_epoch=on_epoch)
    except _Pruned:
        seconds = time.perf_counter() - start
        return Outcome("pruned", math.nan, seconds, {"seconds": round(seconds, 4), "pruned": True})
    if result.diverged:
        return Outcome("diverged", math.inf, result.seconds, _attrs(result))
    return Outcome("complete", result.best_val_loss, result.seconds, _attrs(result))


def run_fixed(spec: Spec, depth: int, params: dict[str, Any], seed: int, *, device: str) -> Outcome:
    """Train one fixed config from scratch with one seed, scoring validation and the held-out test split."""
    task = load_task(spec.task)
    result = train(task, spec.model, depth, spec.hparams(params), epochs=spec.budget.epochs,
                   batch_size=spec.budget.batch_size, seed=seed, clip_norm=spec.budget.clip_norm, device=device,
                   evaluate_test=True)
    attrs = _attrs(result)
    attrs["seed"] = seed
    test = result.test_loss
    attrs["test_loss"] = test if test is not None and math.isfinite(test) and not result.diverged else None
    if result.diverged:
        return Outcome("diverged", math.inf, result.seconds, attrs)
    return Outcome("complete", result.best_val_loss, result.seconds, attrs)
