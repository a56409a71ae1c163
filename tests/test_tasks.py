"""Tests for bench.tasks: the Task interface, the built-in tasks and the registry (user factories, cache)."""

from __future__ import annotations

import math
import re
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from bench.spec import SpecError, TaskSpec
from bench.tasks import charlm, registry, seq2seq
from bench.tasks.base import IGNORE_INDEX, Split, Task, TaskError, trivial_loss

SMALL = {"n_train": 60, "n_val": 20, "n_test": 20}


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    registry.clear_cache()


def _rows(split: Split) -> set[tuple[int, ...]]:
    return {tuple(r) for r in split.x.tolist()}


# ---------------------------------------------------------------- base


def test_trivial_loss_by_hand() -> None:
    train_y = torch.tensor([0, 0, 1, IGNORE_INDEX])
    val_y = torch.tensor([0, 1, IGNORE_INDEX])
    want = -(math.log(2 / 3) + math.log(1 / 3)) / 2
    assert trivial_loss(train_y, val_y, 2, smoothing=0.0) == pytest.approx(want)
    want_add_one = -(math.log(3 / 5) + math.log(2 / 5)) / 2
    assert trivial_loss(train_y, val_y, 2) == pytest.approx(want_add_one)


def test_trivial_loss_per_position_beats_pooled_when_positions_differ() -> None:
    # Position 0 is always class 0 and position 1 always class 1: pooled frequencies are 50/50.
    y = torch.tensor([[0, 1], [0, 1], [0, 1]])
    pooled = trivial_loss(y, y, 2, smoothing=0.0)
    assert pooled == pytest.approx(math.log(2))
    assert trivial_loss(y, y, 2, per_position=True, smoothing=0.0) == pytest.approx(0.0)


def test_task_rejects_mismatched_split() -> None:
    good = Split(torch.zeros(4, 3, dtype=torch.long), torch.zeros(4, 3, dtype=torch.long))
    bad = Split(torch.zeros(4, 3, dtype=torch.long), torch.zeros(4, dtype=torch.long))
    with pytest.raises(TaskError, match="val split: y must be long"):
        Task("t", "tokens", 2, 2, "per_step", good, bad, good, trivial_loss=1.0)
    with pytest.raises(TaskError, match="target"):
        Task("t", "tokens", 2, 2, "every_step", good, good, good, trivial_loss=1.0)


# ---------------------------------------------------------------- seq2seq


@pytest.mark.parametrize("kind", ["reverse", "sort", "copy"])
def test_seq2seq_shapes_and_targets(kind: str) -> None:
    task = seq2seq.make_task(0, kind=kind, vocab=5, length=4, **SMALL)
    assert (task.inputs, task.target, task.input_size, task.n_classes) == ("tokens", "per_step", 7, 5)
    for split, n in ((task.train, 60), (task.val, 20), (task.test, 20)):
        assert split.x.shape == (n, 9) and split.y.shape == (n, 9) and split.lengths is None
        assert split.x.dtype == split.y.dtype == torch.long
        symbols = split.x[:, :4]
        assert (split.x[:, 4] == 5).all() and (split.x[:, 5:] == 6).all()  # separator, then blanks
        assert (split.y[:, :5] == IGNORE_INDEX).all()
        want = {"reverse": symbols.flip(1), "sort": symbols.sort(dim=1).values, "copy": symbols}[kind]
        assert torch.equal(split.y[:, 5:], want)
    assert 0 < task.trivial_loss <= math.log(5) + 0.1


def test_seq2seq_deterministic_per_seed_and_disjoint() -> None:
    a, b, c = (seq2seq.make_task(s, **SMALL) for s in (3, 3, 4))
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.y, b.test.y)
    assert not torch.equal(a.train.x, c.train.x)
    train, val, test = _rows(a.train), _rows(a.val), _rows(a.test)
    assert not (train & val or train & test or val & test)


def test_seq2seq_can_use_the_whole_sequence_space() -> None:
    task = seq2seq.make_task(0, vocab=2, length=4, n_train=10, n_val=3, n_test=3)
    assert len(_rows(task.train) | _rows(task.val) | _rows(task.test)) == 16


