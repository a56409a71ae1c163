"""A user task whose inputs contain inf: every model's loss is NaN, so every trial diverges (test plug-in)."""

from __future__ import annotations

import torch

from bench.tasks.base import Split, Task


def make_task(data_seed: int, n: int = 32) -> Task:
    g = torch.Generator().manual_seed(data_seed)

    def split() -> Split:
        x = torch.randn(n, 5, 3, generator=g)
        x[0, 0, 0] = float("inf")
        return Split(x=x, y=torch.randint(0, 2, (n,), generator=g))

    return Task(name="nan", inputs="features", input_size=3, n_classes=2, target="last", train=split(),
                val=split(), test=split(), trivial_loss=0.693)
