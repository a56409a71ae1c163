"""The trainer contract (bench.trainer): user trainers through the real CLI and the API, bad plug-ins, and the
examples under examples/ with exact budgets."""

from __future__ import annotations

import json
import math
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import api
from bench.cli import main
from bench.spec import SpecError, parse_spec
from bench.trainer import Pruned, Reporter, Result, check_result, load_trainer
from tests.test_bad_input import refused

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def user_spec(fit: str = "tests.bad_trainers:good", **over: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "name": "user_demo", "trainer": {"name": fit}, "scientific": {"k": [1, 4]},
        "metric": {"name": "score", "worst": 2.0},
        "search_space": {"lr": {"type": "float", "low": 0.01, "high": 0.5, "log": True}},
        "fixed": {"steps": 3}, "budget": {"studies": 1, "trials": 2, "epochs": 3},
        "sampler": {"kind": "random", "seed": 0}, "evaluation": {"seeds": 2},
    }
    raw.update(over)
    return raw


def write(tmp_path: Path, raw: dict[str, Any]) -> Path:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(raw))
    return path


# ---------------------------------------------------------------- the contract, unit by unit


def test_check_result_turns_every_bad_return_into_a_diverged_run_with_its_reason() -> None:
    assert check_result(0.25, False).diverged_reason is None and check_result(0.25, False).value == 0.25
    assert "str" in (check_result("x", False).diverged_reason or "")
    assert "non-finite" in (check_result(math.inf, False).diverged_reason or "")
    assert "non-finite" in (check_result(Result(math.nan), False).diverged_reason or "")
    assert "test score" in (check_result(Result(0.5), True).diverged_reason or "")
    assert check_result(True, False).diverged_reason is not None  # a bool is not a score
    ok = check_result(Result(0.5, test=0.6, n_params=7, extras={"a": 1, "seconds": "mine"}), True)
    assert (ok.value, ok.test, ok.n_params, ok.extras, ok.diverged_reason) == (0.5, 0.6, 7, {"a": 1}, None)
    assert "JSON" in (check_result(Result(0.5, extras={"x": object()}), False).diverged_reason or "")


def test_reporter_records_steps_and_remembers_a_prune() -> None:
    def prune(step: int, value: float) -> None:
        if step == 1:
            raise Pruned

    rep = Reporter(prune)
    rep(0, 1.0)
    rep(0, math.nan)
    with pytest.raises(Pruned):
        rep(1, 2.0)
    assert rep.values == [1.0, None, 2.0] and rep.pruned and not rep.wants_test


@pytest.mark.parametrize(("name", "message"), [
    ("nosuchmodule_xyz:fit", "trainer.name: cannot import module 'nosuchmodule_xyz'"),
    ("tests.bad_trainers:missing", "trainer.name: module 'tests.bad_trainers' has no attribute 'missing'"),
    ("tests.bad_trainers:NOT_CALLABLE", "trainer.name: 'tests.bad_trainers:NOT_CALLABLE' is not callable"),
    ("tests.bad_trainers:two_args", "trainer.name: 'tests.bad_trainers:two_args' must take (params, arm, seed, "
                                    "report)"),
])
def test_bad_plugins_are_refused_naming_the_field_and_write_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, message: str) -> None:
    with pytest.raises(SpecError, match="trainer.name"):
        load_trainer(name)
    db = tmp_path / "db"
    refused(capsys, ["init", str(write(tmp_path, user_spec(name))), "--storage", f"sqlite:///{db}"], message)
    assert not db.exists()


@pytest.mark.parametrize(("over", "message"), [
    ({"task": {"name": "seq2seq"}}, "task: is not used with a [trainer]"),
    ({"model": {"hidden": 8}}, "model: is not used with a [trainer]"),
    ({"metric": {"name": "score"}}, "metric.worst: required with a [trainer]"),
    ({"trainer": {"name": "nocolon"}}, "trainer.name: 'nocolon' is not of the form"),
    ({"scientific": {"k": [1, 1]}}, "scientific.k: must not repeat a value"),
    ({"scientific": {"k": [1, 2]}, "fixed": {"k": 3}}, "fixed.k: k is scientific"),
])
def test_user_trainer_specs_are_validated(over: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match=None) as err:
        parse_spec(user_spec(**over), "s.toml")
    assert message in str(err.value)


