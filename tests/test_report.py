"""The report on synthetic storages (no training): every section, valid JSON, escaping, partial runs, Chromium."""

from __future__ import annotations

import copy
import csv
import dataclasses
import itertools
import json
import math
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import optuna
import pytest
import sqlalchemy as sa
from optuna.trial import TrialState

from bench.cli import main
from bench.report.build import build
from bench.report.collect import Collected, collect
from bench.report.render import write
from bench.service.run import init_experiment
from bench.service.worker import SLOT_ATTR
from bench.spec import Arm, Spec, load_spec
from bench.store.ledger import SLOTS, Ledger
from bench.store.storage import make_engine, optuna_storage
from bench.tuning.objective import provenance
from bench.tuning.search_space import distributions, fixed_distributions
from bench.tuning.studies import all_studies, spec_study_name, trial_record
from tests.conftest import tiny_spec

EVIL = "<script>alert(1)</script>"
EVIL_ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
EPOCHS = 3
STUDIES = 3
SEED_EPS = (-0.05, 0.0, 0.05)  # seed effects on log test loss: within-study sd = 0.05 exactly
# depth -> tuning loss offset: depth 2 is clearly better after tuning ...
TUNE_BASE = {1: 0.90, 2: 0.60}
# ... and on re-evaluation: study k's log test loss is MU + 0.1 k (+ seed effect), so per-study means are
# MU + (0, 0.1, 0.2): mean MU + 0.1, sd 0.1; depth 2 vs depth 1 differ by 0.4 in log (ratio exp(-0.4)).
TUNED_MU = {1: -0.6, 2: -1.0}
# ... while the fixed config happens to suit depth 1 (the trap the tuned comparison avoids).
BASELINE_MU = {1: -0.8, 2: -0.4}
SECTIONS = ("Verdict", "Best per arm", "Tuning curves", "Test scores", "Pairwise", "learning rate",
            "Learning curves", "importance", "Diagnostics", "Fairness audit", "Provenance", "Methods")


def _spec(tmp_path: Path, **overrides: Any) -> Spec:
    over: dict[str, Any] = {"evaluation": {"seeds": 3}, "baseline": {"lr": 0.01},
                            "budget": {"trials": 6, "epochs": EPOCHS, "batch_size": 32, "studies": STUDIES},
                            **overrides}
    return load_spec(tiny_spec(tmp_path, **over))


def _curve(final: float) -> list[float]:
    return [final + 0.3, final + 0.1, final][:EPOCHS]


def _measured(seconds: float, val_losses: list[float], diverged: bool = False) -> dict[str, Any]:
    """What objective._attrs stores for a finished training run."""
    return {"seconds": seconds, "n_params": 500, "hidden": 8, "epochs_run": len(val_losses), "diverged": diverged,
            "val_losses": val_losses}


def _finish_slot(url: str, slot_id: int, outcome: str, number: int, value: float | None, seconds: float,
                 study: optuna.Study) -> None:
    """What Ledger.finish does for a worker (the result recorded and chained), without a real claim."""
    engine = make_engine(url)
    with engine.begin() as conn:
        exp_id = conn.execute(sa.select(SLOTS.c.experiment_id).where(SLOTS.c.id == slot_id)).scalar_one()
        conn.execute(sa.update(SLOTS).where(SLOTS.c.id == slot_id).values(state="claimed", worker_id=-1))
    ft = study._storage.get_trial(study._storage.get_trial_id_from_study_id_trial_number(study._study_id, number))
    assert Ledger(engine, exp_id).finish(slot_id, -1, outcome, value, seconds, number, trial_record(ft))
    engine.dispose()


def _add(study: optuna.Study, **kw: Any) -> int:
    study.add_trial(optuna.trial.create_trial(**kw))
    return study.get_trials(deepcopy=False)[-1].number


def _depth(spec: Spec, arm_key: str) -> int:
    return spec.arm(arm_key).depth


