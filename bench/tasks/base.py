"""The Task interface: three splits of tensors plus the trivial loss a model must beat to have learned."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from bench.spec import SpecError

MEMORY_ENV = "BENCH_MAX_MEMORY_GIB"
DEFAULT_MEMORY_GIB = 16.0  # what one worker may plan to use for data plus training; a guard against typos
IGNORE_INDEX = -100  # target value for positions that are not scored (torch's cross_entropy default)
INPUT_KINDS = ("tokens", "features")
TARGET_KINDS = ("per_step", "last")


class TaskError(ValueError):
    """A Task whose fields do not fit together (raised when it is constructed)."""


@dataclass(frozen=True)
class Split:
    """One split. Shapes: tokens x (N, T) long, features x (N, T, F) float; per_step y (N, T), last y (N,)."""

    x: torch.Tensor
    y: torch.Tensor  # long; IGNORE_INDEX marks positions that are not scored
    lengths: torch.Tensor | None = None  # (N,) long; padding beyond a length is packed away, never scored

    def __len__(self) -> int:
        return int(self.x.shape[0])


@dataclass(frozen=True)
class Task:
    """A dataset with fixed splits; built once per process and shared read-only by every trial."""

    name: str
    inputs: str  # "tokens" | "features"
    input_size: int  # vocabulary size (tokens) or feature count (features)
    n_classes: int  # output classes per scored position
    target: str  # "per_step" | "last"
    train: Split
    val: Split
    test: Split
    trivial_loss: float  # validation cross-entropy (nats) of the best input-independent predictor
    metric_note: str = ""  # one line: what the loss means
    info: dict[str, Any] = field(default_factory=dict)  # JSON-ready sizes and provenance for the report

    def __post_init__(self) -> None:
        # Checked here so a user factory cannot hand training a malformed task that fails deep inside torch.
        if self.inputs not in INPUT_KINDS:
            raise TaskError(f"inputs {self.inputs!r} is not one of: {', '.join(INPUT_KINDS)}")
        if self.target not in TARGET_KINDS:
            raise TaskError(f"target {self.target!r} is not one of: {', '.join(TARGET_KINDS)}")
        if self.input_size < 1 or self.n_classes < 1:
            raise TaskError(f"input_size {self.input_size} and n_classes {self.n_classes} must be at least 1")
        for split_name in ("train", "val", "test"):
            problem = _split_problem(self, getattr(self, split_name))
            if problem:
                raise TaskError(f"{split_name} split: {problem}")


def _split_problem(task: Task, s: Split) -> str:
    """Why a split does not fit its task's declared kinds ('' when it does)."""
    want_x = (2, torch.long) if task.inputs == "tokens" else (3, None)
    if s.x.dim() != want_x[0] or (want_x[1] is not None and s.x.dtype != want_x[1]):
        return f"x has shape {tuple(s.x.shape)} and dtype {s.x.dtype}; {task.inputs} need {want_x[0]} dims"
    if task.inputs == "features" and (not s.x.is_floating_point() or s.x.shape[2] != task.input_size):
        return f"features x must be float (N, T, {task.input_size}), got {tuple(s.x.shape)} {s.x.dtype}"
    if task.inputs == "tokens" and s.x.numel() and (int(s.x.min()) < 0 or int(s.x.max()) >= task.input_size):
        return f"token ids must lie in [0, {task.input_size})"
    want_y = tuple(s.x.shape[:2]) if task.target == "per_step" else (s.x.shape[0],)
    if s.y.dtype != torch.long or tuple(s.y.shape) != want_y:
        return f"y must be long {want_y}, got {tuple(s.y.shape)} {s.y.dtype}"
    if len(s) == 0:
        return "is empty"
    scored = s.y[s.y != IGNORE_INDEX]
    if scored.numel() == 0:
        return "has no scored targets"
    if int(scored.min()) < 0 or int(scored.max()) >= task.n_classes:
        return f"targets must lie in [0, {task.n_classes}) or be {IGNORE_INDEX}"
    if s.lengths is not None and (
        tuple(s.lengths.shape) != (len(s),) or int(s.lengths.min()) < 1 or int(s.lengths.max()) > s.x.shape[1]
    ):
        return f"lengths must be (N,) with values in [1, {s.x.shape[1]}]"
    return ""


