"""Service overhead per trial: bench's claim → sample → record loop against bare Optuna ask/tell on one storage."""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import multiprocessing as mp
import os
import platform
import statistics
import sys
import tempfile
import time
import tomllib
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy as sa
import torch
from optuna.trial import TrialState

import bench.service.worker
from bench.service.run import init_experiment
from bench.service.worker import WorkerLoop, WorkerOptions
from bench.spec import Spec, parse_spec
from bench.store.storage import configure_engine, engine_kwargs, normalize_url
from bench.tasks.registry import load_task
from bench.trainers.training import train
from bench.tuning.objective import Outcome
from bench.tuning.search_space import suggest
from bench.tuning.studies import make_pruner, make_sampler, study_name

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "studies" / "quickstart.toml"
SERVER_ENV = {"postgres": "BENCH_TEST_POSTGRES_URL", "mysql": "BENCH_TEST_MYSQL_URL"}
SERVER_DEFAULT = {"postgres": "postgresql://postgres@127.0.0.1:5432/test", "mysql": "mysql://root@127.0.0.1:3306/test"}
# A mid-range point of the quickstart search space, for timing one real trial.
REAL_PARAMS: dict[str, Any] = {"lr": 1e-2, "init": "default", "init_gain": 1.0, "dropout": 0.1, "weight_decay": 1e-4}
ROUND_TIMEOUT = 600.0  # seconds a round may take before the benchmark gives up on its workers


# ---------------------------------------------------------------- what the worker processes run


def bare_storage(url: str) -> optuna.storages.RDBStorage:
    """Plain Optuna RDBStorage with bench's engine options and SQLite set-up, but none of bench's service layer."""
    st = optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs(url))
    # bench's SQLite recipe (WAL, BEGIN IMMEDIATE: processes queue for the write lock instead of failing with
    # "database is locked", which plain Optuna does with several processes); a no-op on servers.
    configure_engine(st.engine)
    return st


def dispose(storage: Any) -> None:
    """Close a storage's pooled connections (bench's wrapper has dispose(); a plain RDBStorage has an engine)."""
    if hasattr(storage, "dispose"):
        storage.dispose()
    elif hasattr(storage, "engine"):
        storage.engine.dispose()


def cheap_value(sampled: dict[str, Any], depth: int) -> float:
    """A trivial, deterministic objective of the sampled parameters (the "training" of this benchmark)."""
    nums = [float(v) for v in sampled.values() if isinstance(v, int | float) and not isinstance(v, bool)]
    return sum(math.log1p(abs(v)) for v in nums) + 0.01 * depth


def make_trivial_trial(with_attrs: bool) -> Callable[..., Outcome]:
    """A stand-in for `bench.tuning.objective.run_tuning_trial` (same signature) that samples and returns at once."""

    def trivial_trial(spec: Spec, depth: int, trial: optuna.Trial, *, device: str, seed: int) -> Outcome:
        value = cheap_value(suggest(trial, spec.search_space), depth)
        # The measurement attributes a real trial stores on its Optuna trial (bench.tuning.objective._attrs): same keys,
        # so that recording them is part of the measured overhead.
        attrs: dict[str, Any] = {"seconds": 0.0, "n_params": 0, "hidden": spec.model.hidden,
                                 "epochs_run": spec.budget.epochs, "diverged": False,
                                 "val_losses": [value] * spec.budget.epochs} if with_attrs else {}
        return Outcome("complete", value, 0.0, attrs)

    return trivial_trial


@dataclass
class RoundTask:
    mode: str  # "bench" | "bare"
    url: str
    raw_spec: dict[str, Any]
    experiment_id: int
    n_workers: int
    with_attrs: bool


