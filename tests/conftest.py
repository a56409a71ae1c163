"""Shared fixtures: tiny specs, and fresh databases on the real PostgreSQL / MariaDB servers."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import tomli_w

from bench.storage import normalize_url

REQUIRE = os.environ.get("BENCH_REQUIRE_SERVICES") == "1"

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
    "budget": {"trials": 2, "epochs": 1, "batch_size": 32},
    "sampler": {"kind": "tpe", "seed": 0, "n_startup_trials": 2},
}


def tiny_spec(tmp_path: Path, name: str = "tiny", **overrides: Any) -> Path:
    """Write a tiny spec (2 depths x 2 trials x 1 epoch) with top-level overrides; returns its path."""
    data = {**TINY, "name": name, **overrides}
    path = tmp_path / f"{name}.toml"
    path.write_text(tomli_w.dumps(data))
    return path


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
