"""Experiment specs: TOML loading, validation, frozen dataclasses and the canonical hash."""

from __future__ import annotations

import hashlib
import json
import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar


class SpecError(ValueError):
    """Bad input in a spec, phrased as one line: ``file: field: what is wrong``."""


# The nuisance hyperparameters that training understands. A search space may tune any subset of them; the rest
# keep these defaults (or the spec's [fixed] values). Adding an entry here is all a new one needs.
@dataclass(frozen=True)
class Hparams:
    lr: float = 1e-3  # AdamW learning rate
    weight_decay: float = 0.0  # AdamW decoupled weight decay
    init: str = "default"  # recurrent weight init: default | xavier_uniform | orthogonal | kaiming_uniform
    init_gain: float = 1.0  # gain (scale) passed to the init scheme; ignored by "default"
    dropout: float = 0.0  # dropout between stacked recurrent layers (and before the head)


INIT_SCHEMES = ("default", "xavier_uniform", "orthogonal", "kaiming_uniform")
HPARAM_TYPES: dict[str, type] = {f.name: type(getattr(Hparams(), f.name)) for f in fields(Hparams)}
# Domain limits per hyperparameter: what any value (tuned, fixed or baseline) must satisfy.
_HPARAM_LIMITS: dict[str, tuple[float, float]] = {
    "lr": (0.0, 100.0),  # AdamW steps are ~lr in size; far above this torch overflows instead of diverging
    "weight_decay": (0.0, math.inf),
    "init_gain": (0.0, math.inf),
    "dropout": (0.0, 1.0),
}
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class ParamSpec:
    """One search-space entry; turned into a ``trial.suggest_*`` call by ``search_space.suggest``."""

    name: str
    type: str  # float | int | categorical
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()


@dataclass(frozen=True)
class TaskSpec:
    name: str  # built-in task name or "package.module:factory"
    data_seed: int  # one seed for every depth: same data, same split (invariant 2)
    params: tuple[tuple[str, Any], ...] = ()  # task-specific settings, sorted by key

    def kwargs(self) -> dict[str, Any]:
        return dict(self.params)


@dataclass(frozen=True)
class ModelSpec:
    cell: str = "lstm"  # lstm | gru
    hidden: int = 64  # hidden units per layer (fixed_width), or the starting point (matched_params)
    embedding: int = 32  # token embedding size (token inputs only)
    capacity: str = "fixed_width"  # fixed_width | matched_params
    target_params: int | None = None  # matched_params: parameter count every depth is sized to
    # matched_params: the solved hidden size per depth, filled in at validation so that it is part of the hash
    # (a change in the solver then shows as a changed spec instead of silently changing the comparison).
    hidden_by_depth: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True)
class BudgetSpec:
    trials: int  # tuning trials per depth, exact (invariant 3)
    epochs: int  # epochs per trial
    batch_size: int = 64
    clip_norm: float = 1.0  # fixed gradient clipping, not tuned


@dataclass(frozen=True)
class SamplerSpec:
    kind: str = "tpe"  # tpe | random | qmc
    seed: int = 0
    n_startup_trials: int = 10  # TPE: random trials before the model kicks in


@dataclass(frozen=True)
class PrunerSpec:
    kind: str = "none"  # none | median | hyperband
    n_startup_trials: int = 5  # median: trials before pruning starts
    n_warmup_steps: int = 1  # median: epochs before a trial may be pruned


@dataclass(frozen=True)
class EvaluationSpec:
    seeds: int = 0  # M fresh training seeds per re-evaluated config (0 = no evaluation phase)
    top_k: int = 1  # how many of each depth's best configs are re-evaluated
    seed_offset: int = 10_000  # fresh seeds start here, away from tuning seeds


@dataclass(frozen=True)
class Spec:
    name: str
    task: TaskSpec
    model: ModelSpec
    depths: tuple[int, ...]
    search_space: tuple[ParamSpec, ...]
    budget: BudgetSpec
    sampler: SamplerSpec = SamplerSpec()
    pruner: PrunerSpec = PrunerSpec()
    evaluation: EvaluationSpec = EvaluationSpec()
    fixed: tuple[tuple[str, Any], ...] = ()  # non-tuned hyperparameter overrides, shared by every depth
    baseline: tuple[tuple[str, Any], ...] = ()  # the "everything held constant" config; empty = no baseline
    metric: str = "val_loss"
    direction: str = "minimize"
    source: str = field(default="<memory>", compare=False)  # file it came from; not part of the hash

    def to_dict(self) -> dict[str, Any]:
        """Canonical, JSON-ready form (what is hashed and stored)."""
        data = asdict(self)
        data.pop("source")
        data["search_space"] = {p["name"]: _compact_param(p) for p in data["search_space"]}
        data["task"]["params"] = dict(self.task.params)
        data["fixed"] = dict(self.fixed)
        data["baseline"] = dict(self.baseline)
        return dict(json.loads(canonical_json(data)))  # tuples -> lists: equal to what storage gives back

    @property
    def hash(self) -> str:
        return spec_hash(self.to_dict())

    def hparams(self, sampled: Mapping[str, Any]) -> Hparams:
        """Defaults, then [fixed], then the sampled values."""
        return Hparams(**{**dict(self.fixed), **sampled})


