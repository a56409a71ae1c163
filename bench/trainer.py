"""The trainer contract: what bench calls to train one config, for its built-in LSTM/GRU and for a user's own code.

A trainer is any callable ``fit(params, arm, seed, report) -> float | Result``:

- ``params``: the nuisance hyperparameters sampled from ``[search_space]``, plus the ``[fixed]`` values;
- ``arm``: the scientific values of this arm, e.g. ``{"width": 64}``;
- ``seed``: the training seed (bench chooses it so that replicate k of every arm trains with the same seeds);
- ``report(step, value)``: call it with the validation score after each step (epoch). It may raise
  :class:`Pruned` when bench's pruner stops the trial: **do not catch it** (let it propagate out of ``fit``).
  ``report.wants_test`` is True when bench re-evaluates a config with a fresh seed; ``fit`` must then also
  score the held-out test split (of the weights it scores on validation) and return it as ``Result.test``.
  ``report.device`` is the worker's torch device (``"cpu"``, ``"cuda"``, ...; `bench worker --device`): a
  PyTorch trainer puts its model and batches there; other trainers may ignore it.

It returns the validation score (a float) or a :class:`Result`. A non-finite score, a wrong return type, or no
test score when one was asked for makes the run *diverged* (scored by ``[metric] worst``), with the reason
recorded on the trial. The user's code imports nothing from Optuna, and need not import this module at all.
"""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from bench.spec import SpecError
from bench.trainers.plugins import import_callable

if TYPE_CHECKING:
    from bench.spec import Spec

# The public contract; the rest of this module is how bench loads, calls and checks a trainer.
__all__ = ["Pruned", "Report", "Result", "Trainer"]


class Pruned(Exception):  # noqa: N818 - a signal, not an error
    """Raised by ``report(step, value)`` when bench's pruner stops this trial. Do not catch it."""


@dataclass(frozen=True)
class Result:
    value: float  # validation score ([metric] name): the objective bench tunes and ranks configs by
    test: float | None = None  # held-out test score of the same weights; required when report.wants_test
    n_params: int | None = None  # trainable parameters: the report's fairness audit compares them across arms
    diverged: bool = False  # the run blew up (bench then scores it [metric] worst, whatever `value` says)
    extras: Mapping[str, Any] = field(default_factory=dict)  # anything JSON-storable, kept on the trial


class Report(Protocol):
    """The per-step callback bench hands to ``fit``."""

    wants_test: bool  # True in re-evaluation runs: fit must return Result(test=...)
    device: str  # the worker's torch device ("cpu", "cuda", ...), as resolved from `bench worker --device`

    def __call__(self, step: int, value: float) -> None: ...


class Trainer(Protocol):
    def __call__(self, params: dict[str, Any], arm: dict[str, Any], seed: int, report: Report
                 ) -> float | Result: ...


class Reporter:
    """bench's Report: records every step's score and forwards finite ones to ``on_step`` (which may prune)."""

    def __init__(self, on_step: Callable[[int, float], None] | None = None, *, wants_test: bool = False,
                 device: str = "cpu") -> None:
        self.wants_test, self.device = wants_test, device
        self.values: list[float | None] = []  # per step in call order; None for a non-finite value
        self.pruned = False  # set once Pruned was raised, so a trainer that swallowed it still ends pruned
        self._on_step = on_step

    def __call__(self, step: int, value: float) -> None:
        v = float(value)
        self.values.append(v if math.isfinite(v) else None)
        if self._on_step is not None and math.isfinite(v):
            try:
                self._on_step(int(step), v)
            except Pruned:
                self.pruned = True
                raise


# Trial attributes bench writes itself; a trainer's extras may not overwrite them.
RESERVED = frozenset({"seconds", "n_params", "epochs_run", "diverged", "diverged_reason", "val_losses", "seed",
                      "test_loss", "pruned", "bench_slot", "provenance", "bench_lost", "rank", "study",
                      "source_trial", "source_study", "source_arm"})


@dataclass(frozen=True)
class Checked:
    """A trainer's return value after bench's checks: what the trial records."""

    value: float  # finite unless diverged
    test: float | None
    n_params: int | None
    extras: dict[str, Any]
    diverged_reason: str | None = None  # why the run counts as diverged; None = it did not


def check_result(out: object, wants_test: bool) -> Checked:
    """Normalise ``fit``'s return value; anything wrong becomes a diverged run with its reason (never raises)."""
    if isinstance(out, bool) or not isinstance(out, (int, float, Result)):
        return Checked(math.inf, None, None, {}, f"trainer returned {type(out).__name__}, not a float or Result")
    res = out if isinstance(out, Result) else Result(value=float(out))
    n_params = res.n_params if isinstance(res.n_params, int) and not isinstance(res.n_params, bool) else None
    extras = {str(k): v for k, v in dict(res.extras or {}).items() if str(k) not in RESERVED}
    try:
        json.dumps(extras, allow_nan=False)
    except (TypeError, ValueError) as exc:
        extras = {}
        reason: str | None = f"trainer extras are not JSON-storable: {exc}"
    else:
        reason = None
    test = _number(res.test)
    value = _number(res.value)
    if res.diverged:
        reason = "trainer reported divergence"
    elif value is None or not math.isfinite(value):
        reason = f"trainer returned a non-finite or non-numeric score {res.value!r}"
    elif wants_test and (test is None or not math.isfinite(test)):
        reason = f"trainer returned no finite test score (Result.test = {res.test!r}) though report.wants_test"
    if reason is not None:
        return Checked(math.inf, None, n_params, extras, reason)
    assert value is not None
    return Checked(value, test if wants_test else None, n_params, extras)


def _number(v: object) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v)


def load_trainer(name: str) -> Trainer:
    """Import ``package.module:function`` and check it can be called as fit(params, arm, seed, report);
    SpecError("trainer.name: ...") otherwise."""
    obj = import_callable(name, "trainer.name", f"trainer.name: {name!r} is not of the form 'package.module:function'")
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):  # some C callables have no signature: calling them is the only check
        return obj
    try:
        sig.bind({}, {}, 0, Reporter())
    except TypeError as exc:
        raise SpecError(f"trainer.name: {name!r} must take (params, arm, seed, report): {exc}") from None
    return obj


def make_trainer(spec: Spec, device: str) -> Trainer:
    """The spec's trainer: a user's ``[trainer] name``, else bench's stacked LSTM/GRU on [task] and [model]."""
    if spec.trainer is not None:
        return load_trainer(spec.trainer)
    from bench.trainers.training import BuiltinTrainer  # lazy: user trainers need not import torch

    return BuiltinTrainer(spec, device)
