"""bench: hyperparameter-fair benchmarking of model variants (tune every arm, compare the best of each).

The Python API is `bench.api` (`from bench import api`; `api.load_spec`, `api.init`, `api.run`, `api.status`,
`api.report` -> `api.Report`); `bench.load_spec`, `bench.Spec`, `bench.SpecError` and `bench.Report` are also
here. (`bench.service` and `bench.report` hold the modules the API builds on.)
Imported on first use, so `import bench` stays light.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.2.0"

__all__ = ["BadInput", "Report", "Spec", "SpecError", "__version__", "load_spec"]


def __getattr__(name: str) -> Any:
    if name in ("load_spec", "Report", "BadInput"):
        from bench import api

        return getattr(api, name)
    if name in ("Spec", "SpecError"):
        from bench import spec

        return getattr(spec, name)
    raise AttributeError(f"module 'bench' has no attribute {name!r}")
