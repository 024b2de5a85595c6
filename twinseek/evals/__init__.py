"""Benchmarks, metrics, baselines and the eval runner (``twinseek.evals.run``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from twinseek.evals.results import load_results as load_results
    from twinseek.evals.runner import run as run
    from twinseek.evals.schemas import RunResult as RunResult
    from twinseek.evals.schemas import SystemSpec as SystemSpec

__all__ = ["RunResult", "SystemSpec", "load_results", "run"]
_HOMES = {"RunResult": "schemas", "SystemSpec": "schemas", "load_results": "results", "run": "runner"}


def __getattr__(name: str) -> Any:
    # Lazy: ``import twinseek.evals.bench`` must not pull in the runner (and through it the twin pipeline).
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(f"twinseek.evals.{_HOMES[name]}"), name)
    raise AttributeError(f"module 'twinseek.evals' has no attribute {name!r}")
