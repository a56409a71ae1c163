"""Experiment set-up (`init`) and the local run: init plus N worker processes on this machine, with live progress."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from sqlalchemy.engine import make_url

import bench
from bench.ledger import ExperimentMissing, Ledger, create_schema, has_schema
from bench.models import hidden_size
from bench.spec import Spec, SpecError
from bench.storage import display_url, make_engine, normalize_url, optuna_storage, prepare
from bench.studies import create_studies, study_roles
from bench.tasks.registry import check_task, load_task


@dataclass(frozen=True)
class InitResult:
    experiment_id: int
    created: bool
    studies: list[str]
    url: str


def budget_slots(spec: Spec) -> list[tuple[str, int, int, dict[str, object] | None]]:
    """The experiment's fixed budget as slot rows: tuning trials, and the baseline's seeds, per depth."""
    rows: list[tuple[str, int, int, dict[str, object] | None]] = [
        ("tune", d, i, None) for d in spec.depths for i in range(spec.budget.trials)]
    if spec.baseline:
        ev = spec.evaluation
        rows += [("baseline", d, s, {"params": dict(spec.baseline), "seed": ev.seed_offset + s})
                 for d in spec.depths for s in range(ev.seeds)]
    return rows


def validate(spec: Spec) -> Spec:
    """Checks that need the science layer (task parameters, matched-capacity sizes): bad input, before any write.

    Returns the spec with the matched-capacity hidden sizes filled in (they become part of its hash).
    """
    try:
        check_task(spec.task)
        if spec.model.capacity == "matched_params" and not spec.model.hidden_by_depth:
            task = load_task(spec.task)
            solved = tuple((d, hidden_size(task, spec.model, d)) for d in spec.depths)
            spec = replace(spec, model=replace(spec.model, hidden_by_depth=solved))
    except SpecError as err:
        raise SpecError(f"{spec.source}: {err}") from None
    return spec


def init_experiment(spec: Spec, url: str) -> InitResult:
    """Create experiment row, budget slots and studies; idempotent and safe to run concurrently (invariant 1, 3)."""
    spec = validate(spec)
    url = prepare(url)
    engine = make_engine(url)
    try:
        create_schema(engine)
        storage = optuna_storage(url)
        exp_id, created = Ledger.ensure_experiment(engine, spec.name, spec.to_dict(), spec.hash, bench.__version__,
                                                   budget_slots(spec))
        task = load_task(spec.task)
        from bench.dashboard import note_body, write_notes  # lazy: optuna-dashboard is slow to import (~1.7 s)

        names = create_studies(spec, storage, {"trivial_loss": task.trivial_loss, "metric": task.metric_note})
        write_notes(spec, storage, {(d, r): note_body(spec, d, r) for d in spec.depths for r in study_roles(spec)})
        storage.dispose()
    finally:
        engine.dispose()
    return InitResult(exp_id, created, names, url)


def attach(spec: Spec, url: str) -> int:
    """The experiment id for a worker, after checking that the stored spec is this spec (invariant 1)."""
    url = normalize_url(url)
    missing = ExperimentMissing(f"experiment {spec.name!r} is not in {display_url(url)}; "
                                "run `bench init` (or `bench run`) first")
    u = make_url(url)
    if u.get_backend_name() == "sqlite" and not Path(str(u.database)).expanduser().exists():
        raise missing  # do not create an empty database file as a side effect of a typo
    engine = make_engine(url)
    try:
        if not has_schema(engine):
            raise missing
        return Ledger.check_experiment(engine, spec.name, spec.to_dict(), spec.hash)
    finally:
        engine.dispose()


def default_workers(n_slots: int) -> tuple[int, int]:
    """(processes, torch threads each): one process per core for small recurrent nets, never oversubscribed."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    workers = max(1, min(cores, n_slots))
    return workers, max(1, cores // workers)


def run_local(spec_path: str, url: str, workers: int, threads: int, *, lease_seconds: float,
              device: str = "cpu", refresh: Callable[[], None] | None = None, refresh_seconds: float = 0.5) -> int:
    """Start `workers` `bench worker` processes and wait; Ctrl-C stops them cleanly (their slots go back)."""
    cmd = [sys.executable, "-m", "bench", "worker", spec_path, "--storage", url, "--threads", str(threads),
           "--device", device, "--lease-seconds", str(lease_seconds), "--quiet"]
    procs = [subprocess.Popen(cmd, start_new_session=True) for _ in range(workers)]
    try:
        while any(p.poll() is None for p in procs):
            if refresh is not None:
                refresh()
            time.sleep(refresh_seconds)
    except KeyboardInterrupt:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
        raise
    if refresh is not None:
        refresh()
    codes = [p.returncode for p in procs]
    return max(codes) if codes else 0