def _tune_trial(spec: Spec, study: optuna.Study, slot: dict[str, Any], kind: str) -> tuple[int, float | None]:
    """One tuning trial as a worker stores it: complete, diverged (+inf) or pruned (Optuna keeps its last report)."""
    i, depth, k = slot["idx"], _depth(spec, slot["arm"]), slot["study"]
    lr = 2e-3 * (10 ** (i / 5))  # 2e-3 .. 2e-2, inside the search range
    params = {"lr": lr, "init": ["default", "orthogonal"][i % 2], "dropout": 0.05 + 0.04 * i}
    value = TUNE_BASE[depth] + 0.1 * (math.log10(lr) + 2.2) ** 2 + 0.01 * i + 0.02 * k
    attrs = {SLOT_ATTR: slot["id"], "provenance": {**provenance(spec, "cpu"), "attempt": 1, "role": "tune"}}
    dists = distributions(spec.search_space)
    if kind == "pruned":
        # Reports 0.2 then 2.0: Optuna stores 2.0 (the last), bench scores 0.2 (the best epoch, like complete ones).
        number = _add(study, params=params, distributions=dists, state=TrialState.PRUNED, value=2.0,
                      intermediate_values={0: 0.2, 1: 2.0}, user_attrs={**attrs, "seconds": 0.1, "pruned": True})
        return number, None
    curve = _curve(value) if kind == "complete" else [1.9]
    stored = math.inf if kind == "diverged" else value
    number = _add(study, params=params, distributions=dists, value=stored, state=TrialState.COMPLETE,
                  intermediate_values=dict(enumerate(curve)),
                  user_attrs={**attrs, **_measured(0.5 + 0.1 * i, curve, kind == "diverged")})
    return number, stored


def _fixed_trials(spec: Spec, url: str, storage: Any, role: str, arm: Arm, study_k: int, params: dict[str, Any],
                  losses: list[float], source: int | None, diverged: set[int] = frozenset()) -> None:  # type: ignore
    """Eval or baseline trials exactly as WorkerLoop._add_fixed_trial stores them, and their slots done."""
    engine = make_engine(url)
    ledger = Ledger(engine, Ledger.find_experiment(engine, spec.name)[0])  # type: ignore[index]
    if role == "eval":  # eval slots are added by workers once a study's tuning is done (top_k = 1, rank 0)
        ledger.add_slots([("eval", arm.key, study_k, s, {"params": params, "seed": spec.evaluation.seed_offset + s,
                                                         "rank": 0, "source_trial": source})
                          for s in range(len(losses))])
    slots = [s for s in ledger.slots(role) if s["arm"] == arm.key and s["study"] == study_k]
    engine.dispose()
    study = optuna.load_study(study_name=spec_study_name(spec, arm, role), storage=storage)
    for j, (slot, test) in enumerate(zip(slots, losses, strict=True)):
        seed = json.loads(slot["payload"])["seed"]
        div = j in diverged
        val = math.inf if div else test - 0.02
        attrs = {**_measured(0.4, _curve(val), div), "seed": seed, "test_loss": None if div else test,
                 "provenance": {**provenance(spec, "cpu"), "role": role}, SLOT_ATTR: slot["id"], "rank": 0,
                 "source_trial": source, "study": study_k}
        number = _add(study, params=params, distributions=fixed_distributions(params, spec.search_space), value=val,
                      user_attrs=attrs, state=TrialState.COMPLETE)
        _finish_slot(url, slot["id"], "diverged" if div else "complete", number, val, 0.4, study)


def _losses(mu: float, k: int) -> list[float]:
    return [math.exp(mu + 0.1 * k + e) for e in SEED_EPS]


