"""Experiment specs: TOML loading, validation, frozen dataclasses and the canonical hash."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
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
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# Widths beyond this are typos (an LSTM layer of 65536 units already has ~34e9 weights); the memory estimate at
# init/run/worker bounds what fits, this bounds what can be a width at all.
MAX_WIDTH = 1 << 16
MAX_TARGET_PARAMS = 10**10
MAX_DEPTH = 64
# The built-in model's hyperparameters an arm may set (the scientific ones, compared across arms).
SCIENTIFIC = ("depth", "hidden", "cell", "embedding")
CELLS = ("lstm", "gru")


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
    target_params: int | None = None  # matched_params: parameter count every arm is sized to
    depth: int = 1  # stacked layers, when depth is not scientific
    # matched_params: the solved hidden size per depth, filled in at validation so that it is part of the hash
    # (a change in the solver then shows as a changed spec instead of silently changing the comparison).
    hidden_by_depth: tuple[tuple[int, int], ...] = ()
    # The same per arm key, when the arms differ in more than depth (depth-only specs keep hidden_by_depth, so
    # their hashes stay what they were).
    hidden_by_arm: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
class BudgetSpec:
    trials: int  # tuning trials per study, exact (invariant 3)
    epochs: int  # epochs per trial
    # Independent tuning studies per arm (AlgoPerf): the tuning procedure's own variance is measured, so the
    # comparison is of arms, not of the particular configs one study happened to find.
    studies: int = 3
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
class AnalysisSpec:
    """How the report decides; not part of the hash (changing it re-analyses the same data)."""

    alpha: float = 0.05  # family-wise error rate of the pairwise tests (Holm)
    # Smallest difference worth claiming: 0.1 = a 10% lower geometric-mean loss. Smaller significant differences
    # are reported as such but never called a win.
    min_effect: float = 0.1


@dataclass(frozen=True)
class Arm:
    """One combination of scientific values (e.g. depth 2 and cell gru); every arm gets its own studies."""

    values: tuple[tuple[str, Any], ...]

    @property
    def key(self) -> str:
        """Canonical JSON of the values: the ledger's and the study attributes' name for the arm."""
        return canonical_json(dict(self.values))

    @property
    def slug(self) -> str:
        """Readable and safe in study names, e.g. ``depth2`` or ``depth2-gru`` (a name stands for itself)."""
        return "-".join(re.sub(r"[^A-Za-z0-9_.]", "_", v if isinstance(v, str) else f"{k}{v}")
                        for k, v in self.values)

    @property
    def label(self) -> str:
        """For tables and sentences, e.g. ``depth 2``."""
        return ", ".join(f"{k} {v}" for k, v in self.values)

    @property
    def depth(self) -> int:
        """The arm's depth where depth is scientific (KeyError otherwise; Spec.model_for(arm).depth always works)."""
        return int(dict(self.values)["depth"])


