"""The report on synthetic storages (no training): every section, valid JSON, escaping, partial runs, Chromium."""

from __future__ import annotations

import csv
import json
import math
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
import sqlalchemy as sa
from optuna.trial import TrialState

from bench.cli import main
from bench.ledger import SLOTS, Ledger
from bench.objective import provenance
from bench.report.build import build
from bench.report.collect import Collected, collect
from bench.report.render import write
from bench.run import init_experiment
from bench.search_space import distributions, fixed_distributions
from bench.spec import Spec, load_spec
from bench.storage import make_engine, optuna_storage
from bench.studies import study_name
from bench.worker import SLOT_ATTR
from tests.conftest import tiny_spec

EVIL = "<script>alert(1)</script>"
EVIL_ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
EPOCHS = 3
# depth -> tuning loss offset: depth 2 is clearly better after tuning ...
TUNE_BASE = {1: 1.40, 2: 1.00}
TEST_LOSSES = {1: [1.50, 1.52, 1.51], 2: [1.05, 1.06, 1.04]}
# ... while the fixed config happens to suit depth 1 (the trap the tuned comparison avoids).
BASELINE_LOSSES = {1: [1.30, 1.31, 1.32], 2: [1.60, 1.62, 1.61]}
SECTIONS = ("Verdict", "Best per depth", "Best-of-n", "Test scores", "Pairwise", "learning rate", "Learning curves",
            "importance", "Diagnostics", "Fairness audit", "Provenance")


def _spec(tmp_path: Path, **overrides: Any) -> Spec:
    over: dict[str, Any] = {"evaluation": {"seeds": 3}, "baseline": {"lr": 0.01},
                            "budget": {"trials": 6, "epochs": EPOCHS, "batch_size": 32}, **overrides}
    return load_spec(tiny_spec(tmp_path, **over))


def _curve(final: float) -> list[float]:
    return [final + 0.3, final + 0.1, final][:EPOCHS]


def _measured(seconds: float, val_losses: list[float], diverged: bool = False) -> dict[str, Any]:
    """What objective._attrs stores for a finished training run."""
    return {"seconds": seconds, "n_params": 500, "hidden": 8, "epochs_run": len(val_losses), "diverged": diverged,
            "val_losses": val_losses}


def _finish_slot(url: str, slot_id: int, outcome: str, number: int, value: float | None, seconds: float) -> None:
    """What Ledger.finish does for a worker, without needing a claim."""
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.update(SLOTS).where(SLOTS.c.id == slot_id).values(
            state="done", outcome=outcome, trial_number=number, seconds=seconds, finished_at=time.time(),
            value=value if value is not None and math.isfinite(value) else None, attempts=1))
    engine.dispose()


def _add(study: optuna.Study, **kw: Any) -> int:
    study.add_trial(optuna.trial.create_trial(**kw))
    return study.get_trials(deepcopy=False)[-1].number


def _tune_trial(spec: Spec, study: optuna.Study, slot: dict[str, Any], kind: str) -> tuple[int, float | None]:
    """One tuning trial as a worker stores it: complete, diverged (+inf) or pruned."""
    i, depth = slot["idx"], slot["depth"]
    lr = 2e-3 * (10 ** (i / 5))  # 2e-3 .. 2e-2, inside the search range
    params = {"lr": lr, "init": ["default", "orthogonal"][i % 2], "dropout": 0.05 + 0.04 * i}
    value = TUNE_BASE[depth] + 0.1 * (math.log10(lr) + 2.2) ** 2 + 0.01 * i
    attrs = {SLOT_ATTR: slot["id"], "provenance": {**provenance(spec, "cpu"), "attempt": 1, "role": "tune"}}
    dists = distributions(spec.search_space)
    if kind == "pruned":
        number = _add(study, params=params, distributions=dists, state=TrialState.PRUNED, intermediate_values={0: 2.0},
                      user_attrs={**attrs, "seconds": 0.1, "pruned": True})
        return number, None
    curve = _curve(value) if kind == "complete" else [1.9]
    stored = math.inf if kind == "diverged" else value
    number = _add(study, params=params, distributions=dists, value=stored, state=TrialState.COMPLETE,
                  intermediate_values=dict(enumerate(curve)),
                  user_attrs={**attrs, **_measured(0.5 + 0.1 * i, curve, kind == "diverged")})
    return number, stored


