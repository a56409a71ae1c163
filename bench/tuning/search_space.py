"""The search space as data: one function turns spec entries into ``trial.suggest_*`` calls, for every depth."""

from __future__ import annotations

from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from bench.spec import ParamSpec


def distribution(p: ParamSpec) -> BaseDistribution:
    """The Optuna distribution of one search-space entry."""
    if p.type == "categorical":
        return CategoricalDistribution(list(p.choices))
    assert p.low is not None and p.high is not None
    if p.type == "int":
        return IntDistribution(int(p.low), int(p.high), log=p.log, step=int(p.step or 1))
    return FloatDistribution(float(p.low), float(p.high), log=p.log, step=p.step)


def distributions(space: tuple[ParamSpec, ...]) -> dict[str, BaseDistribution]:
    return {p.name: distribution(p) for p in space}


def suggest(trial: optuna.Trial, space: tuple[ParamSpec, ...]) -> dict[str, Any]:
    """Sample every entry; there is deliberately no per-depth code path here (fairness invariant 2)."""
    out: dict[str, Any] = {}
    for p in space:
        if p.type == "categorical":
            out[p.name] = trial.suggest_categorical(p.name, list(p.choices))
        elif p.type == "int":
            assert p.low is not None and p.high is not None
            out[p.name] = trial.suggest_int(p.name, int(p.low), int(p.high), log=p.log, step=int(p.step or 1))
        else:
            assert p.low is not None and p.high is not None
            out[p.name] = trial.suggest_float(p.name, float(p.low), float(p.high), log=p.log, step=p.step)
    return out


def fixed_distributions(params: dict[str, Any], space: tuple[ParamSpec, ...]) -> dict[str, BaseDistribution]:
    """Distributions under which a config that is not sampled (re-evaluation, baselines) can be stored.

    One study may hold several such configs (each replicate study's best), and Optuna refuses a categorical whose
    choices change between trials: names keep the search space's choices where the value is one of them,
    numbers get a one-point range (ranges may differ between trials).
    """
    spaces = {p.name: p for p in space}
    out: dict[str, BaseDistribution] = {}
    for k, v in params.items():
        p = spaces.get(k)
        if isinstance(v, (bool, str)):
            choices = list(p.choices) if p is not None and v in p.choices else [v]
            out[k] = CategoricalDistribution(choices)
        elif isinstance(v, int):
            out[k] = IntDistribution(v, v)
        else:
            out[k] = FloatDistribution(float(v), float(v))
    return out
