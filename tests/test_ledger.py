"""Tests for bench.store.ledger on a small ledger, on every supported database: the database's constraints, leases,
and what a done slot means."""

from __future__ import annotations

import contextlib
import math
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.engine import Engine

from bench.store import ledger as ledger_mod
from bench.store.ledger import CLAIMED, DONE, FREE, SLOTS, Ledger, SlotRow, SpecMismatch, create_schema
from bench.store.storage import StorageUnavailable, make_engine

SPEC = {"name": "led", "budget": {"trials": 2}}
ARM_A, ARM_B = '{"depth":1}', '{"depth":2}'
# 2 arms x 1 study x 2 tuning slots.
ROWS: list[SlotRow] = [("tune", arm, 0, i, None) for arm in (ARM_A, ARM_B) for i in range(2)]


@pytest.fixture
def engine(any_url: str) -> Iterator[Engine]:
    """Each ledger test on SQLite, PostgreSQL and MariaDB: claims lock rows (FOR UPDATE, SKIP LOCKED) and insert
    with each dialect's own "ignore duplicates" where the servers differ from SQLite."""
    eng = make_engine(any_url)
    create_schema(eng)
    yield eng
    eng.dispose()


def _ledger(engine: Engine, rows: list[SlotRow] = ROWS) -> tuple[Ledger, int]:
    exp_id, created = Ledger.ensure_experiment(engine, "led", SPEC, "h" * 64, "0.test", rows)
    assert created
    led = Ledger(engine, exp_id)
    return led, led.register_worker("host", 1, "cpu")


def _slot(led: Ledger, slot_id: int) -> dict[str, object]:
    return next(s for s in led.slots() if s["id"] == slot_id)


# ---------------------------------------------------------------- invariant 3: the budget is a set


def test_duplicate_slot_is_refused_by_the_database(engine: Engine) -> None:
    led, _ = _ledger(engine)
    dup = {"experiment_id": led.experiment_id, "role": "tune", "arm": ARM_A, "study": 0, "idx": 1, "state": FREE,
           "attempts": 0, "lost": 0}
    with pytest.raises(exc.IntegrityError), engine.begin() as conn:
        conn.execute(SLOTS.insert().values(**dup))
    # Another study, index or role is another unit of budget, and is accepted.
    with engine.begin() as conn:
        conn.execute(SLOTS.insert().values(**{**dup, "study": 1}))
        conn.execute(SLOTS.insert().values(**{**dup, "idx": 2}))
        conn.execute(SLOTS.insert().values(**{**dup, "role": "eval"}))
    assert len(led.slots()) == 7


def test_add_slots_twice_leaves_one_set(engine: Engine) -> None:
    led, _ = _ledger(engine)
    led.add_slots(ROWS)
    led.add_slots(ROWS[:1])
    assert [(s["arm"], s["idx"]) for s in led.slots()] == [(arm, idx) for _, arm, _, idx, _ in ROWS]


def test_ensure_experiment_twice_same_spec_then_changed_spec(engine: Engine) -> None:
    exp_id, created = Ledger.ensure_experiment(engine, "led", SPEC, "h" * 64, "0.test", ROWS)
    again, created_again = Ledger.ensure_experiment(engine, "led", SPEC, "h" * 64, "0.test", ROWS)
    assert created and not created_again and again == exp_id
    assert len(Ledger(engine, exp_id).slots()) == len(ROWS)
    changed = {"name": "led", "budget": {"trials": 3}}
    with pytest.raises(SpecMismatch) as err:
        Ledger.ensure_experiment(engine, "led", changed, "g" * 64, "0.test", ROWS)
    assert err.value.fields == ["budget.trials"]
    assert str(err.value) == ("experiment 'led' exists in this storage with a different spec; changed fields: "
                              "budget.trials. Use a new experiment name or a new storage.")
    assert str(SpecMismatch("x", [])) == ("experiment 'x' exists in this storage with a different spec; changed "
                                          "fields: (none: only formatting). Use a new experiment name or a new "
                                          "storage.")
    assert str(SpecMismatch("x", ["a", "b"])).split("; ")[1].startswith("changed fields: a, b. Use")


