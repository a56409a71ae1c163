"""Bad input leaves no trace: one line naming file and field, exit 2, no file, row or study; the name stays free."""

from __future__ import annotations

import datetime
import os
from pathlib import Path
from typing import Any

import optuna
import pytest
import sqlalchemy as sa
import torch

from bench.cli import main
from bench.store.ledger import EXPERIMENTS, WORKERS
from bench.store.storage import make_engine, optuna_storage
from bench.tasks.base import MEMORY_ENV
from tests.conftest import TINY, tiny_spec

TASK = TINY["task"]


def refused(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> str:
    """Run the CLI; assert exit 2 with exactly one stderr line holding `message`, no traceback; return the line."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("bench: error: "), err
    assert message in lines[0], err
    return lines[0]


def counts(url: str) -> tuple[int, int, list[str]]:
    """(experiment rows, worker rows, study names) in a storage."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            n_exp = conn.execute(sa.select(sa.func.count()).select_from(EXPERIMENTS)).scalar_one()
            n_workers = conn.execute(sa.select(sa.func.count()).select_from(WORKERS)).scalar_one()
    finally:
        engine.dispose()
    storage = optuna_storage(url)
    try:
        names = sorted(s.study_name for s in optuna.get_all_study_summaries(storage))
    finally:
        storage.dispose()
    return n_exp, n_workers, names


# Each: spec overrides that pass the old validation, and the field the one-line refusal must name.
BAD_SPECS: list[tuple[str, dict[str, Any], str]] = [
    ("huge hidden", {"model": {"hidden": 1_000_000_000}}, "model.hidden: 1000000000 exceeds the maximum of 65536"),
    ("hidden over memory", {"model": {"hidden": 60_000}}, "model.hidden: 60000 exceeds the memory limit"),
    ("huge embedding", {"model": {"hidden": 8, "embedding": 1_000_000_000}},
     "model.embedding: 1000000000 exceeds the maximum of 65536"),
    ("float embedding", {"model": {"hidden": 8, "embedding": 1e9}}, "model.embedding: must be an integer"),
    ("matched params over memory", {"model": {"capacity": "matched_params", "target_params": 10**10}},
     "model.target_params: 10000000000 exceeds the memory limit"),
    ("745 GiB of data", {"task": {**TASK, "length": 10_000, "n_train": 10_000_000}},
     "task.n_train: 10000000 exceeds the memory limit"),
    ("datetime parameter", {"task": {**TASK, "when": datetime.datetime(1979, 5, 27, 7, 32)}},
     "task.when: must be a string, number, boolean or a list of them, got datetime"),
    ("date in a list", {"task": {**TASK, "tags": ["a", datetime.date(2024, 1, 1)]}}, "task.tags[1]: must be"),
    ("infinite parameter", {"task": {**TASK, "scale": float("inf")}}, "task.scale: must be finite"),
    ("step beyond range", {"search_space": {**TINY["search_space"],
                                            "dropout": {"type": "float", "low": 0.0, "high": 0.3, "step": 0.5}}},
     "search_space.dropout.step: 0.5 is larger than the range high - low = 0.3"),
    ("device file as text", {"task": {"name": "charlm", "text_file": "/dev/zero"}},
     "task.text_file: /dev/zero is not a regular file"),
    ("folder as text", {"task": {"name": "charlm", "text_file": "/"}}, "task.text_file: / is not a regular file"),
]


@pytest.mark.parametrize("overrides,message", [b[1:] for b in BAD_SPECS], ids=[b[0] for b in BAD_SPECS])
@pytest.mark.parametrize("command", ["init", "run"])
def test_bad_spec_writes_nothing_and_the_name_stays_free(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                         command: str, overrides: dict[str, Any],
                                                         message: str) -> None:
    db = tmp_path / "sub" / "bench.db"
    url = f"sqlite:///{db}"
    bad = tiny_spec(tmp_path, name="burnt", **overrides)
    line = refused(capsys, [command, str(bad), "--storage", url], message)
    assert line.startswith(f"bench: error: {bad}: "), line
    assert not db.exists() and not db.parent.exists()  # not even the folder
    good = tiny_spec(tmp_path, name="burnt")  # the corrected spec, same name
    assert main(["init", str(good), "--storage", url]) == 0
    assert counts(url)[0] == 1


def test_bad_spec_leaves_an_existing_storage_unchanged(tmp_path: Path, any_url: str,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", str(tiny_spec(tmp_path, name="first")), "--storage", any_url]) == 0
    before = counts(any_url)
    for i, (_, overrides, message) in enumerate(BAD_SPECS):
        refused(capsys, ["init", str(tiny_spec(tmp_path, name=f"bad{i}", **overrides)), "--storage", any_url],
                message)
        assert counts(any_url) == before
    assert main(["init", str(tiny_spec(tmp_path, name="bad0")), "--storage", any_url]) == 0
    assert counts(any_url)[0] == before[0] + 1


def test_memory_limit_is_configurable(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "bench.db"
    url = f"sqlite:///{db}"
    path = tiny_spec(tmp_path)
    monkeypatch.setenv(MEMORY_ENV, "0.000001")  # ~1 KiB: the tiny spec's model does not fit
    refused(capsys, ["init", str(path), "--storage", url], "exceeds the memory limit")
    assert not db.exists()
    monkeypatch.setenv(MEMORY_ENV, "lots")
    refused(capsys, ["init", str(path), "--storage", url], f"{MEMORY_ENV}: must be a positive number of GiB")
    assert not db.exists()
    monkeypatch.delenv(MEMORY_ENV)
    assert main(["init", str(path), "--storage", url]) == 0


def test_worker_builds_the_task_before_it_registers(tmp_path: Path, sqlite_url: str,
                                                    capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    path = tiny_spec(tmp_path)
    assert main(["init", str(path), "--storage", sqlite_url]) == 0
    before = counts(sqlite_url)
    monkeypatch.setenv(MEMORY_ENV, "0.000001")  # this machine's limit is lower than the one init ran under
    refused(capsys, ["worker", str(path), "--storage", sqlite_url], "exceeds the memory limit")
    assert counts(sqlite_url) == before  # no worker row


@pytest.mark.parametrize("argv,message", [
    (["--threads", "-1"], "--threads: must be at least 1"),
    (["--device", "cuda"], "--device: 'cuda' requested but CUDA is not available"),
])
def test_run_checks_the_workers_start_before_init(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                  argv: list[str], message: str) -> None:
    if "cuda" in argv and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    db = tmp_path / "bench.db"
    refused(capsys, ["run", str(tiny_spec(tmp_path)), "--storage", f"sqlite:///{db}", *argv], message)
    assert not db.exists()


def test_report_and_dashboard_refuse_a_missing_sqlite_file(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "typo" / "bench.db"
    url = f"sqlite:///{db}"
    out = tmp_path / "reports"
    refused(capsys, ["report", str(tiny_spec(tmp_path)), "--storage", url, "--out", str(out)],
            "experiment 'tiny' is not in sqlite:///")
    refused(capsys, ["dashboard", "--storage", url], f"--storage: no SQLite database at {db}")
    refused(capsys, ["status", str(tiny_spec(tmp_path)), "--storage", url], "run `bench init`")
    assert not db.parent.exists() and not out.exists()


def _finished_run(tmp_path: Path, url: str) -> Path:
    path = tiny_spec(tmp_path, depths=[1], budget={"trials": 1})
    assert main(["run", str(path), "--storage", url, "--workers", "1", "--threads", "1", "--no-report"]) == 0
    return path


def test_wrong_typed_stored_attributes_name_the_trial(tmp_path: Path, sqlite_url: str,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    path = _finished_run(tmp_path, sqlite_url)
    out = tmp_path / "r"
    engine = sa.create_engine(sqlite_url)
    edits = [
        ("trial_user_attributes", "seconds", '"abc"',
         "study 'tiny-depth1' trial 0: user attribute 'seconds' is 'abc', expected a number"),
        ("trial_user_attributes", "provenance", '"laptop"', "trial 0: user attribute 'provenance' is 'laptop'"),
        ("trial_user_attributes", "val_losses", '["x"]', "trial 0: user attribute 'val_losses'"),
        ("study_user_attributes", "trivial_loss", '"big"', "study 'tiny-depth1': user attribute 'trivial_loss'"),
    ]
    try:
        for table, key, bad, message in edits:
            with engine.begin() as conn:
                original = conn.execute(sa.text(f"SELECT value_json FROM {table} WHERE key = :k"),
                                        {"k": key}).scalar_one()
                conn.execute(sa.text(f"UPDATE {table} SET value_json = :v WHERE key = :k"), {"v": bad, "k": key})
            refused(capsys, ["report", str(path), "--storage", sqlite_url, "--out", str(out)], message)
            assert not out.exists()
            with engine.begin() as conn:
                conn.execute(sa.text(f"UPDATE {table} SET value_json = :v WHERE key = :k"),
                             {"v": original, "k": key})
    finally:
        engine.dispose()
    assert main(["report", str(path), "--storage", sqlite_url, "--out", str(out)]) == 0


def test_text_file_is_read_only_up_to_max_chars(tmp_path: Path) -> None:
    from bench.tasks.charlm import _read_text

    big = tmp_path / "big.txt"
    big.write_text("abcdefghij" * 1000)
    assert _read_text(big, 25) == ("abcdefghij" * 3)[:25]
    assert os.path.getsize(big) == 10_000