def test_builtin_specs_reject_user_only_fields() -> None:
    from tests.conftest import TINY

    with pytest.raises(SpecError, match="metric.worst: only applies to a"):
        parse_spec({**TINY, "metric": {"worst": 1.0}})
    with pytest.raises(SpecError, match="scientific.width: unknown scientific hyperparameter"):
        parse_spec({**{k: v for k, v in TINY.items() if k != "depths"}, "scientific": {"width": [1, 2]}})


def test_user_spec_takes_any_names_and_keeps_builtin_hashes_apart() -> None:
    spec = parse_spec(user_spec(scientific={"mode": ["b", "a"], "k": [4, 1]}))
    assert [a.label for a in spec.arms] == ["mode b, k 1", "mode b, k 4", "mode a, k 1", "mode a, k 4"]
    d = spec.to_dict()
    assert d["trainer"] == "tests.bad_trainers:good" and d["worst"] == 2.0 and d["task"] is None
    assert "model" not in d and spec.params({"lr": 0.1}) == {"steps": 3, "lr": 0.1}


# ---------------------------------------------------------------- through the real CLI


def _trials(db: Path) -> list[tuple[str, str, str | None]]:
    """(study name, state, diverged_reason) of every trial."""
    con = sqlite3.connect(db)
    try:
        rows = con.execute(
            "SELECT s.study_name, t.state, (SELECT value_json FROM trial_user_attributes a WHERE a.trial_id = "
            "t.trial_id AND a.key = 'diverged_reason') FROM trials t JOIN studies s USING (study_id)").fetchall()
    finally:
        con.close()
    return [(n, st, json.loads(r) if r else None) for n, st, r in rows]


@pytest.mark.parametrize(("trainer", "reason"), [
    ("tests.bad_trainers:text", "trainer returned str"),
    ("tests.bad_trainers:nan", "non-finite"),
    ("tests.bad_trainers:no_test", "no finite test score"),
])
def test_bad_returns_are_diverged_trials_with_the_reason_and_the_budget_stays_exact(
        tmp_path: Path, trainer: str, reason: str) -> None:
    db, out = tmp_path / "db", tmp_path / "rep"
    assert main(["run", str(write(tmp_path, user_spec(trainer))), "--storage", f"sqlite:///{db}",
                 "--out", str(out), "--workers", "1"]) == 0
    doc = json.loads((out / "report.json").read_text())
    assert [[s["n_finished"] for s in a["studies"]] for a in doc["arms"]] == [[2], [2]]
    rows = _trials(db)
    tune = [r for r in rows if not r[0].endswith("-eval")]
    evals = [r for r in rows if r[0].endswith("-eval")]
    assert len(tune) == 4 and all(st == "COMPLETE" for _, st, _ in rows)
    if trainer.endswith("no_test"):  # tuning never asks for a test score; every re-evaluation run lacks one
        assert all(r[2] is None for r in tune)
        assert len(evals) == 4 and all(reason in (r[2] or "") for r in evals)
        assert doc["test"]["k 1"]["n_diverged"] == 2
    else:  # every tuning trial diverged: no config to re-evaluate
        assert all(reason in (r[2] or "") for r in tune) and not evals
        assert all(a["by_outcome"]["diverged"] == 2 for a in doc["arms"])


