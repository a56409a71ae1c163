"""Many worker processes on one shared database (real PostgreSQL, MariaDB, SQLite): exact budgets under races,
crashes (kill -9), concurrent init and dropped connections."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
import sqlalchemy as sa
from optuna.trial import TrialState

from bench.spec import load_spec
from bench.store.ledger import Ledger
from bench.store.storage import make_engine, normalize_url, optuna_storage
from bench.tuning.studies import spec_study_name
from tests.conftest import tiny_spec

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "BENCH_DB_RETRY_SECONDS": "60"}
# Process-heavy: keep these on one xdist worker; each spawns workers that wait up to 240 s, so a 10 min limit.
pytestmark = [pytest.mark.xdist_group("distributed"), pytest.mark.timeout(600)]


def bench(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "bench", *args], env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def workers(spec: Path, url: str, n: int, lease: float = 30.0) -> list[subprocess.Popen[str]]:
    return [bench("worker", str(spec), "--storage", url, "--lease-seconds", str(lease), "--quiet",
                  "--threads", "1") for _ in range(n)]


def slots(url: str, name: str) -> list[dict[str, Any]]:
    engine = make_engine(normalize_url(url))
    try:
        found = Ledger.find_experiment(engine, name)
        return [] if found is None else Ledger(engine, found[0]).slots()
    finally:
        engine.dispose()


def wait_all(procs: list[subprocess.Popen[str]], timeout: float = 240) -> None:
    for p in procs:
        out, err = p.communicate(timeout=timeout)
        assert p.returncode == 0, f"worker exited {p.returncode}: {err[-2000:]}"


def assert_exact(url: str, spec_path: Path) -> dict[tuple[int, int], list[optuna.trial.FrozenTrial]]:
    """Every study of every depth has exactly its budget of done slots and of counted Optuna trials; each slot ran
    once. Returns (depth, study) -> the study's trials."""
    spec = load_spec(spec_path)
    rows = [s for s in slots(url, spec.name) if s["role"] == "tune"]
    storage = optuna_storage(normalize_url(url))
    out = {}
    for arm in spec.arms:
        for k in range(spec.budget.studies):
            mine = [s for s in rows if (s["arm"], s["study"]) == (arm.key, k)]
            assert len(mine) == spec.budget.trials
            assert all(s["state"] == "done" for s in mine), [s["state"] for s in mine]
            study = optuna.load_study(study_name=spec_study_name(spec, arm, "tune", k), storage=storage)
            counted = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
            assert len(counted) == spec.budget.trials
            assert sorted(t.number for t in counted) == sorted(s["trial_number"] for s in mine)
            assert len({t.user_attrs["bench_slot"] for t in counted}) == spec.budget.trials  # no slot counted twice
            out[(arm.depth, k)] = study.trials
    storage.dispose()
    return out


def _depth(slot: dict[str, Any]) -> int:
    return int(json.loads(slot["arm"])["depth"])


def spec_for(tmp_path: Path, trials: int, epochs: int = 1, studies: int = 1, **kw: Any) -> Path:
    return tiny_spec(tmp_path, depths=[1, 2, 3],
                     budget={"trials": trials, "epochs": epochs, "batch_size": 32, "studies": studies}, **kw)


def test_eight_workers_exact_budget_and_parity(any_url: str, tmp_path: Path) -> None:
    """3 depths x 2 replicate studies x 5 trials, 8 workers: every study exact, parity across all 6 studies."""
    path = spec_for(tmp_path, trials=5, studies=2)
    init = bench("init", str(path), "--storage", any_url)
    assert init.wait(120) == 0, init.stderr.read() if init.stderr else ""
    procs = workers(path, any_url, 8)
    worst_parity = 0
    while any(p.poll() is None for p in procs):
        rows = [s for s in slots(any_url, "tiny") if s["role"] == "tune"]
        started = [sum(1 for s in rows if (_depth(s), s["study"]) == (d, k) and s["state"] != "free")
                   for d in (1, 2, 3) for k in (0, 1)]
        worst_parity = max(worst_parity, max(started) - min(started))
        time.sleep(0.2)
    wait_all(procs)
    trials = assert_exact(any_url, path)
    assert all(t.state != TrialState.FAIL for ts in trials.values() for t in ts)
    assert all(s["attempts"] == 1 and s["lost"] == 0 for s in slots(any_url, "tiny"))
    # Claims are serialized per experiment and go to the least-advanced (arm, study): started counts never differ
    # by more than one, at any moment, on any backend.
    assert worst_parity <= 1, worst_parity