def fill(spec: Spec, url: str, tune_done: int | None = None, evaluate: bool = True,
         eval_params: dict[str, Any] | None = None, diverge: dict[tuple[int, int], set[int]] | None = None) -> None:
    """A storage as real workers leave it. tune_done: slots finished per study (None = all, i.e. a full run).
    diverge: (depth, study) -> indices of eval seeds that diverged."""
    init_experiment(spec, url)
    storage = optuna_storage(url)
    engine = make_engine(url)
    ledger = Ledger(engine, Ledger.find_experiment(engine, spec.name)[0])  # type: ignore[index]
    tune = ledger.slots("tune")
    engine.dispose()
    for arm in spec.arms:
        for k in range(spec.budget.studies):
            study = optuna.load_study(study_name=spec_study_name(spec, arm, "tune", k), storage=storage)
            mine = [s for s in tune if s["arm"] == arm.key and s["study"] == k][:tune_done]
            best: tuple[float, int, dict[str, Any]] | None = None
            for slot in mine:
                kind = {(1, 1): "diverged", (1, 4): "pruned"}.get((arm.depth, slot["idx"]), "complete")
                number, value = _tune_trial(spec, study, slot, kind)
                _finish_slot(url, slot["id"], kind, number, value, 0.5, study)
                if kind == "complete" and value is not None and (best is None or value < best[0]):
                    best = (value, number, study.trials[number].params)
            if not evaluate or best is None:
                continue
            _fixed_trials(spec, url, storage, "eval", arm, k, eval_params or best[2],
                          _losses(TUNED_MU[arm.depth], k), best[1], (diverge or {}).get((arm.depth, k), set()))
        if evaluate:
            _fixed_trials(spec, url, storage, "baseline", arm, 0, dict(spec.baseline),
                          _losses(BASELINE_MU[arm.depth], 0), None)
    storage.dispose()


def _no_nan(token: str) -> Any:
    raise ValueError(f"non-standard JSON token {token}")


def _n_trials(spec: Spec, url: str) -> dict[str, int]:
    storage = optuna_storage(url)
    out = {role: sum(len(optuna.load_study(study_name=name, storage=storage).trials)
                     for _, r, _, name in all_studies(spec) if r == role) for role in ("tune", "eval", "baseline")}
    storage.dispose()
    return out


def _external_refs(page: str) -> list[str]:
    return re.findall(r"""(?:src|href)\s*=\s*["']?\s*((?:https?:)?//[^"'\s>]*)""", page, flags=re.IGNORECASE)


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> tuple[Spec, str, Collected, dict[str, Any], Path]:
    """A finished synthetic experiment (tuning, evaluation, baseline) and its report written to rep/; made once per
    module (the tests only read it; those that tamper take deep copies)."""
    tmp_path = tmp_path_factory.mktemp("full")
    sqlite_url = f"sqlite:///{tmp_path / 'bench.db'}"
    spec = _spec(tmp_path)
    fill(spec, sqlite_url)
    col = collect(spec, sqlite_url)
    doc = build(col)
    write(doc, tmp_path / "rep", col)
    return spec, sqlite_url, col, doc, tmp_path / "rep"


def test_report_json_sections_verdict_and_fairness(full: tuple[Spec, str, Collected, dict[str, Any], Path]) -> None:
    _, _, _, _, out = full
    text = (out / "report.json").read_text()
    doc = json.loads(text, parse_constant=_no_nan)  # NaN / Infinity would be invalid JSON
    for key in ("experiment", "spec_hash", "arms", "tuning", "budget", "test", "baseline", "comparisons",
                "fairness", "diagnostics", "verdict"):
        assert key in doc and doc[key] is not None, key
    assert doc["missing"] == [] and doc["complete"]
    v = doc["verdict"]
    assert v["winner"] == "depth 2" and v["groups"] == [["depth 2"], ["depth 1"]]
    assert v["fixed_winner"] == "depth 1" and v["fixed_groups"] == [["depth 1"], ["depth 2"]]
    assert v["text"].startswith("depth 2 is best")
    assert "With a fixed config instead, depth 1 would have been called best" in v["text"]
    assert doc["fairness"]["all_held"] and all(c["held"] for c in doc["fairness"]["checks"])
    arms = {a["label"]: a for a in doc["arms"]}
    assert arms["depth 1"]["by_outcome"] == {"complete": 12, "pruned": 3, "diverged": 3}
    assert arms["depth 2"]["by_outcome"] == {"complete": 18, "pruned": 0, "diverged": 0}
    assert [s["n_finished"] for s in arms["depth 1"]["studies"]] == [6, 6, 6]


