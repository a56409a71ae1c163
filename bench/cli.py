"""Command line: thin adapters that parse, load the spec, call one plain function and return an exit code."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

import bench
from bench.ledger import ExperimentMissing, SpecMismatch
from bench.spec import Spec, SpecError, load_spec
from bench.storage import DEFAULT_STORAGE, StorageUnavailable, StorageURLError, display_url, normalize_url

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT = 0, 1, 2


class BadInput(Exception):
    """Anything the user can fix in their input: exit code 2, one line, nothing written."""


def _spec(path: str) -> Spec:
    """Load, validate (including task parameters) and resolve a spec: the same hash for every command."""
    from bench.run import validate

    return validate(load_spec(path))


def _storage(url: str) -> str:
    return normalize_url(url)


# ---------------------------------------------------------------- commands


def cmd_init(args: argparse.Namespace, console: Console) -> int:
    from bench.run import init_experiment

    spec, url = _spec(args.spec), _storage(args.storage)
    res = init_experiment(spec, url)
    verb = "created" if res.created else "already present (same spec)"
    console.print(f"experiment {spec.name!r} {verb} in {display_url(url)}: {len(res.studies)} studies, "
                  f"depths {list(spec.depths)}, {spec.budget.trials} tuning trials each")
    return EXIT_OK


def cmd_worker(args: argparse.Namespace, console: Console) -> int:
    from bench.run import attach
    from bench.worker import WorkerLoop, WorkerOptions

    spec, url = _spec(args.spec), _storage(args.storage)
    exp_id = attach(spec, url)

    def on_event(event: str, data: dict[str, Any]) -> None:
        if event == "finished" and not args.quiet:
            value = data["value"]
            shown = f"{value:.4f}" if value == value else "-"
            console.print(f"[{data['role']}] depth {data['depth']} #{data['idx']}: {data['outcome']} {shown}")
        elif event in ("reclaimed", "lost"):
            console.print(f"[{data['role']}] depth {data['depth']} #{data['idx']}: {event}")

    opts = WorkerOptions(device=args.device, threads=args.threads, max_trials=args.max_trials,
                         lease_seconds=args.lease_seconds, heartbeat_seconds=min(10.0, args.lease_seconds / 4),
                         on_event=on_event)
    loop = WorkerLoop(spec, url, exp_id, opts)
    summary = loop.run()
    if not args.quiet:
        console.print(f"worker {summary.worker_id} done: {summary.finished or 'nothing left to run'}; "
                      f"reclaimed {summary.reclaimed}")
    return EXIT_OK


def cmd_run(args: argparse.Namespace, console: Console) -> int:
    from rich.live import Live

    from bench.ledger import Ledger
    from bench.run import default_workers, init_experiment, run_local
    from bench.status import status, table
    from bench.storage import make_engine

    spec, url = _spec(args.spec), _storage(args.storage)
    if args.workers is not None and args.workers < 1:
        raise BadInput("--workers: must be at least 1")
    res = init_experiment(spec, url)
    n_slots = spec.budget.trials * len(spec.depths)
    workers, threads = default_workers(n_slots)
    workers = args.workers or workers
    threads = args.threads or threads
    console.print(f"bench run {spec.name}: {len(spec.depths)} depths x {spec.budget.trials} trials, "
                  f"{workers} worker process(es) x {threads} torch thread(s), storage {display_url(res.url)}")
    engine = make_engine(res.url)
    ledger = Ledger(engine, res.experiment_id)
    started = time.time()
    with Live(console=console, auto_refresh=False, transient=False) as live:
        def refresh() -> None:
            live.update(table(status(spec, ledger, started)), refresh=True)

        code = run_local(args.spec, url, workers, threads, lease_seconds=args.lease_seconds, device=args.device,
                         refresh=refresh)
    engine.dispose()
    if code != 0:
        console.print(f"a worker exited with code {code}; run the same command again to resume")
        return EXIT_FAILURE
    if args.no_report:
        return EXIT_OK
    return _report(spec, url, Path(args.out) if args.out else None, console)


def _report(spec: Spec, url: str, out: Path | None, console: Console) -> int:
    from bench.report import make_report

    out = out or Path("reports") / spec.name
    doc, paths = make_report(spec, url, out)
    from bench.report.render import terminal_params, terminal_table

    _refresh_notes(spec, url, doc, paths.get("html", out))

    console.print(terminal_table(doc))
    for line in terminal_params(doc):
        print(line)
    for m in doc["missing"]:
        console.print(f"[yellow]incomplete:[/yellow] {m}")
    if "verdict" in doc:
        console.print(f"verdict: {doc['verdict']['text']}")
    for name in ("html", "md", "json", "csv"):
        if name in paths:
            print(f"report: {paths[name]}")  # plain print: a path must never be wrapped
    return EXIT_OK


def _refresh_notes(spec: Spec, url: str, doc: dict[str, Any], report: Path) -> None:
    """Bring every study's dashboard note up to date: finished counts, parity, where the report is."""
    from bench.dashboard import note_body, write_notes
    from bench.storage import optuna_storage
    from bench.studies import study_roles

    if not doc["arms"] or any("not in this storage" in m for m in doc["missing"]):
        return
    finished = [a["n_finished"] for a in doc["arms"]]
    parity = max(finished) - min(finished)
    done = {("tune", a["depth"]): a["n_finished"] for a in doc["arms"]}
    for role, key in (("eval", "test"), ("baseline", "baseline")):
        for d, summary in (doc.get(key) or {}).items():
            done[(role, int(d))] = summary["n_seeds"] if summary else 0
    storage = optuna_storage(url)
    try:
        write_notes(spec, storage, {(d, r): note_body(spec, d, r, done.get((r, d), 0), parity, report.resolve())
                                    for d in spec.depths for r in study_roles(spec)})
    finally:
        storage.dispose()