# ---------------------------------------------------------------- claims and invariant 4


def test_claims_spread_across_arms_then_run_out(engine: Engine) -> None:
    led, w = _ledger(engine)
    claims = [led.claim(w, 60) for _ in range(4)]
    assert [(c.arm, c.idx) for c in claims if c] == [(ARM_A, 0), (ARM_B, 0), (ARM_A, 1), (ARM_B, 1)]
    assert led.claim(w, 60) is None  # every slot is claimed: nothing to hand out
    assert all(c is not None and c.attempts == 1 for c in claims)


def test_finished_slot_is_never_claimable_again(engine: Engine) -> None:
    led, w = _ledger(engine, ROWS[:1])
    c = led.claim(w, 60)
    assert c is not None
    assert led.finish(c.slot_id, w, "complete", 0.5, 1.0, 0)
    s = _slot(led, c.slot_id)
    assert (s["state"], s["outcome"], s["value"], s["trial_number"]) == (DONE, "complete", 0.5, 0)
    assert led.claim(w, 60) is None
    other = led.register_worker("host", 2, "cpu")
    assert led.claim(other, 60) is None
    assert led.take_expired(other, 60) == []  # a done slot has no lease to expire
    # Finishing or releasing it again changes nothing: a done slot stays counted.
    assert not led.release(c.slot_id, other, lost=True)
    assert _slot(led, c.slot_id)["state"] == DONE
    assert led.finish(c.slot_id, w, "complete", 0.5, 1.0, 0)  # a retried finish of our own commit is success
    assert not led.finish(c.slot_id, other, "complete", 0.1, 1.0, 0)


def test_diverged_slot_is_counted_not_released(engine: Engine) -> None:
    led, w = _ledger(engine, ROWS[:1])
    c = led.claim(w, 60)
    assert c is not None
    assert led.finish(c.slot_id, w, "diverged", math.inf, 0.3, 0)
    s = _slot(led, c.slot_id)
    # Counted as done with its outcome; +inf is stored as NULL (MySQL has no inf), the outcome says why.
    assert (s["state"], s["outcome"], s["value"], s["lost"]) == (DONE, "diverged", None, 0)
    assert led.claim(w, 60) is None
    assert led.workers()[0]["trials_done"] == 1


def test_release_frees_the_slot_and_counts_the_loss(engine: Engine) -> None:
    led, w = _ledger(engine, ROWS[:1] + ROWS[2:3])
    c = led.claim(w, 60)
    assert c is not None
    led.set_trial_number(c.slot_id, w, 7)
    assert led.heartbeat(w, c.slot_id, 60)
    other = led.register_worker("host", 2, "cpu")
    theirs = led.claim(other, 60)
    assert theirs is not None and led.heartbeat(other, theirs.slot_id, 60)
    assert not led.release(c.slot_id, other, lost=True)  # not its claim: nothing changes
    assert _slot(led, c.slot_id)["state"] == CLAIMED
    assert led.release(c.slot_id, w, lost=True)
    s = _slot(led, c.slot_id)
    assert (s["state"], s["worker_id"], s["lost"], s["lease_expires"], s["trial_number"]) == (FREE, None, 1, None, None)
    assert [(wk["id"], wk["current_slot"]) for wk in led.workers()] == [(w, None), (other, theirs.slot_id)]
    assert _slot(led, theirs.slot_id)["state"] == CLAIMED
    assert not led.release(c.slot_id, w, lost=True)  # already free
    again = led.claim(w, 60)
    assert again is not None and again.slot_id == c.slot_id and again.attempts == 2
    assert led.release(again.slot_id, w, lost=False)  # given back, not lost: the loss count stays
    assert _slot(led, c.slot_id)["lost"] == 1


# ---------------------------------------------------------------- leases