class _Counter(logging.Handler):
    """Counts bench's warnings (transient-DB retries, lost slots) in a worker process instead of printing them."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0
        self.first = ""

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        self.first = self.first or f"{record.name}: {record.getMessage()}"[:200]


def _prepare_bench(task: RoundTask) -> tuple[Callable[[], tuple[float, int]], Callable[[], None]]:
    spec = parse_spec(task.raw_spec)
    last = [math.nan]

    def on_event(event: str, _data: dict[str, Any]) -> None:
        if event == "finished":
            last[0] = time.time()

    bench.service.worker.run_tuning_trial = make_trivial_trial(task.with_attrs)  # the real loop, minus the training
    opts = WorkerOptions(threads=1, poll_seconds=0.5, on_event=on_event)
    loop = WorkerLoop(spec, task.url, task.experiment_id, opts)
    for depth in spec.depths:  # load (and cache) every study before the clock starts, as a warm worker has them
        loop.study(depth, "tune")

    def run() -> tuple[float, int]:
        summary = loop.run()
        return last[0], sum(summary.finished.values())

    def close() -> None:
        loop.ledger.engine.dispose()
        dispose(loop.storage)

    return run, close


def _prepare_bare(task: RoundTask, idx: int) -> tuple[Callable[[], tuple[float, int]], Callable[[], None]]:
    spec = parse_spec(task.raw_spec)
    storage = bare_storage(task.url)
    studies = [optuna.create_study(study_name=study_name(spec.name, d), storage=storage, direction="minimize",
                                   sampler=make_sampler(spec, d, idx + 1), pruner=make_pruner(spec),
                                   load_if_exists=True) for d in spec.depths]
    total = spec.budget.trials * len(spec.depths)

    def run() -> tuple[float, int]:
        last, count = math.nan, 0
        # A static split of the budget: process idx runs trials idx, idx + n, ...; depth = trial % depths. Exact
        # without counting in the storage, so bare Optuna pays nothing for budget control (a lower bound).
        for j in range(idx, total, task.n_workers):
            k = j % len(spec.depths)
            trial = studies[k].ask()
            studies[k].tell(trial, cheap_value(suggest(trial, spec.search_space), spec.depths[k]))
            last, count = time.time(), count + 1
        return last, count

    def close() -> None:
        dispose(storage)

    return run, close


def worker_process(idx: int, tasks: Queue[Any], results: Queue[Any]) -> None:
    """A long-lived benchmark process: per round, prepare (untimed), report ready, wait for go, run, report."""
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    counter = _Counter()
    logging.getLogger("bench").addHandler(counter)
    logging.getLogger("bench").propagate = False
    torch.set_num_threads(1)
    results.put(("up", idx))
    while True:
        task: RoundTask | None = tasks.get()
        if task is None:
            return
        counter.count, counter.first = 0, ""
        err = ""
        close: Callable[[], None] = lambda: None  # noqa: E731
        run: Callable[[], tuple[float, int]] | None = None
        try:
            run, close = _prepare_bench(task) if task.mode == "bench" else _prepare_bare(task, idx)
        except Exception as e:  # noqa: BLE001 - reported to the parent, which notes the failed round
            err = f"prepare: {e!r}"[:300]
        results.put(("ready", idx))
        tasks.get()  # go
        end, count = math.nan, 0
        if run is not None:
            try:
                end, count = run()
            except Exception as e:  # noqa: BLE001
                err = f"run: {e!r}"[:300]
        with contextlib.suppress(Exception):
            close()
        results.put(("done", idx, end, count, counter.count, counter.first, err))


# ---------------------------------------------------------------- the parent: pool, rounds, storages


class PoolBroken(RuntimeError):
    """A benchmark process died or hung: the pool's message stream can no longer be trusted."""


@dataclass
class Pool:
    procs: list[BaseProcess]
    tasks: list[Queue[Any]]
    results: Queue[Any]

    @classmethod
    def start(cls, n: int) -> Pool:
        ctx = mp.get_context("spawn")
        results: Queue[Any] = ctx.Queue()
        tasks: list[Queue[Any]] = [ctx.Queue() for _ in range(n)]
        procs: list[BaseProcess] = [ctx.Process(target=worker_process, args=(i, tasks[i], results),
                                                daemon=True) for i in range(n)]
        for p in procs:
            p.start()
        pool = cls(procs, tasks, results)
        for _ in range(n):
            pool.get("up")
        return pool

    def get(self, kind: str) -> tuple[Any, ...]:
        deadline = time.monotonic() + ROUND_TIMEOUT
        while True:
            try:
                msg: tuple[Any, ...] = self.results.get(timeout=1.0)
            except Exception:  # noqa: BLE001 - queue.Empty: check that the workers are still alive
                dead = [p.exitcode for p in self.procs if not p.is_alive()]
                if dead or time.monotonic() > deadline:
                    raise PoolBroken(f"benchmark workers stopped answering (exit codes {dead})") from None
                continue
            assert msg[0] == kind, (msg, kind)
            return msg

    def close(self) -> None:
        for q in self.tasks:
            with contextlib.suppress(Exception):
                q.put(None)
        for p in self.procs:
            p.join(timeout=10)
            if p.is_alive():
                p.terminate()
                p.join(timeout=5)


