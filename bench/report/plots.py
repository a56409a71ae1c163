"""Matplotlib figures of the report document (object-oriented API, Agg only); never writes files."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, NullFormatter

from bench.report.orientation import words

if TYPE_CHECKING:
    from bench.report.collect import Collected

# Figure name -> title ({noun}: "loss", or a maximized metric's name; see title()); the order is the order of the
# report sections.
TITLES = {
    "best_of_n": "Best validation {noun} so far, per arm (median over replicate studies)",
    "test_scores": "Test {noun} over fresh seeds: tuned vs fixed and transferred configs",
    "lr": "Validation {noun} vs learning rate",
    "learning_curves": "Learning curve of each arm's best trial",
    "importance": "Hyperparameter importance",
}
TUNED, FIXED, TRANSFER, DIVERGED = "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728"


def title(name: str, doc: dict[str, Any]) -> str:
    """A figure's title in the document's terms: a loss, or a maximized metric with "(higher is better)"."""
    w = words(doc)
    return TITLES[name].format(noun=w.noun) + ("" if w.sign == 1 else f" ({w.better})")


def _label(doc: dict[str, Any], what: str) -> str:
    """An axis label naming the metric, e.g. "validation loss" or "test accuracy" (the title says which way is
    better)."""
    return f"{what} {words(doc).noun}"


def _arm_colors(labels: list[str]) -> dict[str, Any]:
    cmap = matplotlib.colormaps["viridis"]
    return {d: cmap(i / max(1, len(labels) - 1) * 0.85) for i, d in enumerate(labels)}


def _log_if_wide(ax: Axes, values: list[float], axis: str = "y") -> None:
    """Log scale where positive values span more than a decade (tuned losses of 0.003 beside a trivial 2.3 sit on
    the floor of a linear axis)."""
    v = [x for x in values if isinstance(x, (int, float)) and math.isfinite(x) and x > 0]
    if v and max(v) / min(v) > 10:
        (ax.set_yscale if axis == "y" else ax.set_xscale)("log")


def _trivial(ax: Axes, doc: dict[str, Any], horizontal: bool = True) -> None:
    """The input-independent loss: a model that learned nothing scores this, so curves should sit below it."""
    t = doc.get("trivial_loss")
    if isinstance(t, (int, float)) and math.isfinite(t):
        ax.axhline(t, color="grey", linestyle="--", linewidth=1, label=f"trivial loss {t:.3g}")


def _finite(xs: list[Any] | None) -> np.ndarray:
    """Floats with None / non-finite entries as NaN (matplotlib leaves gaps there)."""
    return np.array([x if isinstance(x, (int, float)) and math.isfinite(x) else np.nan for x in xs or []], float)


def best_of_n(doc: dict[str, Any]) -> Figure | None:
    """Per arm: median best-so-far validation loss over replicate studies (band: their range), against trials in
    trial order and against cumulative compute seconds."""
    curves = {k: c for k, c in (doc.get("tuning") or {}).items() if c}
    if not curves:
        return None
    colors = _arm_colors(list(curves))
    fig = Figure(figsize=(11, 4), layout="constrained")
    ax_n, ax_s = fig.subplots(1, 2, sharey=True)
    seen: list[float] = []
    for label, c in curves.items():
        med, low, high = _finite(c["median"]), _finite(c["low"]), _finite(c["high"])
        seen += [*low.tolist(), *high.tolist()]
        n = np.array(c["n"], float)
        ax_n.plot(n, med, marker="o", markersize=3, color=colors[label], label=label)
        ax_n.fill_between(n, low, high, color=colors[label], alpha=0.2, linewidth=0)
        secs = _finite(c.get("median_seconds"))
        if secs.size == med.size:
            ax_s.plot(secs, med, color=colors[label], label=label)
        if c.get("expected_best_of_n"):
            e = c["expected_best_of_n"]
            ax_n.plot(np.arange(1, len(e["mean"]) + 1), _finite(e["mean"]), linestyle=":", color=colors[label])
    for ax in (ax_n, ax_s):
        _trivial(ax, doc)
        ax.grid(alpha=0.3)
    _log_if_wide(ax_n, seen + [doc.get("trivial_loss") or math.nan])
    ax_n.set(xlabel="trials (in trial order)", ylabel=f"best {_label(doc, 'validation')} so far (median; band: "
             "min-max)", title="vs trials")
    ax_n.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_s.set(xlabel="cumulative tuning compute per study (seconds, median)", title="vs compute")
    ax_n.legend(fontsize="small")
    fig.suptitle(title("best_of_n", doc))
    return fig


def test_scores(doc: dict[str, Any]) -> Figure | None:
    """Test loss per arm: one point per seed (tuned: one column per replicate study), and the geometric mean with
    its 95% interval; tuned, fixed and transferred configs side by side."""
    groups = (("test", "tuned (each study's best config)", TUNED, -0.25),
              ("baseline", "fixed config", FIXED, 0.0), ("transfer", "transferred config", TRANSFER, 0.25))
    labels = [a["label"] for a in doc.get("arms") or []]
    have = [k for k in labels if any((doc.get(key) or {}).get(k) for key, *_ in groups)]
    if not have:
        return None
    fig = Figure(figsize=(max(5.0, 1.8 * len(have) + 3), 4.2), layout="constrained")
    ax = fig.subplots()
    rng = np.random.default_rng(0)  # jitter only, so the same document always draws the same picture
    seen: list[float] = []
    for key, label, color, dx in groups:
        labelled = False
        for i, arm in enumerate(have):
            s = (doc.get(key) or {}).get(arm)
            if not s:
                continue
            k = max(1, len(s["per_study"]))
            for j, st in enumerate(s["per_study"]):
                y = _finite(st["test_losses"])
                seen += y.tolist()
                x = i + dx + (j - (k - 1) / 2) * 0.06
                ax.scatter(x + rng.uniform(-0.015, 0.015, y.size), y, s=12, color=color, alpha=0.55,
                           label=None if labelled else label)
                labelled = True
            if s.get("geo_mean_ci"):
                lo, hi = s["geo_mean_ci"]
                m = s["geo_mean"]
                ax.errorbar([i + dx], [m], yerr=[[m - lo], [hi - m]], fmt="D", color=color, capsize=5,
                            markersize=6, markeredgecolor="black")
    _trivial(ax, doc)
    _log_if_wide(ax, seen + [doc.get("trivial_loss") or math.nan])
    ax.set_xticks(range(len(have)), have)
    ax.set(ylabel=f"{_label(doc, 'test')} (points: seeds; diamond: geo-mean, 95% CI)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize="small")
    fig.suptitle(title("test_scores", doc))
    return fig


def lr_scatter(doc: dict[str, Any], col: Collected | None) -> Figure | None:
    """Tuning trials' validation score against their learning rate, one panel per arm (log x); diverged as ×."""
    space = {p.name: p for p in col.spec.search_space} if col is not None else {}
    if col is None or "lr" not in space:
        return None
    trials = [t for t in col.trials if t["role"] == "tune" and t["counted"]
              and isinstance((t["params"] or {}).get("lr"), (int, float))]
    if not trials:
        return None
    lr = space["lr"]
    arms = [a.label for a in col.spec.arms if any(t["arm"] == a.label for t in trials)]
    finite = [t["value"] for t in trials if t["value"] is not None and t["state"] == "complete"]
    pruned = sum(t["state"] == "pruned" for t in trials)
    top = max(finite) if finite else 1.0
    bottom = min(finite) if finite else 0.0
    # Diverged trials have no score: drawn in a band beyond the worst (above a loss, below a maximized score).
    y_div = top + 0.08 * ((top - bottom) or 1.0) if words(doc).sign == 1 else bottom - 0.08 * ((top - bottom) or 1.0)
    ncols = min(len(arms), 4)
    nrows = math.ceil(len(arms) / ncols)
    fig = Figure(figsize=(3.6 * ncols + 1, 3.4 * nrows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, sharey=True, squeeze=False)).ravel()
    for ax, d in zip(axes, arms, strict=False):
        mine = [t for t in trials if t["arm"] == d]
        ok = [t for t in mine if t["state"] == "complete" and t["value"] is not None]
        div = [t for t in mine if t["state"] == "diverged"]
        ax.scatter([t["params"]["lr"] for t in ok], [t["value"] for t in ok], s=16, color=TUNED, label="trial")
        if div:
            ax.scatter([t["params"]["lr"] for t in div], [y_div] * len(div), marker="x", s=30, color=DIVERGED,
                       label="diverged")
        _trivial(ax, doc)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels collide on a short log range
        if lr.low is not None and lr.high is not None and 0 < lr.low < lr.high:
            ax.set_xlim(float(lr.low) / 1.15, float(lr.high) * 1.15)  # the whole search range, so bounds show
        ax.set(title=d, xlabel="learning rate (log; x-range = search range)")
        ax.grid(alpha=0.3)
    _log_if_wide(axes[0], finite + [y_div])
    for ax in axes[len(arms):]:
        ax.set_visible(False)
    axes[0].set_ylabel(_label(doc, "validation"))
    axes[0].legend(fontsize="small")
    fig.suptitle(title("lr", doc) + (f" ({pruned} pruned trials not shown)" if pruned else ""))
    return fig


