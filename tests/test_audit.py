"""The record audit on a real finished run: each kind of tampering with a copy of the storage fails its check."""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import re
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from bench.cli import main
from bench.report.audit import MAX_LISTED, StudyTrials, _same, _short, audit
from bench.report.build import build
from bench.report.collect import collect
from bench.report.provenance import git_commit
from bench.report.render import markdown, trials_csv
from bench.service.run import attach, init_experiment
from bench.service.worker import WorkerLoop, WorkerOptions
from bench.spec import Spec, load_spec
from bench.store.ledger import Ledger, has_schema
from bench.store.record import chain_step, genesis, record_digest, result_json
from bench.store.storage import make_engine, optuna_storage
from bench.tuning.studies import METRIC_NAMES, all_studies, spec_study_name
from tests.conftest import tiny_spec

RECORD = "every counted trial matches its ledger record (value, state, params, distributions, spec hash)"
UNACCOUNTED = "every finished trial is accounted for by a ledger slot"
CHAIN = "the record's digest chain verifies"
STUDIES = "every phase's studies are in the storage"


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Spec, Path]:
    """One real tiny run (tuning, re-evaluation, baseline) shared by the tests, each of which tampers a copy."""
    tmp = tmp_path_factory.mktemp("audit")
    path = tiny_spec(tmp, evaluation={"seeds": 1}, baseline={"lr": 0.01})
    spec = load_spec(path)
    db = tmp / "bench.db"
    url = f"sqlite:///{db}"
    init_experiment(spec, url)
    WorkerLoop(spec, url, attach(spec, url), WorkerOptions(lease_seconds=30, poll_seconds=0.2)).run()
    return spec, db


def _copy(finished: tuple[Spec, Path], tmp_path: Path) -> tuple[Spec, str, Path]:
    spec, db = finished
    dst = tmp_path / "copy.db"
    # SQLite's backup API, not a file copy: the source is in WAL mode and its last writes may sit in the -wal file.
    src, out = sqlite3.connect(db), sqlite3.connect(dst)
    with out:
        src.backup(out)
    src.close()
    out.close()
    return spec, f"sqlite:///{dst}", dst


def _checks(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in doc["fairness"]["checks"]}


def _failed(doc: dict[str, Any]) -> set[str]:
    return {name for name, c in _checks(doc).items() if not c["held"]}


def _counted(spec: Spec, url: str, role: str = "tune") -> tuple[str, int]:
    """A study name and the number of a trial the ledger counts there (the first tuning slot of the first arm)."""
    engine = make_engine(url)
    exp = Ledger.find_experiment(engine, spec.name)
    assert exp is not None
    slot = next(s for s in Ledger(engine, exp[0]).slots(role) if s["arm"] == spec.arms[0].key)
    engine.dispose()
    return spec_study_name(spec, spec.arms[0], role), int(slot["trial_number"])


def _sql(db: Path, query: str, *args: Any) -> None:
    conn = sqlite3.connect(db)
    with conn:
        assert conn.execute(query, args).rowcount >= 1, query
    conn.close()


def _trial_id(url: str, study: str, number: int) -> int:
    storage = optuna_storage(url)
    s = optuna.load_study(study_name=study, storage=storage)
    tid = s.trials[number]._trial_id
    storage.dispose()
    return int(tid)


def test_intact_record_passes(finished: tuple[Spec, Path], tmp_path: Path) -> None:
    spec, url, _ = _copy(finished, tmp_path)
    doc = build(collect(spec, url))
    record = doc["fairness"]["record"]
    assert record["status"] == "intact" and record["text"].startswith("the record is intact")
    assert record["recorded_slots"] == 2 * 2 + 2 + 2 and len(record["head"]) == 64
    assert doc["fairness"]["all_held"] and doc["complete"], _failed(doc)
    out = tmp_path / "rep"
    assert main(["report", str(spec.source), "--storage", url, "--out", str(out)]) == 0
    assert "the record is intact" in (out / "report.md").read_text()
    assert "the record is intact" in (out / "index.html").read_text()


