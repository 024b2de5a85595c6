"""Ingesting with or without a build executor, and comparing two stores (the parallel-ingest tests)."""

from __future__ import annotations

from pathlib import Path

from twinseek.config import load_settings
from twinseek.twins.compare import diff_stores
from twinseek.twins.parallel import BuildExecutor
from twinseek.twins.pipeline import Ingestor, IngestResult
from twinseek.twins.store import TwinStore


def ingest(store_dir: Path, paths: list[Path], executor: BuildExecutor | None, **kwargs: object) -> list[IngestResult]:
    with TwinStore(store_dir) as store:
        return Ingestor(store, load_settings(store=store_dir)).ingest_many(paths, executor=executor, **kwargs)


def assert_same(a: Path, b: Path) -> None:
    with TwinStore(a, create=False) as store_a, TwinStore(b, create=False) as store_b:
        diff = diff_stores(store_a, store_b)
    assert diff.identical, diff.differences
    assert diff.videos and diff.masks