@pytest.mark.parametrize(("params", "field"), [
    ({"vocab": 1}, "vocab"),
    ({"vocab": True}, "vocab"),
    ({"length": "6"}, "length"),
    ({"kind": "shuffle"}, "kind"),
    ({"n_val": 0}, "n_val"),
    ({"bogus": 1}, "bogus"),
    ({"vocab": 2, "length": 3, "n_train": 10}, "n_train"),
])
def test_seq2seq_bad_params(params: dict[str, object], field: str) -> None:
    with pytest.raises(SpecError, match=rf"^task\.{field}: ") as info:
        seq2seq.make_task(0, **params)
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------- charlm


@pytest.fixture()
def numbered_text(tmp_path: Path) -> Path:
    """6-character records "00042|" that are each unique, so blocks can be located in the text."""
    path = tmp_path / "numbers.txt"
    path.write_text("".join(f"{i:05d}|" for i in range(2000)), encoding="utf-8")
    return path


def _decode(task: Task, split: Split) -> str:
    inverse = {i + 1: c for i, c in enumerate(task.info["alphabet"])}
    return "".join(inverse.get(i, "?") for i in split.x.reshape(-1).tolist())


def test_charlm_shapes_and_next_char_targets(numbered_text: Path) -> None:
    task = charlm.make_task(0, text_file=str(numbered_text), seq_len=16)
    assert (task.inputs, task.target) == ("tokens", "per_step")
    assert task.n_classes == task.input_size == 12  # <unk>, ten digits, "|"
    for split in (task.train, task.val, task.test):
        assert split.x.dtype == split.y.dtype == torch.long and split.x.shape[1] == 16
        assert split.y.shape == split.x.shape and split.lengths is None
        assert torch.equal(split.y[:, :-1], split.x[:, 1:])
        assert torch.equal(split.y[:-1, -1], split.x[1:, 0])  # windows are consecutive, not overlapping
    assert len(task.train) > 10 * len(task.val)
    assert not (task.train.x == 0).any()  # the vocabulary comes from train, so train has no <unk>
    assert "ln 2" in task.metric_note
    assert 0 < task.trivial_loss < math.log(12)


def test_charlm_blocks_are_contiguous_disjoint_and_seeded(numbered_text: Path) -> None:
    text = numbered_text.read_text()
    records: list[set[str]] = []
    task = charlm.make_task(0, text_file=str(numbered_text), seq_len=16)
    for split_name in ("train", "val", "test"):
        decoded = _decode(task, getattr(task, split_name))
        assert decoded in text + text  # one contiguous stretch of the (circularly rotated) text
        records.append(set(re.findall(r"\d{5}\|", decoded)))
    assert not (records[0] & records[1] or records[0] & records[2] or records[1] & records[2])
    a = charlm.make_task(1, text_file=str(numbered_text), seq_len=16)
    b = charlm.make_task(1, text_file=str(numbered_text), seq_len=16)
    c = charlm.make_task(2, text_file=str(numbered_text), seq_len=16)
    assert torch.equal(a.val.x, b.val.x)
    assert not torch.equal(a.val.x, c.val.x)  # another seed holds out another stretch


