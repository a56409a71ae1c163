"""Command line: thin adapters that parse, load the spec, call one plain function and return an exit code."""

from __future__ import annotations

import _thread
import argparse
import json
import logging
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.text import Text

import bench
from bench.spec import Spec, SpecError, load_spec
from bench.store.ledger import ExperimentMissing, SpecMismatch
from bench.store.storage import (
    DEFAULT_STORAGE,
    StorageUnavailable,
    StorageURLError,
    describe_db_error,
    display_url,
    missing_sqlite_file,
    normalize_url,
)

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130
# Below this a lease is shorter than a few heartbeats (lease / 4) plus one slow database round trip under load:
# workers would steal each other's running trials. Above MAX, a dead worker's trial would wait a day to rerun.
MIN_LEASE_SECONDS, MAX_LEASE_SECONDS = 2.0, 86400.0
WORKER_THREADS = 1  # `bench worker` without --threads: one torch thread, so N workers on a host never oversubscribe


class BadInput(Exception):
    """Anything the user can fix in their input: exit code 2, one line, nothing written."""


class Stopped(KeyboardInterrupt):
    """Stopped by a signal; args[0] is the one line that says what happened to the running trials."""


def check_options(args: argparse.Namespace) -> None:
    """Reject bad run/worker/dashboard options before anything is read or written (exit 2, one line)."""
    lease = getattr(args, "lease_seconds", None)
    if lease is not None and not (math.isfinite(lease) and MIN_LEASE_SECONDS <= lease <= MAX_LEASE_SECONDS):
        raise BadInput(f"--lease-seconds: must be a number of seconds from {MIN_LEASE_SECONDS:g} to "
                       f"{MAX_LEASE_SECONDS:g} (got {lease:g})")
    for name in ("workers", "threads", "max_trials"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            raise BadInput(f"--{name.replace('_', '-')}: must be at least 1 (got {value})")
    port = getattr(args, "port", None)
    if port is not None and not 1 <= port <= 65535:
        raise BadInput(f"--port: must be from 1 to 65535 (got {port})")
    device = getattr(args, "device", None)
    if device is not None and device != "cpu":
        from bench.trainers.training import resolve_device  # imports torch: only when a device must be checked

        try:
            resolve_device(device)
        except ValueError as err:
            raise BadInput(f"--{err}") from None


def _spec(path: str) -> Spec:
    """Load, validate (including task parameters) and resolve a spec: the same hash for every command."""
    from bench.service.run import validate

    return validate(load_spec(path))


def _readonly_spec(path: str, url: str) -> Spec:
    """For commands that only read the storage: a plug-in task is not imported (see run.readonly_spec)."""
    from bench.service.run import readonly_spec

    return readonly_spec(load_spec(path), url)


def _storage(url: str) -> str:
    return normalize_url(url)


# ---------------------------------------------------------------- commands


def _suite(path: str, url: str | None = None) -> Any:
    """The suite in this file, its members resolved (url: for a read-only command); None if it is a spec."""
    from bench import api
    from bench.suite import is_suite

    return api.load_suite(path, url) if is_suite(path) else None


def cmd_init(args: argparse.Namespace, console: Console) -> int:
    from bench.service.run import init_experiment

    url = _storage(args.storage)
    suite = _suite(args.spec)
    if suite is not None:
        from bench.service.suite_run import init_suite

        for spec, res in zip(suite.specs, init_suite(suite, url), strict=True):
            verb = "created" if res.created else "already present (same spec)"
            console.print(f"experiment {spec.name!r} {verb}: {len(res.studies)} studies", markup=False)
        console.print(f"suite {suite.suite.name!r}: {len(suite.specs)} experiments in {display_url(url)}; arms "
                      f"{', '.join(a.label for a in suite.specs[0].arms)}; {suite.specs[0].budget.studies} tuning "
                      f"studies x {suite.specs[0].budget.trials} trials each", markup=False)
        return EXIT_OK
    spec = _spec(args.spec)
    res = init_experiment(spec, url)
    verb = "created" if res.created else "already present (same spec)"
    console.print(f"experiment {spec.name!r} {verb} in {display_url(url)}: {len(res.studies)} studies; arms "
                  f"{', '.join(a.label for a in spec.arms)}; {spec.budget.studies} tuning studies x "
                  f"{spec.budget.trials} trials each", markup=False)
    return EXIT_OK


def cmd_worker(args: argparse.Namespace, console: Console) -> int:
    from bench.service.run import attach, build_task
    from bench.service.worker import SuiteWorker, WorkerLoop, WorkerOptions

    url = _storage(args.storage)
    suite = _suite(args.spec)  # a suite's tasks are built and checked here, before any worker registers

    def on_event(event: str, data: dict[str, Any]) -> None:
        where = (f"{data['experiment']} " if suite is not None else "") + \
            f"[{data['role']}] {data['arm']} study {data['study']} #{data['idx']}"
        if event == "finished" and not args.quiet:
            value = data["value"]
            shown = f"{value:.4f}" if value == value else "-"
            console.print(f"{where}: {data['outcome']} {shown}", markup=False)
        elif event in ("reclaimed", "lost"):
            console.print(f"{where}: {event}", markup=False)

    parent = os.environ.get("BENCH_PARENT_PID")  # set by `bench run`: stop when that process is gone
    opts = WorkerOptions(device=args.device, threads=args.threads or WORKER_THREADS, max_trials=args.max_trials,
                         lease_seconds=args.lease_seconds, heartbeat_seconds=min(10.0, args.lease_seconds / 4),
                         on_event=on_event, parent_pid=int(parent) if parent and parent.isdigit() else None)
    loop: WorkerLoop | SuiteWorker
    if suite is not None:
        from bench.service.suite_run import attach_suite

        loop = SuiteWorker(list(zip(suite.specs, attach_suite(suite, url), strict=True)), url, opts)
    else:
        spec = _spec(args.spec)
        exp_id = attach(spec, url)
        build_task(spec)  # before the worker registers: a task that cannot be built or trained writes nothing
        loop = WorkerLoop(spec, url, exp_id, opts)
    try:
        summary = loop.run()
    except KeyboardInterrupt as stop:
        done = loop.summary
        if done.unreleased:
            what = (f"its running trial could not be released; it runs again once its lease expires "
                    f"(--lease-seconds {args.lease_seconds:g})")
        elif done.released:
            what = "its running trial was released and runs again on the next start"
        else:
            what = "no trial was running"
        raise Stopped(f"worker {done.worker_id} stopped by {_signal_name(stop)}: {what}") from None
    if not args.quiet:
        console.print(f"worker {summary.worker_id} done: {summary.finished or 'nothing left to run'}; "
                      f"reclaimed {summary.reclaimed}")
    return EXIT_OK


def cmd_run(args: argparse.Namespace, console: Console) -> int:
    from bench.service.run import LocalRunStopped, default_workers, init_experiment, settle_stopped
    from bench.service.status import is_complete
    from bench.store.ledger import Ledger
    from bench.store.storage import make_engine

    url = _storage(args.storage)
    suite = _suite(args.spec)
    if suite is not None:
        return _run_suite(args, console, suite, url)
    spec = _spec(args.spec)
    n_slots = spec.budget.trials * spec.budget.studies * len(spec.arms)
    workers, threads = default_workers(n_slots, args.workers)
    threads = args.threads or threads
    res = init_experiment(spec, url)
    engine = make_engine(res.url)
    ledger = Ledger(engine, res.experiment_id)
    try:
        slots = ledger.slots()
        if is_complete(spec, slots):
            console.print(f"experiment {spec.name!r} is already complete in {display_url(res.url)} "
                          f"({len(slots)}/{len(slots)} slots done): nothing to run"
                          + ("" if args.no_report else "; writing the report"), markup=False, highlight=False)
            return EXIT_OK if args.no_report else _report(spec, url, Path(args.out) if args.out else None, console)
        console.print(f"bench run {spec.name}: {len(spec.arms)} arms x {spec.budget.studies} studies x "
                      f"{spec.budget.trials} trials, "
                      f"{workers} worker process(es) x {threads} torch thread(s), storage {display_url(res.url)}",
                      markup=False, highlight=False)
        try:
            code = _run_with_progress(spec, ledger, console, args, url, workers, threads)
        except LocalRunStopped as stop:
            raise Stopped(f"stopped by {_signal_name(stop)}: {settle_stopped(ledger, stop)}") from None
    finally:
        engine.dispose()
    if code != 0:
        console.print(f"a worker exited with code {code}; run the same command again to resume")
        return EXIT_FAILURE
    if args.no_report:
        return EXIT_OK
    return _report(spec, url, Path(args.out) if args.out else None, console)


def _run_suite(args: argparse.Namespace, console: Console, suite: Any, url: str) -> int:
    """`bench run SUITE`: init every member, run local suite workers (each serves the least advanced member
    first), then write the members' reports and the suite report."""
    from bench.service.run import LocalRunStopped, default_workers, settle_stopped
    from bench.service.suite_run import init_suite, suite_complete
    from bench.store.ledger import Ledger
    from bench.store.storage import make_engine

    n_slots = sum(s.budget.trials * s.budget.studies * len(s.arms) for s in suite.specs)
    workers, threads = default_workers(n_slots, args.workers)
    threads = args.threads or threads
    results = init_suite(suite, url)
    engine = make_engine(results[0].url)
    ledgers = [Ledger(engine, r.experiment_id) for r in results]
    name = suite.suite.name
    try:
        if suite_complete(suite, ledgers):
            console.print(f"suite {name!r} is already complete in {display_url(results[0].url)}: nothing to run"
                          + ("" if args.no_report else "; writing the reports"), markup=False, highlight=False)
            return EXIT_OK if args.no_report else _suite_report(suite, url, _out(args), console)
        console.print(f"bench run {name}: {len(suite.specs)} experiments x {len(suite.specs[0].arms)} arms x "
                      f"{suite.specs[0].budget.studies} studies x {suite.specs[0].budget.trials} trials, "
                      f"{workers} worker process(es) x {threads} torch thread(s), storage "
                      f"{display_url(results[0].url)}", markup=False, highlight=False)
        try:
            code = _progress(console, args, url, workers, threads, ledgers, lambda started: _suite_table(
                suite, ledgers, started))
        except LocalRunStopped as stop:
            raise Stopped(f"stopped by {_signal_name(stop)}: {settle_stopped(ledgers, stop)}") from None
    finally:
        engine.dispose()
    if code != 0:
        console.print(f"a worker exited with code {code}; run the same command again to resume")
        return EXIT_FAILURE
    return EXIT_OK if args.no_report else _suite_report(suite, url, _out(args), console)


def _suite_table(suite: Any, ledgers: list[Any], started: float) -> tuple[Any, int, str]:
    from bench.service.suite_run import live_status, progress_line, table

    st = live_status(suite, ledgers, started)
    return table(st), st["finished"], progress_line(st)


def _out(args: argparse.Namespace) -> Path | None:
    return Path(args.out) if args.out else None


def _run_with_progress(spec: Spec, ledger: Any, console: Console, args: argparse.Namespace, url: str, workers: int,
                       threads: int) -> int:
    from bench.service.status import progress_line, status, table

    def view(started: float) -> tuple[Any, int, str]:
        st = status(spec, ledger, started)
        return table(st), st["finished"], progress_line(st)

    return _progress(console, args, url, workers, threads, ledger, view)


def _progress(console: Console, args: argparse.Namespace, url: str, workers: int, threads: int, ledger: Any,
              view: Callable[[float], tuple[Any, int, str]]) -> int:
    """Run the local workers with progress: a live table on a terminal; on a pipe or in a log (which cannot
    redraw), one line each time the finished count changes, then the final table once. view(started) gives
    (table, finished count, progress line) of an experiment or a suite."""
    from rich.live import Live

    from bench.service.run import run_local

    started = time.time()

    def run(refresh: Callable[[], None]) -> int:
        return run_local(args.spec, url, workers, threads, lease_seconds=args.lease_seconds, device=args.device,
                         refresh=refresh, ledger=ledger)

    if console.is_terminal:
        with Live(console=console, auto_refresh=False, transient=False) as live:
            return run(lambda: live.update(view(started)[0], refresh=True))
    shown = [-1]

    def line() -> None:
        _, finished, text = view(started)
        if finished != shown[0]:
            shown[0] = finished
            console.print(text, markup=False, highlight=False)

    code = run(line)
    console.print(view(started)[0])
    return code


def _report(spec: Spec, url: str, out: Path | None, console: Console) -> int:
    from bench import api
    from bench.report.collect import MalformedRecord
    from bench.report.render import terminal_params, terminal_table

    try:
        rep = api.report(spec, url, out)
    except MalformedRecord as err:
        raise BadInput(str(err)) from None
    doc, paths = rep.doc, rep.paths
    console.print(terminal_table(doc))
    for line in terminal_params(doc):
        print(line)
    # Stored and computed text is never rich markup: "[evaluation] seeds = 0" must print as it is.
    for m in doc["missing"]:
        console.print(Text.assemble(("incomplete:", "yellow"), f" {m}"))
    record = (doc.get("fairness") or {}).get("record")
    if record:
        console.print(f"record: {record['text']}", markup=False, highlight=False)
    if "verdict" in doc:
        console.print(f"verdict: {doc['verdict']['text']}", markup=False, highlight=False)
    for name in ("html", "md", "json", "csv"):
        if name in paths:
            print(f"report: {paths[name]}")  # plain print: a path must never be wrapped
    return EXIT_OK


def _suite_report(suite: Any, url: str, out: Path | None, console: Console) -> int:
    """Every member's report and the suite report across tasks; one verdict line per member, then the suite's."""
    from bench import api
    from bench.report.collect import MalformedRecord

    try:
        rep = api.report_suite(suite, url, out)
    except MalformedRecord as err:
        raise BadInput(str(err)) from None
    for name, member in rep.members.items():
        state = "" if member.complete else " (incomplete)"
        console.print(f"{name}{state}: {member.verdict}", markup=False, highlight=False)
    console.print(f"suite verdict: {rep.verdict}", markup=False, highlight=False)
    for name in ("html", "md", "json"):
        print(f"suite report: {rep.paths[name]}")  # plain print: a path must never be wrapped
    return EXIT_OK


def cmd_report(args: argparse.Namespace, console: Console) -> int:
    url = _storage(args.storage)
    suite = _suite(args.spec, url)
    if suite is not None:
        return _suite_report(suite, url, _out(args), console)
    # api.report refuses a missing SQLite file as `status` does: reading must not create a database.
    return _report(_readonly_spec(args.spec, url), url, Path(args.out) if args.out else None, console)


def cmd_status(args: argparse.Namespace, console: Console) -> int:
    from bench import api
    from bench.service.status import table

    url = _storage(args.storage)
    suite = _suite(args.spec, url)
    if suite is not None:
        return _suite_status(suite, url, args, console)
    spec = _readonly_spec(args.spec, url)
    st = api.status(spec, url)
    if args.json:
        print(json.dumps(st, indent=2))
    else:
        console.print(table(st))
        from bench.service.status import describe

        for w in st["workers"]:
            console.print(f"live worker {w['id']} on {w['host']} (pid {w['pid']}, {w['device']}): "
                          f"{w['trials_done']} done, now {describe(w['current'])}", markup=False, highlight=False)
        if st["complete"]:
            console.print(f"experiment {spec.name!r} is complete: nothing left to run", markup=False)
    return EXIT_OK


def _suite_status(suite: Any, url: str, args: argparse.Namespace, console: Console) -> int:
    from bench.service.suite_run import suite_status, table

    st = suite_status(suite, url)
    if args.json:
        print(json.dumps(st, indent=2))
        return EXIT_OK
    console.print(table(st))
    if st["complete"]:
        console.print(f"suite {suite.suite.name!r} is complete: nothing left to run", markup=False)
    return EXIT_OK


def cmd_dashboard(args: argparse.Namespace, console: Console) -> int:
    from bench.service.dashboard import serve

    url = _storage(args.storage)
    if args.spec and _suite(args.spec, url) is None:  # only checked: a spec or a suite file
        _readonly_spec(args.spec, url)
    missing = missing_sqlite_file(url)
    if missing is not None:
        raise ExperimentMissing(f"--storage: no SQLite database at {missing} (a path relative to the current folder); "
                                "run `bench init` (or `bench run`) first")
    console.print(f"optuna-dashboard on http://{args.host}:{args.port} for {display_url(url)} (Ctrl-C to stop)")
    serve(url, args.host, args.port)
    return EXIT_OK


# ---------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bench",
        description="Hyperparameter-fair benchmarking: every arm (a depth, width, cell type, or a grid of them) gets "
                    "its own Optuna studies over the same search space and budget; the report compares the best of "
                    "each arm.",
        epilog="Exit codes: 0 success, 2 bad input (spec, arguments, storage URL), 1 any other failure, "
               "130 stopped by Ctrl-C or SIGTERM.")
    p.add_argument("--version", action="version", version=f"bench {bench.__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, fn: Callable[[argparse.Namespace, Console], int], help_: str,
            spec_required: bool = True) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_, description=help_)
        if spec_required:
            sp.add_argument("spec", help="experiment spec (TOML), e.g. studies/quickstart.toml")
        else:
            sp.add_argument("spec", nargs="?", help="experiment spec (optional: only checked)")
        sp.add_argument("--storage", default=os.environ.get("BENCH_STORAGE", DEFAULT_STORAGE), metavar="URL",
                        help=f"shared storage (default: $BENCH_STORAGE, else {DEFAULT_STORAGE}; "
                             "or postgresql://user:pass@host/db, mysql://user:pass@host/db)")
        sp.set_defaults(func=fn)
        return sp

    def lease(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--lease-seconds", type=float, default=120.0,
                        help="a claimed trial not heartbeated for this long is presumed lost and run again "
                             "(default 120)")
        sp.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu", help="torch device")

    sp = add("run", cmd_run, "Tune every arm's studies to their budget on this machine (init + N local workers), "
             "then write the report. Resumable: run it again after Ctrl-C.")
    sp.add_argument("--workers", type=int, help="worker processes (default: one per core)")
    sp.add_argument("--threads", type=int, help="torch threads per worker (default: cores / workers)")
    sp.add_argument("--out", help="report folder (default reports/<experiment>)")
    sp.add_argument("--no-report", action="store_true", help="skip writing the report at the end")
    lease(sp)

    add("init", cmd_init, "Create the experiment, its studies (per arm: replicate tuning studies, plus re-evaluation "
        "and baseline studies) and the budget slots. Safe to run "
        "many times and concurrently; refuses a changed spec under the same name.")

    sp = add("worker", cmd_worker, "Claim and run trials (of any machine's experiment in the shared storage) "
             "until no work is left; crashed workers' trials are reclaimed and run again.")
    sp.add_argument("--threads", type=int, help="torch threads for this worker")
    sp.add_argument("--max-trials", type=int, help="stop after this many finished trials")
    sp.add_argument("--quiet", action="store_true", help="no line per trial")
    lease(sp)

    sp = add("status", cmd_status, "Per phase, arm and study: budget, done by outcome, running, lost, best so far; "
             "live workers.")
    sp.add_argument("--json", action="store_true", help="machine-readable output")

    sp = add("report", cmd_report, "Write index.html, report.md (+ figures), report.json and trials.csv "
             "(works on a run in progress).")
    sp.add_argument("--out", help="report folder (default reports/<experiment>)")

    sp = add("dashboard", cmd_dashboard, "Serve optuna-dashboard on the same storage.", spec_required=False)
    sp.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    sp.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    return p


