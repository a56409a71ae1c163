"""The Python API: the functions the CLI calls, for notebooks and scripts.

    from bench import api
    spec = api.load_spec("studies/quickstart.toml")          # or a dict with the same tables as the TOML
    result = api.run(spec, storage="sqlite:///runs/nb.db", workers=2, threads=1)
    result.verdict                                           # the verdict in words
    result                                                   # in Jupyter: the self-contained HTML report

Every function raises `bench.SpecError` (or `bench.BadInput` for arguments) with the same one-line messages the
CLI prints, before anything is written.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.spec import Spec, SpecError, canonical_json
from bench.spec import load_spec as _load_file
from bench.store.storage import DEFAULT_STORAGE, normalize_url


class BadInput(ValueError):
    """An argument the caller can fix (the CLI's exit code 2)."""


def _spec_file(source: str | Path | Mapping[str, Any]) -> Path:
    """The file a spec comes from: a mapping is written as JSON under the temp folder, named by its content."""
    if not isinstance(source, Mapping):
        return Path(source)
    try:
        text = canonical_json(dict(source))
    except (TypeError, ValueError) as err:
        raise SpecError(f"<dict>: not serialisable: {err}") from None
    folder = Path(tempfile.gettempdir()) / "bench-specs"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{hashlib.sha256(text.encode()).hexdigest()[:16]}.json"
    if not path.exists():
        path.write_text(text, encoding="utf-8")
    return path


def load_spec(source: str | Path | Mapping[str, Any]) -> Spec:
    """A validated spec from a TOML file, or from a mapping with the same tables (`{"name": ..., "depths": [...],
    "task": {...}, ...}`). A mapping is written to a JSON file under the system's temporary folder, named by its
    content hash, because worker processes load the spec from a file; the spec (and its hash) is the same as from
    the equivalent TOML."""
    from bench.service.run import validate

    return validate(_load_file(_spec_file(source)))


def _resolve(spec: Spec | str | Path | Mapping[str, Any], url: str | None = None) -> Spec:
    """A Spec as given, or loaded. With `url` (read-only commands: status, report) a plug-in task is neither
    imported nor run: its matched-capacity sizes come from the stored experiment (run.readonly_spec)."""
    if isinstance(spec, Spec):
        return spec
    if url is None:
        return load_spec(spec)
    from bench.service.run import readonly_spec

    return readonly_spec(_load_file(_spec_file(spec)), url)


def _url(storage: str | None) -> str:
    import os

    return normalize_url(storage or os.environ.get("BENCH_STORAGE") or DEFAULT_STORAGE)


@dataclass
class Report:
    """What `bench report` writes, as an object: `doc` is the report.json content; `paths` the files written."""

    doc: dict[str, Any]
    paths: dict[str, Path] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        return str(self.doc["verdict"]["text"])

    @property
    def winner(self) -> str | None:
        """The arm the tests name best, or None when they cannot tell."""
        w = self.doc["verdict"]["winner"]
        return None if w is None else str(w)

    @property
    def groups(self) -> list[list[str]]:
        """Arms the tests cannot separate, best group first."""
        return [list(g) for g in self.doc["verdict"]["groups"]]

    @property
    def complete(self) -> bool:
        return bool(self.doc["complete"])

    @property
    def figures(self) -> dict[str, Path]:
        """Figure name -> PNG path (for IPython.display.Image)."""
        folder = self.paths.get("md")
        if folder is None:
            return {}
        return {p.stem: p for p in sorted(folder.parent.glob("fig_*.png"))}

    def to_json(self) -> str:
        return json.dumps(self.doc, indent=2)

    def _repr_html_(self) -> str:
        html = self.paths.get("html")
        return html.read_text(encoding="utf-8") if html is not None else f"<pre>{self.verdict}</pre>"

    def __repr__(self) -> str:
        return f"Report({self.doc['experiment']!r}, complete={self.complete}, winner={self.winner!r})"


def init(spec: Spec | str | Path | Mapping[str, Any], storage: str | None = None) -> int:
    """Create (or find, if the same spec is already there) the experiment: its id. Like `bench init`."""
    from bench.service.run import init_experiment

    return init_experiment(_resolve(spec), _url(storage)).experiment_id


def status(spec: Spec | str | Path | Mapping[str, Any], storage: str | None = None) -> dict[str, Any]:
    """Progress per phase, arm and study (the `bench status --json` document)."""
    from bench.service.run import attach
    from bench.service.status import status as _status
    from bench.store.ledger import Ledger
    from bench.store.storage import make_engine

    url = _url(storage)
    s = _resolve(spec, url)
    exp_id = attach(s, url, write=False)
    engine = make_engine(url)
    try:
        return _status(s, Ledger(engine, exp_id))
    finally:
        engine.dispose()


def report(spec: Spec | str | Path | Mapping[str, Any], storage: str | None = None,
           out: str | Path | None = None) -> Report:
    """Collect, analyse and write the report (default folder `reports/<experiment>`), and bring the studies'
    dashboard notes up to date. Like `bench report` (which calls this)."""
    from bench.report import make_report
    from bench.service.run import not_initialised
    from bench.store.storage import missing_sqlite_file, reachable

    url = _url(storage)
    s = _resolve(spec, url)
    if missing_sqlite_file(url) is not None:
        raise not_initialised(s.name, url)  # reading must not create a database
    reachable(url)
    folder = Path(out) if out is not None else Path("reports") / s.name
    doc, paths = make_report(s, url, folder)
    refresh_notes(s, url, doc, paths.get("html", folder))
    return Report(doc, paths)


@dataclass
class SuiteReport:
    """A suite's report: the suite.json document, the written files, and each member's Report."""

    doc: dict[str, Any]
    paths: dict[str, Path]
    members: dict[str, Report]

    @property
    def verdict(self) -> str:
        return str(self.doc["verdict"]["text"])

    @property
    def complete(self) -> bool:
        return bool(self.doc["complete"])

    def _repr_html_(self) -> str:
        return self.paths["html"].read_text(encoding="utf-8")


def load_suite(source: str | Path, storage: str | None = None) -> Any:
    """A suite file's members, resolved as `bench init` resolves them (storage given: as a read-only command
    resolves them, e.g. for status or report)."""
    from bench.service.suite_run import resolve
    from bench.suite import load_suite as _load

    return resolve(_load(source), train=storage is None, url=None if storage is None else _url(storage))


def suite_status(suite: Any, storage: str | None = None) -> dict[str, Any]:
    """The `bench status SUITE --json` document. `suite`: a path or load_suite's result."""
    from bench.service.suite_run import suite_status as _status

    url = _url(storage)
    return _status(load_suite(suite, url) if isinstance(suite, (str, Path)) else suite, url)


def report_suite(suite: Any, storage: str | None = None, out: str | Path | None = None) -> SuiteReport:
    """Every member's report (in <out>/<task>[.<variant>]/) and the suite report across tasks (<out>/index.html,
    suite.md, suite.json; default folder reports/<suite>). `suite`: a path or load_suite's result."""
    from bench.report.suite import member_folder, suite_doc, write_suite

    url = _url(storage)
    res = load_suite(suite, url) if isinstance(suite, (str, Path)) else suite
    folder = Path(out) if out is not None else Path("reports") / res.suite.name
    reports: dict[str, Report] = {}
    members = []
    for m, spec in zip(res.members, res.specs, strict=True):
        sub = member_folder(m.task, m.variant)
        reports[spec.name] = report(spec, url, folder / sub)
        members.append({"experiment": spec.name, "task": m.task, "variant": m.variant, "folder": sub,
                        "doc": reports[spec.name].doc})
    first = res.specs[0].analysis
    doc = suite_doc(res.suite.name, members, first.alpha, first.min_effect)
    return SuiteReport(doc, write_suite(doc, folder), reports)


def refresh_notes(spec: Spec, url: str, doc: dict[str, Any], report_path: Path) -> None:
    """Bring every study's dashboard note up to date: finished counts, parity, where the report is."""
    from bench.service.dashboard import note_body, write_notes
    from bench.store.storage import optuna_storage
    from bench.tuning.studies import all_studies

    if not doc["arms"] or any("not in this storage" in m for m in doc["missing"]):
        return
    done: dict[tuple[str, str, int], int] = {}
    for a in doc["arms"]:
        for st in a["studies"]:
            done[("tune", a["label"], st["study"])] = st["n_finished"]
    finished = list(done.values())
    parity = max(finished) - min(finished)
    for role, key in (("eval", "test"), ("baseline", "baseline"), ("transfer", "transfer")):
        for label, summary in (doc.get(key) or {}).items():
            done[(role, label, 0)] = summary["n_seeds"] if summary else 0
    storage = optuna_storage(url)
    try:
        write_notes(storage, {name: note_body(spec, arm, role, k, done.get((role, arm.label, k), 0), parity,
                                              report_path.resolve()) for arm, role, k, name in all_studies(spec)})
    finally:
        storage.dispose()


def run(spec: Spec | str | Path | Mapping[str, Any], storage: str | None = None, *, workers: int | None = None,
        threads: int | None = None, device: str = "cpu", lease_seconds: float = 120.0, out: str | Path | None = None,
        write_report: bool = True, progress: Callable[[dict[str, Any]], None] | None = None) -> Report | None:
    """init + `workers` local worker processes until the budget is spent, then the report (like `bench run`).

    Resumable: calling it again continues without exceeding the budget. `progress`, if given, receives the
    status document about twice a second. Returns the Report (None with write_report=False).
    """
    import time

    from bench.service.run import LocalRunStopped, default_workers, init_experiment, run_local, settle_stopped
    from bench.service.status import status as _status
    from bench.store.ledger import Ledger
    from bench.store.storage import make_engine

    s, url = _resolve(spec), _url(storage)
    if s.source.startswith("<"):
        raise BadInput("spec: run needs a spec loaded from a file or a mapping (bench.load_spec), not built in memory")
    if workers is not None and workers < 1:
        raise BadInput(f"workers: must be at least 1, got {workers}")
    if threads is not None and threads < 1:
        raise BadInput(f"threads: must be at least 1, got {threads}")
    n_slots = s.budget.trials * s.budget.studies * len(s.arms)
    n_workers, auto_threads = default_workers(n_slots, workers)
    res = init_experiment(s, url)
    engine = make_engine(res.url)
    ledger, started = Ledger(engine, res.experiment_id), time.time()

    def refresh() -> None:
        if progress is not None:
            progress(_status(s, ledger, started))

    try:
        code = run_local(s.source, url, n_workers, threads or auto_threads, lease_seconds=lease_seconds,
                         device=device, refresh=refresh, ledger=ledger)
    except LocalRunStopped as stop:
        raise KeyboardInterrupt(f"stopped: {settle_stopped(ledger, stop)}") from None
    finally:
        engine.dispose()
    if code != 0:
        raise RuntimeError(f"a worker exited with code {code}; call run() again to resume")
    return report(s, url, out) if write_report else None