def test_edited_value_is_flagged(finished: tuple[Spec, Path], tmp_path: Path) -> None:
    spec, url, db = _copy(finished, tmp_path)
    study, number = _counted(spec, url)
    _sql(db, "UPDATE trial_values SET value = value / 10 WHERE trial_id = ?", _trial_id(url, study, number))
    doc = build(collect(spec, url))
    assert RECORD in _failed(doc) and not doc["fairness"]["all_held"]
    assert doc["fairness"]["record"]["status"] == "broken"
    (m,) = doc["fairness"]["record"]["mismatches"]
    assert (m["study"], m["trial"], m["field"]) == (study, number, "value")
    assert f"{study} trial {number}: value differs" in _checks(doc)[RECORD]["detail"]


def test_changed_distribution_of_a_non_last_trial_is_flagged(finished: tuple[Spec, Path], tmp_path: Path) -> None:
    spec, url, db = _copy(finished, tmp_path)
    study = spec_study_name(spec, spec.arms[0])
    wider = json.dumps({"name": "FloatDistribution", "attributes": {"low": 1e-5, "high": 0.03, "log": True,
                                                                       "step": None}})
    _sql(db, "UPDATE trial_params SET distribution_json = ? WHERE trial_id = ? AND param_name = 'lr'", wider,
         _trial_id(url, study, 0))
    doc = build(collect(spec, url))
    assert RECORD in _failed(doc)
    fields = {(m["study"], m["trial"], m["field"]) for m in doc["fairness"]["record"]["mismatches"]}
    assert (study, 0, "distributions") in fields
    # The search-space check sees it too: the edited trial's distribution no longer matches the other arm's.
    assert "same search space, sampler, pruner, epochs, data split and seed for every arm" in _failed(doc)


def test_trial_added_by_hand_is_listed(finished: tuple[Spec, Path], tmp_path: Path) -> None:
    spec, url, _ = _copy(finished, tmp_path)
    study_name = spec_study_name(spec, spec.arms[1])
    storage = optuna_storage(url)
    study = optuna.load_study(study_name=study_name, storage=storage)
    template = study.trials[0]
    study.add_trial(optuna.trial.create_trial(params=template.params, distributions=template.distributions,
                                              value=1e-6, user_attrs=dict(template.user_attrs)))
    added = study.trials[-1].number
    storage.dispose()
    doc = build(collect(spec, url))
    assert _failed(doc) == {UNACCOUNTED}
    (u,) = doc["fairness"]["record"]["unaccounted"]
    assert (u["study"], u["trial"], u["state"]) == (study_name, added, "complete")
    assert f"{study_name} trial {added} (complete) is counted by no ledger slot" in _checks(doc)[UNACCOUNTED]["detail"]


def test_counted_trial_flipped_to_fail_is_flagged(finished: tuple[Spec, Path], tmp_path: Path) -> None:
    spec, url, db = _copy(finished, tmp_path)
    study, number = _counted(spec, url, "eval")
    _sql(db, "UPDATE trials SET state = 'FAIL' WHERE trial_id = ?", _trial_id(url, study, number))
    doc = build(collect(spec, url))
    assert RECORD in _failed(doc)
    assert any((m["study"], m["trial"], m["field"]) == (study, number, "state")
               for m in doc["fairness"]["record"]["mismatches"])


def test_deleted_baseline_study_makes_the_report_incomplete(finished: tuple[Spec, Path], tmp_path: Path) -> None:
    spec, url, _ = _copy(finished, tmp_path)
    name = spec_study_name(spec, spec.arms[0], "baseline")
    storage = optuna_storage(url)
    optuna.delete_study(study_name=name, storage=storage)
    storage.dispose()
    doc = build(collect(spec, url))
    assert doc["complete"] is False
    assert f"baseline phase incomplete: study {name} is missing from the storage (deleted?)" in doc["missing"]
    assert {STUDIES, RECORD} <= _failed(doc)
    assert any(m["study"] == name and m["field"] == "study" for m in doc["fairness"]["record"]["mismatches"])


