"""Per-depth Optuna studies: names, creation with provenance attributes, and identical samplers and pruners."""

from __future__ import annotations

import hashlib

import optuna

from bench.spec import Spec
from bench.storage import RetryingStorage


def study_name(experiment: str, depth: int, role: str = "tune") -> str:
    base = f"{experiment}-depth{depth}"
    return base if role == "tune" else f"{base}-{role}"


def derived_seed(*parts: object) -> int:
    """A stable 31-bit seed from its parts (TPE workers need distinct seeds or they propose identical trials)."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def make_sampler(spec: Spec, depth: int, worker_id: int) -> optuna.samplers.BaseSampler:
    """The same sampler kind and settings for every depth (invariant 2); only the stream seed differs per worker."""
    s = spec.sampler
    seed = derived_seed(s.seed, depth, worker_id)
    if s.kind == "tpe":
        # constant_liar: running trials count as bad guesses, so parallel workers spread out.
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=s.n_startup_trials, constant_liar=True)
    if s.kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    # QMC: one seed for all workers; the sequence position is shared through the storage.
    return optuna.samplers.QMCSampler(seed=s.seed, scramble=True, warn_asynchronous_seeding=False,
                                      warn_independent_sampling=False)


def make_pruner(spec: Spec) -> optuna.pruners.BasePruner:
    p = spec.pruner
    if p.kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=p.n_startup_trials, n_warmup_steps=p.n_warmup_steps)
    if p.kind == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=spec.budget.epochs)
    return optuna.pruners.NopPruner()


def study_roles(spec: Spec) -> list[str]:
    """Which studies each depth has: tuning always; re-evaluation and baseline when the spec asks for them."""
    return ["tune"] + (["eval"] if spec.evaluation.seeds else []) + (["baseline"] if spec.baseline else [])


def create_studies(spec: Spec, storage: RetryingStorage, extra: dict[str, object] | None = None
                   ) -> list[str]:
    """Create (or load) every study of the experiment and stamp the provenance attributes. Idempotent.

    The storage retries transient errors itself (storage.RetryingStorage), so no call here is wrapped again.
    """
    names = []
    for depth in spec.depths:
        for role in study_roles(spec):
            name = study_name(spec.name, depth, role)
            study = optuna.create_study(study_name=name, storage=storage, direction="minimize", load_if_exists=True)
            attrs = {"experiment": spec.name, "depth": depth, "spec_hash": spec.hash, "role": role, **(extra or {})}
            for key, value in attrs.items():
                if study.user_attrs.get(key) != value:
                    study.set_user_attr(key, value)
            names.append(name)
    return names


def load_study(spec: Spec, storage: RetryingStorage, depth: int, role: str = "tune",
               worker_id: int = 0) -> optuna.Study:
    return optuna.load_study(study_name=study_name(spec.name, depth, role), storage=storage,
                             sampler=make_sampler(spec, depth, worker_id), pruner=make_pruner(spec))
