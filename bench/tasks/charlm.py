"""Character-level language modelling on a local text (by default the English docs shipped with CPython)."""

from __future__ import annotations

import hashlib
import math
import sys
from pathlib import Path
from typing import Any

import torch

from bench.spec import SpecError
from bench.tasks.base import Split, Task, data_rng, require_memory, require_range, resolve_params, trivial_loss

DEFAULTS: dict[str, Any] = {
    "text_file": None,  # path to a UTF-8 text; None = pydoc_data.topics (always installed, no download)
    "seq_len": 64,  # characters per training window (truncated BPTT length)
    "max_chars": 200_000,  # use only the first max_chars characters, to keep CPU epochs short; 0 = all
    "val_fraction": 0.05,
    "test_fraction": 0.05,
}
_TYPES = {"text_file": str}
UNK = "<unk>"  # id 0: characters never seen in the train block
# Peak bytes per character while building: the text (up to 4 bytes a character in a str), a Python list of ids
# (8-byte pointers to small ints), and x and y (int64) with their clones.
_BYTES_PER_CHAR = 4 + 8 + 4 * 8


def check_params(**params: Any) -> dict[str, Any]:
    """Validated parameters (defaults filled in); reads the text only to check each split gets a window."""
    p = resolve_params(params, DEFAULTS, _TYPES)
    require_range("seq_len", p["seq_len"], 1, 100_000)
    require_range("max_chars", p["max_chars"], 0, 10**10)
    require_range("val_fraction", p["val_fraction"], 1e-6, 0.5)
    require_range("test_fraction", p["test_fraction"], 1e-6, 0.5)
    if p["max_chars"]:
        require_memory("max_chars", p["max_chars"], p["max_chars"] * _BYTES_PER_CHAR,
                       f"{p['max_chars']:,} characters")
    n = len(_load_text(p))
    for name, size in zip(("train", "val", "test"), _block_sizes(n, p), strict=True):
        if size < p["seq_len"] + 1:
            raise SpecError(f"task.seq_len: {p['seq_len']} is too long for the {name} block of {size} "
                            f"characters (of {n}); use a shorter seq_len, larger fractions or more text")
    return p


def make_task(data_seed: int, **params: Any) -> Task:
    """Non-overlapping windows of seq_len characters; the target at each step is the next character.

    The data seed rotates the text (circularly) before it is cut into contiguous train | val | test blocks, so
    another seed holds out another stretch of text; the blocks never overlap.
    """
    p = check_params(**params)
    text = _load_text(p)
    shift = int(data_rng(data_seed).integers(len(text)))
    text = text[shift:] + text[:shift]
    n_train, n_val, _ = _block_sizes(len(text), p)
    blocks = (text[:n_train], text[n_train:n_train + n_val], text[n_train + n_val:])
    chars = sorted(set(blocks[0]))
    ids = {c: i + 1 for i, c in enumerate(chars)}
    train, val, test = (_windows(block, ids, p["seq_len"]) for block in blocks)
    n_classes = len(chars) + 1
    return Task(
        name="charlm",
        inputs="tokens",
        input_size=n_classes,
        n_classes=n_classes,
        target="per_step",
        train=train,
        val=val,
        test=test,
        # Unigram frequencies of train, add-one smoothed so characters unseen in train cost finitely.
        trivial_loss=trivial_loss(train.y, val.y, n_classes, smoothing=1.0),
        metric_note="cross-entropy per character (nats); bits per character = loss / ln 2",
        info={
            "source": p["text_file"] or f"pydoc_data.topics (Python {sys.version.split()[0]})",
            "text_sha256": hashlib.sha256(text.encode()).hexdigest(),  # provenance: the text varies by source
            "chars": {"train": len(blocks[0]), "val": len(blocks[1]), "test": len(blocks[2])},
            "vocab": n_classes,
            "unk_id": 0,
            "alphabet": "".join(chars),  # id i + 1 is alphabet[i]; lets a report decode samples
            "rotation": shift,
            "seq_len": p["seq_len"],
            "bits_per_char": f"divide a loss by ln 2 = {math.log(2):.6f} for bits per character",
            "data_seed": data_seed,
        },
    )


def _load_text(p: dict[str, Any]) -> str:
    if p["text_file"] is None:
        from pydoc_data.topics import topics

        text = "".join(topics[k] for k in sorted(topics))
    else:
        text = _read_text(Path(p["text_file"]), p["max_chars"])
    return text[: p["max_chars"]] if p["max_chars"] else text


def _read_text(path: Path, max_chars: int) -> str:
    """At most max_chars characters (0 = all) of a regular UTF-8 file; a device or pipe would never end."""
    try:
        if not path.exists():
            raise SpecError(f"task.text_file: no such file: {path}")  # relative to the current directory
        if not path.is_file():
            raise SpecError(f"task.text_file: {path} is not a regular file")
        if not max_chars:
            size = path.stat().st_size
            require_memory("text_file", path, size * _BYTES_PER_CHAR,
                           f"all {size:,} bytes of it (max_chars = 0); set max_chars to use a part")
        with path.open(encoding="utf-8") as fh:
            return fh.read(max_chars) if max_chars else fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"task.text_file: cannot read {path}: {exc}") from None


def _block_sizes(n: int, p: dict[str, Any]) -> tuple[int, int, int]:
    n_val, n_test = int(n * p["val_fraction"]), int(n * p["test_fraction"])
    return n - n_val - n_test, n_val, n_test


def _windows(block: str, ids: dict[str, int], seq_len: int) -> Split:
    """Inputs are disjoint windows; each target window is its input shifted by one character."""
    codes = torch.tensor([ids.get(c, 0) for c in block], dtype=torch.long)
    n = (len(codes) - 1) // seq_len
    x = codes[: n * seq_len].reshape(n, seq_len)
    y = codes[1 : n * seq_len + 1].reshape(n, seq_len)
    return Split(x.clone(), y.clone())
