"""`bench dashboard` serves the real optuna-dashboard on bench's storage, with a note on every study."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from bench.service.run import init_experiment
from bench.spec import load_spec
from tests.conftest import tiny_spec

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - loopback only
        return json.loads(resp.read())


@pytest.mark.timeout(240)  # a dashboard subprocess (optuna-dashboard imports slowly on a loaded machine)
def test_dashboard_lists_studies_with_notes(tmp_path: Path, sqlite_url: str) -> None:
    path = tiny_spec(tmp_path, evaluation={"seeds": 2}, baseline={"lr": 0.01})
    init_experiment(load_spec(path), sqlite_url)
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "bench", "dashboard", str(path), "--storage", sqlite_url,
                             "--port", str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # A condition, not a clock: poll until the server answers or its process ends (pytest-timeout, not a
        # deadline here, bounds a server that neither answers nor exits).
        studies = None
        while studies is None and proc.poll() is None:
            try:
                studies = _get(f"http://127.0.0.1:{port}/api/studies")["study_summaries"]
            except OSError:
                time.sleep(0.3)
        assert studies is not None, f"dashboard exited {proc.returncode} without answering"
        names = sorted(s["study_name"] for s in studies)
        assert names == ["tiny-depth1", "tiny-depth1-baseline", "tiny-depth1-eval",
                         "tiny-depth2", "tiny-depth2-baseline", "tiny-depth2-eval"]
        one = next(s for s in studies if s["study_name"] == "tiny-depth2-baseline")
        detail = _get(f"http://127.0.0.1:{port}/api/studies/{one['study_id']}?after=0")
        body = detail["note"]["body"]
        assert "## tiny: depth 2 (baseline)" in body and "fixed-config baseline" in body
        attrs = {a["key"]: a["value"] for a in one["user_attrs"]}
        assert attrs["role"] == "baseline" and attrs["depth"] == "2"
    finally:
        proc.terminate()
        proc.wait(10)