@dataclass
class RoundResult:
    wall: float  # seconds from "go" to the last trial recorded
    trials: int
    retries: int  # bench warnings in the workers (transient DB errors retried, lost/reclaimed slots)
    note: str = ""


def run_round(pool: Pool, task: RoundTask) -> RoundResult:
    n = task.n_workers
    for i in range(n):
        pool.tasks[i].put(task)
    for _ in range(n):
        pool.get("ready")
    start = time.time()
    for i in range(n):
        pool.tasks[i].put("go")
    done = [pool.get("done") for _ in range(n)]
    errors = [d[6] for d in done if d[6]]
    if errors:
        raise RuntimeError(f"{task.mode} round with {n} workers failed: {errors[0]}")
    ends = [d[2] for d in done if not math.isnan(d[2])]
    retries = sum(int(d[4]) for d in done)
    note = next((str(d[5]) for d in done if d[5]), "")
    return RoundResult(max(ends) - start if ends else math.nan, sum(int(d[3]) for d in done), retries, note)


def round_spec(base: dict[str, Any], name: str, trials: int) -> dict[str, Any]:
    raw = {**base, "name": name, "budget": {**base["budget"], "trials": trials}}
    raw.pop("evaluation", None)  # tuning only: no re-evaluation phase
    raw.pop("baseline", None)
    return raw


def check_exact(url: str, spec: Spec, mode: str) -> str:
    """'' if every depth's study holds exactly budget.trials complete trials, else a description."""
    storage = bare_storage(url)
    try:
        counts = [len(optuna.load_study(study_name=study_name(spec.name, d), storage=storage)
                      .get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) for d in spec.depths]
    finally:
        dispose(storage)
    if all(c == spec.budget.trials for c in counts):
        return ""
    return f"{mode}: complete trials per depth {counts}, expected {spec.budget.trials}"


def server_url(kind: str, args: argparse.Namespace) -> sa.URL:
    """The server URL for administration. On PostgreSQL, the maintenance database "postgres": the given one may be
    busy with other people's work (even having its connections terminated), and CREATE DATABASE works from any."""
    url = sa.make_url(normalize_url(getattr(args, f"{kind}_url")))
    return url.set(database="postgres") if kind == "postgres" else url


@contextlib.contextmanager
def scratch_database(kind: str, args: argparse.Namespace, tmp: Path) -> Iterator[str]:
    """A fresh database for this run: a SQLite file in the temp dir, or bench_bm_<random> on a server (dropped)."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp / 'overhead.db'}"
        return
    admin_url = server_url(kind, args)
    name = f"bench_bm_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
    force = " WITH (FORCE)" if admin.dialect.name == "postgresql" else ""
    try:
        admin_execute(admin, f"CREATE DATABASE {name}")
        yield admin_url.set(database=name).render_as_string(hide_password=False)
    finally:
        try:
            admin_execute(admin, f"DROP DATABASE IF EXISTS {name}{force}")
        except sa.exc.SQLAlchemyError as err:
            print(f"warning: could not drop scratch database {name}: {err}", file=sys.stderr)
        admin.dispose()


def admin_execute(admin: sa.Engine, sql: str, tries: int = 4) -> None:
    """Run one administrative statement, again on a dropped connection (the servers are shared)."""
    for attempt in range(tries):
        try:
            with admin.connect() as conn:
                conn.execute(sa.text(sql))
            return
        except sa.exc.OperationalError:
            if attempt == tries - 1:
                raise
            time.sleep(1.0 + attempt)


def server_version(kind: str, args: argparse.Namespace) -> str | None:
    """The server's version string, or None if it cannot be reached."""
    if kind == "sqlite":
        import sqlite3

        return f"SQLite {sqlite3.sqlite_version}"
    engine = sa.create_engine(server_url(kind, args), connect_args={"connect_timeout": 5})
    try:
        for attempt in range(3):  # the servers are shared: a dropped connection is not "unreachable"
            try:
                with engine.connect() as conn:
                    version = str(conn.execute(sa.text("SELECT version()")).scalar())
                break
            except sa.exc.SQLAlchemyError:
                if attempt == 2:
                    return None
                time.sleep(2.0)
    finally:
        engine.dispose()
    return ("PostgreSQL " + version.split()[1]) if kind == "postgres" else f"MySQL/MariaDB {version}"