def learning_curves(doc: dict[str, Any]) -> Figure | None:
    """Validation score per epoch of each arm's best tuning trial."""
    arms = [a for a in doc.get("arms") or [] if a.get("best_val_losses")]
    if not arms:
        return None
    colors = _arm_colors([a["label"] for a in doc["arms"]])
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.subplots()
    seen: list[float] = []
    for a in arms:
        y = _finite(a["best_val_losses"])
        seen += y.tolist()
        ax.plot(np.arange(1, y.size + 1), y, marker="o", markersize=4, color=colors[a["label"]],
                label=f"{a['label']} (study {a.get('best_study')}, trial {a.get('best_trial')})")
    _trivial(ax, doc)
    _log_if_wide(ax, seen + [doc.get("trivial_loss") or math.nan])
    ax.set(xlabel="epoch", ylabel=_label(doc, "validation"))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.suptitle(title("learning_curves", doc))
    return fig


def importance(doc: dict[str, Any]) -> Figure | None:
    """Grouped horizontal bars: importance of each hyperparameter, one bar per arm."""
    imp = {d: v for d, v in (doc.get("importance") or {}).items() if v}
    if not imp:
        return None
    names = sorted({p for v in imp.values() for p in v})
    arm_labels = list(imp)
    colors = _arm_colors(arm_labels)
    height = 0.8 / len(arm_labels)
    fig = Figure(figsize=(8, 1.6 + 0.45 * len(names) * max(1.0, len(arm_labels) / 2)), layout="constrained")
    ax = fig.subplots()
    y = np.arange(len(names), dtype=float)
    for k, d in enumerate(arm_labels):
        ax.barh(y + (k - (len(arm_labels) - 1) / 2) * height, [imp[d].get(p, 0.0) for p in names], height=height,
                color=colors[d], label=d)
    ax.set_yticks(y, [n.replace("$", r"\$") for n in names])  # names come from storage: no mathtext
    ax.invert_yaxis()
    ax.set(xlabel="importance (PED-ANOVA, fraction)", xlim=(0, 1.05))
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle(title("importance", doc))
    return fig


def figures(doc: dict[str, Any], col: Collected | None = None) -> dict[str, Figure]:
    """Every figure that has data, in report order (name -> Figure)."""
    made = {"best_of_n": best_of_n(doc), "test_scores": test_scores(doc), "lr": lr_scatter(doc, col),
            "learning_curves": learning_curves(doc), "importance": importance(doc)}
    return {k: f for k, f in made.items() if f is not None}
