"""Suites: several experiments sharing arms, search space and budget, run, watched and reported as one.

Loading (members, hashes, errors naming the suite file's own fields), `bench run SUITE` and `init` + `worker` +
`status` + `report` end to end on SQLite and PostgreSQL with exact budgets per member, arm and study, the suite
worker serving the least advanced member first, and the suite report's document and links.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from bench.cli import main
from bench.report.suite import member_folder, suite_doc, task_data
from bench.service.suite_run import resolve
from bench.spec import SpecError
from bench.store.ledger import Ledger
from bench.store.storage import make_engine, normalize_url
from bench.suite import is_suite, load_suite
from tests.conftest import TINY

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "BENCH_DB_RETRY_SECONDS": "60"}
pytestmark = pytest.mark.xdist_group("distributed")  # runs start worker processes

TASK = {k: v for k, v in TINY["task"].items() if k != "name"}


def suite_data(name: str = "tiny_suite", variants: bool = False, **overrides: Any) -> dict[str, Any]:
    """Two tiny tasks (reverse, sort) x 2 depths x 2 studies x 2 trials, 1 seed; optionally two capacities."""
    data: dict[str, Any] = {k: copy.deepcopy(v) for k, v in TINY.items() if k not in ("name", "task")}
    data["budget"] = {**TINY["budget"], "studies": 2}
    data["evaluation"] = {"seeds": 1}
    data["suite"] = {"name": name, "tasks": {"rev": {"name": "seq2seq", **TASK, "kind": "reverse"},
                                             "srt": {"name": "seq2seq", **TASK, "kind": "sort"}}}
    if variants:
        data["suite"]["variants"] = {"wide": {"capacity": "fixed_width"},
                                     "matched": {"capacity": "matched_params", "target_params": 1600}}
    data.update(overrides)
    return data


def write(tmp_path: Path, data: dict[str, Any], name: str = "suite.toml") -> Path:
    path = tmp_path / name
    path.write_text(tomli_w.dumps(data))
    return path


def slot_counts(url: str, experiment: str) -> dict[tuple[str, str, int], int]:
    engine = make_engine(normalize_url(url))
    found = Ledger.find_experiment(engine, experiment)
    assert found is not None, experiment
    slots = Ledger(engine, found[0]).slots()
    engine.dispose()
    assert all(s["state"] == "done" for s in slots), experiment
    per: dict[tuple[str, str, int], int] = {}
    for s in slots:
        per[(s["role"], s["arm"], s["study"])] = per.get((s["role"], s["arm"], s["study"]), 0) + 1
    return per


def expected(arms: list[str], studies: int = 2, trials: int = 2, seeds: int = 1) -> dict[tuple[str, str, int], int]:
    return ({("tune", a, k): trials for a in arms for k in range(studies)}
            | {("eval", a, k): seeds for a in arms for k in range(studies)})


# ---------------------------------------------------------------- loading


def test_members_are_tasks_times_variants_each_its_own_experiment(tmp_path: Path) -> None:
    path = write(tmp_path, suite_data(variants=True))
    assert is_suite(path) and not is_suite(ROOT / "studies" / "quickstart.toml")
    suite = load_suite(path)
    assert [m.name for m in suite.members] == ["tiny_suite.rev.wide", "tiny_suite.rev.matched",
                                                "tiny_suite.srt.wide", "tiny_suite.srt.matched"]
    assert suite.tasks == ("rev", "srt") and suite.variants == ("wide", "matched")
    specs = {m.name: m.spec for m in suite.members}
    assert dict(specs["tiny_suite.srt.matched"].task.params)["kind"] == "sort"  # type: ignore[union-attr]
    assert specs["tiny_suite.rev.matched"].model.capacity == "matched_params"
    assert specs["tiny_suite.rev.wide"].model.hidden == TINY["model"]["hidden"]  # shared [model] kept
    assert len({s.hash for s in specs.values()}) == 4
    # Only the task (and the variant) differ: the same spec file as an experiment has the member's hash.
    single = {k: v for k, v in suite_data().items() if k != "suite"}
    single.update(name="tiny_suite.rev", task={"name": "seq2seq", **TASK, "kind": "reverse"})
    from bench.spec import parse_spec

    assert parse_spec(single).hash == load_suite(write(tmp_path, suite_data(), "plain.toml")).members[0].spec.hash
    res = resolve(suite)
    assert all(s.model.hidden_by_depth for s in res.specs if s.model.capacity == "matched_params")


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d["suite"]["tasks"]["srt"].update(kind="shuffle"), "suite.tasks.srt.kind: 'shuffle' is not one of"),
    (lambda d: d["suite"]["tasks"]["rev"].update(vocab=0), "suite.tasks.rev.vocab"),
    (lambda d: d["suite"]["variants"]["matched"].update(target_params=10**9), "suite.variants.matched."
                                                                             "target_params"),
    (lambda d: d["suite"].update(colour="red"), "suite.colour: unknown field"),
    (lambda d: d["suite"].pop("tasks"), "suite.tasks: missing"),
    (lambda d: d.update(name="x"), "name: does not belong in a suite file"),
    (lambda d: d["suite"]["tasks"].update({"a.b": {"name": "seq2seq"}}), "suite.tasks.a.b: a label is"),
    (lambda d: d["budget"].update(trials=0), "budget.trials"),
    (lambda d: d["suite"].update(name="x" * 70), "suite.name"),
])
def test_bad_suite_is_one_line_naming_the_suite_field_and_writes_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], change: Any, message: str) -> None:
    data = suite_data(variants=True)
    change(data)
    path = write(tmp_path, data)
    db = tmp_path / "s.db"
    for command in ("init", "run", "worker", "status", "report", "dashboard"):
        assert main([command, str(path), "--storage", f"sqlite:///{db}"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1, err
        # Commands that train check everything; read-only ones need not check what only training needs (memory)
        # and may instead say the suite is not initialised.
        assert (f"{path}: " in err and message in err) or (command in ("status", "report", "dashboard")
                                                          and "bench init" in err), (command, err)
    assert not db.exists()


def test_a_bad_last_member_leaves_no_trace_of_the_first(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Members are all checked (task data built, sizes solved) before the first is written."""
    data = suite_data()
    data["suite"]["tasks"]["srt"]["n_train"] = 10**9  # fails only when the data is built (memory guard)
    db = tmp_path / "s.db"
    assert main(["init", str(write(tmp_path, data)), "--storage", f"sqlite:///{db}"]) == 2
    assert "suite.tasks.srt.n_train" in capsys.readouterr().err
    assert not db.exists()