def trivial_loss(train_y: torch.Tensor, val_y: torch.Tensor, n_classes: int, *, per_position: bool = False,
                 smoothing: float = 1.0) -> float:
    """Cross-entropy (nats) on val targets of class frequencies counted on train (IGNORE_INDEX skipped).

    train_y, val_y: (N, T) or (N,) long. per_position: separate frequencies for each time step (the best
    input-independent predictor when the output distribution depends on position, e.g. sorted sequences).
    smoothing: add-k pseudo-counts, so a class unseen in train costs a finite amount rather than inf.
    """
    if per_position and train_y.dim() == 2:
        total, count = 0.0, 0
        for t in range(val_y.shape[1]):
            n = int((val_y[:, t] != IGNORE_INDEX).sum())
            if n:
                total += n * trivial_loss(train_y[:, t], val_y[:, t], n_classes, smoothing=smoothing)
                count += n
        return total / count if count else math.nan
    counts = torch.bincount(train_y[train_y != IGNORE_INDEX].reshape(-1), minlength=n_classes).double()
    probs = (counts + smoothing) / (counts.sum() + smoothing * n_classes)
    scored = val_y[val_y != IGNORE_INDEX]
    if scored.numel() == 0:
        return math.nan
    return float(-probs[scored].log().mean())


# ---------------------------------------------------------------- parameter checking shared by built-in tasks


def resolve_params(params: Mapping[str, Any], defaults: Mapping[str, Any],
                   types: Mapping[str, type] | None = None) -> dict[str, Any]:
    """Defaults overlaid with params; SpecError("task.<name>: ...") on unknown names or wrong types.

    The type of each parameter is that of its default unless ``types`` says otherwise (for None defaults).
    """
    out = dict(defaults)
    for key, val in params.items():
        if key not in defaults:
            raise SpecError(f"task.{key}: unknown parameter (expected one of: {', '.join(sorted(defaults))})")
        want = (types or {}).get(key, type(defaults[key]))
        if want is float and isinstance(val, int) and not isinstance(val, bool):
            val = float(val)
        if isinstance(val, bool) != (want is bool) or not isinstance(val, want):
            raise SpecError(f"task.{key}: must be {_WORDS.get(want, want.__name__)}, got {val!r}")
        out[key] = val
    return out


_WORDS = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def data_rng(data_seed: int) -> np.random.Generator:
    """The generator every built-in task draws from; SpecError for seeds numpy cannot take."""
    if isinstance(data_seed, bool) or not isinstance(data_seed, int) or data_seed < 0:
        raise SpecError(f"task.data_seed: must be a non-negative integer, got {data_seed!r}")
    return np.random.default_rng(data_seed)


def require_range(name: str, value: float, low: float, high: float) -> None:
    """SpecError unless low <= value <= high."""
    if not low <= value <= high:
        raise SpecError(f"task.{name}: must be from {low} to {high}, got {value}")


def memory_limit() -> int:
    """Bytes one worker may plan for (data and training): $BENCH_MAX_MEMORY_GIB, default 16 GiB."""
    raw = os.environ.get(MEMORY_ENV)
    try:
        gib = DEFAULT_MEMORY_GIB if raw is None else float(raw)
    except ValueError:
        gib = math.nan
    if not (math.isfinite(gib) and gib > 0):
        raise SpecError(f"{MEMORY_ENV}: must be a positive number of GiB, got {raw!r}")
    return int(gib * 2**30)


def gib(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:,.1f} GiB"


def require_memory(name: str, value: Any, n_bytes: int, what: str) -> None:
    """SpecError("task.<name>: ...") when an estimated n_bytes exceeds the memory limit."""
    limit = memory_limit()
    if n_bytes > limit:
        raise SpecError(f"task.{name}: {value} exceeds the memory limit: {what} needs an estimated "
                        f"{gib(n_bytes)}, above {gib(limit)} (set {MEMORY_ENV} to raise it)")