def cmd_report(args: argparse.Namespace, console: Console) -> int:
    spec, url = _spec(args.spec), _storage(args.storage)
    return _report(spec, url, Path(args.out) if args.out else None, console)


def cmd_status(args: argparse.Namespace, console: Console) -> int:
    from bench.ledger import Ledger
    from bench.run import attach
    from bench.status import status, table
    from bench.storage import make_engine

    spec, url = _spec(args.spec), _storage(args.storage)
    exp_id = attach(spec, url)
    engine = make_engine(url)
    try:
        st = status(spec, Ledger(engine, exp_id))
    finally:
        engine.dispose()
    if args.json:
        print(json.dumps(st, indent=2))
    else:
        console.print(table(st))
        for w in st["workers"]:
            console.print(f"live worker {w['id']} on {w['host']} (pid {w['pid']}, {w['device']}): "
                          f"{w['trials_done']} done, slot {w['current_slot']}")
    return EXIT_OK


def cmd_dashboard(args: argparse.Namespace, console: Console) -> int:
    from bench.dashboard import serve

    if args.spec:
        _spec(args.spec)
    url = _storage(args.storage)
    console.print(f"optuna-dashboard on http://{args.host}:{args.port} for {display_url(url)} (Ctrl-C to stop)")
    serve(url, args.host, args.port)
    return EXIT_OK


# ---------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bench",
        description="Hyperparameter-fair benchmarking: every depth gets its own Optuna study over the same "
                    "search space and budget; the report compares the best of each depth.",
        epilog="Exit codes: 0 success, 2 bad input (spec, arguments, storage URL), 1 any other failure.")
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

    sp = add("run", cmd_run, "Tune every depth to its budget on this machine (init + N local workers), "
             "then write the report. Resumable: run it again after Ctrl-C.")
    sp.add_argument("--workers", type=int, help="worker processes (default: one per core)")
    sp.add_argument("--threads", type=int, help="torch threads per worker (default: cores / workers)")
    sp.add_argument("--out", help="report folder (default reports/<experiment>)")
    sp.add_argument("--no-report", action="store_true", help="skip writing the report at the end")
    lease(sp)

    add("init", cmd_init, "Create the experiment, one study per depth and the budget slots. Safe to run "
        "many times and concurrently; refuses a changed spec under the same name.")

    sp = add("worker", cmd_worker, "Claim and run trials (of any machine's experiment in the shared storage) "
             "until no work is left; crashed workers' trials are reclaimed and run again.")
    sp.add_argument("--threads", type=int, help="torch threads for this worker")
    sp.add_argument("--max-trials", type=int, help="stop after this many finished trials")
    sp.add_argument("--quiet", action="store_true", help="no line per trial")
    lease(sp)

    sp = add("status", cmd_status, "Per depth: budget, done by outcome, running, lost, best so far; live workers.")
    sp.add_argument("--json", action="store_true", help="machine-readable output")

    sp = add("report", cmd_report, "Write index.html, report.md (+ figures), report.json and trials.csv "
             "(works on a run in progress).")
    sp.add_argument("--out", help="report folder (default reports/<experiment>)")

    sp = add("dashboard", cmd_dashboard, "Serve optuna-dashboard on the same storage.", spec_required=False)
    sp.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    sp.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    return p


def _raise_interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if args.command in ("run", "worker"):
        # docker stop / SLURM preemption send SIGTERM: stop like Ctrl-C so the running trial is released.
        signal.signal(signal.SIGTERM, _raise_interrupt)
    console = Console(stderr=False)

    def fail(msg: str, code: int) -> int:
        print(f"bench: error: {msg}", file=sys.stderr)  # plain print: one line, never wrapped
        return code

    try:
        return int(args.func(args, console))
    except SpecMismatch as e:
        return fail(f"{args.spec}: {e}", EXIT_BAD_INPUT)
    except (SpecError, StorageURLError, BadInput) as e:
        return fail(str(e), EXIT_BAD_INPUT)
    except ExperimentMissing as e:
        return fail(str(e.args[0]), EXIT_BAD_INPUT)
    except KeyboardInterrupt:
        print("bench: interrupted; unfinished trials were released and will run on the next start",
              file=sys.stderr)
        return 130
    except StorageUnavailable as e:
        return fail(str(e), EXIT_FAILURE)
    except Exception as e:  # noqa: BLE001 - the contract: one line, exit 1; BENCH_DEBUG=1 shows the traceback
        if os.environ.get("BENCH_DEBUG"):
            raise
        return fail(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", EXIT_FAILURE)


if __name__ == "__main__":
    sys.exit(main())