def test_consistent_edit_of_storage_and_ledger_breaks_the_chain(finished: tuple[Spec, Path], tmp_path: Path) -> None:
    """Editing the trial and its ledger result alike defeats the cross-check, not the per-slot digest."""
    spec, url, db = _copy(finished, tmp_path)
    study, number = _counted(spec, url)
    _sql(db, "UPDATE trial_values SET value = 1e-6 WHERE trial_id = ?", _trial_id(url, study, number))
    conn = sqlite3.connect(db)
    slot_id, result = conn.execute("SELECT id, result FROM bench_slots WHERE role = 'tune' AND trial_number = ? "
                                   "AND result LIKE ?", (number, f'%"number":{number},%')).fetchone()
    edited = json.loads(result)
    edited["value"] = 1e-6
    with conn:
        conn.execute("UPDATE bench_slots SET result = ?, value = 1e-6 WHERE id = ?",
                     (json.dumps(edited, sort_keys=True, separators=(",", ":")), slot_id))
    conn.close()
    doc = build(collect(spec, url))
    failed = _failed(doc)
    assert CHAIN in failed
    assert "digest does not match its stored result" in _checks(doc)[CHAIN]["detail"]


def test_storage_without_record_columns_is_reported_not_verifiable(finished: tuple[Spec, Path],
                                                                   tmp_path: Path) -> None:
    """A storage written before the record existed: the report says so instead of crashing; a writer migrates."""
    spec, url, db = _copy(finished, tmp_path)
    conn = sqlite3.connect(db)
    cols = [r[1] for r in conn.execute("PRAGMA table_info(bench_slots)")
            if r[1] not in ("result", "digest", "seq", "chain")]
    with conn:
        conn.execute(f"CREATE TABLE old_slots AS SELECT {', '.join(cols)} FROM bench_slots")
        conn.execute("DROP TABLE bench_slots")
        conn.execute("ALTER TABLE old_slots RENAME TO bench_slots")
    conn.close()
    doc = build(collect(spec, url))
    record = doc["fairness"]["record"]
    assert record["status"] == "not verifiable" and "not verifiable" in record["text"]
    assert CHAIN in _failed(doc) and UNACCOUNTED not in _failed(doc)
    assert main(["report", str(spec.source), "--storage", url, "--out", str(tmp_path / "rep")]) == 0
    attach(spec, url)  # a writer's attach adds the columns
    engine = make_engine(url)
    assert has_schema(engine)
    exp = Ledger.find_experiment(engine, spec.name)
    assert exp is not None and Ledger(engine, exp[0]).recorded
    engine.dispose()


def test_every_study_names_its_metric(finished: tuple[Spec, Path]) -> None:
    """The dashboard shows "val loss" / "test loss", not "Objective 0"."""
    spec, db = finished
    storage = optuna_storage(f"sqlite:///{db}")
    for _, role, _, name in all_studies(spec):
        study = optuna.load_study(study_name=name, storage=storage)
        assert study.metric_names == [METRIC_NAMES[role]], name
        assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials)
    storage.dispose()


MD_LINK = "[click](javascript:alert(1))"
MD_IMAGE = "![pixel](https://evil.example/track.png)"


def test_markdown_neutralises_links_and_remote_images_from_stored_strings(finished: tuple[Spec, Path],
                                                                        tmp_path: Path) -> None:
    spec, url, _ = _copy(finished, tmp_path)
    storage = optuna_storage(url)
    study = optuna.load_study(study_name=spec_study_name(spec, spec.arms[0]), storage=storage)
    study.set_user_attr("metric", f"nats {MD_LINK} {MD_IMAGE}")  # a study attribute the report quotes
    storage.dispose()
    col = collect(spec, url)
    doc = build(col)
    doc["experiment"] = MD_LINK  # the spec name, as a hostile document would carry it
    doc["verdict"]["caveats"] = [MD_IMAGE]
    md = markdown(doc, {"best_of_n"}, True)
    assert "nats" in md and "javascript:alert" in md  # the text is kept, as text
    links = re.findall(r"(?<!\\)\[[^\]]*(?<!\\)\]\(([^)]*)\)", md)
    assert links == ["fig_best_of_n.png"], links  # bench's own figure is the only link or image left