@dataclass(frozen=True)
class Spec:
    name: str
    task: TaskSpec | None  # None with a user trainer (it makes its own data)
    model: ModelSpec  # the built-in model; unused (and not hashed) with a user trainer
    # The scientific hyperparameters in declaration order, each with its values: the arms are their product.
    scientific: tuple[tuple[str, tuple[Any, ...]], ...]
    search_space: tuple[ParamSpec, ...]
    budget: BudgetSpec
    sampler: SamplerSpec = SamplerSpec()
    pruner: PrunerSpec = PrunerSpec()
    evaluation: EvaluationSpec = EvaluationSpec()
    fixed: tuple[tuple[str, Any], ...] = ()  # non-tuned hyperparameter overrides, shared by every arm
    baseline: tuple[tuple[str, Any], ...] = ()  # the "everything held constant" config; empty = no baseline
    # Transferred-config baseline: the best config found at this depth, retrained at every arm (the comparison
    # people make when they tune one model and reuse its settings). None = no transfer baseline.
    baseline_from: int | None = None
    # The same for arms that differ in more than depth: the source arm's values (empty = none, or baseline_from).
    baseline_from_arm: tuple[tuple[str, Any], ...] = ()
    analysis: AnalysisSpec = field(default=AnalysisSpec(), compare=False)  # not hashed: see AnalysisSpec
    metric: str = "val_loss"  # what the trainer's score is (the built-in: validation cross-entropy)
    direction: str = "minimize"  # minimize | maximize (a user trainer's metric; the built-in's loss is minimized)
    # "package.module:function" of a user trainer (bench.trainer's contract); None = the built-in LSTM/GRU
    trainer: str | None = None
    # The score of a run that diverged or learned nothing, the same for every arm: required with a user trainer
    # (the built-in uses its task's trivial loss, stored on the studies).
    worst: float | None = None
    source: str = field(default="<memory>", compare=False)  # file it came from; not part of the hash

    def to_dict(self) -> dict[str, Any]:
        """Canonical, JSON-ready form (what is hashed and stored).

        A depth-only spec keeps the form of bench 0.2 (``depths``, no new keys), so its hash is unchanged; the
        keys that generalise it appear only when they say something (non-depth arms, non-default model.depth).
        """
        data = asdict(self)
        data.pop("source")
        data.pop("analysis")
        data.pop("scientific")
        if self.depth_only:
            data["depths"] = list(self.depths)
        else:
            data["scientific"] = [[name, list(values)] for name, values in self.scientific]
        for key, default in (("depth", 1), ("hidden_by_arm", ())):
            if data["model"][key] == default:
                del data["model"][key]
        if not self.baseline_from_arm:
            del data["baseline_from_arm"]
        for key in ("trainer", "worst"):  # only where they say something: built-in specs keep their hashes
            if data[key] is None:
                del data[key]
        if self.trainer is not None:
            del data["model"]
        data["search_space"] = {p["name"]: _compact_param(p) for p in data["search_space"]}
        if self.task is not None:
            data["task"]["params"] = dict(self.task.params)
        data["fixed"] = dict(self.fixed)
        data["baseline"] = dict(self.baseline)
        return dict(json.loads(canonical_json(data)))  # tuples -> lists: equal to what storage gives back

    @property
    def hash(self) -> str:
        return spec_hash(self.to_dict())

    @property
    def sign(self) -> int:
        """+1 when minimizing, -1 when maximizing: ``sign * score`` is lower-is-better (see loss_sign)."""
        return loss_sign(self.direction)

    @property
    def data_seed(self) -> int:
        """The task's data seed (0 with a user trainer): part of every training seed bench derives."""
        return 0 if self.task is None else self.task.data_seed

    def arm_depth(self, arm: Arm) -> int | None:
        """The depth an arm trains at: the built-in model's, or the arm's own `depth` value with a user trainer."""
        if self.trainer is None:
            return self.model_for(arm).depth
        d = dict(arm.values).get("depth")
        return d if _is_int(d) else None

    @property
    def depth_only(self) -> bool:
        return [name for name, _ in self.scientific] == ["depth"]

    @property
    def depths(self) -> tuple[int, ...]:
        """The compared depths where depth is scientific, else ()."""
        return tuple(dict(self.scientific).get("depth", ()))

    @property
    def arms(self) -> tuple[Arm, ...]:
        """Every combination of the scientific values: the cartesian product in declaration order."""
        names = [name for name, _ in self.scientific]
        return tuple(Arm(tuple(zip(names, combo, strict=True)))
                     for combo in itertools.product(*(values for _, values in self.scientific)))

    def model_for(self, arm: Arm) -> ModelSpec:
        """The built-in model an arm trains: [model] with the arm's scientific values put in (its depth is
        ``.depth``); under matched_params, with the hidden size solved for this arm when validation has."""
        model = replace(self.model, **dict(arm.values))
        solved = dict(self.model.hidden_by_arm).get(arm.key)
        if solved is not None:
            model = replace(model, hidden_by_depth=((model.depth, solved),), hidden_by_arm=())
        return model

    def arm(self, key: str) -> Arm:
        """The arm whose canonical key this is (KeyError if the spec has no such arm)."""
        for a in self.arms:
            if a.key == key:
                return a
        raise KeyError(key)

    @property
    def transfer_arm(self) -> Arm | None:
        """The arm whose best config the transferred-config baseline reuses at every arm (None = no such baseline)."""
        if self.baseline_from_arm:
            return Arm(self.baseline_from_arm)
        return None if self.baseline_from is None else Arm((("depth", self.baseline_from),))

    def params(self, sampled: Mapping[str, Any]) -> dict[str, Any]:
        """What a trainer is given: [fixed], then the sampled values."""
        return {**dict(self.fixed), **sampled}

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
    """Read and validate a TOML (or JSON) spec; raise SpecError naming the file and field on any problem."""
    return parse_spec(read_table(path), str(path))


