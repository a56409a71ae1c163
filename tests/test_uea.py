"""Tests for the uea task: offline loading of aeon's shipped files, shapes, splits, learnability, missing extra."""

from __future__ import annotations

import importlib.util
import math
import sys
from collections.abc import Iterator
from importlib.machinery import ModuleSpec
from pathlib import Path

import pytest
import torch

from bench.cli import main
from bench.spec import Hparams, ModelSpec, SpecError, TaskSpec
from bench.tasks import registry, uea
from bench.tasks.base import Task
from bench.trainers.training import train
from tests.conftest import tiny_spec


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    registry.clear_cache()


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One torch thread: on a busy 2-core machine two threads contend and a 0.2 s fit takes 10 s."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def vowels() -> Task:
    return uea.make_task(0)


def _no_aeon(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make aeon look uninstalled to the loader (the finder is what it asks)."""
    real = importlib.util.find_spec

    def find_spec(name: str, package: str | None = None) -> ModuleSpec | None:
        return None if name == "aeon" else real(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


def test_japanese_vowels_shapes_and_official_sizes(vowels: Task) -> None:
    t = vowels
    assert (t.inputs, t.target, t.input_size, t.n_classes) == ("features", "last", 12, 9)
    assert len(t.train) + len(t.val) == 270 and len(t.test) == 370
    assert t.info["sizes"] == {"train": 216, "val": 54, "test": 370}
    for split in (t.train, t.val, t.test):
        assert split.x.dtype == torch.float32 and split.x.shape[1:] == (29, 12)
        assert split.y.shape == (len(split),) and split.y.dtype == torch.long
        assert split.lengths is not None and 7 <= int(split.lengths.min()) <= int(split.lengths.max()) <= 29
        assert int(split.y.min()) >= 0 and int(split.y.max()) <= 8
        real = torch.arange(29)[None, :] < split.lengths[:, None]
        assert (split.x[~real] == 0).all()  # padding is zeros, beyond each series' length
    assert torch.bincount(t.val.y).tolist() == [6] * 9  # stratified: 20% of 30 series per speaker
    assert t.trivial_loss == pytest.approx(math.log(9))  # balanced classes: chance level
    assert t.info["length_range"] == [7, 29] and t.info["classes"] == [str(k) for k in range(1, 10)]


def test_channels_standardized_with_train_statistics(vowels: Task) -> None:
    assert vowels.train.lengths is not None
    steps = vowels.train.x[torch.arange(29)[None, :] < vowels.train.lengths[:, None]]  # (real steps, 12)
    assert torch.allclose(steps.mean(0), torch.zeros(12), atol=1e-5)
    assert torch.allclose(steps.std(0, unbiased=False), torch.ones(12), atol=1e-4)


def test_split_is_deterministic_per_data_seed(vowels: Task) -> None:
    again, other = uea.make_task(0), uea.make_task(1)
    assert torch.equal(vowels.val.x, again.val.x) and torch.equal(vowels.train.y, again.train.y)
    assert not torch.equal(vowels.val.x, other.val.x)
    # The official TEST split is the same for every seed (only its standardization follows the train part).
    assert torch.equal(vowels.test.y, other.test.y)
    assert vowels.test.lengths is not None and other.test.lengths is not None
    assert torch.equal(vowels.test.lengths, other.test.lengths)


def test_loads_without_importing_aeon(vowels: Task) -> None:
    assert "aeon" not in sys.modules and "numba" not in sys.modules


def test_briefly_trained_lstm_beats_trivial_loss(vowels: Task, one_thread: None) -> None:
    res = train(vowels, ModelSpec(cell="lstm", hidden=16), 1, Hparams(lr=1e-2), epochs=3, batch_size=32, seed=0)
    assert not res.diverged
    assert res.best_val_loss < 0.8 * vowels.trivial_loss


def test_basic_motions_equal_length() -> None:
    t = uea.make_task(0, dataset="BasicMotions", val_fraction=0.25)
    assert (t.input_size, t.n_classes, len(t.train) + len(t.val), len(t.test)) == (6, 4, 40, 40)
    assert t.train.x.shape[1] == 100 and t.train.lengths is not None and (t.train.lengths == 100).all()


def test_registered_and_checked_without_loading() -> None:
    registry.check_task(TaskSpec("uea", 0, (("dataset", "JapaneseVowels"),)))
    assert registry.load_task(TaskSpec("uea", 0)).name == "uea"


@pytest.mark.parametrize(("params", "match"), [
    ({"dataset": "Epilepsy"}, r"^task\.dataset: 'Epilepsy' is not one of .*: BasicMotions, JapaneseVowels$"),
    ({"val_fraction": 0.9}, r"^task\.val_fraction: must be from"),
    ({"val_fraction": "0.2"}, r"^task\.val_fraction: must be a number"),
    ({"split": "x"}, r"^task\.split: unknown parameter"),
])
def test_bad_params(params: dict[str, object], match: str) -> None:
    with pytest.raises(SpecError, match=match):
        uea.check_params(**params)


def test_missing_extra_is_one_clear_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    _no_aeon(monkeypatch)
    with pytest.raises(SpecError) as err:
        uea.make_task(0)
    assert str(err.value) == "task.name: the 'uea' task needs the optional extra: pip install 'bench[datasets]'"
    with pytest.raises(SpecError, match="bench\\[datasets\\]"):
        registry.check_task(TaskSpec("uea", 0))
    # Through the CLI: exit 2, one line naming the spec file, nothing written.
    path = tiny_spec(tmp_path, task={"name": "uea", "data_seed": 0})
    db = tmp_path / "db.sqlite"
    assert main(["init", str(path), "--storage", f"sqlite:///{db}"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and f"{path}: task.name: " in lines[0] and "pip install 'bench[datasets]'" in lines[0]
    assert not db.exists()


def test_parse_ts_variable_length(tmp_path: Path) -> None:
    path = tmp_path / "toy.ts"
    path.write_text("# comment\n@problemName toy\n@univariate false\n@dimensions 2\n@equalLength false\n"
                    "@classLabel true b a\n@data\n1,2,3:4,5,6:a\n7:8:b\n")
    data = uea.parse_ts(path)
    assert data.classes == ("b", "a") and data.labels.tolist() == [1, 0]
    assert [s.tolist() for s in data.series] == [[[1, 4], [2, 5], [3, 6]], [[7, 8]]]
    path.write_text("@classLabel true a\n@data\n1,2:3:a\n")
    with pytest.raises(ValueError, match=r"toy\.ts:3: dimensions must be finite and of one length"):
        uea.parse_ts(path)
    path.write_text("@classLabel true a\n@data\n1,2:c\n")
    with pytest.raises(ValueError, match="label 'c' is not among"):
        uea.parse_ts(path)