def _fixed_trials(spec: Spec, url: str, storage: Any, role: str, depth: int, params: dict[str, Any],
                  losses: list[float], source: int | None) -> None:
    """Eval or baseline trials exactly as WorkerLoop._add_fixed_trial stores them, and their slots done."""
    engine = make_engine(url)
    ledger = Ledger(engine, Ledger.find_experiment(engine, spec.name)[0])  # type: ignore[index]
    if role == "eval":  # eval slots are added by workers once a depth's tuning is done (top_k = 1, rank 0)
        ledger.add_slots([("eval", depth, s, {"params": params, "seed": spec.evaluation.seed_offset + s, "rank": 0,
                                              "source_trial": source}) for s in range(len(losses))])
    slots = [s for s in ledger.slots(role) if s["depth"] == depth]
    engine.dispose()
    study = optuna.load_study(study_name=study_name(spec.name, depth, role), storage=storage)
    for slot, test in zip(slots, losses, strict=True):
        seed = json.loads(slot["payload"])["seed"]
        val = test - 0.02
        attrs = {**_measured(0.4, _curve(val)), "seed": seed, "test_loss": test,
                 "provenance": {**provenance(spec, "cpu"), "role": role}, SLOT_ATTR: slot["id"], "rank": 0,
                 "source_trial": source}
        number = _add(study, params=params, distributions=fixed_distributions(params), value=val, user_attrs=attrs,
                      state=TrialState.COMPLETE)
        _finish_slot(url, slot["id"], "complete", number, val, 0.4)


def fill(spec: Spec, url: str, tune_done: int | None = None, evaluate: bool = True,
         eval_params: dict[str, Any] | None = None) -> None:
    """A storage as real workers leave it. tune_done: slots finished per depth (None = all, i.e. a full run)."""
    init_experiment(spec, url)
    storage = optuna_storage(url)
    engine = make_engine(url)
    ledger = Ledger(engine, Ledger.find_experiment(engine, spec.name)[0])  # type: ignore[index]
    tune = ledger.slots("tune")
    engine.dispose()
    best: dict[int, tuple[float, int, dict[str, Any]]] = {}
    for depth in spec.depths:
        study = optuna.load_study(study_name=study_name(spec.name, depth), storage=storage)
        mine = [s for s in tune if s["depth"] == depth][:tune_done]
        for slot in mine:
            kind = {(1, 1): "diverged", (1, 4): "pruned"}.get((depth, slot["idx"]), "complete")
            number, value = _tune_trial(spec, study, slot, kind)
            outcome = "diverged" if kind == "diverged" else kind
            _finish_slot(url, slot["id"], outcome, number, value, 0.5)
            if kind == "complete" and value is not None and (depth not in best or value < best[depth][0]):
                best[depth] = (value, number, study.trials[number].params)
        if not evaluate:
            continue
        _, source, params = best[depth]
        _fixed_trials(spec, url, storage, "eval", depth, eval_params or params, TEST_LOSSES[depth], source)
        _fixed_trials(spec, url, storage, "baseline", depth, dict(spec.baseline), BASELINE_LOSSES[depth], None)
    storage.dispose()


def _no_nan(token: str) -> Any:
    raise ValueError(f"non-standard JSON token {token}")


def _n_trials(spec: Spec, url: str) -> dict[str, int]:
    storage = optuna_storage(url)
    out = {role: sum(len(optuna.load_study(study_name=study_name(spec.name, d, role), storage=storage).trials)
                     for d in spec.depths) for role in ("tune", "eval", "baseline")}
    storage.dispose()
    return out


def _external_refs(page: str) -> list[str]:
    return re.findall(r"""(?:src|href)\s*=\s*["']?\s*((?:https?:)?//[^"'\s>]*)""", page, flags=re.IGNORECASE)


@pytest.fixture
def full(tmp_path: Path, sqlite_url: str) -> tuple[Spec, str, Collected, dict[str, Any], Path]:
    """A finished synthetic experiment (tuning, evaluation, baseline) and its report written to tmp_path/rep."""
    spec = _spec(tmp_path)
    fill(spec, sqlite_url)
    col = collect(spec, sqlite_url)
    doc = build(col, reps=500)
    write(doc, tmp_path / "rep", col)
    return spec, sqlite_url, col, doc, tmp_path / "rep"


