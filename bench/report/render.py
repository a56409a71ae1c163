"""The only writer of report files: report.json, report.md, index.html, figures (PNG) and trials.csv."""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.table import Table
from rich.text import Text

from bench.report import plots
from bench.report.inference import join_labels
from bench.report.orientation import Words, words

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from bench.report.collect import Collected


def _json_safe(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    return x


def write_atomic_bytes(path: Path, data: bytes) -> None:
    """Write via a temporary file and rename, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; a report is meant to be read by others
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path: Path, text: str) -> None:
    """Write text (UTF-8) via a temporary file and rename, so a reader never sees half a report."""
    write_atomic_bytes(path, text.encode("utf-8"))


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if not math.isfinite(v):
            return "-"
        return f"{v:.{digits}g}" if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e4) else f"{v:.{digits}f}"
    return str(v)


def _params(p: dict[str, Any] | None) -> str:
    return "-" if not p else ", ".join(f"{k}={_fmt(v, 3)}" for k, v in sorted(p.items()))


def _ci(ci: list[float] | None, digits: int = 4) -> str:
    return "-" if not ci else f"[{_fmt(ci[0], digits)}, {_fmt(ci[1], digits)}]"


def _prob(v: float | None) -> str:
    """A probability to 3 decimals; beyond them '< 0.001' / '> 0.999' (a normal-model tail of 1e-16 claims a
    precision that five values do not carry)."""
    if v is None or not math.isfinite(v):
        return "-"
    return "< 0.001" if v < 0.0005 else "> 0.999" if v > 0.9995 else f"{v:.3f}"


def _prob_ci(ci: list[float] | None) -> str:
    return "-" if not ci else f"[{_prob(ci[0])}, {_prob(ci[1])}]"


def hide_password(url: str) -> str:
    """Belt and braces: the document's URL is already display_url'd, but a report must never show a password."""
    return re.sub(r"(://[^/:@]*:)[^/@]*@", r"\1***@", url)


ARM_COLUMNS = ("arm", "finished", "complete", "pruned", "diverged", "median best val", "best val", "params",
               "s/trial", "best hyperparameters")


def arm_rows(doc: dict[str, Any]) -> list[list[str]]:
    return [[a["label"], f"{a['n_finished']}/{a['budget']}", *(str(a["by_outcome"][o]) for o in
             ("complete", "pruned", "diverged")), _fmt(a["median_best_value"]), _fmt(a["best_value"]),
             _fmt(a["n_params"]), _fmt(a["mean_trial_seconds"], 2), _params(a["best_params"])] for a in doc["arms"]]


def terminal_table(doc: dict[str, Any]) -> Table:
    """Per arm for the terminal: numbers only (hyperparameters go below it, see terminal_params)."""
    w = words(doc)
    better = "" if w.sign == 1 else f"; {w.noun}: {w.better}"
    t = Table(title=Text(f"{doc['experiment']}: per arm (tuned separately, same search space and budget{better})"))
    test = doc.get("test") or {}
    for c in ("arm", "done", "median best val", "test geo-mean", "95% CI"):
        t.add_column(Text(c), justify="left" if c == "arm" else "right", min_width=len(c), no_wrap=c != "arm")
    for a in doc["arms"]:
        summary = test.get(a["label"]) or {}
        t.add_row(*(Text(c) for c in (a["label"], f"{a['n_finished']}/{a['budget']}", _fmt(a["median_best_value"]),
                                      _fmt(summary.get("geo_mean")), _ci(summary.get("geo_mean_ci")))))
    return t


def terminal_params(doc: dict[str, Any]) -> list[str]:
    return [f"{a['label']} best: {_params(a['best_params'])}" for a in doc["arms"]]


# ---------------------------------------------------------------- content as blocks (one source, two formats)


@dataclass(frozen=True)
class Block:
    """One piece of report content. All text is plain (unescaped); each emitter escapes for its format."""

    kind: str  # h1 | h2 | p | ul | table | fig | missing
    text: str = ""
    items: tuple[str, ...] = ()  # ul
    header: tuple[str, ...] = ()  # table
    rows: tuple[tuple[str, ...], ...] = ()  # table
    anchor: str = ""  # h2 id; fig name
    hrefs: tuple[str, ...] = ()  # ul: a relative link per item (a suite report's member reports)


def _table(header: tuple[str, ...] | list[str], rows: list[list[str]]) -> Block:
    return Block("table", header=tuple(header), rows=tuple(tuple(r) for r in rows))


def _fig(name: str, doc: dict[str, Any], figs: set[str], missing: str) -> Block:
    return Block("fig", text=plots.title(name, doc), anchor=name) if name in figs else Block("missing", text=missing)


def _verdict(doc: dict[str, Any], figs: set[str], have_trials: bool) -> list[Block]:
    v = doc.get("verdict") or {}
    out = [Block("p", text=v.get("tuned_text") or v.get("text") or "no verdict in this document.")]
    if doc.get("missing"):
        out.append(Block("missing", text="; ".join(doc["missing"])))
    for key, name in (("fixed_text", "Fixed config"), ("transfer_text", "Transferred config")):
        if v.get(key):
            out.append(Block("p", text=f"{name}: {v[key]}"))
    if v.get("budget_note"):
        out.append(Block("p", text=v["budget_note"]))
    if v.get("caveats"):
        out += [Block("p", text="Caveats:"), Block("ul", items=tuple(v["caveats"]))]
    return out


def _arms(doc: dict[str, Any], figs: set[str], have_trials: bool) -> list[Block]:
    metric = doc.get("metric") or "validation loss"
    trivial = doc.get("trivial_loss")
    studies = (doc.get("settings") or {}).get("studies")
    w = words(doc)
    what = (f"Loss: {metric}" if w.sign == 1 else
            f"Score: {metric}, {w.better} (maximized; a score below [metric] worst = "
            f"{_fmt((doc.get('settings') or {}).get('diverged_scored_as'))} is raised to it)")
    text = (f"Each arm was tuned in {studies} independent studies over the same search space with the same budget "
            f"per study; 'median best val' is the median over studies of each study's best tuning trial "
            f"(AlgoPerf's rule), 'best val' the best over all of them. {what}"
            + (f"; trivial (input-independent) baseline {trivial:.4f} nats = {trivial / math.log(2):.4f} bits."
               if trivial else "."))
    bits = [[a["label"], _fmt(a.get("best_value_bits"))] for a in doc["arms"]]
    per_study = [[a["label"], str(s["study"]), f"{s['n_finished']}/{s['budget']}", _fmt(s["best_value"]),
                  _fmt(s["seconds"], 1), _params(s["best_params"])] for a in doc["arms"] for s in a["studies"]]
    out = [Block("p", text=text), _table(ARM_COLUMNS, arm_rows(doc)),
           Block("p", text="Per replicate study:"),
           _table(("arm", "study", "finished", "best val", "compute (s)", "best hyperparameters"), per_study)]
    if w.sign == -1:
        return out  # bits are a unit of losses in nats
    return out + [Block("p", text="Best validation loss in bits (loss / ln 2; bits per character for charlm):"),
                  _table(("arm", "best val loss (bits)"), bits)]


def _better(w: Words) -> str:
    """" (higher is better)" for a maximized metric; nothing for a loss (the report's default reading)."""
    return "" if w.sign == 1 else f" ({w.better})"


def _worst_words(doc: dict[str, Any]) -> str:
    """What a diverged run scores: the task's trivial loss, or a user trainer's [metric] worst."""
    if doc.get("trivial_loss"):
        return "the trivial loss"
    worst = (doc.get("settings") or {}).get("diverged_scored_as")
    return "the trivial loss" if worst is None else f"[metric] worst = {_fmt(worst)}"


def _best_of_n(doc: dict[str, Any], figs: set[str], have_trials: bool) -> list[Block]:
    w = words(doc)
    out = [Block("p", text=f"Best validation {w.noun} so far, in trial order{_better(w)}: the line is the median "
                           "over the arm's replicate studies, the band their range (so it never leaves the observed "
                           "values); right: against cumulative tuning compute. Diverged trials score "
                           f"{_worst_words(doc)}."),
           _fig("best_of_n", doc, figs, "missing: no finished tuning trials yet")]
    if (doc.get("settings") or {}).get("adaptive_sampler"):
        out.append(Block("p", text="The sampler is adaptive (TPE): trials are not independent draws, so no "
                                   "expected best-of-n (Dodge et al. 2019) is computed; the curves are the studies' "
                                   "own best-so-far."))
    b = doc.get("budget") or {}
    if b.get("equal_trials"):
        t, c = b["equal_trials"], b["equal_compute"]
        out.append(Block("p", text=f"Budget-aware ranking by median best tuning validation {w.noun} "
                                   "(descriptive, not tested):"))
        out.append(_table(("budget", "ranking (best first)", "values"), [
            [f"equal trials: {t['n']} per study", " > ".join(t["ranking"]),
             join_labels([f"{k} {_fmt(v)}" for k, v in t["values"].items()])],
            [f"equal compute: {_fmt(c['seconds'], 1)} s per study", " > ".join(c["ranking"]),
             join_labels([f"{k} {_fmt(v)}" for k, v in c["values"].items()])]]))
        out.append(Block("p", text=("Trial parity and compute parity agree." if b.get("agree") else
                                    "Trial parity and compute parity DISAGREE: the answer depends on the budget.")))
        rows = [[k, _fmt(v["trials"]), _fmt(v["seconds"], 1), f"{v['studies_reached']}/{v['studies']}"]
                for k, v in (b.get("to_target") or {}).items()]
        out.append(Block("p", text=f"Budget needed to reach the best arm's median result ({_fmt(b.get('target'))}); "
                                   "medians over studies, '-' where most studies never reached it:"))
        out.append(_table(("arm", "trials", "seconds", "studies that reached it"), rows))
        if b.get("crossings"):
            out.append(Block("p", text="Where median curves cross (the leader changes): " + "; ".join(
                f"{x['a']} vs {x['b']} at n = {', '.join(map(str, x['at_n']))} ({x['ahead_at_end']} ahead at the end)"
                for x in b["crossings"])))
    return out


SEED_COLUMNS = ("arm", "unit", "studies", "seeds", "diverged", "median (AlgoPerf)", "geo-mean", "95% CI",
                "sd between studies", "sd within study")


def _seed_rows(summary: dict[str, Any], tuned: bool) -> list[list[str]]:
    rows = []
    for label, s in summary.items():
        if not s:
            continue
        row = [label, s["unit"], str(s["n_studies"]), str(s["n_seeds"]), str(s["n_diverged"]), _fmt(s["median"]),
               _fmt(s["geo_mean"]), _ci(s.get("geo_mean_ci")) if s.get("geo_mean_ci") else "n < 2: none",
               _fmt(s.get("sd_between_studies"), 3), _fmt(s.get("sd_within_study"), 3)]
        if tuned:
            row.append(_fmt(s.get("tuner_optimism"), 3))
        rows.append(row)
    return rows


def _test(doc: dict[str, Any], figs: set[str], have_trials: bool) -> list[Block]:
    w = words(doc)
    out = [Block("p", text="Each replicate study's best configuration retrained with fresh seeds (tuned), next to "
                           "one fixed configuration for every arm (the 'everything else held constant' comparison) "
                           "and, where configured, the best configuration of one arm transferred to every arm; all "
                           f"scored on the held-out test split{_better(w)}. Diverged seeds score {_worst_words(doc)} "
                           f"(never dropped). The geo-mean's 95% interval is a Student t interval of the mean log "
                           f"{w.noun} over the units (studies; seeds when there is one study or one fixed config). "
                           f"Standard deviations are of log {w.noun} (≈ relative), from a one-way random-effects "
                           "ANOVA."),
           _fig("test_scores", doc, figs, "missing: no test losses yet (no evaluation or baseline phase finished)")]
    for key, title, tuned in (("test", "Tuned (each study's best config)", True),
                              ("baseline", "Fixed config (baseline)", False),
                              ("transfer", "Transferred config", False)):
        summary = doc.get(key) or {}
        rows = _seed_rows(summary, tuned)
        if not rows and key == "transfer" and not (doc.get("settings") or {}).get("transfer_from"):
            continue
        out.append(Block("p", text=f"{title}:"))
        if rows:
            out.append(_table(SEED_COLUMNS + (("tuner optimism (sd)",) if tuned else ()), rows))
        absent = [d for d, s in summary.items() if not s]
        if absent or not summary:
            out.append(Block("missing", text=f"missing: {key} results for {', '.join(absent) or '-'} "
                                             "(phase not configured in the spec, or not finished)"))
    gap = ("best tuning value - mean re-evaluated validation loss" if w.sign == 1 else
           f"mean re-evaluated validation {w.noun} - best tuning value")
    out.append(Block("p", text=f"Tuner optimism: median over studies of ({gap}) / its sd; negative means the "
                               "tuning-time best looked better than the config really is (Melis et al. 2018)."))
    return out


def _pair_rows(fam: dict[str, Any]) -> list[list[str]]:
    words = {"a": "A better", "b": "B better", "equivalent": "equivalent", "undecided": "cannot tell",
             "untestable": "too few units"}
    return [[p["a"], p["b"], _fmt(p["ratio"], 3), _ci(p.get("ratio_ci"), 3), _prob(p.get("p_a_better")),
             _prob_ci(p.get("p_a_better_ci")), _fmt(p.get("p"), 3), _fmt(p.get("p_holm"), 3), words[p["decision"]],
             _fmt(p.get("units_needed"))] for p in fam["pairs"]]


def _pairwise(doc: dict[str, Any], figs: set[str], have_trials: bool) -> list[Block]:
    s = doc.get("settings") or {}
    header = ("A", "B", "ratio A/B", "95% CI", "P(A better)", "95% CI", "p", "Holm p", "decision", "units needed")
    w = words(doc)
    out = [Block("p", text=(
        f"Every pair of arms, on the geometric-mean test {w.noun} (ratio A/B {'<' if w.sign == 1 else '>'} 1: A is "
        f"better{'' if w.sign == 1 else '; ' + w.better}). Welch's t test on the units' mean log {w.noun} (Welch "
        "1947), Holm-adjusted over all pairs of the family (Holm 1979). 'A better' needs "
        f"an adjusted p ≤ {s.get('alpha')} and a ratio beyond the practical threshold "
        f"{float(s.get('min_effect') or 0):.0%} "
        "([analysis] min_effect); 'equivalent' means the ratio interval lies inside that threshold (ROPE, Benavoli "
        "et al. 2017). P(A better): chance that a fresh unit of A beats one of B (McGraw & Wong 1992; Bouthillier et "
        "al. 2021), interval from the noncentral t (Steiger & Fouladi 1997). Units needed: per arm, for 80% power "
        "to detect the threshold at the measured spread."))]
    for key, title in (("test", "Tuned"), ("baseline", "Fixed config"), ("transfer", "Transferred config")):
        fam = (doc.get("comparisons") or {}).get(key)
        if fam is None and key == "transfer" and not s.get("transfer_from"):
            continue
        out.append(Block("p", text=f"{title}" + (f" (unit: {fam['unit']}):" if fam else ":")))
        out.append(_table(header, _pair_rows(fam)) if fam else
                   Block("missing", text=f"missing: {key} comparisons need test scores of at least two arms"))
    return out


def _lr(doc: dict[str, Any], figs: set[str], have_trials: bool) -> list[Block]:
    why = ("no tuning trial with a learning rate (lr is not in the search space, or none finished)" if have_trials
           else "trial records (the report was rendered without the collected trials)")
    return [_fig("lr", doc, figs, f"missing: {why}")]


def _curves(doc: dict[str, Any], figs: set[str], have_trials: bool) -> list[Block]:
    return [_fig("learning_curves", doc, figs, "missing: no per-epoch validation losses of a best trial yet")]


def _importance(doc: dict[str, Any], figs: set[str], have_trials: bool) -> list[Block]:
    imp = {d: v for d, v in (doc.get("importance") or {}).items() if v}
    if not imp:
        return [Block("missing", text="missing: importance needs at least 3 finished trials with distinct losses "
                                      "per arm")]
    names = sorted({p for v in imp.values() for p in v})
    rows = [[n, *(_fmt(imp[d].get(n), 3) for d in imp)] for n in names]
    return [_fig("importance", doc, figs, "missing: importance figure"),
            _table(("hyperparameter", *imp), rows)]


def _diagnostics(doc: dict[str, Any], figs: set[str], have_trials: bool) -> list[Block]:
    diag = doc.get("diagnostics") or {}
    if not diag:
        return [Block("missing", text="missing: diagnostics")]
    rows = [[d, _fmt(g.get("divergence_fraction"), 3), _fmt(g.get("still_improving")),
             ", ".join(f"{k} ({v})" for k, v in (g.get("at_bound") or {}).items()) or "-",
             "; ".join(g.get("notes") or []) or "none"] for d, g in diag.items()]
    return [Block("p", text="Is the search adequate? Best values at a bound of the range, divergence, and a "
                            "best-so-far still improving by more than seed noise all say the arm may be under-tuned."),
            _table(("arm", "diverged fraction", "still improving", "best at a bound", "notes"), rows)]


def _fairness(doc: dict[str, Any], figs: set[str], have_trials: bool) -> list[Block]:
    f = doc.get("fairness") or {}
    checks = f.get("checks") or []
    out = [Block("p", text="Every fairness invariant held." if f.get("all_held") else
                 "NOT every fairness invariant held: see the rows marked NO.")]
    record = f.get("record") or {}
    if record:
        head = f" Record head (sha256 chain over {record['recorded_slots']} finished slots): {record['head']}." \
            if record.get("head") else ""
        out.append(Block("p", text=f"Record audit: {record['text']}.{head}"))
        problems = [f"{m['study']} trial {m['trial']}: {m['detail']}" for m in record.get("mismatches") or []]
        problems += [u["detail"] for u in record.get("unaccounted") or []] + list(record.get("chain_problems") or [])
        if problems:
            out.append(Block("ul", items=tuple(problems)))
    out.append(_table(("invariant", "check", "held", "detail"),
                      [[str(c["invariant"]), c["name"], "yes" if c["held"] else "NO", c.get("detail") or ""]
                       for c in checks]))
    asym = f.get("asymmetries") or []
    out += [Block("p", text="Remaining asymmetries between arms:"),
            _table(("arm", "params", "hidden", "compute (s)", "s/trial", "lost and rerun", "diverged", "pruned"),
                   [[str(a["arm"]), _fmt(a["n_params"]), _fmt(a["hidden"]), _fmt(a["total_seconds"], 2),
                     _fmt(a["mean_trial_seconds"], 2), _fmt(a["lost_and_rerun"]), _fmt(a["diverged"]),
                     _fmt(a["pruned"])] for a in asym])]
    return out


def provenance_line(doc: dict[str, Any]) -> str:
    p = doc.get("provenance") or {}
    if not p:
        return "Provenance not recorded (a report document from an older bench)."
    commit = f" (commit {p['git_commit']})" if p.get("git_commit") else ""
    return (f"Generated {p.get('date')} by bench {p.get('bench_version')}{commit} on {p.get('host')} "
            f"({p.get('devices')}); Python {p.get('python')}, torch {p.get('torch')}, Optuna {p.get('optuna')}, "
            f"SQLAlchemy {p.get('sqlalchemy')}.")


def _provenance(doc: dict[str, Any], figs: set[str], have_trials: bool) -> list[Block]:
    rows = [["experiment", str(doc.get("experiment"))], ["spec hash", str(doc.get("spec_hash"))],
            ["bench version", str(doc.get("bench_version"))],
            ["storage", hide_password(str(doc.get("storage")))], ["complete", _fmt(doc.get("complete"))],
            ["trivial loss", _fmt(doc.get("trivial_loss"))]]
    rows += [[f"settings.{k}", _fmt(v)] for k, v in (doc.get("settings") or {}).items()]
    rows += [[f"provenance.{k}", _fmt(v)] for k, v in (doc.get("provenance") or {}).items()]
    return [Block("p", text=provenance_line(doc)), _table(("field", "value"), rows)]


METHODS = (
    "Replicated tuning studies per arm, median over studies: MLCommons AlgoPerf external-tuning rules (Dahl et al. "
    "2023); study vs trial variance: Google Deep Learning Tuning Playbook (Godbole et al. 2023).",
    "Pairwise tests: Welch 1947 (unequal-variance t test); family-wise error: Holm 1979.",
    "Effect size: ratio of geometric means with a t interval; region of practical equivalence: Benavoli et al. 2017.",
    "P(A better): McGraw & Wong 1992 (common-language effect size), Bouthillier et al. 2021 (MLSys); interval by "
    "noncentral t inversion, Steiger & Fouladi 1997.",
    "Intervals for means: Student t (1908). Variance components: one-way random-effects ANOVA (Searle, Casella & "
    "McCulloch 1992). Sample size: noncentral t power (Cohen 1988).",
    "Expected best-of-n for i.i.d. samplers: Dodge et al. 2019 ('Show Your Work'). Tuner optimism: Melis, Dyer & "
    "Blunsom 2018. Importance: PED-ANOVA (Watanabe et al. 2023).",
    "Calibration of every interval, test and the verdict by simulation: benchmarks/calibration.py (README).",
)


def _methods(doc: dict[str, Any], figs: set[str], have_trials: bool) -> list[Block]:
    return [Block("ul", items=METHODS)]


Section = Callable[[dict[str, Any], set[str], bool], list[Block]]
SECTIONS: tuple[tuple[str, str, Section], ...] = (
    ("verdict", "Verdict", _verdict),
    ("best-per-arm", "Best per arm", _arms),
    ("best-of-n", "Tuning curves and budgets", _best_of_n),
    ("test-scores", "Test scores: tuned vs fixed config", _test),
    ("pairwise", "Pairwise comparison", _pairwise),
    ("learning-rate", "Validation {noun} vs learning rate", _lr),
    ("learning-curves", "Learning curves", _curves),
    ("importance", "Hyperparameter importance", _importance),
    ("diagnostics", "Diagnostics", _diagnostics),
    ("fairness", "Fairness audit", _fairness),
    ("provenance", "Provenance", _provenance),
    ("methods", "Methods and citations", _methods),
)


def blocks(doc: dict[str, Any], figs: set[str], have_trials: bool = False) -> list[Block]:
    """The whole report as blocks: title, then every section in order (missing data said in words)."""
    out = [Block("h1", text=f"bench report: {doc.get('experiment')}")]
    for anchor, title, section in SECTIONS:
        out.append(Block("h2", text=title.format(noun=words(doc).noun), anchor=anchor))
        out += section(doc, figs, have_trials)
    return out


# ---------------------------------------------------------------- emitters


_MD_SPECIAL = re.compile(r"([\\\[\]`|])")


def _md_cell(s: str) -> str:
    """Plain text as inert Markdown: "<" neutralises raw HTML and autolinks; escaped brackets make a stored
    `[x](javascript:...)` or `![x](https://...)` plain text, never a link or a remote image; "|" would split a
    table cell; a backtick could open a code span that swallows the rest."""
    return _MD_SPECIAL.sub(r"\\\1", s.replace("&", "&amp;").replace("<", "&lt;")).replace("\n", " ")


def _md_table(header: tuple[str, ...] | list[str], rows: list[list[str]] | tuple[tuple[str, ...], ...]) -> str:
    lines = ["| " + " | ".join(_md_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in rows])


def markdown(doc: dict[str, Any], figs: set[str] | None = None, have_trials: bool = False) -> str:
    """report.md: the same content as index.html; figures are PNG files beside it (fig_<name>.png)."""
    return blocks_markdown(blocks(doc, figs or set(), have_trials))


def blocks_markdown(bs: list[Block]) -> str:
    parts: list[str] = []
    for b in bs:
        text = _md_cell(b.text)
        if b.kind in ("h1", "h2"):
            parts.append(("# " if b.kind == "h1" else "## ") + text)
        elif b.kind == "p":
            parts.append(text)
        elif b.kind == "missing":
            parts.append(f"*{text}*")
        elif b.kind == "ul" and b.hrefs:
            parts.append("\n".join(f"- [{_md_cell(i)}]({h})" for i, h in zip(b.items, b.hrefs, strict=True)))
        elif b.kind == "ul":
            parts.append("\n".join(f"- {_md_cell(i)}" for i in b.items))
        elif b.kind == "table":
            parts.append(_md_table(b.header, b.rows))
        elif b.kind == "fig":
            parts.append(f"![{text}](fig_{b.anchor}.png)")
    return "\n\n".join(parts) + "\n"


CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;max-width:1150px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em;border-bottom:2px solid #ddd;padding-bottom:.3em}
h2{font-size:1.25em;margin-top:2em;border-bottom:1px solid #eee;padding-bottom:.2em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f3f3f3}td.n{text-align:right;font-variant-numeric:tabular-nums}
img{max-width:100%;height:auto}figure{margin:1em 0}
.missing{color:#8a5a00;background:#fff6e0;border-left:4px solid #e0a000;padding:.3em .6em}
.bad{color:#b00000;font-weight:bold}#verdict+p{font-size:1.1em;font-weight:600}
nav a{margin-right:.8em;font-size:.9em}
"""

# No scripts, no external fetches: only inline styles and data: images may load (defence in depth).
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


_NUMERIC = re.compile(r"^[-+\[\]\d., e/]+$")


def _cell_class(cell: str) -> str:
    return ' class="bad"' if cell == "NO" else ' class="n"' if _NUMERIC.match(cell) else ""


def _html_block(b: Block, pngs: dict[str, bytes]) -> str:
    e = html.escape
    if b.kind == "h1":
        return f"<h1>{e(b.text)}</h1>"
    if b.kind == "h2":
        return f'<h2 id="{e(b.anchor)}">{e(b.text)}</h2>'
    if b.kind in ("p", "missing"):
        return f'<p class="{b.kind}">{e(b.text)}</p>'
    if b.kind == "ul" and b.hrefs:
        return "<ul>" + "".join(f'<li><a href="{e(h)}">{e(i)}</a></li>' for i, h in zip(b.items, b.hrefs,
                                                                                      strict=True)) + "</ul>"
    if b.kind == "ul":
        return "<ul>" + "".join(f"<li>{e(i)}</li>" for i in b.items) + "</ul>"
    if b.kind == "table":
        head = "".join(f"<th>{e(h)}</th>" for h in b.header)
        body = "".join("<tr>" + "".join(f"<td{_cell_class(c)}>{e(c)}</td>" for c in r) + "</tr>" for r in b.rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    if b.kind == "fig":
        data = base64.b64encode(pngs[b.anchor]).decode("ascii")
        return f'<figure><img alt="{e(b.text)}" src="data:image/png;base64,{data}"></figure>'
    raise ValueError(f"unknown block kind {b.kind!r}")


def html_page(doc: dict[str, Any], pngs: dict[str, bytes], have_trials: bool = False) -> str:
    """index.html: self-contained (inline CSS, base64 PNGs, no JavaScript); every text is escaped."""
    return page_html(f"bench report: {doc.get('experiment')}",
                     [(a, t.format(noun=words(doc).noun)) for a, t, _ in SECTIONS],
                     blocks(doc, set(pngs), have_trials), pngs)


def page_html(title: str, nav: list[tuple[str, str]], bs: list[Block], pngs: dict[str, bytes]) -> str:
    links = "".join(f'<a href="#{html.escape(a)}">{html.escape(t)}</a>' for a, t in nav)
    body = "\n".join(_html_block(b, pngs) for b in bs)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{html.escape(title)}</title>\n"
            f"<style>{CSS}</style>\n</head>\n<body>\n<nav>{links}</nav>\n{body}\n</body>\n</html>\n")


TRIAL_COLUMNS = ("role", "arm", "study", "number", "state", "value", "counted", "seed", "test_loss", "seconds",
                 "n_params", "hidden", "epochs_run", "params", "lost_reason")


def csv_cell(v: Any) -> Any:
    """A text cell a spreadsheet would run as a formula (=, +, -, @, tab, CR first) gets a leading quote (OWASP);
    numbers stay numbers."""
    if isinstance(v, str) and v[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + v
    return v


def trials_csv(col: Collected) -> str:
    """One row per trial of every role (tune, eval, baseline), including the ones that did not count."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")  # RFC 4180; also quotes a field holding a bare CR
    w.writerow(TRIAL_COLUMNS)
    for t in col.trials:
        row = {**t, "params": json.dumps(_json_safe(t.get("params") or {}), sort_keys=True)}
        w.writerow(["" if row.get(c) is None else csv_cell(row[c]) for c in TRIAL_COLUMNS])
    return buf.getvalue()


def png_bytes(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def write(doc: dict[str, Any], out_dir: Path, collected: Collected | None = None) -> dict[str, Path]:
    """Write every report file into out_dir; returns name -> path. Without `collected` there is no trials.csv
    and no learning-rate figure (they need the per-trial records)."""
    pngs = {name: png_bytes(fig) for name, fig in plots.figures(doc, collected).items()}
    have_trials = collected is not None
    paths: dict[str, Path] = {}
    for name in plots.TITLES:
        p = out_dir / f"fig_{name}.png"
        if name in pngs:
            write_atomic_bytes(p, pngs[name])
            paths[f"fig_{name}"] = p
        else:
            p.unlink(missing_ok=True)  # a stale figure from an earlier report must not be mistaken for this one
    if collected is not None:
        paths["csv"] = out_dir / "trials.csv"
        write_atomic(paths["csv"], trials_csv(collected))
    paths["md"] = out_dir / "report.md"
    write_atomic(paths["md"], markdown(doc, set(pngs), have_trials))
    paths["html"] = out_dir / "index.html"
    write_atomic(paths["html"], html_page(doc, pngs, have_trials))
    paths["json"] = out_dir / "report.json"
    write_atomic(paths["json"], json.dumps(_json_safe(doc), indent=2, sort_keys=False, allow_nan=False) + "\n")
    return {k: paths[k] for k in ("json", "md", "html", "csv", *(f"fig_{n}" for n in plots.TITLES)) if k in paths}