def test_kill_9_mid_trial_is_reclaimed_and_budget_stays_exact(any_url: str, tmp_path: Path) -> None:
    """2 replicate studies per depth: the reclaimed slot is re-run in its own (arm, study), every study exact."""
    path = spec_for(tmp_path, trials=2, epochs=30, studies=2)
    assert bench("init", str(path), "--storage", any_url).wait(120) == 0
    procs = workers(path, any_url, 2, lease=3.0)
    victim_pid = None
    deadline = time.time() + 120
    while victim_pid is None and time.time() < deadline:
        engine = make_engine(normalize_url(any_url))
        with engine.connect() as conn:
            row = conn.execute(sa.text(
                "SELECT w.pid FROM bench_slots s JOIN bench_workers w ON w.id = s.worker_id "
                "WHERE s.state = 'claimed' AND s.trial_number IS NOT NULL")).first()
        engine.dispose()
        victim_pid = row[0] if row else None
        time.sleep(0.1)
    assert victim_pid is not None, "no trial started"
    os.kill(victim_pid, signal.SIGKILL)
    victim = next(p for p in procs if p.pid == victim_pid)
    victim.wait(10)
    assert victim.returncode == -signal.SIGKILL
    survivors = [p for p in procs if p is not victim]
    wait_all(survivors)
    trials = assert_exact(any_url, path)
    failed = [t for ts in trials.values() for t in ts if t.state == TrialState.FAIL]
    assert len(failed) == 1
    assert "lease expired" in failed[0].user_attrs["bench_lost"]
    assert sum(s["lost"] for s in slots(any_url, "tiny")) == 1


def test_concurrent_init_makes_one_experiment(any_url: str, tmp_path: Path) -> None:
    path = spec_for(tmp_path, trials=5)
    procs = [bench("init", str(path), "--storage", any_url) for _ in range(8)]
    for p in procs:
        out, err = p.communicate(timeout=180)
        assert p.returncode == 0, err
    engine = make_engine(normalize_url(any_url))
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM bench_experiments")).scalar() == 1
        assert conn.execute(sa.text("SELECT COUNT(*) FROM bench_slots")).scalar() == 15
    engine.dispose()
    storage = optuna_storage(normalize_url(any_url))
    assert sorted(s.study_name for s in optuna.get_all_study_summaries(storage)) == [
        "tiny-depth1", "tiny-depth2", "tiny-depth3"]
    changed = tiny_spec(tmp_path / "v2" if (tmp_path / "v2").mkdir() or True else tmp_path, depths=[1, 2, 3],
                        budget={"trials": 6, "epochs": 1, "batch_size": 32})
    p = bench("init", str(changed), "--storage", any_url)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 2 and "budget.trials" in err and "Traceback" not in err


@pytest.mark.postgres
def test_postgres_connection_drops_are_survived(pg_url: str, tmp_path: Path) -> None:
    path = spec_for(tmp_path, trials=6, epochs=3)
    assert bench("init", str(path), "--storage", pg_url).wait(120) == 0
    procs = workers(path, pg_url, 2)
    db = sa.make_url(normalize_url(pg_url)).database
    admin = sa.create_engine(normalize_url(os.environ["BENCH_TEST_POSTGRES_URL"]), isolation_level="AUTOCOMMIT")
    spec = load_spec(path)

    def drop() -> int:
        with admin.connect() as conn:
            return int(conn.execute(sa.text(
                "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = :db AND pid <> pg_backend_pid()"), {"db": db}).scalar() or 0)

    def done() -> int:
        return sum(1 for s in slots(pg_url, spec.name) if s["state"] == "done")

    # Conditions, not clock times: drop every live connection of the workers (1) as soon as one exists, and (2, 3)
    # each time another slot has finished, while work remains.
    killed, rounds, last_done, deadline = 0, 0, -1, time.monotonic() + 300
    while rounds < 3 and time.monotonic() < deadline and any(p.poll() is None for p in procs):
        now_done = done()
        if now_done > last_done:
            dropped = drop()
            if dropped:
                killed += dropped
                rounds += 1
                last_done = now_done
        time.sleep(0.05)
    admin.dispose()
    assert killed > 0, "the test must actually drop live connections"
    wait_all(procs)
    trials = assert_exact(pg_url, path)
    assert sum(1 for ts in trials.values() for t in ts if t.state == TrialState.RUNNING) == 0