def real_trial_seconds(repeats: int) -> float:
    """Median wall time of one real quickstart trial (depth 2, 1 torch thread), after one warm-up trial."""
    torch.set_num_threads(1)
    spec = parse_spec(tomllib.loads(QUICKSTART.read_text()), str(QUICKSTART))
    task = load_task(spec.task)
    times = []
    for i in range(repeats + 1):
        start = time.perf_counter()
        train(task, spec.model, 2, spec.hparams(REAL_PARAMS), epochs=spec.budget.epochs,
              batch_size=spec.budget.batch_size, seed=i, clip_norm=spec.budget.clip_norm)
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


@dataclass
class Cell:
    bench: list[float] = field(default_factory=list)  # ms per trial, one per repeat
    bare: list[float] = field(default_factory=list)
    retries: int = 0
    notes: list[str] = field(default_factory=list)


def one_round(pool: Pool, mode: str, url: str, spec: Spec, raw: dict[str, Any], n: int,
              with_attrs: bool) -> RoundResult:
    """Set up the experiment (bench) or the bare studies (untimed), then run and time the round."""
    if mode == "bench":
        exp_id = init_experiment(spec, url).experiment_id
    else:
        exp_id = 0
        storage = bare_storage(url)
        try:
            for d in spec.depths:
                optuna.create_study(study_name=study_name(spec.name, d), storage=storage, direction="minimize")
        finally:
            dispose(storage)
    return run_round(pool, RoundTask(mode, url, raw, exp_id, n, with_attrs))


def measure_storage(pool: Pool, kind: str, url: str, args: argparse.Namespace,
                    base: dict[str, Any]) -> dict[int, Cell]:
    cells = {n: Cell() for n in args.workers}
    trials = args.trials if kind == "sqlite" or args.server_trials is None else args.server_trials
    for rep in range(args.repeats):
        for n in args.workers:
            # Alternate the order so slow drift of the shared machine does not always favour one path.
            for mode in ("bench", "bare") if (rep + n) % 2 == 0 else ("bare", "bench"):
                name = f"ovh-{mode}-{n}-{rep}-{uuid.uuid4().hex[:6]}"
                raw = round_spec(base, name, trials)
                spec = parse_spec(raw, name)
                total = trials * len(spec.depths)
                try:
                    res = one_round(pool, mode, url, spec, raw, n, args.attrs == "real")
                except PoolBroken:
                    raise
                except Exception as err:  # noqa: BLE001 - shared servers: report the failed round, go on
                    note = f"{mode} round failed: {err!r}"[:300]
                    cells[n].notes.append(note)
                    print(f"  {kind:8} workers={n} {mode:5} rep {rep + 1}/{args.repeats}: {note}", file=sys.stderr)
                    continue
                getattr(cells[n], mode).append(1000.0 * res.wall / total)
                cells[n].retries += res.retries
                for note in (res.note, check_exact(url, spec, mode),
                             "" if res.trials == total else f"{mode}: {res.trials} trials run, expected {total}"):
                    if note and note not in cells[n].notes:
                        cells[n].notes.append(note)
                print(f"  {kind:8} workers={n} {mode:5} rep {rep + 1}/{args.repeats}: {1000 * res.wall / total:7.2f} "
                      f"ms/trial ({total} trials, {res.wall:.2f} s, {res.retries} retries)", file=sys.stderr)
    return cells


