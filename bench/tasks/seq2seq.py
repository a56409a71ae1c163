"""Synthetic fixed-length sequence-to-sequence task (reverse / sort / copy), generated from the data seed."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from bench.spec import SpecError
from bench.tasks.base import (
    IGNORE_INDEX,
    Split,
    Task,
    data_rng,
    require_memory,
    require_range,
    resolve_params,
    trivial_loss,
)

KINDS = ("reverse", "sort", "copy")
# Small enough that a 1-2 layer LSTM with 64 units clearly beats the trivial loss in a few CPU epochs.
DEFAULTS: dict[str, Any] = {
    "kind": "reverse",  # what the output sequence is: the input reversed, sorted or copied
    "vocab": 8,  # distinct symbols (separator and blank tokens come on top)
    "length": 6,  # symbols per input sequence = output positions
    "n_train": 2000,
    "n_val": 500,
    "n_test": 500,
}
_MAX_EXAMPLES = 10_000_000  # a guard against a typo that would fill memory
_PEAK_COPIES = 3  # numpy x, its int64 copy and the per-split clones are alive together while building


def check_params(**params: Any) -> dict[str, Any]:
    """Validated parameters (defaults filled in); SpecError("task.<name>: ...") on the first bad one."""
    p = resolve_params(params, DEFAULTS)
    if p["kind"] not in KINDS:
        raise SpecError(f"task.kind: {p['kind']!r} is not one of: {', '.join(KINDS)}")
    require_range("vocab", p["vocab"], 2, 100_000)
    require_range("length", p["length"], 1, 10_000)
    for name in ("n_train", "n_val", "n_test"):
        require_range(name, p[name], 1, _MAX_EXAMPLES)
    total = p["n_train"] + p["n_val"] + p["n_test"]
    # Splits are disjoint by construction (distinct input sequences), so there must be enough of them.
    if total > p["vocab"] ** p["length"]:
        raise SpecError(f"task.n_train: n_train + n_val + n_test = {total} exceeds the "
                        f"vocab ** length = {p['vocab'] ** p['length']} distinct input sequences")
    elements = 2 * total * (2 * p["length"] + 1)  # x and y, int64
    require_memory("n_train", p["n_train"], elements * 8 * _PEAK_COPIES,
                   f"{total} sequences of {2 * p['length'] + 1} tokens (x and y: {elements:,} elements)")
    return p


def make_task(data_seed: int, **params: Any) -> Task:
    """Inputs: `length` symbols, a separator, `length` blanks; targets: the output sequence on the blanks."""
    p = check_params(**params)
    vocab, length = p["vocab"], p["length"]
    sizes = (p["n_train"], p["n_val"], p["n_test"])
    symbols = _distinct_sequences(data_rng(data_seed), sum(sizes), vocab, length)
    out = {"reverse": symbols[:, ::-1], "sort": np.sort(symbols, axis=1), "copy": symbols}[p["kind"]]
    sep, blank = vocab, vocab + 1
    n = symbols.shape[0]
    x = np.concatenate([symbols, np.full((n, 1), sep), np.full((n, length), blank)], axis=1)
    y = np.concatenate([np.full((n, length + 1), IGNORE_INDEX), out], axis=1)
    xt, yt = torch.from_numpy(x.astype(np.int64)), torch.from_numpy(y.astype(np.int64))
    bounds = np.cumsum((0, *sizes))
    ranges = zip(bounds[:-1], bounds[1:], strict=True)
    train, val, test = (Split(xt[a:b].clone(), yt[a:b].clone()) for a, b in ranges)
    return Task(
        name="seq2seq",
        inputs="tokens",
        input_size=vocab + 2,
        n_classes=vocab,
        target="per_step",
        train=train,
        val=val,
        test=test,
        # Per position: for "sort" the first output is usually a small symbol even without seeing the input.
        trivial_loss=trivial_loss(train.y, val.y, vocab, per_position=True),
        metric_note="cross-entropy per output symbol (nats)",
        info={**p, "seq_len": 2 * length + 1, "n_classes": vocab, "data_seed": data_seed},
    )


def _distinct_sequences(rng: np.random.Generator, n: int, vocab: int, length: int) -> np.ndarray:
    """(n, length) int64 array of distinct rows with symbols in [0, vocab), in random order."""
    space = vocab**length
    if space < 2**62:
        # Sample distinct codes, then write each in base `vocab`: exact and fast even for huge spaces.
        codes = rng.choice(space, size=n, replace=False)
        powers = vocab ** np.arange(length - 1, -1, -1, dtype=np.int64)
        return (codes[:, None] // powers) % vocab
    # The space is so large that repeats are vanishingly rare; drop the odd one and draw again.
    seen: set[bytes] = set()
    rows: list[np.ndarray] = []
    while len(rows) < n:
        for row in rng.integers(0, vocab, size=(n - len(rows), length), dtype=np.int64):
            key = row.tobytes()
            if key not in seen:
                seen.add(key)
                rows.append(row)
    return np.stack(rows)