def test_trials_csv_neutralises_formulas(finished: tuple[Spec, Path], tmp_path: Path) -> None:
    spec, url, _ = _copy(finished, tmp_path)
    col = collect(spec, url)
    hostile = ["=HYPERLINK(\"https://evil.example\",\"x\")", "+1+1", "-1+1", "@SUM(A1)", "\tx", "\rx"]
    for t, text in zip(col.trials, hostile, strict=False):
        t["lost_reason"] = text
    col.trials[0]["arm"] = "=cmd|' /C calc'!A0"
    col.trials[0]["value"] = -0.5  # a number stays a number
    rows = list(csv.DictReader(io.StringIO(trials_csv(col), newline="")))
    assert [r["lost_reason"] for r in rows[: len(hostile)]] == ["'" + h for h in hostile]
    assert rows[0]["arm"].startswith("'=") and rows[0]["value"] == "-0.5"
    assert all((cell or " ")[0] not in "=+@\t\r" for r in rows for cell in r.values())


def test_report_provenance(finished: tuple[Spec, Path], tmp_path: Path) -> None:
    spec, url, _ = _copy(finished, tmp_path)
    out = tmp_path / "rep"
    assert main(["report", str(spec.source), "--storage", url, "--out", str(out)]) == 0
    prov = json.loads((out / "report.json").read_text())["provenance"]
    assert set(prov) == {"date", "bench_version", "git_commit", "python", "torch", "optuna", "sqlalchemy", "host",
                         "platform", "devices"}
    assert prov["optuna"] == optuna.__version__ and prov["python"] == platform.python_version()
    assert prov["host"] == socket.gethostname() and "CPU cores" in prov["devices"]
    for name in ("report.md", "index.html"):
        text = (out / name).read_text()
        assert f"by bench {prov['bench_version']}" in text and f"Optuna {prov['optuna']}" in text, name


def test_git_commit_outside_a_checkout_is_none(tmp_path: Path) -> None:
    assert git_commit(tmp_path) is None
    assert re.fullmatch(r"[0-9a-f]{40}(\+dirty)?", git_commit() or "0" * 40)


def test_record_chain_with_concurrent_workers_on_every_database(any_url: str, tmp_path: Path) -> None:
    """Three worker processes finishing at once: one chain, positions 1..n, intact; then an older layout
    (without the record columns) is read as not verifiable and migrated by a writer."""
    path = tiny_spec(tmp_path, budget={"trials": 3})
    spec = load_spec(path)
    init_experiment(spec, any_url)
    env = {**os.environ, "BENCH_STORAGE": any_url}
    procs = [subprocess.Popen([sys.executable, "-m", "bench", "worker", str(path), "--quiet",
                               "--lease-seconds", "60"], env=env) for _ in range(3)]
    assert [p.wait(timeout=600) for p in procs] == [0, 0, 0]
    doc = build(collect(spec, any_url))
    record = doc["fairness"]["record"]
    assert record["status"] == "intact", record
    assert record["recorded_slots"] == 6 and doc["fairness"]["all_held"], _failed(doc)
    engine = make_engine(any_url)
    exp = Ledger.find_experiment(engine, spec.name)
    assert exp is not None
    assert sorted(s["seq"] for s in Ledger(engine, exp[0]).slots()) == list(range(1, 7))
    if engine.dialect.name != "sqlite":  # SQLite cannot drop a constrained column (see the copy test above)
        with engine.begin() as conn:
            if engine.dialect.name == "mysql":  # MariaDB keeps a unique index over a dropped column otherwise
                conn.exec_driver_sql("ALTER TABLE bench_slots DROP INDEX uq_bench_slot_seq")
            for col in ("result", "digest", "seq", "chain"):
                conn.exec_driver_sql(f"ALTER TABLE bench_slots DROP COLUMN {col}")
        assert build(collect(spec, any_url))["fairness"]["record"]["status"] == "not verifiable"
        attach(spec, any_url)
        assert Ledger(engine, exp[0]).recorded
    engine.dispose()


# ---------------------------------------------------------------- audit() on hand-made records, output compared whole
# A ledger of slots and the studies' trial records, built here so that each check can be made to fail alone and
# its message written out in advance.


DISTS = {"lr": {"name": "FloatDistribution", "attributes": {"low": 0.01, "high": 0.5, "log": True}}}


