"""Spec loading: every malformed spec is one clean error naming file and field; the hash is canonical."""

from __future__ import annotations

import codecs
import copy
import datetime
import json
import math
import random
import tomllib
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from hypothesis import assume, given
from hypothesis import strategies as st

from bench.spec import (
    MAX_WIDTH,
    Hparams,
    ModelSpec,
    SpecError,
    canonical_json,
    diff_fields,
    load_spec,
    loss_sign,
    parse_spec,
    spec_hash,
)
from tests.conftest import TINY


def _edit(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """base with dotted fields set (None deletes one)."""
    data = copy.deepcopy(base)
    for path, value in changes.items():
        keys = path.split(".")
        node = data
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        if value is None:
            node.pop(keys[-1], None)
        else:
            node[keys[-1]] = value
    return data


def _with(path: str, value: Any) -> dict[str, Any]:
    """TINY with one dotted field set (value None deletes it)."""
    return _edit(TINY, {path: value})


BAD = [
    ("name", None, "name: missing (required)"),
    ("name", "has space",
     "name: 'has space' must be 1-64 letters, digits, '_', '-' or '.', starting with a letter or digit"),
    ("depths", [], "depths: must list at least one depth"),
    ("depths", [1, 1], "depths: must not repeat a value"),
    ("depths", [0, 2], "depths[0]: 0 must be an integer from 1 to 64"),
    ("depths", [1, 2.5], "depths[1]: 2.5 must be an integer from 1 to 64"),
    ("depths", "3", "depths: must be a list, got '3'"),
    ("task", None, "task: missing (required table)"),
    ("task.name", None, "task.name: missing (required)"),
    ("task.data_seed", "x", "task.data_seed: must be an integer, got 'x'"),
    ("search_space", None, "search_space: missing (required table)"),
    ("search_space", {}, "search_space: must tune at least one hyperparameter"),
    ("search_space.lr.low", 0.1, "search_space.lr.low: low 0.1 must be below high 0.03"),
    ("search_space.lr.low", -1.0, "search_space.lr.low: must be above 0 when log = true, got -1.0"),
    ("search_space.lr.type", "floaty", "search_space.lr.type: 'floaty' is not one of: float, int, categorical"),
    ("search_space.lr.high", "big", "search_space.lr.high: must be a number, got 'big'"),
    ("search_space.lr.typo", 1, "search_space.lr.typo: unknown field (expected one of: high, log, low, step, type)"),
    ("search_space.momentum", {"type": "float", "low": 0.1, "high": 0.9},
     "search_space.momentum: unknown hyperparameter (known: lr, weight_decay, init, init_gain, dropout)"),
    ("search_space.init.choices", [], "search_space.init.choices: must not be empty"),
    ("search_space.init.choices", ["default", "bogus"],
     "search_space.init.choices[1]: 'bogus' is not one of: default, xavier_uniform, orthogonal, kaiming_uniform"),
    ("search_space.init.choices", ["default", "default"], "search_space.init.choices: must not repeat a choice"),
    ("search_space.init", {"type": "float", "low": 0.0, "high": 1.0},
     'search_space.init.type: init takes names; use type = "categorical" with choices'),
    ("search_space.dropout.high", 1.5, "search_space.dropout.high: dropout = 1.5 is out of its domain"),
    ("search_space.lr", 0.01,
     'search_space.lr: must be a table like { type = "float", low = 1e-4, high = 1e-1, log = true }'),
    ("budget", None, "budget: missing (required table)"),
    ("budget.trials", 0, "budget.trials: must be at least 1, got 0"),
    ("budget.trials", True, "budget.trials: must be an integer, got True"),
    ("budget.epochs", None, "budget.epochs: missing (required)"),
    ("budget.batch_size", -3, "budget.batch_size: must be at least 1, got -3"),
    ("budget.clip_norm", 0.0, "budget.clip_norm: must be above 0, got 0.0"),
    ("budget.extra", 1,
     "budget.extra: unknown field (expected one of: batch_size, clip_norm, epochs, studies, trials)"),
    ("sampler.kind", "grid", "sampler.kind: 'grid' is not one of: tpe, random, qmc"),
    ("pruner.kind", "asha", "pruner.kind: 'asha' is not one of: none, median, hyperband"),
    ("model.cell", "rnn", "model.cell: 'rnn' is not one of: lstm, gru"),
    ("model.capacity", "huge", "model.capacity: 'huge' is not one of: fixed_width, matched_params"),
    ("model.hidden", 0, "model.hidden: must be at least 1, got 0"),
    ("model.capacity", "matched_params", 'model.target_params: required when capacity = "matched_params"'),
    ("model.target_params", 5000, 'model.target_params: only applies when capacity = "matched_params"'),
    ("model.hidden_by_depth", [[1, 8]],
     "model.hidden_by_depth: unknown field (expected one of: capacity, cell, depth, embedding, hidden, "
     "target_params)"),
    ("model.hidden", "wide", "model.hidden: must be an integer, got 'wide'"),
    ("budget.clip_norm", "x", "budget.clip_norm: must be a number, got 'x'"),
    ("evaluation.seeds", -1, "evaluation.seeds: must be at least 0, got -1"),
    ("evaluation.top_k", 0, "evaluation.top_k: must be at least 1, got 0"),
    ("fixed.lr", 0.01, "fixed.lr: is also in search_space; a hyperparameter is either tuned or fixed"),
    ("fixed.colour", 1, "fixed.colour: unknown hyperparameter (known: lr, weight_decay, init, init_gain, dropout)"),
    ("baseline.lr", 0.01,
     "evaluation.seeds: must be at least 1 when a [baseline] is given (it is trained over those seeds)"),
    ("baseline.init", "nope",
     "baseline.init: 'nope' is not one of: default, xavier_uniform, orthogonal, kaiming_uniform"),
    ("metric.direction", "maximize",
     "metric.direction: 'maximize': the built-in trainer's score is its validation loss, minimized (\"maximize\" "
     "applies to a [trainer] of your own)"),
    ("surprise", 1,
     "surprise: unknown field (expected one of: analysis, baseline, budget, depths, evaluation, fixed, metric, "
     "model, name, pruner, sampler, scientific, search_space, task, trainer)"),
    ("model.hidden", 1_000_000_000, "model.hidden: 1000000000 exceeds the maximum of 65536"),
    ("model.embedding", 65_537, "model.embedding: 65537 exceeds the maximum of 65536"),
    ("model.embedding", 1e9, "model.embedding: must be an integer, got 1000000000.0"),
    ("search_space.dropout.step", 0.5, "search_space.dropout.step: 0.5 is larger than the range high - low = 0.3"),
    ("search_space.weight_decay", {"type": "int", "low": 0, "high": 3, "step": 4},
     "search_space.weight_decay.step: 4 is larger than the range high - low = 3"),
    ("task.when", datetime.datetime(1979, 5, 27, 7, 32),
     "task.when: must be a string, number, boolean or a list of them, got datetime 1979-05-27 07:32:00"),
    ("task.day", datetime.date(1979, 5, 27),
     "task.day: must be a string, number, boolean or a list of them, got date 1979-05-27"),
    ("task.at", datetime.time(7, 32),
     "task.at: must be a string, number, boolean or a list of them, got time 07:32:00"),
    ("task.tags", ["a", datetime.date(2024, 1, 1)],
     "task.tags[1]: must be a string, number, boolean or a list of them, got date 2024-01-01"),
    ("task.rows", [{"a": 1}], "task.rows[0]: tables are not task parameters"),
    ("task.scale", float("nan"), "task.scale: must be finite, got nan"),
    # Type errors inside a search-space entry and [baseline] name the whole dotted field.
    ("search_space.lr.log", "yes", "search_space.lr.log: must be true or false, got 'yes'"),
    ("search_space.dropout.step", "0.1", "search_space.dropout.step: must be a number, got '0.1'"),
    ("baseline.from_depth", "1", "baseline.from_depth: must be an integer, got '1'"),
    ("baseline.from_arm", 1, "baseline.from_arm: must be a table, got 1"),
]


@pytest.mark.parametrize("field,value,message", BAD, ids=[b[0] + ":" + str(b[1])[:12] for b in BAD])
def test_bad_spec_is_one_clear_line(tmp_path: Path, field: str, value: Any, message: str) -> None:
    path = tmp_path / "x.toml"
    path.write_text(tomli_w.dumps(_with(field, value)))
    with pytest.raises(SpecError) as err:
        load_spec(path)
    assert str(err.value) == f"{path}: {message}"  # the whole line: file, field and what is wrong, nothing more


# A user trainer's spec (bench.trainer's contract): no task or model, its own metric, direction and worst score.
USER: dict[str, Any] = {
    "name": "user_demo", "trainer": {"name": "tests.accuracy_trainer:fit"}, "scientific": {"width": [2, 4]},
    "metric": {"name": "accuracy", "direction": "maximize", "worst": 0.5},
    "search_space": {"lr": {"type": "float", "low": 0.01, "high": 0.5, "log": True}},
    "budget": {"studies": 1, "trials": 2, "epochs": 3},
}
_SCI = {"depths": None, "model.cell": None}  # arms declared in [scientific] instead of the depths shorthand
_MATCHED_WIDTHS = {"depths": None, "model.hidden": None, "scientific.hidden": [8, 16], "model.capacity":
                   "matched_params", "model.target_params": 5000}


# Mistakes that take more than one field to make, or a user trainer's spec: (base, changes, the whole message).
_CELLS = {**_SCI, "scientific.cell": ["lstm", "gru"]}  # depth not scientific: [model] depth is then checked
_MATCHED = {"model.capacity": "matched_params"}
EDITS: list[tuple[dict[str, Any], dict[str, Any], str]] = [
    # every lower and upper limit of spec.py's _positive / _at_most checks, each alone
    (TINY, {**_CELLS, "model.depth": 0}, "model.depth: must be at least 1, got 0"),
    (TINY, {**_CELLS, "model.depth": 65}, "model.depth: 65 exceeds the maximum of 64"),
    (TINY, {"model.embedding": 0}, "model.embedding: must be at least 1, got 0"),
    (TINY, {**_MATCHED, "model.target_params": 99}, "model.target_params: must be at least 100, got 99"),
    (TINY, {**_MATCHED, "model.target_params": 10**10 + 1},
     "model.target_params: 10000000001 exceeds the maximum of 10000000000"),
    (TINY, {"budget.epochs": 0}, "budget.epochs: must be at least 1, got 0"),
    (TINY, {"budget.studies": 0}, "budget.studies: must be at least 1, got 0"),
    (TINY, {"evaluation.seed_offset": -1}, "evaluation.seed_offset: must be at least 0, got -1"),
    (TINY, {"pruner.kind": "median", "pruner.n_startup_trials": -1},
     "pruner.n_startup_trials: must be at least 0, got -1"),
    (TINY, {"pruner.kind": "median", "pruner.n_warmup_steps": -1}, "pruner.n_warmup_steps: must be at least 0, got -1"),
    (TINY, {"sampler.n_startup_trials": 0}, "sampler.n_startup_trials: must be at least 1, got 0"),
    (USER, {"metric.extra": 1}, "metric.extra: unknown field (expected one of: direction, name, worst)"),
    (USER, {"metric.name": 3}, "metric.name: must be a string, got 3"),
    (TINY, {"fixed.lr": 0.0}, "fixed.lr: lr = 0.0 is out of its domain"),  # within [0, 100] but not above 0
    (TINY, {"fixed.dropout": 1.0}, "fixed.dropout: dropout = 1.0 is out of its domain"),  # [0, 1)
    (TINY, {"search_space.init.choices": None}, "search_space.init.choices: missing (required)"),
    (TINY, {"search_space.dropout.low": -0.5}, "search_space.dropout.low: dropout = -0.5 is out of its domain"),
    (TINY, {"search_space.depth": {"type": "int", "low": 1, "high": 2}},
     "search_space.depth: depth is scientific (its values are the arms); remove it from [search_space]"),
    (USER, {"fixed.momentum": math.inf}, "fixed.momentum: must be finite, got inf"),  # a user trainer's value
    ({**USER, "trainer": {"name": None}}, {}, "trainer.name: must be a string, got None"),  # JSON null
    (TINY, _MATCHED_WIDTHS,
     'scientific.hidden: cannot be compared under model.capacity = "matched_params" (that solves the hidden size per '
     'arm); use capacity = "fixed_width"'),
    (TINY, {"budget": 3}, "budget: must be a table, got int"),
    (TINY, {"budget.clip_norm": math.inf}, "budget.clip_norm: must be finite, got inf"),
    (TINY, {"task.name": ""}, "task.name: must not be empty"),
    (TINY, {"task.sub": {"a": 1}}, "task.sub: nested tables are not task parameters"),
    (TINY, {"search_space.lr.step": 0.01}, "search_space.lr.step: cannot be combined with log = true"),
    (TINY, {"search_space.dropout.step": -0.1}, "search_space.dropout.step: must be above 0, got -0.1"),
    (TINY, {"search_space.init.choices": [1]}, "search_space.init.choices[0]: init must be a name, got 1"),
    (TINY, {"fixed.weight_decay": "x"}, "fixed.weight_decay: weight_decay must be a number, got 'x'"),
    (TINY, {"scientific.depth": [1, 2]},
     "depths: is shorthand for [scientific] depth = [...]; give one or the other, not both"),
    (TINY, {"depths": None},
     "scientific: missing: declare what the arms compare, e.g. [scientific] depth = [1, 2] (or the shorthand depths "
     "= [1, 2])"),
    (TINY, {"depths": None, "scientific.depth": 3}, "scientific.depth: must be a non-empty list of values, got 3"),
    (TINY, {"depths": None, "scientific.depth": [2]}, "scientific: gives 1 arm; a comparison needs at least 2"),
    (TINY, {**_SCI, "scientific.depth": [1], "scientific.cell": ["lstm", "rnn"]},
     "scientific.cell[1]: 'rnn' is not one of: lstm, gru"),
    (TINY, {"depths": None, "scientific.colour": [1, 2]},
     "scientific.colour: unknown scientific hyperparameter (the built-in model's are: depth, hidden, cell, "
     "embedding; a [trainer] of your own may take any)"),
    (TINY, {"fixed.depth": 2}, "fixed.depth: depth is scientific (its values are the arms); remove it from [fixed]"),
    (TINY, {"evaluation.seeds": 2, "baseline.from_depth": 1, "baseline.from_arm": {"depth": 1}},
     "baseline.from_arm: give from_depth or from_arm, not both"),
    (TINY, {**_SCI, "scientific.depth": [1, 2], "scientific.cell": ["lstm", "gru"], "evaluation.seeds": 2,
     "baseline.from_depth": 1},
     "baseline.from_depth: names a depth, but the arms differ in depth, cell; use from_arm = { ... } with a value "
     "for each"),
    (TINY, {"evaluation.seeds": 2, "baseline.from_depth": 3}, "baseline.from_depth: 3 is not one of the depths [1, 2]"),
    (TINY, {"evaluation.seeds": 2, "baseline.from_arm": {"cell": "gru"}},
     "baseline.from_arm: must give exactly the scientific hyperparameters: depth"),
    (TINY, {"evaluation.seeds": 2, "baseline.from_arm": {"depth": 5}},
     "baseline.from_arm.depth: 5 is not one of the arms' values [1, 2]"),
    (TINY, {"evaluation.seeds": 2, "baseline.from_arm": {"depth": 1.0}},
     "baseline.from_arm.depth: 1.0 is not one of the arms' values [1, 2]"),
    (TINY, {"analysis.alpha": 0.5}, "analysis.alpha: must be above 0 and below 0.5, got 0.5"),
    (TINY, {"analysis.min_effect": 10.0},
     "analysis.min_effect: must be from 0 to 10 (a relative difference), got 10.0"),
    (TINY, {"budget.studies": 101}, "budget.studies: 101 is more than 100"),
    (TINY, {"budget.trials": 100001}, "budget.trials: 100001 is more than 100000"),
    (TINY, {"evaluation.seeds": 1001}, "evaluation.seeds: 1001 is more than 1000"),
    (TINY, {"metric.worst": 1.0},
     "metric.worst: only applies to a [trainer] of your own (the built-in scores a diverged run at its task's "
     "trivial loss)"),
    (TINY, {"metric.name": "accuracy"}, "metric.name: 'accuracy' is not one of: val_loss"),
    (TINY, {"trainer.name": "tests.accuracy_trainer:fit"},
     "task: is not used with a [trainer] (a user trainer makes its own data and model); remove it, or remove "
     "[trainer] to train bench's LSTM/GRU"),
    (USER, {"trainer.name": "nocolon"}, "trainer.name: 'nocolon' is not of the form 'package.module:function'"),
    (USER, {"trainer.name": ":fit"}, "trainer.name: ':fit' is not of the form 'package.module:function'"),
    (USER, {"metric.name": "has space"}, "metric.name: 'has space' must be 1-64 letters, digits, '_', '-' or '.'"),
    (USER, {"metric.worst": 0.0},
     'metric.worst: must be above 0 with direction = "maximize" (the report compares geometric means), got 0.0: use '
     "the score of a run that learned nothing, e.g. the accuracy of guessing"),
    (USER, {"metric.worst": None},
     "metric.worst: required with a [trainer]: the score of a run that diverged or learned nothing, the same for "
     "every arm (e.g. the loss of predicting the mean, or the accuracy of guessing)"),
    (USER, {"metric.direction": "up"}, "metric.direction: 'up' is not one of: minimize, maximize"),
    (USER, {"search_space.bad-name": {"type": "float", "low": 0.0, "high": 1.0}},
     "search_space.bad-name: a parameter name must be a Python identifier"),
    (USER, {"search_space.opt": {"type": "categorical", "choices": ["a", [1, 2]]}},
     "search_space.opt.choices[1]: must be a string, number or boolean, got [1, 2]"),
    (USER, {"scientific": {"bad-name": [1, 2]}},
     "scientific.bad-name: a scientific hyperparameter's name must be a Python identifier"),
    (USER, {"scientific.width": [1, [2]]}, "scientific.width[1]: must be a string, number or boolean, got [2]"),
    (USER, {"scientific.width": ["a", "a"]}, "scientific.width: must not repeat a value"),
    (USER, {"scientific.width": [2, float("nan")]}, "scientific.width[1]: must be finite, got nan"),
    (USER, {"model.hidden": 8},
     "model: is not used with a [trainer] (a user trainer makes its own data and model); remove it, or remove "
     "[trainer] to train bench's LSTM/GRU"),
]



@pytest.mark.parametrize("base,changes,message", EDITS, ids=[e[2].split(":")[0] for e in EDITS])
def test_bad_arms_limits_and_user_specs_are_one_clear_line(tmp_path: Path, base: dict[str, Any],
                                                          changes: dict[str, Any], message: str) -> None:
    path = tmp_path / "x.json"
    path.write_text(json.dumps(_edit(base, changes)))
    with pytest.raises(SpecError) as err:
        load_spec(path)
    assert str(err.value) == f"{path}: {message}"


def test_a_user_trainer_checks_its_own_search_space_domains(tmp_path: Path) -> None:
    """With a [trainer] of its own, a search-space entry is any name with any storable bounds: bench's domain
    checks (lr at most 100, a known hyperparameter name) are for its built-in trainer only."""
    path = tmp_path / "u.json"
    path.write_text(json.dumps(_edit(USER, {"search_space.lr": {"type": "float", "low": 1.0, "high": 500.0},
                                            "search_space.momentum": {"type": "float", "low": 0.5, "high": 0.99}})))
    spec = load_spec(path)
    assert {p.name: (p.low, p.high) for p in spec.search_space} == {"lr": (1.0, 500.0), "momentum": (0.5, 0.99)}


def test_from_arm_of_a_depth_only_spec_is_from_depth(tmp_path: Path) -> None:
    """``baseline.from_arm = {depth = 2}`` where depth is the only scientific name is the same spec as
    ``from_depth = 2``: the same transferred arm and the same hash."""
    specs = []
    for how in ({"baseline.from_arm": {"depth": 2}}, {"baseline.from_depth": 2}):
        path = tmp_path / "x.json"
        path.write_text(json.dumps(_edit(TINY, {"evaluation.seeds": 2, **how})))
        specs.append(load_spec(path))
    by_arm, by_depth = specs
    assert by_arm.transfer_arm == by_depth.transfer_arm == by_depth.arms[1]
    assert by_arm.hash == by_depth.hash and by_arm.baseline_from == 2


def test_user_spec_and_arm_lookups(tmp_path: Path) -> None:
    path = tmp_path / "u.json"
    path.write_text(json.dumps(_edit(USER, {"baseline.from_arm": {"width": 4}, "evaluation.seeds": 2})))
    spec = load_spec(path)
    assert (spec.trainer, spec.metric, spec.direction, spec.worst, spec.task) == (
        "tests.accuracy_trainer:fit", "accuracy", "maximize", 0.5, None)
    assert [a.label for a in spec.arms] == ["width 2", "width 4"] and spec.sign == -1
    assert spec.transfer_arm == spec.arm('{"width":4}') and spec.baseline_from_arm == (("width", 4),)
    with pytest.raises(KeyError) as missing:
        spec.arm('{"width":3}')
    assert missing.value.args == ('{"width":3}',)  # names the key it could not find
    assert spec.arm_depth(spec.arms[0]) is None  # a user trainer's arms have no depth unless they name one
    assert parse_spec(_edit(USER, {"metric.name": None})).metric == "score"  # a user metric's default name
    for depths, want in (([1, 3], [1, 3]), (["shallow", "deep"], [None, None]), ([True, False], [None, None])):
        named = parse_spec(_edit(USER, {"scientific": {"depth": depths}}))
        assert [named.arm_depth(a) for a in named.arms] == want  # an integer depth only (a bool is not one)
    with pytest.raises(ValueError, match=r"direction must be one of \('minimize', 'maximize'\), got 'up'"):
        loss_sign("up")
    assert (loss_sign("minimize"), loss_sign("maximize")) == (1, -1)


def test_model_for_puts_the_arm_values_and_its_solved_width_in() -> None:
    """An arm's model is [model] with the arm's values; under matched_params across arms that differ in more than
    depth, the width solved for that arm (hidden_by_arm, set by validation) becomes its only hidden_by_depth."""
    spec = parse_spec(_edit(TINY, {**_SCI, "scientific.cell": ["lstm", "gru"], "model.depth": 2}))
    lstm, gru = spec.arms
    solved = replace(spec, model=replace(spec.model, hidden_by_arm=((gru.key, 12),)))
    assert solved.model_for(gru) == replace(spec.model, cell="gru", hidden_by_depth=((2, 12),), hidden_by_arm=())
    assert solved.model_for(lstm) == replace(solved.model, cell="lstm")  # nothing solved for it: [model] as given
    assert spec.model_for(gru) == replace(spec.model, cell="gru")
    stored = spec.to_dict()  # what is hashed: the arms under "scientific" (a depth-only spec keeps "depths")
    assert stored["scientific"] == [["cell", ["lstm", "gru"]]] and "depths" not in stored
    assert stored["model"]["depth"] == 2


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="no such file"):
        load_spec(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = \n")
    with pytest.raises(SpecError, match=r"bad.toml: not valid TOML"):
        load_spec(bad)
    broken = tmp_path / "broken.json"
    broken.write_text("{\"name\": ")
    with pytest.raises(SpecError, match=r"^\S+broken.json: not valid JSON: Expecting value: line 1 column 10"):
        load_spec(broken)
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2]")
    with pytest.raises(SpecError) as err:
        load_spec(listed)
    assert str(err.value) == f"{listed}: the top level must be a table of the spec's fields"
    folder = tmp_path / "folder.toml"
    folder.mkdir()
    with pytest.raises(SpecError, match=r"folder.toml: cannot read: \[Errno 21\] Is a directory"):
        load_spec(folder)


