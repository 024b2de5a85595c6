"""Scaffolding of the watch tests: specialists that cost nothing (the watcher, not perception, is under test), an
ingestor that counts its builds, and a copier that writes files in chunks, slowly, as a real copy does."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from twinseek.config import Settings
from twinseek.media.shots import ProgressCallback
from twinseek.twins.adapters.base import Category, SpecialistBase, TrackedObject
from twinseek.twins.pipeline import BuildJob, BuiltTwin, Ingestor, TwinBuilder
from twinseek.twins.specialists import Specialists
from twinseek.twins.store import TwinStore


class NoDetector(SpecialistBase):
    role, tier, model = "detector", "embedded", "none"
    open_vocabulary, every_frame = False, True

    def detect(self, frame: np.ndarray, vocabulary: Any = None) -> list[Any]:
        return []

    def categorise(self, crops: Any, vocabulary: Any = None) -> list[Category]:
        return [Category("scene", 0.5, "none", None)]


class NoTracks(SpecialistBase):
    role, tier, model = "segmenter", "embedded", "none"

    def segment(self, frames: Sequence[np.ndarray], seeds: object) -> list[TrackedObject]:
        return []


def light_specialists() -> Specialists:
    """Real decoding, hashing and commits; no model runs."""
    return Specialists(detector=NoDetector(), segmenter=NoTracks(), describer=None)  # type: ignore[arg-type]


class CountingBuilder(TwinBuilder):
    """A :class:`TwinBuilder` that records every file it builds (thread-safe)."""

    def __init__(self, settings: Settings, specialists: Specialists | None = None) -> None:
        super().__init__(settings, specialists)
        self.built: list[str] = []
        self._lock = threading.Lock()

    def build(self, job: BuildJob, on_shot: ProgressCallback | None = None) -> BuiltTwin:
        with self._lock:
            self.built.append(job.path.name)
        return super().build(job, on_shot)


def counting_ingestor(store: TwinStore, settings: Settings) -> tuple[Ingestor, CountingBuilder]:
    specialists = light_specialists()
    ingestor = Ingestor(store, settings, specialists)
    builder = CountingBuilder(settings, specialists)
    ingestor.builder = builder
    return ingestor, builder


def copy_slowly(sources: Sequence[Path], folder: Path, chunks: int = 4, pause_s: float = 0.1,
                names: Sequence[str] | None = None) -> threading.Thread:
    """Start a thread that copies ``sources`` into ``folder`` all at once: round after round, each file gets its
    next chunk, with ``pause_s`` between rounds (each file is partial for ``chunks - 1`` pauses)."""
    datas = [p.read_bytes() for p in sources]
    targets = [folder / name for name in (names or [p.name for p in sources])]

    def copy() -> None:
        handles = [open(t, "wb") for t in targets]  # noqa: SIM115 - closed below, after the last round
        try:
            for k in range(chunks):
                for data, handle in zip(datas, handles):
                    step = -(-len(data) // chunks)
                    handle.write(data[k * step:(k + 1) * step])
                    handle.flush()
                time.sleep(pause_s)
        finally:
            for handle in handles:
                handle.close()

    thread = threading.Thread(target=copy, name="slow-copy")
    thread.start()
    return thread


class LightBuilder(TwinBuilder):
    """A :class:`TwinBuilder` with the light specialists, made in each worker process (a builder factory)."""

    def __init__(self, settings: Settings, specialists: Specialists | None = None) -> None:
        super().__init__(settings, specialists or light_specialists())