def trial_rec(number: int, state: str = "COMPLETE", value: float | None = 0.5, **attrs: Any) -> dict[str, Any]:
    return {"number": number, "state": state, "value": value, "params": {"lr": 0.1}, "distributions": DISTS,
            "intermediate": {"0": value}, "spec_hash": "h1", "attrs": attrs}


def slot(sid: int, role: str, arm: str, study: int, idx: int, number: int | None, state: str = "done",
         outcome: str = "complete", value: float | None = 0.5, result: dict[str, Any] | None = None
         ) -> dict[str, Any]:
    return {"id": sid, "role": role, "arm": arm, "study": study, "idx": idx, "trial_number": number,
            "state": state, "outcome": outcome if state == "done" else None, "value": value,
            "result": result_json(result) if result is not None else None, "seq": None, "digest": None,
            "chain": None}


def chained(slots: list[dict[str, Any]]) -> str:
    """Give the done slots with a result their chain, in list order, as a finishing worker does; the head."""
    previous = genesis("exp", "h1")
    for seq, s in enumerate((s for s in slots if s["result"]), start=1):
        s["seq"] = seq
        s["digest"] = record_digest(s["role"], s["arm"], s["study"], s["idx"], s["outcome"], s["result"])
        s["chain"] = previous = chain_step(previous, s["digest"])
    return previous


def ledger_and_storage() -> tuple[list[dict[str, Any]], dict[tuple[str, str, int], StudyTrials]]:
    """Arm A's tuning study 0 (trials 0 and 1 counted, trial 2 running under a claim), its test study (trial 0
    counted; trial 1 a finished fixed run whose slot, 5, is still claimed), and a claimed slot whose pruned trial
    is finished but not yet marked done."""
    tune = StudyTrials("exp.tune.A.0", {0: trial_rec(0), 1: trial_rec(1, value=0.25), 2: trial_rec(2, "RUNNING"),
                                        3: trial_rec(3, "PRUNED", None)})
    test = StudyTrials("exp.test.A", {0: trial_rec(0, seed=1), 1: trial_rec(1, seed=2, bench_slot=5)})
    slots = [slot(1, "tune", "A", 0, 0, 0, result=tune.records[0]),
             slot(2, "tune", "A", 0, 1, 1, value=0.25, result=tune.records[1]),
             slot(3, "tune", "A", 0, 2, 2, state="claimed"), slot(6, "tune", "A", 0, 3, 3, state="claimed"),
             slot(4, "test", "A", 1, 0, 0, result=test.records[0]),  # a test slot's study number is its best
             slot(5, "test", "A", 2, 1, None, state="claimed")]  # config's; the test study is one per arm
    return slots, {("tune", "A", 0): tune, ("test", "A", 0): test}


INTACT_TEXT = ("the record is intact: every counted trial matches the result its ledger slot stored, the digest "
               "chain verifies and no trial is unaccounted for")
BROKEN_TEXT = ("the record does not match the storage: trials were edited, added or removed after they were "
               "recorded (see the problems listed)")


def test_audit_of_an_intact_record() -> None:
    slots, studies = ledger_and_storage()
    head = chained(slots)
    assert audit(slots, studies, "exp", "h1", recorded=True) == {
        "status": "intact", "text": INTACT_TEXT, "head": head, "recorded_slots": 3, "unrecorded_slots": 0,
        "n_mismatches": 0, "mismatches": [], "n_unaccounted": 0, "unaccounted": [], "chain_problems": []}
    # The chain is bound to the experiment and the spec: another name or hash breaks its first link.
    assert audit(slots, studies, "other", "h1", recorded=True)["status"] == "broken"
    assert audit(slots, studies, "exp", None, recorded=True)["chain_problems"] == [
        "slot tune/0/0 (seq 1): chain link does not follow from the previous slot"]


