"""The worker loop: claim a slot of the least-advanced arm and study, run it, record it; settle dead workers."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import optuna
import torch
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from bench.spec import Spec
from bench.store.ledger import CLAIMED, FREE, Claim, Ledger, SlotRow
from bench.store.ledger import DONE as DONE_STATE
from bench.store.storage import make_engine, optuna_storage
from bench.trainers.training import resolve_device
from bench.tuning.objective import Outcome, provenance, run_fixed, run_tuning_trial
from bench.tuning.search_space import fixed_distributions
from bench.tuning.studies import derived_seed, load_study, trial_record, tuning_loss

log = logging.getLogger("bench.service.worker")
SLOT_ATTR = "bench_slot"  # trial user attribute linking an Optuna trial to its ledger slot
PROVENANCE_ATTR = "provenance"  # where and how a trial ran: spec hash, versions, host, device, threads


class HeldSignals:
    """SIGINT and SIGTERM held back while a finished run is being recorded, then delivered: an interrupt between
    Optuna's tell and the ledger's finish would leave a finished trial whose slot is neither done nor free."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self._old: dict[int, Any] = {}
        self._held: list[int] = []

    def start(self) -> None:
        if self._old or threading.current_thread() is not threading.main_thread():
            return  # handlers can only be set from the main thread; elsewhere signals are not ours to defer
        for s in self.SIGNALS:
            self._old[s] = signal.signal(s, self._hold)

    def _hold(self, signum: int, _frame: object) -> None:
        self._held.append(signum)
        if len(self._held) > 1:
            self._held = []  # delivered now, not again at stop()
            raise KeyboardInterrupt  # a second signal: the user insists (e.g. the storage hangs while recording)

    def stop(self) -> None:
        for s, handler in self._old.items():
            signal.signal(s, handler)
        self._old = {}
        held, self._held = self._held, []
        if held:
            signal.raise_signal(held[0])  # the original disposition decides: KeyboardInterrupt, ignore, or exit


RAN, AGAIN, WAIT, DONE = "ran", "again", "wait", "done"  # what one WorkerLoop.step found
EXIT_STOPPED = 130  # the exit status of a stopped worker (the CLI's "interrupted")


@dataclass
class WorkerOptions:
    device: str = "cpu"
    threads: int | None = None  # torch intra-op threads; None = leave torch's default
    max_trials: int | None = None  # stop after this many slots (any role)
    lease_seconds: float = 120.0  # a claim not heartbeated for this long is presumed dead and reclaimed
    heartbeat_seconds: float = 10.0
    poll_seconds: float = 1.0  # wait between looks while other workers still hold the last slots
    on_event: Callable[[str, dict[str, Any]], None] | None = None  # progress hook (claimed / finished / ...)
    # The supervising process (`bench run`): once it is gone this worker stops like on SIGTERM, releasing its trial.
    parent_pid: int | None = None
    # A worker still running this long after its `bench run` is gone exits outright (its claim is then freed when
    # its lease expires): a stop that was lost on the way must not leave an orphan training on its own.
    orphan_grace_seconds: float = 30.0


@dataclass
class WorkerSummary:
    worker_id: int
    finished: dict[str, int] = field(default_factory=dict)  # outcome -> count
    reclaimed: int = 0
    lost_own: int = 0  # own claims found taken away (this worker stalled past its lease)
    released: int = 0  # own claims given back when interrupted or crashed
    unreleased: list[int] = field(default_factory=list)  # slots that could not be given back (the lease frees them)


def _die_with_parent(parent_pid: int) -> bool:
    """Ask Linux to send this process SIGTERM when its parent dies, and stop at once if the parent is already gone.
    False where that is not available: then the heartbeat thread watches the parent's pid instead."""
    armed = False
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            import ctypes

            pr_set_pdeathsig = 1  # prctl(2): the signal this process gets when its parent dies
            armed = ctypes.CDLL(None).prctl(pr_set_pdeathsig, int(signal.SIGTERM)) == 0
    if os.getppid() != parent_pid:
        os.kill(os.getpid(), signal.SIGTERM)
    return armed


