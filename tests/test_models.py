"""Tests for bench.trainers.models: stacked LSTM/GRU nets, init schemes and capacity matching by parameter count."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn

from bench.spec import ModelSpec, SpecError
from bench.tasks import seq2seq
from bench.tasks.base import Split, Task
from bench.trainers.models import (
    RecurrentNet,
    build_model,
    count_params,
    hidden_for_params,
    hidden_size,
    init_recurrent,
    param_count,
)

TOKENS = seq2seq.make_task(0, n_train=8, n_val=4, n_test=4)


def _features_task(n: int = 6, t: int = 5, f: int = 3) -> Task:
    g = torch.Generator().manual_seed(0)

    def split() -> Split:
        x = torch.randn(n, t, f, generator=g)
        return Split(x, (x[:, 0, 0] > 0).long(), torch.randint(1, t + 1, (n,), generator=g))

    return Task("feat", "features", f, 2, "last", split(), split(), split(), trivial_loss=math.log(2))


FEATURES = _features_task()


def _net(cell: str = "lstm", depth: int = 2, hidden: int = 8, task: Task = TOKENS) -> RecurrentNet:
    return build_model(task, ModelSpec(cell=cell, hidden=hidden, embedding=4), depth, dropout=0.0)


# ---------------------------------------------------------------- shapes


def test_per_step_and_last_shapes() -> None:
    x = TOKENS.train.x[:3]
    assert _net()(x).shape == (3, x.shape[1], TOKENS.n_classes)
    xf, lengths = FEATURES.train.x[:4], FEATURES.train.lengths
    assert lengths is not None
    assert _net(task=FEATURES)(xf, lengths[:4]).shape == (4, 2)
    assert _net(task=FEATURES)(xf).shape == (4, 2)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_last_step_ignores_padding(cell: str) -> None:
    torch.manual_seed(0)
    net = _net(cell, task=FEATURES).eval()
    x = torch.randn(3, 5, 3)
    lengths = torch.tensor([2, 5, 3])
    padded = x.clone()
    padded[0, 2:] = 100.0  # garbage beyond each length must not reach the output
    padded[2, 3:] = -100.0
    assert torch.allclose(net(x, lengths), net(padded, lengths), atol=1e-6)
    alone = net(x[:1, :2])  # the same sequence cut to its length, no packing
    assert torch.allclose(net(x, lengths)[:1], alone, atol=1e-6)


def test_no_dropout_warning_at_depth_one() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_model(TOKENS, ModelSpec(), 1, dropout=0.5)


# ---------------------------------------------------------------- parameter counts


def test_params_grow_strictly_with_depth_at_fixed_width() -> None:
    counts = [count_params(_net(depth=d, hidden=16)) for d in (1, 2, 3, 6)]
    assert counts == sorted(set(counts))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("task", [TOKENS, FEATURES], ids=["tokens", "features"])
def test_closed_form_count_matches_torch(cell: str, task: Task) -> None:
    for depth, hidden in ((1, 5), (3, 7)):
        net = _net(cell, depth, hidden, task)
        formula = param_count(task.inputs, task.input_size, task.n_classes, cell, 4, hidden, depth)
        assert count_params(net) == formula


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_matched_params_within_five_percent(cell: str) -> None:
    spec = ModelSpec(cell=cell, embedding=16, capacity="matched_params", target_params=50_000)
    widths = []
    for depth in range(1, 9):
        hidden = hidden_size(TOKENS, spec, depth)
        n = count_params(build_model(TOKENS, spec, depth, dropout=0.0))
        assert abs(n - 50_000) <= 0.05 * 50_000, (depth, hidden, n)
        widths.append(hidden)
    assert widths == sorted(widths, reverse=True) and widths[0] > widths[-1]


def test_matched_params_impossible_targets() -> None:
    spec = ModelSpec(embedding=16, capacity="matched_params", target_params=300)
    with pytest.raises(SpecError, match=r"^model\.target_params: 300 is below the smallest 8-layer lstm"):
        hidden_for_params("tokens", 10, 8, spec, 8)
    # Tiny nets: one more unit changes the count by far more than 5%, so no width is close enough.
    tight = ModelSpec(embedding=1, capacity="matched_params", target_params=150)
    with pytest.raises(SpecError, match=r"^model\.target_params: no hidden size"):
        hidden_for_params("tokens", 2, 2, tight, 2)


def test_fixed_width_uses_model_hidden() -> None:
    assert hidden_size(TOKENS, ModelSpec(hidden=37), 4) == 37


# ---------------------------------------------------------------- init


def _gate_blocks(rnn: nn.LSTM | nn.GRU, kind: str) -> list[torch.Tensor]:
    gates = 4 if isinstance(rnn, nn.LSTM) else 3
    return [b for name, p in rnn.named_parameters() if name.startswith(kind) for b in p.detach().chunk(gates)]


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_orthogonal_gate_blocks(cell: str) -> None:
    net = _net(cell, depth=2, hidden=6)
    init_recurrent(net, "orthogonal", 1.5)
    blocks = _gate_blocks(net.rnn, "weight_hh")
    assert len(blocks) == 2 * (4 if cell == "lstm" else 3)
    for w in blocks:
        assert torch.allclose(w @ w.T, 2.25 * torch.eye(6), atol=1e-5)
    for w in _gate_blocks(net.rnn, "weight_ih"):  # first layer 6 x 4: semi-orthogonal (orthonormal columns)
        gram = w.T @ w if w.shape[0] >= w.shape[1] else w @ w.T
        assert torch.allclose(gram, 2.25 * torch.eye(min(w.shape)), atol=1e-5)


def test_default_leaves_torch_init() -> None:
    torch.manual_seed(1)
    a = _net()
    torch.manual_seed(1)
    b = _net()
    init_recurrent(b, "default", 3.0)
    for (name, pa), pb in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb), name


@pytest.mark.parametrize("scheme", ["xavier_uniform", "orthogonal", "kaiming_uniform"])
def test_biases_zero_except_lstm_forget_gate(scheme: str) -> None:
    lstm, gru = _net("lstm", depth=2), _net("gru", depth=2)
    init_recurrent(lstm, scheme, 1.0)
    init_recurrent(gru, scheme, 1.0)
    for name, p in lstm.rnn.named_parameters():
        if name.startswith("bias_ih"):
            i, f, g, o = p.detach().chunk(4)
            assert (f == 1).all() and not torch.cat([i, g, o]).any()
        elif name.startswith("bias_hh"):
            assert not p.any()
    assert not any(p.any() for name, p in gru.rnn.named_parameters() if name.startswith("bias"))


def test_uniform_schemes_respect_their_bounds() -> None:
    net = _net(depth=1, hidden=8)  # gate blocks: ih 8 x 4, hh 8 x 8
    init_recurrent(net, "xavier_uniform", 2.0)
    for w in _gate_blocks(net.rnn, "weight_"):
        assert w.abs().max() <= 2.0 * math.sqrt(6 / (w.shape[0] + w.shape[1])) + 1e-6
    init_recurrent(net, "kaiming_uniform", 0.5)
    for w in _gate_blocks(net.rnn, "weight_"):
        assert w.abs().max() <= 0.5 * math.sqrt(3 / w.shape[1]) + 1e-6


def test_unknown_scheme() -> None:
    with pytest.raises(ValueError, match="'he_normal' is not one of"):
        init_recurrent(_net(), "he_normal", 1.0)
