"""Matplotlib figures of the report document (object-oriented API, Agg only); never writes files."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, NullFormatter

if TYPE_CHECKING:
    from bench.report.collect import Collected

# Figure name -> title; the order is the order of the report sections.
TITLES = {
    "best_of_n": "Expected best validation loss after n trials",
    "test_scores": "Test loss over fresh seeds: tuned vs fixed config",
    "lr": "Validation loss vs learning rate",
    "learning_curves": "Learning curve of each depth's best trial",
    "importance": "Hyperparameter importance",
}
TUNED, FIXED, DIVERGED = "#1f77b4", "#ff7f0e", "#d62728"


def _depth_colors(depths: list[int]) -> dict[int, Any]:
    cmap = matplotlib.colormaps["viridis"]
    return {d: cmap(i / max(1, len(depths) - 1) * 0.85) for i, d in enumerate(depths)}


def _trivial(ax: Axes, doc: dict[str, Any], horizontal: bool = True) -> None:
    """The input-independent loss: a model that learned nothing scores this, so curves should sit below it."""
    t = doc.get("trivial_loss")
    if isinstance(t, (int, float)) and math.isfinite(t):
        ax.axhline(t, color="grey", linestyle="--", linewidth=1, label=f"trivial loss {t:.3g}")


def _finite(xs: list[Any] | None) -> np.ndarray:
    """Floats with None / non-finite entries as NaN (matplotlib leaves gaps there)."""
    return np.array([x if isinstance(x, (int, float)) and math.isfinite(x) else np.nan for x in xs or []], float)


def best_of_n(doc: dict[str, Any]) -> Figure | None:
    """Per depth: expected best validation loss vs n trials (±1 std) and vs expected compute seconds."""
    curves = {int(d): c for d, c in (doc.get("evp") or {}).items() if c}
    if not curves:
        return None
    colors = _depth_colors(sorted(curves))
    fig = Figure(figsize=(11, 4), layout="constrained")
    ax_n, ax_s = fig.subplots(1, 2, sharey=True)
    for d, c in sorted(curves.items()):
        mean, std = _finite(c["mean"]), _finite(c["std"])
        for ax, x in ((ax_n, np.array(c["n"], float)), (ax_s, _finite(c.get("seconds")))):
            if x.size != mean.size:
                continue
            ax.plot(x, mean, marker="o", markersize=3, color=colors[d], label=f"depth {d}")
            ax.fill_between(x, mean - std, mean + std, color=colors[d], alpha=0.2, linewidth=0)
    for ax in (ax_n, ax_s):
        _trivial(ax, doc)
        ax.grid(alpha=0.3)
    ax_n.set(xlabel="n trials", ylabel="expected best validation loss (±1 std)", title="vs trials")
    ax_n.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_s.set(xlabel="expected compute (seconds)", title="vs compute")
    ax_n.legend(fontsize="small")
    fig.suptitle(TITLES["best_of_n"])
    return fig


def test_scores(doc: dict[str, Any]) -> Figure | None:
    """Test loss per depth: one point per seed and the mean with its 95% CI, tuned and fixed side by side."""
    groups = (("test", "tuned (best config per depth)", TUNED, -0.18),
              ("baseline", "fixed config", FIXED, 0.18))
    depths = sorted({int(d) for key, *_ in groups for d, s in (doc.get(key) or {}).items()
                     if s and s.get("test_losses")})
    if not depths:
        return None
    fig = Figure(figsize=(max(5.0, 1.6 * len(depths) + 3), 4), layout="constrained")
    ax = fig.subplots()
    rng = np.random.default_rng(0)  # jitter only, so the same document always draws the same picture
    for key, label, color, dx in groups:
        labelled = False
        for i, d in enumerate(depths):
            s = (doc.get(key) or {}).get(str(d))
            if not s or not s.get("test_losses"):
                continue
            y = _finite(s["test_losses"])
            ax.scatter(i + dx + rng.uniform(-0.05, 0.05, y.size), y, s=14, color=color, alpha=0.5,
                       label=None if labelled else label)
            labelled = True
            if "test_mean" in s and s.get("test_ci"):
                lo, hi = s["test_ci"]
                m = s["test_mean"]
                ax.errorbar([i + dx], [m], yerr=[[m - lo], [hi - m]], fmt="D", color=color, capsize=5,
                            markersize=6, markeredgecolor="black")
    _trivial(ax, doc)
    ax.set_xticks(range(len(depths)), [f"depth {d}" for d in depths])
    ax.set(ylabel="test loss (points: seeds; diamond: mean, 95% CI)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize="small")
    fig.suptitle(TITLES["test_scores"])
    return fig


def lr_scatter(doc: dict[str, Any], col: Collected | None) -> Figure | None:
    """Tuning trials' validation loss against their learning rate, one panel per depth (log x); diverged as ×."""
    space = {p.name: p for p in col.spec.search_space} if col is not None else {}
    if col is None or "lr" not in space:
        return None
    trials = [t for t in col.trials if t["role"] == "tune" and t["counted"]
              and isinstance((t["params"] or {}).get("lr"), (int, float))]
    if not trials:
        return None
    lr = space["lr"]
    depths = sorted({t["depth"] for t in trials})
    finite = [t["value"] for t in trials if t["value"] is not None and t["state"] == "complete"]
    top = max(finite) if finite else 1.0
    bottom = min(finite) if finite else 0.0
    y_div = top + 0.08 * ((top - bottom) or 1.0)  # diverged trials have no loss: drawn in a band above the worst
    ncols = min(len(depths), 4)
    nrows = math.ceil(len(depths) / ncols)
    fig = Figure(figsize=(3.6 * ncols + 1, 3.4 * nrows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, sharey=True, squeeze=False)).ravel()
    for ax, d in zip(axes, depths, strict=False):
        mine = [t for t in trials if t["depth"] == d]
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
        ax.set(title=f"depth {d}", xlabel="learning rate (log; x-range = search range)")
        ax.grid(alpha=0.3)
    for ax in axes[len(depths):]:
        ax.set_visible(False)
    axes[0].set_ylabel("validation loss")
    axes[0].legend(fontsize="small")
    fig.suptitle(TITLES["lr"])
    return fig


