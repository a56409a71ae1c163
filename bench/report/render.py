"""The only writer of report files: report.json, report.md (and later HTML, figures, CSV)."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from rich.table import Table


def _json_safe(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    return x


def write_atomic(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so a reader never sees half a report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}g}" if abs(v) < 1e-3 or abs(v) >= 1e4 else f"{v:.{digits}f}"
    return str(v)


def _params(p: dict[str, Any] | None) -> str:
    return "-" if not p else ", ".join(f"{k}={_fmt(v, 3)}" for k, v in sorted(p.items()))


ARM_COLUMNS = ("depth", "finished", "complete", "pruned", "diverged", "best val loss", "params", "s/trial",
               "best hyperparameters")


def arm_rows(doc: dict[str, Any]) -> list[list[str]]:
    return [[str(a["depth"]), f"{a['n_finished']}/{a['budget']}", *(str(a["by_outcome"][o]) for o in
             ("complete", "pruned", "diverged")), _fmt(a["best_value"]), _fmt(a["n_params"]),
             _fmt(a["mean_trial_seconds"], 2), _params(a["best_params"])] for a in doc["arms"]]


def terminal_table(doc: dict[str, Any]) -> Table:
    t = Table(title=f"{doc['experiment']}: best per depth (tuned separately, same search space and budget)")
    for c in ARM_COLUMNS:
        t.add_column(c, justify="left" if c == "best hyperparameters" else "right")
    for row in arm_rows(doc):
        t.add_row(*row)
    return t


def _md_table(header: tuple[str, ...] | list[str], rows: list[list[str]]) -> str:
    esc = [[c.replace("|", "\\|") for c in r] for r in rows]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in esc])


def markdown(doc: dict[str, Any]) -> str:
    parts = [f"# bench report: {doc['experiment']}", "",
             f"Spec hash `{doc['spec_hash']}` · bench {doc['bench_version']} · storage `{doc['storage']}`", ""]
    if doc["missing"]:
        parts += ["**Incomplete run.** Missing:", ""] + [f"- {m}" for m in doc["missing"]] + [""]
    parts += ["## Best per depth", "",
              "Each depth was tuned in its own study over the same search space with the same budget.", "",
              _md_table(ARM_COLUMNS, arm_rows(doc)), ""]
    return "\n".join(parts)


def write(doc: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """Write every report file into out_dir; returns name -> path."""
    paths = {"json": out_dir / "report.json", "md": out_dir / "report.md"}
    write_atomic(paths["json"], json.dumps(_json_safe(doc), indent=2, sort_keys=False) + "\n")
    write_atomic(paths["md"], markdown(doc))
    return paths
