"""Stacked recurrent networks (LSTM / GRU), their weight init and capacity matching by parameter count."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from bench.spec import INIT_SCHEMES, ModelSpec, SpecError
from bench.tasks.base import MEMORY_ENV, Task, gib, memory_limit

GATES = {"lstm": 4, "gru": 3}  # gate blocks stacked in weight_ih / weight_hh (LSTM order: i, f, g, o)
MATCH_TOLERANCE = 0.05  # matched_params: every depth within ±5% of the target parameter count
# Per parameter while training (float32): weights, gradients, AdamW's two moments, and the best-epoch copy.
_BYTES_PER_PARAM = 5 * 4


class RecurrentNet(nn.Module):
    """Embedding (tokens) or Linear (features) → `depth` stacked LSTM/GRU layers → dropout → Linear head.

    per_step targets: logits (B, T, C); last targets: logits (B, C) from each sequence's last valid step.
    """

    def __init__(self, *, inputs: str, input_size: int, n_classes: int, target: str, cell: str, hidden: int,
                 depth: int, embedding: int, dropout: float) -> None:
        super().__init__()
        self.target = target
        self.encoder: nn.Module = (
            nn.Embedding(input_size, embedding) if inputs == "tokens" else nn.Linear(input_size, embedding))
        rnn_cls = {"lstm": nn.LSTM, "gru": nn.GRU}[cell]
        # torch applies this dropout between layers only, so it is meaningless (and warns) at depth 1.
        self.rnn = rnn_cls(embedding, hidden, num_layers=depth, batch_first=True,
                           dropout=dropout if depth > 1 else 0.0)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, n_classes)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        e = self.encoder(x)
        if lengths is None:
            out, state = self.rnn(e)
        else:
            # Packing keeps padding out of the recurrence, so the final state is that of the last real step.
            packed = pack_padded_sequence(e, lengths.cpu(), batch_first=True, enforce_sorted=False)
            packed_out, state = self.rnn(packed)
            out, _ = pad_packed_sequence(packed_out, batch_first=True, total_length=x.shape[1])
        if self.target == "per_step":
            return self.head(self.drop(out))
        h_n = state[0] if isinstance(state, tuple) else state  # LSTM returns (h_n, c_n)
        return self.head(self.drop(h_n[-1]))  # top layer; packed h_n is already in the batch's order


def init_recurrent(module: nn.Module, scheme: str, gain: float = 1.0) -> None:
    """Re-initialise every LSTM/GRU in `module` with `scheme`, one gate block at a time.

    "default" keeps PyTorch's uniform(±1/sqrt(hidden)) init. Other schemes treat each gate's matrix as its own
    linear map (so fan-in/fan-out and orthogonality are per gate, not of the stacked 4H×in matrix), zero the
    biases, and set the LSTM forget-gate bias to 1 so the cell remembers by default early in training
    (Jozefowicz, Zaremba & Sutskever 2015, "An empirical exploration of recurrent network architectures").
    """
    if scheme not in INIT_SCHEMES:
        raise ValueError(f"init: {scheme!r} is not one of: {', '.join(INIT_SCHEMES)}")
    if scheme == "default":
        return
    for rnn in module.modules():
        if not isinstance(rnn, (nn.LSTM, nn.GRU)):
            continue
        gates = GATES["lstm" if isinstance(rnn, nn.LSTM) else "gru"]
        with torch.no_grad():
            for name, param in rnn.named_parameters():
                if name.startswith("weight_"):
                    for block in param.chunk(gates, dim=0):
                        _init_block(block, scheme, gain)
                elif name.startswith("bias_"):
                    param.zero_()
                    if gates == 4 and name.startswith("bias_ih"):  # bias_hh stays 0: the sum is what counts
                        param.chunk(4)[1].fill_(1.0)


def _init_block(w: torch.Tensor, scheme: str, gain: float) -> None:
    if scheme == "xavier_uniform":
        nn.init.xavier_uniform_(w, gain=gain)
    elif scheme == "orthogonal":
        nn.init.orthogonal_(w, gain=gain)
    elif scheme == "kaiming_uniform":
        # Variance 1/fan_in (the linear-activation He init), then scaled by gain like the other schemes.
        nn.init.kaiming_uniform_(w, nonlinearity="linear")
        w.mul_(gain)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def param_count(inputs: str, input_size: int, n_classes: int, cell: str, embedding: int, hidden: int,
                depth: int) -> int:
    """Closed-form parameter count of a RecurrentNet (equals count_params of the built model)."""
    g = GATES[cell]
    encoder = input_size * embedding + (embedding if inputs == "features" else 0)
    first = g * (hidden * embedding + hidden * hidden + 2 * hidden)  # two bias vectors per layer in torch
    rest = (depth - 1) * g * (2 * hidden * hidden + 2 * hidden)
    return encoder + first + rest + hidden * n_classes + n_classes


def hidden_for_params(task_inputs: str, input_size: int, n_classes: int, model: ModelSpec, depth: int) -> int:
    """Hidden size whose total parameter count is closest to model.target_params (must be within ±5%)."""
    target = model.target_params
    if target is None:
        raise SpecError("model.target_params: required when capacity = \"matched_params\"")

    def count(h: int) -> int:
        return param_count(task_inputs, input_size, n_classes, model.cell, model.embedding, h, depth)

    # count(h) = a h^2 + b h + c; take the positive root, then the best integer next to it.
    g, e = GATES[model.cell], model.embedding
    a = g * (2 * depth - 1)
    b = g * (e + 2 * depth) + n_classes
    c = count(0)
    root = (-b + math.sqrt(max(b * b - 4 * a * (c - target), 0.0))) / (2 * a)
    candidates = {max(1, math.floor(root) + k) for k in (-1, 0, 1, 2)}
    best = min(candidates, key=lambda h: (abs(count(h) - target), h))
    if abs(count(best) - target) > MATCH_TOLERANCE * target:
        if count(1) > target:
            raise SpecError(f"model.target_params: {target} is below the smallest {depth}-layer {model.cell} "
                            f"for this task ({count(1)} parameters at hidden = 1)")
        raise SpecError(f"model.target_params: no hidden size gives {target} ± 5% parameters at depth "
                        f"{depth} (closest: hidden = {best} with {count(best)})")
    return best


def hidden_size(task: Task, model: ModelSpec, depth: int) -> int:
    """model.hidden for fixed_width; for matched_params the width that gives target_params at this depth."""
    if model.capacity == "fixed_width":
        return model.hidden
    solved = dict(model.hidden_by_depth)
    if depth in solved:
        return solved[depth]
    return hidden_for_params(task.inputs, task.input_size, task.n_classes, model, depth)


def build_model(task: Task, model: ModelSpec, depth: int, dropout: float,
                hidden: int | None = None) -> RecurrentNet:
    """The network for `task` at `depth`; hidden defaults to hidden_size(task, model, depth)."""
    return RecurrentNet(
        inputs=task.inputs,
        input_size=task.input_size,
        n_classes=task.n_classes,
        target=task.target,
        cell=model.cell,
        hidden=hidden if hidden is not None else hidden_size(task, model, depth),
        depth=depth,
        embedding=model.embedding,
        dropout=dropout,
    )


def task_bytes(task: Task) -> int:
    """Bytes of the task's tensors (every split's x, y and lengths)."""
    return sum(t.numel() * t.element_size() for s in (task.train, task.val, task.test)
               for t in (s.x, s.y, s.lengths) if t is not None)


def training_bytes(task: Task, model: ModelSpec, depth: int, batch_size: int) -> tuple[int, int, int]:
    """A rough upper estimate of what training at `depth` holds at once: (parameter bytes, activation bytes,
    hidden size). Parameters: count x (weights, gradients, AdamW moments, best copy) x 4 bytes. Activations, kept
    for backward: batch x length x (hidden x depth x (gates + 2) + embedding + 2 x classes) float32 values."""
    hidden = hidden_size(task, model, depth)
    n = param_count(task.inputs, task.input_size, task.n_classes, model.cell, model.embedding, hidden, depth)
    batch, length = min(batch_size, len(task.train)), int(task.train.x.shape[1])
    per_step = hidden * depth * (GATES[model.cell] + 2) + model.embedding + 2 * task.n_classes
    return n * _BYTES_PER_PARAM, batch * length * per_step * 4, hidden


def check_memory(task: Task, models: Sequence[ModelSpec], batch_size: int,
                 scientific: Sequence[str] = ("depth",)) -> None:
    """SpecError naming the field to change when the data plus training some arm's model (``models``: one per
    arm, each with its depth) exceeds the memory limit; a field that is scientific is named as such."""
    limit, data = memory_limit(), task_bytes(task)
    sized = [(training_bytes(task, m, m.depth, batch_size), m) for m in models]
    for (params, acts, hidden), model in sorted(sized, key=lambda s: -(s[0][0] + s[0][1])):  # biggest first
        total = data + params + acts
        if total <= limit:
            continue
        value: object
        if data > max(params, acts):
            fld, value = "task.name", task.name
        elif acts > params:
            fld, value = "budget.batch_size", batch_size
        elif model.capacity == "matched_params":
            fld, value = "model.target_params", model.target_params
        elif task.input_size * model.embedding > hidden * hidden * model.depth:
            fld, value = "model.embedding", model.embedding
        else:
            fld, value = "model.hidden", model.hidden
        if fld.startswith("model.") and fld[6:] in scientific:
            fld = "scientific." + fld[6:]
        depth = model.depth
        raise SpecError(f"{fld}: {value} exceeds the memory limit: training depth {depth} (hidden {hidden}) needs "
                        f"an estimated {gib(total)} ({gib(params)} for parameters and optimiser state, "
                        f"{gib(acts)} for activations, {gib(data)} for data), above {gib(limit)} "
                        f"(set {MEMORY_ENV} to raise it)")