class WorkerLoop:
    """One worker process: its own ledger connection, Optuna storage, heartbeat thread and study cache."""

    def __init__(self, spec: Spec, url: str, experiment_id: int, opts: WorkerOptions) -> None:
        self.spec, self.opts = spec, opts
        self.device = resolve_device(opts.device)
        if opts.threads:
            torch.set_num_threads(opts.threads)
        self.ledger = Ledger(make_engine(url), experiment_id)
        self.storage = optuna_storage(url)
        machine = provenance(spec, self.device)
        self._studies: dict[tuple[str, str, int], optuna.Study] = {}
        self._current: int | None = None
        self._stop = threading.Event()
        self._watch_parent: int | None = None  # the supervising process, polled by the heartbeat thread
        self._signal_orphan = False  # the heartbeat thread sends the stop itself (no parent-death signal armed)
        self._beat = threading.Thread(target=self._heartbeat_loop, name="bench-heartbeat", daemon=True)
        # Registered last, and run() enters its try at once: a stop signal between registering and the loop must
        # still reach finish(), or the worker row stays "running" for ever.
        self.worker_id = self.ledger.register_worker(socket.gethostname(), os.getpid(), self.device)
        self.summary = WorkerSummary(self.worker_id)
        self._provenance = {**machine, "worker": self.worker_id}

    # ---------------------------------------------------------------- loop

    def run(self) -> WorkerSummary:
        try:
            self.start()
            while not self.reached_max():
                step = self.step()
                if step == DONE:
                    break
                if step == WAIT:
                    time.sleep(self.opts.poll_seconds)  # others hold the last slots: they may yet be lost
        except BaseException:
            self.abort()
            raise
        finally:
            self.finish()
        return self.summary

    def start(self) -> None:
        """Arm the parent watch and start heartbeating (before the first claim)."""
        if self.opts.parent_pid is not None:
            # Linux's parent-death signal stops the worker at once; the heartbeat thread watches the parent anyway,
            # to send that stop where no such signal exists, and to end a worker whose stop got lost.
            self._signal_orphan = not _die_with_parent(self.opts.parent_pid)
            self._watch_parent = self.opts.parent_pid
        self._beat.start()

    def reached_max(self) -> bool:
        return self.opts.max_trials is not None and self.finished() >= self.opts.max_trials

    def finished(self) -> int:
        return sum(self.summary.finished.values())

    def step(self) -> str:
        """One look at the ledger: RAN a slot, AGAIN (work appeared: look again at once), WAIT (others hold the last
        slots, which may yet be lost) or DONE (every slot of the experiment is done)."""
        self._settle_expired()
        claim = self.ledger.claim(self.worker_id, self.opts.lease_seconds)
        if claim is not None:
            self._run_claim(claim)
            return RAN
        states = {s["state"] for s in self.ledger.slots()}
        if FREE in states or self._add_followups():
            return AGAIN  # freed meanwhile (released or reclaimed), or the evaluation phase just opened
        self._sweep_orphans()
        return WAIT if CLAIMED in states else DONE

    def abort(self) -> None:
        """On an interrupt or crash: give back a claim taken just before it, before its run began."""
        self._release_own()

    def finish(self) -> None:
        """Stop heartbeating and mark this worker stopped (always, after start)."""
        self._stop.set()
        if self._beat.is_alive():
            self._beat.join(timeout=5)
        self.ledger.stop_worker(self.worker_id)

    def progress(self) -> float:
        """Fraction of this experiment's slots that are done (a suite worker serves the least advanced first)."""
        slots = self.ledger.slots()
        return sum(s["state"] == DONE_STATE for s in slots) / len(slots) if slots else 1.0

    def _heartbeat_loop(self) -> None:
        # Wake at least once a second to notice a dead parent; beat every heartbeat_seconds.
        next_beat = time.monotonic() + self.opts.heartbeat_seconds
        orphaned_at: float | None = None
        while not self._stop.wait(max(0.0, min(1.0, next_beat - time.monotonic()))):
            if orphaned_at is None and self._watch_parent is not None and os.getppid() != self._watch_parent:
                orphaned_at = time.monotonic()
                log.warning("worker %d: its `bench run` (pid %d) is gone: stopping", self.worker_id,
                            self._watch_parent)
                if self._signal_orphan:
                    # To the main thread itself (a signal to the process may reach this thread and leave a blocking
                    # call in the main thread waiting): it stops as on SIGTERM and releases its trial. Not where the
                    # parent-death signal already came: a second SIGTERM would cut the recording of a finished run.
                    signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGTERM)
            if orphaned_at is not None and time.monotonic() - orphaned_at > self.opts.orphan_grace_seconds:
                log.warning("worker %d: still running %g s after its `bench run` ended: exiting now (its claim is "
                            "freed when its lease expires)", self.worker_id, self.opts.orphan_grace_seconds)
                os._exit(EXIT_STOPPED)
            if time.monotonic() < next_beat:
                continue
            next_beat = time.monotonic() + self.opts.heartbeat_seconds
            slot = self._current  # read once: the main thread may finish the slot meanwhile
            try:
                held = self.ledger.heartbeat(self.worker_id, slot, self.opts.lease_seconds)
            except Exception as err:  # noqa: BLE001 - a missed beat must not kill the trial; the lease decides
                log.warning("worker %d: heartbeat failed: %s", self.worker_id, err)
                continue
            # Not held because the main thread finished it in between is the normal end of a slot, not an alarm.
            if not held and slot is not None and self._current == slot:
                log.warning("worker %d: slot %d was reclaimed by another worker", self.worker_id, slot)

    def _emit(self, event: str, **data: Any) -> None:
        if self.opts.on_event is not None:
            self.opts.on_event(event, {"experiment": self.spec.name, **data})

    # ---------------------------------------------------------------- one slot

    def study(self, arm: str, role: str, study: int = 0) -> optuna.Study:
        """The Optuna study of a slot: per (arm, replicate) for tuning, one per arm for the fixed-config roles."""
        key = (arm, role, study if role == "tune" else 0)
        if key not in self._studies:
            self._studies[key] = load_study(self.spec, self.storage, self.spec.arm(arm), role, key[2],
                                            self.worker_id)
        return self._studies[key]

    def _claim_study(self, claim: Claim) -> optuna.Study:
        return self.study(claim.arm, claim.role, claim.study)

    def _run_claim(self, claim: Claim) -> None:
        self._current = claim.slot_id
        trial: optuna.Trial | None = None
        hold = HeldSignals()
        try:
            self._emit("claimed", **self._where(claim))
            study = self._claim_study(claim)
            arm = self.spec.arm(claim.arm)
            if claim.role == "tune":
                trial = study.ask()
                # Two writes, not one per key: each user attribute is its own transaction in Optuna.
                trial.set_user_attr(SLOT_ATTR, claim.slot_id)
                trial.set_user_attr(PROVENANCE_ATTR, {**self._provenance, "attempt": claim.attempts, "role": "tune",
                                                      "study": claim.study})
                self.ledger.set_trial_number(claim.slot_id, self.worker_id, trial.number)
                # Replicate k of every arm trains with the same seeds (common random numbers across arms).
                seed = derived_seed("train", self.spec.data_seed, claim.study, claim.idx)
                out = run_tuning_trial(self.spec, arm, trial, device=self.device, seed=seed)
                hold.start()
                done = self._tell(study, trial, out)
            else:
                assert claim.payload is not None
                out = run_fixed(self.spec, arm, dict(claim.payload["params"]), int(claim.payload["seed"]),
                                device=self.device)
                hold.start()
                done = self._add_fixed_trial(study, claim, out)
        except UpdateFinishedTrialError:
            # Our lease expired (stall, clock skew) and another worker failed this trial and took the slot back:
            # this run is lost, the slot is the reclaimer's business now. Not a crash: carry on.
            done = None
        except BaseException as err:
            # Interrupted or crashed mid-run: the run does not count; the slot goes back to the pool.
            reason = "interrupted" if isinstance(err, KeyboardInterrupt) else f"worker error: {err!r}"[:500]
            try:
                self._abandon(claim, trial, reason)
            finally:
                hold.stop()
            raise
        finally:
            self._current = None
        try:
            recorded = done is not None and self.ledger.finish(claim.slot_id, self.worker_id, out.outcome,
                                                               out.value, out.seconds, done.number, trial_record(done))
        finally:
            hold.stop()  # an interrupt that arrived while the run was being recorded takes effect now
        if not recorded:
            self.summary.lost_own += 1
            self._emit("lost", **self._where(claim))
            return
        self.summary.finished[out.outcome] = self.summary.finished.get(out.outcome, 0) + 1
        self._emit("finished", **self._where(claim), outcome=out.outcome, value=out.value)
        if claim.role == "tune":
            self._add_followups()

    def _where(self, claim: Claim) -> dict[str, Any]:
        """How progress events name a slot: phase, arm label, replicate study and index."""
        return {"role": claim.role, "arm": self.spec.arm(claim.arm).label, "study": claim.study, "idx": claim.idx}

    def _tell(self, study: optuna.Study, trial: optuna.Trial, out: Outcome) -> optuna.trial.FrozenTrial | None:
        """Finish the Optuna trial and read it back as stored; None if it was already failed by a reclaimer (our
        lease had expired)."""
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

        # The tell may have landed before a dropped connection, or a reclaimer failed the trial: read it back.
        with contextlib.suppress(RuntimeError, ValueError):
            study.tell(trial, values, state=state)
        ft = study._storage.get_trial(trial._trial_id)
        return ft if ft.state == state else None

    def _add_fixed_trial(self, study: optuna.Study, claim: Claim, out: Outcome) -> optuna.trial.FrozenTrial | None:
        """Record a fixed-config run once: only while this worker still holds the slot. The heartbeat both checks
        and renews the lease, so no reclaimer can take the slot in the milliseconds the write needs; a stalled
        worker whose slot was reclaimed records nothing (its run is lost, the reclaimer's rerun counts)."""
        assert claim.payload is not None
        if not self.ledger.heartbeat(self.worker_id, claim.slot_id, self.opts.lease_seconds):
            return None
        params = dict(claim.payload["params"])
        attrs: dict[str, Any] = {**out.attrs, SLOT_ATTR: claim.slot_id, "study": claim.study,
                 **{k: claim.payload[k] for k in ("rank", "source_trial", "source_study", "source_arm")
                    if k in claim.payload},
                 PROVENANCE_ATTR: {**self._provenance, "attempt": claim.attempts, "role": claim.role,
                                   "study": claim.study}}
        dists = fixed_distributions(params, self.spec.search_space)
        ft = optuna.trial.create_trial(params=params, distributions=dists, value=out.value,
                                       user_attrs=attrs, state=TrialState.COMPLETE)
        study.add_trial(ft)
        return self._find_slot_trial(study, claim.slot_id, (TrialState.COMPLETE,))[0]

    def _abandon(self, claim: Claim, trial: optuna.Trial | None, reason: str) -> None:
        try:
            if trial is not None:
                self._fail_trial(self._claim_study(claim), trial.number, trial._trial_id, reason)
            self.ledger.release(claim.slot_id, self.worker_id, lost=True)
            self.summary.released += 1
        except Exception as err:  # noqa: BLE001 - best effort; the lease expiry reclaims it anyway
            self.summary.unreleased.append(claim.slot_id)
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
            if self._settle(claim, "worker lost: lease expired, slot reclaimed"):
                self.summary.reclaimed += 1
                self._emit("reclaimed", **self._where(claim))

    def _settle(self, claim: Claim, reason: str) -> bool:
        """Count a held claim's run if it had in fact finished, else fail its trial and free it (True)."""
        study = self._claim_study(claim)
        if self._count_finished(study, claim):
            return False
        for ft in self._find_slot_trial(study, claim.slot_id, (TrialState.RUNNING,)):
            self._fail_trial(study, ft.number, ft._trial_id, reason)
        # Look again: the "dead" worker may have told its trial between our first look and the fail above.
        if self._count_finished(study, claim):
            return False
        self.ledger.release(claim.slot_id, self.worker_id, lost=True)
        return True

    def _release_own(self) -> None:
        """On the way out after an interrupt or crash: free whatever this worker still holds (best effort)."""
        try:
            for claim in self.ledger.held_by(self.worker_id):
                if self._settle(claim, "interrupted"):
                    self.summary.released += 1
                    if claim.slot_id in self.summary.unreleased:
                        self.summary.unreleased.remove(claim.slot_id)
        except Exception as err:  # noqa: BLE001 - the lease expiry reclaims it anyway
            log.warning("worker %d: could not release its claims (%s); they are reclaimed after the lease",
                        self.worker_id, err)

    def _count_finished(self, study: optuna.Study, claim: Claim) -> bool:
        """If the slot's run had in fact finished in Optuna, record it as done (it counts) and say so."""
        done = self._find_slot_trial(study, claim.slot_id, (TrialState.COMPLETE, TrialState.PRUNED))
        if not done:
            return False
        ft = min(done, key=lambda t: t.number)
        outcome = ("pruned" if ft.state == TrialState.PRUNED else
                   "diverged" if ft.user_attrs.get("diverged") else "complete")
        value = ft.value if ft.value is not None and outcome != "pruned" else math.nan
        self.ledger.finish(claim.slot_id, self.worker_id, outcome, value, ft.user_attrs.get("seconds"), ft.number,
                           trial_record(ft))
        return True

    def _sweep_orphans(self) -> None:
        """Fail RUNNING tuning trials that no claimed slot owns (e.g. a trial created twice by a retried write
        whose first commit did land), once they are older than a lease, so studies never keep ghost trials."""
        tune = self.ledger.slots("tune")
        live = {(s["arm"], s["study"], s["trial_number"]) for s in tune if s["state"] == CLAIMED}
        cutoff = datetime.now() - timedelta(seconds=self.opts.lease_seconds)
        for arm in self.spec.arms:
            for k in range(self.spec.budget.studies):
                # Once every slot of a study is done, no RUNNING trial there can be anyone's: fail them, any age.
                finished = all(s["state"] == "done" for s in tune if (s["arm"], s["study"]) == (arm.key, k))
                study = self.study(arm.key, "tune", k)
                for ft in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                    stale = ft.datetime_start is not None and ft.datetime_start < cutoff
                    if (arm.key, k, ft.number) not in live and (finished or stale):
                        self._fail_trial(study, ft.number, ft._trial_id, "orphan: no slot owns this trial")

    # ---------------------------------------------------------------- follow-up phases

    def _add_followups(self) -> bool:
        """Queue the phases that depend on tuning results once those results are final (idempotent, race-safe):
        each finished study's top-k configs × M fresh seeds, and the transferred config at every arm."""
        ev = self.spec.evaluation
        if ev.seeds < 1:
            return False
        tune = self.ledger.slots("tune")
        have = {(s["role"], s["arm"], s["study"]) for s in self.ledger.slots() if s["role"] in ("eval", "transfer")}
        done = {(arm.key, k): self._study_done(tune, arm.key, k)
                for arm in self.spec.arms for k in range(self.spec.budget.studies)}
        rows: list[SlotRow] = []
        for (arm, k), counted in done.items():
            if counted is None or ("eval", arm, k) in have:
                continue
            ranked = self._ranked(arm, k, counted)[: ev.top_k]
            rows += [("eval", arm, k, rank * ev.seeds + s, {"params": t.params, "seed": ev.seed_offset + s,
                                                              "rank": rank, "source_trial": t.number})
                     for rank, t in enumerate(ranked) for s in range(ev.seeds)]
        src = self.spec.transfer_arm
        if src is not None and not any(r == "transfer" for r, _, _ in have):
            per_study = [done[(src.key, k)] for k in range(self.spec.budget.studies)]
            if all(c is not None for c in per_study):
                best = [(tuning_loss(t, self.spec.direction), k, t.number, t) for k, c in enumerate(per_study)
                        for t in self._ranked(src.key, k, c or set())[:1]]
                if best:
                    _, k, number, t = min(best, key=lambda b: b[:3])
                    rows += [("transfer", arm.key, 0, s, {"params": t.params, "seed": ev.seed_offset + s,
                                                          "source_arm": src.key, "source_study": k,
                                                          "source_trial": number})
                             for arm in self.spec.arms for s in range(ev.seeds)]
        if rows:
            self.ledger.add_slots(rows)
        return bool(rows)

    @staticmethod
    def _study_done(tune: list[dict[str, Any]], arm: str, k: int) -> set[int] | None:
        """The counted trial numbers of a finished study; None while any of its slots is not done."""
        mine = [s for s in tune if (s["arm"], s["study"]) == (arm, k)]
        if not mine or any(s["state"] != "done" for s in mine):
            return None
        return {int(s["trial_number"]) for s in mine}

    def _ranked(self, arm: str, k: int, counted: set[int]) -> list[optuna.trial.FrozenTrial]:
        """A study's counted trials with a finite score, best first in the metric's direction (the scoring rule of
        studies.tuning_score); ties keep trial order."""
        trials = self.study(arm, "tune", k).get_trials(deepcopy=False,
                                                       states=(TrialState.COMPLETE, TrialState.PRUNED))
        scored = [(tuning_loss(t, self.spec.direction), t.number, t) for t in trials if t.number in counted]
        return [t for score, _, t in sorted(scored, key=lambda x: x[:2]) if math.isfinite(score)]


