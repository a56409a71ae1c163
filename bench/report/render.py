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

from bench.report import plots

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


def hide_password(url: str) -> str:
    """Belt and braces: the document's URL is already display_url'd, but a report must never show a password."""
    return re.sub(r"(://[^/:@]*:)[^/@]*@", r"\1***@", url)


ARM_COLUMNS = ("depth", "finished", "complete", "pruned", "diverged", "best val loss", "params", "s/trial",
               "best hyperparameters")


def arm_rows(doc: dict[str, Any]) -> list[list[str]]:
    return [[str(a["depth"]), f"{a['n_finished']}/{a['budget']}", *(str(a["by_outcome"][o]) for o in
             ("complete", "pruned", "diverged")), _fmt(a["best_value"]), _fmt(a["n_params"]),
             _fmt(a["mean_trial_seconds"], 2), _params(a["best_params"])] for a in doc["arms"]]


def terminal_table(doc: dict[str, Any]) -> Table:
    """Best per depth for the terminal: numbers only (hyperparameters go below it, see terminal_params)."""
    t = Table(title=f"{doc['experiment']}: best per depth (tuned separately, same search space and budget)")
    test = doc.get("test") or {}
    cols = ("depth", "done", "complete", "pruned", "diverged", "best val", "params", "s/trial", "test (seeds)")
    for c in cols:
        t.add_column(c, justify="right")
    for row, a in zip(arm_rows(doc), doc["arms"], strict=True):
        summary = test.get(str(a["depth"])) or {}
        t.add_row(*row[:-1], _fmt(summary.get("test_mean")))
    return t


def terminal_params(doc: dict[str, Any]) -> list[str]:
    return [f"depth {a['depth']} best: {_params(a['best_params'])}" for a in doc["arms"]]


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


def _table(header: tuple[str, ...] | list[str], rows: list[list[str]]) -> Block:
    return Block("table", header=tuple(header), rows=tuple(tuple(r) for r in rows))


def _fig(name: str, figs: set[str], missing: str) -> Block:
    return Block("fig", text=plots.TITLES[name], anchor=name) if name in figs else Block("missing", text=missing)


def _verdict(doc: dict[str, Any], figs: set[str], have_trials: bool) -> list[Block]:
    v = doc.get("verdict") or {}
    out = [Block("p", text=v.get("text") or "no verdict in this document.")]
    if doc.get("missing"):
        out.append(Block("missing", text="; ".join(doc["missing"])))
    if v.get("tuned_ranking") or v.get("fixed_ranking"):
        out.append(Block("p", text="Ranking by mean test loss (best first): tuned "
                                   f"{' > '.join(map(str, v.get('tuned_ranking') or [])) or '-'}; fixed config "
                                   f"{' > '.join(map(str, v.get('fixed_ranking') or [])) or '-'}."))
    if v.get("caveats"):
        out += [Block("p", text="Caveats:"), Block("ul", items=tuple(v["caveats"]))]
    return out


def _arms(doc: dict[str, Any], figs: set[str], have_trials: bool) -> list[Block]:
    metric = doc.get("metric") or "validation loss"
    trivial = doc.get("trivial_loss")
    words = (f"Each depth was tuned in its own study over the same search space with the same budget; this is the "
             f"best tuning trial of each. Loss: {metric}"
             + (f"; trivial (input-independent) baseline {trivial:.4f} nats = {trivial / math.log(2):.4f} bits."
                if trivial else "."))
    bits = [[str(a["depth"]), _fmt(a.get("best_value_bits"))] for a in doc["arms"]]
    return [Block("p", text=words), _table(ARM_COLUMNS, arm_rows(doc)),
            Block("p", text="Best validation loss in bits (loss / ln 2; bits per character for charlm):"),
            _table(("depth", "best val loss (bits)"), bits)]


def _best_of_n(doc: dict[str, Any], figs: set[str], have_trials: bool) -> list[Block]:
    out = [Block("p", text="Expected best validation loss if only n of the trials had been run (Dodge et al. "
                           "2019), ±1 std; right: against the expected compute of n trials. Diverged trials count "
                           "as the worst loss seen."),
           _fig("best_of_n", figs, "missing: no finished tuning trials yet")]
    if (doc.get("settings") or {}).get("adaptive_sampler"):
        out.append(Block("p", text="Note: the sampler is adaptive (TPE), so trials are not independent draws; the "
                                   "best-of-n estimator assumes i.i.d. trials and is an approximation here."))
    pb = doc.get("prob_best")
    if pb:
        out += [Block("p", text="Bootstrap probability that each depth's best trial is the best at the full budget:"),
                _table(("depth", "P(best)"), [[d, _fmt(p, 3)] for d, p in pb.items()])]
    else:
        out.append(Block("missing", text="missing: P(best) needs finished tuning trials in every depth"))
    return out


SEED_COLUMNS = ("depth", "config", "seeds", "diverged", "mean test loss", "95% CI", "mean val loss")


