"""Task lookup: built-in names or "package.module:factory", validated, built once per process and cached."""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from typing import Any

from bench.spec import SpecError, TaskSpec
from bench.tasks import charlm, seq2seq, uea
from bench.tasks.base import Task, TaskError, data_rng
from bench.trainers.plugins import import_callable

TaskFactory = Callable[..., Task]

BUILTIN: dict[str, TaskFactory] = {"seq2seq": seq2seq.make_task, "charlm": charlm.make_task, "uea": uea.make_task}
# Parameter checks that do not generate the data (used by `check_task`, e.g. when `init` validates a spec).
_CHECKS: dict[str, Callable[..., Any]] = {"seq2seq": seq2seq.check_params, "charlm": charlm.check_params,
                                          "uea": uea.check_params}

# Workers build the task once per trial call; the data is the same every time, so keep the last few built.
_CACHE: dict[str, Task] = {}
_CACHE_SIZE = 4


def resolve_factory(name: str) -> TaskFactory:
    """The callable behind a task name; SpecError("task.name: ...") when it cannot be found."""
    if name in BUILTIN:
        return BUILTIN[name]
    form = (f"task.name: {name!r} is neither a built-in task ({', '.join(BUILTIN)}) "
            "nor of the form 'package.module:factory'")
    factory: TaskFactory = import_callable(name, "task.name", form)
    return factory


def load_task(task_spec: TaskSpec) -> Task:
    """The task for a spec, built on first use in this process and cached by (name, data_seed, params)."""
    key = json.dumps([task_spec.name, task_spec.data_seed, task_spec.params], sort_keys=True, default=repr)
    if key not in _CACHE:
        task = _build(task_spec)
        if len(_CACHE) >= _CACHE_SIZE:
            del _CACHE[next(iter(_CACHE))]  # oldest first: dicts keep insertion order
        _CACHE[key] = task
    return _CACHE[key]


def check_task(task_spec: TaskSpec) -> None:
    """Raise SpecError if the task cannot be built; built-ins are checked without generating their data."""
    check = _CHECKS.get(task_spec.name)
    if check is not None:
        data_rng(task_spec.data_seed)  # raises for a seed the built-ins cannot use
        check(**task_spec.kwargs())
    else:
        load_task(task_spec)  # a user factory can only be checked by calling it


def clear_cache() -> None:
    _CACHE.clear()


def _build(task_spec: TaskSpec) -> Task:
    name, kwargs = task_spec.name, task_spec.kwargs()
    factory = resolve_factory(name)
    if name not in BUILTIN:
        _check_signature(name, factory, task_spec.data_seed, kwargs)
    try:
        task = factory(data_seed=task_spec.data_seed, **kwargs)
    except TaskError as exc:
        raise SpecError(f"task.name: factory {name!r} built an invalid Task: {exc}") from None
    if not isinstance(task, Task):
        raise SpecError(f"task.name: factory {name!r} did not return a Task (got {type(task).__name__})")
    return task


def _check_signature(name: str, factory: TaskFactory, data_seed: int, kwargs: dict[str, Any]) -> None:
    """Reject parameters the factory does not take before calling it, so a TypeError inside it stays a bug."""
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):  # some builtins and C callables have no signature; just call them
        return
    try:
        sig.bind(data_seed=data_seed, **kwargs)
    except TypeError as exc:
        unknown = sorted(k for k in kwargs if k not in sig.parameters)
        fld = f"task.{unknown[0]}" if unknown else "task.name"
        raise SpecError(f"{fld}: factory {name!r} does not accept these parameters: {exc}") from None