def test_tuned_comparison_values_by_hand(full: tuple[Spec, str, Collected, dict[str, Any], Path]) -> None:
    """Per-study mean log test loss: depth 1 -0.6 + (0, .1, .2), depth 2 -1.0 + (0, .1, .2); seeds +-0.05."""
    from scipy import stats as sps

    doc = full[3]
    t2 = doc["test"]["depth 2"]
    assert t2["unit"] == "study" and t2["units"] == pytest.approx([-1.0, -0.9, -0.8])
    assert t2["median"] == pytest.approx(math.exp(-0.9)) and t2["geo_mean"] == pytest.approx(math.exp(-0.9))
    half = sps.t.ppf(0.975, 2) * 0.1 / math.sqrt(3)
    assert t2["geo_mean_ci"] == pytest.approx([math.exp(-0.9 - half), math.exp(-0.9 + half)])
    # One-way ANOVA: MSW = 0.05^2, MSB = 3 * 0.02 / 2 = 0.03, n0 = 3: sigma_between^2 = (0.03 - 0.0025) / 3.
    assert t2["sd_within_study"] == pytest.approx(0.05)
    assert t2["sd_between_studies"] == pytest.approx(math.sqrt((0.03 - 0.0025) / 3))
    fam = doc["comparisons"]["test"]
    (pair,) = fam["pairs"]
    assert (pair["a"], pair["b"]) == ("depth 1", "depth 2")
    assert pair["ratio"] == pytest.approx(math.exp(0.4))  # depth 1's geometric-mean loss is e^0.4 x depth 2's
    se = math.sqrt(0.01 / 3 + 0.01 / 3)
    assert pair["p"] == pytest.approx(2 * sps.t.sf(0.4 / se, 4))  # equal variances: Welch df = 4
    assert pair["p_holm"] == pair["p"]  # one pair: nothing to correct
    lo, hi = pair["ratio_ci"]
    assert lo == pytest.approx(math.exp(0.4 - sps.t.ppf(0.975, 4) * se))
    assert hi == pytest.approx(math.exp(0.4 + sps.t.ppf(0.975, 4) * se))
    assert pair["decision"] == "b" and pair["p_a_better"] < 0.5
    assert 0.0 < pair["p_a_better_ci"][0] < pair["p_a_better"] < pair["p_a_better_ci"][1] < 0.5
    base = doc["comparisons"]["baseline"]
    assert base["unit"] == "seed" and base["pairs"][0]["decision"] == "a"  # depth 1 better with the fixed config


def test_pruned_trials_scored_like_complete_ones(full: tuple[Spec, str, Collected, dict[str, Any], Path]) -> None:
    _, _, col, doc, _ = full
    pruned = [t for t in col.trials if t["role"] == "tune" and t["state"] == "pruned"]
    assert pruned and all(t["value"] == pytest.approx(0.2) for t in pruned)  # best epoch, not Optuna's last 2.0
    # At 0.2 the pruned trial is depth 1's best in every study: pruned trials compete for the best config.
    assert [s["best_value"] for s in doc["arms"][0]["studies"]] == pytest.approx([0.2, 0.2, 0.2])


def test_diverged_eval_seed_scores_trivial_loss_not_dropped(tmp_path: Path, sqlite_url: str) -> None:
    spec = _spec(tmp_path)
    fill(spec, sqlite_url, diverge={(2, 0): {1}})
    doc = build(collect(spec, sqlite_url))
    s0 = doc["test"]["depth 2"]["per_study"][0]
    trivial = doc["trivial_loss"]
    assert s0["n_seeds"] == 3 and s0["n_diverged"] == 1
    assert s0["test_losses"][1] == pytest.approx(trivial)
    assert s0["log_mean"] == pytest.approx((-1.05 + math.log(trivial) - 0.95) / 3)
    assert doc["settings"]["diverged_scored_as"] == pytest.approx(trivial)