def _seed_rows(summary: dict[str, Any], tuned: bool) -> list[list[str]]:
    rows = []
    for d, s in summary.items():
        if not s:
            continue
        row = [d, _params(s.get("params")), str(s["n_seeds"]), str(s["n_diverged"]), _fmt(s.get("test_mean")),
               _ci(s.get("test_ci")), _fmt(s.get("val_mean"))]
        if tuned:
            row += [_fmt(s.get("tuning_best_value")), _fmt(s.get("tuner_optimism"), 3)]
        rows.append(row)
    return rows


def _test(doc: dict[str, Any], figs: set[str], have_trials: bool) -> list[Block]:
    out = [Block("p", text="Each depth's best configuration retrained with fresh seeds (tuned) next to the same "
                           "fixed configuration for every depth (the 'everything else held constant' comparison), "
                           "scored on the held-out test split."),
           _fig("test_scores", figs, "missing: no test losses yet (no evaluation or baseline phase finished)")]
    for key, title, tuned in (("test", "Tuned (best config per depth)", True),
                              ("baseline", "Fixed config (baseline)", False)):
        summary = doc.get(key) or {}
        absent = [d for d, s in summary.items() if not s]
        rows = _seed_rows(summary, tuned)
        out.append(Block("p", text=f"{title}:"))
        if rows:
            header = SEED_COLUMNS + (("tuning best val", "tuner optimism (sd)") if tuned else ())
            out.append(_table(header, rows))
        if absent or not summary:
            out.append(Block("missing", text=f"missing: {key} results for depth {', '.join(absent) or '-'} "
                                             "(phase not configured in the spec, or not finished)"))
    out.append(Block("p", text="Tuner optimism: (best tuning value - mean re-evaluated validation loss) / its sd; "
                               "negative means the tuning-time best looked better than the config really is."))
    return out


