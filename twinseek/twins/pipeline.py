"""Ingestion: video files -> twins in the store (atomically), in three steps: prepare (checks, content hash, the
skip decision), build (decode, then :mod:`twinseek.twins.perception` runs the specialists) and commit (masks and
rows, one writer)."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import socket
import sys
import time
from collections.abc import Callable, Container, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

from twinseek.config import Settings
from twinseek.errors import TwinseekError
from twinseek.media.decode import DecodedVideo, VideoInfo, check_file, is_supported, probe
from twinseek.media.shots import ProgressCallback
from twinseek.timing import timed
from twinseek.twins.chunks import build_chunked, staging_dir
from twinseek.twins.model import Twin, utc_now
from twinseek.twins.perception import build_twin
from twinseek.twins.specialists import Specialists, build_specialists
from twinseek.twins.store import TwinStore

logger = logging.getLogger(__name__)

# Files larger than this have their container header probed before their content is hashed (hashing them costs
# more than the probe); smaller ones are hashed first, so that a re-run skips them without a probe.
PROBE_BEFORE_HASH_BYTES = 32 * 2**20


@dataclass
class IngestResult:
    path: str
    status: Literal["ingested", "skipped", "failed"]
    video_id: str | None = None
    error: str | None = None
    frames: int = 0
    tracks: int = 0
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    repaired: bool = False  # the video was stored already but some of its mask files were missing
    worker: str | None = None  # who built the twin (pid@host, or the Ray node); None for the parent itself


def apply_torch_threads(settings: Settings) -> None:
    """Set torch's intra-op threads from the settings (see ``Settings.torch_threads``)."""
    threads = settings.torch_threads or (1 if settings.profile == "embedded" else None)
    if threads:
        import torch

        torch.set_num_threads(threads)


