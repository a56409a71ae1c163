"""Suites: several experiments that share arms, search space and budget, and differ only in the task (and,
optionally, in a model variant such as fixed width vs matched parameter count).

A suite file is an ordinary experiment spec without `name` and `[task]`, plus a `[suite]` table::

    [suite]
    name = "lstm_depth_suite"
    [suite.tasks.reversal]            # one [task] table per task: the member experiments differ only here
    name = "seq2seq"
    kind = "reverse"
    [suite.tasks.charlm]
    name = "charlm"
    [suite.variants.fixed_width]      # optional: [model] fields per variant; members = tasks x variants
    capacity = "fixed_width"
    [suite.variants.matched_params]
    capacity = "matched_params"
    target_params = 60000

Each member is a full experiment named ``<suite>.<task>`` (``<suite>.<task>.<variant>`` with variants), with its
own hash, studies, budget slots and report; the suite only groups them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.spec import NAME_RE, Spec, SpecError, parse_spec, read_table

KNOWN = {"name", "tasks", "variants"}


@dataclass(frozen=True)
class Member:
    task: str  # the task's label in the suite file
    variant: str | None  # the variant's label, if the suite has variants
    spec: Spec
    model: tuple[tuple[str, Any], ...] = ()  # the variant's [model] fields

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass(frozen=True)
class Suite:
    name: str
    source: str
    members: tuple[Member, ...]
    tasks: tuple[str, ...]
    variants: tuple[str, ...]  # () when the suite has none


def is_suite(path: str | Path) -> bool:
    """Whether the file holds a `[suite]` table (False for a spec, and for anything unreadable: the spec loader
    then reports the problem)."""
    try:
        return isinstance(read_table(path).get("suite"), dict)
    except SpecError:
        return False


def load_suite(path: str | Path) -> Suite:
    """Read a suite file into its member specs; SpecError naming the file and the suite's field on any problem."""
    path = Path(path)
    where = str(path)
    raw = read_table(path)
    table = raw.get("suite")
    if not isinstance(table, dict):
        raise SpecError(f"{where}: suite: missing (a suite file has a [suite] table)")

    def fail(fld: str, msg: str) -> SpecError:
        return SpecError(f"{where}: {fld}: {msg}")

    for key in table:
        if key not in KNOWN:
            raise fail(f"suite.{key}", f"unknown field (expected one of: {', '.join(sorted(KNOWN))})")
    for key in ("name", "task"):
        if key in raw:
            raise fail(key, "does not belong in a suite file: the suite names its members "
                            "([suite] name) and gives each its task ([suite.tasks.<label>])")
    name = table.get("name")
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise fail("suite.name", f"must be 1-64 letters, digits, '_', '-' or '.', starting with a letter or digit"
                                 f" (got {name!r})")
    tasks = _labelled(table.get("tasks"), "suite.tasks", fail, required=True)
    variants = _labelled(table.get("variants"), "suite.variants", fail, required=False)
    if "model" in raw and not isinstance(raw["model"], dict):
        raise fail("model", f"must be a table, got {type(raw['model']).__name__}")
    shared = {k: v for k, v in raw.items() if k != "suite"}
    members: list[Member] = []
    for task, task_table in tasks.items():
        for variant, model in (variants.items() if variants else [(None, None)]):
            member = ".".join(x for x in (name, task, variant) if x is not None)
            spec_raw: dict[str, Any] = {**shared, "name": member, "task": task_table}
            if model is not None:
                spec_raw["model"] = {**shared.get("model", {}), **model}
            spec = _member_spec(spec_raw, where, task, variant, model)
            members.append(Member(task, variant, spec, tuple(sorted((model or {}).items()))))
    return Suite(name, where, tuple(members), tuple(tasks), tuple(variants))


def _labelled(value: Any, fld: str, fail: Any, *, required: bool) -> dict[str, dict[str, Any]]:
    """A table of labelled sub-tables ([suite.tasks.<label>]), labels checked like experiment names."""
    if value is None:
        if required:
            raise fail(fld, "missing: give each task a table, e.g. [suite.tasks.reversal] with name = \"seq2seq\"")
        return {}
    if not isinstance(value, dict) or not value:
        raise fail(fld, "must be a table of labelled tables, e.g. [" + fld + ".<label>]")
    for label, sub in value.items():
        if not isinstance(sub, dict):
            raise fail(f"{fld}.{label}", f"must be a table, got {type(sub).__name__}")
        if not NAME_RE.match(label) or "." in label:
            raise fail(f"{fld}.{label}", "a label is 1-64 letters, digits, '_' or '-', starting with a letter or "
                                         "digit")
    return dict(value)


def _member_spec(raw: Mapping[str, Any], where: str, task: str, variant: str | None,
                 model: Mapping[str, Any] | None) -> Spec:
    """Parse one member; errors name the suite file's own field (suite.tasks.<task>.kind, not task.kind)."""
    try:
        return parse_spec(raw, where)
    except SpecError as err:
        raise SpecError(suite_field(str(err), where, task, variant, model)) from None


def suite_field(message: str, where: str, task: str, variant: str | None, model: Mapping[str, Any] | None) -> str:
    """Rewrite a member spec's ``file: task.x: ...`` / ``file: model.x: ...`` to the suite file's field."""
    head = f"{where}: "
    if not message.startswith(head):
        return message
    rest = message[len(head):]
    if rest.startswith("task."):
        return f"{head}suite.tasks.{task}.{rest[len('task.'):]}"
    if rest.startswith("name:"):
        return f"{head}suite.name: the member name {rest[len('name:'):].strip()}"
    if variant is not None and model is not None and rest.startswith("model."):
        fld = rest[len("model."):].split(":", 1)[0]
        if fld in model:
            return f"{head}suite.variants.{variant}.{rest[len('model.'):]}"
    return message
