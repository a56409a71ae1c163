"""The suite report: each member experiment's own report, and the aggregate across tasks (per variant).

Pure document assembly (`suite_doc`) from the members' report documents, figures, and the writer (`write_suite`).
The statistics are bench.report.aggregate's; this module only feeds them and words the result.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

import bench
from bench.report import aggregate
from bench.report.plots import _arm_colors
from bench.report.provenance import report_provenance
from bench.report.render import (
    Block,
    _ci,
    _fmt,
    _json_safe,
    _prob,
    _prob_ci,
    _table,
    blocks_markdown,
    page_html,
    png_bytes,
    write_atomic,
    write_atomic_bytes,
)

ALL = "all"  # the aggregate's key when the suite has no variants


def member_folder(task: str, variant: str | None) -> str:
    """A member's report folder inside the suite's: `reversal`, or `reversal.fixed_width` with variants."""
    return task if variant is None else f"{task}.{variant}"


def task_data(doc: dict[str, Any]) -> dict[str, Any]:
    """What the aggregate needs of one member report: the trivial loss and, per arm, each replicate study's
    re-evaluated test losses over its seeds (diverged seeds already scored as the trivial loss by build)."""
    arms: dict[str, list[list[float]]] = {}
    for a in doc.get("arms") or []:
        s = (doc.get("test") or {}).get(a["label"])
        arms[a["label"]] = [list(ps["test_losses"]) for ps in s["per_study"]] if s else []
    return {"trivial": doc.get("trivial_loss"), "arms": arms}


def suite_doc(name: str, members: list[dict[str, Any]], alpha: float, min_effect: float) -> dict[str, Any]:
    """The suite document (suite.json). members: [{"experiment", "task", "variant", "doc", "folder"}] in file order,
    where doc is the member's report.json document."""
    rows = []
    for m in members:
        d, v = m["doc"], m["doc"].get("verdict") or {}
        rows.append({"experiment": m["experiment"], "task": m["task"], "variant": m["variant"],
                     "complete": bool(d.get("complete")), "missing": list(d.get("missing") or []),
                     "report": f"{m['folder']}/index.html", "spec_hash": d.get("spec_hash"),
                     "trivial_loss": d.get("trivial_loss"), "verdict": v.get("tuned_text") or v.get("text"),
                     "fixed_verdict": v.get("fixed_text"), "winner": v.get("winner"),
                     "groups": ((d.get("comparisons") or {}).get("test") or {}).get("groups")})
    variants: dict[str, dict[str, Any] | None] = {}
    notes: dict[str, str] = {}
    for key in dict.fromkeys(ALL if m["variant"] is None else m["variant"] for m in members):
        group = [m for m in members if (ALL if m["variant"] is None else m["variant"]) == key]
        tasks = {m["task"]: task_data(m["doc"]) for m in group}
        ready = {t: x for t, x in tasks.items() if any(x["arms"].values())}
        if len(ready) < 2:
            variants[key] = None
            notes[key] = (f"{len(ready)} of {len(tasks)} tasks have re-evaluated test scores so far: the aggregate "
                          "needs at least 2")
            continue
        variants[key] = aggregate.aggregate(ready, alpha=alpha, min_effect=min_effect)
        if len(ready) < len(tasks):
            notes[key] = (f"only {len(ready)} of {len(tasks)} tasks have re-evaluated test scores so far "
                          f"({', '.join(t for t in tasks if t not in ready)} missing)")
    return {"suite": name, "bench_version": bench.__version__, "complete": all(r["complete"] for r in rows),
            "tasks": list(dict.fromkeys(m["task"] for m in members)),
            "variants": [k for k in variants if k != ALL], "members": rows, "aggregate": variants, "notes": notes,
            "verdict": _verdict(variants, notes), "provenance": report_provenance()}


def _verdict(variants: dict[str, dict[str, Any] | None], notes: dict[str, str]) -> dict[str, Any]:
    parts, winners = [], {}
    for key, agg in variants.items():
        text = agg["verdict"]["text"] if agg else f"no aggregate yet ({notes.get(key, 'no data')})"
        parts.append(text if key == ALL else f"{key}: {text}")
        winners[key] = agg["verdict"]["winner"] if agg else None
    return {"text": " ".join(p if p.endswith(".") else p + "." for p in parts), "winners": winners}


# ---------------------------------------------------------------- figures


