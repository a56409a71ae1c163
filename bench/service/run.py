"""Experiment set-up (`init`) and the local run: init plus N worker processes on this machine, with live progress."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

import bench
from bench.spec import Spec, SpecError
from bench.store.ledger import CLAIMED, ExperimentMissing, Ledger, SlotRow, create_schema, has_schema, migrate
from bench.store.storage import (
    display_url,
    make_engine,
    missing_sqlite_file,
    normalize_url,
    optuna_storage,
    prepare,
    reachable,
)
from bench.tasks.base import Task
from bench.tasks.registry import BUILTIN, check_task, load_task
from bench.trainer import load_trainer
from bench.trainers.models import check_memory, hidden_size
from bench.tuning.studies import all_studies, create_studies


@dataclass(frozen=True)
class InitResult:
    experiment_id: int
    created: bool
    studies: list[str]
    url: str


def budget_slots(spec: Spec) -> list[SlotRow]:
    """The experiment's fixed budget as slot rows: every study's tuning trials, and the fixed baseline's seeds,
    per arm. (Re-evaluation and transfer slots follow from tuning results, so the worker adds them later.)"""
    rows: list[SlotRow] = [("tune", arm.key, k, i, None) for arm in spec.arms
                           for k in range(spec.budget.studies) for i in range(spec.budget.trials)]
    if spec.baseline:
        ev = spec.evaluation
        rows += [("baseline", arm.key, 0, s, {"params": dict(spec.baseline), "seed": ev.seed_offset + s})
                 for arm in spec.arms for s in range(ev.seeds)]
    return rows


def validate(spec: Spec) -> Spec:
    """Checks that need the science layer (task parameters, matched-capacity sizes): bad input, before any write.

    Returns the spec with the matched-capacity hidden sizes filled in (they become part of its hash). A user
    trainer is imported and its signature checked instead.
    """
    try:
        if spec.trainer is not None:
            load_trainer(spec.trainer)
            return spec
        assert spec.task is not None
        check_task(spec.task)
        model = spec.model
        if model.capacity == "matched_params" and not (model.hidden_by_depth or model.hidden_by_arm):
            task = load_task(spec.task)
            if spec.depth_only:  # keyed by depth, as before arms generalised it: the same hash
                model = replace(model, hidden_by_depth=tuple((d, hidden_size(task, replace(model, depth=d), d))
                                                             for d in spec.depths))
            else:
                model = replace(model, hidden_by_arm=tuple(
                    (arm.key, hidden_size(task, m, m.depth)) for arm in spec.arms for m in [spec.model_for(arm)]))
            spec = replace(spec, model=model)
    except SpecError as err:
        raise SpecError(f"{spec.source}: {err}") from None
    return spec


def build_task(spec: Spec) -> Task | None:
    """Build the task (its data) and check that training every arm fits the memory limit: everything about the
    spec that can fail, done before init, run or a worker writes anything (bad input must leave no trace).
    None for a user trainer (its data is its own business; validate checked that it can be called)."""
    if spec.task is None:
        return None
    try:
        task = load_task(spec.task)
        check_memory(task, [spec.model_for(arm) for arm in spec.arms], spec.budget.batch_size,
                     scientific=[name for name, _ in spec.scientific])
    except SpecError as err:
        raise SpecError(f"{spec.source}: {err}") from None
    return task


def readonly_spec(spec: Spec, url: str) -> Spec:
    """The spec as a command that does not train sees it (status, report, dashboard): a plug-in task factory is
    code and is neither imported nor called. Its matched-capacity hidden sizes (derived from the task, part of the
    hash) are taken from the stored experiment instead, which `init` derived from this same task."""
    if spec.task is None:
        return spec  # a user trainer is code: not imported by commands that do not train
    if spec.task.name in BUILTIN:
        return validate(spec)
    if spec.model.capacity != "matched_params" or spec.model.hidden_by_depth:
        return spec
    url = normalize_url(url)
    if missing_sqlite_file(url) is not None:
        return spec  # the command itself says the experiment is missing, without creating a file
    engine = make_engine(url)
    try:
        found = Ledger.find_experiment(engine, spec.name) if has_schema(engine) else None
    finally:
        engine.dispose()
    stored = found[2].get("model", {}).get("hidden_by_depth") if found else None
    if not stored:
        return spec
    solved = tuple((int(d), int(h)) for d, h in stored)
    return replace(spec, model=replace(spec.model, hidden_by_depth=solved))


def init_experiment(spec: Spec, url: str) -> InitResult:
    """Create experiment row, budget slots and studies; idempotent and safe to run concurrently (invariant 1, 3)."""
    spec = validate(spec)
    task = build_task(spec)
    url = prepare(url)
    reachable(url)
    engine = make_engine(url)
    try:
        create_schema(engine)
        storage = optuna_storage(url)
        exp_id, created = Ledger.ensure_experiment(engine, spec.name, spec.to_dict(), spec.hash, bench.__version__,
                                                   budget_slots(spec))
        from bench.service.dashboard import note_body, write_notes  # lazy: optuna-dashboard is slow to import (~1.7 s)

        about: dict[str, object] = ({"metric": spec.metric} if task is None else
                                      {"trivial_loss": task.trivial_loss, "metric": task.metric_note})
        names = create_studies(spec, storage, about)
        write_notes(storage, {name: note_body(spec, arm, role, k) for arm, role, k, name in all_studies(spec)})
        storage.dispose()
    finally:
        engine.dispose()
    return InitResult(exp_id, created, names, url)


def not_initialised(name: str, url: str) -> ExperimentMissing:
    """'Not in this storage', saying where a relative SQLite path points (the current folder)."""
    u = make_url(normalize_url(url))
    where = display_url(url)
    if u.get_backend_name() == "sqlite" and not Path(str(u.database)).expanduser().is_absolute():
        where += f" (a relative SQLite path: relative to the current folder, {Path.cwd()})"
    return ExperimentMissing(f"experiment {name!r} is not in {where}; "
                             "run `bench init` (or `bench run`) first, or pass the --storage it used")


def attach(spec: Spec, url: str, *, write: bool = True) -> int:
    """The experiment id for a worker, after checking that the stored spec is this spec (invariant 1).
    `write=False` for read-only commands: an older storage is then read as it is, never migrated."""
    url = normalize_url(url)
    missing = not_initialised(spec.name, url)
    if missing_sqlite_file(url) is not None:
        raise missing  # do not create an empty database file as a side effect of a typo
    if not write:
        reachable(url)  # a read-only command is interactive: fail fast (workers wait for the server)
    engine = make_engine(url)
    try:
        if not has_schema(engine):
            raise missing
        exp_id = Ledger.check_experiment(engine, spec.name, spec.to_dict(), spec.hash)
        if write:
            migrate(engine)  # a storage initialised by an older bench gains the record columns before workers write
        return exp_id
    finally:
        engine.dispose()


def default_workers(n_slots: int, requested: int | None = None) -> tuple[int, int]:
    """(processes, torch threads each): one process per core for small recurrent nets (or as requested), and the
    cores split between them, so the machine is never oversubscribed."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    workers = requested or max(1, min(cores, n_slots))
    return workers, max(1, cores // workers)


class LocalRunStopped(KeyboardInterrupt):
    """`bench run` was stopped by a signal; its workers have exited. args[0]: the signal's name."""

    def __init__(self, signal_name: str, pids: list[int], killed: list[int], held_before: int | None, since: float
                 ) -> None:
        super().__init__(signal_name)
        self.pids, self.killed, self.held_before, self.since = pids, killed, held_before, since


STOP_GRACE_SECONDS = 30.0  # how long stopped workers get to release their trials before they are killed


def run_local(spec_path: str, url: str, workers: int, threads: int, *, lease_seconds: float,
              device: str = "cpu", refresh: Callable[[], None] | None = None, refresh_seconds: float = 0.5,
              ledger: Ledger | Sequence[Ledger] | None = None, grace_seconds: float = STOP_GRACE_SECONDS) -> int:
    """Start `workers` `bench worker` processes and wait; a signal stops them cleanly (their slots go back).

    The storage URL (which may hold a password) travels in the environment, never on argv, where `ps` shows it to
    every local user. Each worker also learns this process's pid and exits, releasing its trial, once it is gone
    (a `kill -9` of `bench run` leaves no worker running unsupervised)."""
    cmd = [sys.executable, "-m", "bench", "worker", spec_path, "--threads", str(threads),
           "--device", device, "--lease-seconds", str(lease_seconds), "--quiet"]
    env = {**os.environ, "BENCH_STORAGE": url, "BENCH_PARENT_PID": str(os.getpid())}
    since = time.time()
    with _StopRequest() as stop:
        # Own sessions: a terminal's Ctrl-C reaches this process only, which then stops each worker exactly once.
        procs = [subprocess.Popen(cmd, env=env, start_new_session=True) for _ in range(workers)]
        try:
            while stop.name is None and any(p.poll() is None for p in procs):
                if refresh is not None:
                    refresh()
                stop.wait(refresh_seconds)
        except KeyboardInterrupt as err:  # Python API in a non-main thread, or a signal before the handlers
            stop.name = stop.name or (str(err.args[0]) if err.args else "Ctrl-C")
        if stop.name is not None:
            try:
                held: int | None = len(_held(ledger, [p.pid for p in procs], since))
            except Exception:  # noqa: BLE001 - stopping the workers matters more than counting their trials
                held = None
            killed = stop_workers(procs, grace_seconds)
            raise LocalRunStopped(stop.name, [p.pid for p in procs], killed, held, since)
    if refresh is not None:
        refresh()
    codes = [p.returncode for p in procs]
    return max(codes) if codes else 0


class _StopRequest:
    """While `bench run` supervises its workers, SIGTERM, SIGINT and SIGHUP only record a stop request, checked
    between refreshes: a signal never lands inside a database call (which would leave a half-reset connection and a
    traceback), and the workers are then stopped in order. Elsewhere (a non-main thread) nothing is installed."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

    def __init__(self) -> None:
        self.name: str | None = None
        self._event = threading.Event()
        self._saved: dict[int, Any] = {}

    def __enter__(self) -> _StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                old = signal.getsignal(sig)
                if sig == signal.SIGHUP and old == signal.SIG_IGN:
                    continue  # nohup: keep surviving the terminal
                self._saved[sig] = old if old is not None else signal.SIG_DFL
                signal.signal(sig, self._record)
        return self

    def __exit__(self, *_exc: object) -> None:
        for sig, old in self._saved.items():
            signal.signal(sig, old)

    def _record(self, signum: int, _frame: object) -> None:
        name = signal.Signals(signum).name
        if self.name is None:
            self.name = name
            self._event.set()
        else:
            print(f"bench: {name} again: already stopping the workers; kill -9 forces", file=sys.stderr)

    def wait(self, seconds: float) -> None:
        self._event.wait(seconds)


def stop_workers(procs: list[subprocess.Popen[bytes]], grace_seconds: float) -> list[int]:
    """SIGTERM every live worker (SIGINT may be ignored by inheritance in a background start), wait up to the
    grace period in all, then kill the rest; the pids that had to be killed."""
    for p in procs:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    killed = []
    for p in procs:
        try:
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            killed.append(p.pid)
    return killed


def _ledgers(ledger: Ledger | Sequence[Ledger] | None) -> list[Ledger]:
    """One experiment's ledger, or a suite's (one per member experiment)."""
    return [] if ledger is None else [ledger] if isinstance(ledger, Ledger) else list(ledger)


def _held(ledger: Ledger | Sequence[Ledger] | None, pids: list[int], since: float) -> list[dict[str, Any]]:
    """Slots claimed right now by this run's workers (found by host and pid among workers started since)."""
    return [s for led in _ledgers(ledger) for s in _held_in(led, pids, since)]


def _held_in(ledger: Ledger, pids: list[int], since: float) -> list[dict[str, Any]]:
    host = socket.gethostname()
    ours = {w["id"] for w in ledger.workers() if w["host"] == host and w["pid"] in pids and w["started_at"] >= since}
    return [s for s in ledger.slots() if s["state"] == CLAIMED and s["worker_id"] in ours]


def settle_stopped(ledger: Ledger | Sequence[Ledger], stop: LocalRunStopped) -> str:
    """After a stop: make the claims of killed workers reclaimable at once, and say truthfully what happened."""
    left, expired = [], 0
    for led in _ledgers(ledger):
        mine = _held_in(led, stop.pids, stop.since)
        expired += led.expire_claims([s["id"] for s in mine]) if mine else 0
        left += mine
    n = len(stop.pids)
    words = [f"{n} worker{'s' if n != 1 else ''} stopped"]
    if stop.held_before is None:
        words.append("their running trials were released" if not left else "")
    elif stop.held_before:
        released = max(0, stop.held_before - len(left))
        words.append(f"{released} running trial{'s' if released != 1 else ''} released")
    else:
        words.append("no trial was running")
    if stop.killed:
        words.append(f"{len(stop.killed)} did not stop within {STOP_GRACE_SECONDS:g} s and were killed")
    if left:
        words.append(f"{len(left)} trial{'s' if len(left) != 1 else ''} they held "
                     f"{'are' if expired else 'will be'} reclaimed by the next worker")
    return "; ".join(w for w in words if w) + "; run the same command again to resume"
