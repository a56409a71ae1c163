"""A trainer with no PyTorch at all: logistic regression by gradient descent in pure NumPy, on two interleaved
half-moons it generates. The scientific hyperparameter is the feature map (linear vs quadratic features)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from bench.trainer import Report, Result  # plain data and a Protocol: no torch, no Optuna

Array = npt.NDArray[np.float64]


def make_data(n: int, seed: int = 0) -> tuple[Array, Array]:
    """Two noisy half-moons in 2-D, labels 0/1 (a linear boundary gets ~85%, a curved one more)."""
    rng = np.random.default_rng(seed)
    t = rng.uniform(0, math.pi, n)
    label = rng.integers(0, 2, n)
    x = np.where(label[:, None] == 0, np.c_[np.cos(t), np.sin(t)], np.c_[1 - np.cos(t), 0.5 - np.sin(t)])
    return x + rng.normal(0, 0.25, x.shape), label.astype(np.float64)


def features(x: Array, kind: str) -> Array:
    if kind == "linear":
        return np.c_[np.ones(len(x)), x]
    if kind == "quadratic":
        a, b = x[:, 0], x[:, 1]
        return np.c_[np.ones(len(x)), x, a * a, a * b, b * b, a * a * a, b * b * b]
    raise ValueError(f"unknown feature map {kind!r}")


def _scores(w: Array, f: Array, y: Array) -> tuple[float, float]:
    """(log loss, accuracy) of weights w on features f and labels y."""
    p = 1 / (1 + np.exp(-np.clip(f @ w, -30, 30)))
    eps = 1e-12
    return (float(-np.mean(y * np.log(p + eps) + (1 - y) * np.log(1 - p + eps))),
            float(np.mean((p > 0.5) == (y > 0.5))))


def fit(params: dict[str, Any], arm: dict[str, Any], seed: int, report: Report) -> Result:
    """Full-batch gradient descent with L2; reports the metric (params["metric"]: log_loss or accuracy) per step.
    Returns the best validation score over the steps; with the test score of those weights when bench asks."""
    x, y = make_data(900)
    f = features(x, arm["features"])
    mu, sd = f[:600].mean(0), f[:600].std(0)
    sd[0], mu[0] = 1.0, 0.0  # keep the bias column
    f = (f - mu) / sd
    (ftr, ytr), (fva, yva), (fte, yte) = (f[:600], y[:600]), (f[600:750], y[600:750]), (f[750:], y[750:])
    rng = np.random.default_rng(seed)
    w = rng.normal(0, 0.1, f.shape[1])
    accuracy = params.get("metric", "log_loss") == "accuracy"
    best, best_w = (-math.inf if accuracy else math.inf), w
    for step in range(int(params["steps"])):
        for _ in range(10):
            p = 1 / (1 + np.exp(-np.clip(ftr @ w, -30, 30)))
            w = w - params["lr"] * (ftr.T @ (p - ytr) / len(ytr) + params["l2"] * w)
        loss, acc = _scores(w, fva, yva)
        val = acc if accuracy else loss
        report(step, val)
        if (val > best) if accuracy else (val < best):
            best, best_w = val, w.copy()
    if not report.wants_test:
        return Result(value=best, n_params=int(w.size))  # a plain `return best` works too; n_params is for the audit
    test_loss, test_acc = _scores(best_w, fte, yte)  # re-evaluation: the best step's weights on the test split
    return Result(value=best, test=test_acc if accuracy else test_loss, n_params=int(w.size))
