"""Tests for bench.trainers.training: learning, determinism, divergence, callbacks and the no-optuna layer rule."""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bench.spec import Hparams, ModelSpec
from bench.tasks import charlm, seq2seq
from bench.tasks.base import IGNORE_INDEX, Split, Task
from bench.trainers import training
from bench.trainers.models import build_model, count_params
from bench.trainers.training import evaluate, resolve_device, train

TINY = seq2seq.make_task(0, n_train=128, n_val=32, n_test=32)
SMALL_MODEL = ModelSpec(hidden=16, embedding=8)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _features_task(poison: str = "") -> Task:
    """A tiny "last"-target task with variable lengths; poison = "train" | "val" puts a NaN in that split."""
    g = torch.Generator().manual_seed(0)

    def split(name: str) -> Split:
        x = torch.randn(40, 6, 2, generator=g)
        if name == poison:
            x[3, 0, 0] = math.nan
        return Split(x, (x[:, 0, 0] > 0).long(), torch.randint(1, 7, (40,), generator=g))

    return Task("feat", "features", 2, 2, "last", split("train"), split("val"), split("test"), math.log(2))


def _run(**kwargs: object) -> training.TrainResult:
    args: dict[str, object] = {"epochs": 2, "batch_size": 32, "seed": 0, **kwargs}
    return train(TINY, SMALL_MODEL, 1, Hparams(lr=1e-2), **args)  # type: ignore[arg-type]


# ---------------------------------------------------------------- learning


def test_seq2seq_learns_well_below_trivial_loss() -> None:
    task = seq2seq.make_task(0)  # the defaults: reverse, vocab 8, length 6, 2000 training sequences
    result = train(task, ModelSpec(hidden=64), 1, Hparams(lr=1e-2), epochs=6, batch_size=64, seed=0)
    # Measured: 2.08 (trivial) → about 0.2 after 6 epochs.
    assert result.best_val_loss < 0.5 * task.trivial_loss
    assert not result.diverged and result.epochs_run == 6 and len(result.val_losses) == 6


def test_charlm_beats_unigram_loss() -> None:
    task = charlm.make_task(0, max_chars=30_000)
    result = train(task, ModelSpec(hidden=64), 1, Hparams(lr=1e-2), epochs=2, batch_size=32, seed=0)
    assert result.best_val_loss < task.trivial_loss - 0.2  # measured: 3.28 → 2.88


def test_gru_and_variable_length_last_target_train() -> None:
    result = train(_features_task(), ModelSpec(cell="gru", hidden=8, embedding=4), 2, Hparams(lr=1e-2),
                   epochs=2, batch_size=16, seed=0)
    assert result.epochs_run == 2 and all(math.isfinite(v) for v in result.val_losses)


def test_result_provenance() -> None:
    result = _run(evaluate_test=True)
    assert result.device == "cpu" and result.threads == 1 and result.hidden == 16 and result.seconds > 0
    assert result.best_val_loss == min(result.val_losses)
    assert result.test_loss is not None and math.isfinite(result.test_loss)
    assert result.n_params == count_params(build_model(TINY, SMALL_MODEL, 1, dropout=0.0))
    assert _run().test_loss is None


def test_same_seed_same_losses_other_seed_other_losses() -> None:
    hp = Hparams(lr=1e-2, dropout=0.3, init="orthogonal")
    a, b, c = (train(TINY, SMALL_MODEL, 2, hp, epochs=2, batch_size=32, seed=s) for s in (5, 5, 6))
    assert a.val_losses == b.val_losses
    assert a.val_losses != c.val_losses


# ---------------------------------------------------------------- divergence and callbacks


def test_huge_learning_rate_diverges_cleanly() -> None:
    seen: list[float] = []
    result = train(TINY, SMALL_MODEL, 1, Hparams(lr=1e37), epochs=3, batch_size=32, seed=0, clip_norm=1e12,
                   on_epoch=lambda _, v: seen.append(v), evaluate_test=True)
    assert result.diverged and result.best_val_loss == math.inf and result.test_loss == math.inf
    assert all(math.isfinite(v) for v in seen + result.val_losses)


@pytest.mark.parametrize("poison", ["train", "val"])
def test_nan_data_diverges_without_reporting_nan(poison: str) -> None:
    seen: list[float] = []
    result = train(_features_task(poison), SMALL_MODEL, 1, Hparams(), epochs=3, batch_size=16, seed=0,
                   on_epoch=lambda _, v: seen.append(v))
    assert result.diverged and result.val_losses == [] and seen == [] and result.epochs_run == 0
    assert result.best_val_loss == math.inf


def test_divergence_after_finite_epochs_keeps_the_best(monkeypatch: pytest.MonkeyPatch) -> None:
    real = training.evaluate
    calls: list[int] = []

    def nan_on_third(*args: object, **kwargs: object) -> float:
        calls.append(1)
        return math.nan if len(calls) == 3 else real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(training, "evaluate", nan_on_third)
    seen: list[tuple[int, float]] = []
    result = _run(epochs=5, on_epoch=lambda e, v: seen.append((e, v)))
    assert result.diverged and result.epochs_run == 2 and [e for e, _ in seen] == [0, 1]
    assert result.best_val_loss == min(result.val_losses) == min(v for _, v in seen)


def test_on_epoch_exception_propagates_unchanged() -> None:
    class Pruned(Exception):
        pass

    epochs: list[int] = []

    def prune_at_second(epoch: int, _: float) -> None:
        epochs.append(epoch)
        if epoch == 1:
            raise Pruned

    with pytest.raises(Pruned):
        _run(epochs=4, on_epoch=prune_at_second)
    assert epochs == [0, 1]


# ---------------------------------------------------------------- evaluate and devices