# ---------------------------------------------------------------- running


@pytest.mark.timeout(600)  # end to end: real runs and reports of several experiments
def test_run_suite_end_to_end_exact_budgets_and_report(tmp_path: Path) -> None:
    path = write(tmp_path, suite_data(variants=True))
    url = f"sqlite:///{tmp_path / 's.db'}"
    out = tmp_path / "rep"
    proc = subprocess.run([sys.executable, "-m", "bench", "run", str(path), "--storage", url, "--workers", "2",
                           "--threads", "1", "--out", str(out)], env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    suite = load_suite(path)
    for m in suite.members:
        assert slot_counts(url, m.name) == expected([a.key for a in m.spec.arms]), m.name
        folder = out / member_folder(m.task, m.variant)
        member = json.loads((folder / "report.json").read_text())
        assert member["experiment"] == m.name and member["complete"]
    doc = json.loads((out / "suite.json").read_text())
    assert doc["suite"] == "tiny_suite" and doc["complete"]
    assert doc["tasks"] == ["rev", "srt"] and doc["variants"] == ["wide", "matched"]
    assert [r["experiment"] for r in doc["members"]] == [m.name for m in suite.members]
    for row in doc["members"]:
        assert (out / row["report"]).is_file()  # every link resolves
    for key in ("wide", "matched"):
        agg = doc["aggregate"][key]
        assert agg["tasks"] == ["rev", "srt"] and set(agg["iqm"]) == {"depth 1", "depth 2"}
        assert (out / f"fig_profiles_{key}.png").is_file() and (out / f"fig_iqm_{key}.png").is_file()
        assert agg["verdict"]["text"] in doc["verdict"]["text"]
    readme = (ROOT / "README.md").read_text().split("### Suite report schema (`suite.json`)", 1)[1]
    documented = {k for line in readme.split("\n#", 1)[0].splitlines() if line.startswith("| `")
                  for k in re.findall(r"`([a-z_]+)`", line.split("|")[1])}
    assert documented == set(doc), sorted(documented ^ set(doc))  # the README's table is the document's keys
    html = (out / "index.html").read_text()
    assert 'href="rev.wide/index.html"' in html and "Agarwal" in html and "Demšar" in html
    assert "suite verdict:" in proc.stdout and "suite report:" in proc.stdout

    # Again: complete, so nothing runs and the reports are rewritten.
    again = subprocess.run([sys.executable, "-m", "bench", "run", str(path), "--storage", url, "--no-report"],
                           env=ENV, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "already complete" in again.stdout, again.stderr


@pytest.mark.timeout(600)  # end to end: real runs and reports of several experiments
def test_init_workers_status_report_on_postgres(tmp_path: Path, pg_url: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """Many-machine use: init once, two `bench worker SUITE` processes, then status and report."""
    path = write(tmp_path, suite_data())
    assert main(["init", str(path), "--storage", pg_url]) == 0
    assert main(["init", str(path), "--storage", pg_url]) == 0  # idempotent
    capsys.readouterr()
    assert main(["status", str(path), "--storage", pg_url, "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["finished"] == 0 and not st["complete"] and list(st["members"]) == ["tiny_suite.rev", "tiny_suite.srt"]
    env = {**ENV, "BENCH_STORAGE": pg_url}
    procs = [subprocess.Popen([sys.executable, "-m", "bench", "worker", str(path), "--threads", "1"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    assert any("tiny_suite.srt [tune]" in o[0] for o in outs)  # worker lines name the member experiment
    for m in load_suite(path).members:
        assert slot_counts(pg_url, m.name) == expected([a.key for a in m.spec.arms])
    assert main(["status", str(path), "--storage", pg_url, "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["complete"] and st["finished"] == st["total"] == 2 * 12
    assert main(["status", str(path), "--storage", pg_url]) == 0
    assert "tiny_suite.rev" in capsys.readouterr().out
    assert main(["report", str(path), "--storage", pg_url, "--out", str(tmp_path / "rep")]) == 0
    doc = json.loads((tmp_path / "rep" / "suite.json").read_text())
    assert doc["complete"] and doc["variants"] == [] and doc["aggregate"]["all"] is not None


@pytest.mark.timeout(600)  # end to end: real runs and reports of several experiments
def test_suite_worker_serves_the_least_advanced_member_first(tmp_path: Path, sqlite_url: str) -> None:
    """Four finished trials of one worker on a fresh 2-member suite: two per member, alternating."""
    path = write(tmp_path, suite_data())
    assert main(["init", str(path), "--storage", sqlite_url]) == 0
    assert main(["worker", str(path), "--storage", sqlite_url, "--max-trials", "4", "--quiet", "--threads",
                 "1"]) == 0
    engine = make_engine(sqlite_url)
    done = {}
    for m in load_suite(path).members:
        found = Ledger.find_experiment(engine, m.name)
        assert found is not None
        done[m.name] = sum(s["state"] == "done" for s in Ledger(engine, found[0]).slots())
    engine.dispose()
    assert done == {"tiny_suite.rev": 2, "tiny_suite.srt": 2}

    # The Python API on the same partial run: status, and a report that says what is missing.
    from bench import api

    st = api.suite_status(path, sqlite_url)
    assert st["finished"] == 4 and not st["complete"]
    assert {k: v["finished"] for k, v in st["members"].items()} == done
    rep = api.report_suite(path, sqlite_url, tmp_path / "rep")
    assert not rep.complete and set(rep.members) == set(done)
    assert rep.doc["aggregate"] == {"all": None} and "no aggregate yet" in rep.verdict
    assert "incomplete:" in (tmp_path / "rep" / "suite.md").read_text()


def test_status_and_report_of_a_suite_not_initialised_write_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, suite_data())
    db = tmp_path / "none.db"
    for command in ("status", "report"):
        assert main([command, str(path), "--storage", f"sqlite:///{db}"]) == 2
        assert "bench init" in capsys.readouterr().err
    assert not db.exists()


# ---------------------------------------------------------------- the document


def _member_doc(losses: dict[str, list[list[float]]], trivial: float = 2.0, complete: bool = True
                ) -> dict[str, Any]:
    return {"arms": [{"label": k} for k in losses], "trivial_loss": trivial, "complete": complete,
            "missing": [] if complete else ["tuning"], "spec_hash": "h",
            "test": {k: ({"per_study": [{"test_losses": s} for s in v]} if v else None) for k, v in losses.items()},
            "verdict": {"text": "t", "winner": None}, "comparisons": {"test": {"groups": [list(losses)]}}}


def test_task_data_takes_each_studys_seed_losses_and_keeps_arms_without_data() -> None:
    doc = _member_doc({"depth 1": [[1.0, 2.0], [3.0]], "depth 2": []}, trivial=5.0)
    assert task_data(doc) == {"trivial": 5.0, "arms": {"depth 1": [[1.0, 2.0], [3.0]], "depth 2": []}}


def test_suite_doc_waits_for_two_tasks_and_says_so() -> None:
    full = _member_doc({"a": [[1.0, 1.1], [0.9, 1.0]], "b": [[1.5, 1.4], [1.6, 1.5]]})
    empty = _member_doc({"a": [], "b": []}, complete=False)
    members = [{"experiment": "s.x", "task": "x", "variant": None, "folder": "x", "doc": full},
               {"experiment": "s.y", "task": "y", "variant": None, "folder": "y", "doc": empty}]
    doc = suite_doc("s", members, 0.05, 0.1)
    assert doc["aggregate"] == {"all": None} and not doc["complete"]
    assert "1 of 2 tasks" in doc["notes"]["all"] and "no aggregate yet" in doc["verdict"]["text"]
    members[1]["doc"] = full
    doc = suite_doc("s", members, 0.05, 0.1)
    assert doc["aggregate"]["all"]["tasks"] == ["x", "y"] and doc["complete"]
    assert doc["members"][1]["report"] == "y/index.html"


def test_loading_a_spec_as_a_suite_says_what_a_suite_file_is(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"suite: missing \(a suite file has a \[suite\] table\)"):
        load_suite(ROOT / "studies" / "quickstart.toml")


# ---------------------------------------------------------------- the published answer (docs/stacked_lstm/)


PUBLISHED = ROOT / "docs" / "stacked_lstm"


@pytest.mark.timeout(600)  # end to end: real runs and reports of several experiments
def test_published_suite_regenerates_from_its_storage_and_the_readme_quotes_it(tmp_path: Path) -> None:
    """The committed storage gives the committed suite report's verdict again, and the README's published section
    quotes each variant's aggregate verdict as the report words it (the summary cannot drift from the numbers)."""
    import shutil

    db = tmp_path / "bench.db"
    shutil.copyfile(PUBLISHED / "bench.db", db)
    out = tmp_path / "rep"
    suite = ROOT / "studies" / "suites" / "stacked_lstm.toml"
    assert main(["report", str(suite), "--storage", f"sqlite:///{db}", "--out", str(out)]) == 0
    published = json.loads((PUBLISHED / "suite.json").read_text())
    doc = json.loads((out / "suite.json").read_text())
    assert doc["verdict"] == published["verdict"] and doc["complete"] == published["complete"]
    assert [m["spec_hash"] for m in doc["members"]] == [m["spec_hash"] for m in published["members"]]
    section = (ROOT / "README.md").read_text().split("## Published answer", 1)[1].split("\n## ", 1)[0]
    flat = " ".join(section.split())
    for key, agg in published["aggregate"].items():
        assert agg is not None, key
        assert " ".join(agg["verdict"]["text"].split()) in flat, key
