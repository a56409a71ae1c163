"""optuna-dashboard on bench's storage, and the Markdown note shown on each study's dashboard page."""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna_dashboard import get_note, run_server, save_note

from bench.spec import Arm, Spec
from bench.store.storage import RetryingStorage, optuna_storage

ROLE_WORDS = {
    "tune": "tuning: nuisance hyperparameters sampled from the shared search space",
    "eval": "re-evaluation: each replicate study's best config retrained with fresh seeds",
    "baseline": "fixed-config baseline: one shared config for every arm (the 'everything held constant' contrast)",
    "transfer": "transferred-config baseline: the best config found at one arm, retrained at every arm",
}


def note_body(spec: Spec, arm: Arm, role: str, study: int = 0, done: int | None = None, parity: int | None = None,
              report: Path | None = None) -> str:
    where = f"{arm.label}, study {study}" if role == "tune" and spec.budget.studies > 1 else arm.label
    lines = [f"## {spec.name}: {where} ({role})", "", ROLE_WORDS[role], "",
             f"- spec hash: `{spec.hash[:16]}`",
             f"- budget: {spec.budget.studies} tuning studies x {spec.budget.trials} trials x "
             f"{spec.budget.epochs} epochs per arm, sampler {spec.sampler.kind}, pruner {spec.pruner.kind}",
             f"- arms compared: {', '.join(a.label for a in spec.arms)}"]
    if done is not None:
        lines.append(f"- finished here: {done}; parity across studies (max - min finished): {parity}")
    if report is not None:
        lines.append(f"- report: `{report}`")
    return "\n".join(lines) + "\n"


def write_notes(storage: RetryingStorage, notes: dict[str, str]) -> None:
    """Save each study's note (study name -> Markdown), skipping unchanged ones (every save adds a version)."""
    for name, body in notes.items():
        try:
            study = optuna.load_study(study_name=name, storage=storage)
        except KeyError:
            continue  # that study does not exist (e.g. no baseline configured)
        if get_note(study) != body:
            save_note(study, body)


def serve(url: str, host: str, port: int) -> None:
    """Block serving optuna-dashboard (wsgiref) until interrupted."""
    run_server(optuna_storage(url).rdb, host=host, port=port)  # the dashboard wants RDBStorage itself
