"""A user's own PyTorch model behind bench's trainer contract: an MLP regressor whose width is the scientific
hyperparameter, on data it generates itself. Nothing here imports Optuna; bench.trainer only for Result."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from bench.trainer import Report, Result

N_FEATURES = 8


def make_data(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """y = a smooth nonlinear function of x plus noise, standardised (so predicting the mean scores MSE ~1)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, N_FEATURES, generator=g)
    w = torch.randn(N_FEATURES, generator=g)
    y = torch.sin(x @ w) + 0.5 * x[:, 0] * x[:, 1] + 0.1 * torch.randn(n, generator=g)
    return x, (y - y.mean()) / y.std()


def fit(params: dict[str, Any], arm: dict[str, Any], seed: int, report: Report) -> Result:
    """Train for params["epochs"] full-batch-ish epochs; report validation MSE after each; best epoch wins."""
    dev = torch.device(report.device)  # the worker's device (bench worker --device)
    x, y = (t.to(dev) for t in make_data(1536))  # the same data for every arm and seed: only the seed varies
    (xtr, ytr), (xva, yva), (xte, yte) = (x[:1024], y[:1024]), (x[1024:1280], y[1024:1280]), (x[1280:], y[1280:])
    torch.manual_seed(seed)
    width, depth = int(arm["width"]), int(arm.get("depth", params.get("depth", 2)))
    layers: list[nn.Module] = []
    d_in = N_FEATURES
    for _ in range(depth):
        layers += [nn.Linear(d_in, width), nn.ReLU()]
        d_in = width
    model = nn.Sequential(*layers, nn.Linear(d_in, 1)).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=params["lr"], weight_decay=params.get("weight_decay", 0.0))
    order = torch.Generator().manual_seed(seed)
    best, best_test = float("inf"), None
    for epoch in range(int(params["epochs"])):
        model.train()
        for idx in torch.randperm(len(xtr), generator=order).to(dev).split(int(params.get("batch_size", 64))):
            loss = nn.functional.mse_loss(model(xtr[idx]).squeeze(-1), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            val = float(nn.functional.mse_loss(model(xva).squeeze(-1), yva))
            report(epoch, val)  # may raise bench's prune signal: let it propagate
            if val < best:
                best = val
                if report.wants_test:  # re-evaluation: score the test split with the best-epoch weights
                    best_test = float(nn.functional.mse_loss(model(xte).squeeze(-1), yte))
    n_params = sum(p.numel() for p in model.parameters())
    return Result(value=best, test=best_test, n_params=n_params)
