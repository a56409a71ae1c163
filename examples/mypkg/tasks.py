"""A user-defined task: read a string of three symbols, then say which symbol occurred most often."""

from __future__ import annotations

import numpy as np
import torch

from bench.spec import SpecError
from bench.tasks.base import Split, Task, trivial_loss

SYMBOLS = 3  # token ids 0, 1, 2; also the classes


def make_task(data_seed: int, n: int = 256, length: int = 12) -> Task:
    """Majority vote: tokens x (N, length) in {0, 1, 2}; label y (N,) = the most frequent symbol (ties: smallest).

    bench calls this with the spec's [task] data_seed plus every other key of [task] as a keyword argument
    (here `n` and `length`), once per process; the Task it returns is shared by every trial and every depth.
    The answer depends on the whole string, so the network has to keep three running counts in its state.

    data_seed: the only source of randomness, so that every depth sees the same data.
    n: training sequences; validation and test get n // 2 each (independent draws).
    length: symbols per sequence.
    """
    # SpecError("task.<field>: ...") makes a bad parameter one clear line from the CLI (exit code 2).
    if n < 2:
        raise SpecError(f"task.n: must be at least 2, got {n}")
    if length < 1:
        raise SpecError(f"task.length: must be at least 1, got {length}")
    rng = np.random.default_rng(data_seed)
    sizes = (n, n // 2, n // 2)
    tokens = rng.integers(0, SYMBOLS, size=(sum(sizes), length))
    counts = np.stack([(tokens == s).sum(axis=1) for s in range(SYMBOLS)], axis=1)
    x = torch.from_numpy(tokens.astype(np.int64))
    y = torch.from_numpy(counts.argmax(axis=1).astype(np.int64))  # argmax picks the smallest symbol on a tie
    bounds = np.cumsum((0, *sizes))
    train, val, test = (Split(x[a:b].clone(), y[a:b].clone()) for a, b in zip(bounds[:-1], bounds[1:], strict=True))
    return Task(
        name="mypkg.majority",
        inputs="tokens",  # integer ids in [0, input_size): the model embeds them
        input_size=SYMBOLS,
        n_classes=SYMBOLS,
        target="last",  # one label per sequence, predicted from the last step
        train=train,
        val=val,
        test=test,
        # The score of a model that ignores its input: train's class frequencies, evaluated on val.
        trivial_loss=trivial_loss(train.y, val.y, SYMBOLS),
        metric_note="cross-entropy per sequence (nats)",
        info={"n": n, "length": length, "data_seed": data_seed,
              "sizes": {"train": len(train), "val": len(val), "test": len(test)}},
    )
