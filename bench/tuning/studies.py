"""Per-arm Optuna studies: names, creation with provenance attributes, and identical samplers and pruners."""

from __future__ import annotations

import hashlib
import math
import warnings
from typing import Any

import optuna

from bench.spec import Arm, Spec, loss_sign
from bench.store.storage import RetryingStorage


def study_name(experiment: str, arm: Arm, role: str = "tune", study: int = 0, studies: int = 1) -> str:
    """``quickstart-depth2`` (one study per arm; ``quickstart-depth2-gru`` where arms differ in depth and cell),
    ``quickstart-depth2-s1`` (replicate 1 of several), and one
    ``-eval`` / ``-baseline`` / ``-transfer`` study per arm holding those roles' runs of every replicate."""
    base = f"{experiment}-{arm.slug}"
    if role != "tune":
        return f"{base}-{role}"
    return base if studies == 1 else f"{base}-s{study}"


def spec_study_name(spec: Spec, arm: Arm, role: str = "tune", study: int = 0) -> str:
    return study_name(spec.name, arm, role, study, spec.budget.studies)


def tuning_score(ft: optuna.trial.FrozenTrial, direction: str) -> float:
    """One rule for every finished tuning trial: the best validation score it reported at any epoch (the lowest
    when minimizing, the highest when maximizing).

    Complete trials store exactly that; Optuna stores a pruned trial's *last* report instead, so it is recomputed
    from the per-epoch reports (a trial pruned late competes on the same terms). Diverged trials (stored as the
    direction's infinitely bad value) and trials with no report score that infinity: they can never be a study's
    best config.
    """
    sign = loss_sign(direction)
    worst = sign * math.inf
    if ft.state == optuna.trial.TrialState.PRUNED:
        finite = [v for v in ft.intermediate_values.values() if math.isfinite(v)]
        return sign * min(sign * v for v in finite) if finite else worst
    if ft.state != optuna.trial.TrialState.COMPLETE or ft.value is None or ft.user_attrs.get("diverged"):
        return worst
    return float(ft.value) if math.isfinite(ft.value) else worst


def study_direction(direction: str) -> optuna.study.StudyDirection:
    """The spec's direction as Optuna's: every study (and the pruner, which reads it) optimises that way."""
    loss_sign(direction)  # ValueError on anything else
    return optuna.study.StudyDirection[direction.upper()]


def tuning_loss(ft: optuna.trial.FrozenTrial, direction: str) -> float:
    """tuning_score oriented so that lower is better in either direction (+inf: never a best config): what ranks
    a study's trials."""
    return loss_sign(direction) * tuning_score(ft, direction)


def derived_seed(*parts: object) -> int:
    """A stable 31-bit seed from its parts (TPE workers need distinct seeds or they propose identical trials)."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def make_sampler(spec: Spec, study: int, worker_id: int) -> optuna.samplers.BaseSampler:
    """The same sampler kind and settings for every arm (invariant 2). Each replicate study has its own seed;
    replicate k of every arm shares it (common random numbers), and the stream differs per worker."""
    s = spec.sampler
    seed = derived_seed(s.seed, study, worker_id)
    if s.kind == "tpe":
        # constant_liar: running trials count as bad guesses, so parallel workers spread out.
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=s.n_startup_trials, constant_liar=True)
    if s.kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    # QMC: one seed for all workers of a study; the sequence position is shared through the storage.
    return optuna.samplers.QMCSampler(seed=derived_seed(s.seed, study), scramble=True, warn_asynchronous_seeding=False,
                                      warn_independent_sampling=False)


def make_pruner(spec: Spec) -> optuna.pruners.BasePruner:
    p = spec.pruner
    if p.kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=p.n_startup_trials, n_warmup_steps=p.n_warmup_steps)
    if p.kind == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=spec.budget.epochs)
    return optuna.pruners.NopPruner()


def study_roles(spec: Spec) -> list[str]:
    """Which roles each arm has: tuning always; re-evaluation and baselines when the spec asks for them."""
    return (["tune"] + (["eval"] if spec.evaluation.seeds else []) + (["baseline"] if spec.baseline else [])
            + (["transfer"] if spec.transfer_arm is not None else []))


def all_studies(spec: Spec) -> list[tuple[Arm, str, int, str]]:
    """Every study of the experiment as (arm, role, replicate, name); fixed-config roles have replicate 0."""
    out = []
    for arm in spec.arms:
        for role in study_roles(spec):
            for k in range(spec.budget.studies if role == "tune" else 1):
                out.append((arm, role, k, spec_study_name(spec, arm, role, k)))
    return out


# The dashboard's name for each study's objective ("Objective 0" otherwise): what the role's trials report.
METRIC_NAMES = {"tune": "val loss", "eval": "test loss", "baseline": "test loss", "transfer": "test loss"}
RECORD_ATTRS = ("test_loss", "seed", "diverged", "bench_slot")  # user attributes the report's numbers rest on


def set_metric_name(study: optuna.Study, role: str, spec: Spec) -> None:
    # A maximized metric is no loss: the dashboard names it, e.g. "val accuracy".
    name = [METRIC_NAMES[role].replace("loss", spec.metric) if spec.direction == "maximize" else METRIC_NAMES[role]]
    if study.metric_names != name:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(name)


def trial_record(ft: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """What a finished trial holds that the report relies on, as the ledger stores it for the slot it counts
    for (ledger.record_digest): the report recomputes this from the storage and compares."""
    ua = ft.user_attrs
    prov = ua.get("provenance")
    return {"number": ft.number, "state": ft.state.name, "value": ft.value, "params": dict(ft.params),
            "distributions": {k: optuna.distributions.distribution_to_json(d)
                              for k, d in sorted(ft.distributions.items())},
            "intermediate": {str(k): v for k, v in sorted(ft.intermediate_values.items())},
            "spec_hash": prov.get("spec_hash") if isinstance(prov, dict) else None,
            "attrs": {k: ua.get(k) for k in RECORD_ATTRS}}


def create_studies(spec: Spec, storage: RetryingStorage, extra: dict[str, object] | None = None
                   ) -> list[str]:
    """Create (or load) every study of the experiment and stamp the provenance attributes. Idempotent.

    The storage retries transient errors itself (storage.RetryingStorage), so no call here is wrapped again.
    """
    names = []
    for arm, role, k, name in all_studies(spec):
        study = optuna.create_study(study_name=name, storage=storage, direction=study_direction(spec.direction),
                                    load_if_exists=True)
        attrs: dict[str, object] = {"experiment": spec.name, "arm": arm.key, "study": k, "spec_hash": spec.hash,
                                    "role": role, **(extra or {})}
        if "depth" in dict(arm.values):
            attrs["depth"] = arm.depth
        for key, value in attrs.items():
            if study.user_attrs.get(key) != value:
                study.set_user_attr(key, value)
        set_metric_name(study, role, spec)
        names.append(name)
    return names


def load_study(spec: Spec, storage: RetryingStorage, arm: Arm, role: str = "tune", study: int = 0,
               worker_id: int = 0) -> optuna.Study:
    return optuna.load_study(study_name=spec_study_name(spec, arm, role, study), storage=storage,
                             sampler=make_sampler(spec, study, worker_id), pruner=make_pruner(spec))
