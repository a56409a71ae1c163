"""optuna-dashboard on bench's storage, and the Markdown note shown on each study's dashboard page."""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna_dashboard import get_note, run_server, save_note

from bench.spec import Spec
from bench.storage import RetryingStorage, optuna_storage
from bench.studies import study_name

ROLE_WORDS = {
    "tune": "tuning: nuisance hyperparameters sampled from the shared search space",
    "eval": "re-evaluation: the depth's best tuned config(s) retrained with fresh seeds",
    "baseline": "fixed-config baseline: one shared config for every depth (the 'everything held constant' contrast)",
}


def note_body(spec: Spec, depth: int, role: str, done: int | None = None, parity: int | None = None,
              report: Path | None = None) -> str:
    lines = [f"## {spec.name}: depth {depth} ({role})", "", ROLE_WORDS[role], "",
             f"- spec hash: `{spec.hash[:16]}`",
             f"- budget: {spec.budget.trials} tuning trials x {spec.budget.epochs} epochs per depth, "
             f"sampler {spec.sampler.kind}, pruner {spec.pruner.kind}",
             f"- depths compared: {', '.join(map(str, spec.depths))}"]
    if done is not None:
        lines.append(f"- finished here: {done}; parity across depths (max - min finished): {parity}")
    if report is not None:
        lines.append(f"- report: `{report}`")
    return "\n".join(lines) + "\n"


def write_notes(spec: Spec, storage: RetryingStorage, notes: dict[tuple[int, str], str]) -> None:
    """Save each study's note, skipping unchanged ones (every save adds a version in the storage)."""
    for (depth, role), body in notes.items():
        try:
            study = optuna.load_study(study_name=study_name(spec.name, depth, role), storage=storage)
        except KeyError:
            continue  # that study does not exist (e.g. no baseline configured)
        if get_note(study) != body:
            save_note(study, body)


def serve(url: str, host: str, port: int) -> None:
    """Block serving optuna-dashboard (wsgiref) until interrupted."""
    run_server(optuna_storage(url).rdb, host=host, port=port)  # the dashboard wants RDBStorage itself
