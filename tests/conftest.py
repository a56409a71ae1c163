"""Shared fixtures: tiny specs, and fresh databases on the real PostgreSQL / MariaDB servers."""

from __future__ import annotations

import importlib.util
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import sqlalchemy as sa
import tomli_w
from hypothesis import settings

from bench.store.storage import normalize_url

REQUIRE = os.environ.get("BENCH_REQUIRE_SERVICES") == "1"

# Property-based tests: few examples by default and no per-example deadline (the machine is shared and loaded);
# HYPOTHESIS_PROFILE=thorough for a deeper search.
settings.register_profile("bench", max_examples=25, deadline=None, print_blob=True)
settings.register_profile("thorough", max_examples=500, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "bench"))

TINY: dict[str, Any] = {
    "name": "tiny",
    "depths": [1, 2],
    "task": {"name": "seq2seq", "data_seed": 0, "vocab": 5, "length": 4, "n_train": 128, "n_val": 64,
             "n_test": 64},
    "model": {"cell": "lstm", "hidden": 8, "embedding": 4},
    "search_space": {
        "lr": {"type": "float", "low": 1e-3, "high": 3e-2, "log": True},
        "init": {"type": "categorical", "choices": ["default", "orthogonal"]},
        "dropout": {"type": "float", "low": 0.0, "high": 0.3},
    },
    # One tuning study per arm keeps the many CLI tests small; replicated studies have tests of their own.
    "budget": {"trials": 2, "epochs": 1, "batch_size": 32, "studies": 1},
    "sampler": {"kind": "tpe", "seed": 0, "n_startup_trials": 2},
}


def load_script(relative: str, name: str) -> ModuleType:
    """A script of this checkout (not part of a package) as a module, loaded once per test session under `name`."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parent.parent / relative)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def load_calibration() -> ModuleType:
    """benchmarks/calibration.py as a module: the calibration tests call the very simulation functions the
    benchmark prints."""
    return load_script("benchmarks/calibration.py", "calibration")


def tiny_spec(tmp_path: Path, name: str = "tiny", **overrides: Any) -> Path:
    """Write a tiny spec (2 depths x 1 study x 2 trials x 1 epoch) with top-level overrides (a `budget` override is
    merged into the tiny budget, so `studies` stays 1 unless given); returns its path."""
    data = {**TINY, "name": name, **overrides}
    if "budget" in overrides:
        data["budget"] = {**TINY["budget"], **overrides["budget"]}
    path = tmp_path / f"{name}.toml"
    path.write_text(tomli_w.dumps(data))
    return path


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """One torch thread for in-process training: the test machine is shared (CI cores are busy), and one thread
    also keeps CPU results bit-for-bit reproducible."""
    import torch  # here, not at module level: most tests never train in-process

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'bench.db'}"


def _fresh_database(env: str) -> Iterator[str]:
    base = os.environ.get(env)
    if not base:
        if REQUIRE:
            pytest.fail(f"{env} is not set but BENCH_REQUIRE_SERVICES=1")
        pytest.skip(f"{env} not set (set it to run against the real server)")
    admin_url = sa.make_url(normalize_url(base))
    name = f"bench_t_{uuid.uuid4().hex[:12]}"
    try:
        admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f"CREATE DATABASE {name}"))
    except sa.exc.OperationalError as err:
        if REQUIRE:
            pytest.fail(f"database server for {env} unreachable: {err}")
        pytest.skip(f"database server for {env} unreachable")
    try:
        yield admin_url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            if admin.dialect.name == "postgresql":
                conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            else:
                conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name}"))
        admin.dispose()


@pytest.fixture
def pg_url() -> Iterator[str]:
    yield from _fresh_database("BENCH_TEST_POSTGRES_URL")


@pytest.fixture
def mysql_url() -> Iterator[str]:
    yield from _fresh_database("BENCH_TEST_MYSQL_URL")


@pytest.fixture(params=["sqlite", "postgres", "mysql"])
def any_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test on every supported database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'bench.db'}"
    fixture = "pg_url" if request.param == "postgres" else "mysql_url"
    return str(request.getfixturevalue(fixture))


# Under mutation testing (mutmut sets MUTANT_UNDER_TEST and stops at the first failure) the fast unit tests run
# first, so that most mutants are killed in a second instead of after the report's synthetic storages are built.
_FAST_FIRST = ("test_stats", "test_inference", "test_build", "test_spec", "test_search_space", "test_ledger",
               "test_storage", "test_training", "test_objective", "test_worker", "test_verdict")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if os.environ.get("MUTANT_UNDER_TEST"):
        def rank(item: pytest.Item) -> int:
            name = item.path.stem
            return _FAST_FIRST.index(name) if name in _FAST_FIRST else len(_FAST_FIRST)

        items.sort(key=rank)  # stable: the order within a file is kept