def test_identical_arms_get_no_winner(tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(TUNED_MU, 1, TUNED_MU[2])
    monkeypatch.setitem(BASELINE_MU, 1, BASELINE_MU[2])
    spec = _spec(tmp_path)
    fill(spec, sqlite_url)
    doc = build(collect(spec, sqlite_url))
    v = doc["verdict"]
    assert v["winner"] is None and v["groups"] == [["depth 1", "depth 2"]]
    assert v["tuned_text"].startswith("No detectable difference") or "practically equivalent" in v["tuned_text"]
    assert "is best" not in v["text"]


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
    assert page.count("data:image/png;base64,") == 5  # tuning curves, test scores, lr, learning curves, importance
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
    assert list(rows[0]) == ["role", "arm", "study", "number", "state", "value", "counted", "seed", "test_loss",
                             "seconds", "n_params", "hidden", "epochs_run", "params", "lost_reason"]
    counts = _n_trials(spec, url)
    assert counts == {"tune": 36, "eval": 18, "baseline": 6}
    assert {r: sum(row["role"] == r for row in rows) for r in counts} == counts
    assert sorted(r["state"] for r in rows if r["role"] == "tune" and r["arm"] == "depth 1" and r["study"] == "0") == \
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
    doc = build(col)
    assert doc["test"]["depth 1"]["per_study"][0]["params"]["init"] == EVIL
    # Everything else that is free text from storage or the spec, poisoned in the document itself.
    doc["experiment"] = EVIL
    doc["storage"] = "postgresql://bench:hunter2@db.example/bench"
    doc["arms"][0]["best_params"] = {EVIL: EVIL}
    doc["importance"]["depth 1"] = {EVIL: 0.7, "lr": 0.3}
    doc["diagnostics"]["depth 1"]["notes"] = [EVIL]
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
    doc = build(col)
    assert doc["missing"] == [f"depth {d} study {k}: 3/6 tuning trials finished" for d in (1, 2) for k in range(3)] \
        + ["depth 1: 0/9 re-evaluation runs finished", "depth 2: 0/9 re-evaluation runs finished",
           "depth 1: 0/3 baseline runs finished", "depth 2: 0/3 baseline runs finished"]
    assert not doc["complete"]
    assert doc["verdict"]["winner"] is None and doc["verdict"]["text"].startswith("Cannot tell yet")
    paths = write(doc, tmp_path / "rep", col)
    page = paths["html"].read_text()
    assert "depth 1 study 0: 3/6 tuning trials finished" in page
    assert "missing: test results" in page and "missing: baseline results" in page
    assert "missing: test comparisons" in page
    json.loads(paths["json"].read_text(), parse_constant=_no_nan)
    assert "fig_test_scores" not in paths and "fig_best_of_n" in paths
    assert "missing:" in paths["md"].read_text()
    with paths["csv"].open(newline="") as fh:
        assert len(list(csv.DictReader(fh))) == 18


def test_experiment_not_in_storage(tmp_path: Path, sqlite_url: str) -> None:
    spec = _spec(tmp_path)
    col = collect(spec, sqlite_url)
    doc = build(col)
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


@pytest.mark.timeout(300)  # Chromium itself may take up to its 120 s subprocess limit
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


def test_readme_schema_documents_every_report_key(full: tuple[Spec, str, Collected, dict[str, Any], Path]) -> None:
    """The README's report.json table names every top-level key the report writes, and no key it no longer writes
    (removed keys are listed in prose below the table, not in it)."""
    doc = full[3]
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("## Report schema (`report.json`)", 1)[1].split("\n## ", 1)[0]
    documented = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            documented |= set(re.findall(r"`([a-z_]+)`", line.split("|")[1]))
    assert set(doc) <= documented, sorted(set(doc) - documented)
    assert documented <= set(doc), sorted(documented - set(doc))


# ---------------------------------------------------------------- the fairness audit fails where it must


@pytest.fixture(scope="module")
def collected(full: tuple[Spec, str, Collected, dict[str, Any], Path]) -> Collected:
    """The finished synthetic experiment's records; tests tamper with deep copies of it."""
    return full[2]


def _audit(col: Collected) -> tuple[dict[int, bool], bool]:
    fair = build(col)["fairness"]
    return {c["invariant"]: c["held"] for c in fair["checks"]}, fair["all_held"]


def _drop(col: Collected, arm: int, study: int, n: int = 1) -> Collected:
    """A copy of col in which the last n counted tuning trials of one study are no longer counted."""
    col = copy.deepcopy(col)
    key = col.spec.arms[arm].key
    mine = [t for t in col.trials if t["role"] == "tune" and t["arm_key"] == key and t["study"] == study]
    for t in sorted(mine, key=lambda t: t["number"])[-n:]:
        t["counted"] = False
    return col


def test_audit_holds_on_the_untouched_record(collected: Collected) -> None:
    held, all_held = _audit(collected)
    assert held == {1: True, 2: True, 3: True, 4: True, 5: True} and all_held


def test_audit_exact_budget_fails_on_a_missing_trial(collected: Collected) -> None:
    held, all_held = _audit(_drop(collected, 0, 1))
    assert held[3] is False and all_held is False
    assert held[4] is True  # 6/5/6 is still parity within one trial
    fair = build(_drop(collected, 0, 1))["fairness"]
    (inv3,) = [c for c in fair["checks"] if c["invariant"] == 3]
    assert inv3["detail"] == "depth 1: 6/5/6 of 6, depth 2: 6/6/6 of 6"


def test_audit_exact_budget_fails_on_an_extra_trial(collected: Collected) -> None:
    """A seventh slot and trial in one study (an edited ledger): every study must hold exactly budget.trials."""
    col = copy.deepcopy(collected)
    key = col.spec.arms[1].key
    extra = copy.deepcopy(max((t for t in col.trials if t["role"] == "tune" and t["arm_key"] == key
                               and t["study"] == 0), key=lambda t: t["number"]))
    extra["number"] += 1
    col.trials.append(extra)
    slot = copy.deepcopy(next(s for s in col.slots if s["role"] == "tune" and s["arm"] == key and s["study"] == 0))
    slot.update(id=10_000, idx=6, trial_number=extra["number"])
    col.slots.append(slot)
    held, all_held = _audit(col)
    assert held[3] is False and all_held is False
    arms = build(col)["arms"]
    assert [s["n_finished"] for s in arms[1]["studies"]] == [7, 6, 6] and arms[1]["studies"][0]["budget"] == 7


def test_audit_parity_fails_when_one_study_lags(collected: Collected) -> None:
    held, all_held = _audit(_drop(collected, 1, 2, n=2))
    assert held[4] is False and held[3] is False and all_held is False


def test_audit_spec_hash_fails_on_an_edited_trial_or_study(collected: Collected) -> None:
    col = copy.deepcopy(collected)
    next(t for t in col.trials if t["counted"])["spec_hash"] = "0" * 64
    held, all_held = _audit(col)
    assert held[1] is False and all_held is False
    col = copy.deepcopy(collected)
    col.stored_spec_hash = "0" * 64
    assert _audit(col) == ({1: False, 2: True, 3: True, 4: True, 5: True}, False)
    col = copy.deepcopy(collected)
    col.missing_studies = ["tiny-depth1-s2"]
    assert _audit(col)[0][1] is False
    col = copy.deepcopy(collected)
    next(iter(col.study_attrs.values()))["spec_hash"] = "0" * 64
    held, all_held = _audit(col)
    assert held[1] is False and held[2] is False and not all_held


def test_audit_fails_when_search_spaces_differ(collected: Collected) -> None:
    col = copy.deepcopy(collected)
    name = next(iter(col.distributions))
    col.distributions[name] = {**col.distributions[name], "lr": "FloatDistribution(high=1.0, log=True, low=1e-05)"}
    held, all_held = _audit(col)
    assert held[2] is False and all_held is False and held[1] and held[3]


# ---------------------------------------------------------------- diverged trials in the tuning curves


def test_worst_score_is_the_trivial_loss(collected: Collected) -> None:
    from bench.report.build import worst_score

    assert collected.trivial_loss is not None and math.isfinite(collected.trivial_loss)
    assert worst_score(collected) == collected.trivial_loss
    col = copy.deepcopy(collected)
    col.trivial_loss = None
    assert worst_score(col) == math.inf


def test_diverged_trials_are_in_the_curves_scored_as_trivial_loss(collected: Collected) -> None:
    """depth 1 slot 1 diverged in every study: each curve still has 6 points, and a study whose first trial
    diverged starts at the trivial loss, not at its second trial."""
    from bench.report.build import tuning_curves, worst_score

    col = copy.deepcopy(collected)
    worst = worst_score(col)
    arm = col.spec.arms[0]
    first = min((t for t in col.trials if t["role"] == "tune" and t["arm_key"] == arm.key and t["study"] == 0),
                key=lambda t: t["number"])
    # Diverged after a finite epoch: whatever value it had, a diverged run scores the trivial loss.
    first["state"] = "diverged"
    assert first["value"] is not None and first["value"] < worst
    curves = tuning_curves(col, arm, worst)
    assert curves is not None and curves["n"] == [1, 2, 3, 4, 5, 6]
    s0, s1 = curves["studies"][0], curves["studies"][1]
    assert len(s0["best"]) == len(s1["best"]) == 6
    assert s0["best"][0] == worst and s0["best"][1] == worst  # trials 0 and 1 both diverged
    assert s0["best"][2] < worst
    # Study 1: trial 0 complete, trial 1 diverged (scored worst, so the running best does not move).
    assert s1["best"][1] == s1["best"][0] < worst
    assert curves["high"][0] == worst
    assert s0["seconds"] == pytest.approx(list(itertools.accumulate(
        t["seconds"] for t in sorted((t for t in col.trials if t["role"] == "tune" and t["arm_key"] == arm.key
                                      and t["study"] == 0 and t["counted"]), key=lambda t: t["number"]))))


def test_diverged_trials_in_expected_best_of_n(collected: Collected) -> None:
    """With an i.i.d. sampler the pooled expected best-of-n includes diverged trials at the trivial loss: its n = 1
    value is the mean over all 18 trials of depth 1, three of them at the trivial loss."""
    from bench.report.build import tuning_curves, worst_score

    col = copy.deepcopy(collected)
    col.spec = dataclasses.replace(col.spec, sampler=dataclasses.replace(col.spec.sampler, kind="random"))
    worst = worst_score(col)
    arm = col.spec.arms[0]
    curves = tuning_curves(col, arm, worst)
    assert curves is not None
    mine = [t for t in col.trials if t["role"] == "tune" and t["arm_key"] == arm.key and t["counted"]]
    scores = [worst if t["state"] == "diverged" else min(t["value"], worst) for t in mine]
    assert len(scores) == 18 and scores.count(worst) == 3
    assert curves["expected_best_of_n"]["mean"][0] == pytest.approx(sum(scores) / 18)
    assert "expected_best_of_n" not in (tuning_curves(collected, arm, worst) or {})  # TPE: not valid, left out


def test_lower_loss_wins_the_comparison(collected: Collected) -> None:
    """The direction of every comparison: lower test loss is better, whichever arm comes first."""
    doc = build(collected)
    assert doc["test"]["depth 2"]["geo_mean"] < doc["test"]["depth 1"]["geo_mean"]
    fam = doc["comparisons"]["test"]
    assert fam["order"] == ["depth 2", "depth 1"] and fam["winner"] == "depth 2"
    (pair,) = fam["pairs"]
    assert pair["ratio"] > 1 and pair["p_a_better"] < 0.5 and pair["p_a_better_empirical"] == 0.0
    base = doc["comparisons"]["baseline"]
    assert base["winner"] == "depth 1" and base["pairs"][0]["p_a_better"] > 0.5
