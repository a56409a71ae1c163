"""Tuning throughput of `bench run --workers N --threads 1` with the real quickstart LSTM objective on SQLite."""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy as sa
import tomli_w
import torch

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "studies" / "quickstart.toml"


@dataclass
class RunResult:
    wall: float  # seconds of the whole `bench run` command: init, worker start-up, tuning, exit
    span: float  # first claim to last finish in the ledger: tuning only
    startup: float  # command start to the first claim: imports, init, worker processes starting
    winddown: float  # last finish to the command's exit
    trials: int
    mean_train: float  # mean bench_slots.seconds: the training time of one trial as the worker measured it
    mean_slot: float  # mean claim → finish: training plus bench's per-trial service time
    outcomes: Counter[str] = field(default_factory=Counter)
    lost: int = 0


def write_spec(tmp: Path, trials: int, pruner: str) -> tuple[Path, dict[str, Any]]:
    """The quickstart spec under a new name, with `trials` per depth and tuning only (no evaluation phase or
    baseline); pruner "none" makes every trial train all epochs, so that runs do equal work."""
    raw: dict[str, Any] = tomllib.loads(QUICKSTART.read_text())
    raw["name"] = "throughput"
    raw["budget"] = {**raw["budget"], "trials": trials}
    raw.pop("evaluation", None)
    raw.pop("baseline", None)
    if pruner == "none":
        raw["pruner"] = {"kind": "none"}
    path = tmp / "throughput.toml"
    path.write_text(tomli_w.dumps(raw))
    return path, raw


def read_ledger(db: Path) -> tuple[float, float, int, float, float, Counter[str], int]:
    """(first claim, last finish, trials, mean training s, mean slot s, outcome counts, lost) of the tuning slots."""
    engine = sa.create_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text(
                "SELECT outcome, seconds, claimed_at, finished_at, lost FROM bench_slots "
                "WHERE role = 'tune' AND state = 'done'")).all()
    finally:
        engine.dispose()
    if not rows:
        raise RuntimeError(f"no finished tuning slots in {db}")
    train = [float(r.seconds) for r in rows if r.seconds is not None]
    slot = [float(r.finished_at - r.claimed_at) for r in rows]
    first, last = min(r.claimed_at for r in rows), max(r.finished_at for r in rows)
    return (first, last, len(rows), statistics.fmean(train) if train else float("nan"), statistics.fmean(slot),
            Counter(str(r.outcome) for r in rows), sum(int(r.lost) for r in rows))


def bench_run(spec: Path, db: Path, workers: int, threads: int, timeout: float, log: Path) -> RunResult:
    """Time one `python -m bench run ... --no-report` on a fresh SQLite file."""
    cmd = [sys.executable, "-m", "bench", "run", str(spec), "--storage", f"sqlite:///{db}", "--workers", str(workers),
           "--threads", str(threads), "--no-report"]
    start = time.time()  # wall clock: compared with the ledger's timestamps
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=spec.parent, stdout=out, stderr=subprocess.STDOUT)
        try:
            code = proc.wait(timeout=timeout)
        except (subprocess.TimeoutExpired, KeyboardInterrupt):
            # `bench run` forwards SIGINT to its workers (they run in their own sessions), which release their slots.
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
            raise
    end = time.time()
    if code != 0:
        tail = log.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{' '.join(cmd)} exited with {code}:\n{tail}")
    first, last, trials, mean_train, mean_slot, outcomes, lost = read_ledger(db)
    return RunResult(end - start, last - first, first - start, end - last, trials, mean_train, mean_slot, outcomes,
                     lost)


def control_process(trials: int, threads: int, barrier: Barrier, out: Queue[float]) -> None:
    """Train `trials` quickstart trials (depths in turn) with plain torch, no bench; report the mean seconds."""
    from bench.spec import parse_spec
    from bench.tasks.registry import load_task
    from bench.trainers.training import train

    torch.set_num_threads(threads)
    spec = parse_spec(tomllib.loads(QUICKSTART.read_text()), str(QUICKSTART))
    task = load_task(spec.task)
    hp = spec.hparams({"lr": 1e-2, "init": "default", "init_gain": 1.0, "dropout": 0.1, "weight_decay": 1e-4})

    def one(i: int) -> float:
        start = time.perf_counter()
        train(task, spec.model, spec.depths[i % len(spec.depths)], hp, epochs=spec.budget.epochs,
              batch_size=spec.budget.batch_size, seed=i, clip_norm=spec.budget.clip_norm)
        return time.perf_counter() - start

    one(0)  # warm-up, as a bench worker's first trial
    barrier.wait()  # all processes train at the same time
    out.put(statistics.fmean(one(i) for i in range(trials)))


def control(n: int, trials: int, threads: int) -> float:
    """Mean seconds per plain training trial while `n` processes train concurrently (this machine's own scaling)."""
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(n)
    out: Queue[float] = ctx.Queue()
    procs = [ctx.Process(target=control_process, args=(trials, threads, barrier, out), daemon=True) for _ in range(n)]
    for p in procs:
        p.start()
    try:
        means = [out.get(timeout=600) for _ in range(n)]
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.terminate()
    return statistics.fmean(means)