class _FixedLogits(nn.Module):
    """Logits that depend on the token, so a wrongly weighted mean would give another number."""

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return torch.stack([x.float(), -x.float(), torch.zeros_like(x, dtype=torch.float)], dim=-1)


def test_evaluate_is_the_mean_over_scored_positions() -> None:
    x = torch.tensor([[0, 1, 2], [2, 2, 0], [1, 0, 1], [0, 0, 2], [2, 1, 1]])
    y = torch.tensor([[0, IGNORE_INDEX, 2], [1, IGNORE_INDEX, IGNORE_INDEX], [2, 2, 0], [1, 1, 1], [0, 0, 0]])
    model = _FixedLogits()
    want = F.cross_entropy(model(x).reshape(-1, 3), y.reshape(-1), ignore_index=IGNORE_INDEX).item()
    for batch_size in (1, 2, 5):  # batch boundaries must not change the weighting
        assert evaluate(model, Split(x, y), batch_size, "cpu") == pytest.approx(want, rel=1e-6)


def test_resolve_device() -> None:
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="not a torch device"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


# ---------------------------------------------------------------- layer rule


def test_science_layer_does_not_import_optuna() -> None:
    code = ("import sys, bench.trainers.training, bench.trainers.models, bench.tasks.base, bench.tasks.seq2seq, "
            "bench.tasks.charlm, bench.tasks.registry; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'optuna'); assert not bad, bad")
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


# ---------------------------------------------------------------- invariants the loss values alone do not show


def _first_batches(monkeypatch: pytest.MonkeyPatch, seed: int) -> list[torch.Tensor]:
    """The targets of every shuffled training batch of a 2-epoch run with this seed."""
    seen: list[torch.Tensor] = []
    real = training._batches

    def spy(split: Split, batch_size: int, order: torch.Generator | None) -> Iterator[tuple[torch.Tensor, ...]]:
        for batch in real(split, batch_size, order):
            if order is not None:
                seen.append(batch[1].clone())
            yield batch

    monkeypatch.setattr(training, "_batches", spy)
    _run(seed=seed)
    monkeypatch.setattr(training, "_batches", real)
    return seen


def test_data_order_follows_the_seed(monkeypatch: pytest.MonkeyPatch) -> None:
    a, b, c = (_first_batches(monkeypatch, s) for s in (5, 5, 6))
    assert len(a) == 8  # 128 / 32 batches x 2 epochs
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not torch.equal(a[0], c[0])  # another seed, another order
    assert not torch.equal(a[0], a[4])  # a fresh order every epoch


def test_data_order_is_independent_of_the_init(monkeypatch: pytest.MonkeyPatch) -> None:
    """The order generator is seeded by the trial seed alone, not by how many draws the weights took."""
    seen: list[torch.Tensor] = []
    real = training._batches

    def spy(split: Split, batch_size: int, order: torch.Generator | None) -> Iterator[tuple[torch.Tensor, ...]]:
        if order is not None and not seen:
            copy = torch.Generator()
            copy.set_state(order.get_state())
            seen.append(torch.randperm(len(split), generator=copy))
        yield from real(split, batch_size, order)

    monkeypatch.setattr(training, "_batches", spy)
    train(TINY, SMALL_MODEL, 1, Hparams(lr=1e-2), epochs=1, batch_size=32, seed=11)
    train(TINY, ModelSpec(hidden=32, embedding=8), 3, Hparams(lr=1e-2), epochs=1, batch_size=32, seed=11)
    want = torch.randperm(len(TINY.train), generator=torch.Generator().manual_seed(11))
    assert len(seen) == 1 and torch.equal(seen[0], want)


def test_infinite_gradient_norm_stops_before_the_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """A finite loss with an infinite gradient norm is divergence: no optimizer step, the epoch reports failure."""
    model = build_model(TINY, SMALL_MODEL, 1, dropout=0.0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda *a, **k: torch.tensor(math.inf))
    assert not training._train_epoch(model, optimizer, TINY.train, 32, torch.Generator().manual_seed(0), 1.0)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda *a, **k: torch.tensor(math.nan))
    assert not training._train_epoch(model, optimizer, TINY.train, 32, torch.Generator().manual_seed(0), 1.0)
    monkeypatch.undo()
    assert training._train_epoch(model, optimizer, TINY.train, 32, torch.Generator().manual_seed(0), 1.0)


def test_infinite_gradient_norm_diverges_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    real = torch.nn.utils.clip_grad_norm_
    calls: list[int] = []

    def inf_on_sixth(*args: object, **kwargs: object) -> torch.Tensor:
        calls.append(1)
        norm = real(*args, **kwargs)  # type: ignore[arg-type]
        return torch.tensor(math.inf) if len(calls) == 6 else norm  # 4 steps per epoch: in the second epoch

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", inf_on_sixth)
    result = _run(epochs=3)
    assert result.diverged and result.epochs_run == 1 and len(calls) == 6
    assert result.best_val_loss == result.val_losses[0] and math.isfinite(result.best_val_loss)


@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan])
def test_non_finite_validation_loss_diverges(monkeypatch: pytest.MonkeyPatch, bad: float) -> None:
    real = training.evaluate
    calls: list[int] = []

    def bad_on_second(*args: object, **kwargs: object) -> float:
        calls.append(1)
        return bad if len(calls) == 2 else real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(training, "evaluate", bad_on_second)
    seen: list[float] = []
    result = _run(epochs=4, on_epoch=lambda _, v: seen.append(v))
    assert result.diverged and result.epochs_run == 1 and len(calls) == 2  # stops at once, no third epoch
    assert len(seen) == 1 and math.isfinite(seen[0]) and result.val_losses == seen
    assert result.best_val_loss == seen[0]
