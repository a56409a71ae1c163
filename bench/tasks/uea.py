"""Multivariate time-series classification from the UEA archive, read from the files the `aeon` package ships."""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.spec import SpecError
from bench.tasks.base import Split, Task, data_rng, require_range, resolve_params, trivial_loss

# Problems whose TRAIN/TEST .ts files ship inside the aeon wheel (aeon/datasets/data/<name>/), so nothing is
# downloaded at run time. Multivariate UEA classification problems only; add a name here once its files ship.
SHIPPED = ("BasicMotions", "JapaneseVowels")
DEFAULTS: dict[str, Any] = {
    "dataset": "JapaneseVowels",  # one of SHIPPED
    "val_fraction": 0.2,  # validation carved (stratified) from the official TRAIN split; TEST stays held out
}
MISSING_EXTRA = "task.name: the 'uea' task needs the optional extra: pip install 'bench[datasets]'"


@dataclass(frozen=True)
class TsData:
    """One parsed .ts file. series[i]: (length_i, channels) float64; labels: (N,) indices into `classes`."""

    series: list[np.ndarray]
    labels: np.ndarray
    classes: tuple[str, ...]  # in the order of the file's @classLabel header: that order fixes class ids


def check_params(**params: Any) -> dict[str, Any]:
    """Validated parameters (defaults filled in); checks that aeon and the dataset's files are installed."""
    p = resolve_params(params, DEFAULTS)
    if p["dataset"] not in SHIPPED:
        raise SpecError(f"task.dataset: {p['dataset']!r} is not one of the datasets shipped with aeon: "
                        f"{', '.join(SHIPPED)}")
    require_range("val_fraction", p["val_fraction"], 0.01, 0.5)
    dataset_files(p["dataset"])
    return p


def make_task(data_seed: int, **params: Any) -> Task:
    """Official TRAIN split into train | val (stratified by the data seed); official TEST as the test split.

    Every channel is standardised with the mean and std of the train part; series are zero-padded to the
    longest one and carry their `lengths`, so the model packs the padding away and reads each last real step.
    """
    p = check_params(**params)
    rng = data_rng(data_seed)
    train_path, test_path = dataset_files(p["dataset"])
    official, held_out = parse_ts(train_path), parse_ts(test_path)
    if held_out.classes != official.classes:
        raise SpecError(f"task.dataset: {test_path} declares classes {held_out.classes}, but the TRAIN file "
                        f"{official.classes}")
    val_idx = stratified_holdout(official.labels, p["val_fraction"], rng)
    if len(val_idx) == 0:
        raise SpecError(f"task.val_fraction: {p['val_fraction']} leaves no validation series")
    train_idx = np.setdiff1d(np.arange(len(official.labels)), val_idx)
    train_series = [official.series[i] for i in train_idx]
    mean, std = _channel_stats(train_series)
    t_max = max(len(s) for s in (*official.series, *held_out.series))  # one padded width for every split
    splits = [
        _split([(s - mean) / std for s in series], labels, t_max)
        for series, labels in (
            (train_series, official.labels[train_idx]),
            ([official.series[i] for i in val_idx], official.labels[val_idx]),
            (held_out.series, held_out.labels),
        )
    ]
    train, val, test = splits
    n_classes, channels = len(official.classes), official.series[0].shape[1]
    all_lengths = [len(s) for s in (*official.series, *held_out.series)]
    return Task(
        name="uea",
        inputs="features",
        input_size=channels,
        n_classes=n_classes,
        target="last",
        train=train,
        val=val,
        test=test,
        trivial_loss=trivial_loss(train.y, val.y, n_classes),
        metric_note="cross-entropy per sequence (nats); accuracy not reported",
        info={
            **p,
            "data_seed": data_seed,
            "sizes": {"train": len(train), "val": len(val), "test": len(test)},
            "channels": channels,
            "classes": list(official.classes),  # class id i is the file's label classes[i]
            "length_range": [min(all_lengths), max(all_lengths)],
            "padded_length": t_max,
            "source": f"aeon {_aeon_version()}: {train_path.name}, {test_path.name}",
            "sha256": {path.name: _sha256(path) for path in (train_path, test_path)},
            "standardized": "per channel, with the mean and std of the train part",
        },
    )