def test_report_json_sections_verdict_and_fairness(full: tuple[Spec, str, Collected, dict[str, Any], Path]) -> None:
    _, _, _, _, out = full
    text = (out / "report.json").read_text()
    doc = json.loads(text, parse_constant=_no_nan)  # NaN / Infinity would be invalid JSON
    for key in ("experiment", "spec_hash", "arms", "evp", "prob_best", "test", "baseline", "pairwise", "fairness",
                "diagnostics", "verdict"):
        assert key in doc and doc[key] is not None, key
    assert doc["missing"] == [] and doc["complete"]
    v = doc["verdict"]
    assert v["winner"] == 2 and v["tuned_ranking"] == [2, 1] and v["fixed_ranking"] == [1, 2]
    assert v["text"].startswith("depth 2 is best") and "would have picked depth 1" in v["text"]
    assert v["confidence"] == "significant and meaningful"
    assert doc["fairness"]["all_held"] and all(c["held"] for c in doc["fairness"]["checks"])
    arms = {a["depth"]: a for a in doc["arms"]}
    assert arms[1]["by_outcome"] == {"complete": 4, "pruned": 1, "diverged": 1}
    assert arms[2]["by_outcome"] == {"complete": 6, "pruned": 0, "diverged": 0}


def test_index_html_self_contained(full: tuple[Spec, str, Collected, dict[str, Any], Path]) -> None:
    _, _, _, doc, out = full
    page = (out / "index.html").read_text()
    headings = re.findall(r"<h2[^>]*>(.*?)</h2>", page)
    positions = []
    for title in SECTIONS:
        hit = [i for i, h in enumerate(headings) if title.lower() in h.lower()]
        assert hit, f"section {title!r} missing from {headings}"
        positions.append(hit[0])
    assert positions == sorted(positions), "sections out of order"
    assert page.count("data:image/png;base64,") == 5  # best-of-n, test scores, lr, learning curves, importance
    assert _external_refs(page) == [] and "<script" not in page.lower() and "@import" not in page
    assert doc["verdict"]["text"].split(";")[0] in page
    assert "missing:" not in page  # a finished run lacks nothing


