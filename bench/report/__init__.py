"""Reporting: collect (storage → records) → stats (pure) → plots (figures) → render (the only writer)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.spec import Spec


def make_report(spec: Spec, url: str, out_dir: Path) -> tuple[dict[str, Any], dict[str, Path]]:
    """Collect the experiment from storage, build the report document and write every file into out_dir."""
    from bench.report.build import build
    from bench.report.collect import collect
    from bench.report.render import write

    collected = collect(spec, url)
    doc = build(collected)
    return doc, write(doc, out_dir, collected)