# ---------------------------------------------------------------- files and parsing


def dataset_files(dataset: str) -> tuple[Path, Path]:
    """Paths of `dataset`'s official TRAIN and TEST .ts files inside the installed aeon (aeon is not imported)."""
    root = _aeon_root()
    folder = root / "datasets" / "data" / dataset
    paths = (folder / f"{dataset}_TRAIN.ts", folder / f"{dataset}_TEST.ts")
    for path in paths:
        if not path.is_file():
            raise SpecError(f"task.dataset: {path} not found in the installed aeon {_aeon_version()}; "
                            f"reinstall it with: pip install 'bench[datasets]'")
    return paths


def _aeon_root() -> Path:
    """The aeon package folder. find_spec locates it without importing it (aeon pulls in numba, ~2 s)."""
    spec = importlib.util.find_spec("aeon")
    if spec is None or not spec.submodule_search_locations:
        raise SpecError(MISSING_EXTRA)
    return Path(next(iter(spec.submodule_search_locations)))


def _aeon_version() -> str:
    try:
        return importlib.metadata.version("aeon")
    except importlib.metadata.PackageNotFoundError:
        return "(unknown version)"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def parse_ts(path: Path) -> TsData:
    """Read a classification .ts file: '@' header lines, then one series per line.

    A data line is `dim_1:dim_2:...:dim_C:label`, each dimension comma-separated values of equal length. '#' lines
    are comments. Timestamps and missing values ('?') are not supported (no shipped UEA problem has them).
    """
    classes: tuple[str, ...] = ()
    series: list[np.ndarray] = []
    labels: list[int] = []
    in_data = False
    for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{path}:{lineno}"
        if not in_data:
            words = line.split()
            key = words[0].lower()
            if key == "@classlabel":
                if len(words) < 3 or words[1].lower() != "true":
                    raise ValueError(f"{where}: not a classification file (@classLabel {' '.join(words[1:])})")
                classes = tuple(words[2:])
            elif key == "@timestamps" and len(words) > 1 and words[1].lower() == "true":
                raise ValueError(f"{where}: series with timestamps are not supported")
            in_data = key == "@data"
            continue
        *dims, label = line.split(":")
        if label not in classes:
            raise ValueError(f"{where}: label {label!r} is not among the declared classes {classes}")
        try:
            values = [np.array(d.split(","), dtype=np.float64) for d in dims]
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        if not dims or len({len(v) for v in values}) != 1 or not all(np.isfinite(v).all() for v in values):
            raise ValueError(f"{where}: dimensions must be finite and of one length")
        series.append(np.stack(values, axis=1))
        labels.append(classes.index(label))
    if not series or len({s.shape[1] for s in series}) != 1:
        raise ValueError(f"{path}: no data, or series with different numbers of dimensions")
    return TsData(series, np.array(labels, dtype=np.int64), classes)


# ---------------------------------------------------------------- splitting and tensors


def stratified_holdout(labels: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of a random `fraction` of each class (rounded; at least one series of each stays out).

    labels: (N,) int. Keeps the class mix of val equal to train's, which matters with 30 series per class.
    """
    picked: list[np.ndarray] = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        k = min(round(fraction * len(members)), len(members) - 1)
        picked.append(rng.permutation(members)[:k])
    return np.sort(np.concatenate(picked))


def _channel_stats(series: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std (C,) over every real time step of every series; a constant channel gets std 1."""
    steps = np.concatenate(series, axis=0)
    std = steps.std(axis=0)
    return steps.mean(axis=0), np.where(std > 0, std, 1.0)


def _split(series: list[np.ndarray], labels: np.ndarray, t_max: int) -> Split:
    """x (N, t_max, C) float32 zero-padded after each series; y (N,) long; lengths (N,) long."""
    x = np.zeros((len(series), t_max, series[0].shape[1]), dtype=np.float32)
    for i, s in enumerate(series):
        x[i, : len(s)] = s
    lengths = torch.tensor([len(s) for s in series], dtype=torch.long)
    return Split(torch.from_numpy(x), torch.from_numpy(labels.astype(np.int64)), lengths)