def test_a_trainer_that_swallows_the_prune_signal_is_still_pruned(tmp_path: Path) -> None:
    raw = user_spec("tests.bad_trainers:swallows", budget={"studies": 1, "trials": 4, "epochs": 3},
                    pruner={"kind": "median", "n_startup_trials": 1, "n_warmup_steps": 0}, evaluation={"seeds": 0})
    db = tmp_path / "db"
    assert main(["run", str(write(tmp_path, raw)), "--storage", f"sqlite:///{db}", "--no-report",
                 "--workers", "1"]) == 0
    states = [st for _, st, _ in _trials(db)]
    assert len(states) == 8 and "PRUNED" in states


def test_good_user_trainer_report_shows_arms_params_and_extras(tmp_path: Path) -> None:
    db, out = tmp_path / "db", tmp_path / "rep"
    assert main(["run", str(write(tmp_path, user_spec())), "--storage", f"sqlite:///{db}", "--out", str(out),
                 "--workers", "1"]) == 0
    doc = json.loads((out / "report.json").read_text())
    assert [(a["label"], a["n_params"], a["depth"]) for a in doc["arms"]] == [("k 1", 10, None), ("k 4", 40, None)]
    assert doc["settings"]["diverged_scored_as"] == 2.0 and doc["metric"] == "score"
    assert doc["test"]["k 4"]["n_seeds"] == 2  # re-evaluated over 2 fresh seeds


# ---------------------------------------------------------------- the examples (README commands)


def _example_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(EXAMPLES), os.environ.get("PYTHONPATH", "")])}


@pytest.mark.slow
@pytest.mark.parametrize(("spec", "arms"), [
    ("torch_mlp.toml", {"width 8": [3, 3], "width 64": [3, 3]}),
    ("numpy_logreg.toml", {"features linear": [4, 4], "features quadratic": [4, 4]}),
])
def test_examples_run_through_the_cli_with_exact_budgets(tmp_path: Path, spec: str, arms: dict[str, list[int]]
                                                          ) -> None:
    cmd = [sys.executable, "-m", "bench", "run", str(EXAMPLES / spec), "--storage", f"sqlite:///{tmp_path / 'db'}",
           "--out", str(tmp_path / "rep"), "--workers", "1", "--threads", "1"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=_example_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert {a["label"]: [s["n_finished"] for s in a["studies"]] for a in doc["arms"]} == arms
    assert all(a["by_outcome"]["diverged"] == 0 for a in doc["arms"])
    assert all(st["n_seeds"] == 2 * 2 for st in doc["test"].values())  # 2 studies x 2 fresh seeds per arm


@pytest.mark.slow
@pytest.mark.parametrize(("spec", "labels"), [
    ("numpy_logreg.toml", ["features linear", "features quadratic"]),
    ("torch_mlp.toml", ["width 8", "width 64"]),
])
def test_examples_through_the_python_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spec: str,
                                         labels: list[str]) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLES))
    monkeypatch.setenv("PYTHONPATH", _example_env()["PYTHONPATH"])
    rep = api.run(EXAMPLES / spec, storage=f"sqlite:///{tmp_path / 'db'}", workers=1, threads=1,
                  out=tmp_path / "rep")
    assert rep is not None and rep.complete
    assert [a["label"] for a in rep.doc["arms"]] == labels
    counts = [a["n_params"] for a in rep.doc["arms"]]
    if spec == "numpy_logreg.toml":
        assert counts == [3, 8]
    else:  # the MLP's width is the arm: the wider one has more parameters, as the audit shows
        assert counts[0] < counts[1]
    assert (tmp_path / "rep" / "index.html").is_file()


def test_a_user_trainer_is_told_the_workers_device() -> None:
    """report.device is the worker's resolved device, in tuning and in re-evaluation runs."""
    from bench.tuning.objective import run_fixed

    spec = parse_spec(user_spec("tests.bad_trainers:device_echo"))
    out = run_fixed(spec, spec.arms[0], {"lr": 0.1}, 0, device="cpu")
    assert out.outcome == "complete" and out.attrs["device_seen"] == "cpu"
    out = run_fixed(spec, spec.arms[0], {"lr": 0.1}, 0, device="meta-test-device")
    assert out.attrs["device_seen"] == "meta-test-device"
