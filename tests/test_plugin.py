"""The user plug-in example (examples/mypkg): the real CLI end to end, and a GRU that learns the task."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from bench.spec import Hparams, ModelSpec, load_spec
from bench.tasks import registry
from bench.trainers.training import train

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
SPEC = EXAMPLES / "plugin.toml"


@pytest.fixture
def mypkg(monkeypatch: pytest.MonkeyPatch, one_torch_thread: None) -> Iterator[None]:
    """examples/ importable, as PYTHONPATH=examples makes it for the CLI; one torch thread (busy CI cores)."""
    monkeypatch.syspath_prepend(str(EXAMPLES))
    registry.clear_cache()
    yield
    registry.clear_cache()


@pytest.mark.slow
def test_cli_runs_the_plugin_spec_end_to_end(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(EXAMPLES), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "bench", "run", str(SPEC), "--storage", f"sqlite:///{tmp_path / 'db'}",
           "--out", str(tmp_path / "rep"), "--workers", "1"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert doc["experiment"] == "plugin_demo"
    assert {a["depth"]: [s["n_finished"] for s in a["studies"]] for a in doc["arms"]} == {1: [2, 2], 2: [2, 2]}
    assert not (tmp_path / "runs").exists()  # --storage and --out were honoured: no default paths under cwd


def test_spec_resolves_the_factory_with_its_params(mypkg: None) -> None:
    spec = load_spec(SPEC)
    task = registry.load_task(spec.task)
    assert (task.name, task.inputs, task.target, task.input_size, task.n_classes) == (
        "mypkg.majority", "tokens", "last", 3, 3)
    assert task.train.x.shape == (256, 12) and task.val.x.shape == (128, 12) and task.test.x.shape == (128, 12)
    counts = torch.stack([(task.train.x == s).sum(1) for s in range(3)], 1)
    assert torch.equal(task.train.y, counts.argmax(1))


def test_gru_beats_trivial_loss_on_the_plugin_task(mypkg: None) -> None:
    from mypkg.tasks import make_task

    task = make_task(data_seed=0)
    res = train(task, ModelSpec(cell="gru", hidden=16, embedding=8), 1, Hparams(lr=2e-2), epochs=4,
                batch_size=32, seed=0)
    assert not res.diverged
    assert res.best_val_loss < 0.8 * task.trivial_loss
