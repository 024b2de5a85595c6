"""Parallel ingestion: twins built by a process pool on one machine or by Ray actors on a cluster.

The parent process stays the single writer. It prepares each file (input checks, content hash, skip decision:
a video already stored never reaches a worker), hands the rest to an executor whose workers decode and build
twins with their own specialists (models loaded once per worker), and commits each :class:`BuiltTwin` with the
store's atomic write as it comes back. Masks travel back as PNG bytes, so no worker touches the store; a worker
only needs to read the video file at the path the parent names.

Executors (:class:`BuildExecutor`):

- :class:`ProcessPoolBuildExecutor`: ``concurrent.futures.ProcessPoolExecutor`` with the ``spawn`` start method
  (torch and fork do not mix), one torch/OpenCV thread per worker.
- :class:`RayBuildExecutor`: one Ray actor per worker (``ray`` is the optional ``twinseek[ray]`` extra), on a
  local Ray instance or on a cluster (``ray.init(address=...)``); actors are spread over the nodes.

Both bound the work in flight (``inflight_per_worker`` jobs per worker: back-pressure, so memory does not grow
with the size of the collection). A build that fails for a reason other than bad input (a crashed worker, a
transient error) is tried again up to ``retries`` times, then reported as ``failed`` for that file alone.
"""

from __future__ import annotations

import logging
import os
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from twinseek.config import Settings
from twinseek.errors import ConfigError, TwinseekError
from twinseek.twins.pipeline import BuildJob, BuiltTwin, Ingestor, IngestResult, TwinBuilder, WorkerInfo

logger = logging.getLogger(__name__)

BuilderFactory = Callable[[Settings], TwinBuilder]
Outcome = BuiltTwin | BaseException
RAY_OBJECT_STORE_MB = 200  # a local Ray instance's object store: results are small (PNG masks and rows)


class WorkerLostError(RuntimeError):
    """The worker building a twin died (a crash, an out-of-memory kill, a lost node): worth another try."""


