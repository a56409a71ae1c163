"""Resolving a plug-in by name (``package.module:attr``): what task factories and user trainers share."""

from __future__ import annotations

import importlib
from typing import Any

from bench.spec import SpecError


def import_callable(name: str, field: str, form_error: str) -> Any:
    """The callable that ``package.module:attr`` names (``attr`` may be dotted).

    Raises SpecError with `form_error` when `name` is not of that form, and "`field`: ..." when the module cannot
    be imported, lacks the attribute, or it is not callable. Only ImportError is caught: a bug inside the user's
    module keeps its traceback.
    """
    module_name, colon, attr = name.partition(":")
    if not colon or not module_name or not attr:
        raise SpecError(form_error)
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise SpecError(f"{field}: cannot import module {module_name!r}: {exc}") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise SpecError(f"{field}: module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise SpecError(f"{field}: {name!r} is not callable (got {type(obj).__name__})")
    return obj
