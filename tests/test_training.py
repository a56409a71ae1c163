"""Tests for bench.trainers.training: learning, determinism, divergence, callbacks and the no-optuna layer rule."""

from __future__ import annotations

import math
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bench.spec import Arm, Hparams, ModelSpec, parse_spec
from bench.tasks import charlm, seq2seq
from bench.tasks.base import IGNORE_INDEX, Split, Task
from bench.trainer import Reporter, Result
from bench.trainers import training
from bench.trainers.models import build_model, count_params, hidden_size
from bench.trainers.training import BuiltinTrainer, evaluate, resolve_device, train
from tests.conftest import TINY as TINY_SPEC

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
    # 4 positions, 3 classes: a reshape by the wrong axis cannot line up
    x = torch.tensor([[0, 1, 2, 1], [2, 2, 0, 0], [1, 0, 1, 2], [0, 0, 2, 2], [2, 1, 1, 0]])
    y = torch.tensor([[0, IGNORE_INDEX, 2, 1], [1, IGNORE_INDEX, IGNORE_INDEX, 0], [2, 2, 0, IGNORE_INDEX],
                      [1, 1, 1, 2], [0, 0, 0, IGNORE_INDEX]])
    model = _FixedLogits()
    want = F.cross_entropy(model(x).reshape(-1, 3), y.reshape(-1), ignore_index=IGNORE_INDEX).item()
    for batch_size in (1, 2, 5):  # batch boundaries must not change the weighting
        assert evaluate(model, Split(x, y), batch_size, "cpu") == pytest.approx(want, rel=1e-6)


def test_resolve_device_on_this_machine() -> None:
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")