def test_a_spec_that_cannot_be_stored_is_refused_by_the_safety_net(monkeypatch: pytest.MonkeyPatch) -> None:
    """Behind the field checks, parse_spec serialises what it will hash and store; a failure there is a spec
    error naming the cause (simulated: every field check passes on a valid spec)."""
    from bench import spec as spec_mod

    def unstorable(self: object) -> dict[str, Any]:
        raise TypeError("Object of type datetime is not JSON serializable")

    monkeypatch.setattr(spec_mod.Spec, "to_dict", unstorable)
    with pytest.raises(SpecError) as err:
        parse_spec(TINY)
    assert str(err.value) == "<spec>: spec: cannot be stored as JSON: Object of type datetime is not JSON serializable"


def test_the_deepest_allowed_arm_and_canonical_json_refusing_nan() -> None:
    assert [a.label for a in parse_spec(_edit(TINY, {"depths": [1, 64]})).arms] == ["depth 1", "depth 64"]
    with pytest.raises(ValueError, match="not JSON compliant"):
        canonical_json({"a": math.nan})  # what is hashed must read back the same: no NaN or inf


def test_spec_files_are_read_as_utf8_whatever_the_locale(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A spec written on one machine reads the same on another: the file's encoding is named, not the locale's
    (which is what Path.read_text falls back to)."""
    encodings: list[object] = []
    real = Path.read_text

    def spy(self: Path, encoding: str | None = None, errors: str | None = None) -> str:
        encodings.append(encoding)
        return real(self, encoding=encoding, errors=errors)

    monkeypatch.setattr(Path, "read_text", spy)
    path = tmp_path / "café.toml"
    path.write_text("# written in a café\n" + tomli_w.dumps(TINY), encoding="utf-8")
    assert load_spec(path).name == "tiny"
    assert len(encodings) == 1 and isinstance(encodings[0], str) and codecs.lookup(encodings[0]).name == "utf-8"


def test_valid_spec_is_frozen_and_hash_is_canonical(tmp_path: Path) -> None:
    spec = parse_spec(TINY, "a.toml")
    with pytest.raises(AttributeError):
        spec.name = "other"  # type: ignore[misc]
    reordered = dict(reversed(list(copy.deepcopy(TINY).items())))
    assert parse_spec(reordered, "b.toml").hash == spec.hash  # key order and file name do not matter
    assert len(spec.hash) == 64
    assert parse_spec(_with("budget.trials", 3)).hash != spec.hash
    assert parse_spec(_with("task.data_seed", 1)).hash != spec.hash


def test_shipped_specs_load_and_cover_every_builtin_task() -> None:
    """Every studies/*.toml validates (task parameters and matched sizes included), and each built-in workload
    has one, so a newcomer can start from a file for any of them."""
    from bench.service.run import validate
    from bench.suite import load_suite
    from bench.tasks.registry import BUILTIN

    root = Path(__file__).resolve().parent.parent
    tasks = set()
    for path in sorted((root / "studies").glob("*.toml")):
        spec = validate(load_spec(path))
        assert spec.depths and spec.budget.trials >= 1
        assert spec.task is not None
        tasks.add(spec.task.name)
    assert tasks == set(BUILTIN)
    for path in sorted((root / "studies" / "suites").glob("*.toml")):
        assert {m.spec.task.name for m in load_suite(path).members if m.spec.task} <= set(BUILTIN)


def test_omitted_fields_take_their_defaults() -> None:
    spec = parse_spec(_edit(TINY, {"task.data_seed": None, "model": {}, "budget.studies": None,
                                   "budget.batch_size": None}))
    assert spec.task.data_seed == 0 and spec.model == ModelSpec()
    assert (spec.budget.studies, spec.budget.batch_size, spec.budget.clip_norm) == (3, 64, 1.0)


def test_hparams_merge_defaults_fixed_sampled() -> None:
    spec = parse_spec(_with("fixed", {"weight_decay": 0.001}))
    hp = spec.hparams({"lr": 0.02, "dropout": 0.1})
    assert hp == Hparams(lr=0.02, weight_decay=0.001, dropout=0.1)


def test_diff_fields_names_changed_leaves() -> None:
    a = parse_spec(TINY).to_dict()
    b = parse_spec(_with("search_space.lr.high", 0.05)).to_dict()
    c = parse_spec(_with("budget.trials", 7)).to_dict()
    assert diff_fields(a, b) == ["search_space.lr.high"]
    assert diff_fields(a, c) == ["budget.trials"]


def test_widest_allowed_model_and_step_equal_to_the_range_load() -> None:
    spec = parse_spec(_with("model", {"hidden": MAX_WIDTH, "embedding": MAX_WIDTH}))
    assert spec.model.hidden == MAX_WIDTH  # the memory estimate at init, not the spec, refuses what does not fit
    stepped = _with("search_space.dropout", {"type": "float", "low": 0.0, "high": 0.3, "step": 0.3})
    assert {p.name: p.step for p in parse_spec(stepped).search_space}["dropout"] == 0.3
    listed = parse_spec(_with("task.tags", ["a", 1, 2.5, True, [1, 2]]))
    assert dict(listed.task.params)["tags"] == ["a", 1, 2.5, True, [1, 2]]


# ---------------------------------------------------------------- hash sensitivity (invariant 1)

# One valid change per field of the hashed spec. Every leaf of Spec.to_dict() must appear here (checked below), so
# a field added later without a test of its own fails test_every_hashed_field_has_a_change.
CHANGES: list[tuple[str, Any]] = [
    ("name", "tiny2"),
    ("depths", [1, 3]),
    ("task.name", "charlm"),
    ("task.data_seed", 7),
    ("task.vocab", 6),
    ("task.length", 5),
    ("task.n_train", 129),
    ("task.n_val", 65),
    ("task.n_test", 65),
    ("model.cell", "gru"),
    ("model.hidden", 9),
    ("model.embedding", 5),
    ("model.capacity", "matched_params"),  # with target_params: see _changed
    ("model.target_params", 5000),
    ("search_space.lr.low", 2e-3),
    ("search_space.lr.high", 4e-2),
    ("search_space.lr.log", False),
    ("search_space.lr.type", "int"),  # with int bounds: see _changed
    ("search_space.lr.step", 1e-3),  # needs log = false: see _changed
    ("search_space.init.choices", ["default", "xavier_uniform"]),
    ("search_space.dropout.high", 0.4),
    ("search_space.weight_decay", {"type": "float", "low": 0.0, "high": 0.1}),
    ("budget.trials", 3),
    ("budget.epochs", 2),
    ("budget.studies", 2),
    ("budget.batch_size", 16),
    ("budget.clip_norm", 2.0),
    ("sampler.kind", "random"),
    ("sampler.seed", 1),
    ("sampler.n_startup_trials", 3),
    ("pruner.kind", "median"),
    ("pruner.n_startup_trials", 4),
    ("pruner.n_warmup_steps", 2),
    ("evaluation.seeds", 2),
    ("evaluation.top_k", 2),
    ("evaluation.seed_offset", 5),
    ("fixed", {"weight_decay": 0.01}),
    ("baseline", {"lr": 0.01}),  # needs evaluation.seeds: see _changed
    ("baseline.from_depth", 2),
]


def _changed(field_: str, value: Any) -> dict[str, Any]:
    data = _with(field_, value)
    if field_ == "model.capacity":
        data["model"]["target_params"] = 5000
    if field_ == "model.target_params":
        data["model"]["capacity"] = "matched_params"
    if field_ == "search_space.lr.type":
        data["search_space"]["lr"] = {"type": "int", "low": 1, "high": 3}
    if field_ == "search_space.lr.step":
        data["search_space"]["lr"]["log"] = False
    if field_.startswith("baseline"):
        data["evaluation"] = {"seeds": 1}
    return data


@pytest.mark.parametrize("field_,value", CHANGES, ids=[c[0] for c in CHANGES])
def test_hash_changes_with_every_field(field_: str, value: Any) -> None:
    base = parse_spec(TINY)
    if field_.startswith("baseline"):
        base = parse_spec({**TINY, "evaluation": {"seeds": 1}})
    if field_ == "model.target_params":
        base = parse_spec(_changed("model.capacity", "matched_params"))
        value = 6000
    changed = parse_spec(_changed(field_, value))
    assert changed.hash != base.hash
    assert diff_fields(base.to_dict(), changed.to_dict())  # and the refusal can name what changed


def _leaves(d: dict[str, Any], prefix: str = "") -> set[str]:
    out: set[str] = set()
    for k, v in d.items():
        if isinstance(v, dict) and v and k not in ("fixed", "baseline"):
            out |= _leaves(v, f"{prefix}{k}.")
        else:
            out.add(f"{prefix}{k}")
    return out


def test_every_hashed_field_has_a_change() -> None:
    """The fields of the hashed dict, against the table above (search-space entries and task params by kind)."""
    spec = parse_spec({**TINY, "model": {**TINY["model"], "capacity": "matched_params", "target_params": 5000}})
    leaves = _leaves(spec.to_dict())
    covered = {f for f, _ in CHANGES}
    covered = {"task.params." + c[5:] if c.startswith("task.") and c[5:] not in ("name", "data_seed") else c
               for c in covered}
    # Derived or fixed-by-validation fields: hidden_by_depth (solved from target_params, tested in test_core),
    # baseline_from (set by baseline.from_depth), metric and direction (only one value is valid today).
    derived = {"model.hidden_by_depth", "baseline_from", "metric", "direction"}
    leaves = {x for x in leaves if not x.startswith("search_space.")} | {"search_space"}
    covered = {c for c in covered if not c.startswith("search_space.")} | {"search_space"}
    assert leaves - derived <= covered, sorted(leaves - derived - covered)


def test_hash_ignores_analysis_and_source() -> None:
    spec = parse_spec(TINY, "a.toml")
    assert parse_spec({**TINY, "analysis": {"alpha": 0.01, "min_effect": 0.2}}, "b.toml").hash == spec.hash


def test_search_space_alone_changes_the_hash() -> None:
    """Invariant 1 on the field that matters most: a changed search space is a different experiment."""
    a = parse_spec(TINY)
    b = parse_spec(_with("search_space.lr.high", 0.05))
    assert a.to_dict()["search_space"] != b.to_dict()["search_space"]
    assert a.hash != b.hash
    c = parse_spec(_with("search_space.dropout", None))
    assert c.hash != a.hash


# ---------------------------------------------------------------- properties (Hypothesis)


@st.composite
def raw_specs(draw: st.DrawFn) -> dict[str, Any]:
    """Valid raw specs (as TOML would give them) across every section."""
    space: dict[str, Any] = {}
    lr_low = draw(st.sampled_from([1e-4, 3e-4, 1e-3]))
    space["lr"] = {"type": "float", "low": lr_low, "high": lr_low * draw(st.sampled_from([10.0, 30.0, 100.0])),
                   "log": True}
    if draw(st.booleans()):
        space["dropout"] = {"type": "float", "low": 0.0, "high": draw(st.sampled_from([0.2, 0.5])),
                            **({"step": 0.1} if draw(st.booleans()) else {})}
    if draw(st.booleans()):
        space["init"] = {"type": "categorical", "choices": draw(st.lists(
            st.sampled_from(["default", "xavier_uniform", "orthogonal", "kaiming_uniform"]), min_size=1,
            max_size=4, unique=True))}
    raw: dict[str, Any] = {
        "name": draw(st.from_regex(r"[a-z][a-z0-9_-]{0,10}", fullmatch=True)),
        "depths": draw(st.lists(st.integers(1, 8), min_size=1, max_size=4, unique=True)),
        "task": {"name": "seq2seq", "data_seed": draw(st.integers(0, 5)), "vocab": draw(st.integers(3, 9))},
        "model": {"cell": draw(st.sampled_from(["lstm", "gru"])), "hidden": draw(st.integers(1, 64))},
        "search_space": space,
        "budget": {"trials": draw(st.integers(1, 50)), "epochs": draw(st.integers(1, 5)),
                   "studies": draw(st.integers(1, 5)), "batch_size": draw(st.integers(1, 128))},
        "sampler": {"kind": draw(st.sampled_from(["tpe", "random", "qmc"])), "seed": draw(st.integers(0, 9))},
        "pruner": {"kind": draw(st.sampled_from(["none", "median", "hyperband"]))},
        "evaluation": {"seeds": draw(st.integers(0, 5))},
    }
    if raw["evaluation"]["seeds"] and draw(st.booleans()):
        raw["baseline"] = {"lr": 0.01, "from_depth": draw(st.sampled_from(raw["depths"]))}
    if "dropout" not in space and draw(st.booleans()):
        raw["fixed"] = {"dropout": draw(st.sampled_from([0.0, 0.1]))}
    return raw


def _shuffled(d: Any, rnd: random.Random) -> Any:
    if not isinstance(d, dict):
        return d
    items = list(d.items())
    rnd.shuffle(items)
    return {k: _shuffled(v, rnd) for k, v in items}


@given(raw_specs(), st.randoms(use_true_random=False))
def test_spec_round_trips_through_toml_and_storage(raw: dict[str, Any], rnd: random.Random) -> None:
    spec = parse_spec(raw)
    # TOML text -> the same spec and hash; key order never matters.
    again = parse_spec(tomllib.loads(tomli_w.dumps(_shuffled(raw, rnd))))
    assert again == spec and again.hash == spec.hash
    # What the ledger stores (canonical JSON) hashes back to the same value: a worker's check compares like with like.
    stored = json.loads(canonical_json(spec.to_dict()))
    assert stored == spec.to_dict() and spec_hash(stored) == spec.hash
    assert diff_fields(stored, spec.to_dict()) == []
    assert spec.depths == tuple(sorted(raw["depths"])) and [a.depth for a in spec.arms] == list(spec.depths)
    assert [p.name for p in spec.search_space] == sorted(raw["search_space"])


@given(raw_specs(), st.sampled_from(CHANGES))
def test_hash_property_any_field_change_changes_the_hash(raw: dict[str, Any], change: tuple[str, Any]) -> None:
    """Whatever the spec, a change to any one field that gives a different (valid) spec gives a different hash."""
    base = parse_spec(raw)
    mutated = copy.deepcopy(raw)
    field_, value = change
    node = mutated
    *parents, leaf = field_.split(".")
    for k in parents:
        node = node.setdefault(k, {})
    node[leaf] = value
    if field_ == "model.capacity":
        mutated["model"]["target_params"] = 5000
    if field_ == "model.target_params":
        mutated["model"]["capacity"] = "matched_params"
    try:
        changed = parse_spec(mutated)
    except SpecError:
        assume(False)
        return
    assert (changed == base) == (changed.hash == base.hash)
    assert (changed == base) == (diff_fields(base.to_dict(), changed.to_dict()) == [])