def read_table(path: str | Path) -> dict[str, Any]:
    """The top-level table of a TOML (or JSON) file; SpecError naming the file if it cannot be read or parsed."""
    path = Path(path)
    where = str(path)
    try:
        text = path.read_text(encoding="utf-8")
        # JSON: the same tables as TOML (what bench.load_spec writes for a spec given as a dict)
        raw = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except json.JSONDecodeError as exc:
        raise SpecError(f"{where}: not valid JSON: {exc}") from None
    except FileNotFoundError:
        raise SpecError(f"{where}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{where}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{where}: not valid TOML: {exc}") from None
    if not isinstance(raw, dict):
        raise SpecError(f"{where}: the top level must be a table of the spec's fields")
    return raw


def parse_spec(raw: Mapping[str, Any], where: str = "<spec>") -> Spec:
    r = _Reader(raw, where)
    known = {"name", "depths", "scientific", "task", "model", "search_space", "budget", "sampler", "pruner",
             "evaluation", "fixed", "baseline", "metric", "analysis", "trainer"}
    r.no_unknown(raw, known, "")
    name = r.get(raw, "name", str, required=True)
    if not NAME_RE.match(name):
        r.fail("name", f"{name!r} must be 1-64 letters, digits, '_', '-' or '.', starting with a letter or digit")
    trainer = _trainer(r, r.table(raw, "trainer"))
    user = trainer is not None
    if user:
        for table in ("task", "model"):
            if table in raw:
                r.fail(table, "is not used with a [trainer] (a user trainer makes its own data and model); "
                       "remove it, or remove [trainer] to train bench's LSTM/GRU")
    scientific = _scientific(r, raw, user)
    _no_double_roles(r, raw, [n for n, _ in scientific])
    model = ModelSpec() if user else _model(r, r.table(raw, "model"))
    if model.capacity == "matched_params" and "hidden" in dict(scientific):
        r.fail("scientific.hidden", "cannot be compared under model.capacity = \"matched_params\" (that solves the "
               "hidden size per arm); use capacity = \"fixed_width\"")
    spec = Spec(
        name=name,
        task=None if user else _task(r, r.table(raw, "task", required=True)),
        model=model,
        scientific=scientific,
        search_space=_search_space(r, r.table(raw, "search_space", required=True), user),
        budget=_budget(r, r.table(raw, "budget", required=True)),
        sampler=_sampler(r, r.table(raw, "sampler")),
        pruner=_pruner(r, r.table(raw, "pruner")),
        evaluation=_evaluation(r, r.table(raw, "evaluation")),
        fixed=_hparam_table(r, r.table(raw, "fixed"), "fixed", user),
        baseline=_hparam_table(r, _without(r.table(raw, "baseline"), "from_depth", "from_arm"), "baseline", user),
        **_baseline_from(r, raw, scientific),
        analysis=_analysis(r, r.table(raw, "analysis")),
        trainer=trainer,
        **_metric(r, r.table(raw, "metric"), user),
        source=where,
    )
    tuned = {p.name for p in spec.search_space}
    for key, _ in spec.fixed:
        if key in tuned:
            r.fail(f"fixed.{key}", "is also in search_space; a hyperparameter is either tuned or fixed")
    if (spec.baseline or spec.transfer_arm is not None) and spec.evaluation.seeds < 1:
        r.fail("evaluation.seeds", "must be at least 1 when a [baseline] is given (it is trained over those seeds)")
    try:
        spec.to_dict()  # a safety net behind the field checks: what is hashed and stored must serialise
    except (TypeError, ValueError) as exc:
        r.fail("spec", f"cannot be stored as JSON: {exc}")
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


_TYPE_WORDS = {int: "an integer", float: "a number", str: "a string", bool: "true or false", list: "a list",
               dict: "a table"}


