"""Train one model for a fixed number of epochs and report validation loss per epoch (no Optuna here)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bench.spec import Arm, Hparams, ModelSpec, Spec
from bench.tasks.base import IGNORE_INDEX, Split, Task
from bench.tasks.registry import load_task
from bench.trainer import Report, Result
from bench.trainers.models import build_model, count_params, hidden_size, init_recurrent


@dataclass(frozen=True)
class TrainResult:
    val_losses: list[float]  # validation loss after each completed epoch (finite values only)
    best_val_loss: float  # the objective: min over val_losses; inf if it diverged before any finite epoch
    epochs_run: int  # completed epochs = len(val_losses); a diverged epoch is not counted (seconds still is)
    diverged: bool  # a non-finite training or validation loss stopped training early
    seconds: float  # wall-clock time of the whole call, data transfer included
    n_params: int
    hidden: int
    test_loss: float | None  # evaluate_test only: test loss of the best-epoch weights (inf if none finite)
    device: str
    threads: int  # torch intra-op threads: CPU timings are only comparable at equal thread counts


def resolve_device(name: str) -> str:
    """"auto" → "cuda" if available, else "cpu"; an unavailable accelerator is a ValueError, not a CPU run."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        kind = torch.device(name).type
    except RuntimeError:
        raise ValueError(f"device: {name!r} is not a torch device (use auto, cpu, cuda or cuda:N)") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {name!r} requested but CUDA is not available to this torch "
                         f"({torch.__version__}); use device = \"cpu\" or \"auto\"")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device: {name!r} requested but MPS is not available")
    return name


class BuiltinTrainer:
    """bench's stacked LSTM/GRU behind the trainer contract (bench.trainer): [task], [model] and [budget] of the
    spec, the arm's scientific values put into [model], params = Hparams fields."""

    def __init__(self, spec: Spec, device: str) -> None:
        self.spec, self.device = spec, device

    def __call__(self, params: dict[str, Any], arm: dict[str, Any], seed: int, report: Report) -> Result:
        spec, b = self.spec, self.spec.budget
        assert spec.task is not None
        model = spec.model_for(Arm(tuple(arm.items())))
        r = train(load_task(spec.task), model, model.depth, Hparams(**params), epochs=b.epochs,
                  batch_size=b.batch_size, seed=seed, clip_norm=b.clip_norm, device=self.device, on_epoch=report,
                  evaluate_test=report.wants_test)
        return Result(value=r.best_val_loss, test=r.test_loss, n_params=r.n_params, diverged=r.diverged,
                      extras={"hidden": r.hidden})


def train(task: Task, model_spec: ModelSpec, depth: int, hp: Hparams, *, epochs: int, batch_size: int,
          seed: int, clip_norm: float = 1.0, device: str = "cpu",
          on_epoch: Callable[[int, float], None] | None = None, evaluate_test: bool = False) -> TrainResult:
    """AdamW + gradient clipping for `epochs` passes over train; validation after each one.

    on_epoch(epoch_index, val_loss) runs after each finite validation (epoch_index from 0); whatever it raises
    (e.g. a pruning signal) propagates unchanged. Same seed on CPU → identical results.
    """
    start = time.perf_counter()
    device = resolve_device(device)
    torch.manual_seed(seed)  # weights and dropout masks
    hidden = hidden_size(task, model_spec, depth)
    model = build_model(task, model_spec, depth, hp.dropout, hidden)
    init_recurrent(model, hp.init, hp.init_gain)
    model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
    train_split, val_split = _to(task.train, device), _to(task.val, device)
    order = torch.Generator().manual_seed(seed)  # data order, independent of how many random draws init made

    val_losses: list[float] = []
    best_state: dict[str, torch.Tensor] | None = None
    diverged = False
    for epoch in range(epochs):
        diverged = not _train_epoch(model, optimizer, train_split, batch_size, order, clip_norm)
        val = math.nan if diverged else evaluate(model, val_split, batch_size, device)
        if not math.isfinite(val):
            diverged = True
            break
        if evaluate_test and (not val_losses or val < min(val_losses)):
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        val_losses.append(val)
        if on_epoch is not None:
            on_epoch(epoch, val)

    test_loss: float | None = None
    if evaluate_test:
        test_loss = math.inf
        if best_state is not None:
            model.load_state_dict(best_state)
            test_loss = evaluate(model, _to(task.test, device), batch_size, device)
    return TrainResult(
        val_losses=val_losses,
        best_val_loss=min(val_losses, default=math.inf),
        epochs_run=len(val_losses),
        diverged=diverged,
        seconds=time.perf_counter() - start,
        n_params=count_params(model),
        hidden=hidden,
        test_loss=test_loss,
        device=device,
        threads=torch.get_num_threads(),
    )


def _train_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, split: Split, batch_size: int,
                 order: torch.Generator, clip_norm: float) -> bool:
    """One shuffled pass over `split`; False as soon as a loss or gradient norm is non-finite (no step)."""
    model.train()
    for x, y, lengths in _batches(split, batch_size, order):
        loss_sum, count = _loss_sum(model(x, lengths), y)
        loss = loss_sum / count.clamp(min=1)  # a batch with nothing scored gives no gradient rather than NaN
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
        # One sync per step; stop before NaN reaches the weights. Each tested alone: a sum of two finite values
        # can overflow float32 and would read as divergence.
        if not bool(torch.isfinite(loss.detach()) & torch.isfinite(norm)):
            return False
        optimizer.step()
    return True


@torch.no_grad()
def evaluate(model: nn.Module, split: Split, batch_size: int, device: str) -> float:
    """Mean cross-entropy (nats) over every scored position of `split` (IGNORE_INDEX skipped)."""
    was_training = model.training
    model.eval()
    split = _to(split, device)
    total = torch.zeros((), dtype=torch.float64, device=device)
    count = torch.zeros((), dtype=torch.long, device=device)
    for x, y, lengths in _batches(split, batch_size, None):
        loss_sum, n = _loss_sum(model(x, lengths), y)
        total += loss_sum.double()
        count += n
    model.train(was_training)
    return float(total) / int(count) if int(count) else math.nan


def _loss_sum(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed cross-entropy and the number of scored targets, both left on the device (no sync per batch).

    Sums rather than means so that evaluation weights every scored token alike whatever the batch boundaries.
    """
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), ignore_index=IGNORE_INDEX,
                           reduction="sum")
    return loss, (y != IGNORE_INDEX).sum()


def _batches(split: Split, batch_size: int, order: torch.Generator | None
             ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]:
    """Minibatches in a fresh random order (order given) or in split order (order None)."""
    n = len(split)
    idx = torch.randperm(n, generator=order) if order is not None else torch.arange(n)
    idx = idx.to(split.x.device)
    for i in range(0, n, batch_size):
        b = idx[i : i + batch_size]
        yield split.x[b], split.y[b], None if split.lengths is None else split.lengths[b]


def _to(split: Split, device: str) -> Split:
    """The split on `device` (no copy if already there); moved once per call to train, not per batch."""
    lengths = None if split.lengths is None else split.lengths.to(device)
    return Split(split.x.to(device), split.y.to(device), lengths)
