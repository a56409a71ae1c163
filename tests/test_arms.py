"""Arms from [scientific]: cell, width and grids of them run end to end with exact budgets; the depth shorthand keeps
its hash; a scientific name used in two roles is one clear error."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import optuna
import pytest
import tomli_w
from optuna.trial import TrialState

from bench.cli import main
from bench.service.run import validate
from bench.spec import Arm, SpecError, load_spec, parse_spec
from bench.store.ledger import Ledger
from bench.store.storage import make_engine, normalize_url, optuna_storage
from bench.tuning.studies import all_studies
from tests.conftest import TINY

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
pytestmark = pytest.mark.xdist_group("distributed")  # each run starts worker processes


def _spec(name: str, scientific: dict[str, list[Any]], **overrides: Any) -> dict[str, Any]:
    data = copy.deepcopy(TINY)
    del data["depths"]
    data["model"] = {"hidden": 8, "embedding": 4}
    data.update(name=name, scientific=scientific, **overrides)
    return data


def _write(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / f"{data['name']}.toml"
    path.write_text(tomli_w.dumps(data))
    return path


# name -> (spec, expected labels in arm order, expected study names)
CASES: dict[str, tuple[dict[str, Any], list[str], list[str]]] = {
    "cells": (_spec("cells", {"cell": ["lstm", "gru"]}),
              ["cell lstm", "cell gru"], ["cells-lstm", "cells-gru"]),
    "widths": (_spec("widths", {"hidden": [16, 8]}, model={"embedding": 4, "depth": 2}),
               ["hidden 8", "hidden 16"], ["widths-hidden8", "widths-hidden16"]),
    "grid": (_spec("grid", {"depth": [1, 2], "cell": ["lstm", "gru"]}, budget={**TINY["budget"], "studies": 2},
                   evaluation={"seeds": 1}, baseline={"lr": 0.01, "from_arm": {"depth": 1, "cell": "gru"}}),
             ["depth 1, cell lstm", "depth 1, cell gru", "depth 2, cell lstm", "depth 2, cell gru"],
             [f"grid-{a}-{r}" for a in ("depth1-lstm", "depth1-gru", "depth2-lstm", "depth2-gru")
              for r in ("s0", "s1", "eval", "baseline", "transfer")]),
}


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'bench.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.mark.parametrize("case", list(CASES))
def test_arms_run_end_to_end_with_exact_budgets(tmp_path: Path, url: str, case: str) -> None:
    data, labels, names = CASES[case]
    path = _write(tmp_path, data)
    out = tmp_path / "rep"
    proc = subprocess.run([sys.executable, "-m", "bench", "run", str(path), "--storage", url, "--workers", "2",
                           "--threads", "1", "--out", str(out)], env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    spec = validate(load_spec(path))
    assert [a.label for a in spec.arms] == labels
    assert sorted(name for *_, name in all_studies(spec)) == sorted(names)

    engine = make_engine(normalize_url(url))
    ledger = Ledger(engine, Ledger.find_experiment(engine, spec.name)[0])  # type: ignore[index]
    slots = ledger.slots()
    engine.dispose()
    assert all(s["state"] == "done" for s in slots)
    per: dict[tuple[str, str, int], int] = {}
    for s in slots:
        per[(s["role"], s["arm"], s["study"])] = per.get((s["role"], s["arm"], s["study"]), 0) + 1
    trials, studies, seeds = spec.budget.trials, spec.budget.studies, spec.evaluation.seeds
    want = {("tune", a.key, k): trials for a in spec.arms for k in range(studies)}
    if seeds:
        want |= {("eval", a.key, k): seeds for a in spec.arms for k in range(studies)}
        want |= {(role, a.key, 0): seeds for a in spec.arms for role in ("baseline", "transfer")}
    assert per == want  # exact per arm and per study, every role

    storage = optuna_storage(normalize_url(url))
    for arm, role, k, name in all_studies(spec):
        study = optuna.load_study(study_name=name, storage=storage)
        attrs = study.user_attrs
        assert json.loads(attrs["arm"]) == dict(arm.values) and attrs["role"] == role and attrs["study"] == k
        assert attrs["spec_hash"] == spec.hash
        assert ("depth" in attrs) == ("depth" in dict(arm.values))  # only where depth is scientific
        model = spec.model_for(arm)
        for t in study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED)):
            assert t.user_attrs.get("hidden") in (None, model.hidden)
        if role == "tune":
            assert len(study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))) == trials
    storage.dispose()

    doc = json.loads((out / "report.json").read_text())
    assert doc["complete"] and doc["fairness"]["all_held"]
    assert [a["label"] for a in doc["arms"]] == labels
    assert [a["arm"] for a in doc["arms"]] == [dict(a.values) for a in spec.arms]
    assert [a["depth"] for a in doc["arms"]] == [spec.model_for(a).depth for a in spec.arms]
    assert [x["arm"] for x in doc["fairness"]["asymmetries"]] == labels
    assert list(doc["tuning"]) == labels
    if case != "cells":  # arms of different widths or depths differ in size, and the report says so
        counts = [a["n_params"] for a in doc["arms"]]
        assert len(set(counts)) > 1 and any("the parameters of" in c for c in doc["verdict"]["caveats"]), counts
    md = (out / "report.md").read_text()
    assert all(label in md for label in labels)
    if case == "grid":
        assert doc["settings"]["transfer_from"] == "depth 1, cell gru"


def test_cell_arms_build_each_cell(tmp_path: Path) -> None:
    spec = parse_spec(CASES["cells"][0])
    models = [spec.model_for(a) for a in spec.arms]
    assert [(m.cell, m.depth, m.hidden) for m in models] == [("lstm", 1, 8), ("gru", 1, 8)]
    assert [a.slug for a in spec.arms] == ["lstm", "gru"]
    grid = parse_spec(CASES["grid"][0])
    assert grid.arms[1] == Arm((("depth", 1), ("cell", "gru"))) and grid.arms[1].slug == "depth1-gru"
    assert grid.transfer_arm == grid.arms[1]


def test_depths_shorthand_and_scientific_depth_are_the_same_spec() -> None:
    short = parse_spec(TINY)
    data = copy.deepcopy(TINY)
    del data["depths"]
    data["scientific"] = {"depth": [2, 1]}
    long = parse_spec(data)
    assert long.hash == short.hash and long.to_dict() == short.to_dict()
    assert "scientific" not in short.to_dict() and "depth" not in short.to_dict()["model"]
    assert long.arms == short.arms
    # from_arm over depth-only arms is from_depth, the same hash.
    ev = {"evaluation": {"seeds": 1}}
    by_depth = parse_spec({**TINY, **ev, "baseline": {"from_depth": 1}})
    by_arm = parse_spec({**TINY, **ev, "baseline": {"from_arm": {"depth": 1}}})
    assert by_depth.hash == by_arm.hash


def test_new_keys_enter_the_hash_only_when_they_say_something() -> None:
    base = _spec("x", {"cell": ["lstm", "gru"]})
    plain = parse_spec(base)
    explicit = parse_spec({**base, "model": {**base["model"], "depth": 1}})
    deeper = parse_spec({**base, "model": {**base["model"], "depth": 2}})
    assert plain.hash == explicit.hash != deeper.hash
    assert plain.to_dict()["scientific"] == [["cell", ["lstm", "gru"]]] and "depths" not in plain.to_dict()
    swapped = parse_spec(_spec("x", {"cell": ["gru", "lstm"]}))
    assert swapped.hash != plain.hash and [a.label for a in swapped.arms] == ["cell gru", "cell lstm"]


def test_matched_params_solves_hidden_per_arm() -> None:
    data = _spec("m", {"cell": ["lstm", "gru"]}, model={"embedding": 4, "depth": 2, "capacity": "matched_params",
                                                         "target_params": 3000})
    spec = validate(parse_spec(data))
    solved = dict(spec.model.hidden_by_arm)
    lstm, gru = (spec.model_for(a) for a in spec.arms)
    assert solved[spec.arms[1].key] == gru.hidden_by_depth[0][1] > solved[spec.arms[0].key] > 0  # GRU: 3 gates
    assert "hidden_by_arm" in json.dumps(spec.to_dict()) and not spec.model.hidden_by_depth
    assert lstm.cell == "lstm" and gru.cell == "gru" and gru.depth == 2


BAD = [
    ({"search_space": {**TINY["search_space"], "depth": {"type": "int", "low": 1, "high": 3}}},
     {"depth": [1, 2]}, "search_space.depth: depth is scientific (its values are the arms); remove it"),
    ({"fixed": {"cell": "gru"}}, {"cell": ["lstm", "gru"]}, "fixed.cell: cell is scientific"),
    ({"baseline": {"hidden": 8}}, {"hidden": [8, 16]}, "baseline.hidden: hidden is scientific"),
    ({"model": {"cell": "gru"}}, {"cell": ["lstm", "gru"]}, "model.cell: cell is scientific"),
    ({"model": {"depth": 2}}, {"depth": [1, 2]}, "model.depth: depth is scientific"),
    ({}, {"lr": [0.1, 0.01]}, "scientific.lr: unknown scientific hyperparameter (the built-in model's are: depth, "),
    ({}, {"cell": ["lstm", "rnn"]}, "scientific.cell[1]: 'rnn' is not one of: lstm, gru"),
    ({}, {"depth": [1, 0]}, "scientific.depth[1]: 0 must be an integer from 1 to 64"),
    ({}, {"hidden": [8, 8.5]}, "scientific.hidden[1]: 8.5 must be an integer"),
    ({}, {"embedding": [4, 4]}, "scientific.embedding: must not repeat a value"),
    ({}, {"cell": ["gru"]}, "scientific: gives 1 arm; a comparison needs at least 2"),
    ({}, {"cell": []}, "scientific.cell: must be a non-empty list"),
    ({}, {}, "scientific: missing: declare what the arms compare"),
    ({"depths": [1, 2]}, {"depth": [1, 2]}, "depths: is shorthand for [scientific] depth = [...]; give one"),
    ({"model": {"capacity": "matched_params", "target_params": 3000}}, {"hidden": [8, 16]},
     "scientific.hidden: cannot be compared under model.capacity = \"matched_params\""),
    ({"evaluation": {"seeds": 1}, "baseline": {"from_depth": 1}}, {"depth": [1, 2], "cell": ["lstm", "gru"]},
     "baseline.from_depth: names a depth, but the arms differ in depth, cell; use from_arm"),
    ({"evaluation": {"seeds": 1}, "baseline": {"from_arm": {"cell": "gru"}}}, {"depth": [1, 2], "cell": ["gru"]},
     "baseline.from_arm: must give exactly the scientific hyperparameters: depth, cell"),
    ({"evaluation": {"seeds": 1}, "baseline": {"from_arm": {"cell": "lstm"}}}, {"cell": ["gru", "lstm"]}, None),
    ({"evaluation": {"seeds": 1}, "baseline": {"from_arm": {"depth": 3}}}, {"depth": [1, 2]},
     "baseline.from_arm.depth: 3 is not one of the arms' values [1, 2]"),
    ({"model": {"depth": 0}}, {"cell": ["lstm", "gru"]}, "model.depth: must be at least 1"),
]


@pytest.mark.parametrize("overrides,scientific,message", BAD, ids=[m or "ok" for _, _, m in BAD])
def test_bad_scientific_is_one_clear_line(tmp_path: Path, overrides: dict[str, Any], scientific: dict[str, Any],
                                          message: str | None) -> None:
    data = _spec("bad", scientific)
    if not scientific:
        del data["scientific"]
    data.update(overrides)
    path = _write(tmp_path, data)
    if message is None:
        load_spec(path)  # a valid from_arm
        return
    with pytest.raises(SpecError) as err:
        load_spec(path)
    text = str(err.value)
    assert text.startswith(f"{path}: ") and message in text and "\n" not in text, text


def test_conflict_exits_2_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, _spec("clash", {"cell": ["lstm", "gru"]}, fixed={"cell": "gru"}))
    db = tmp_path / "sub" / "b.db"
    assert main(["run", str(path), "--storage", f"sqlite:///{db}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"bench: error: {path}: fixed.cell: cell is scientific (its values are the arms); remove it from " \
                  "[fixed]", err
    assert not db.parent.exists()


def test_memory_limit_names_the_scientific_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, _spec("huge", {"hidden": [8, 60_000]}, model={"embedding": 4}))
    assert main(["init", str(path), "--storage", f"sqlite:///{tmp_path / 'sub' / 'b.db'}"]) == 2
    assert "scientific.hidden: 60000 exceeds the memory limit" in capsys.readouterr().err
    assert not (tmp_path / "sub").exists()


def test_published_depth_storage_still_reports_the_same_verdict(tmp_path: Path) -> None:
    """A depth-only spec keeps its hash, so the committed example storage (bench 0.2) is still this spec's."""
    db = tmp_path / "bench.db"
    shutil.copyfile(ROOT / "docs" / "lstm_depth" / "bench.db", db)
    out = tmp_path / "rep"
    assert main(["report", str(ROOT / "studies" / "lstm_depth.toml"), "--storage", f"sqlite:///{db}",
                 "--out", str(out)]) == 0
    published = json.loads((ROOT / "docs" / "lstm_depth" / "report.json").read_text())
    doc = json.loads((out / "report.json").read_text())
    assert doc["spec_hash"] == published["spec_hash"] and doc["verdict"] == published["verdict"]
    assert doc["arms"] == published["arms"]


def test_lists_of_multi_value_arms_stay_readable() -> None:
    from bench.report.inference import groups_text, join_labels

    assert join_labels(["depth 1", "depth 2"]) == "depth 1, depth 2"
    assert join_labels(["depth 1, cell gru", "depth 2, cell gru"]) == "depth 1, cell gru; depth 2, cell gru"
    assert groups_text([["depth 2, cell gru"], ["depth 1, cell gru", "depth 1, cell lstm"]]) == \
        "{depth 2, cell gru} > {depth 1, cell gru; depth 1, cell lstm}"
