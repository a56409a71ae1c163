"""Where and with what a report was made: date, bench version and commit, library versions, host and devices."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import bench


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def git_commit(where: Path | None = None) -> str | None:
    """The commit of bench's own checkout (with "+dirty" when it has local changes); None outside a git checkout
    or without git: a wheel install has no commit, and that is not an error."""
    where = where or Path(bench.__file__).resolve().parent
    try:
        def git(*args: str) -> str:
            return subprocess.run(["git", *args], cwd=where, capture_output=True, text=True, timeout=5,
                                  check=True).stdout.strip()

        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}+dirty" if dirty and commit else commit or None


def devices() -> str:
    """A one-line summary of the compute on this host: CPU cores, and CUDA devices when torch sees any."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    out = f"{cores} CPU cores ({platform.machine() or 'unknown'})"
    try:
        import torch

        if torch.cuda.is_available():
            names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            out += "; CUDA: " + ", ".join(names)
        else:
            out += "; no CUDA device"
    except Exception:  # noqa: BLE001 - a report must not fail for want of a device summary
        out += "; CUDA unknown"
    return out


def report_provenance() -> dict[str, Any]:
    """The `provenance` key of report.json (each trial keeps its own provenance too: host, device, threads)."""
    return {"date": datetime.now(UTC).isoformat(timespec="seconds"), "bench_version": bench.__version__,
            "git_commit": git_commit(), "python": platform.python_version(), "torch": _version("torch"),
            "optuna": _version("optuna"), "sqlalchemy": _version("sqlalchemy"), "host": socket.gethostname(),
            "platform": platform.platform(), "devices": devices()}
