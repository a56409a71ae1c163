"""Tests for bench.service.worker with training replaced by a stub: what each outcome does to the ledger, fast."""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

import bench.service.worker as worker_mod
from bench.service.run import attach, init_experiment
from bench.spec import Arm, Spec, load_spec
from bench.store.ledger import Claim, Ledger
from bench.store.record import result_json
from bench.store.storage import make_engine, optuna_storage
from bench.tuning.objective import Outcome
from bench.tuning.studies import derived_seed, spec_study_name, trial_record
from tests.conftest import TINY, tiny_spec


def _stub(outcomes: list[str], limit: int) -> tuple[list[int], Any]:
    """A run_tuning_trial that returns the given outcomes in turn; more than `limit` calls is a runaway loop."""
    calls: list[int] = []

    def fake(spec: Spec, arm: Arm, trial: optuna.Trial, *, device: str, seed: int) -> Outcome:
        calls.append(seed)
        if len(calls) > limit:
            raise RuntimeError(f"run_tuning_trial called {len(calls)} times for a budget of {limit}")
        kind = outcomes[(len(calls) - 1) % len(outcomes)]
        if kind == "diverged":
            return Outcome("diverged", math.inf, 0.01, {"diverged": True, "seconds": 0.01})
        trial.report(0.5, 0)
        if kind == "pruned":
            return Outcome("pruned", math.nan, 0.01, {"pruned": True, "seconds": 0.01})
        return _complete()

    return calls, fake


def _complete() -> Outcome:
    return Outcome("complete", 0.5, 0.01, {"diverged": False, "seconds": 0.01})


def _tune_complete(spec: Spec, arm: Arm, trial: optuna.Trial, *, device: str, seed: int) -> Outcome:
    """A run_tuning_trial whose every trial reports 0.5 once and completes."""
    trial.report(0.5, 0)
    return _complete()


def _interrupted(*args: object, **kwargs: object) -> Outcome:
    raise KeyboardInterrupt


def _run(tmp_path: Path, url: str, outcomes: list[str], monkeypatch: pytest.MonkeyPatch) -> tuple[Spec, list[int]]:
    spec = load_spec(tiny_spec(tmp_path, budget={"trials": 3}))
    init_experiment(spec, url)
    calls, fake = _stub(outcomes, 6)
    monkeypatch.setattr(worker_mod, "run_tuning_trial", fake)
    loop = worker_mod.WorkerLoop(spec, url, attach(spec, url),
                                 worker_mod.WorkerOptions(lease_seconds=30, poll_seconds=0.05))
    loop.run()
    return spec, calls


def _slots(spec: Spec, url: str) -> list[dict[str, Any]]:
    engine = make_engine(url)
    try:
        return Ledger(engine, Ledger.find_experiment(engine, spec.name)[0]).slots("tune")  # type: ignore[index]
    finally:
        engine.dispose()