def test_resolve_device_follows_what_torch_can_use(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both answers of torch's availability checks, faked, so a CPU machine tests the accelerator paths too."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    names = ("auto", "cuda", "cuda:1", "mps", "cpu")
    assert [resolve_device(n) for n in names] == ["cuda", "cuda", "cuda:1", "mps", "cpu"]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert (resolve_device("auto"), resolve_device("cpu")) == ("cpu", "cpu")
    cuda = (f"device: 'cuda:1' requested but CUDA is not available to this torch ({torch.__version__}); "
            'use device = "cpu" or "auto"')
    for name, message in [("gpu0", "device: 'gpu0' is not a torch device (use auto, cpu, cuda or cuda:N)"),
                          ("cuda:1", cuda), ("mps", "device: 'mps' requested but MPS is not available")]:
        with pytest.raises(ValueError) as err:
            resolve_device(name)
        assert str(err.value) == message


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


# ---------------------------------------------------------------- what each argument does (not only that it runs)


def test_builtin_trainer_passes_the_spec_and_returns_every_result_field(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = parse_spec({**TINY_SPEC, "budget": {**TINY_SPEC["budget"], "epochs": 3, "batch_size": 16,
                                               "clip_norm": 0.25}})
    seen: dict[str, object] = {}
    done = training.TrainResult(val_losses=[2.0, 1.5], best_val_loss=1.5, epochs_run=2, diverged=True, seconds=0.1,
                                n_params=123, hidden=7, test_loss=1.75, device="cpu", threads=1)

    def fake_train(task: Task, model: ModelSpec, depth: int, hp: Hparams, **kwargs: object) -> training.TrainResult:
        seen.update(task=task, model=model, depth=depth, hp=hp, **kwargs)
        return done

    monkeypatch.setattr(training, "train", fake_train)
    report = Reporter(wants_test=True)
    result = BuiltinTrainer(spec, "cuda:3")({"lr": 0.01, "dropout": 0.1}, {"depth": 2}, 9, report)
    assert result == Result(value=1.5, test=1.75, n_params=123, diverged=True, extras={"hidden": 7})
    task = seen.pop("task")
    assert isinstance(task, Task) and task.name == "seq2seq" and len(task.train) == 128
    assert seen == {"model": spec.model_for(Arm((("depth", 2),))), "depth": 2, "hp": Hparams(lr=0.01, dropout=0.1),
                    "epochs": 3, "batch_size": 16, "seed": 9, "clip_norm": 0.25, "device": "cuda:3",
                    "on_epoch": report, "evaluate_test": True}


def test_model_and_every_split_go_to_the_resolved_device(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a CPU-only machine a dropped device argument still trains (torch's default is the CPU), so record where
    train puts the model, each split and each evaluation."""
    devices: list[tuple[str, object]] = []
    real_to, real_evaluate, real_build = training._to, training.evaluate, training.build_model

    def to(split: Split, device: str) -> Split:
        devices.append(("split", device))
        return real_to(split, device)

    def evaluate_on(model: nn.Module, split: Split, batch_size: int, device: str) -> float:
        devices.append(("evaluate", device))
        return real_evaluate(model, split, batch_size, device)

    def build(*args: object, **kwargs: object) -> nn.Module:
        model = real_build(*args, **kwargs)  # type: ignore[arg-type]
        model_to = model.to

        def move(device: object) -> nn.Module:
            devices.append(("model", device))
            return model_to(device)  # type: ignore[no-any-return]

        model.to = move  # type: ignore[method-assign]
        return model

    monkeypatch.setattr(training, "_to", to)
    monkeypatch.setattr(training, "evaluate", evaluate_on)
    monkeypatch.setattr(training, "build_model", build)
    assert _run(epochs=2, device="cpu", evaluate_test=True).device == "cpu"
    # model once; train, val and test splits; 2 validations and 1 test evaluation, each moving its split again
    kinds = [k for k, _ in devices]
    assert sorted(kinds) == sorted(["model"] + ["split"] * 6 + ["evaluate"] * 3)
    assert {d for _, d in devices} == {"cpu"}


@pytest.mark.parametrize("change", [{"lr": 3e-2}, {"weight_decay": 0.5}, {"dropout": 0.5},
                                    {"init": "xavier_uniform"}, {"init_gain": 0.3}])
def test_each_hyperparameter_changes_the_run(change: dict[str, object]) -> None:
    """A hyperparameter that train dropped (falling back to a default) would leave the losses unchanged."""
    base = {"lr": 1e-2, "weight_decay": 0.0, "dropout": 0.0, "init": "orthogonal", "init_gain": 1.0}
    a, b = (train(TINY, SMALL_MODEL, 2, Hparams(**hp), epochs=2, batch_size=32, seed=0)  # type: ignore[arg-type]
            for hp in (base, {**base, **change}))
    assert a.val_losses != b.val_losses


def test_gradients_are_clipped_at_clip_norm_one_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    limits: list[float] = []
    real = torch.nn.utils.clip_grad_norm_

    def spy(params: Iterator[torch.Tensor], max_norm: float) -> torch.Tensor:
        limits.append(max_norm)
        return real(params, max_norm)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", spy)
    _run(epochs=1)
    assert limits == [1.0] * 4  # 128 / 32 steps
    limits.clear()
    _run(epochs=1, clip_norm=0.25)
    assert limits == [0.25] * 4


def test_seconds_is_the_calls_own_wall_time() -> None:
    before = time.perf_counter()
    result = _run(epochs=1)
    assert 0 < result.seconds <= time.perf_counter() - before


def test_zero_epochs_trains_nothing_and_is_not_divergence() -> None:
    result = _run(epochs=0, evaluate_test=True)
    assert result.val_losses == [] and result.epochs_run == 0 and result.diverged is False
    assert result.best_val_loss == math.inf and result.test_loss == math.inf


def test_test_loss_uses_the_weights_of_the_first_best_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Validation scripted as 3.0, 2.0, 2.0 (a tie), 2.5: the test evaluation must see epoch 1's weights, not the
    first epoch's, the tie's or the last. Each evaluation reports a fingerprint of the weights it was given."""
    scripted = [3.0, 2.0, 2.0, 2.5]
    prints: list[float] = []

    def fake(model: nn.Module, split: Split, batch_size: int, device: str) -> float:
        fingerprint = float(sum(p.detach().double().sum() for p in model.parameters()))
        if len(prints) == len(scripted):
            return fingerprint  # the test evaluation, after the last epoch
        prints.append(fingerprint)
        return scripted[len(prints) - 1]

    monkeypatch.setattr(training, "evaluate", fake)
    result = _run(epochs=4, evaluate_test=True)
    assert result.val_losses == scripted and result.best_val_loss == 2.0
    assert len(set(prints)) == 4  # the weights changed every epoch, so the fingerprints tell the epochs apart
    assert result.test_loss == prints[1]


class _Bias(nn.Module):
    """Logits = one learnable bias over 2 classes at every position; records each batch's row ids and lengths."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(2))
        self.seen: list[tuple[list[int], list[int] | None]] = []

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        self.seen.append((x[:, 0].tolist(), None if lengths is None else lengths.tolist()))
        return self.w.expand(x.shape[0], x.shape[1], 2)


def test_each_step_follows_the_mean_loss_of_its_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    """One row per batch, bias kept at 0 (lr 0), so each gradient is worked out by hand: softmax(0) = (1/2, 1/2),
    and d(mean CE)/dw = mean over scored targets of (1/2, 1/2) - onehot(target).
    Row 0 scores one class-0 target: (-1/2, 1/2), norm sqrt(1/2). Row 1 scores two class-1 targets: the mean is
    (1/2, -1/2), norm sqrt(1/2) (a summed loss would double it). Row 2 scores nothing: zero, not NaN."""
    split = Split(torch.tensor([[0, 0], [1, 1], [2, 2]]),
                  torch.tensor([[0, IGNORE_INDEX], [1, 1], [IGNORE_INDEX, IGNORE_INDEX]]), torch.tensor([1, 2, 3]))
    model = _Bias()
    norms: dict[int, float] = {}
    limits: list[float] = []
    real = torch.nn.utils.clip_grad_norm_

    def spy(params: Iterator[torch.Tensor], max_norm: float) -> torch.Tensor:
        limits.append(max_norm)
        norm = real(params, max_norm)
        norms[model.seen[-1][0][0]] = float(norm)
        return norm

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", spy)
    model.eval()
    ok = training._train_epoch(model, torch.optim.SGD(model.parameters(), lr=0.0), split, 1,
                               torch.Generator().manual_seed(0), 0.3)
    assert ok and model.training and limits == [0.3] * 3
    assert norms == pytest.approx({0: 0.5 ** 0.5, 1: 0.5 ** 0.5, 2: 0.0})
    assert sorted(model.seen) == [([0], [1]), ([1], [2]), ([2], [3])]  # each row with its own length


def test_batches_cover_every_row_once_in_order_or_in_the_generators_order() -> None:
    x, y, lengths = torch.arange(10).reshape(5, 2), torch.arange(5), torch.tensor([5, 4, 3, 2, 1])
    split = Split(x, y, lengths)
    plain = list(training._batches(split, 2, None))
    assert [b.tolist() for _, b, _ in plain] == [[0, 1], [2, 3], [4]]
    assert all(torch.equal(bx, x[by]) and torch.equal(bl, lengths[by]) for bx, by, bl in plain)
    torch.manual_seed(0)  # the global generator in another state than the given one
    perm = torch.randperm(5, generator=torch.Generator().manual_seed(3)).tolist()
    shuffled = [b.tolist() for _, b, _ in training._batches(split, 2, torch.Generator().manual_seed(3))]
    assert shuffled == [perm[0:2], perm[2:4], perm[4:]] and perm != sorted(perm)
    assert [b[2] for b in training._batches(Split(x, y), 2, None)] == [None, None, None]


def test_to_moves_every_tensor_and_keeps_missing_lengths() -> None:
    """The meta device (shapes only) stands in for an accelerator: each tensor must arrive there."""
    moved = training._to(Split(torch.zeros(3, 2), torch.zeros(3), torch.ones(3)), "meta")
    assert moved.lengths is not None
    assert [t.device.type for t in (moved.x, moved.y, moved.lengths)] == ["meta"] * 3
    assert training._to(Split(torch.zeros(3, 2), torch.zeros(3)), "meta").lengths is None
    here = Split(torch.zeros(3, 2), torch.zeros(3), torch.ones(3))
    kept = training._to(here, "cpu")
    assert kept.x is here.x and kept.y is here.y and kept.lengths is here.lengths  # no copy when already there


def test_matched_params_sizes_each_depth_to_the_target() -> None:
    """Under matched_params the hidden size is solved from the task and the depth: 1 and 3 layers get different
    widths and each lands within 5% of the target parameter count."""
    model = ModelSpec(hidden=16, embedding=8, capacity="matched_params", target_params=6000)
    one, three = (train(TINY, model, depth, Hparams(lr=1e-2), epochs=1, batch_size=32, seed=0) for depth in (1, 3))
    assert (one.hidden, three.hidden) == (hidden_size(TINY, model, 1), hidden_size(TINY, model, 3))
    assert one.hidden > three.hidden  # 33 and 16 at the time of writing
    for result in (one, three):
        assert abs(result.n_params - 6000) <= 0.05 * 6000
