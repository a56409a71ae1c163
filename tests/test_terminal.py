"""Terminal output: a real `bench run` piped at 80 columns, the status table's width, and `bench status` wording."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

from rich.console import Console

from bench.service.run import init_experiment
from bench.service.status import describe, status, table
from bench.spec import load_spec
from bench.store.ledger import Ledger
from bench.store.storage import make_engine
from tests.conftest import tiny_spec

HEADER = re.compile(r"^\s*phase\s+arm\s+study\s+done\s+compl\s+pruned\s+div\s+run\s+lost\s+best\s*$")


def _bench(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "80", "BENCH_STORAGE": "sqlite:///bench.db"}
    env.pop("FORCE_COLOR", None)
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=tmp_path, capture_output=True, text=True,
                          timeout=600, env=env)


def test_piped_run_at_80_columns(tmp_path: Path) -> None:
    """As `make run | tee log` shows it: no line over 80 columns, headers whole, no markup eaten, titles on
    their own lines; a second run says the experiment is complete instead of starting workers."""
    tiny_spec(tmp_path)  # no [evaluation]: the verdict quotes "[evaluation] seeds = 0"
    proc = _bench(tmp_path, "run", "tiny.toml", "--workers", "1", "--out", "rep")
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    lines = out.splitlines()
    too_long = [ln for ln in lines if len(ln) > 80 and not ln.startswith("report: ")]  # paths are never wrapped
    assert too_long == [], too_long
    assert sum(bool(HEADER.match(ln)) for ln in lines) == 1, out  # the final status table, once, headers whole
    assert "…" not in out
    assert "[evaluation] seeds = 0" in out  # printed as text, not swallowed as rich markup
    assert re.search(r"^tiny: 8/8 slots done|^tiny: 4/4 slots done", out, flags=re.MULTILINE), out
    # Titles start their own lines: nothing precedes them on the line but centring spaces.
    for title in (r"tiny  \d+/\d+ slots  parity", r"tiny: per arm"):
        hits = [ln for ln in lines if re.search(title, ln)]
        assert hits and all(re.match(rf"^\s*{title}", ln) for ln in hits), (title, hits)
    again = _bench(tmp_path, "run", "tiny.toml", "--workers", "1", "--out", "rep", "--no-report")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "experiment 'tiny' is already complete" in again.stdout and "worker process" not in again.stdout
    st = _bench(tmp_path, "status", "tiny.toml")
    assert st.returncode == 0 and "is complete: nothing left to run" in st.stdout
    assert all(len(ln) <= 80 for ln in st.stdout.splitlines()), st.stdout


def test_status_table_fits_80_columns_with_large_counts() -> None:
    row = {"arm": "depth 12", "study": 10, "budget": 100, "done": 100, "running": [{}], "lost": 12, "best": 0.1234,
           "by_outcome": {"complete": 90, "pruned": 5, "diverged": 5}}
    st = {"experiment": "lstm_depth", "finished": 1200, "total": 1300, "parity": 1, "elapsed": 3700.0,
          "eta": 400.0, "phases": {"tune": [row], "transfer": [{**row, "arm": "[b]d2[/b]"}]}}
    buf = io.StringIO()
    Console(file=buf, width=80).print(table(st))
    text = buf.getvalue()
    assert max(len(ln) for ln in text.splitlines()) <= 80
    assert any(HEADER.match(ln) for ln in text.splitlines()) and "…" not in text
    assert "100/100" in text and "[b]d2[/b]" in text  # a stored label is text, never markup


def test_status_names_what_each_worker_runs(tmp_path: Path) -> None:
    spec = load_spec(tiny_spec(tmp_path))
    url = f"sqlite:///{tmp_path / 'bench.db'}"
    res = init_experiment(spec, url)
    engine = make_engine(url)
    ledger = Ledger(engine, res.experiment_id)
    wid = ledger.register_worker("host", 1, "cpu")
    claim = ledger.claim(wid, 60)
    assert claim is not None
    ledger.set_trial_number(claim.slot_id, wid, 0)
    (w,) = status(spec, ledger)["workers"]
    engine.dispose()
    assert w["current"] == {"role": "tune", "arm": "depth 1", "study": 0, "idx": 0, "trial": 0}
    assert describe(w["current"]) == "tune depth 1 study 0 trial 0"
    assert describe(None) == "idle"