def file_hash(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def slugify(text: str) -> str:
    slug = re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-.")
    return slug or "video"


def collect_videos(paths: Iterable[str | Path]) -> list[Path]:
    """Expand folders (recursively) into supported video files; files are kept as given so that an
    unsupported file named explicitly is reported rather than silently ignored."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            # anything with a video suffix that is not a folder: a fifo or a broken link named clip.mp4 is
            # reported by ingest as what it is rather than silently left out
            found.extend(sorted(f for f in p.rglob("*") if is_supported(f) and not f.is_dir()))
        else:
            found.append(p)
    return found


# -- the three steps of ingesting one video ------------------------------------------------------------------
# (a) prepare, in the parent: input checks, content hash and the skip decision (a stored video never reaches a
#     worker); (b) build, in a worker (or the parent when serial): decode + specialists, a picklable BuiltTwin;
#     (c) commit, in the parent, the single writer: masks into a fresh mask folder, then the rows in one
#     transaction. Serial ingest, the process pool and Ray actors (twinseek.twins.parallel) all share (a) and (c).
@dataclass
class BuildJob:
    """A video the parent decided to build: all a worker needs (picklable: no store, no models)."""

    path: Path
    content_hash: str
    video_id: str
    timings: dict[str, float] = field(default_factory=dict)  # the parent's steps (hash)
    seconds: float = 0.0  # the parent's wall time preparing it
    attempts: int = 1
    info: VideoInfo | None = None  # the container's probe, when the parent made one (a large file)
    repaired: bool = False  # stored already, but some of its mask files were missing


@dataclass(frozen=True)
class WorkerInfo:
    """Who built a twin: process id, host, Ray node id (built by a Ray actor), the process's peak RSS."""

    pid: int
    host: str
    node_id: str | None = None
    peak_rss_mb: float = 0.0

    @property
    def name(self) -> str:
        return f"{self.pid}@{self.host}" + (f" (node {self.node_id[:8]})" if self.node_id else "")

    @classmethod
    def here(cls) -> WorkerInfo:
        return cls(os.getpid(), socket.gethostname(), _ray_node_id(), peak_rss_mb())


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB.

    Linux: ``VmHWM``, the high-water mark of this process's own memory (``ru_maxrss`` would also count the
    parent's memory at the fork before a spawned worker's exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    import resource  # elsewhere: kilobytes on Linux-likes, bytes on macOS

    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(maxrss / (2**20 if sys.platform == "darwin" else 1024), 1)


def _ray_node_id() -> str | None:
    ray = sys.modules.get("ray")  # only a process Ray started has it imported and initialised
    if ray is None or not ray.is_initialized():
        return None
    return str(ray.get_runtime_context().get_node_id())


@dataclass
class BuiltTwin:
    """A worker's result: the twin (mask paths still empty) and its masks as PNG bytes keyed by
    ``(track_id, frame_index)``. Small: a few KiB per mask, no frames."""

    twin: Twin
    masks: dict[tuple[int, int], bytes]
    frames: int
    seconds: float
    timings: dict[str, float]
    worker: WorkerInfo


class TwinBuilder:
    """Step (b): decodes a video and builds its twin. Holds the specialists, whose models load once (on first use,
    or in :meth:`warm_up`); one per worker process or Ray actor, and one in the parent for serial ingest."""

    def __init__(self, settings: Settings, specialists: Specialists | None = None) -> None:
        self.settings = settings
        self._specialists = specialists
        apply_torch_threads(settings)

    @property
    def specialists(self) -> Specialists:
        if self._specialists is None:
            self._specialists = build_specialists(self.settings)
        return self._specialists

    def build(self, job: BuildJob, on_shot: ProgressCallback | None = None) -> BuiltTwin:
        """Decode the video in one pass that finds its shots and samples frames per shot (``on_shot`` sees each
        shot as it closes) and run the specialists over the sampled frames: a long video a chunk of shots at a
        time, staged in the store so that a stopped build resumes (:mod:`twinseek.twins.chunks`)."""
        start = time.perf_counter()
        timings: dict[str, float] = {}
        twin, encoded, frames = build_chunked(job.video_id, job.path, job.content_hash, self.specialists,
                                              self.settings, timings, info=job.info, on_shot=on_shot)
        return BuiltTwin(twin, encoded, frames, time.perf_counter() - start, timings, WorkerInfo.here())

    def warm_up(self) -> WorkerInfo:
        """Load every model now (a worker does this once, before its first video), by running the specialists
        on a tiny synthetic clip; returns who this worker is."""
        frames = [np.full((64, 96, 3), 90 + 40 * i, np.uint8) for i in range(2)]
        info = VideoInfo(path=Path("warm-up"), width=96, height=64, fps=1.0, frame_count=2, duration_s=2.0)
        build_twin("warm-up", DecodedVideo(info, frames, [0, 1]), "", self.specialists, self.settings)
        if self.specialists.speech is not None:  # the warm-up clip has no sound
            try:
                self.specialists.speech.load()
            except Exception as exc:  # speech is optional: each video's speech step records why it is skipped
                logger.warning("speech model not loaded: %s: %s", type(exc).__name__, exc)
        return WorkerInfo.here()


class BatchBuilder(Protocol):
    """What :meth:`Ingestor.ingest_many` needs of an executor (:class:`twinseek.twins.parallel.BuildExecutor`):
    typed here so that the pipeline never imports the executors (they import the pipeline)."""

    def ingest_batch(
        self, ingestor: Ingestor, files: Sequence[Path], *, force: bool = False,
        on_done: Callable[[IngestResult], None] | None = None, retries: int = 1,
    ) -> list[IngestResult]: ...


class Ingestor:
    """Turns video files into twins in a store. Specialists are built once and reused across videos.

    :meth:`ingest` runs the three steps in this process; :meth:`ingest_many` with an ``executor`` (a process pool
    or Ray actors, see :mod:`twinseek.twins.parallel`) builds in workers while this process prepares and commits.
    """

    def __init__(self, store: TwinStore, settings: Settings, specialists: Specialists | None = None,
                 on_shot: ProgressCallback | None = None) -> None:
        self.store = store
        self.settings = settings
        self.builder = TwinBuilder(settings, specialists)
        # sees each shot of a video built in this process (serial ingest) as it is decoded: a progress bar
        self.on_shot = on_shot

    @property
    def specialists(self) -> Specialists:
        return self.builder.specialists

    def ingest(self, path: str | Path, force: bool = False) -> IngestResult:
        """Ingest one file. Raises ``VideoError`` for bad input; nothing is written in that case.

        The file's kind, suffix and size are checked before its content is read (hashed), and so is the container
        header of a file larger than ``PROBE_BEFORE_HASH_BYTES``. A video already stored (same content) is skipped
        unless ``force``, or unless some of its mask files are missing: then it is ingested again, which repairs it.
        """
        prepared = self.prepare(path, force)
        if isinstance(prepared, IngestResult):
            return prepared
        return self.commit(prepared, self.builder.build(prepared, self.on_shot))

    def prepare(self, path: str | Path, force: bool = False, reserved: Container[str] = ()) -> BuildJob | IngestResult:
        """Step (a): check the file and hash its content; a video already stored is skipped here (unless
        ``force`` or its mask files are missing), before any worker sees it. Returns the ``skipped`` result or the
        job to build. ``reserved``: video ids of jobs still being built (a batch assigns ids before it commits).
        Raises ``VideoError``."""
        path = Path(path)
        start = time.perf_counter()
        timings: dict[str, float] = {}
        with timed(timings, "decode"):
            size = check_file(path, self.settings.sampling)
            # a big file's container is checked before it is read whole; a small one is cheaper to hash first
            # (a probe costs ~20 ms, and a re-run skips most files without needing one)
            info = probe(path, self.settings.sampling) if size > PROBE_BEFORE_HASH_BYTES else None
        with timed(timings, "hash"):
            content_hash = file_hash(path)
        existing = self.store.find_by_hash(content_hash)
        repaired = False
        if existing and not force:
            missing = self.store.missing_masks(existing)
            if not missing:
                return IngestResult(str(path), "skipped", existing)
            logger.warning("%s: %d mask files of the stored twin %s are missing (e.g. %s); ingesting it again",
                           path, len(missing), existing, missing[0])
            repaired = True
        video_id = existing or self._assign_id(path, reserved)
        return BuildJob(path, content_hash, video_id, timings, time.perf_counter() - start, info=info,
                        repaired=repaired)

    def commit(self, job: BuildJob, built: BuiltTwin) -> IngestResult:
        """Step (c), the single writer: the masks go to a fresh mask folder, then every row in one transaction
        (the previous twin of the video, if any, is replaced and its folder removed)."""
        start = time.perf_counter()
        twin = built.twin
        twin.video.ingested_at = utc_now()
        mask_dir = self.store.new_mask_dir(job.video_id)
        try:
            for inst in twin.instances:
                inst.mask_path = self.store.write_mask(mask_dir, inst.track_id, inst.frame_index,
                                                       built.masks[(inst.track_id, inst.frame_index)])
            self.store.put_twin(twin, mask_dir)
        except BaseException:
            self.store.discard_mask_dir(mask_dir)
            raise
        # the twin is stored: the chunks staged while building it (a long video) are not needed any more
        shutil.rmtree(staging_dir(self.store.root, job.content_hash), ignore_errors=True)
        write_s = time.perf_counter() - start
        timings = dict(job.timings)
        for step, secs in [*built.timings.items(), ("write", write_s)]:
            timings[step] = timings.get(step, 0.0) + secs
        worker = None if built.worker.pid == os.getpid() else built.worker.name
        return IngestResult(str(job.path), "ingested", job.video_id, frames=built.frames, tracks=len(twin.tracks),
                            seconds=job.seconds + built.seconds + write_s, timings=timings, worker=worker,
                            repaired=job.repaired)

    def ingest_many(
        self, paths: Sequence[str | Path], force: bool = False, on_done: Callable[[IngestResult], None] | None = None,
        executor: BatchBuilder | None = None, retries: int = 1,
    ) -> list[IngestResult]:
        """Ingest files and folders; a file that fails (bad input, or any unexpected error, logged with its
        traceback) is reported as ``failed`` and the rest go on. ``KeyboardInterrupt`` still stops.

        With an ``executor`` the twins are built in its workers, and a build that fails other than for bad input
        (a crashed worker, a transient error) is tried again up to ``retries`` more times before it is reported.
        Results come back in the order of the files either way; ``on_done`` sees each as it finishes."""
        files = collect_videos(paths)
        if executor is not None:
            return executor.ingest_batch(self, files, force=force, on_done=on_done, retries=retries)
        results = []
        for path in files:
            try:
                result = self.ingest(path, force=force)
            except TwinseekError as exc:
                logger.warning("skipping %s", exc)
                result = IngestResult(str(path), "failed", error=str(exc))
            except Exception as exc:  # a bug or a crashed model on one file must not end a folder ingest
                logger.exception("unexpected error ingesting %s; going on with the next file", path)
                result = IngestResult(str(path), "failed", error=f"{path}: {type(exc).__name__}: {exc}")
            results.append(result)
            if on_done:
                on_done(result)
        return results

    def _assign_id(self, path: Path, reserved: Container[str] = ()) -> str:
        """The file's stem as a slug; a different file with the same stem gets a hash suffix. A changed file
        at a path already in the store keeps its id (the new twin replaces the old)."""
        same_path = self.store.find_by_path(str(path.resolve()))
        if same_path:
            return same_path.video_id
        base = slugify(path.stem)
        if base not in self.store and base not in reserved:
            return base
        return f"{base}-{hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]}"