def test_charlm_default_text_and_relative_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    task = charlm.make_task(0, max_chars=20_000, seq_len=32)
    assert task.info["chars"] == {"train": 18_000, "val": 1000, "test": 1000}
    assert task.train.x.shape == (17_999 // 32, 32)
    assert task.trivial_loss > 2.0  # English characters: a few nats under the unigram model
    (tmp_path / "t.txt").write_text("abcdefgh" * 100, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert charlm.make_task(0, text_file="t.txt", seq_len=8).n_classes == 9


@pytest.mark.parametrize(("params", "field", "words"), [
    ({"text_file": "no/such/file.txt"}, "text_file", "no such file: no/such/file.txt"),
    ({"text_file": 3}, "text_file", "must be a string"),
    ({"seq_len": 0}, "seq_len", "must be from"),
    ({"seq_len": 5000, "max_chars": 20_000}, "seq_len", "too long for the val block"),
    ({"val_fraction": 0.9}, "val_fraction", "must be from"),
    ({"seqlen": 64}, "seqlen", "unknown parameter"),
])
def test_charlm_bad_params(params: dict[str, object], field: str, words: str) -> None:
    with pytest.raises(SpecError, match=rf"^task\.{field}: .*{re.escape(words)}"):
        charlm.make_task(0, **params)


# ---------------------------------------------------------------- registry

USER_MODULE = """
from __future__ import annotations
import torch
from bench.tasks.base import Split, Task

def make(data_seed, n=8):
    g = torch.Generator().manual_seed(data_seed)
    def split():
        x = torch.randn(n, 5, 3, generator=g)
        return Split(x, (x[:, -1, 0] > 0).long(), torch.full((n,), 5))
    return Task("user", "features", 3, 2, "last", split(), split(), split(), trivial_loss=0.69)

def not_a_task(data_seed):
    return {"x": 1}

def broken(data_seed):
    s = Split(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, dtype=torch.long))
    return Task("b", "tokens", 2, 2, "per_step", s, s, s, trivial_loss=1.0)

value = 3
"""


@pytest.fixture()
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "bench_test_user_tasks.py").write_text(textwrap.dedent(USER_MODULE), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    return "bench_test_user_tasks"


def test_user_factory_is_resolved_called_and_cached(user_module: str) -> None:
    spec = TaskSpec(f"{user_module}:make", 3, (("n", 6),))
    task = registry.load_task(spec)
    assert task.name == "user" and task.train.x.shape == (6, 5, 3) and task.target == "last"
    assert registry.load_task(spec) is task
    assert torch.equal(registry.load_task(TaskSpec(f"{user_module}:make", 3, (("n", 6),))).val.x, task.val.x)
    registry.check_task(spec)


@pytest.mark.parametrize(("name", "params", "message"), [
    ("seq3seq", (), "task.name: 'seq3seq' is neither a built-in task"),
    ("no_such_module_xyz:make", (), "task.name: cannot import module 'no_such_module_xyz'"),
    ("{mod}:nope", (), "task.name: module '{mod}' has no attribute 'nope'"),
    ("{mod}:value", (), "task.name: '{mod}:value' is not callable"),
    ("{mod}:not_a_task", (), "task.name: factory '{mod}:not_a_task' did not return a Task (got dict)"),
    ("{mod}:broken", (), "task.name: factory '{mod}:broken' built an invalid Task: train split"),
    ("{mod}:make", (("m", 1),), "task.m: factory '{mod}:make' does not accept these parameters"),
])
def test_registry_errors(user_module: str, name: str, params: tuple[tuple[str, object], ...],
                         message: str) -> None:
    spec = TaskSpec(name.format(mod=user_module), 0, params)
    with pytest.raises(SpecError) as info:
        registry.load_task(spec)
    assert str(info.value).startswith(message.format(mod=user_module))
    assert "\n" not in str(info.value)


def test_builtin_load_and_check(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = TaskSpec("seq2seq", 0, tuple(sorted(SMALL.items())))
    assert registry.load_task(spec) is registry.load_task(spec)
    assert registry.load_task(spec) is not registry.load_task(TaskSpec("seq2seq", 1, spec.params))

    def no_data(**_: object) -> Task:
        raise AssertionError("check_task generated the data")

    monkeypatch.setitem(registry.BUILTIN, "seq2seq", no_data)
    registry.check_task(spec)
    with pytest.raises(SpecError, match=r"^task\.length: "):
        registry.check_task(TaskSpec("seq2seq", 0, (("length", 0),)))
    with pytest.raises(SpecError, match=r"^task\.seq_len: "):
        registry.check_task(TaskSpec("charlm", 0, (("seq_len", -1),)))
    with pytest.raises(SpecError, match=r"^task\.data_seed: must be a non-negative integer"):
        registry.check_task(TaskSpec("seq2seq", -1))


@pytest.mark.parametrize("make", [seq2seq.make_task, charlm.make_task])
def test_negative_data_seed(make: Callable[..., Task]) -> None:
    with pytest.raises(SpecError, match=r"^task\.data_seed: "):
        make(-3)