def machine_line(servers: list[str]) -> str:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else math.nan
    return (f"Machine: {cores} cores ({platform.machine()}, {platform.system()}), load average {load:.1f} at start; "
            f"Python {platform.python_version()}, torch {torch.__version__}, optuna {optuna.__version__}, "
            f"SQLAlchemy {sa.__version__}; " + ", ".join(servers))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--storages", default="sqlite,postgres,mysql",
                   help="comma-separated: sqlite, postgres, mysql (servers that cannot be reached are skipped)")
    p.add_argument("--workers", default="1,2,4,8", help="worker process counts (default 1,2,4,8)")
    p.add_argument("--trials", type=int, default=15, help="tuning trials per depth (default 15)")
    p.add_argument("--server-trials", type=int, default=None,
                   help="trials per depth on PostgreSQL/MySQL (default: same as --trials)")
    p.add_argument("--repeats", type=int, default=3, help="repeats per cell; the table shows medians (default 3)")
    p.add_argument("--real-repeats", type=int, default=5, help="timed real trials for the reference (default 5)")
    p.add_argument("--attrs", choices=("real", "none"), default="real",
                   help="store a real trial's measurement attributes on each trial (default) or none")
    p.add_argument("--postgres-url", default=os.environ.get(SERVER_ENV["postgres"], SERVER_DEFAULT["postgres"]),
                   help="server URL; a scratch database bench_bm_<random> is created on it and dropped")
    p.add_argument("--mysql-url", default=os.environ.get(SERVER_ENV["mysql"], SERVER_DEFAULT["mysql"]),
                   help="server URL; a scratch database bench_bm_<random> is created on it and dropped")
    args = p.parse_args(argv)
    args.storages = [s.strip() for s in args.storages.split(",") if s.strip()]
    args.workers = [int(w) for w in args.workers.split(",") if w.strip()]
    bad = [s for s in args.storages if s not in ("sqlite", "postgres", "mysql")]
    if bad or not args.workers or min(args.workers) < 1 or args.trials < 1 or args.repeats < 1:
        p.error(f"bad arguments (unknown storages: {bad})" if bad else "workers, trials and repeats must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    base = tomllib.loads(QUICKSTART.read_text())
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    versions, storages, skipped = [], [], []
    for kind in args.storages:
        v = server_version(kind, args)
        if v is None:
            skipped.append(kind)
        else:
            versions.append(v)
            storages.append(kind)
    started = time.monotonic()
    header = machine_line(versions)
    results: dict[str, dict[int, Cell]] = {}
    pool = Pool.start(max(args.workers))
    try:
        with tempfile.TemporaryDirectory(prefix="bench-overhead-") as tmp:
            for kind in storages:
                try:
                    with scratch_database(kind, args, Path(tmp)) as url:
                        results[kind] = measure_storage(pool, kind, url, args, base)
                except sa.exc.SQLAlchemyError as err:  # the scratch database could not be created
                    skipped.append(f"{kind} ({str(err).splitlines()[0][:120]})")
    finally:
        pool.close()
    real = real_trial_seconds(args.real_repeats)
    elapsed = time.monotonic() - started

    print(header)
    print()
    print(f"Trivial objective, quickstart search space ({len(base['search_space'])} parameters, "
          f"{base['sampler']['kind']} sampler), {len(base['depths'])} depths x {args.trials} trials"
          + (f" ({args.server_trials} on servers)" if args.server_trials else "")
          + f"; median of {args.repeats} repeats. Real quickstart trial (depth 2, {base['budget']['epochs']} epochs, "
          f"1 torch thread): {1000 * real:.0f} ms.")
    print()
    print("| storage | workers | bare Optuna ms/trial | bench ms/trial | added ms/trial | added % of real trial "
          "| trial length for added <= 2% | bench retries |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    notes: list[str] = []
    for kind, cells in results.items():
        for n, c in cells.items():
            if not c.bare or not c.bench:
                print(f"| {kind} | {n} | - | - | - | - | - | {c.retries} |")
                notes += [f"{kind}, {n} workers: {note}" for note in c.notes]
                continue
            bare, bench_ms = statistics.median(c.bare), statistics.median(c.bench)
            added = bench_ms - bare
            # A real run's wall time per trial at n workers is about real / min(n, cores): compare against that.
            pct = 100.0 * added / (1000.0 * real / min(n, cores))
            needed = f"{added * min(n, cores) / 20.0:.1f} s" if added > 0 else "any"
            print(f"| {kind} | {n} | {bare:.1f} | {bench_ms:.1f} | {added:+.1f} | {pct:+.1f}% | {needed} "
                  f"| {c.retries} |")
            notes += [f"{kind}, {n} workers: {note}" for note in c.notes]
    print()
    print("ms/trial = wall time from start to the last recorded trial / trials (all processes together). "
          "added % = added ms/trial / (real trial ms / min(workers, cores)), i.e. the share of a real run's wall "
          "time; trial length for added <= 2% = the real trial duration at which this overhead would meet the "
          "target. Bare Optuna splits the budget statically between processes (no counting), on the same engine "
          f"settings; bench runs its real WorkerLoop with training replaced by the trivial objective. Target: "
          f"added <= 2%. Skipped: {', '.join(skipped) or 'none'}. Took {elapsed:.0f} s.")
    for note in notes:
        print(f"- note: {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
