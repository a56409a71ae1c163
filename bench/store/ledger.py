"""bench's own tables (experiments, budget slots, workers): exact budgets enforced by the database's constraints."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from bench.spec import canonical_json, diff_fields
from bench.store.record import chain_step, genesis, record_digest, result_json
from bench.store.storage import retry

ROLES = ("tune", "eval", "baseline", "transfer")
FREE, CLAIMED, DONE = "free", "claimed", "done"
OUTCOMES = ("complete", "pruned", "diverged")


class Base(DeclarativeBase):
    pass


class Experiment(Base):
    __tablename__ = "bench_experiments"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(sa.String(64), unique=True)
    spec_hash: Mapped[str] = mapped_column(sa.String(64))
    spec_json: Mapped[str] = mapped_column(sa.Text)
    bench_version: Mapped[str] = mapped_column(sa.String(32))
    created_at: Mapped[float] = mapped_column(sa.Double)


class Slot(Base):
    """One unit of budget. The unique (experiment, role, arm, study, idx) makes the budget a set, not a counter."""

    __tablename__ = "bench_slots"
    __table_args__ = (
        sa.UniqueConstraint("experiment_id", "role", "arm", "study", "idx", name="uq_bench_slot"),
        # idx last: the claim's ORDER BY idx LIMIT 1 then reads one row, so InnoDB locks one row, not the study.
        sa.Index("ix_bench_slots_claim", "experiment_id", "role", "state", "arm", "study", "idx"),
        # One position per finished slot in the record's chain: the database refuses a fork.
        sa.UniqueConstraint("experiment_id", "seq", name="uq_bench_slot_seq"),
    )
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    experiment_id: Mapped[int] = mapped_column(sa.ForeignKey("bench_experiments.id"))
    role: Mapped[str] = mapped_column(sa.String(16))
    arm: Mapped[str] = mapped_column(sa.String(191))  # Arm.key (canonical JSON); 191 fits a MySQL utf8mb4 index
    study: Mapped[int] = mapped_column(sa.Integer)  # replicate tuning study of the arm (0 for fixed-config roles)
    idx: Mapped[int] = mapped_column(sa.Integer)
    state: Mapped[str] = mapped_column(sa.String(16), default=FREE)
    outcome: Mapped[str | None] = mapped_column(sa.String(16), nullable=True)
    worker_id: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)
    lease_expires: Mapped[float | None] = mapped_column(sa.Double, nullable=True)
    claimed_at: Mapped[float | None] = mapped_column(sa.Double, nullable=True)
    finished_at: Mapped[float | None] = mapped_column(sa.Double, nullable=True)
    trial_number: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)
    value: Mapped[float | None] = mapped_column(sa.Double, nullable=True)
    seconds: Mapped[float | None] = mapped_column(sa.Double, nullable=True)
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)  # claims, including lost ones
    lost: Mapped[int] = mapped_column(sa.Integer, default=0)  # claims lost to infrastructure and reclaimed
    payload: Mapped[str | None] = mapped_column(sa.Text, nullable=True)  # eval/baseline: params and seed (JSON)
    # The tamper-evident record (see record_digest): what the slot produced, its digest, and its place in the chain.
    result: Mapped[str | None] = mapped_column(sa.Text, nullable=True)  # canonical JSON of the counted trial
    digest: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)  # sha256 of slot key + outcome + result
    seq: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)  # 1, 2, ... in finish order
    chain: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)  # sha256(previous chain + digest)


class Worker(Base):
    __tablename__ = "bench_workers"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    experiment_id: Mapped[int] = mapped_column(sa.ForeignKey("bench_experiments.id"))
    host: Mapped[str] = mapped_column(sa.String(255))
    pid: Mapped[int] = mapped_column(sa.Integer)
    device: Mapped[str] = mapped_column(sa.String(32))
    started_at: Mapped[float] = mapped_column(sa.Double)
    heartbeat_at: Mapped[float] = mapped_column(sa.Double)
    stopped_at: Mapped[float | None] = mapped_column(sa.Double, nullable=True)
    current_slot: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)
    trials_done: Mapped[int] = mapped_column(sa.Integer, default=0)


EXPERIMENTS = cast(sa.Table, Experiment.__table__)
SLOTS = cast(sa.Table, Slot.__table__)
WORKERS = cast(sa.Table, Worker.__table__)
RECORD_COLUMNS = ("result", "digest", "seq", "chain")  # added in bench 0.2.1; older storages lack them


# (role, arm key, study, idx, payload): one unit of budget as ledger.add_slots takes it.
SlotRow = tuple[str, str, int, int, "dict[str, Any] | None"]


class SpecMismatch(ValueError):
    """The stored experiment was created from a different spec (invariant 1)."""

    def __init__(self, name: str, fields_: list[str]) -> None:
        self.fields = fields_
        super().__init__(f"experiment {name!r} exists in this storage with a different spec; "
                         f"changed fields: {', '.join(fields_) or '(none: only formatting)'}. "
                         "Use a new experiment name or a new storage.")


class ExperimentMissing(LookupError):
    """A worker or status call for an experiment that `bench init` has not created in this storage."""


@dataclass(frozen=True)
class Claim:
    slot_id: int
    role: str
    arm: str  # Arm.key
    study: int
    idx: int
    attempts: int
    payload: dict[str, Any] | None


class OldSchema(RuntimeError):
    """The storage holds bench tables of an earlier layout (slots keyed by depth), which this version cannot use."""


def has_schema(engine: Engine) -> bool:
    """Whether bench's tables exist in this database (read-only commands must not create them)."""
    def look() -> bool:
        insp = sa.inspect(engine)
        if not insp.has_table(EXPERIMENTS.name):
            return False
        if insp.has_table(SLOTS.name) and "arm" not in {c["name"] for c in insp.get_columns(SLOTS.name)}:
            raise OldSchema("this storage was written by bench 0.1 (budget slots keyed by depth, one study per "
                            "depth); bench 0.2 keys them by arm and study: use a new storage")
        return True

    return bool(retry(look, "inspecting storage"))


