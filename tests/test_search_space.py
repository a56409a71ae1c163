"""Tests for bench.tuning.search_space: the spec's table and Optuna's distributions agree, for every kind of entry."""

from __future__ import annotations

import math
from typing import Any

import optuna
import pytest
from hypothesis import given
from hypothesis import strategies as st
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from bench.spec import ParamSpec
from bench.tuning.search_space import distribution, distributions, fixed_distributions, suggest


@st.composite
def params(draw: st.DrawFn) -> ParamSpec:
    kind = draw(st.sampled_from(["float", "int", "categorical"]))
    name = draw(st.sampled_from(["lr", "weight_decay", "dropout", "init_gain"]))
    if kind == "categorical":
        return ParamSpec(name, kind, choices=tuple(draw(st.lists(st.sampled_from(["a", "b", "c", "d"]), min_size=1,
                                                                 max_size=4, unique=True))))
    log = draw(st.booleans())
    if kind == "int":
        low = draw(st.integers(1 if log else -5, 20))
        high = low + draw(st.integers(1, 30))
        step = None if log else draw(st.sampled_from([None, 1]))
        return ParamSpec(name, kind, low=low, high=high, log=log, step=step)
    low = draw(st.sampled_from([1e-5, 1e-3, 0.1, 1.0])) if log else draw(st.sampled_from([-1.0, 0.0, 0.25]))
    high = low * draw(st.sampled_from([2.0, 10.0, 1000.0])) if log else low + draw(st.sampled_from([0.5, 1.0, 2.0]))
    step = None if log else draw(st.sampled_from([None, 0.25, 0.5]))
    return ParamSpec(name, kind, low=low, high=high, log=log, step=step)


@given(st.lists(params(), min_size=1, max_size=4, unique_by=lambda p: p.name), st.integers(0, 2**31 - 1))
def test_suggest_samples_inside_the_space_under_the_same_distributions(space: list[ParamSpec], seed: int) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    trial = study.ask()
    values = suggest(trial, tuple(space))
    assert set(values) == {p.name for p in space}
    # The distributions Optuna recorded are exactly the ones distribution() builds: one mapping, two users.
    assert trial.distributions == distributions(tuple(space))
    for p in space:
        v = values[p.name]
        if p.type == "categorical":
            assert v in p.choices
            continue
        assert p.low is not None and p.high is not None
        assert p.low <= v <= p.high
        if p.type == "int":
            assert isinstance(v, int)
        if p.step is not None:
            assert math.isclose((v - p.low) / p.step, round((v - p.low) / p.step), abs_tol=1e-9)


@given(params())
def test_distribution_kind_bounds_and_scale(p: ParamSpec) -> None:
    d = distribution(p)
    if p.type == "categorical":
        assert isinstance(d, CategoricalDistribution) and tuple(d.choices) == p.choices
        return
    assert isinstance(d, IntDistribution if p.type == "int" else FloatDistribution)
    assert (d.low, d.high, d.log) == (p.low, p.high, p.log)
    assert d.step == (int(p.step or 1) if p.type == "int" else p.step)


@given(st.dictionaries(st.sampled_from(["lr", "dropout", "init", "flag", "n"]),
                       st.one_of(st.floats(0.0, 1.0), st.integers(0, 10), st.booleans(),
                                 st.sampled_from(["default", "orthogonal", "other"])), min_size=1))
def test_fixed_distributions_contain_their_config(config: dict[str, Any]) -> None:
    """A re-evaluated config can always be stored under its fixed distributions (one-point ranges, or the search
    space's choices when its value is one of them)."""
    space = (ParamSpec("init", "categorical", choices=("default", "orthogonal")),)
    dists = fixed_distributions(config, space)
    assert set(dists) == set(config)
    for k, v in config.items():
        assert dists[k]._contains(dists[k].to_internal_repr(v))
    if config.get("init") in ("default", "orthogonal"):
        assert tuple(dists["init"].choices) == ("default", "orthogonal")  # type: ignore[attr-defined]
    trial = optuna.trial.create_trial(params=config, distributions=dists, value=0.5)
    assert trial.params == config


def test_fixed_distributions_by_hand() -> None:
    space = (ParamSpec("init", "categorical", choices=("default", "orthogonal")),)
    d = fixed_distributions({"lr": 0.01, "init": "xavier_uniform", "n": 3}, space)
    assert d == {"lr": FloatDistribution(0.01, 0.01), "init": CategoricalDistribution(["xavier_uniform"]),
                 "n": IntDistribution(3, 3)}


@pytest.mark.parametrize("p,expected", [
    (ParamSpec("lr", "float", low=1e-4, high=1e-1, log=True), FloatDistribution(1e-4, 1e-1, log=True)),
    (ParamSpec("dropout", "float", low=0.0, high=0.5, step=0.1), FloatDistribution(0.0, 0.5, step=0.1)),
    (ParamSpec("n", "int", low=1, high=9, step=2), IntDistribution(1, 9, step=2)),
    (ParamSpec("n", "int", low=1, high=64, log=True), IntDistribution(1, 64, log=True)),
])
def test_distribution_by_hand(p: ParamSpec, expected: Any) -> None:
    assert distribution(p) == expected


def test_suggest_keeps_an_int_step() -> None:
    """`{type = "int", low = 0, high = 10, step = 2}` samples only even values (the step reaches Optuna)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    p = ParamSpec("n", "int", low=0, high=10, step=2)
    seen = set()
    for _ in range(40):
        trial = study.ask()
        seen.add(suggest(trial, (p,))["n"])
        study.tell(trial, 0.0)
    assert seen == {0, 2, 4, 6, 8, 10}