def limit_worker_threads() -> None:
    """One thread per library in a worker: the workers are the parallelism, and nested thread pools on a few
    cores only fight each other (``OMP_NUM_THREADS`` must be set before torch is imported)."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        import cv2

        cv2.setNumThreads(1)
    except ImportError:  # the paper profile may run without OpenCV
        pass


# The settings a twin builder reads: an executor's workers and the ingestor that commits must agree on them.
BUILD_SETTINGS = frozenset({"profile", "sampling", "specialists", "paper", "perception", "torch_threads"})


class BuildExecutor(ABC):
    """Builds twins in workers. The scheduler (:func:`ingest_batch`) keeps at most ``capacity`` jobs in flight."""

    capacity: int
    settings: Settings

    def __init__(self) -> None:
        self._workers: dict[tuple[str, int], WorkerInfo] = {}

    @property
    @abstractmethod
    def in_flight(self) -> int: ...

    @abstractmethod
    def submit(self, job: BuildJob) -> None: ...

    @abstractmethod
    def next_done(self) -> tuple[BuildJob, Outcome]:
        """Block until a job in flight finishes; its result, or the exception its build raised."""

    @abstractmethod
    def close(self) -> None: ...

    def ingest_batch(
        self, ingestor: Ingestor, files: Sequence[Path], *, force: bool = False,
        on_done: Callable[[IngestResult], None] | None = None, retries: int = 1,
    ) -> list[IngestResult]:
        """:func:`ingest_batch` with this executor (what :meth:`Ingestor.ingest_many` calls)."""
        return ingest_batch(ingestor, files, self, force=force, on_done=on_done, retries=retries)

    def workers(self) -> list[WorkerInfo]:
        """The workers seen so far, each with the latest peak RSS it reported."""
        return sorted(self._workers.values(), key=lambda w: (w.host, w.pid))

    def _saw(self, info: WorkerInfo) -> None:
        self._workers[(info.host, info.pid)] = info

    def __enter__(self) -> BuildExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- process pool -------------------------------------------------------------------------------------------
_BUILDER: TwinBuilder | None = None
_INIT_ERROR: BaseException | None = None


def _init_worker(settings: Settings, factory: BuilderFactory) -> None:
    global _BUILDER, _INIT_ERROR
    limit_worker_threads()
    try:
        _BUILDER = factory(settings)
        _BUILDER.warm_up()
    except BaseException as exc:  # reported by the first task (an initializer error only breaks the pool)
        _INIT_ERROR = exc


def _builder() -> TwinBuilder:
    if _INIT_ERROR is not None:
        raise _INIT_ERROR
    assert _BUILDER is not None
    return _BUILDER


def _build(job: BuildJob) -> BuiltTwin:
    return _builder().build(job)


def _hello(delay: float) -> WorkerInfo:
    _builder()
    time.sleep(delay)  # long enough that every worker, not one fast one, answers a round of hellos
    return WorkerInfo.here()


class ProcessPoolBuildExecutor(BuildExecutor):
    """``workers`` processes on this machine, each with its own specialists (built and warmed up once)."""

    def __init__(self, settings: Settings, workers: int, builder: BuilderFactory = TwinBuilder,
                 inflight_per_worker: int = 2, start_timeout_s: float = 300.0) -> None:
        super().__init__()
        if workers < 1:
            raise ConfigError(f"workers must be >= 1, got {workers}")
        self.settings, self.n_workers, self.builder = settings, workers, builder
        self.capacity = workers * inflight_per_worker
        self._futures: dict[Future[BuiltTwin], BuildJob] = {}
        self._done: deque[Future[BuiltTwin]] = deque()
        self._pool = self._new_pool()
        self._await_workers(start_timeout_s)

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(self.n_workers, mp_context=get_context("spawn"), initializer=_init_worker,
                                   initargs=(self.settings, self.builder))

    def _await_workers(self, timeout_s: float) -> None:
        """Wait until every worker has loaded its models (so that timings and failures start with the work)."""
        deadline = time.monotonic() + timeout_s
        while len(self._workers) < self.n_workers and time.monotonic() < deadline:
            for future in [self._pool.submit(_hello, 0.05) for _ in range(self.n_workers)]:
                try:
                    self._saw(future.result(timeout=max(1.0, deadline - time.monotonic())))
                except BrokenProcessPool as exc:
                    raise TwinseekError("the worker processes failed to start (see the log above)") from exc
        if len(self._workers) < self.n_workers:
            logger.warning("only %d of %d workers answered within %.0f s", len(self._workers), self.n_workers,
                           timeout_s)

    @property
    def in_flight(self) -> int:
        return len(self._futures)

    def submit(self, job: BuildJob) -> None:
        try:
            future = self._pool.submit(_build, job)
        except BrokenProcessPool:  # a worker died: the jobs it took down come back as WorkerLostError
            logger.warning("a worker process died; starting a new pool")
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new_pool()
            future = self._pool.submit(_build, job)
        self._futures[future] = job

    def next_done(self) -> tuple[BuildJob, Outcome]:
        if not self._done:
            pending = [f for f in self._futures]
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            self._done.extend(f for f in pending if f in done)  # in submission order
        future = self._done.popleft()
        job = self._futures.pop(future)
        try:
            built = future.result()
        except BrokenProcessPool as exc:
            return job, WorkerLostError(f"{job.path}: the worker process died while building it ({exc})")
        except BaseException as exc:
            return job, exc
        self._saw(built.worker)
        return job, built

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


# -- Ray ----------------------------------------------------------------------------------------------------
def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise ConfigError("--ray needs Ray: pip install 'twinseek[ray]'") from exc
    return ray


class RayWorker:
    """The Ray actor: one :class:`TwinBuilder` whose models load once, in :meth:`warm_up`."""

    def __init__(self, settings: Settings, builder: BuilderFactory) -> None:
        limit_worker_threads()
        self.builder = builder(settings)

    def warm_up(self) -> WorkerInfo:
        return self.builder.warm_up()

    def build(self, job: BuildJob) -> BuiltTwin:
        return self.builder.build(job)


@dataclass
class _Actor:
    handle: Any
    load: int = 0
    info: WorkerInfo | None = None


class RayBuildExecutor(BuildExecutor):
    """``workers`` Ray actors (default: one per CPU of the cluster), spread over the cluster's nodes.

    ``address``: ``None`` or ``"local"`` starts a private local Ray instance (``num_cpus`` = workers, a small
    object store, no dashboard); ``"auto"`` or ``HOST:PORT`` joins a running cluster (``ray start``). When Ray is
    already initialised in this process (a notebook, a test cluster) that connection is used as it is. An actor
    that dies is replaced by a new one; the job it held is retried by the scheduler like any failed build.
    """

    def __init__(self, settings: Settings, address: str | None = None, workers: int | None = None,
                 builder: BuilderFactory = TwinBuilder, inflight_per_worker: int = 2, num_gpus: float = 0.0,
                 object_store_mb: int = RAY_OBJECT_STORE_MB) -> None:
        super().__init__()
        self.ray = ray = _import_ray()
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:
            options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                       "logging_level": logging.WARNING}
            if address in (None, "local"):
                options.update(num_cpus=workers or os.cpu_count() or 1, object_store_memory=object_store_mb * 2**20)
            else:
                options["address"] = address
            ray.init(**options)
        n = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        self.settings, self.builder = settings, builder
        self._actor_options: dict[str, Any] = {"num_cpus": 1, "num_gpus": num_gpus, "max_restarts": 0,
                                               "scheduling_strategy": "SPREAD"}
        self._remote = ray.remote(RayWorker)
        self._actors = [self._new_actor() for _ in range(n)]
        self.capacity = n * inflight_per_worker
        self._refs: dict[Any, tuple[BuildJob, _Actor]] = {}
        try:
            infos = ray.get([a.handle.warm_up.remote() for a in self._actors])
        except Exception:
            self.close()
            raise
        for actor, info in zip(self._actors, infos):
            actor.info = info
            self._saw(info)

    def _new_actor(self) -> _Actor:
        return _Actor(self._remote.options(**self._actor_options).remote(self.settings, self.builder))

    @property
    def node_ids(self) -> list[str]:
        """The Ray node of each actor (warm-up order)."""
        return [a.info.node_id for a in self._actors if a.info is not None and a.info.node_id]

    @property
    def in_flight(self) -> int:
        return len(self._refs)

    def submit(self, job: BuildJob) -> None:
        actor = min(self._actors, key=lambda a: a.load)
        actor.load += 1
        self._refs[actor.handle.build.remote(job)] = (job, actor)

    def next_done(self) -> tuple[BuildJob, Outcome]:
        ray = self.ray
        ready, _ = ray.wait(list(self._refs), num_returns=1)
        job, actor = self._refs.pop(ready[0])
        actor.load -= 1
        try:
            built: BuiltTwin = ray.get(ready[0])
        except ray.exceptions.RayTaskError as exc:  # the build raised: hand over its own exception
            return job, exc.cause if isinstance(exc.cause, BaseException) else exc
        except ray.exceptions.RayActorError as exc:
            self._replace(actor)
            return job, WorkerLostError(f"{job.path}: the Ray actor building it died ({exc})")
        self._saw(built.worker)
        return job, built

    def _replace(self, actor: _Actor) -> None:
        if actor not in self._actors:  # already replaced (several of its jobs failed)
            return
        logger.warning("a Ray actor died; starting a new one")
        self.ray.kill(actor.handle, no_restart=True)
        # its other jobs in flight come back failed too, still owned by the dead actor (so they do not take the
        # fresh one down with them, and its load counts only what it was given)
        self._actors[self._actors.index(actor)] = self._new_actor()

    def close(self) -> None:
        for actor in getattr(self, "_actors", []):
            self.ray.kill(actor.handle, no_restart=True)
        self._actors = []
        if self._owns_ray and self.ray.is_initialized():
            self.ray.shutdown()


def make_executor(settings: Settings, workers: int | None = None, ray: str | None = None) -> BuildExecutor | None:
    """The executor the CLI options ask for: ``workers`` Ray actors with ``ray`` (an address or ``local``; by
    default one actor per CPU of the cluster), a process pool for ``workers`` > 1, else ``None`` (serial, in this
    process)."""
    if ray:
        return RayBuildExecutor(settings, address=ray, workers=workers)
    if workers and workers > 1:
        return ProcessPoolBuildExecutor(settings, workers)
    return None


# -- the scheduler ------------------------------------------------------------------------------------------
@dataclass
class _Batch:
    files: Sequence[Path]
    on_done: Callable[[IngestResult], None] | None
    results: dict[int, IngestResult] = field(default_factory=dict)
    building: dict[str, tuple[int, BuildJob]] = field(default_factory=dict)  # content hash -> (file index, job)
    parked: dict[str, list[int]] = field(default_factory=dict)  # same content as a job in flight: wait for it

    def finish(self, index: int, result: IngestResult) -> None:
        self.results[index] = result
        if self.on_done:
            self.on_done(result)


def ingest_batch(
    ingestor: Ingestor, files: Sequence[Path], executor: BuildExecutor, force: bool = False,
    on_done: Callable[[IngestResult], None] | None = None, retries: int = 1,
) -> list[IngestResult]:
    """Prepare in this process, build in ``executor``'s workers, commit here as results arrive.

    Gives the store the same videos, ids, tracks and relations as a serial ingest of ``files`` would: ids are
    assigned in file order (ids of jobs in flight are reserved), and a file with the same content as one being
    built waits for it and is then skipped (or, with ``force``, rebuilt after it) as it would be serially.
    """
    if executor.settings.model_dump(include=set(BUILD_SETTINGS)) != ingestor.settings.model_dump(include=set(BUILD_SETTINGS)):
        raise ConfigError("the executor's workers were started with other settings than the ingestor's "
                          f"(the fields {sorted(BUILD_SETTINGS)} must match)")
    batch = _Batch(files, on_done)
    queue: deque[int] = deque(range(len(files)))
    while queue or executor.in_flight:
        while queue and executor.in_flight < executor.capacity:
            index = queue.popleft()
            job = _prepare(ingestor, index, force, batch)
            if job is not None:
                batch.building[job.content_hash] = (index, job)
                executor.submit(job)
        if not executor.in_flight:
            continue
        job, outcome = executor.next_done()
        if isinstance(outcome, BaseException) and _retryable(outcome) and job.attempts <= retries:
            logger.warning("%s failed (%s: %s); trying again", job.path, type(outcome).__name__, outcome)
            job.attempts += 1
            executor.submit(job)
            continue
        index, _ = batch.building.pop(job.content_hash)
        batch.finish(index, _commit(ingestor, job, outcome))
        queue.extendleft(reversed(batch.parked.pop(job.content_hash, [])))
    return [batch.results[i] for i in range(len(files))]


def _prepare(ingestor: Ingestor, index: int, force: bool, batch: _Batch) -> BuildJob | None:
    path = batch.files[index]
    try:
        prepared = ingestor.prepare(path, force, reserved={job.video_id for _, job in batch.building.values()})
    except Exception as exc:
        batch.finish(index, _failed(path, exc))
        return None
    if isinstance(prepared, IngestResult):
        batch.finish(index, prepared)
        return None
    if prepared.content_hash in batch.building:
        batch.parked.setdefault(prepared.content_hash, []).append(index)
        return None
    return prepared


def _commit(ingestor: Ingestor, job: BuildJob, outcome: Outcome) -> IngestResult:
    if isinstance(outcome, BaseException):
        return _failed(job.path, outcome)
    try:
        return ingestor.commit(job, outcome)
    except Exception as exc:
        return _failed(job.path, exc)


def _retryable(exc: BaseException) -> bool:
    """Bad input fails the same way every time; anything else (a crash, a transient error) may not."""
    return not isinstance(exc, TwinseekError)


def _failed(path: Path, exc: BaseException) -> IngestResult:
    if isinstance(exc, TwinseekError):
        logger.warning("skipping %s", exc)
        return IngestResult(str(path), "failed", error=str(exc))
    logger.error("ingesting %s failed: %s: %s", path, type(exc).__name__, exc)
    return IngestResult(str(path), "failed", error=f"{path}: {type(exc).__name__}: {exc}")