def machine_line() -> str:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    import sqlite3

    return (f"Machine: {cores} cores ({platform.machine()}, {platform.system()}), load average {load:.1f} at start; "
            f"Python {platform.python_version()}, torch {torch.__version__}, optuna {optuna.__version__}, "
            f"SQLAlchemy {sa.__version__}, SQLite {sqlite3.sqlite_version}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--workers", default="1,2", help="worker process counts to compare; the first is the baseline "
                   "of the speedup (default 1,2)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per worker (default 1)")
    p.add_argument("--trials", type=int, default=30, help="tuning trials per depth (default 30)")
    p.add_argument("--repeats", type=int, default=2, help="runs per worker count; the table shows medians (default 2)")
    p.add_argument("--pruner", choices=("none", "keep"), default="none",
                   help="none (default): every trial trains all epochs, so runs do equal work; keep: quickstart's "
                        "median pruner (pruned trials end early, and differently per run)")
    p.add_argument("--control-trials", type=int, default=9,
                   help="plain-torch trials per process for the machine's own scaling, no bench (0 = skip; default 9)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds allowed per `bench run` (default 600)")
    args = p.parse_args(argv)
    args.workers = [int(w) for w in args.workers.split(",") if w.strip()]
    if not args.workers or min(args.workers) < 1 or args.trials < 1 or args.repeats < 1 or args.threads < 1:
        p.error("workers, threads, trials and repeats must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    header = machine_line()
    started = time.monotonic()
    results: dict[int, list[RunResult]] = {n: [] for n in args.workers}
    controls = {n: control(n, args.control_trials, args.threads) for n in args.workers} if args.control_trials else {}
    with tempfile.TemporaryDirectory(prefix="bench-throughput-") as tmp_name:
        tmp = Path(tmp_name)
        spec, raw = write_spec(tmp, args.trials, args.pruner)
        for rep in range(args.repeats):
            # Alternate the order so slow drift of the shared machine does not always favour one worker count.
            order = args.workers if rep % 2 == 0 else list(reversed(args.workers))
            for n in order:
                db = tmp / f"w{n}-r{rep}.db"
                res = bench_run(spec, db, n, args.threads, args.timeout, tmp / f"w{n}-r{rep}.log")
                results[n].append(res)
                print(f"  workers={n} rep {rep + 1}/{args.repeats}: wall {res.wall:.1f} s "
                      f"(start-up {res.startup:.1f} s, wind-down {res.winddown:.1f} s), span {res.span:.1f} s, "
                      f"{res.trials} trials, mean trial {res.mean_train:.3f} s, mean slot {res.mean_slot:.3f} s, "
                      f"{dict(res.outcomes)}", file=sys.stderr)
    elapsed = time.monotonic() - started

    base = args.workers[0]
    base_wall = statistics.median(r.wall for r in results[base])
    base_span = statistics.median(r.span for r in results[base])
    print(header)
    print()
    print(f"Spec: studies/quickstart.toml, tuning only: {len(raw['depths'])} depths x {args.trials} trials, "
          f"{raw['budget']['epochs']} epochs, pruner "
          f"{'none' if args.pruner == 'none' else 'median (as quickstart)'}; `bench run --threads {args.threads} "
          f"--no-report` on a fresh SQLite file; median of {args.repeats} run(s).")
    print()
    print("| workers | wall s | trials/min | speedup | start-up s | wind-down s | tuning span s | trials/min (span) "
          "| speedup (span) | mean trial s | mean slot s |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    notes: list[str] = []
    for n, runs in results.items():
        wall = statistics.median(r.wall for r in runs)
        span = statistics.median(r.span for r in runs)
        trials = runs[0].trials
        train = statistics.median(r.mean_train for r in runs)
        slot = statistics.median(r.mean_slot for r in runs)
        startup = statistics.median(r.startup for r in runs)
        winddown = statistics.median(r.winddown for r in runs)
        print(f"| {n} | {wall:.1f} | {60 * trials / wall:.1f} | {base_wall / wall:.2f}x | {startup:.1f} | "
              f"{winddown:.1f} | {span:.1f} | "
              f"{60 * trials / span:.1f} | {base_span / span:.2f}x | {train:.3f} | {slot:.3f} |")
        outcomes: Counter[str] = sum((r.outcomes for r in runs), Counter())
        lost = sum(r.lost for r in runs)
        if set(outcomes) != {"complete"} or lost:
            notes.append(f"{n} workers: outcomes {dict(outcomes)}, lost {lost} (all runs together)")
    print()
    print(f"speedup = time with {base} worker(s) / time with N. wall = the whole command = start-up (command start "
          "to first claim: imports, init, worker processes) + span (first claim to last finish in the ledger) + "
          "wind-down (last finish to exit). mean trial = training time per trial as the "
          "worker measured it (bench_slots.seconds); mean slot = claim to finish, i.e. training plus bench's "
          f"per-trial service time. Target: 2 workers >= 1.8x one. Took {elapsed:.0f} s.")
    for note in notes:
        print(f"- note: {note}")
    if controls:
        print()
        print(f"Control, no bench: N processes each training {args.control_trials} quickstart trials at once "
              f"(plain torch, {args.threads} thread(s) each). The machine's own limit on the speedup is "
              "N x mean(1) / mean(N).")
        print()
        print("| processes | mean trial s | speedup bound |")
        print("|---:|---:|---:|")
        one = controls[min(controls)]
        for n, mean in controls.items():
            print(f"| {n} | {mean:.3f} | {n * one / mean:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