def profiles_figure(agg: dict[str, Any], title: str) -> Figure:
    """Performance profiles (Agarwal et al. 2021): fraction of runs above each normalised score, with the
    stratified-bootstrap band."""
    prof = agg["profiles"]
    labels = list(prof["arms"])
    colors = _arm_colors(labels)
    fig = Figure(figsize=(6.4, 4.2), layout="constrained")
    ax = fig.subplots()
    tau = np.asarray(prof["tau"], dtype=float)
    for label in labels:
        a = prof["arms"][label]
        ax.plot(tau, a["fraction"], color=colors[label], label=label)
        ax.fill_between(tau, a["lo"], a["hi"], color=colors[label], alpha=0.15, linewidth=0)
    ax.set(xlabel="normalised score τ (1 = the task's best study, 0 = trivial loss)",
           ylabel="fraction of runs with score > τ", ylim=(-0.02, 1.02))
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.suptitle(title)
    return fig


def iqm_figure(agg: dict[str, Any], title: str) -> Figure:
    """Interquartile mean and median of normalised scores per arm with 95% stratified-bootstrap intervals."""
    labels = list(agg["iqm"])
    fig = Figure(figsize=(6.4, 0.5 * len(labels) + 2.0), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    colors = _arm_colors(labels)
    for ax, key in zip(axes, ("iqm", "median"), strict=True):
        for i, label in enumerate(labels):
            x = agg[key][label]
            if x["value"] is None:
                continue
            lo, hi = x["ci"] or (x["value"], x["value"])
            ax.errorbar([x["value"]], [i], xerr=[[x["value"] - lo], [hi - x["value"]]], fmt="o", capsize=4,
                        color=colors[label])
        ax.set(xlabel=f"{key.upper() if key == 'iqm' else key} normalised score")
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(range(len(labels)), labels)
    axes[0].invert_yaxis()
    fig.suptitle(title)
    return fig


def titles(doc: dict[str, Any]) -> dict[str, str]:
    """Figure name -> title, for every variant whose aggregate exists."""
    out: dict[str, str] = {}
    for key, agg in doc["aggregate"].items():
        if agg is not None:
            where = "" if key == ALL else f" ({key})"
            out[f"iqm_{key}"] = f"Aggregate over tasks{where}: IQM and median, 95% CIs"
            out[f"profiles_{key}"] = f"Performance profiles{where}"
    return out


def figures(doc: dict[str, Any]) -> dict[str, Figure]:
    out: dict[str, Figure] = {}
    for name, title in titles(doc).items():
        kind, key = name.split("_", 1)
        agg = doc["aggregate"][key]
        out[name] = (iqm_figure if kind == "iqm" else profiles_figure)(agg, title)
    return out


# ---------------------------------------------------------------- blocks


def _aggregate_blocks(key: str, agg: dict[str, Any] | None, note: str | None, figs: dict[str, str]
                      ) -> list[Block]:
    out = [Block("h2", text="Across tasks" + ("" if key == ALL else f": {key}"), anchor=f"aggregate-{key}")]
    if note:
        out.append(Block("missing", text=note))
    if agg is None:
        return out
    out.append(Block("p", text=agg["verdict"]["text"]))
    ranks = agg.get("ranks") or {}
    avg = ranks.get("average") or {}
    tasks = list(agg.get("normalised") or {})
    header = ["arm", "IQM", "IQM 95% CI", "median", "median 95% CI", "avg rank",
              *(f"norm. {t}" for t in tasks)]
    rows = []
    for label in agg["iqm"]:
        i, m = agg["iqm"][label], agg["median"][label]
        rows.append([label, _fmt(i["value"], 3), _ci(i["ci"], 3), _fmt(m["value"], 3), _ci(m["ci"], 3),
                     _fmt(avg.get(label), 3), *(_fmt(agg["normalised"][t].get(label), 3) for t in tasks)])
    out.append(_table(header, rows))
    for name, title in figs.items():
        if name in (f"iqm_{key}", f"profiles_{key}"):
            out.append(Block("fig", text=title, anchor=name))
    out.append(Block("p", text="Pairs, fixed effect over these tasks (Welch per task, combined; Holm over pairs):"))
    out.append(_table(("A", "B", "loss ratio A/B", "95% CI", "p (Holm)", "decision", "P(A better) avg", "95% CI"),
                      _pair_rows(agg)))
    if ranks:
        out.append(Block("p", text=_ranks_text(ranks)))
    for d in agg.get("disagreements") or []:
        out.append(Block("p", text=f"Tasks disagree: {d['a']} is better than {d['b']} on "
                                   f"{', '.join(d['a_better_on'])}, but worse on {', '.join(d['b_better_on'])}."))
    best = agg.get("best_by_task") or {}
    if best:
        out.append(Block("ul", items=tuple(f"{t}: best {', '.join(v) if isinstance(v, list) else v}"
                                           for t, v in best.items())))
    return out


def _pair_rows(agg: dict[str, Any]) -> list[list[str]]:
    pi = {(p["a"], p["b"]): p for p in agg.get("p_improvement") or []}
    rows = []
    for p in agg.get("pairs") or []:
        imp = pi.get((p["a"], p["b"]), {})
        rows.append([p["a"], p["b"], _fmt(p.get("ratio"), 3), _ci(p.get("ratio_ci"), 3), _prob(p.get("p_holm")),
                     str(p.get("decision")), _prob(imp.get("p")), _prob_ci(imp.get("ci"))])
    return rows


def _ranks_text(ranks: dict[str, Any]) -> str:
    parts = [f"Average ranks over {ranks.get('n_tasks')} tasks (Demšar 2006): "
             + ", ".join(f"{k} {_fmt(v, 2)}" for k, v in (ranks.get("average") or {}).items()) + "."]
    if ranks.get("p") is not None:
        parts.append(f"Friedman test, {ranks.get('p_method') or 'permutation'} {_p_is(ranks['p'])} "
                     f"(Iman-Davenport F: {_p_is(ranks.get('iman_davenport_p'))}); Nemenyi critical difference "
                     f"{_fmt(ranks.get('cd'), 3)}.")
    if ranks.get("note"):
        note = str(ranks["note"])
        parts.append(note[:1].upper() + note[1:] + ("" if note.endswith(".") else "."))
    return " ".join(parts)


def _p_is(p: float | None) -> str:
    """`p = 0.019`, or `p < 0.001` (never `p = < 0.001`)."""
    shown = _prob(p)
    return f"p {shown}" if shown[:1] in "<>" else f"p = {shown}"


def _members_blocks(doc: dict[str, Any]) -> list[Block]:
    rows = [[m["experiment"], m["task"], m["variant"] or "-", "yes" if m["complete"] else "no", m["verdict"] or "-"]
            for m in doc["members"]]
    return [Block("h2", text="Member experiments", anchor="members"),
            _table(("experiment", "task", "variant", "complete", "tuned verdict"), rows),
            Block("ul", items=tuple(f"{m['experiment']}: full report" for m in doc["members"]),
                  hrefs=tuple(m["report"] for m in doc["members"]))]


def _methods(doc: dict[str, Any]) -> list[Block]:
    seen: dict[str, str] = {}
    for agg in doc["aggregate"].values():
        for m in (agg or {}).get("methods") or []:
            seen.setdefault(m["name"], m["citation"])
    items = tuple(f"{k}: {v}" for k, v in seen.items())
    items += ("Each member experiment: the methods of its own report (linked above).",
              "Calibration of the aggregate verdict by simulation: benchmarks/calibration.py --suite-only (README).")
    return [Block("h2", text="Methods and citations", anchor="methods"), Block("ul", items=items)]


def blocks(doc: dict[str, Any], figs: dict[str, str]) -> list[Block]:
    """figs: the figures drawn (name -> title)."""
    out = [Block("h1", text=f"bench suite report: {doc['suite']}"),
           Block("h2", text="Verdict", anchor="verdict"), Block("p", text=doc["verdict"]["text"])]
    incomplete = [m["experiment"] for m in doc["members"] if not m["complete"]]
    if incomplete:
        out.append(Block("missing", text=f"incomplete: {', '.join(incomplete)} (the figures are of a run in "
                                         "progress)"))
    for key, agg in doc["aggregate"].items():
        out += _aggregate_blocks(key, agg, doc["notes"].get(key), figs)
    return out + _members_blocks(doc) + _methods(doc)


def _nav(doc: dict[str, Any]) -> list[tuple[str, str]]:
    return ([("verdict", "Verdict")] + [(f"aggregate-{k}", "Across tasks" + ("" if k == ALL else f": {k}"))
                                         for k in doc["aggregate"]]
            + [("members", "Member experiments"), ("methods", "Methods")])


def write_suite(doc: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """suite.json, suite.md (+ fig_*.png) and index.html in the suite's report folder."""
    out_dir.mkdir(parents=True, exist_ok=True)
    pngs = {name: png_bytes(fig) for name, fig in figures(doc).items()}
    paths: dict[str, Path] = {}
    for name, data in pngs.items():
        paths[f"fig_{name}"] = out_dir / f"fig_{name}.png"
        write_atomic_bytes(paths[f"fig_{name}"], data)
    for stale in out_dir.glob("fig_*.png"):
        if stale.stem[len("fig_"):] not in pngs:
            stale.unlink()
    bs = blocks(doc, {k: v for k, v in titles(doc).items() if k in pngs})
    paths["md"] = out_dir / "suite.md"
    write_atomic(paths["md"], blocks_markdown(bs))
    paths["html"] = out_dir / "index.html"
    write_atomic(paths["html"], page_html(f"bench suite report: {doc['suite']}", _nav(doc), bs, pngs))
    paths["json"] = out_dir / "suite.json"
    write_atomic(paths["json"], json.dumps(_json_safe(doc), indent=2, allow_nan=False) + "\n")
    return {k: paths[k] for k in ("json", "md", "html", *sorted(p for p in paths if p.startswith("fig_")))}

