"""The worker loop: claim a slot of the least-advanced depth → run it → record it; settle slots of dead workers."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import optuna
import torch
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from bench.ledger import CLAIMED, FREE, Claim, Ledger
from bench.objective import Outcome, provenance, run_fixed, run_tuning_trial
from bench.search_space import fixed_distributions
from bench.spec import Spec
from bench.storage import make_engine, optuna_storage
from bench.studies import derived_seed, load_study
from bench.training import resolve_device

log = logging.getLogger("bench.worker")
SLOT_ATTR = "bench_slot"  # trial user attribute linking an Optuna trial to its ledger slot
PROVENANCE_ATTR = "provenance"  # where and how a trial ran: spec hash, versions, host, device, threads


@dataclass
class WorkerOptions:
    device: str = "cpu"
    threads: int | None = None  # torch intra-op threads; None = leave torch's default
    max_trials: int | None = None  # stop after this many slots (any role)
    lease_seconds: float = 120.0  # a claim not heartbeated for this long is presumed dead and reclaimed
    heartbeat_seconds: float = 10.0
    poll_seconds: float = 1.0  # wait between looks while other workers still hold the last slots
    on_event: Callable[[str, dict[str, Any]], None] | None = None  # progress hook (claimed / finished / ...)


@dataclass
class WorkerSummary:
    worker_id: int
    finished: dict[str, int] = field(default_factory=dict)  # outcome -> count
    reclaimed: int = 0
    lost_own: int = 0  # own claims found taken away (this worker stalled past its lease)


class WorkerLoop:
    """One worker process: its own ledger connection, Optuna storage, heartbeat thread and study cache."""

    def __init__(self, spec: Spec, url: str, experiment_id: int, opts: WorkerOptions) -> None:
        self.spec, self.opts = spec, opts
        self.device = resolve_device(opts.device)
        if opts.threads:
            torch.set_num_threads(opts.threads)
        self.ledger = Ledger(make_engine(url), experiment_id)
        self.storage = optuna_storage(url)
        self.worker_id = self.ledger.register_worker(socket.gethostname(), os.getpid(), self.device)
        self.summary = WorkerSummary(self.worker_id)
        self._provenance = {**provenance(spec, self.device), "worker": self.worker_id}
        self._studies: dict[tuple[int, str], optuna.Study] = {}
        self._current: int | None = None
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._heartbeat_loop, name="bench-heartbeat", daemon=True)

    # ---------------------------------------------------------------- loop

    def run(self) -> WorkerSummary:
        self._beat.start()
        try:
            while self.opts.max_trials is None or sum(self.summary.finished.values()) < self.opts.max_trials:
                self._settle_expired()
                claim = self.ledger.claim(self.worker_id, self.opts.lease_seconds)
                if claim is not None:
                    self._run_claim(claim)
                    continue
                states = {s["state"] for s in self.ledger.slots()}
                if FREE in states or self._add_eval_slots():
                    continue  # freed meanwhile (released or reclaimed), or the evaluation phase just opened
                self._sweep_orphans()
                if CLAIMED not in states:
                    break  # everything is done
                time.sleep(self.opts.poll_seconds)  # others hold the last slots: they may yet be lost
        finally:
            self._stop.set()
            self._beat.join(timeout=5)
            self.ledger.stop_worker(self.worker_id)
        return self.summary

    def _heartbeat_loop(self) -> None:
        while not self._stop.wait(self.opts.heartbeat_seconds):
            try:
                if not self.ledger.heartbeat(self.worker_id, self._current, self.opts.lease_seconds):
                    log.warning("worker %d: slot %s was reclaimed by another worker", self.worker_id, self._current)
            except Exception as err:  # noqa: BLE001 - a missed beat must not kill the trial; the lease decides
                log.warning("worker %d: heartbeat failed: %s", self.worker_id, err)

    def _emit(self, event: str, **data: Any) -> None:
        if self.opts.on_event is not None:
            self.opts.on_event(event, data)

    # ---------------------------------------------------------------- one slot

    def study(self, depth: int, role: str) -> optuna.Study:
        key = (depth, role)
        if key not in self._studies:
            self._studies[key] = load_study(self.spec, self.storage, depth, role, self.worker_id)
        return self._studies[key]

    def _run_claim(self, claim: Claim) -> None:
        self._current = claim.slot_id
        trial: optuna.Trial | None = None
        try:
            self._emit("claimed", role=claim.role, depth=claim.depth, idx=claim.idx)
            study = self.study(claim.depth, claim.role)
            if claim.role == "tune":
                trial = study.ask()
                # Two writes, not one per key: each user attribute is its own transaction in Optuna.
                trial.set_user_attr(SLOT_ATTR, claim.slot_id)
                trial.set_user_attr(PROVENANCE_ATTR, {**self._provenance, "attempt": claim.attempts, "role": "tune"})
                self.ledger.set_trial_number(claim.slot_id, self.worker_id, trial.number)
                seed = derived_seed("train", self.spec.task.data_seed, claim.idx)
                out = run_tuning_trial(self.spec, claim.depth, trial, device=self.device, seed=seed)
                number = self._tell(study, trial, out)
            else:
                assert claim.payload is not None
                out = run_fixed(self.spec, claim.depth, claim.payload["params"], int(claim.payload["seed"]),
                                device=self.device)
                number = self._add_fixed_trial(study, claim, out)
        except UpdateFinishedTrialError:
            # Our lease expired (stall, clock skew) and another worker failed this trial and took the slot back:
            # this run is lost, the slot is the reclaimer's business now. Not a crash: carry on.
            number = None
        except BaseException as err:
            # Interrupted or crashed mid-run: the run does not count; the slot goes back to the pool.
            reason = "interrupted" if isinstance(err, KeyboardInterrupt) else f"worker error: {err!r}"[:500]
            self._abandon(claim, trial, reason)
            raise
        finally:
            self._current = None
        if number is None or not self.ledger.finish(claim.slot_id, self.worker_id, out.outcome, out.value,
                                                    out.seconds, number):
            self.summary.lost_own += 1
            self._emit("lost", role=claim.role, depth=claim.depth, idx=claim.idx)
            return
        self.summary.finished[out.outcome] = self.summary.finished.get(out.outcome, 0) + 1
        self._emit("finished", role=claim.role, depth=claim.depth, idx=claim.idx, outcome=out.outcome,
                   value=out.value)
        if claim.role == "tune":
            self._add_eval_slots(claim.depth)

    def _tell(self, study: optuna.Study, trial: optuna.Trial, out: Outcome) -> int | None:
        """Finish the Optuna trial; None if it was already failed by a reclaimer (our lease had expired)."""
        try:
            for key, value in out.attrs.items():
                trial.set_user_attr(key, value)  # flat, so the dashboard can show them as columns
        except UpdateFinishedTrialError:
            return None
        if out.outcome == "pruned":
            state, values = TrialState.PRUNED, None
        else:
            # Diverged trials are a legitimate, worst outcome: +inf keeps them in the study for the sampler.
            state, values = TrialState.COMPLETE, [out.value]

        def tell() -> int | None:
            try:
                return study.tell(trial, values, state=state).number
            except (RuntimeError, ValueError):
                # The tell may have landed before a dropped connection, or a reclaimer failed the trial.
                ft = study._storage.get_trial(trial._trial_id)
                return ft.number if ft.state == state else None

        return tell()

    def _add_fixed_trial(self, study: optuna.Study, claim: Claim, out: Outcome) -> int:
        assert claim.payload is not None
        params = dict(claim.payload["params"])
        dists = fixed_distributions(params)
        attrs = {**out.attrs, SLOT_ATTR: claim.slot_id, "rank": claim.payload.get("rank", 0),
                 "source_trial": claim.payload.get("source_trial"),
                 PROVENANCE_ATTR: {**self._provenance, "attempt": claim.attempts, "role": claim.role}}
        ft = optuna.trial.create_trial(params=params, distributions=dists, value=out.value, user_attrs=attrs,
                                       state=TrialState.COMPLETE)
        study.add_trial(ft)
        return self._find_slot_trial(study, claim.slot_id, (TrialState.COMPLETE,))[0].number

    def _abandon(self, claim: Claim, trial: optuna.Trial | None, reason: str) -> None:
        try:
            if trial is not None:
                self._fail_trial(self.study(claim.depth, claim.role), trial.number, trial._trial_id, reason)
            self.ledger.release(claim.slot_id, self.worker_id, lost=True)
        except Exception as err:  # noqa: BLE001 - best effort; the lease expiry reclaims it anyway
            log.warning("could not release slot %d (%s); it will be reclaimed after its lease", claim.slot_id, err)

    # ---------------------------------------------------------------- recovery

    @staticmethod
    def _find_slot_trial(study: optuna.Study, slot_id: int,
                         states: tuple[TrialState, ...]) -> list[optuna.trial.FrozenTrial]:
        trials = study.get_trials(deepcopy=False, states=states)
        return [t for t in trials if t.user_attrs.get(SLOT_ATTR) == slot_id]

    def _fail_trial(self, study: optuna.Study, number: int, trial_id: int, reason: str) -> None:
        with contextlib.suppress(UpdateFinishedTrialError):  # its worker finished it meanwhile: leave it be
            study._storage.set_trial_user_attr(trial_id, "bench_lost", reason)

        def fail() -> None:
            with contextlib.suppress(RuntimeError, ValueError):  # already finished: nothing to fail
                study.tell(number, state=TrialState.FAIL)

        fail()

    def _settle_expired(self) -> None:
        """Claims whose worker died: count a run that had in fact finished, else fail its trial and free the slot."""
        for claim in self.ledger.take_expired(self.worker_id, self.opts.lease_seconds):
            study = self.study(claim.depth, claim.role)
            if self._count_finished(study, claim):
                continue
            for ft in self._find_slot_trial(study, claim.slot_id, (TrialState.RUNNING,)):
                self._fail_trial(study, ft.number, ft._trial_id, "worker lost: lease expired, slot reclaimed")
            # Look again: the "dead" worker may have told its trial between our first look and the fail above.
            if self._count_finished(study, claim):
                continue
            self.ledger.release(claim.slot_id, self.worker_id, lost=True)
            self.summary.reclaimed += 1
            self._emit("reclaimed", role=claim.role, depth=claim.depth, idx=claim.idx)

    def _count_finished(self, study: optuna.Study, claim: Claim) -> bool:
        """If the slot's run had in fact finished in Optuna, record it as done (it counts) and say so."""
        done = self._find_slot_trial(study, claim.slot_id, (TrialState.COMPLETE, TrialState.PRUNED))
        if not done:
            return False
        ft = min(done, key=lambda t: t.number)
        outcome = ("pruned" if ft.state == TrialState.PRUNED else
                   "diverged" if ft.user_attrs.get("diverged") else "complete")
        value = ft.value if ft.value is not None and outcome != "pruned" else math.nan
        self.ledger.finish(claim.slot_id, self.worker_id, outcome, value, ft.user_attrs.get("seconds"), ft.number)
        return True

    def _sweep_orphans(self) -> None:
        """Fail RUNNING tuning trials that no claimed slot owns (e.g. a trial created twice by a retried write
        whose first commit did land), once they are older than a lease, so studies never keep ghost trials."""
        tune = self.ledger.slots("tune")
        live = {(s["depth"], s["trial_number"]) for s in tune if s["state"] == CLAIMED}
        cutoff = datetime.now() - timedelta(seconds=self.opts.lease_seconds)
        for depth in self.spec.depths:
            # Once every slot of a depth is done, no RUNNING trial there can be anyone's: fail them whatever age.
            finished = all(s["state"] == "done" for s in tune if s["depth"] == depth)
            study = self.study(depth, "tune")
            for ft in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                stale = ft.datetime_start is not None and ft.datetime_start < cutoff
                if (depth, ft.number) not in live and (finished or stale):
                    self._fail_trial(study, ft.number, ft._trial_id, "orphan: no slot owns this trial")

    # ---------------------------------------------------------------- evaluation phase

    def _add_eval_slots(self, only_depth: int | None = None) -> bool:
        """Once a depth's tuning is done, queue its top-k configs × M fresh seeds (idempotent, race-safe)."""
        ev = self.spec.evaluation
        if ev.seeds < 1:
            return False
        tune = self.ledger.slots("tune")
        have_eval = {s["depth"] for s in self.ledger.slots("eval")}
        added = False
        for depth in self.spec.depths:
            if (only_depth is not None and depth != only_depth) or depth in have_eval:
                continue
            mine = [s for s in tune if s["depth"] == depth]
            if not mine or any(s["state"] != "done" for s in mine):
                continue
            counted = {s["trial_number"] for s in mine}
            study = self.study(depth, "tune")
            trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            ranked = sorted((t for t in trials if t.number in counted and t.value is not None
                             and math.isfinite(t.value)), key=lambda t: (t.value, t.number))[: ev.top_k]
            rows = [("eval", depth, rank * ev.seeds + s,
                     {"params": t.params, "seed": ev.seed_offset + s, "rank": rank, "source_trial": t.number})
                    for rank, t in enumerate(ranked) for s in range(ev.seeds)]
            self.ledger.add_slots(rows)
            added = added or bool(rows)
        return added