def _pair_rows(pairs: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for p in pairs:
        sig = "A better" if p.get("significant") else "B better" if p.get("b_significant") else "no"
        mean = [x for x, k in (("A", "meaningful"), ("B", "b_meaningful")) if p.get(k)]
        rows.append([str(p["a"]), str(p["b"]), _fmt(p["p_a_better"], 3), _ci(p.get("ci"), 3), sig,
                     " and ".join(mean) or "no"])
    return rows


def _pairwise(doc: dict[str, Any], figs: set[str], have_trials: bool) -> list[Block]:
    header = ("depth A", "depth B", "P(A better than B)", "95% CI", "significant", "possibly meaningful")
    out = [Block("p", text="P(A better than B): chance that a fresh-seed run of depth A has lower test loss than "
                           "one of depth B (Bouthillier et al. 2021). Significant when the CI excludes 0.5; "
                           "meaningful when it reaches beyond 0.75 (or below 0.25 for B).")]
    for key, title in (("pairwise", "Tuned"), ("baseline_pairwise", "Fixed config")):
        rows = _pair_rows(doc.get(key) or [])
        out.append(Block("p", text=f"{title}:"))
        out.append(_table(header, rows) if rows else
                   Block("missing", text=f"missing: {key} needs test losses of at least two depths"))
    return out


def _lr(doc: dict[str, Any], figs: set[str], have_trials: bool) -> list[Block]:
    why = ("no tuning trial with a learning rate (lr is not in the search space, or none finished)" if have_trials
           else "trial records (the report was rendered without the collected trials)")
    return [_fig("lr", figs, f"missing: {why}")]


def _curves(doc: dict[str, Any], figs: set[str], have_trials: bool) -> list[Block]:
    return [_fig("learning_curves", figs, "missing: no per-epoch validation losses of a best trial yet")]


def _importance(doc: dict[str, Any], figs: set[str], have_trials: bool) -> list[Block]:
    imp = {d: v for d, v in (doc.get("importance") or {}).items() if v}
    if not imp:
        return [Block("missing", text="missing: importance needs at least 3 finished trials with distinct losses "
                                      "per depth")]
    names = sorted({p for v in imp.values() for p in v})
    rows = [[n, *(_fmt(imp[d].get(n), 3) for d in imp)] for n in names]
    return [_fig("importance", figs, "missing: importance figure"),
            _table(("hyperparameter", *(f"depth {d}" for d in imp)), rows)]


def _diagnostics(doc: dict[str, Any], figs: set[str], have_trials: bool) -> list[Block]:
    diag = doc.get("diagnostics") or {}
    if not diag:
        return [Block("missing", text="missing: diagnostics")]
    rows = [[d, _fmt(g.get("divergence_fraction"), 3), _fmt(g.get("still_improving")),
             ", ".join(f"{k} ({v})" for k, v in (g.get("at_bound") or {}).items()) or "-",
             "; ".join(g.get("notes") or []) or "none"] for d, g in diag.items()]
    return [Block("p", text="Is the search adequate? Best values at a bound of the range, divergence, and a "
                            "best-of-n curve still improving all say the depth may be under-tuned."),
            _table(("depth", "diverged fraction", "still improving", "best at a bound", "notes"), rows)]


def _fairness(doc: dict[str, Any], figs: set[str], have_trials: bool) -> list[Block]:
    f = doc.get("fairness") or {}
    checks = f.get("checks") or []
    out = [Block("p", text="Every fairness invariant held." if f.get("all_held") else
                 "NOT every fairness invariant held: see the rows marked NO.")]
    out.append(_table(("invariant", "check", "held", "detail"),
                      [[str(c["invariant"]), c["name"], "yes" if c["held"] else "NO", c.get("detail") or ""]
                       for c in checks]))
    asym = f.get("asymmetries") or []
    out += [Block("p", text="Remaining asymmetries between depths:"),
            _table(("depth", "params", "hidden", "compute (s)", "s/trial", "lost and rerun", "diverged", "pruned"),
                   [[str(a["depth"]), _fmt(a["n_params"]), _fmt(a["hidden"]), _fmt(a["total_seconds"], 2),
                     _fmt(a["mean_trial_seconds"], 2), _fmt(a["lost_and_rerun"]), _fmt(a["diverged"]),
                     _fmt(a["pruned"])] for a in asym])]
    return out


def _provenance(doc: dict[str, Any], figs: set[str], have_trials: bool) -> list[Block]:
    rows = [["experiment", str(doc.get("experiment"))], ["spec hash", str(doc.get("spec_hash"))],
            ["bench version", str(doc.get("bench_version"))],
            ["storage", hide_password(str(doc.get("storage")))], ["complete", _fmt(doc.get("complete"))],
            ["trivial loss", _fmt(doc.get("trivial_loss"))]]
    rows += [[f"settings.{k}", _fmt(v)] for k, v in (doc.get("settings") or {}).items()]
    return [_table(("field", "value"), rows)]


Section = Callable[[dict[str, Any], set[str], bool], list[Block]]
SECTIONS: tuple[tuple[str, str, Section], ...] = (
    ("verdict", "Verdict", _verdict),
    ("best-per-depth", "Best per depth", _arms),
    ("best-of-n", "Best-of-n", _best_of_n),
    ("test-scores", "Test scores: tuned vs fixed config", _test),
    ("pairwise", "Pairwise comparison", _pairwise),
    ("learning-rate", "Validation loss vs learning rate", _lr),
    ("learning-curves", "Learning curves", _curves),
    ("importance", "Hyperparameter importance", _importance),
    ("diagnostics", "Diagnostics", _diagnostics),
    ("fairness", "Fairness audit", _fairness),
    ("provenance", "Provenance", _provenance),
)


def blocks(doc: dict[str, Any], figs: set[str], have_trials: bool = False) -> list[Block]:
    """The whole report as blocks: title, then every section in order (missing data said in words)."""
    out = [Block("h1", text=f"bench report: {doc.get('experiment')}")]
    for anchor, title, section in SECTIONS:
        out.append(Block("h2", text=title, anchor=anchor))
        out += section(doc, figs, have_trials)
    return out


# ---------------------------------------------------------------- emitters


def _md_cell(s: str) -> str:
    # "<" neutralises raw HTML that a Markdown viewer would otherwise render; "|" would split the cell.
    return s.replace("<", "&lt;").replace("|", "\\|").replace("\n", " ")


def _md_table(header: tuple[str, ...] | list[str], rows: list[list[str]] | tuple[tuple[str, ...], ...]) -> str:
    lines = ["| " + " | ".join(_md_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in rows])


def markdown(doc: dict[str, Any], figs: set[str] | None = None, have_trials: bool = False) -> str:
    """report.md: the same content as index.html; figures are PNG files beside it (fig_<name>.png)."""
    parts: list[str] = []
    for b in blocks(doc, figs or set(), have_trials):
        text = _md_cell(b.text)
        if b.kind in ("h1", "h2"):
            parts.append(("# " if b.kind == "h1" else "## ") + text)
        elif b.kind == "p":
            parts.append(text)
        elif b.kind == "missing":
            parts.append(f"*{text}*")
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
    nav = "".join(f'<a href="#{a}">{html.escape(t)}</a>' for a, t, _ in SECTIONS)
    body = "\n".join(_html_block(b, pngs) for b in blocks(doc, set(pngs), have_trials))
    title = html.escape(f"bench report: {doc.get('experiment')}")
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{title}</title>\n"
            f"<style>{CSS}</style>\n</head>\n<body>\n<nav>{nav}</nav>\n{body}\n</body>\n</html>\n")


TRIAL_COLUMNS = ("role", "depth", "number", "state", "value", "counted", "seed", "test_loss", "seconds", "n_params",
                 "hidden", "epochs_run", "params", "lost_reason")


def trials_csv(col: Collected) -> str:
    """One row per trial of every role (tune, eval, baseline), including the ones that did not count."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(TRIAL_COLUMNS)
    for t in col.trials:
        row = {**t, "params": json.dumps(_json_safe(t.get("params") or {}), sort_keys=True)}
        w.writerow(["" if row.get(c) is None else row[c] for c in TRIAL_COLUMNS])
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