def test_audit_names_each_changed_field() -> None:
    slots, studies = ledger_and_storage()
    chained(slots)
    tune = studies["tune", "A", 0].records
    tune[1]["value"] = 0.25 * (1 + 1e-13)  # a double's last bits: the same stored value
    assert audit(slots, studies, "exp", "h1", recorded=True)["status"] == "intact"
    tune[1]["value"] = 0.2500001
    tune[0]["params"] = {"lr": 0.1, "extra": True}
    studies["test", "A", 0].records[0]["attrs"] = {"seed": True}  # a bool is not the number 1
    out = audit(slots, studies, "exp", "h1", recorded=True)
    assert out["status"] == "broken" and out["text"] == BROKEN_TEXT and out["n_mismatches"] == 3
    assert out["mismatches"] == [
        {"study": "exp.tune.A.0", "trial": 0, "slot": 1, "field": "params",
         "detail": 'params differs from the ledger\'s record: ledger {"lr": 0.1}, storage {"extra": true, "lr": 0.1}'},
        {"study": "exp.tune.A.0", "trial": 1, "slot": 2, "field": "value",
         "detail": "value differs from the ledger's record: ledger 0.25, storage 0.2500001"},
        {"study": "exp.test.A", "trial": 0, "slot": 4, "field": "attrs",
         "detail": 'attrs differs from the ledger\'s record: ledger {"seed": 1}, storage {"seed": true}'}]
    assert out["chain_problems"] == [] and out["unaccounted"] == []


def test_audit_of_missing_studies_and_trials() -> None:
    slots, studies = ledger_and_storage()
    chained(slots)
    del studies["tune", "A", 0].records[1]
    studies["test", "A", 0].present = False
    out = audit(slots, studies, "exp", "h1", recorded=True)
    assert out["mismatches"] == [
        {"study": "exp.tune.A.0", "trial": 1, "slot": 2, "field": "trial",
         "detail": "the trial this slot counts is missing"},
        {"study": "exp.test.A", "trial": 0, "slot": 4, "field": "study",
         "detail": "the study this slot's trial belongs to is missing from the storage"}]
    del studies["test", "A", 0]
    assert audit(slots, studies, "exp", "h1", recorded=True)["mismatches"][1]["study"] == "test study of arm A"


def test_audit_lists_finished_trials_no_slot_counts() -> None:
    slots, studies = ledger_and_storage()
    chained(slots)
    tune = studies["tune", "A", 0].records
    tune[7] = trial_rec(7)
    tune[8] = trial_rec(8, "PRUNED", None)
    tune[9] = trial_rec(9, "FAIL", None)  # a failed trial counts for nothing: not a problem
    studies["test", "A", 0].records[1]["attrs"]["bench_slot"] = 99  # its slot is not the claimed one
    out = audit(slots, studies, "exp", "h1", recorded=True)
    assert out["status"] == "broken" and out["n_unaccounted"] == 3
    assert out["unaccounted"] == [
        {"study": "exp.tune.A.0", "trial": 7, "state": "complete",
         "detail": "exp.tune.A.0 trial 7 (complete) is counted by no ledger slot"},
        {"study": "exp.tune.A.0", "trial": 8, "state": "pruned",
         "detail": "exp.tune.A.0 trial 8 (pruned) is counted by no ledger slot"},
        {"study": "exp.test.A", "trial": 1, "state": "complete",
         "detail": "exp.test.A trial 1 (complete) is counted by no ledger slot"}]
    for n in range(10, 40):
        tune[n] = trial_rec(n)
    out = audit(slots, studies, "exp", "h1", recorded=True)
    assert out["n_unaccounted"] == 33 and len(out["unaccounted"]) == MAX_LISTED == 20


def test_audit_of_the_digest_chain() -> None:
    slots, studies = ledger_and_storage()
    head = chained(slots)
    second = next(s for s in slots if s["seq"] == 2)
    # An edited result that still matches the storage (both changed): its digest no longer matches.
    second["result"] = result_json({**json.loads(second["result"]), "value": 0.3})
    studies["tune", "A", 0].records[1]["value"] = 0.3
    out = audit(slots, studies, "exp", "h1", recorded=True)
    assert out["chain_problems"] == ["slot tune/0/1 (seq 2): its digest does not match its stored result (the "
                                     "ledger row was edited)"] and out["head"] == head
    # ... and with its digest recomputed, the next link does not follow.
    second["digest"] = record_digest("tune", "A", 0, 1, "complete", second["result"])
    assert audit(slots, studies, "exp", "h1", recorded=True)["chain_problems"] == [
        "slot tune/0/1 (seq 2): chain link does not follow from the previous slot"]
    # A removed slot: positions no longer count 1, 2, ... and the chain skips a link.
    slots, studies = ledger_and_storage()
    chained(slots)
    slots.remove(next(s for s in slots if s["seq"] == 1))
    studies["tune", "A", 0].records.pop(0)
    assert audit(slots, studies, "exp", "h1", recorded=True)["chain_problems"] == [
        "slot tune/0/1 (seq 2): chain position 1 expected (a recorded slot was removed or reset)",
        "slot tune/0/1 (seq 2): chain link does not follow from the previous slot",
        "slot test/1/0 (seq 3): chain position 2 expected (a recorded slot was removed or reset)"]
    # A stored result with no chain position.
    slots, studies = ledger_and_storage()
    chained(slots)
    slots[0]["seq"] = None
    assert audit(slots, studies, "exp", "h1", recorded=True)["chain_problems"][-1] == (
        "a slot has a stored result but no chain position")


