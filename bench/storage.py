"""Storage URLs: validation, per-dialect engine options, Optuna's RDBStorage, and bounded retry of transient errors."""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import optuna
import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.engine import Engine, make_url

DEFAULT_STORAGE = "sqlite:///runs/bench.db"
T = TypeVar("T")
log = logging.getLogger("bench.storage")


class StorageURLError(ValueError):
    """A storage URL that bench cannot use (bad input: exit code 2)."""


class StorageUnavailable(RuntimeError):
    """The database kept failing past the retry bound."""


def normalize_url(url: str) -> str:
    """Pick the drivers bench ships with (psycopg 3, PyMySQL) and reject what is not a supported database."""
    try:
        u = make_url(url)
    except exc.ArgumentError:
        raise StorageURLError(f"--storage: cannot parse {url!r} as a database URL "
                              "(e.g. sqlite:///runs/bench.db, postgresql://user@host/db, mysql://user@host/db)") from None
    backend = u.get_backend_name()
    if backend == "postgresql":
        u = u.set(drivername="postgresql+psycopg")
    elif backend in ("mysql", "mariadb"):
        u = u.set(drivername="mysql+pymysql")
    elif backend == "sqlite":
        if not u.database or u.database == ":memory:":
            raise StorageURLError("--storage: an in-memory SQLite database cannot be shared between processes; "
                                  "give a file, e.g. sqlite:///runs/bench.db")
    else:
        raise StorageURLError(f"--storage: unsupported database {backend!r} (use sqlite, postgresql or mysql)")
    return u.render_as_string(hide_password=False)


def display_url(url: str) -> str:
    """The URL with its password hidden, for messages and reports."""
    return make_url(url).render_as_string(hide_password=True)


def prepare(url: str) -> str:
    """Normalize the URL and make sure a SQLite file's folder exists (called once input is known to be good)."""
    url = normalize_url(url)
    u = make_url(url)
    if u.get_backend_name() == "sqlite" and u.database:
        Path(u.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    return url


def engine_kwargs(url: str) -> dict[str, Any]:
    """Per-dialect pool settings: small pools (one worker is one process), pings to survive server restarts."""
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        # A long busy timeout: many local processes queue for the single writer instead of failing.
        return {"connect_args": {"timeout": 120, "check_same_thread": False}}
    return {"pool_pre_ping": True, "pool_size": 2, "max_overflow": 4, "pool_recycle": 1800,
            "connect_args": {"connect_timeout": 10}}


def _sqlite_immediate(engine: Engine) -> None:
    """Start every SQLite transaction with BEGIN IMMEDIATE.

    A deferred transaction that reads and then writes cannot wait for the lock: SQLite answers "database is locked"
    at once when another process wrote in between. Taking the write lock up front makes writers queue on the busy
    timeout instead (the SQLAlchemy pysqlite recipe).
    """

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _rec: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _configure(engine: Engine) -> Engine:
    if engine.dialect.name == "sqlite":
        _sqlite_immediate(engine)
        engine.dispose()  # pooled connections made before the listeners must not be reused
    return engine


def make_engine(url: str) -> Engine:
    """bench's own engine (ledger tables) on the same database as Optuna's."""
    return _configure(sa.create_engine(url, **engine_kwargs(url)))


def optuna_storage(url: str) -> optuna.storages.RDBStorage:
    """Optuna's RDBStorage with bench's engine options; table creation is retried because it races on PostgreSQL."""

    def build() -> optuna.storages.RDBStorage:
        st = optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs(url))
        _configure(st.engine)
        return st

    return retry(build, "opening Optuna storage")


TRANSIENT_MARKERS = (
    "database is locked", "deadlock", "serialization failure", "could not serialize", "lock wait timeout",
    "server closed the connection", "connection reset", "terminating connection", "lost connection",
    "connection refused", "gone away", "connection is closed", "consuming input failed", "ssl syscall",
    "server login has been failing", "the database system is", "connection timed out", "broken pipe",
    "duplicate key value violates unique constraint \"pg_type", "already exists",
)


def is_transient(err: BaseException) -> bool:
    """Errors that a retry can cure: lost connections, lock contention, deadlocks, racing DDL."""
    if isinstance(err, exc.DBAPIError) and err.connection_invalidated:
        return True
    if isinstance(err, (exc.OperationalError, exc.InterfaceError, exc.ProgrammingError, exc.InternalError,
                        exc.IntegrityError, exc.DisconnectionError)):
        text = str(err).lower()
        return any(m in text for m in TRANSIENT_MARKERS)
    return False


def retry_budget() -> float:
    """Seconds a worker keeps retrying a failing database before giving up (BENCH_DB_RETRY_SECONDS)."""
    return float(os.environ.get("BENCH_DB_RETRY_SECONDS", "120"))


def retry(fn: Callable[[], T], what: str, *, budget: float | None = None) -> T:
    """Call fn, retrying transient database errors with jittered exponential backoff up to a time bound."""
    deadline = time.monotonic() + (retry_budget() if budget is None else budget)
    delay = 0.05
    attempt = 0
    while True:
        try:
            return fn()
        except Exception as err:  # noqa: BLE001 - classified right below
            cause = err.__cause__ if isinstance(err.__cause__, exc.SQLAlchemyError) else err
            if not (is_transient(err) or is_transient(cause)):
                raise
            attempt += 1
            if time.monotonic() + delay > deadline:
                raise StorageUnavailable(f"{what}: database still failing after {attempt} tries: "
                                         f"{str(err).splitlines()[0]}") from err
            log.warning("%s: transient database error (try %d), retrying: %s", what, attempt,
                        str(err).splitlines()[0])
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 5.0)

