"""The package layout is the layering of DESIGN.md, and imports point down only (every import, lazy ones in
functions included): a module that reaches up a layer, or a trainer that imports Optuna, fails here."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"

# layer -> the layers it may import (besides itself). The entry points (cli, api, __main__) may import anything.
ALLOWED: dict[str, set[str]] = {
    "foundation": set(),
    "trainers": {"foundation"},
    "store": {"foundation"},
    "tuning": {"foundation", "trainers", "store"},
    "report": {"foundation", "store", "tuning"},  # collect reads the storage and the study names
    "service": {"foundation", "trainers", "store", "tuning"},
    "entry": {"foundation", "trainers", "store", "tuning", "report", "service"},
}


def layer(module: str) -> str:
    if module in ("bench", "bench.spec", "bench.suite"):
        return "foundation"
    first = module.split(".")[1] if module.count(".") else ""
    if module == "bench.trainer" or first in ("trainers", "tasks"):
        return "trainers"
    if first in ("store", "tuning", "report", "service"):
        return first
    if module in ("bench.cli", "bench.api", "bench.__main__"):
        return "entry"
    raise AssertionError(f"{module}: not in any layer of DESIGN.md; place it in one (and in ALLOWED)")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(BENCH.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            if node.module == "bench":  # `from bench import api` imports the module bench.api
                out |= {f"bench.{a.name}" for a in node.names if (BENCH / f"{a.name}.py").exists()}
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
    return out


MODULES = sorted(BENCH.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(BENCH.parent)))
def test_imports_point_down(path: Path) -> None:
    me = layer(module_name(path))
    # bench/__init__.py re-exports the API on first attribute access (`bench.load_spec`): the one facade import.
    facade = {"bench.api"} if module_name(path) == "bench" else set()
    up = sorted(m for m in imports(path) - facade if m.startswith("bench.") and layer(m) != me
                and layer(m) not in ALLOWED[me])
    assert not up, f"{module_name(path)} ({me}) imports upward: {up}"


def test_trainers_and_tasks_never_import_optuna() -> None:
    offenders = [module_name(p) for p in MODULES if layer(module_name(p)) == "trainers"
                 and any(m == "optuna" or m.startswith("optuna.") for m in imports(p))]
    assert offenders == []


def test_the_layer_check_sees_an_upward_import(tmp_path: Path) -> None:
    """The check itself: a store module importing the worker would be caught (and a lazy one too)."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from bench.service.worker import WorkerLoop\n")
    assert "bench.service.worker" in imports(bad)
    assert layer("bench.service.worker") not in ALLOWED["store"]
    assert layer("bench.store.ledger") == "store" and layer("bench.tasks.base") == "trainers"