def _compact_param(p: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in p.items() if k != "name" and v not in (None, (), [])}
    if "choices" in out:
        out["choices"] = list(out["choices"])
    if not out.get("log"):
        out.pop("log", None)
    return out


def canonical_json(data: Mapping[str, Any]) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False)


def spec_hash(data: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a spec dict."""
    return hashlib.sha256(canonical_json(data).encode()).hexdigest()


def diff_fields(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted names of the fields that differ between two spec dicts (for refusal messages)."""
    out: list[str] = []
    for key in sorted(set(old) | set(new)):
        name = f"{prefix}{key}"
        a, b = old.get(key), new.get(key)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out.extend(diff_fields(a, b, name + "."))
        elif a != b:
            out.append(name)
    return out


# ---------------------------------------------------------------- loading


def load_spec(path: str | Path) -> Spec:
    """Read and validate a TOML spec; raise SpecError naming the file and field on any problem."""
    path = Path(path)
    where = str(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SpecError(f"{where}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{where}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{where}: not valid TOML: {exc}") from None
    return parse_spec(raw, where)


def parse_spec(raw: Mapping[str, Any], where: str = "<spec>") -> Spec:
    r = _Reader(raw, where)
    known = {"name", "depths", "task", "model", "search_space", "budget", "sampler", "pruner", "evaluation",
             "fixed", "baseline", "metric"}
    r.no_unknown(raw, known, "")
    name = r.get(raw, "name", str, required=True)
    if not _NAME_RE.match(name):
        r.fail("name", f"{name!r} must be 1-64 letters, digits, '_', '-' or '.', starting with a letter or digit")
    depths = r.get(raw, "depths", list, required=True)
    if not depths:
        r.fail("depths", "must list at least one depth")
    for i, d in enumerate(depths):
        if not _is_int(d) or not 1 <= d <= 64:
            r.fail(f"depths[{i}]", f"{d!r} must be an integer from 1 to 64")
    if len(set(depths)) != len(depths):
        r.fail("depths", "must not repeat a depth")
    spec = Spec(
        name=name,
        task=_task(r, r.table(raw, "task", required=True)),
        model=_model(r, r.table(raw, "model")),
        depths=tuple(sorted(depths)),
        search_space=_search_space(r, r.table(raw, "search_space", required=True)),
        budget=_budget(r, r.table(raw, "budget", required=True)),
        sampler=_sampler(r, r.table(raw, "sampler")),
        pruner=_pruner(r, r.table(raw, "pruner")),
        evaluation=_evaluation(r, r.table(raw, "evaluation")),
        fixed=_hparam_table(r, r.table(raw, "fixed"), "fixed"),
        baseline=_hparam_table(r, r.table(raw, "baseline"), "baseline"),
        source=where,
    )
    _metric(r, r.table(raw, "metric"))
    tuned = {p.name for p in spec.search_space}
    for key, _ in spec.fixed:
        if key in tuned:
            r.fail(f"fixed.{key}", "is also in search_space; a hyperparameter is either tuned or fixed")
    if spec.baseline and spec.evaluation.seeds < 1:
        r.fail("evaluation.seeds", "must be at least 1 when a [baseline] is given (it is trained over those seeds)")
    return spec


class _Reader:
    """Typed access to raw TOML tables that fails with ``file: field: message``."""

    def __init__(self, raw: Mapping[str, Any], where: str) -> None:
        self.raw, self.where = raw, where

    def fail(self, fld: str, msg: str) -> None:
        raise SpecError(f"{self.where}: {fld}: {msg}")

    def table(self, raw: Mapping[str, Any], key: str, required: bool = False) -> tuple[str, dict[str, Any]]:
        val = raw.get(key)
        if val is None:
            if required:
                self.fail(key, "missing (required table)")
            return key, {}
        if not isinstance(val, dict):
            self.fail(key, f"must be a table, got {type(val).__name__}")
        return key, val

    def get(self, raw: Mapping[str, Any], key: str, typ: type, *, prefix: str = "", required: bool = False,
            default: Any = None) -> Any:
        fld = f"{prefix}{key}"
        if key not in raw:
            if required:
                self.fail(fld, "missing (required)")
            return default
        val = raw[key]
        ok = _is_int(val) if typ is int else (
            isinstance(val, (int, float)) and not isinstance(val, bool) if typ is float else isinstance(val, typ))
        if not ok:
            self.fail(fld, f"must be {_TYPE_WORDS.get(typ, typ.__name__)}, got {val!r}")
        if typ is float:
            val = float(val)
            if not math.isfinite(val):
                self.fail(fld, f"must be finite, got {val!r}")
        return val

    def no_unknown(self, raw: Mapping[str, Any], known: set[str], prefix: str) -> None:
        for key in raw:
            if key not in known:
                self.fail(f"{prefix}{key}", f"unknown field (expected one of: {', '.join(sorted(known))})")


_TYPE_WORDS = {int: "an integer", float: "a number", str: "a string", bool: "true or false", list: "a list"}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _positive(r: _Reader, fld: str, v: Any, minimum: int = 1) -> None:
    if v is not None and v < minimum:
        r.fail(fld, f"must be at least {minimum}, got {v}")


def _choice(r: _Reader, fld: str, v: str, allowed: tuple[str, ...]) -> None:
    if v not in allowed:
        r.fail(fld, f"{v!r} is not one of: {', '.join(allowed)}")


def _task(r: _Reader, t: tuple[str, dict[str, Any]]) -> TaskSpec:
    key, raw = t
    name = r.get(raw, "name", str, prefix="task.", required=True)
    if not name:
        r.fail("task.name", "must not be empty")
    seed = r.get(raw, "data_seed", int, prefix="task.", default=0)
    params = {k: v for k, v in raw.items() if k not in ("name", "data_seed")}
    for k, v in params.items():
        if isinstance(v, dict):
            r.fail(f"task.{k}", "nested tables are not task parameters")
    return TaskSpec(name=name, data_seed=seed, params=tuple(sorted(params.items())))


_FIELD_TYPES: dict[str, type] = {"str": str, "int": int, "float": float, "bool": bool, "int | None": int}
T = TypeVar("T")


def _section(r: _Reader, t: tuple[str, dict[str, Any]], cls: type[T]) -> T:
    """Read a flat table into its dataclass: typed fields, defaults, required fields, unknown keys rejected.

    Only scalar fields are settable from TOML; derived ones (e.g. model.hidden_by_depth) are not.
    """
    key, raw = t
    settable = [f for f in fields(cls) if f.type in _FIELD_TYPES]  # type: ignore[arg-type]
    r.no_unknown(raw, {f.name for f in settable}, f"{key}.")
    values = {f.name: r.get(raw, f.name, _FIELD_TYPES[str(f.type)], prefix=f"{key}.",
                            required=f.default is MISSING, default=None if f.default is MISSING else f.default)
              for f in settable}
    return cls(**values)


def _model(r: _Reader, t: tuple[str, dict[str, Any]]) -> ModelSpec:
    m = _section(r, t, ModelSpec)
    _choice(r, "model.cell", m.cell, ("lstm", "gru"))
    _choice(r, "model.capacity", m.capacity, ("fixed_width", "matched_params"))
    _positive(r, "model.hidden", m.hidden)
    _positive(r, "model.embedding", m.embedding)
    if m.capacity == "matched_params" and m.target_params is None:
        r.fail("model.target_params", "required when capacity = \"matched_params\"")
    if m.capacity == "fixed_width" and m.target_params is not None:
        r.fail("model.target_params", "only applies when capacity = \"matched_params\"")
    _positive(r, "model.target_params", m.target_params, 100)
    return m


def _search_space(r: _Reader, t: tuple[str, dict[str, Any]]) -> tuple[ParamSpec, ...]:
    _, raw = t
    if not raw:
        r.fail("search_space", "must tune at least one hyperparameter")
    out = []
    for name in sorted(raw):
        fld = f"search_space.{name}"
        if name not in HPARAM_TYPES:
            r.fail(fld, f"unknown hyperparameter (known: {', '.join(HPARAM_TYPES)})")
        entry = raw[name]
        if not isinstance(entry, dict):
            r.fail(fld, "must be a table like { type = \"float\", low = 1e-4, high = 1e-1, log = true }")
        out.append(_param(r, name, entry, fld + "."))
    return tuple(out)


def _param(r: _Reader, name: str, raw: dict[str, Any], p: str) -> ParamSpec:
    kind = r.get(raw, "type", str, prefix=p, required=True)
    _choice(r, p + "type", kind, ("float", "int", "categorical"))
    want = HPARAM_TYPES[name]
    if kind == "categorical":
        r.no_unknown(raw, {"type", "choices"}, p)
        choices = r.get(raw, "choices", list, prefix=p, required=True)
        if not choices:
            r.fail(p + "choices", "must not be empty")
        if len(set(map(repr, choices))) != len(choices):
            r.fail(p + "choices", "must not repeat a choice")
        for i, c in enumerate(choices):
            _check_value(r, f"{p}choices[{i}]", name, c)
        return ParamSpec(name=name, type=kind, choices=tuple(choices))
    r.no_unknown(raw, {"type", "low", "high", "log", "step"}, p)
    if want is str:
        r.fail(p + "type", f"{name} takes names; use type = \"categorical\" with choices")
    num = int if kind == "int" else float
    low = r.get(raw, "low", num, prefix=p, required=True)
    high = r.get(raw, "high", num, prefix=p, required=True)
    log = r.get(raw, "log", bool, prefix=p, default=False)
    step = r.get(raw, "step", num, prefix=p)
    if not low < high:
        r.fail(p + "low", f"low {low} must be below high {high}")
    if log and low <= 0:
        r.fail(p + "low", f"must be above 0 when log = true, got {low}")
    if log and step is not None:
        r.fail(p + "step", "cannot be combined with log = true")
    if step is not None and step <= 0:
        r.fail(p + "step", f"must be above 0, got {step}")
    _check_value(r, p + "low", name, low)
    _check_value(r, p + "high", name, high)
    return ParamSpec(name=name, type=kind, low=low, high=high, log=log, step=step)


def _check_value(r: _Reader, fld: str, name: str, v: Any) -> None:
    want = HPARAM_TYPES[name]
    if want is str:
        if not isinstance(v, str):
            r.fail(fld, f"{name} must be a name, got {v!r}")
        if name == "init" and v not in INIT_SCHEMES:
            r.fail(fld, f"{v!r} is not one of: {', '.join(INIT_SCHEMES)}")
        return
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        r.fail(fld, f"{name} must be a number, got {v!r}")
    lo, hi = _HPARAM_LIMITS.get(name, (-math.inf, math.inf))
    if not (lo <= v <= hi) or (name in ("lr", "init_gain") and v <= 0) or (name == "dropout" and v >= 1):
        r.fail(fld, f"{name} = {v} is out of its domain")


def _hparam_table(r: _Reader, t: tuple[str, dict[str, Any]], key: str) -> tuple[tuple[str, Any], ...]:
    _, raw = t
    for name, v in raw.items():
        if name not in HPARAM_TYPES:
            r.fail(f"{key}.{name}", f"unknown hyperparameter (known: {', '.join(HPARAM_TYPES)})")
        _check_value(r, f"{key}.{name}", name, v)
    return tuple(sorted((k, float(v) if HPARAM_TYPES[k] is float else v) for k, v in raw.items()))


def _budget(r: _Reader, t: tuple[str, dict[str, Any]]) -> BudgetSpec:
    b = _section(r, t, BudgetSpec)
    _positive(r, "budget.trials", b.trials)
    if b.trials > 100_000:
        r.fail("budget.trials", f"{b.trials} is more than 100000")
    _positive(r, "budget.epochs", b.epochs)
    _positive(r, "budget.batch_size", b.batch_size)
    if b.clip_norm <= 0:
        r.fail("budget.clip_norm", f"must be above 0, got {b.clip_norm}")
    return b


def _sampler(r: _Reader, t: tuple[str, dict[str, Any]]) -> SamplerSpec:
    s = _section(r, t, SamplerSpec)
    _choice(r, "sampler.kind", s.kind, ("tpe", "random", "qmc"))
    _positive(r, "sampler.n_startup_trials", s.n_startup_trials)
    return s


def _pruner(r: _Reader, t: tuple[str, dict[str, Any]]) -> PrunerSpec:
    s = _section(r, t, PrunerSpec)
    _choice(r, "pruner.kind", s.kind, ("none", "median", "hyperband"))
    _positive(r, "pruner.n_startup_trials", s.n_startup_trials, 0)
    _positive(r, "pruner.n_warmup_steps", s.n_warmup_steps, 0)
    return s


def _evaluation(r: _Reader, t: tuple[str, dict[str, Any]]) -> EvaluationSpec:
    e = _section(r, t, EvaluationSpec)
    _positive(r, "evaluation.seeds", e.seeds, 0)
    if e.seeds > 1000:
        r.fail("evaluation.seeds", f"{e.seeds} is more than 1000")
    _positive(r, "evaluation.top_k", e.top_k)
    _positive(r, "evaluation.seed_offset", e.seed_offset, 0)
    return e


def _metric(r: _Reader, t: tuple[str, dict[str, Any]]) -> None:
    _, raw = t
    r.no_unknown(raw, {"name", "direction"}, "metric.")
    name = r.get(raw, "name", str, prefix="metric.", default="val_loss")
    direction = r.get(raw, "direction", str, prefix="metric.", default="minimize")
    _choice(r, "metric.name", name, ("val_loss",))
    _choice(r, "metric.direction", direction, ("minimize",))