class SuiteWorker:
    """One worker process serving every member experiment of a suite (`bench worker SUITE`).

    Each look claims a slot of the least advanced member (by fraction of slots done) that has one, so the members
    progress together: a suite stopped part-way has members at comparable stages. Each member keeps its own
    WorkerLoop (ledger registration, heartbeat, study cache); exact budgets are each member's own.
    """

    def __init__(self, members: Sequence[tuple[Spec, int]], url: str, opts: WorkerOptions) -> None:
        self.opts = opts
        each = replace(opts, max_trials=None)  # the suite counts finished trials over all members
        self.loops: list[WorkerLoop] = []
        try:
            for spec, exp_id in members:
                self.loops.append(WorkerLoop(spec, url, exp_id, each))  # each registers its worker row
        except BaseException:
            # A stop signal (or an error) while members register: the rows already registered are marked stopped,
            # as run() would, or `bench status` shows them running for ever.
            for loop in self.loops:
                loop.finish()
            raise

    @property
    def summary(self) -> WorkerSummary:
        """The members' summaries in one (worker_id: the first member's registration)."""
        out = WorkerSummary(self.loops[0].worker_id)
        for loop in self.loops:
            s = loop.summary
            for k, v in s.finished.items():
                out.finished[k] = out.finished.get(k, 0) + v
            out.reclaimed += s.reclaimed
            out.lost_own += s.lost_own
            out.released += s.released
            out.unreleased += s.unreleased
        return out

    def run(self) -> WorkerSummary:
        active = list(self.loops)
        try:
            for loop in active:
                loop.start()
            while active and not (self.opts.max_trials is not None
                                  and sum(x.finished() for x in self.loops) >= self.opts.max_trials):
                steps = []
                for loop in sorted(active, key=lambda x: x.progress()):
                    steps.append((loop, loop.step()))
                    if steps[-1][1] in (RAN, AGAIN):
                        break
                active = [x for x in active if (x, DONE) not in steps]
                if active and not any(step in (RAN, AGAIN) for _, step in steps):
                    time.sleep(self.opts.poll_seconds)
        except BaseException:
            for loop in self.loops:
                loop.abort()
            raise
        finally:
            for loop in self.loops:
                loop.finish()
        return self.summary
