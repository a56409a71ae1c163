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
log = logging.getLogger("bench.store.storage")


class StorageURLError(ValueError):
    """A storage URL that bench cannot use (bad input: exit code 2)."""


class StorageUnavailable(RuntimeError):
    """The database kept failing past the retry bound."""


def normalize_url(url: str) -> str:
    """Pick the drivers bench ships with (psycopg 3, PyMySQL) and reject what is not a supported database."""
    try:
        u = make_url(url)
    except exc.ArgumentError:
        raise StorageURLError(
            f"--storage: cannot parse {url!r} as a database URL "
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


def missing_sqlite_file(url: str) -> Path | None:
    """The file a SQLite URL names, when it does not exist (None for an existing file or a database server):
    commands that only read refuse it rather than create an empty database as a side effect of a typo."""
    u = make_url(normalize_url(url))
    if u.get_backend_name() != "sqlite" or not u.database:
        return None
    path = Path(u.database).expanduser()
    return None if path.exists() else path


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


def configure_engine(engine: Engine) -> Engine:
    """Apply bench's per-dialect connection set-up to an engine (SQLite: WAL and BEGIN IMMEDIATE)."""
    if engine.dialect.name == "sqlite":
        _sqlite_immediate(engine)
        engine.dispose()  # pooled connections made before the listeners must not be reused
    return engine


def make_engine(url: str) -> Engine:
    """bench's own engine (ledger tables) on the same database as Optuna's."""
    return configure_engine(sa.create_engine(url, **engine_kwargs(url)))


class RetryingStorage(optuna.storages.BaseStorage):
    """Optuna storage whose every call is retried on transient database errors.

    Optuna's own calls sit deep inside sampling, reporting and pruning (``trial.suggest_*`` writes a param row);
    wrapping the storage once covers them all, instead of wrapping each call site. A retried write that had in
    fact committed is harmless: params and attrs are upserts, a second state change raises (the worker checks),
    and a duplicated ``create_new_trial`` leaves a RUNNING orphan that workers fail when they sweep.
    """

    def __init__(self, rdb: optuna.storages.RDBStorage) -> None:
        self.rdb = rdb
        self._inner = optuna.storages._CachedStorage(rdb)

    def dispose(self) -> None:
        """Close the pooled connections (short-lived commands; workers keep theirs)."""
        self.rdb.engine.dispose()


def _retried(name: str) -> Callable[..., Any]:
    def method(self: RetryingStorage, *args: Any, **kwargs: Any) -> Any:
        def call() -> Any:
            try:
                return getattr(self._inner, name)(*args, **kwargs)
            except optuna.exceptions.StorageInternalError:
                # A connection that died mid-transaction can leave Optuna's thread-local session unusable
                # ("Can't reconnect until invalid transaction is rolled back"): start the retry from a new one.
                self.rdb.scoped_session.remove()
                raise

        return retry(call, f"optuna storage {name}")

    method.__name__ = name
    return method


for _name in [n for n in vars(optuna.storages.BaseStorage) if not n.startswith("_")]:
    if callable(getattr(optuna.storages.BaseStorage, _name)):
        setattr(RetryingStorage, _name, _retried(_name))
RetryingStorage.__abstractmethods__ = frozenset()


def optuna_storage(url: str) -> RetryingStorage:
    """Optuna's RDBStorage with bench's engine options, cached like Optuna does, retried on transient errors.

    Opening is retried too: concurrent first opens race on Optuna's schema and version rows.
    """

    def build() -> optuna.storages.RDBStorage:
        st = optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs(url))
        configure_engine(st.engine)
        return st

    rdb = retry(build, "opening Optuna storage", also=lambda e: isinstance(e, exc.IntegrityError))
    return RetryingStorage(rdb)  # type: ignore[abstract]  # methods are generated above


TRANSIENT_MARKERS = (
    "database is locked", "deadlock", "serialization failure", "could not serialize", "lock wait timeout",
    "server closed the connection", "connection reset", "terminating connection", "lost connection",
    "connection refused", "gone away", "connection is closed", "consuming input failed", "ssl syscall",
    "server login has been failing", "the database system is", "connection timed out", "broken pipe",
    "can't reconnect until invalid transaction is rolled back",
)
# Racing CREATE TABLEs (many processes opening a new database at once); never a plain unique violation on data.
DDL_RACE_MARKERS = ("already exists", "duplicate key value violates unique constraint \"pg_type")