def create_schema(engine: Engine) -> None:
    """Create bench's tables if absent; retried because concurrent CREATE TABLE races on PostgreSQL/MySQL."""
    has_schema(engine)  # refuses an old layout instead of mixing two
    retry(lambda: Base.metadata.create_all(engine, checkfirst=True), "creating bench tables")
    migrate(engine)


def slot_columns(engine: Engine) -> set[str]:
    return {c["name"] for c in retry(lambda: sa.inspect(engine).get_columns(SLOTS.name), "inspecting storage")}


def migrate(engine: Engine) -> None:
    """Add the record columns to a storage written before they existed (nullable: its finished slots stay
    unrecorded, and the report says they cannot be verified). Safe to race: a duplicate ADD COLUMN is ignored."""
    for name in RECORD_COLUMNS:
        if name in slot_columns(engine):
            continue
        ddl = sa.schema.CreateColumn(SLOTS.c[name]).compile(dialect=engine.dialect)

        def add(ddl: object = ddl, name: str = name) -> None:
            try:
                with engine.begin() as conn:
                    conn.exec_driver_sql(f"ALTER TABLE {SLOTS.name} ADD COLUMN {ddl}")
            except (exc.OperationalError, exc.ProgrammingError):
                if name not in slot_columns(engine):
                    raise

        retry(add, "adding record columns")