def test_heartbeat_extends_the_lease(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(ledger_mod.time, "time", lambda: now[0])
    led, w = _ledger(engine, ROWS[:1])
    c = led.claim(w, 10)
    assert c is not None
    assert _slot(led, c.slot_id)["lease_expires"] == 1010.0
    now[0] = 1008.0
    assert led.heartbeat(w, c.slot_id, 10)
    assert _slot(led, c.slot_id)["lease_expires"] == 1018.0
    assert led.workers()[0]["heartbeat_at"] == 1008.0
    now[0] = 1009.0
    assert led.heartbeat(w, None, 10) is True  # between slots: nothing to lose, only the worker's beat
    assert led.workers()[0]["heartbeat_at"] == 1009.0 and _slot(led, c.slot_id)["lease_expires"] == 1018.0
    # Past the first lease but within the renewed one: a healthy worker's long trial is not taken away.
    now[0] = 1015.0
    other = led.register_worker("host", 2, "cpu")
    assert led.take_expired(other, 10) == []
    assert _slot(led, c.slot_id)["worker_id"] == w


def test_expired_lease_is_taken_and_the_old_heartbeat_says_so(engine: Engine, monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    now = [1000.0]
    monkeypatch.setattr(ledger_mod.time, "time", lambda: now[0])
    led, w = _ledger(engine, ROWS[:1])
    c = led.claim(w, 10)
    assert c is not None
    now[0] = 1011.0
    other = led.register_worker("host", 2, "cpu")
    (taken,) = led.take_expired(other, 10)
    assert taken.slot_id == c.slot_id
    s = _slot(led, c.slot_id)
    assert (s["state"], s["worker_id"], s["lease_expires"]) == (CLAIMED, other, 1021.0)
    assert led.take_expired(w, 10) == []  # the new lease is live
    assert not led.heartbeat(w, c.slot_id, 10)  # the stalled worker learns its slot is gone
    assert _slot(led, c.slot_id)["lease_expires"] == 1021.0  # and does not extend the new owner's lease
    assert not led.finish(c.slot_id, w, "complete", 0.1, 1.0, 0)
    assert led.finish(c.slot_id, other, "complete", 0.2, 1.0, 1)


def test_slot_rows_hold_the_key_columns(engine: Engine) -> None:
    led, _ = _ledger(engine, [("eval", ARM_A, 2, 5, {"seed": 3, "params": {"lr": 0.1}})])
    (s,) = led.slots()
    assert (s["role"], s["arm"], s["study"], s["idx"], s["state"]) == ("eval", ARM_A, 2, 5, FREE)
    assert s["payload"] == '{"params":{"lr":0.1},"seed":3}'
    c = led.claim(led.register_worker("h", 1, "cpu"), 60, roles=("tune",))
    assert c is None  # roles filter: no tuning slots here
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(SLOTS)).scalar() == 1


# ---------------------------------------------------------------- own claims and known-dead workers' claims


def test_held_by_lists_exactly_this_workers_live_claims_with_their_fields(engine: Engine) -> None:
    """A claim's every field comes back (the worker releases it by these on an interrupt); other workers'
    claims, done slots, free slots and other experiments' claims do not."""
    rows: list[SlotRow] = [("tune", ARM_A, 0, 0, None), ("eval", ARM_B, 1, 3, {"seed": 7, "params": {"lr": 0.1}})]
    led, w = _ledger(engine, rows)
    other = led.register_worker("host", 2, "cpu")
    first = led.claim(w, 60)
    assert first is not None and led.held_by(other) == []
    second = led.claim(w, 60, roles=("eval",))
    assert second is not None
    held = sorted(led.held_by(w), key=lambda c: c.slot_id)
    assert held == sorted([first, second], key=lambda c: c.slot_id)
    ev = next(c for c in held if c.role == "eval")
    assert (ev.arm, ev.study, ev.idx, ev.attempts, ev.payload) == (ARM_B, 1, 3, 1, {"seed": 7, "params": {"lr": 0.1}})
    tune = next(c for c in held if c.role == "tune")
    assert (tune.arm, tune.study, tune.idx, tune.payload) == (ARM_A, 0, 0, None)
    # Done or released slots are no longer held.
    assert led.finish(tune.slot_id, w, "complete", 0.5, 1.0, 0)
    assert [c.slot_id for c in led.held_by(w)] == [ev.slot_id]
    assert led.release(ev.slot_id, w, lost=False)
    assert led.held_by(w) == []
    # Another experiment's claim by a worker with the same id is not this experiment's.
    exp2, _ = Ledger.ensure_experiment(engine, "led2", {**SPEC, "name": "led2"}, "g" * 64, "0.test",
                                       [("tune", ARM_A, 0, 0, None)])
    led2 = Ledger(engine, exp2)
    assert led2.claim(w, 60) is not None
    assert led.held_by(w) == [] and len(led2.held_by(w)) == 1


def test_expire_claims_ends_only_the_named_live_leases_and_counts_them(engine: Engine) -> None:
    led, w = _ledger(engine)
    other = led.register_worker("host", 2, "cpu")
    a, b = led.claim(w, 600), led.claim(w, 600)
    assert a is not None and b is not None
    c = led.claim(other, 600)
    assert c is not None
    assert led.take_expired(other, 60) == []  # every lease is live
    assert led.expire_claims([a.slot_id, b.slot_id]) == 2
    assert _slot(led, c.slot_id)["lease_expires"] > 0  # a claim not named keeps its lease
    stolen = sorted(x.slot_id for x in led.take_expired(other, 60))
    assert stolen == sorted([a.slot_id, b.slot_id])  # reclaimable at once, without waiting 600 s
    assert all(_slot(led, s)["worker_id"] == other for s in stolen)
    # A done slot has no lease to end; ids that hold nothing count zero.
    assert led.finish(c.slot_id, other, "complete", 0.1, 1.0, 0)
    assert led.expire_claims([c.slot_id]) == 0 and led.expire_claims([]) == 0
    assert _slot(led, c.slot_id)["state"] == DONE


def test_take_expired_moves_the_lease_to_the_thief_and_keeps_the_claims_fields(engine: Engine) -> None:
    rows: list[SlotRow] = [("baseline", ARM_B, 0, 4, {"seed": 4})]
    led, w = _ledger(engine, rows)
    thief = led.register_worker("host", 3, "cpu")
    claim = led.claim(w, 600)
    assert claim is not None
    led.expire_claims([claim.slot_id])
    (taken,) = led.take_expired(thief, 120)
    assert (taken.slot_id, taken.role, taken.arm, taken.study, taken.idx, taken.payload) == \
        (claim.slot_id, "baseline", ARM_B, 0, 4, {"seed": 4})
    slot = _slot(led, claim.slot_id)
    assert slot["state"] == CLAIMED and slot["worker_id"] == thief
    assert float(slot["lease_expires"]) > 100  # now + 120 s, not the expired value
    assert led.held_by(thief) == [taken] and led.held_by(w) == []


# Each operation names itself when the database stays unreachable past the retry budget (a worker's log and its
# exit message say which step failed).
_UNREACHABLE_CALLS = [
    ("adding slots", lambda led: led.add_slots(ROWS)),
    ("claiming a slot", lambda led: led.claim(1, 60)),
    ("recording trial number", lambda led: led.set_trial_number(1, 1, 0)),
    ("heartbeat", lambda led: led.heartbeat(1, 1, 60)),
    ("finishing slot", lambda led: led.finish(1, 1, "complete", 0.5, 1.0, 0, {})),
    ("releasing slot", lambda led: led.release(1, 1, lost=True)),
    ("reclaiming expired slots", lambda led: led.take_expired(1, 60)),
    ("reading own claims", lambda led: led.held_by(1)),
    ("expiring claims", lambda led: led.expire_claims([1])),
    ("registering worker", lambda led: led.register_worker("h", 1, "cpu")),
    ("stopping worker", lambda led: led.stop_worker(1)),
    ("reading slots", lambda led: led.slots()),
    ("reading workers", lambda led: led.workers()),
    ("reading experiment", lambda led: Ledger.find_experiment(led.engine, "led")),
    ("inspecting storage", lambda led: ledger_mod.has_schema(led.engine)),
    ("inspecting storage", lambda led: ledger_mod.slot_columns(led.engine)),
    ("creating experiment", lambda led: Ledger.ensure_experiment(led.engine, "led", {}, "h", "0", ROWS)),
]


@pytest.mark.parametrize(("what", "call"), _UNREACHABLE_CALLS, ids=[w for w, _ in _UNREACHABLE_CALLS])
def test_an_unreachable_database_is_reported_with_the_operation(what: str, call: Any,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_DB_RETRY_SECONDS", "0")
    engine = make_engine("postgresql://postgres@127.0.0.1:1/none")  # nothing listens on port 1
    try:
        with pytest.raises(StorageUnavailable, match=rf"^{what}: database still failing after 1 tries: "):
            call(Ledger(engine, 1))
    finally:
        engine.dispose()


def test_migrate_adds_each_missing_record_column_after_present_ones(engine: Engine) -> None:
    """A storage with some of the record columns (here the first, result, and seq) gains the others; a column
    already there is skipped, not a reason to stop."""
    for name in ("digest", "chain"):
        with engine.begin() as conn:
            conn.exec_driver_sql(f"ALTER TABLE {SLOTS.name} DROP COLUMN {name}")
    assert ledger_mod.slot_columns(engine) >= {"result", "seq"}
    assert not ledger_mod.slot_columns(engine) & {"digest", "chain"}
    ledger_mod.migrate(engine)
    assert ledger_mod.slot_columns(engine) >= set(ledger_mod.RECORD_COLUMNS)
    ledger_mod.migrate(engine)  # again: nothing left to add
    assert ledger_mod.slot_columns(engine) >= set(ledger_mod.RECORD_COLUMNS)


def _impatient_engine(url: str) -> Engine:
    """An engine whose sessions wait at most a moment for a row lock (PostgreSQL 200 ms, MariaDB 1 s): a statement
    that would queue behind another transaction fails instead, so a test sees the wait."""
    eng = make_engine(url)
    short = ("SET lock_timeout = '200ms'" if eng.dialect.name == "postgresql"
             else "SET SESSION innodb_lock_wait_timeout = 1")

    def lock_timeout(dbapi: Any, _: object) -> None:
        dbapi.cursor().execute(short)
        dbapi.commit()  # PostgreSQL's SET is undone by the rollback that ends the connection's first transaction

    sa.event.listen(eng, "connect", lock_timeout)  # before the first connection: pooled ones keep their session
    return eng


@contextlib.contextmanager
def _server_and_holder(server: str, request: pytest.FixtureRequest,
                       monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Engine, Engine]]:
    """A fresh database on that server with bench's tables: an impatient engine for the ledger (one try per
    operation, so a lock timeout is an error, not a retry) and a second engine to hold row locks from."""
    monkeypatch.setenv("BENCH_DB_RETRY_SECONDS", "0")
    url = request.getfixturevalue(server)
    eng = _impatient_engine(url)
    create_schema(eng)
    holder = make_engine(url)
    try:
        yield eng, holder
    finally:
        holder.dispose()
        eng.dispose()


@pytest.mark.parametrize("server", ["pg_url", "mysql_url"])
def test_a_claim_takes_the_experiment_row_lock_first(server: str, request: pytest.FixtureRequest,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Claims of one experiment are serialised by a lock on its experiments row (else racing workers read the
    same progress counts and pile onto one study): while another transaction holds that row, a claim waits for
    it. Here the wait is cut short by a lock timeout (the claim fails instead of claiming), and once the holder
    commits the same claim goes through. SQLite has no row locks (its writes are serialised whole)."""
    with _server_and_holder(server, request, monkeypatch) as (eng, holder):
        led, w = _ledger(eng)
        with holder.connect() as conn, conn.begin():
            conn.execute(sa.select(ledger_mod.EXPERIMENTS.c.id)
                         .where(ledger_mod.EXPERIMENTS.c.id == led.experiment_id).with_for_update())
            with pytest.raises((StorageUnavailable, exc.OperationalError)):
                led.claim(w, 60)
        assert led.claim(w, 60) is not None  # the holder committed: the lock is free


def test_a_slot_without_payload_stores_null(engine: Engine) -> None:
    led, _ = _ledger(engine, [("tune", "a", 0, 0, None), ("eval", "a", 0, 0, {"seed": 1})])
    assert sorted((s["role"], s["payload"]) for s in led.slots()) == [("eval", '{"seed":1}'), ("tune", None)]


def test_an_old_layout_is_refused_with_what_to_do(tmp_path: Any) -> None:
    old = make_engine(f"sqlite:///{tmp_path}/old.db")
    with old.begin() as conn:  # bench 0.1's tables: slots keyed by depth, no arm column
        conn.exec_driver_sql(f"CREATE TABLE {ledger_mod.EXPERIMENTS.name} (id INTEGER PRIMARY KEY)")
        conn.exec_driver_sql(f"CREATE TABLE {SLOTS.name} (id INTEGER PRIMARY KEY, depth INTEGER)")
    with pytest.raises(ledger_mod.OldSchema) as err:
        ledger_mod.has_schema(old)
    assert str(err.value) == ("this storage was written by bench 0.1 (budget slots keyed by depth, one study per "
                              "depth); bench 0.2 keys them by arm and study: use a new storage")
    old.dispose()


@pytest.mark.parametrize(("what", "old"), [("creating bench tables", False), ("adding record columns", True)])
def test_a_locked_storage_is_reported_with_the_step_that_failed(what: str, old: bool, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Another process holds the SQLite file's writer lock: inspecting works, but creating the tables (a new
    storage) or adding the record columns (one written before they existed) keeps finding the database locked.
    Past the retry budget the error names that step; once the lock is gone, the same call completes."""
    monkeypatch.setenv("BENCH_DB_RETRY_SECONDS", "0")
    path = tmp_path / "x.db"
    eng = sa.create_engine(f"sqlite:///{path}", connect_args={"timeout": 0.05})  # a short busy wait
    if old:
        create_schema(eng)
        with eng.begin() as conn:
            conn.exec_driver_sql(f"ALTER TABLE {SLOTS.name} DROP COLUMN chain")

    def call() -> None:
        (ledger_mod.migrate if old else create_schema)(eng)

    holder = sqlite3.connect(path)
    holder.execute("BEGIN IMMEDIATE")  # another process is writing
    try:
        with pytest.raises(StorageUnavailable, match=rf"^{what}: database still failing after 1 tries: "
                                                     r"\(sqlite3\.OperationalError\) database is locked$"):
            call()
        assert ledger_mod.has_schema(eng) is old and (not old or "chain" not in ledger_mod.slot_columns(eng))
    finally:
        holder.rollback()
        holder.close()
    call()
    assert "chain" in ledger_mod.slot_columns(eng)
    eng.dispose()


@pytest.mark.parametrize("server", ["pg_url", "mysql_url"])
def test_a_claim_passes_over_slot_rows_another_transaction_holds(server: str, request: pytest.FixtureRequest,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """SKIP LOCKED: a free slot whose row another transaction holds is passed over, never waited for. With arm A's
    slot 0 held: A's slot 1, then B's slot 0 (A is now ahead), then, A having no other free slot, B's slot 1; once
    the holder commits, A's slot 0."""
    with _server_and_holder(server, request, monkeypatch) as (eng, holder):
        led, w = _ledger(eng)
        ids = {(s["arm"], s["idx"]): s["id"] for s in led.slots()}
        claimed = []
        with holder.connect() as conn, conn.begin():
            conn.execute(sa.select(SLOTS.c.id).where(SLOTS.c.id == ids[(ARM_A, 0)]).with_for_update())
            for _ in range(3):
                c = led.claim(w, 60)
                claimed.append(None if c is None else (c.arm, c.idx))
        c = led.claim(w, 60)
        claimed.append(None if c is None else (c.arm, c.idx))
        assert claimed == [(ARM_A, 1), (ARM_B, 0), (ARM_B, 1), (ARM_A, 0)]


def test_a_finish_leaves_workers_free_to_register_meanwhile(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """PostgreSQL: a finish locks the experiment row FOR NO KEY UPDATE, not FOR UPDATE, so rows that reference the
    experiment (a worker registering, slots being added) are inserted while it records instead of queueing behind
    it. (MariaDB has no such mode: there the insert waits for the finish's short transaction.)"""
    monkeypatch.setenv("BENCH_DB_RETRY_SECONDS", "0")
    eng = _impatient_engine(pg_url)
    create_schema(eng)
    other = _impatient_engine(pg_url)
    try:
        led, w = _ledger(eng)
        c = led.claim(w, 60)
        assert c is not None
        meanwhile: list[int] = []
        real = ledger_mod.record_digest

        def while_recording(*args: Any) -> str:  # inside finish's transaction, after its lock on the experiment
            meanwhile.append(Ledger(other, led.experiment_id).register_worker("host2", 2, "cpu"))
            Ledger(other, led.experiment_id).add_slots([("eval", ARM_A, 0, 0, {"seed": 1})])
            return real(*args)

        monkeypatch.setattr(ledger_mod, "record_digest", while_recording)
        assert led.finish(c.slot_id, w, "complete", 0.5, 1.0, 0, {"value": 0.5})
        assert [r["id"] for r in led.workers()] == [w, *meanwhile] and len(led.slots("eval")) == 1
    finally:
        other.dispose()
        eng.dispose()


def test_a_stopped_worker_holds_no_slot(engine: Engine) -> None:
    """A worker stopped while its last claim was still recorded as current (killed mid-run, its slot reclaimed
    later) is shown stopped and holding nothing; its started and heartbeat times are kept."""
    led, w = _ledger(engine)
    c = led.claim(w, 60)
    assert c is not None
    (row,) = led.workers()
    assert (row["current_slot"], row["stopped_at"], row["trials_done"]) == (c.slot_id, None, 0)
    led.stop_worker(w)
    (stopped,) = led.workers()
    assert stopped["current_slot"] is None and stopped["stopped_at"] >= row["heartbeat_at"]
    assert (stopped["started_at"], stopped["heartbeat_at"]) == (row["started_at"], row["heartbeat_at"])


def test_claims_at_equal_progress_go_by_study_then_arm_whatever_the_insert_order(engine: Engine) -> None:
    """Ties in progress are broken by replicate study, then by arm key, so the order of claims is the same on every
    backend and in every run, however the slots were added (here arms in shuffled order, two studies each)."""
    arms = ['{"depth":5}', '{"depth":2}', '{"depth":8}', '{"depth":1}', '{"depth":6}', '{"depth":3}']
    led, w = _ledger(engine, [("tune", arm, k, 0, None) for k in (1, 0) for arm in arms])
    order = []
    while (c := led.claim(w, 60)) is not None:
        order.append((c.study, c.arm))
    assert order == [(k, arm) for k in (0, 1) for arm in sorted(arms)]


def test_an_experiment_not_in_the_storage_is_named_with_what_to_do(engine: Engine) -> None:
    _ledger(engine)
    with pytest.raises(ledger_mod.ExperimentMissing) as err:
        Ledger.check_experiment(engine, "other", SPEC, "h" * 64)
    assert str(err.value) == "experiment 'other' is not in this storage; run `bench init` (or `bench run`) first"
    assert Ledger.check_experiment(engine, "led", SPEC, "h" * 64) == Ledger.find_experiment(engine, "led")[0]


def test_slots_are_listed_in_key_order_whatever_the_insert_order(engine: Engine) -> None:
    """slots() lists by role, arm, study and index, so the report and status read a stable order (here slots added
    newest index first, studies and arms interleaved)."""
    rows: list[SlotRow] = [("tune", arm, k, i, None) for i in (2, 0, 1) for k in (1, 0) for arm in (ARM_B, ARM_A)]
    led, _ = _ledger(engine, rows)
    assert [(s["arm"], s["study"], s["idx"]) for s in led.slots()] == [
        (arm, k, i) for arm in (ARM_A, ARM_B) for k in (0, 1) for i in (0, 1, 2)]