def is_transient(err: BaseException) -> bool:
    """Errors that a retry can cure: lost connections, lock contention, deadlocks, racing DDL."""
    if isinstance(err, exc.DBAPIError) and err.connection_invalidated:
        return True
    text = str(err).lower()
    if isinstance(err, exc.IntegrityError):
        return "pg_type" in text and any(m in text for m in DDL_RACE_MARKERS)
    if isinstance(err, (exc.OperationalError, exc.InterfaceError, exc.ProgrammingError, exc.InternalError,
                        exc.DisconnectionError, exc.PendingRollbackError)):
        return any(m in text for m in TRANSIENT_MARKERS + DDL_RACE_MARKERS)
    return False


def retry_budget() -> float:
    """Seconds a worker keeps retrying a failing database before giving up (BENCH_DB_RETRY_SECONDS)."""
    return float(os.environ.get("BENCH_DB_RETRY_SECONDS", "120"))


def connect_budget() -> float:
    """Seconds an interactive command (init, run, status, report) waits for an unreachable database server
    (BENCH_DB_CONNECT_SECONDS): a person at a terminal wants the cause now, not after a worker's two minutes."""
    return float(os.environ.get("BENCH_DB_CONNECT_SECONDS", "10"))


def reachable(url: str) -> None:
    """Connect once, retrying transient errors for connect_budget() seconds only; StorageUnavailable if not.

    Workers skip this: they ride out a server that is still starting or restarting (retry_budget())."""
    engine = make_engine(normalize_url(url))
    try:
        retry(lambda: engine.connect().close(), "connecting to the database", budget=connect_budget())
    finally:
        engine.dispose()


def retry(fn: Callable[[], T], what: str, *, budget: float | None = None,
          also: Callable[[BaseException], bool] | None = None) -> T:
    """Call fn, retrying transient database errors with jittered exponential backoff up to a time bound."""
    deadline = time.monotonic() + (retry_budget() if budget is None else budget)
    delay = 0.05
    attempt = 0
    while True:
        try:
            return fn()
        except Exception as err:  # noqa: BLE001 - classified right below
            cause = err.__cause__ if isinstance(err.__cause__, exc.SQLAlchemyError) else err
            if not (is_transient(err) or is_transient(cause) or (also is not None and (also(err) or also(cause)))):
                raise
            attempt += 1
            if time.monotonic() + delay > deadline:
                raise StorageUnavailable(f"{what}: database still failing after {attempt} tries: "
                                         f"{str(err).splitlines()[0]}") from err
            log.warning("%s: transient database error (try %d), retrying: %s", what, attempt,
                        str(err).splitlines()[0])
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 5.0)



# Common causes of a failing database, as one line for the user: (markers in the error chain, what to say).
# Optuna hides the cause behind "StorageInternalError: An exception is raised during the commit ... exceeding max
# length": the driver's error is in the exception chain.
DB_CAUSES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("database or disk is full", "disk i/o error", "no space left on device", "could not extend file",
      "disk full", "the table is full"), "database or disk is full"),
    (("readonly database", "read-only"), "the database is read-only to this user"),
    (("unable to open database file",), "cannot open the database file (does its folder exist and is it writable?)"),
    (("database is locked", "lock wait timeout"), "the database is locked by another process"),
    (("connection refused",), "cannot connect to the database server (connection refused)"),
    (("password authentication failed", "access denied for user", "authentication failed"),
     "the database server refused the user name or password"),
    (("could not translate host name", "name or service not known", "nodename nor servname", "getaddrinfo failed",
      "unknown mysql server host", "temporary failure in name resolution"), "unknown database host"),
    (("timeout expired", "connection timed out", "can't connect to mysql server"),
     "cannot reach the database server (timed out)"),
)


def describe_db_error(err: BaseException) -> str | None:
    """One line naming the common cause of a database failure anywhere in err's chain; None if it is not one.

    Never includes the URL or the driver's full text (which may quote SQL and parameters)."""
    seen: set[int] = set()
    chain: list[BaseException] = []
    e: BaseException | None = err
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        chain.append(e)
        e = e.__cause__ or e.__context__
    if not any(isinstance(x, (exc.SQLAlchemyError, optuna.exceptions.StorageInternalError, StorageUnavailable))
               or type(x).__module__.split(".")[0] in ("sqlite3", "psycopg", "pymysql") for x in chain):
        return None
    text = " ".join(str(x).lower() for x in chain)
    for markers, said in DB_CAUSES:
        if any(m in text for m in markers):
            return said
    return None
