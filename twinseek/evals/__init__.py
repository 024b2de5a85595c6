"""Benchmarks, metrics, baselines and the eval runner (``twinseek.evals.run``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from twinseek.evals.runner import RunResult as RunResult
    from twinseek.evals.runner import SystemSpec as SystemSpec
    from twinseek.evals.runner import run as run

__all__ = ["RunResult", "SystemSpec", "run"]


def __getattr__(name: str) -> Any:
    # Lazy: ``import twinseek.evals.bench`` must not pull in the runner (and through it the twin pipeline).
    if name in __all__:
        from twinseek.evals import runner

        return getattr(runner, name)
    raise AttributeError(f"module 'twinseek.evals' has no attribute {name!r}")