def _signal_name(stop: BaseException) -> str:
    return str(stop.args[0]) if stop.args and isinstance(stop.args[0], str) else "Ctrl-C"


class StopSignal(KeyboardInterrupt):
    """Raised by bench's stop-signal handler in `run` and `worker`; args[0] is the signal's name."""


class StopSignals:
    """SIGTERM, SIGINT and SIGHUP stop `run` and `worker` like Ctrl-C, however they were started: a process started
    in the background by a script inherits SIGINT ignored, and docker stop, systemd and SLURM send SIGTERM. A second
    signal while the first is being handled is reported, not obeyed: it would cut the release of the running trial
    short (kill -9 still works, and the trial is then rerun after its lease).

    A signal can land while the garbage collector runs a finalizer or weakref callback (SQLAlchemy's class registry
    has some); Python prints an exception raised there as "Exception ignored in ..." with a traceback and drops it,
    so the stop would be lost. The unraisable hook catches exactly that case and delivers the signal again, from a
    helper thread, so that it lands in ordinary code."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

    def __init__(self) -> None:
        self.stopping = False
        self._old: dict[int, Any] = {}
        self._old_hook: Callable[[Any], Any] | None = None

    def install(self) -> StopSignals:
        for sig in self.SIGNALS:
            if sig == signal.SIGHUP and signal.getsignal(sig) == signal.SIG_IGN:
                continue  # nohup: the user asked to survive the terminal closing
            self._old[sig] = signal.signal(sig, self._stop)
        self._old_hook, sys.unraisablehook = sys.unraisablehook, self._unraisable
        return self

    def restore(self) -> None:
        """Put the caller's handlers back: bench called in-process (tests, the API) leaves them as they were."""
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
        self._old = {}
        if self._old_hook is not None:
            sys.unraisablehook, self._old_hook = self._old_hook, None

    def _stop(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if _inside(frame, StopSignals._unraisable.__code__):
            self._redeliver(signum)  # still inside the hook that handles a dropped stop: raising here drops it too
            return
        if self.stopping:
            print(f"bench: {name} again: already stopping (releasing claims); kill -9 forces", file=sys.stderr)
            return
        self.stopping = True
        raise StopSignal(name)

    def _unraisable(self, unraisable: Any) -> None:
        if isinstance(unraisable.exc_value, StopSignal):
            self.stopping = False
            self._redeliver(signal.Signals[unraisable.exc_value.args[0]])
        elif self._old_hook is not None:
            self._old_hook(unraisable)

    @staticmethod
    def _redeliver(signum: int) -> None:
        # A bare thread: threading.Thread.start() waits for the thread to run, and the signal would land in that wait.
        # Sent to the main thread itself, so that a blocking call there is interrupted (a signal to the process may
        # be delivered to any thread, and Python then runs the handler only when the main thread next wakes).
        _thread.start_new_thread(signal.pthread_kill, (threading.main_thread().ident or 0, signum))


def _inside(frame: Any, code: Any) -> bool:
    """Whether `code` runs in `frame` or any of its callers."""
    while frame is not None:
        if frame.f_code is code:
            return True
        frame = frame.f_back
    return False


def _no_interrupt_tracebacks(record: logging.LogRecord) -> bool:
    """Drop library log records about our own stop signal (SQLAlchemy's pool logs "Exception during reset" with a
    traceback when the signal lands mid-query); the stop itself is reported in one line."""
    return not (record.exc_info and isinstance(record.exc_info[1], KeyboardInterrupt))


def _storage_shown(args: argparse.Namespace) -> str:
    try:
        return display_url(normalize_url(args.storage))
    except Exception:  # noqa: BLE001 - only for a message; the URL error itself is reported elsewhere
        return "the storage"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    stops = StopSignals()
    if args.command in ("run", "worker"):
        stops.install()
        for handler in logging.getLogger().handlers:
            handler.addFilter(_no_interrupt_tracebacks)
    try:
        return _dispatch(args)
    finally:
        stops.restore()
        for handler in logging.getLogger().handlers:
            handler.removeFilter(_no_interrupt_tracebacks)


def _dispatch(args: argparse.Namespace) -> int:
    console = Console(stderr=False)

    def fail(msg: str, code: int) -> int:
        print(f"bench: error: {msg}", file=sys.stderr)  # plain print: one line, never wrapped
        return code

    try:
        check_options(args)
        return int(args.func(args, console))
    except SpecMismatch as e:
        return fail(f"{args.spec}: {e}", EXIT_BAD_INPUT)
    except (SpecError, StorageURLError, BadInput) as e:
        return fail(str(e), EXIT_BAD_INPUT)
    except ExperimentMissing as e:
        return fail(str(e.args[0]), EXIT_BAD_INPUT)
    except Stopped as e:
        print(f"bench: {e.args[0]}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt as e:
        when = " before any trial was claimed" if args.command in ("run", "worker") else ""
        print(f"bench: stopped by {_signal_name(e)}{when}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as e:  # noqa: BLE001 - the contract: one line, exit 1; BENCH_DEBUG=1 shows the traceback
        if os.environ.get("BENCH_DEBUG"):
            raise
        cause = describe_db_error(e)
        if cause is not None:
            return fail(f"{_storage_shown(args)}: {cause}", EXIT_FAILURE)
        if isinstance(e, StorageUnavailable):
            return fail(str(e), EXIT_FAILURE)
        return fail(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", EXIT_FAILURE)


if __name__ == "__main__":
    sys.exit(main())
