"""The Python API: the README's notebook example runs as written (in a fresh folder), and the API raises the
CLI's one-line errors before writing anything."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import bench
from bench import api
from bench.spec import SpecError
from tests.conftest import TINY

ROOT = Path(__file__).resolve().parent.parent


def readme_example() -> str:
    section = (ROOT / "README.md").read_text().split("## Python API", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1
    return blocks[0]


@pytest.mark.timeout(600)
def test_readme_notebook_example_runs(tmp_path: Path) -> None:
    code = readme_example().replace("\nresult  ", "\nprint(repr(result))  ")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(tmp_path)}
    env.pop("BENCH_STORAGE", None)
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert any(line.startswith(("No ", "depth ")) for line in lines), out.stdout  # the verdict sentence
    # 2 depths x 2 studies x 3 trials + 2 depths x 2 studies x 2 seeds = 20 slots
    assert "20 of 20 slots done" in out.stdout
    assert "Report('notebook_demo', complete=True" in out.stdout
    assert (tmp_path / "runs" / "notebook_demo.db").exists()
    assert (tmp_path / "reports" / "notebook_demo" / "report.json").exists()


def test_dict_spec_equals_toml_spec(tmp_path: Path) -> None:
    import tomli_w

    path = tmp_path / "tiny.toml"
    path.write_text(tomli_w.dumps(TINY))
    from_dict, from_file = api.load_spec(TINY), api.load_spec(path)
    assert from_dict.hash == from_file.hash
    assert Path(from_dict.source).suffix == ".json" and Path(from_dict.source).exists()
    assert bench.load_spec is api.load_spec and bench.Spec is type(from_dict)


def test_api_errors_are_the_cli_errors_and_write_nothing(tmp_path: Path) -> None:
    bad = {**TINY, "budget": {**TINY["budget"], "trials": 0}}
    with pytest.raises(SpecError, match="budget.trials"):
        api.load_spec(bad)
    url = f"sqlite:///{tmp_path / 'nothing.db'}"
    with pytest.raises(api.BadInput, match="workers"):
        api.run(TINY, storage=url, workers=0)
    assert not (tmp_path / "nothing.db").exists()
    with pytest.raises(Exception, match="not in"):
        api.report(TINY, storage=url)
    assert not (tmp_path / "nothing.db").exists()
