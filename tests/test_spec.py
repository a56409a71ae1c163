"""Spec loading: every malformed spec is one clean error naming file and field; the hash is canonical."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from bench.spec import Hparams, SpecError, diff_fields, load_spec, parse_spec
from tests.conftest import TINY


def _with(path: str, value: Any) -> dict[str, Any]:
    """TINY with one dotted field set (value None deletes it)."""
    data = copy.deepcopy(TINY)
    keys = path.split(".")
    node = data
    for k in keys[:-1]:
        node = node.setdefault(k, {})
    if value is None:
        node.pop(keys[-1], None)
    else:
        node[keys[-1]] = value
    return data


BAD = [
    ("name", None, "name: missing"),
    ("name", "has space", "name: 'has space' must be"),
    ("depths", [], "depths: must list at least one depth"),
    ("depths", [1, 1], "depths: must not repeat"),
    ("depths", [0, 2], "depths[0]: 0 must be an integer from 1 to 64"),
    ("depths", [1, 2.5], "depths[1]: 2.5 must be an integer"),
    ("depths", "3", "depths: must be a list"),
    ("task", None, "task: missing"),
    ("task.name", None, "task.name: missing"),
    ("task.data_seed", "x", "task.data_seed: must be an integer"),
    ("search_space", None, "search_space: missing"),
    ("search_space", {}, "search_space: must tune at least one"),
    ("search_space.lr.low", 0.1, "search_space.lr.low: low 0.1 must be below high 0.03"),
    ("search_space.lr.low", -1.0, "search_space.lr.low: must be above 0 when log = true"),
    ("search_space.lr.type", "floaty", "search_space.lr.type: 'floaty' is not one of"),
    ("search_space.lr.high", "big", "search_space.lr.high: must be a number"),
    ("search_space.lr.typo", 1, "search_space.lr.typo: unknown field"),
    ("search_space.momentum", {"type": "float", "low": 0.1, "high": 0.9}, "search_space.momentum: unknown hyper"),
    ("search_space.init.choices", [], "search_space.init.choices: must not be empty"),
    ("search_space.init.choices", ["default", "bogus"], "search_space.init.choices[1]: 'bogus' is not one of"),
    ("search_space.init.choices", ["default", "default"], "search_space.init.choices: must not repeat"),
    ("search_space.init", {"type": "float", "low": 0.0, "high": 1.0}, "search_space.init.type: init takes names"),
    ("search_space.dropout.high", 1.5, "search_space.dropout.high: dropout = 1.5 is out of its domain"),
    ("search_space.lr", 0.01, "search_space.lr: must be a table"),
    ("budget", None, "budget: missing"),
    ("budget.trials", 0, "budget.trials: must be at least 1"),
    ("budget.trials", True, "budget.trials: must be an integer"),
    ("budget.epochs", None, "budget.epochs: missing"),
    ("budget.batch_size", -3, "budget.batch_size: must be at least 1"),
    ("budget.clip_norm", 0.0, "budget.clip_norm: must be above 0"),
    ("budget.extra", 1, "budget.extra: unknown field"),
    ("sampler.kind", "grid", "sampler.kind: 'grid' is not one of: tpe, random, qmc"),
    ("pruner.kind", "asha", "pruner.kind: 'asha' is not one of"),
    ("model.cell", "rnn", "model.cell: 'rnn' is not one of: lstm, gru"),
    ("model.hidden", 0, "model.hidden: must be at least 1"),
    ("model.capacity", "matched_params", "model.target_params: required"),
    ("model.target_params", 5000, "model.target_params: only applies"),
    ("model.hidden_by_depth", [[1, 8]], "model.hidden_by_depth: unknown field"),
    ("model.hidden", "wide", "model.hidden: must be an integer, got 'wide'"),
    ("budget.clip_norm", "x", "budget.clip_norm: must be a number"),
    ("evaluation.seeds", -1, "evaluation.seeds: must be at least 0"),
    ("evaluation.top_k", 0, "evaluation.top_k: must be at least 1"),
    ("fixed.lr", 0.01, "fixed.lr: is also in search_space"),
    ("fixed.colour", 1, "fixed.colour: unknown hyperparameter"),
    ("baseline.lr", 0.01, "evaluation.seeds: must be at least 1 when a [baseline] is given"),
    ("baseline.init", "nope", "baseline.init: 'nope' is not one of"),
    ("metric.direction", "maximize", "metric.direction: 'maximize' is not one of"),
    ("surprise", 1, "surprise: unknown field"),
]


@pytest.mark.parametrize("field,value,message", BAD, ids=[b[0] + ":" + str(b[1])[:12] for b in BAD])
def test_bad_spec_is_one_clear_line(tmp_path: Path, field: str, value: Any, message: str) -> None:
    path = tmp_path / "x.toml"
    path.write_text(tomli_w.dumps(_with(field, value)))
    with pytest.raises(SpecError) as err:
        load_spec(path)
    text = str(err.value)
    assert text.startswith(f"{path}: "), text
    assert message in text, text
    assert "\n" not in text


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="no such file"):
        load_spec(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = \n")
    with pytest.raises(SpecError, match=r"bad.toml: not valid TOML"):
        load_spec(bad)


def test_valid_spec_is_frozen_and_hash_is_canonical(tmp_path: Path) -> None:
    spec = parse_spec(TINY, "a.toml")
    with pytest.raises(AttributeError):
        spec.name = "other"  # type: ignore[misc]
    reordered = dict(reversed(list(copy.deepcopy(TINY).items())))
    assert parse_spec(reordered, "b.toml").hash == spec.hash  # key order and file name do not matter
    assert len(spec.hash) == 64
    assert parse_spec(_with("budget.trials", 3)).hash != spec.hash
    assert parse_spec(_with("task.data_seed", 1)).hash != spec.hash


def test_shipped_specs_load() -> None:
    root = Path(__file__).resolve().parent.parent
    for path in sorted((root / "studies").glob("*.toml")):
        spec = load_spec(path)
        assert spec.depths and spec.budget.trials >= 1


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