def test_markdown_figures_and_trials_csv(full: tuple[Spec, str, Collected, dict[str, Any], Path]) -> None:
    spec, url, col, _, out = full
    md = (out / "report.md").read_text()
    pngs = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", md)
    assert len(pngs) == 5
    for name in pngs:
        assert not Path(name).is_absolute() and (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for title in SECTIONS:
        assert re.search(rf"^## .*{re.escape(title)}", md, flags=re.IGNORECASE | re.MULTILINE), title
    with (out / "trials.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["role", "depth", "number", "state", "value", "counted", "seed", "test_loss", "seconds",
                             "n_params", "hidden", "epochs_run", "params", "lost_reason"]
    counts = _n_trials(spec, url)
    assert counts == {"tune": 12, "eval": 6, "baseline": 6}
    assert {r: sum(row["role"] == r for row in rows) for r in counts} == counts
    assert sorted(r["state"] for r in rows if r["role"] == "tune" and r["depth"] == "1") == \
        ["complete"] * 4 + ["diverged", "pruned"]
    assert all(isinstance(json.loads(r["params"]), dict) for r in rows)
    assert {r["seed"] for r in rows if r["role"] == "eval"} == {"10000", "10001", "10002"}


def test_cli_report_writes_every_file(tmp_path: Path, sqlite_url: str) -> None:
    spec = _spec(tmp_path)
    fill(spec, sqlite_url)
    out = tmp_path / "cli"
    assert main(["report", str(tmp_path / "tiny.toml"), "--storage", sqlite_url, "--out", str(out)]) == 0
    for name in ("report.json", "report.md", "index.html", "trials.csv", "fig_best_of_n.png", "fig_lr.png"):
        assert (out / name).stat().st_size > 0, name


def test_storage_strings_are_escaped(tmp_path: Path, sqlite_url: str) -> None:
    spec = _spec(tmp_path)
    # A hostile value that reached storage (the spec validator would refuse it; a direct Optuna write does not).
    fill(spec, sqlite_url, eval_params={"lr": 0.01, "init": EVIL})
    col = collect(spec, sqlite_url)
    doc = build(col, reps=200)
    assert doc["test"]["1"]["params"]["init"] == EVIL
    # Everything else that is free text from storage or the spec, poisoned in the document itself.
    doc["experiment"] = EVIL
    doc["storage"] = "postgresql://bench:hunter2@db.example/bench"
    doc["arms"][0]["best_params"] = {EVIL: EVIL}
    doc["importance"]["1"] = {EVIL: 0.7, "lr": 0.3}
    doc["diagnostics"]["1"]["notes"] = [EVIL]
    doc["verdict"]["caveats"] = [EVIL]
    doc["missing"] = [EVIL]
    doc["fairness"]["checks"][0]["detail"] = EVIL
    write(doc, tmp_path / "rep", col)
    page = (tmp_path / "rep" / "index.html").read_text()
    assert "<script" not in page.lower()
    assert page.count(EVIL_ESCAPED) >= 8
    assert "hunter2" not in page
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "<script" not in md.lower() and "hunter2" not in md


def test_partial_run_says_what_is_missing(tmp_path: Path, sqlite_url: str) -> None:
    spec = _spec(tmp_path)
    fill(spec, sqlite_url, tune_done=3, evaluate=False)
    col = collect(spec, sqlite_url)
    doc = build(col, reps=200)
    assert doc["missing"] == ["depth 1: 3/6 tuning trials finished", "depth 2: 3/6 tuning trials finished",
                              "depth 1: 0/3 re-evaluation runs finished", "depth 2: 0/3 re-evaluation runs finished",
                              "depth 1: 0/3 baseline runs finished", "depth 2: 0/3 baseline runs finished"]
    assert not doc["complete"]
    paths = write(doc, tmp_path / "rep", col)
    page = paths["html"].read_text()
    assert "missing: depth 1: 3/6 tuning trials finished" in page or "depth 1: 3/6 tuning trials finished" in page
    assert "missing: test results" in page and "missing: baseline results" in page
    assert "missing: pairwise" in page
    json.loads(paths["json"].read_text(), parse_constant=_no_nan)
    assert "fig_test_scores" not in paths and "fig_best_of_n" in paths
    assert "missing:" in paths["md"].read_text()
    with paths["csv"].open(newline="") as fh:
        assert len(list(csv.DictReader(fh))) == 6


def test_experiment_not_in_storage(tmp_path: Path, sqlite_url: str) -> None:
    spec = _spec(tmp_path)
    col = collect(spec, sqlite_url)
    doc = build(col, reps=50)
    paths = write(doc, tmp_path / "rep", col)
    page = paths["html"].read_text()
    assert "missing:" in page and "is not in this storage yet" in page
    assert "data:image/png" not in page
    json.loads(paths["json"].read_text(), parse_constant=_no_nan)
    # Without the collected records (the old call) there is still a report, just no trials.csv.
    assert "csv" not in write(doc, tmp_path / "rep2")


CONSOLE_ERROR = re.compile(r"Uncaught|Failed to load|ERR_|Refused to|Content Security Policy")


def _chromium() -> str:
    exe = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)
    if exe is None:
        if os.environ.get("BENCH_REQUIRE_SERVICES") == "1":
            pytest.fail("chromium is not installed but BENCH_REQUIRE_SERVICES=1 (make test installs it)")
        pytest.skip("chromium not installed (apt-get install chromium, or `make chromium`)")
    return exe


def test_html_renders_in_headless_chromium(full: tuple[Spec, str, Collected, dict[str, Any], Path],
                                           tmp_path: Path) -> None:
    exe = _chromium()
    _, _, _, _, out = full
    shot = tmp_path / "shot.png"
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'chromium'}", "--enable-logging=stderr", "--v=0",
           f"--screenshot={shot}", "--window-size=1200,3000", (out / "index.html").resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env={**os.environ, "HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    errors = [ln for ln in proc.stderr.splitlines() if "CONSOLE" in ln and CONSOLE_ERROR.search(ln)]
    assert errors == []