def test_diverged_trials_are_counted_not_released(tmp_path: Path, sqlite_url: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    spec, calls = _run(tmp_path, sqlite_url, ["diverged"], monkeypatch)
    assert len(calls) == 6  # 2 arms x 3 slots, each run once
    slots = _slots(spec, sqlite_url)
    assert [(s["state"], s["outcome"], s["lost"], s["attempts"]) for s in slots] == [("done", "diverged", 0, 1)] * 6
    study = optuna.load_study(study_name=spec_study_name(spec, spec.arms[0]), storage=optuna_storage(sqlite_url))
    assert [(t.state, t.value) for t in study.trials] == [(TrialState.COMPLETE, math.inf)] * 3


def test_each_outcome_is_recorded_as_such(tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    spec, calls = _run(tmp_path, sqlite_url, ["complete", "pruned", "diverged"], monkeypatch)
    assert len(calls) == 6
    slots = _slots(spec, sqlite_url)
    # Claims alternate arms (least-advanced first): calls 1, 3, 5 go to depth 1, calls 2, 4, 6 to depth 2.
    by_arm: dict[str, list[tuple[str, float | None]]] = {}
    for s in slots:
        by_arm.setdefault(s["arm"], []).append((s["outcome"], s["value"]))
    assert by_arm == {spec.arms[0].key: [("complete", 0.5), ("diverged", None), ("pruned", None)],
                      spec.arms[1].key: [("pruned", None), ("complete", 0.5), ("diverged", None)]}
    study = optuna.load_study(study_name=spec_study_name(spec, spec.arms[1]), storage=optuna_storage(sqlite_url))
    assert [t.state for t in study.trials] == [TrialState.PRUNED, TrialState.COMPLETE, TrialState.COMPLETE]
    # Each run's attributes land on its trial as they are (the report reads seconds and divergence from there).
    shown = [{k: v for k, v in t.user_attrs.items() if k in ("diverged", "pruned", "seconds")} for t in study.trials]
    assert shown == [{"pruned": True, "seconds": 0.01}, {"diverged": False, "seconds": 0.01},
                     {"diverged": True, "seconds": 0.01}]


def test_a_crashed_trial_is_released_as_lost(tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = load_spec(tiny_spec(tmp_path, depths=[1], budget={"trials": 1}))
    init_experiment(spec, sqlite_url)

    def boom(*args: object, **kwargs: object) -> Outcome:
        raise ValueError("disk on fire")

    monkeypatch.setattr(worker_mod, "run_tuning_trial", boom)
    loop = worker_mod.WorkerLoop(spec, sqlite_url, attach(spec, sqlite_url), worker_mod.WorkerOptions())
    with pytest.raises(ValueError, match="disk on fire"):
        loop.run()
    (slot,) = _slots(spec, sqlite_url)
    assert (slot["state"], slot["lost"], slot["worker_id"]) == ("free", 1, None)
    study = optuna.load_study(study_name=spec_study_name(spec, spec.arms[0]), storage=optuna_storage(sqlite_url))
    (t,) = study.trials
    assert t.state == TrialState.FAIL and "disk on fire" in t.user_attrs["bench_lost"]


# ---------------------------------------------------------------- settling other workers' and own claims


def _loops(tmp_path: Path, url: str, n: int = 2, **spec_overrides: Any) -> tuple[Spec, list[worker_mod.WorkerLoop]]:
    spec = load_spec(tiny_spec(tmp_path, **{"depths": [1], "budget": {"trials": 2}, **spec_overrides}))
    init_experiment(spec, url)
    exp = attach(spec, url)
    return spec, [worker_mod.WorkerLoop(spec, url, exp, worker_mod.WorkerOptions(lease_seconds=30, poll_seconds=0.05))
                  for _ in range(n)]


def _half_run(loop: worker_mod.WorkerLoop) -> tuple[Claim, optuna.Trial]:
    """What a worker that then dies has done: claimed a tuning slot, asked its trial and linked the two."""
    claim = loop.ledger.claim(loop.worker_id, 30)
    assert claim is not None
    trial = loop.study(claim.arm, "tune", claim.study).ask()
    trial.set_user_attr(worker_mod.SLOT_ATTR, claim.slot_id)
    loop.ledger.set_trial_number(claim.slot_id, loop.worker_id, trial.number)
    return claim, trial


def _members(tmp_path: Path, url: str, trials: dict[str, int]) -> list[tuple[Spec, int]]:
    """A suite's members: one single-arm experiment per name, with that many tuning trials, initialised."""
    out = []
    for name, n in trials.items():
        spec = load_spec(tiny_spec(tmp_path, name=name, depths=[1], budget={"trials": n}))
        init_experiment(spec, url)
        out.append((spec, attach(spec, url)))
    return out


def _slot(loop: worker_mod.WorkerLoop, slot_id: int) -> dict[str, Any]:
    (row,) = [s for s in loop.ledger.slots() if s["id"] == slot_id]
    return row


@pytest.mark.parametrize("how", ["complete", "diverged", "pruned"])
def test_a_dead_workers_finished_run_is_counted_not_rerun(tmp_path: Path, sqlite_url: str, how: str) -> None:
    spec, (dead, alive) = _loops(tmp_path, sqlite_url)
    claim, trial = _half_run(dead)
    study = dead.study(claim.arm, "tune", claim.study)
    trial.set_user_attr("seconds", 1.25)
    if how == "pruned":
        trial.report(0.7, 0)
        study.tell(trial, state=TrialState.PRUNED)
    else:
        trial.set_user_attr("diverged", how == "diverged")
        study.tell(trial, math.inf if how == "diverged" else 0.4)
    # It died between Optuna's tell and the ledger's finish; its lease then ran out.
    assert dead.ledger.expire_claims([claim.slot_id]) == 1
    events: list[tuple[str, dict[str, Any]]] = []
    alive.opts.on_event = lambda e, d: events.append((e, d))
    alive._settle_expired()
    row = _slot(alive, claim.slot_id)
    value = {"complete": 0.4, "diverged": None, "pruned": None}[how]
    assert (row["state"], row["outcome"], row["value"], row["seconds"], row["trial_number"], row["lost"]) == (
        "done", how, value, 1.25, trial.number, 0)
    assert alive.summary.reclaimed == 0 and events == []  # counted, not reclaimed: nothing to rerun
    (ft,) = study.get_trials()
    assert (row["result"], row["seq"]) == (result_json(trial_record(ft)), 1)  # in the record the audit checks
    assert [t.state for t in study.get_trials()] == [TrialState.PRUNED if how == "pruned" else TrialState.COMPLETE]


def test_a_dead_workers_running_trial_is_failed_and_its_slot_freed(tmp_path: Path, sqlite_url: str) -> None:
    spec, (dead, alive) = _loops(tmp_path, sqlite_url)
    claim, trial = _half_run(dead)
    other = _half_run(dead)[0]  # a second claim of the dead worker, its lease still running: left alone
    dead.ledger.expire_claims([claim.slot_id])
    events: list[tuple[str, dict[str, Any]]] = []
    alive.opts.on_event = lambda e, d: events.append((e, d))
    alive._settle_expired()
    row = _slot(alive, claim.slot_id)
    assert (row["state"], row["worker_id"], row["trial_number"], row["lost"], row["attempts"]) == (
        "free", None, None, 1, 1)
    assert _slot(alive, other.slot_id)["state"] == "claimed"
    ft = alive.study(claim.arm, "tune", claim.study).get_trials()[trial.number]
    assert (ft.state, ft.user_attrs["bench_lost"]) == (TrialState.FAIL, "worker lost: lease expired, slot reclaimed")
    assert alive.summary.reclaimed == 1
    assert events == [("reclaimed", {"experiment": spec.name, "role": "tune", "arm": spec.arms[0].label,
                                     "study": 0, "idx": claim.idx})]


def test_the_earliest_of_two_finished_trials_of_a_slot_counts(tmp_path: Path, sqlite_url: str) -> None:
    _, (dead, alive) = _loops(tmp_path, sqlite_url)
    claim, first = _half_run(dead)
    study = dead.study(claim.arm, "tune", claim.study)
    second = study.ask()  # e.g. a retried write that created the trial twice
    second.set_user_attr(worker_mod.SLOT_ATTR, claim.slot_id)
    study.tell(second, 0.1)
    study.tell(first, 0.9)
    dead.ledger.expire_claims([claim.slot_id])
    alive._settle_expired()
    row = _slot(alive, claim.slot_id)
    assert (row["state"], row["value"], row["trial_number"]) == ("done", 0.9, first.number)


def test_a_trial_told_while_being_settled_is_counted(tmp_path: Path, sqlite_url: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    _, (dead, alive) = _loops(tmp_path, sqlite_url)
    claim, trial = _half_run(dead)
    dead.ledger.expire_claims([claim.slot_id])
    study = dead.study(claim.arm, "tune", claim.study)

    def told_first(*args: object) -> None:  # the "dead" worker's tell lands just before the settler's fail
        study.tell(trial, 0.2)

    monkeypatch.setattr(alive, "_fail_trial", told_first)
    alive._settle_expired()
    row = _slot(alive, claim.slot_id)
    assert (row["state"], row["value"], row["lost"], alive.summary.reclaimed) == ("done", 0.2, 0, 0)


def test_an_interrupt_between_ask_and_run_fails_the_trial_of_each_claim(tmp_path: Path, sqlite_url: str) -> None:
    _, (loop,) = _loops(tmp_path, sqlite_url, n=1)
    _half_run(loop)
    c2, _ = _half_run(loop)
    loop.summary.unreleased.append(c2.slot_id)  # e.g. its _abandon could not reach the storage
    loop.abort()
    assert [(s["state"], s["lost"]) for s in loop.ledger.slots()] == [("free", 1), ("free", 1)]
    trials = loop.study(loop.spec.arms[0].key, "tune").get_trials()
    assert [(t.state, t.user_attrs["bench_lost"]) for t in trials] == [(TrialState.FAIL, "interrupted")] * 2
    assert (loop.summary.released, loop.summary.unreleased) == (2, [])


def test_an_interrupt_after_the_claim_frees_the_slot_before_any_run(tmp_path: Path, sqlite_url: str,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    _, (loop,) = _loops(tmp_path, sqlite_url, n=1)

    def interrupted(claim: Claim) -> None:
        raise KeyboardInterrupt  # lands after the claim, before its run began

    monkeypatch.setattr(loop, "_run_claim", interrupted)
    with pytest.raises(KeyboardInterrupt):
        loop.run()
    assert [(s["state"], s["worker_id"], s["lost"]) for s in loop.ledger.slots()] == [("free", None, 1),
                                                                                     ("free", None, 0)]
    assert (loop.summary.released, loop.summary.unreleased, loop.summary.finished) == (1, [], {})
    assert loop.study(loop.spec.arms[0].key, "tune").get_trials() == []


def test_an_interrupt_mid_trial_fails_the_trial_and_frees_the_slot(tmp_path: Path, sqlite_url: str,
                                                                   monkeypatch: pytest.MonkeyPatch,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    _, (loop,) = _loops(tmp_path, sqlite_url, n=1)
    monkeypatch.setattr(worker_mod, "run_tuning_trial", _interrupted)
    with caplog.at_level(logging.WARNING, logger="bench.service.worker"), pytest.raises(KeyboardInterrupt):
        loop.run()
    assert [r.message for r in caplog.records if r.name == "bench.service.worker"] == []  # given back at once
    assert [(s["state"], s["lost"]) for s in loop.ledger.slots()] == [("free", 1), ("free", 0)]
    (ft,) = loop.study(loop.spec.arms[0].key, "tune").get_trials()
    assert (ft.state, ft.user_attrs["bench_lost"]) == (TrialState.FAIL, "interrupted")
    assert (loop.summary.released, loop.summary.unreleased) == (1, [])


def test_a_release_that_fails_is_left_to_the_lease_and_later_given_back(tmp_path: Path, sqlite_url: str,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    _, (loop,) = _loops(tmp_path, sqlite_url, n=1)
    claim, trial = _half_run(loop)
    real_release = loop.ledger.release

    def down(*args: object, **kwargs: object) -> bool:
        raise ConnectionError("storage down")

    monkeypatch.setattr(loop.ledger, "release", down)
    loop._abandon(claim, trial, "interrupted")  # best effort: no exception escapes
    assert (loop.summary.released, loop.summary.unreleased) == (0, [claim.slot_id])
    assert _slot(loop, claim.slot_id)["state"] == "claimed"
    monkeypatch.setattr(loop.ledger, "release", real_release)
    loop.abort()  # on the way out the storage answers again: the slot is given back after all
    row = _slot(loop, claim.slot_id)
    assert (row["state"], row["lost"]) == ("free", 1)
    assert (loop.summary.released, loop.summary.unreleased) == (1, [])
    for c, t in (_half_run(loop), _half_run(loop)):
        loop._abandon(c, t, "interrupted")
    assert (loop.summary.released, [s["state"] for s in loop.ledger.slots()]) == (3, ["free", "free"])


def test_release_of_own_claims_survives_an_unreachable_storage(tmp_path: Path, sqlite_url: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    _, (loop,) = _loops(tmp_path, sqlite_url, n=1)
    claim, _ = _half_run(loop)

    def down(*args: object, **kwargs: object) -> list[Claim]:
        raise ConnectionError("storage down")

    monkeypatch.setattr(loop.ledger, "held_by", down)
    loop.abort()  # logs; the lease expiry reclaims the slot later
    assert loop.summary.released == 0 and _slot(loop, claim.slot_id)["state"] == "claimed"


def test_failing_an_already_finished_trial_leaves_it_as_it_was(tmp_path: Path, sqlite_url: str,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    _, (loop,) = _loops(tmp_path, sqlite_url, n=1)
    claim, trial = _half_run(loop)
    study = loop.study(claim.arm, "tune", claim.study)
    study.tell(trial, 0.3)
    loop._fail_trial(study, trial.number, trial._trial_id, "too late")
    (ft,) = study.get_trials()
    assert (ft.state, ft.value, "bench_lost" in ft.user_attrs) == (TrialState.COMPLETE, 0.3, False)
    # Finished by its worker between the attribute write and the tell (the storage says so with its own error).
    other, late = _half_run(loop)

    def finished_meanwhile(*args: object, **kwargs: object) -> None:
        raise UpdateFinishedTrialError("finished meanwhile")

    monkeypatch.setattr(study, "tell", finished_meanwhile)
    loop._fail_trial(study, late.number, late._trial_id, "too late")
    assert study.get_trials()[late.number].user_attrs["bench_lost"] == "too late"


def test_progress_is_the_fraction_of_slots_done(tmp_path: Path, sqlite_url: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    _, (loop,) = _loops(tmp_path, sqlite_url, n=1, budget={"trials": 4})
    _, fake = _stub(["complete"], 4)
    monkeypatch.setattr(worker_mod, "run_tuning_trial", fake)
    assert (loop.progress(), loop.finished()) == (0.0, 0)
    assert loop.step() == worker_mod.RAN
    assert (loop.progress(), loop.finished()) == (0.25, 1)
    loop.opts.max_trials = 3
    loop.run()
    assert (loop.progress(), loop.finished(), loop.reached_max()) == (0.75, 3, True)


def test_a_suite_worker_serves_the_least_advanced_member_first(tmp_path: Path, sqlite_url: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    members = _members(tmp_path, sqlite_url, {"a": 2, "b": 10, "c": 10})
    order: list[str] = []
    _, fake = _stub(["complete"], 22)

    def tracked(spec: Spec, *args: Any, **kwargs: Any) -> Outcome:
        order.append(spec.name)
        return fake(spec, *args, **kwargs)

    monkeypatch.setattr(worker_mod, "run_tuning_trial", tracked)
    # One worker never has to wait for others: a suite that slept anyway would sleep for an hour (and time out).
    suite = worker_mod.SuiteWorker(members, sqlite_url, worker_mod.WorkerOptions(max_trials=8, poll_seconds=3600))
    summary = suite.run()
    # Each slot goes to the least advanced member, re-ranked after every slot (ties: member order). a is at 1/2
    # after its first slot, so it waits until b and c have caught up to half (5 of 10 each).
    assert order == ["a", "b", "c", "b", "c", "b", "c", "b"]
    assert (summary.worker_id, summary.finished, summary.released) == (suite.loops[0].worker_id, {"complete": 8}, 0)
    assert [lp.finished() for lp in suite.loops] == [1, 4, 3]
    rest = worker_mod.SuiteWorker(members, sqlite_url, worker_mod.WorkerOptions(poll_seconds=3600))
    assert rest.run().finished == {"complete": 14}  # the rest, until every member is done
    assert order[8:11] == ["c", "b", "c"] and order[11] == "a"  # b, c at 5/10 = a's 1/2: member order, a first
    assert sorted(order) == ["a"] * 2 + ["b"] * 10 + ["c"] * 10
    assert [lp.progress() for lp in rest.loops] == [1.0, 1.0, 1.0]


def test_a_suite_worker_gives_back_every_members_claim_when_interrupted(tmp_path: Path, sqlite_url: str,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    members = _members(tmp_path, sqlite_url, {"a": 2, "b": 2})
    monkeypatch.setattr(worker_mod, "run_tuning_trial", _interrupted)
    suite = worker_mod.SuiteWorker(members, sqlite_url, worker_mod.WorkerOptions())
    with pytest.raises(KeyboardInterrupt):
        suite.run()
    assert [[s["state"] for s in lp.ledger.slots()] for lp in suite.loops] == [["free", "free"], ["free", "free"]]
    assert suite.summary.released == 1
    assert all(not lp._beat.is_alive() for lp in suite.loops)


def test_die_with_parent_arms_the_parent_death_signal(monkeypatch: pytest.MonkeyPatch) -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    got = ctypes.c_int(-1)
    kills: list[tuple[int, int]] = []
    monkeypatch.setattr(worker_mod.os, "kill", lambda pid, sig: kills.append((pid, sig)))
    try:
        assert worker_mod._die_with_parent(os.getppid()) is True
        assert libc.prctl(2, ctypes.byref(got), 0, 0, 0) == 0  # PR_GET_PDEATHSIG
        assert (got.value, kills) == (int(signal.SIGTERM), [])
        worker_mod._die_with_parent(os.getppid() + 1)  # "the parent is already gone": stop at once
        assert kills == [(os.getpid(), signal.SIGTERM)]
    finally:
        libc.prctl(1, 0, 0, 0, 0)  # PR_SET_PDEATHSIG back to none for the rest of the test process


def test_die_with_parent_falls_back_to_the_heartbeat_watch(monkeypatch: pytest.MonkeyPatch) -> None:
    import ctypes

    class NoPrctl:
        def __init__(self, *args: object, **kwargs: object) -> None:
            pass

    def no_libc(*args: object, **kwargs: object) -> None:
        raise OSError("no libc")

    for cdll in (no_libc, NoPrctl):  # OSError, AttributeError
        monkeypatch.setattr(ctypes, "CDLL", cdll)
        assert worker_mod._die_with_parent(os.getppid()) is False
    monkeypatch.undo()
    monkeypatch.setattr(worker_mod.sys, "platform", "darwin")
    monkeypatch.setattr(ctypes, "CDLL", no_libc)  # not even tried off Linux
    assert worker_mod._die_with_parent(os.getppid()) is False


def test_evaluation_and_transfer_slots_rerun_the_ranked_configs_with_fresh_seeds(
        tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = load_spec(tiny_spec(tmp_path, budget={"trials": 3, "studies": 2}, baseline={"from_depth": 1},
                               evaluation={"seeds": 2, "top_k": 2, "seed_offset": 500}))
    init_experiment(spec, sqlite_url)
    # Tuning loss by (replicate, trial number): trial 1 diverges (never re-evaluated), trial 2 is each study's best;
    # replicate 1 is better, so its best is the transferred config.
    table = {(0, 0): 0.6, (0, 1): math.inf, (0, 2): 0.4, (1, 0): 0.5, (1, 1): math.inf, (1, 2): 0.3}

    def tune(spec: Spec, arm: Arm, trial: optuna.Trial, *, device: str, seed: int) -> Outcome:
        value = table[(trial.user_attrs["provenance"]["study"], trial.number)]
        trial.report(value, 0)
        return Outcome("diverged" if math.isinf(value) else "complete", value, 0.01,
                       {"diverged": math.isinf(value), "seconds": 0.01})

    fixed: list[tuple[str, dict[str, Any], int]] = []

    def run_fixed(spec: Spec, arm: Arm, params: dict[str, Any], seed: int, *, device: str) -> Outcome:
        fixed.append((arm.key, params, seed))
        return Outcome("complete", 0.25 + seed / 1e4, 0.02, {"diverged": False, "seconds": 0.02, "test_loss": 0.2})

    monkeypatch.setattr(worker_mod, "run_tuning_trial", tune)
    monkeypatch.setattr(worker_mod, "run_fixed", run_fixed)
    loop = worker_mod.WorkerLoop(spec, sqlite_url, attach(spec, sqlite_url),
                                 worker_mod.WorkerOptions(poll_seconds=0.05))
    summary = loop.run()
    assert summary.finished == {"complete": 2 * 2 * 2 + 2 * 2 * 2 * 2 + 2 * 2, "diverged": 4}
    slots = [{**s, "payload": json.loads(s["payload"]) if s["payload"] else None} for s in loop.ledger.slots()]
    assert {s["state"] for s in slots} == {"done"}
    src = spec.transfer_arm
    assert src is not None
    best = {(a.key, k): loop.study(a.key, "tune", k).get_trials() for a in spec.arms for k in range(2)}
    want_eval = sorted((a.key, k, rank * 2 + s, best[(a.key, k)][n].params, 500 + s, rank, n)
                       for a in spec.arms for k in range(2) for rank, n in enumerate((2, 0)) for s in range(2))
    got_eval = sorted((s["arm"], s["study"], s["idx"], s["payload"]["params"], s["payload"]["seed"],
                       s["payload"]["rank"], s["payload"]["source_trial"]) for s in slots if s["role"] == "eval")
    assert got_eval == want_eval
    t_params = best[(src.key, 1)][2].params
    got_transfer = sorted((s["arm"], s["study"], s["idx"], s["payload"]) for s in slots if s["role"] == "transfer")
    assert got_transfer == sorted((a.key, 0, s, {"params": t_params, "seed": 500 + s, "source_arm": src.key,
                                                 "source_study": 1, "source_trial": 2})
                                  for a in spec.arms for s in range(2))
    assert sorted(fixed, key=repr) == sorted([(a, p, sd) for a, _, _, p, sd, _, _ in want_eval]
                                             + [(a.key, t_params, 500 + s) for a in spec.arms for s in range(2)],
                                             key=repr)
    # Each fixed run is one COMPLETE trial of its arm's study for that role, linked to its slot and source.
    for role in ("eval", "transfer"):
        for arm in spec.arms:
            mine = {s["id"]: s for s in slots if (s["role"], s["arm"]) == (role, arm.key)}
            trials = loop.study(arm.key, role).get_trials()
            assert sorted(t.user_attrs[worker_mod.SLOT_ATTR] for t in trials) == sorted(mine)
            for t in trials:
                slot = mine[t.user_attrs[worker_mod.SLOT_ATTR]]
                p = slot["payload"]
                extra = {k: p[k] for k in ("rank", "source_trial", "source_study", "source_arm") if k in p}
                prov = t.user_attrs[worker_mod.PROVENANCE_ATTR]
                assert (t.state, t.value, t.params, slot["trial_number"], slot["value"]) == (
                    TrialState.COMPLETE, 0.25 + p["seed"] / 1e4, p["params"], t.number, t.value)
                assert {k: t.user_attrs[k] for k in ("study", "diverged", "seconds", "test_loss", *extra)} == {
                    "study": slot["study"], "diverged": False, "seconds": 0.02, "test_loss": 0.2, **extra}
                assert (prov["role"], prov["attempt"], prov["study"], prov["worker"]) == (
                    role, 1, slot["study"], loop.worker_id)


def test_the_heartbeat_thread_extends_the_lease_of_the_running_slot(tmp_path: Path, sqlite_url: str,
                                                                    monkeypatch: pytest.MonkeyPatch,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    spec = load_spec(tiny_spec(tmp_path, depths=[1], budget={"trials": 1}))
    init_experiment(spec, sqlite_url)
    loop = worker_mod.WorkerLoop(spec, sqlite_url, attach(spec, sqlite_url),
                                 worker_mod.WorkerOptions(lease_seconds=60, heartbeat_seconds=0.05))
    seen: list[float] = []

    def long_run(spec: Spec, arm: Arm, trial: optuna.Trial, *, device: str, seed: int) -> Outcome:
        (slot,) = loop.ledger.slots()
        first = slot["lease_expires"]
        deadline = time.monotonic() + 60  # a condition, not a duration: two beats seen (or the test fails)
        while len(seen) < 2 and time.monotonic() < deadline:
            (slot,) = loop.ledger.slots()
            if slot["lease_expires"] > (seen[-1] if seen else first):
                seen.append(slot["lease_expires"])
            time.sleep(0.02)
        trial.report(0.5, 0)
        return _complete()

    monkeypatch.setattr(worker_mod, "run_tuning_trial", long_run)
    with caplog.at_level(logging.WARNING, logger="bench.service.worker"):
        assert loop.run().finished == {"complete": 1}
    assert len(seen) == 2
    assert [r.message for r in caplog.records if r.name == "bench.service.worker"] == []  # beats held: no alarm
    (row,) = loop.ledger.workers()
    assert row["stopped_at"] is not None and row["heartbeat_at"] >= row["started_at"]
    assert not loop._beat.is_alive() and loop._beat.daemon  # a daemon: it never keeps a dying process alive


def _sleep_while_other_finishes(monkeypatch: pytest.MonkeyPatch, other: worker_mod.WorkerLoop, claim: Claim,
                                trial: optuna.Trial) -> list[float]:
    """Replace time.sleep: each sleep is recorded, and meanwhile `other` finishes its half-run claim (complete, 0.5).
    Returns the recorded sleeps."""
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        done = other._tell(other.study(claim.arm, "tune"), trial, _complete())
        assert done is not None
        other.ledger.finish(claim.slot_id, other.worker_id, "complete", 0.5, 0.01, done.number, trial_record(done))

    monkeypatch.setattr(worker_mod.time, "sleep", sleep)
    return sleeps


def test_a_suite_worker_waits_a_poll_while_others_hold_the_last_slots(tmp_path: Path, sqlite_url: str,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    ((spec, exp),) = _members(tmp_path, sqlite_url, {"a": 1})
    other = worker_mod.WorkerLoop(spec, sqlite_url, exp, worker_mod.WorkerOptions())
    claim, trial = _half_run(other)  # another worker runs the only slot
    sleeps = _sleep_while_other_finishes(monkeypatch, other, claim, trial)
    suite = worker_mod.SuiteWorker([(spec, exp)], sqlite_url, worker_mod.WorkerOptions(poll_seconds=0.25))
    assert suite.run().finished == {}
    assert sleeps == [0.25]


def test_the_heartbeat_watch_stops_the_main_thread_when_the_parent_is_gone(tmp_path: Path, sqlite_url: str,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Where no parent-death signal exists, the heartbeat thread polls the parent and, once it is gone, sends
    SIGTERM to the main thread itself (not the process: the signal could land on the beating thread)."""
    import threading

    spec = load_spec(tiny_spec(tmp_path, depths=[1], budget={"trials": 1}))
    init_experiment(spec, sqlite_url)
    loop = worker_mod.WorkerLoop(spec, sqlite_url, attach(spec, sqlite_url),
                                 worker_mod.WorkerOptions(heartbeat_seconds=0.05))
    sent: list[tuple[int, int]] = []

    def pthread_kill(ident: int, sig: int) -> None:
        sent.append((ident, sig))
        loop._stop.set()  # the main thread stops in time: finish() ends the heartbeat

    monkeypatch.setattr(worker_mod.signal, "pthread_kill", pthread_kill)
    monkeypatch.setattr(worker_mod.os, "_exit", lambda code: pytest.fail(f"exited with {code} after a timely stop"))
    loop._watch_parent, loop._signal_orphan = os.getppid() + 1, True  # "the parent is no longer our parent"
    loop._heartbeat_loop()  # returns once the main thread has stopped it
    assert sent == [(threading.main_thread().ident, signal.SIGTERM)]


class _Exited(Exception):
    """Raised by a stand-in for os._exit, so a test sees the exit instead of losing its process."""


@pytest.mark.parametrize("signal_orphan", [True, False])
def test_an_orphan_whose_stop_is_lost_exits_after_the_grace_period(tmp_path: Path, sqlite_url: str,
                                                                   monkeypatch: pytest.MonkeyPatch,
                                                                   signal_orphan: bool) -> None:
    """Its `bench run` gone, the worker is told to stop (by the parent-death signal, or else by the heartbeat
    thread: never both, since a second SIGTERM would cut a finished run's recording). If it is still running
    orphan_grace_seconds later (the stop was lost), the heartbeat thread ends the process with status 130, and the
    heartbeats go on meanwhile."""
    spec = load_spec(tiny_spec(tmp_path, depths=[1], budget={"trials": 1}))
    init_experiment(spec, sqlite_url)
    loop = worker_mod.WorkerLoop(spec, sqlite_url, attach(spec, sqlite_url),
                                 worker_mod.WorkerOptions(heartbeat_seconds=0.01, orphan_grace_seconds=0.2))
    sent: list[int] = []
    exits: list[tuple[int, float]] = []
    beats: list[float] = []
    real_beat = loop.ledger.heartbeat

    def heartbeat(worker_id: int, slot: int | None, lease: float) -> bool:
        beats.append(time.monotonic())
        return real_beat(worker_id, slot, lease)

    def exit_now(code: int) -> None:
        exits.append((code, time.monotonic()))
        raise _Exited

    monkeypatch.setattr(loop.ledger, "heartbeat", heartbeat)
    monkeypatch.setattr(worker_mod.signal, "pthread_kill", lambda ident, sig: sent.append(sig))
    monkeypatch.setattr(worker_mod.os, "_exit", exit_now)
    loop._watch_parent, loop._signal_orphan = os.getppid() + 1, signal_orphan
    started = time.monotonic()
    with pytest.raises(_Exited):
        loop._heartbeat_loop()
    assert sent == ([signal.SIGTERM] if signal_orphan else [])
    ((code, at),) = exits
    assert code == 130 and at - started > 0.2
    assert any(b > started + 0.1 for b in beats)  # still beating while the main thread was (not) stopping


def test_the_parent_is_watched_whether_or_not_its_death_signal_is_armed(tmp_path: Path, sqlite_url: str,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    spec = load_spec(tiny_spec(tmp_path, depths=[1], budget={"trials": 1}))
    init_experiment(spec, sqlite_url)
    for armed in (True, False):
        monkeypatch.setattr(worker_mod, "_die_with_parent", lambda pid, armed=armed: armed)
        loop = worker_mod.WorkerLoop(spec, sqlite_url, attach(spec, sqlite_url),
                                     worker_mod.WorkerOptions(parent_pid=os.getppid()))
        loop.start()
        loop.finish()
        assert (loop._watch_parent, loop._signal_orphan) == (os.getppid(), not armed)
    loop = worker_mod.WorkerLoop(spec, sqlite_url, attach(spec, sqlite_url), worker_mod.WorkerOptions())
    loop.start()
    loop.finish()
    assert (loop._watch_parent, loop._signal_orphan) == (None, False)  # no supervising process: nothing to watch


def test_orphan_running_trials_are_failed_once_older_than_a_lease(tmp_path: Path, sqlite_url: str) -> None:
    """A RUNNING tuning trial that no claimed slot owns (a retried write's twin) is failed when older than a lease,
    and left alone while younger: its slot may yet be claimed by the worker that is creating it."""
    spec = load_spec(tiny_spec(tmp_path, depths=[1], budget={"trials": 2}))
    init_experiment(spec, sqlite_url)

    def sweep(lease: float) -> TrialState:
        loop = worker_mod.WorkerLoop(spec, sqlite_url, attach(spec, sqlite_url),
                                     worker_mod.WorkerOptions(lease_seconds=lease))
        loop._sweep_orphans()
        (ft,) = loop.study(spec.arms[0].key, "tune", 0).get_trials(deepcopy=False)
        return ft.state

    loop = worker_mod.WorkerLoop(spec, sqlite_url, attach(spec, sqlite_url), worker_mod.WorkerOptions())
    ghost = loop.study(spec.arms[0].key, "tune", 0).ask()
    assert sweep(3600.0) == TrialState.RUNNING  # younger than an hour's lease
    started = ghost.datetime_start
    assert started is not None
    while datetime.now() - started <= timedelta(milliseconds=1):  # a condition: a millisecond has passed
        time.sleep(0.001)
    assert sweep(0.001) == TrialState.FAIL
    (failed,) = loop.study(spec.arms[0].key, "tune", 0).get_trials(deepcopy=False)
    assert failed.user_attrs["bench_lost"] == "orphan: no slot owns this trial"


def test_orphans_are_swept_in_every_replicate_and_at_once_where_tuning_is_done(
        tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each replicate study is swept, not only the first; and once every *tuning* slot of a study is done, a RUNNING
    trial there is failed whatever its age, even while that study's re-evaluation slots still wait."""
    spec = load_spec(tiny_spec(tmp_path, depths=[1], budget={"trials": 1, "studies": 2}, evaluation={"seeds": 1}))
    init_experiment(spec, sqlite_url)
    loop = _tuned_without_followups(spec, sqlite_url, monkeypatch)
    assert loop._add_followups() is True  # both studies' re-evaluations queued, none run
    assert [s["state"] for s in loop.ledger.slots("eval")] == ["free", "free"]
    arm = spec.arms[0].key
    ghosts = [loop.study(arm, "tune", k).ask() for k in (0, 1)]  # younger than any lease
    loop._sweep_orphans()
    for k, ghost in enumerate(ghosts):
        ft = loop.study(arm, "tune", k).get_trials(deepcopy=False)[ghost.number]
        assert (ft.state, ft.user_attrs["bench_lost"]) == (TrialState.FAIL, "orphan: no slot owns this trial")


def test_a_studys_evaluation_is_queued_as_soon_as_its_tuning_ends(tmp_path: Path, sqlite_url: str,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The slot that finishes a study queues its re-evaluation at once, so other workers can start on it while
    the other studies still tune (here the worker stops after that one slot)."""
    spec = load_spec(tiny_spec(tmp_path, budget={"trials": 1}, evaluation={"seeds": 2}))
    init_experiment(spec, sqlite_url)
    monkeypatch.setattr(worker_mod, "run_tuning_trial", _tune_complete)
    loop = worker_mod.WorkerLoop(spec, sqlite_url, attach(spec, sqlite_url), worker_mod.WorkerOptions(max_trials=1))
    assert loop.run().finished == {"complete": 1}
    first = spec.arms[0].key
    assert sorted((s["role"], s["arm"], s["state"]) for s in loop.ledger.slots()) == [
        ("eval", first, "free"), ("eval", first, "free"), ("tune", first, "done"), ("tune", spec.arms[1].key, "free")]


def test_every_settled_claim_is_counted_as_reclaimed(tmp_path: Path, sqlite_url: str) -> None:
    _, (dead, alive) = _loops(tmp_path, sqlite_url)
    claims = [_half_run(dead)[0], _half_run(dead)[0]]
    assert dead.ledger.expire_claims([c.slot_id for c in claims]) == 2
    alive._settle_expired()
    assert alive.summary.reclaimed == 2
    assert [(s["state"], s["lost"]) for s in alive.ledger.slots()] == [("free", 1), ("free", 1)]


def test_training_seeds_are_shared_across_arms_and_follow_the_data_seed(tmp_path: Path, sqlite_url: str,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Slot i of replicate k trains with the same seed at every arm (common random numbers), a different seed for
    every slot, and other seeds under another data_seed. The derivation is pinned: a published study's trials are
    rerun with the seeds they had."""
    def seeds_of(data_seed: int) -> dict[tuple[str, int, int], int]:
        spec = load_spec(tiny_spec(tmp_path, name=f"seeds{data_seed}", budget={"trials": 2, "studies": 2},
                                   task={**TINY["task"], "data_seed": data_seed}))
        init_experiment(spec, sqlite_url)
        got: dict[tuple[str, int, int], int] = {}

        def tune(spec: Spec, arm: Arm, trial: optuna.Trial, *, device: str, seed: int) -> Outcome:
            prov = trial.user_attrs[worker_mod.PROVENANCE_ATTR]
            got[(arm.key, prov["study"], trial.number)] = seed
            trial.report(0.5, 0)
            return _complete()

        monkeypatch.setattr(worker_mod, "run_tuning_trial", tune)
        worker_mod.WorkerLoop(spec, sqlite_url, attach(spec, sqlite_url), worker_mod.WorkerOptions()).run()
        return got

    zero, seven = seeds_of(0), seeds_of(7)
    arms = sorted({a for a, _, _ in zero})
    for seeds in (zero, seven):
        per_arm = [[seeds[(a, k, i)] for k in (0, 1) for i in (0, 1)] for a in arms]
        assert per_arm[0] == per_arm[1] and len(set(per_arm[0])) == 4
    assert not set(zero.values()) & set(seven.values())
    # The first 4 bytes of sha256("train/0/0/0") as a 31-bit integer, worked out apart from bench.
    assert zero[(arms[0], 0, 0)] == derived_seed("train", 0, 0, 0) == 334083067


def _tuned_without_followups(spec: Spec, url: str, monkeypatch: pytest.MonkeyPatch) -> worker_mod.WorkerLoop:
    """A worker that has run every tuning slot (each trial complete at 0.5) with follow-ups held back until now:
    its _add_followups is the real method again when it returns."""
    monkeypatch.setattr(worker_mod, "run_tuning_trial", _tune_complete)
    loop = worker_mod.WorkerLoop(spec, url, attach(spec, url), worker_mod.WorkerOptions())
    loop._add_followups = lambda: False  # type: ignore[method-assign]
    loop.run()
    del loop._add_followups  # the method again
    return loop


def test_one_look_after_tuning_queues_every_evaluation_and_the_transfer(tmp_path: Path, sqlite_url: str,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """With follow-ups held back until tuning is over, one call queues the re-evaluation of every study (2 arms x
    2 studies x top 1 x 2 seeds) and the transfer (2 arms x 2 seeds) together (in a normal run they arrive over
    several calls, and a later call would repair one that dropped some). Each tuning trial's provenance names
    its role."""
    spec = load_spec(tiny_spec(tmp_path, budget={"trials": 2, "studies": 2}, baseline={"from_depth": 1},
                               evaluation={"seeds": 2, "top_k": 1}))
    init_experiment(spec, sqlite_url)

    loop = _tuned_without_followups(spec, sqlite_url, monkeypatch)
    assert loop.summary.finished == {"complete": 8}
    assert {s["role"] for s in loop.ledger.slots()} == {"tune"}
    assert loop._add_followups() is True
    roles = [s["role"] for s in loop.ledger.slots()]
    assert (roles.count("tune"), roles.count("eval"), roles.count("transfer")) == (8, 8, 4)
    for arm in spec.arms:
        for k in range(2):
            provenance = [t.user_attrs[worker_mod.PROVENANCE_ATTR] for t in loop.study(arm.key, "tune", k).get_trials()]
            assert [(p["role"], p["study"]) for p in provenance] == [("tune", k), ("tune", k)]


def test_a_stop_while_starting_still_marks_the_worker_stopped(tmp_path: Path, sqlite_url: str) -> None:
    """Registered, then stopped before its loop began (a SIGTERM while the heartbeat starts): the worker row is
    still marked stopped, so `bench run` and status never see a ghost worker (seen once in CI under load)."""
    spec = load_spec(tiny_spec(tmp_path, depths=[1], budget={"trials": 1}))
    init_experiment(spec, sqlite_url)
    loop = worker_mod.WorkerLoop(spec, sqlite_url, attach(spec, sqlite_url), worker_mod.WorkerOptions())

    def stopped_while_starting() -> None:
        raise KeyboardInterrupt

    loop.start = stopped_while_starting  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        loop.run()
    (row,) = loop.ledger.workers()
    assert row["stopped_at"] is not None and [s["state"] for s in loop.ledger.slots()] == ["free"]


def test_a_run_whose_slot_was_taken_away_is_reported_lost_and_rerun(tmp_path: Path, sqlite_url: str,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker that stalled past its lease finds its trial failed by a reclaimer: that run is not recorded, the
    worker counts it as its own loss, tells the progress hook "lost" (`bench worker` prints that word), and the
    slot is run again, this time counted."""
    spec, (slow, rescuer) = _loops(tmp_path, sqlite_url, budget={"trials": 1})
    runs: list[int] = []

    def stalled_once(spec: Spec, arm: Arm, trial: optuna.Trial, *, device: str, seed: int) -> Outcome:
        runs.append(trial.number)
        if len(runs) == 1:  # the lease runs out while training; another worker takes the slot back
            (slot,) = slow.ledger.slots()
            assert slow.ledger.expire_claims([slot["id"]]) == 1
            rescuer._settle_expired()
        trial.report(0.5, 0)
        return _complete()

    monkeypatch.setattr(worker_mod, "run_tuning_trial", stalled_once)
    events: list[tuple[str, dict[str, Any]]] = []
    slow.opts.on_event = lambda e, d: events.append((e, d))
    summary = slow.run()
    where = {"experiment": spec.name, "role": "tune", "arm": spec.arms[0].label, "study": 0, "idx": 0}
    assert [e for e, _ in events] == ["claimed", "lost", "claimed", "finished"]
    assert [d for e, d in events] == [where] * 3 + [{**where, "outcome": "complete", "value": 0.5}]
    assert (summary.lost_own, summary.finished, rescuer.summary.reclaimed, runs) == (1, {"complete": 1}, 1, [0, 1])
    (slot,) = slow.ledger.slots()
    assert (slot["state"], slot["trial_number"], slot["lost"], slot["attempts"]) == ("done", 1, 1, 2)


def test_a_crash_reason_is_cut_to_500_characters(tmp_path: Path, sqlite_url: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The reason stored on a crashed trial is the error's repr after "worker error: ", cut to 500 characters (a
    traceback-sized message would bloat every trial row the dashboard lists)."""
    spec = load_spec(tiny_spec(tmp_path, depths=[1], budget={"trials": 1}))
    init_experiment(spec, sqlite_url)

    def boom(*args: object, **kwargs: object) -> Outcome:
        raise ValueError("x" * 1000)

    monkeypatch.setattr(worker_mod, "run_tuning_trial", boom)
    loop = worker_mod.WorkerLoop(spec, sqlite_url, attach(spec, sqlite_url), worker_mod.WorkerOptions())
    with pytest.raises(ValueError):
        loop.run()
    (t,) = loop.study(spec.arms[0].key, "tune").get_trials()
    assert t.user_attrs["bench_lost"] == "worker error: ValueError('" + "x" * (500 - len("worker error: ValueError('"))


def test_waiting_evaluation_slots_do_not_hold_back_the_transfer(tmp_path: Path, sqlite_url: str,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Whether a study is finished is read from its tuning slots alone: the source arm's first study already has
    its re-evaluation queued (not yet run) when its last study finishes, and that one look queues the transfer."""
    spec = load_spec(tiny_spec(tmp_path, budget={"trials": 1, "studies": 2}, baseline={"from_depth": 1},
                               evaluation={"seeds": 1, "top_k": 1}))
    init_experiment(spec, sqlite_url)

    loop = _tuned_without_followups(spec, sqlite_url, monkeypatch)
    assert loop.summary.finished == {"complete": 4}
    src = spec.transfer_arm
    assert src is not None
    (best,) = loop.study(src.key, "tune", 0).get_trials()
    loop.ledger.add_slots([("eval", src.key, 0, 0, {"params": best.params, "seed": 0, "rank": 0, "source_trial": 0})])
    assert loop._add_followups() is True
    slots = loop.ledger.slots()
    assert [(s["role"], s["state"]) for s in slots if s["role"] != "tune"].count(("eval", "free")) == 4
    assert sorted(s["arm"] for s in slots if s["role"] == "transfer") == sorted(a.key for a in spec.arms)


def test_a_stop_while_suite_members_register_marks_the_registered_ones_stopped(
        tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A SIGTERM while a suite worker's members register (one row per member): the members registered so far are
    marked stopped, so no ghost worker stays "running"."""
    members = _members(tmp_path, sqlite_url, {"a": 1, "b": 1, "c": 1})
    real = worker_mod.Ledger.register_worker
    calls: list[int] = []

    def stopped_at_the_third(self: Ledger, host: str, pid: int, device: str) -> int:
        calls.append(self.experiment_id)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, host, pid, device)

    monkeypatch.setattr(worker_mod.Ledger, "register_worker", stopped_at_the_third)
    with pytest.raises(KeyboardInterrupt):
        worker_mod.SuiteWorker(members, sqlite_url, worker_mod.WorkerOptions())
    monkeypatch.undo()
    engine = make_engine(sqlite_url)
    try:
        rows = {exp: Ledger(engine, exp).workers() for _, exp in members}
    finally:
        engine.dispose()
    assert calls == [exp for _, exp in members]
    assert [[r["stopped_at"] is not None for r in rows[exp]] for _, exp in members] == [[True], [True], []]


def test_a_worker_waits_a_poll_while_others_hold_the_last_slots(tmp_path: Path, sqlite_url: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing to claim but another worker still runs the last slot (which it may yet lose): the worker sleeps one
    poll and looks again, and stops once that slot is done."""
    _, (other, loop) = _loops(tmp_path, sqlite_url, budget={"trials": 1})
    claim, trial = _half_run(other)
    sleeps = _sleep_while_other_finishes(monkeypatch, other, claim, trial)
    loop.opts.poll_seconds = 0.25
    assert loop.run().finished == {}
    assert sleeps == [0.25]