def _insert_ignore(conn: Connection, table: sa.Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert rows, silently skipping those that collide with a unique constraint (create-if-absent)."""
    if not rows:
        return
    dialect = conn.dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        conn.execute(pg_insert(table).on_conflict_do_nothing(), list(rows))
    elif dialect == "sqlite":
        conn.execute(table.insert().prefix_with("OR IGNORE"), list(rows))
    else:
        conn.execute(table.insert().prefix_with("IGNORE"), list(rows))


class Ledger:
    """Race-safe operations on one experiment's slots. Every method is one short transaction, retried if transient."""

    def __init__(self, engine: Engine, experiment_id: int) -> None:
        self.engine = engine
        self.experiment_id = experiment_id
        self._columns: list[sa.Column[Any]] | None = None

    @property
    def recorded(self) -> bool:
        """Whether this storage has the record columns (an older one is still readable, just not verifiable)."""
        return all(c in {col.name for col in self._slot_columns()} for c in RECORD_COLUMNS)

    def _slot_columns(self) -> list[sa.Column[Any]]:
        if self._columns is None:
            present = slot_columns(self.engine)
            self._columns = [c for c in SLOTS.c if c.name in present]
        return self._columns

    # ---------------------------------------------------------------- experiments

    @staticmethod
    def ensure_experiment(engine: Engine, name: str, spec: dict[str, Any], spec_hash: str, version: str,
                          slots: Iterable[SlotRow]) -> tuple[int, bool]:
        """Create the experiment and its slots in one transaction, or verify the stored one. Returns (id, created).

        Concurrent callers race on the unique experiment name: exactly one insert wins, the others see the
        IntegrityError, roll back, and then compare hashes.
        """
        rows = list(slots)

        def attempt() -> tuple[int, bool]:
            try:
                with engine.begin() as conn:
                    res = conn.execute(EXPERIMENTS.insert().values(
                        name=name, spec_hash=spec_hash, spec_json=canonical_json(spec), bench_version=version,
                        created_at=time.time()))
                    exp_id = _new_id(res)
                    _insert_ignore(conn, SLOTS, [_slot_row(exp_id, *r) for r in rows])
                    return exp_id, True
            except exc.IntegrityError:
                pass
            return Ledger.check_experiment(engine, name, spec, spec_hash), False

        return retry(attempt, "creating experiment")

    @staticmethod
    def find_experiment(engine: Engine, name: str) -> tuple[int, str, dict[str, Any]] | None:
        def q() -> Any:
            with engine.connect() as conn:
                return conn.execute(sa.select(EXPERIMENTS.c.id, EXPERIMENTS.c.spec_hash, EXPERIMENTS.c.spec_json)
                                    .where(EXPERIMENTS.c.name == name)).first()

        row = retry(q, "reading experiment")
        return None if row is None else (int(row[0]), str(row[1]), json.loads(row[2]))

    @staticmethod
    def check_experiment(engine: Engine, name: str, spec: dict[str, Any], spec_hash: str) -> int:
        found = Ledger.find_experiment(engine, name)
        if found is None:
            raise ExperimentMissing(f"experiment {name!r} is not in this storage; "
                                    "run `bench init` (or `bench run`) first")
        exp_id, stored_hash, stored = found
        if stored_hash != spec_hash:
            raise SpecMismatch(name, diff_fields(stored, spec))
        return exp_id

    # ---------------------------------------------------------------- slots

    def add_slots(self, rows: Iterable[SlotRow]) -> None:
        """Create-if-absent: concurrent callers with the same rows end with one set."""
        data = [_slot_row(self.experiment_id, *r) for r in rows]

        def go() -> None:
            with self.engine.begin() as conn:
                _insert_ignore(conn, SLOTS, data)

        retry(go, "adding slots")

    def claim(self, worker_id: int, lease_seconds: float, roles: Sequence[str] = ROLES) -> Claim | None:
        """Claim one free slot: first role in `roles` with free slots; among its (arm, study) groups the one with
        the least progress (invariant 4), ties broken by study then arm so that every arm's first study fills first."""
        return retry(lambda: self._claim(worker_id, lease_seconds, roles), "claiming a slot")

    def _claim(self, worker_id: int, lease_seconds: float, roles: Sequence[str]) -> Claim | None:
        s = SLOTS.c
        with self.engine.begin() as conn:
            # One claim at a time per experiment: without this lock, racing workers on PostgreSQL/MariaDB read the
            # same progress counts and all pile onto the same least-advanced study (SKIP LOCKED hands each a
            # different row of it), breaking parity by up to one slot per racing worker. The experiment row is
            # locked first, in the same mode and order as finish, so claims and finishes never deadlock.
            conn.execute(sa.select(EXPERIMENTS.c.id).where(EXPERIMENTS.c.id == self.experiment_id)
                         .with_for_update(key_share=True))
            for role in roles:
                mine = (s.experiment_id == self.experiment_id) & (s.role == role)
                progress: dict[tuple[str, int], int] = {(str(a), int(k)): int(n) for a, k, n in conn.execute(
                    sa.select(s.arm, s.study, sa.func.count()).where(mine & (s.state != FREE))
                    .group_by(s.arm, s.study))}
                free = [(str(a), int(k)) for a, k in conn.execute(
                    sa.select(s.arm, s.study).where(mine & (s.state == FREE)).distinct())]
                for arm, study in sorted(free, key=lambda g: (progress.get(g, 0), g[1], g[0])):
                    # SKIP LOCKED: racing workers take different rows instead of queueing (no-op on SQLite,
                    # where BEGIN IMMEDIATE already serializes writers).
                    row = conn.execute(
                        sa.select(s.id, s.role, s.arm, s.study, s.idx, s.attempts, s.payload)
                        .where(mine & (s.arm == arm) & (s.study == study) & (s.state == FREE))
                        .order_by(s.idx).limit(1).with_for_update(skip_locked=True)).first()
                    if row is None:
                        continue
                    now = time.time()
                    conn.execute(SLOTS.update().where(s.id == row.id).values(
                        state=CLAIMED, worker_id=worker_id, lease_expires=now + lease_seconds, claimed_at=now,
                        attempts=row.attempts + 1, trial_number=None))
                    conn.execute(WORKERS.update().where(WORKERS.c.id == worker_id).values(current_slot=row.id))
                    return _claim_of(row, int(row.attempts) + 1)
        return None

    def set_trial_number(self, slot_id: int, worker_id: int, number: int) -> None:
        def go() -> None:
            with self.engine.begin() as conn:
                conn.execute(SLOTS.update().where((SLOTS.c.id == slot_id) & (SLOTS.c.worker_id == worker_id))
                             .values(trial_number=number))

        retry(go, "recording trial number")

    def heartbeat(self, worker_id: int, slot_id: int | None, lease_seconds: float) -> bool:
        """Extend the worker's lease; False if its slot was taken away (the lease had expired and was reclaimed)."""

        def go() -> bool:
            now = time.time()
            held = True
            with self.engine.begin() as conn:
                # Slots before workers, the same lock order as claim and finish (no deadlock between them).
                if slot_id is not None:
                    res = conn.execute(SLOTS.update().where(
                        (SLOTS.c.id == slot_id) & (SLOTS.c.worker_id == worker_id) & (SLOTS.c.state == CLAIMED))
                        .values(lease_expires=now + lease_seconds))
                    held = bool(res.rowcount)
                conn.execute(WORKERS.update().where(WORKERS.c.id == worker_id).values(heartbeat_at=now))
            return held

        return retry(go, "heartbeat")

    def finish(self, slot_id: int, worker_id: int, outcome: str, value: float | None, seconds: float | None,
               trial_number: int | None, result: dict[str, Any] | None = None) -> bool:
        """Mark a claimed slot done. False if this worker no longer holds it (it was reclaimed meanwhile).

        `result` (what the slot produced: studies.trial_record) is stored with its digest and appended to the
        experiment's chain in the same transaction. The experiment row is locked first, so concurrent finishes
        take chain positions one at a time, and the unique (experiment, seq) refuses a fork regardless.
        """
        assert outcome in OUTCOMES, outcome

        def go() -> bool:
            with self.engine.begin() as conn:
                record: dict[str, Any] = {}
                if result is not None:
                    record = self._chain_record(conn, slot_id, outcome, result_json(result))
                res = conn.execute(SLOTS.update().where(
                    (SLOTS.c.id == slot_id) & (SLOTS.c.worker_id == worker_id) & (SLOTS.c.state == CLAIMED))
                    .values(state=DONE, outcome=outcome, value=_finite_or_none(value), seconds=seconds,
                            trial_number=trial_number, finished_at=time.time(), lease_expires=None, **record))
                if res.rowcount:
                    conn.execute(WORKERS.update().where(WORKERS.c.id == worker_id).values(
                        current_slot=None, trials_done=WORKERS.c.trials_done + 1))
                    return True
                # A retry after a commit whose reply was lost: already done by us with this trial is success.
                row = conn.execute(sa.select(SLOTS.c.state, SLOTS.c.worker_id, SLOTS.c.trial_number)
                                   .where(SLOTS.c.id == slot_id)).first()
                return row is not None and (row.state, row.worker_id, row.trial_number) == (DONE, worker_id,
                                                                                            trial_number)

        return retry(go, "finishing slot")

    def _chain_record(self, conn: Connection, slot_id: int, outcome: str, result: str) -> dict[str, Any]:
        """The record columns of a slot about to finish: its digest and the next link of the chain."""
        s = SLOTS.c
        exp = conn.execute(sa.select(EXPERIMENTS.c.name, EXPERIMENTS.c.spec_hash)
                           .where(EXPERIMENTS.c.id == self.experiment_id)
                           .with_for_update(key_share=True)).one()  # PostgreSQL: FOR NO KEY UPDATE
        last = conn.execute(sa.select(s.seq, s.chain).where((s.experiment_id == self.experiment_id)
                                                            & s.seq.is_not(None))
                            .order_by(s.seq.desc()).limit(1)).first()
        key = conn.execute(sa.select(s.role, s.arm, s.study, s.idx).where(s.id == slot_id)).one()
        digest = record_digest(key.role, key.arm, key.study, key.idx, outcome, result)
        previous, seq = (str(last.chain), int(last.seq) + 1) if last else (genesis(exp.name, exp.spec_hash), 1)
        return {"result": result, "digest": digest, "seq": seq, "chain": chain_step(previous, digest)}

    def release(self, slot_id: int, worker_id: int, lost: bool) -> bool:
        """Give a claimed slot back as free (its run did not count); `lost` records an infrastructure loss."""

        def go() -> bool:
            with self.engine.begin() as conn:
                res = conn.execute(SLOTS.update().where(
                    (SLOTS.c.id == slot_id) & (SLOTS.c.worker_id == worker_id) & (SLOTS.c.state == CLAIMED))
                    .values(state=FREE, worker_id=None, lease_expires=None, trial_number=None,
                            lost=SLOTS.c.lost + (1 if lost else 0)))
                if res.rowcount:  # a refused release (not its claim) leaves the worker's own claim shown
                    conn.execute(WORKERS.update().where(WORKERS.c.id == worker_id).values(current_slot=None))
                return bool(res.rowcount)

        return retry(go, "releasing slot")

    def take_expired(self, worker_id: int, lease_seconds: float) -> list[Claim]:
        """Steal the claims whose lease ran out (their worker died), so that this worker can settle them.

        The conditional UPDATE on the old lease value makes the steal atomic without holding locks while the
        caller talks to Optuna (which on SQLite would wait on our own write lock).
        """

        def go() -> list[Claim]:
            now = time.time()
            s = SLOTS.c
            out: list[Claim] = []
            with self.engine.begin() as conn:
                rows = conn.execute(sa.select(s.id, s.role, s.arm, s.study, s.idx, s.attempts, s.payload,
                                              s.lease_expires)
                                    .where((s.experiment_id == self.experiment_id) & (s.state == CLAIMED)
                                           & (s.lease_expires < now))).all()
                for r in rows:
                    res = conn.execute(SLOTS.update().where((s.id == r.id) & (s.state == CLAIMED)
                                                            & (s.lease_expires == r.lease_expires))
                                       .values(worker_id=worker_id, lease_expires=now + lease_seconds))
                    if res.rowcount:
                        out.append(_claim_of(r, int(r.attempts)))
            return out

        return retry(go, "reclaiming expired slots")

    def held_by(self, worker_id: int) -> list[Claim]:
        """The slots this worker holds now (e.g. one claimed just before an interrupt, not yet being run)."""

        def go() -> list[Claim]:
            s = SLOTS.c
            with self.engine.connect() as conn:
                rows = conn.execute(sa.select(s.id, s.role, s.arm, s.study, s.idx, s.attempts, s.payload)
                                    .where((s.experiment_id == self.experiment_id) & (s.state == CLAIMED)
                                           & (s.worker_id == worker_id))).all()
            return [_claim_of(r, int(r.attempts)) for r in rows]

        return retry(go, "reading own claims")

    def expire_claims(self, slot_ids: Sequence[int]) -> int:
        """End the leases of these claimed slots now (their workers are known dead), so the next worker settles
        them at once instead of after --lease-seconds; how many were still claimed."""

        def go() -> int:
            with self.engine.begin() as conn:
                res = conn.execute(SLOTS.update().where(SLOTS.c.id.in_(list(slot_ids)) & (SLOTS.c.state == CLAIMED))
                                   .values(lease_expires=0.0))
                return int(res.rowcount)

        return retry(go, "expiring claims")

    # ---------------------------------------------------------------- workers and reads

    def register_worker(self, host: str, pid: int, device: str) -> int:
        def go() -> int:
            now = time.time()
            with self.engine.begin() as conn:
                res = conn.execute(WORKERS.insert().values(experiment_id=self.experiment_id, host=host, pid=pid,
                                                           device=device, started_at=now, heartbeat_at=now,
                                                           trials_done=0))
                return _new_id(res)

        return retry(go, "registering worker")

    def stop_worker(self, worker_id: int) -> None:
        def go() -> None:
            with self.engine.begin() as conn:
                conn.execute(WORKERS.update().where(WORKERS.c.id == worker_id)
                             .values(stopped_at=time.time(), current_slot=None))

        retry(go, "stopping worker")

    def slots(self, role: str | None = None) -> list[dict[str, Any]]:
        def go() -> list[dict[str, Any]]:
            q = sa.select(*self._slot_columns()).where(SLOTS.c.experiment_id == self.experiment_id)
            if role is not None:
                q = q.where(SLOTS.c.role == role)
            with self.engine.connect() as conn:
                return [dict(r._mapping) for r in conn.execute(
                    q.order_by(SLOTS.c.role, SLOTS.c.arm, SLOTS.c.study, SLOTS.c.idx))]

        return retry(go, "reading slots")

    def workers(self) -> list[dict[str, Any]]:
        def go() -> list[dict[str, Any]]:
            q = sa.select(WORKERS).where(WORKERS.c.experiment_id == self.experiment_id).order_by(WORKERS.c.id)
            with self.engine.connect() as conn:
                return [dict(r._mapping) for r in conn.execute(q)]

        return retry(go, "reading workers")


def _claim_of(row: Any, attempts: int) -> Claim:
    """A claim from a slot row (id, role, arm, study, idx, payload) and its attempt count."""
    return Claim(int(row.id), str(row.role), str(row.arm), int(row.study), int(row.idx), attempts,
                 json.loads(row.payload) if row.payload else None)


def _slot_row(exp_id: int, role: str, arm: str, study: int, idx: int, payload: dict[str, Any] | None
              ) -> dict[str, Any]:
    assert role in ROLES, role
    return {"experiment_id": exp_id, "role": role, "arm": arm, "study": study, "idx": idx, "state": FREE,
            "attempts": 0,
            "lost": 0, "payload": canonical_json(payload) if payload is not None else None}


def _new_id(res: sa.CursorResult[Any]) -> int:
    key = res.inserted_primary_key
    assert key is not None
    return int(key[0])


def _finite_or_none(v: float | None) -> float | None:
    # Diverged trials score +inf; MySQL cannot store inf in a FLOAT column, so the ledger keeps NULL + outcome.
    return v if v is not None and v == v and abs(v) != float("inf") else None