def _storable(r: _Reader, fld: str, v: Any) -> None:
    """A value that canonical JSON stores and gives back unchanged: a string, boolean, integer, finite number, or
    a list of those (TOML dates and times, inf and nan are not)."""
    if isinstance(v, list):
        for i, item in enumerate(v):
            if isinstance(item, dict):
                r.fail(f"{fld}[{i}]", "tables are not task parameters")
            _storable(r, f"{fld}[{i}]", item)
    elif isinstance(v, float):
        if not math.isfinite(v):
            r.fail(fld, f"must be finite, got {v!r}")
    elif not isinstance(v, (str, bool, int)):
        r.fail(fld, f"must be a string, number, boolean or a list of them, got {type(v).__name__} {v}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _positive(r: _Reader, fld: str, v: Any, minimum: int = 1) -> None:
    if v is not None and v < minimum:
        r.fail(fld, f"must be at least {minimum}, got {v}")


def _at_most(r: _Reader, fld: str, v: Any, maximum: int) -> None:
    if v is not None and v > maximum:
        r.fail(fld, f"{v} exceeds the maximum of {maximum}")


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
        _storable(r, f"task.{k}", v)
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
    _positive(r, "model.depth", m.depth)
    _at_most(r, "model.depth", m.depth, MAX_DEPTH)
    _at_most(r, "model.hidden", m.hidden, MAX_WIDTH)
    _at_most(r, "model.embedding", m.embedding, MAX_WIDTH)
    if m.capacity == "matched_params" and m.target_params is None:
        r.fail("model.target_params", "required when capacity = \"matched_params\"")
    if m.capacity == "fixed_width" and m.target_params is not None:
        r.fail("model.target_params", "only applies when capacity = \"matched_params\"")
    _positive(r, "model.target_params", m.target_params, 100)
    _at_most(r, "model.target_params", m.target_params, MAX_TARGET_PARAMS)
    return m


def _search_space(r: _Reader, t: tuple[str, dict[str, Any]], user: bool = False) -> tuple[ParamSpec, ...]:
    """Entries name Hparams fields for the built-in trainer; any parameter name a user trainer takes."""
    _, raw = t
    if not raw:
        r.fail("search_space", "must tune at least one hyperparameter")
    out = []
    for name in sorted(raw):
        fld = f"search_space.{name}"
        _known_param(r, fld, name, user)
        entry = raw[name]
        if not isinstance(entry, dict):
            r.fail(fld, "must be a table like { type = \"float\", low = 1e-4, high = 1e-1, log = true }")
        out.append(_param(r, name, entry, fld + ".", user))
    return tuple(out)


def _known_param(r: _Reader, fld: str, name: str, user: bool) -> None:
    if user:
        if not _PARAM_RE.match(name):
            r.fail(fld, "a parameter name must be a Python identifier")
    elif name not in HPARAM_TYPES:
        r.fail(fld, f"unknown hyperparameter (known: {', '.join(HPARAM_TYPES)})")


_PARAM_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


def _param(r: _Reader, name: str, raw: dict[str, Any], p: str, user: bool = False) -> ParamSpec:
    kind = r.get(raw, "type", str, prefix=p, required=True)
    _choice(r, p + "type", kind, ("float", "int", "categorical"))
    want = None if user else HPARAM_TYPES[name]
    if kind == "categorical":
        r.no_unknown(raw, {"type", "choices"}, p)
        choices = r.get(raw, "choices", list, prefix=p, required=True)
        if not choices:
            r.fail(p + "choices", "must not be empty")
        if len(set(map(repr, choices))) != len(choices):
            r.fail(p + "choices", "must not repeat a choice")
        for i, c in enumerate(choices):
            _check_value(r, f"{p}choices[{i}]", name, c, user)
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
    if step is not None and step > high - low:
        # Optuna would silently shrink the range to the single value low.
        r.fail(p + "step", f"{step} is larger than the range high - low = {high - low:g}")
    _check_value(r, p + "low", name, low, user)
    _check_value(r, p + "high", name, high, user)
    return ParamSpec(name=name, type=kind, low=low, high=high, log=log, step=step)


def _check_value(r: _Reader, fld: str, name: str, v: Any, user: bool = False) -> None:
    if user:  # a user trainer checks its own domains; bench only needs values it can store and give back
        if isinstance(v, list):
            r.fail(fld, f"must be a string, number or boolean, got {v!r}")
        _storable(r, fld, v)
        return
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


def _hparam_table(r: _Reader, t: tuple[str, dict[str, Any]], key: str, user: bool = False
                  ) -> tuple[tuple[str, Any], ...]:
    _, raw = t
    for name, v in raw.items():
        _known_param(r, f"{key}.{name}", name, user)
        _check_value(r, f"{key}.{name}", name, v, user)
    if user:
        return tuple(sorted(raw.items()))
    return tuple(sorted((k, float(v) if HPARAM_TYPES[k] is float else v) for k, v in raw.items()))


def _without(t: tuple[str, dict[str, Any]], *keys: str) -> tuple[str, dict[str, Any]]:
    return t[0], {k: v for k, v in t[1].items() if k not in keys}


def _scientific(r: _Reader, raw: Mapping[str, Any], user: bool = False) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    """``[scientific]`` (names in declaration order, numbers sorted, names kept in order), or the shorthand
    ``depths = [...]``; both forms of a depth-only spec give the same value, hence the same hash."""
    _, table = r.table(raw, "scientific")
    if "depths" in raw:
        if table:
            r.fail("depths", "is shorthand for [scientific] depth = [...]; give one or the other, not both")
        depths = r.get(raw, "depths", list)
        if not depths:
            r.fail("depths", "must list at least one depth")
        return (("depth", _scientific_values(r, "depths", "depth", depths, user)),)
    if not table:
        r.fail("scientific", "missing: declare what the arms compare, e.g. [scientific] depth = [1, 2] "
               "(or the shorthand depths = [1, 2])")
    out = []
    for name, values in table.items():
        fld = f"scientific.{name}"
        if user and not _PARAM_RE.match(name):
            r.fail(fld, "a scientific hyperparameter's name must be a Python identifier")
        if not user and name not in SCIENTIFIC:
            r.fail(fld, f"unknown scientific hyperparameter (the built-in model's are: {', '.join(SCIENTIFIC)}; "
                   "a [trainer] of your own may take any)")
        if not isinstance(values, list) or not values:
            r.fail(fld, f"must be a non-empty list of values, got {values!r}")
        out.append((name, _scientific_values(r, fld, name, values, user)))
    n_arms = math.prod(len(v) for _, v in out)
    if n_arms < 2:
        r.fail("scientific", f"gives {n_arms} arm; a comparison needs at least 2")
    return tuple(out)


def _scientific_values(r: _Reader, fld: str, name: str, values: list[Any], user: bool = False) -> tuple[Any, ...]:
    if user:  # any scalar a user trainer accepts; numbers are sorted, names keep their order
        for i, v in enumerate(values):
            if isinstance(v, (list, dict)):
                r.fail(f"{fld}[{i}]", f"must be a string, number or boolean, got {v!r}")
            _storable(r, f"{fld}[{i}]", v)
        if len({canonical_json({"v": v}) for v in values}) != len(values):
            r.fail(fld, "must not repeat a value")
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        return tuple(sorted(values)) if numbers else tuple(values)
    for i, v in enumerate(values):
        if name == "cell":
            if not isinstance(v, str) or v not in CELLS:
                r.fail(f"{fld}[{i}]", f"{v!r} is not one of: {', '.join(CELLS)}")
            continue
        top = MAX_DEPTH if name == "depth" else MAX_WIDTH
        if not _is_int(v) or not 1 <= v <= top:
            r.fail(f"{fld}[{i}]", f"{v!r} must be an integer from 1 to {top}")
    if len(set(values)) != len(values):
        r.fail(fld, "must not repeat a value")
    return tuple(values) if name == "cell" else tuple(sorted(values))


def _no_double_roles(r: _Reader, raw: Mapping[str, Any], names: list[str]) -> None:
    """A scientific hyperparameter is compared, never also tuned, fixed, held constant or set in [model]."""
    for table in ("search_space", "fixed", "baseline", "model"):
        entries = raw.get(table)
        for name in names:
            if isinstance(entries, dict) and name in entries:
                r.fail(f"{table}.{name}", f"{name} is scientific (its values are the arms); remove it from [{table}]")


def _baseline_from(r: _Reader, raw: Mapping[str, Any], scientific: tuple[tuple[str, tuple[Any, ...]], ...]
                   ) -> dict[str, Any]:
    """``baseline.from_depth = k`` (depth-only arms) or ``baseline.from_arm = {depth = 1, cell = "gru"}``."""
    _, table = r.table(raw, "baseline")
    values = dict(scientific)
    src = r.get(table, "from_depth", int, prefix="baseline.")
    arm = r.get(table, "from_arm", dict, prefix="baseline.")
    if src is not None and arm is not None:
        r.fail("baseline.from_arm", "give from_depth or from_arm, not both")
    if src is not None:
        if list(values) != ["depth"]:
            r.fail("baseline.from_depth", f"names a depth, but the arms differ in {', '.join(values)}; "
                   "use from_arm = { ... } with a value for each")
        if src not in values["depth"]:
            r.fail("baseline.from_depth", f"{src} is not one of the depths {sorted(values['depth'])}")
        return {"baseline_from": int(src)}
    if arm is None:
        return {}
    if set(arm) != set(values):
        r.fail("baseline.from_arm", f"must give exactly the scientific hyperparameters: {', '.join(values)}")
    for name, v in arm.items():
        if not any(type(v) is type(x) and v == x for x in values[name]):
            r.fail(f"baseline.from_arm.{name}", f"{v!r} is not one of the arms' values {list(values[name])}")
    if list(values) == ["depth"]:
        return {"baseline_from": int(arm["depth"])}  # the same spec as from_depth, the same hash
    return {"baseline_from_arm": tuple((name, arm[name]) for name in values)}


def _analysis(r: _Reader, t: tuple[str, dict[str, Any]]) -> AnalysisSpec:
    a = _section(r, t, AnalysisSpec)
    if not 0.0 < a.alpha < 0.5:
        r.fail("analysis.alpha", f"must be above 0 and below 0.5, got {a.alpha}")
    if not 0.0 <= a.min_effect < 10.0:
        r.fail("analysis.min_effect", f"must be from 0 to 10 (a relative difference), got {a.min_effect}")
    return a


def _budget(r: _Reader, t: tuple[str, dict[str, Any]]) -> BudgetSpec:
    b = _section(r, t, BudgetSpec)
    _positive(r, "budget.trials", b.trials)
    _positive(r, "budget.studies", b.studies)
    if b.studies > 100:
        r.fail("budget.studies", f"{b.studies} is more than 100")
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


def _trainer(r: _Reader, t: tuple[str, dict[str, Any]]) -> str | None:
    """``[trainer] name = "package.module:function"`` (imported and its signature checked by run.validate)."""
    _, raw = t
    if not raw:
        return None
    r.no_unknown(raw, {"name"}, "trainer.")
    name = r.get(raw, "name", str, prefix="trainer.", required=True)
    module, colon, attr = name.partition(":")
    if not (colon and module and attr):
        r.fail("trainer.name", f"{name!r} is not of the form 'package.module:function'")
    return str(name)


def _metric(r: _Reader, t: tuple[str, dict[str, Any]], user: bool) -> dict[str, Any]:
    """The built-in trainer's metric is validation loss (minimised, diverged runs at the task's trivial loss); a
    user trainer names its own, its direction, and the arm-independent score of a diverged run."""
    _, raw = t
    r.no_unknown(raw, {"name", "direction", "worst"}, "metric.")
    name = r.get(raw, "name", str, prefix="metric.", default="score" if user else "val_loss")
    direction = r.get(raw, "direction", str, prefix="metric.", default="minimize")
    worst = r.get(raw, "worst", float, prefix="metric.")
    if not user:
        _choice(r, "metric.name", name, ("val_loss",))
        if direction != "minimize":
            r.fail("metric.direction", f"{direction!r}: the built-in trainer's score is its validation loss, "
                   "minimized (\"maximize\" applies to a [trainer] of your own)")
        if worst is not None:
            r.fail("metric.worst", "only applies to a [trainer] of your own (the built-in scores a diverged run "
                   "at its task's trivial loss)")
        return {}
    if not NAME_RE.match(name):
        r.fail("metric.name", f"{name!r} must be 1-64 letters, digits, '_', '-' or '.'")
    _choice(r, "metric.direction", direction, DIRECTIONS)
    if worst is None:
        r.fail("metric.worst", "required with a [trainer]: the score of a run that diverged or learned nothing, the "
               "same for every arm (e.g. the loss of predicting the mean, or the accuracy of guessing)")
    if direction == "maximize" and worst <= 0:
        # The report compares geometric means (log scores): every analysed value must be positive, and a value
        # below `worst` is raised to it, so a positive floor keeps a diverged run a bounded bad score.
        r.fail("metric.worst", f"must be above 0 with direction = \"maximize\" (the report compares geometric "
               f"means), got {worst}: use the score of a run that learned nothing, e.g. the accuracy of guessing")
    return {"metric": name, "direction": direction, "worst": worst}


DIRECTIONS = ("minimize", "maximize")


def loss_sign(direction: str) -> int:
    """+1 for minimize, -1 for maximize: ``loss_sign(d) * score`` is lower-is-better in either direction, so code
    that ranks, prunes or caps scores is written once, for losses."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    return 1 if direction == "minimize" else -1