def test_audit_digests_a_missing_result_as_json_null() -> None:
    """A recorded slot whose result column is empty is digested as JSON null (what a finish without a trial record
    stores), so its link verifies; any other stand-in would flag an intact chain."""
    slots, studies = ledger_and_storage()
    slots[0]["result"] = "null"
    head = chained(slots)
    slots[0]["result"] = None
    out = audit(slots, studies, "exp", "h1", recorded=True)
    assert out["chain_problems"] == [] and out["head"] == head


def test_audit_of_slots_an_older_bench_finished_checks_outcome_and_value() -> None:
    slots, studies = ledger_and_storage()
    for s in slots:
        s["result"] = None
    out = audit(slots, studies, "exp", "h1", recorded=True)
    assert (out["status"], out["recorded_slots"], out["unrecorded_slots"], out["head"]) == (
        "not verifiable", 0, 3, None)
    assert out["text"] == ("the record is not verifiable: 3 finished slots were recorded by an older bench without "
                           "a stored result (only outcome and value were checked)")
    tune = studies["tune", "A", 0].records
    tune[0]["state"] = "PRUNED"
    tune[1]["value"] = 0.3
    slots[4]["value"] = None  # a slot without a value: nothing to compare
    studies["test", "A", 0].records[0]["value"] = 9.0
    out = audit(slots, studies, "exp", "h1", recorded=True)
    assert out["status"] == "broken" and out["mismatches"] == [
        {"study": "exp.tune.A.0", "trial": 0, "slot": 1, "field": "state",
         "detail": "state differs from the ledger: ledger complete, storage pruned"},
        {"study": "exp.tune.A.0", "trial": 1, "slot": 2, "field": "value",
         "detail": "value differs from the ledger: ledger 0.25, storage 0.3"}]
    # A pruned slot must find a pruned trial; a complete one a number equal to its value.
    tune[0]["state"], slots[0]["outcome"] = "PRUNED", "pruned"
    tune[1]["value"] = "0.25"
    assert [m["detail"] for m in audit(slots, studies, "exp", "h1", recorded=True)["mismatches"]] == [
        "value differs from the ledger: ledger 0.25, storage 0.25"]
    # A ledger without the record columns: nothing chained to check, every finished slot unverifiable.
    slots, studies = ledger_and_storage()
    out = audit(slots, studies, "exp", "h1", recorded=False)
    assert (out["status"], out["chain_problems"], out["head"]) == ("not verifiable", [], None)
    assert out["text"].startswith("the record is not verifiable: 3 finished slots")


def test_same_and_short_by_hand() -> None:
    assert _same({"a": [1, 2.0]}, {"a": [1.0, 2]}) and not _same({"a": 1}, {"a": 1, "b": 2})
    assert not _same([1, 2], [1, 2, 3]) and not _same([1, 2], [1, 3]) and not _same(True, 1)
    assert _same(True, True) and not _same(False, True) and _same("x", "x") and not _same("1", 1)
    assert _same(1e300, 1e300 * (1 + 1e-13)) and not _same(1.0, 1.0 + 1e-11) and not _same(0.0, 1e-300)
    assert _short("x" * 80) == "x" * 80 and _short("x" * 81) == "x" * 77 + "..."
    assert _short({"b": 1, "a": None}) == '{"a": null, "b": 1}'