def learning_curves(doc: dict[str, Any]) -> Figure | None:
    """Validation loss per epoch of each depth's best tuning trial."""
    arms = [a for a in doc.get("arms") or [] if a.get("best_val_losses")]
    if not arms:
        return None
    colors = _depth_colors([a["depth"] for a in doc["arms"]])
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.subplots()
    for a in arms:
        y = _finite(a["best_val_losses"])
        ax.plot(np.arange(1, y.size + 1), y, marker="o", markersize=4, color=colors[a["depth"]],
                label=f"depth {a['depth']} (trial {a.get('best_trial')})")
    _trivial(ax, doc)
    ax.set(xlabel="epoch", ylabel="validation loss")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.suptitle(TITLES["learning_curves"])
    return fig


def importance(doc: dict[str, Any]) -> Figure | None:
    """Grouped horizontal bars: importance of each hyperparameter, one bar per depth."""
    imp = {int(d): v for d, v in (doc.get("importance") or {}).items() if v}
    if not imp:
        return None
    names = sorted({p for v in imp.values() for p in v})
    depths = sorted(imp)
    colors = _depth_colors(depths)
    height = 0.8 / len(depths)
    fig = Figure(figsize=(8, 1.6 + 0.45 * len(names) * max(1.0, len(depths) / 2)), layout="constrained")
    ax = fig.subplots()
    y = np.arange(len(names), dtype=float)
    for k, d in enumerate(depths):
        ax.barh(y + (k - (len(depths) - 1) / 2) * height, [imp[d].get(p, 0.0) for p in names], height=height,
                color=colors[d], label=f"depth {d}")
    ax.set_yticks(y, [n.replace("$", r"\$") for n in names])  # names come from storage: no mathtext
    ax.invert_yaxis()
    ax.set(xlabel="importance (PED-ANOVA, fraction)", xlim=(0, 1.05))
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle(TITLES["importance"])
    return fig


def figures(doc: dict[str, Any], col: Collected | None = None) -> dict[str, Figure]:
    """Every figure that has data, in report order (name -> Figure)."""
    made = {"best_of_n": best_of_n(doc), "test_scores": test_scores(doc), "lr": lr_scatter(doc, col),
            "learning_curves": learning_curves(doc), "importance": importance(doc)}
    return {k: f for k, f in made.items() if f is not None}
