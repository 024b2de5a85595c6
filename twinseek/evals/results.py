"""The run folder of an eval, written as the run goes so that a killed run keeps what it finished.

    <out>/results.json               the RunResult: written when the run starts (its config, no system yet),
                                     rewritten after each system finishes and at the end (``complete: true``)
    <out>/checkpoints/<system>.jsonl one QueryResult per line, appended as each query of the running system
                                     finishes; removed once the system is in results.json

Every rewrite of ``results.json`` goes through a temp file and ``os.replace``, so a kill at any moment leaves
either the previous or the next version. ``twinseek eval --resume`` (``run(resume=True)``) reads the folder back
with :meth:`RunFolder.resume`: finished systems are kept, a system cut short continues after its last
checkpointed query, and a run whose settings differ is refused.
"""

from __future__ import annotations

import gzip
import logging
import os
from pathlib import Path

from pydantic import ValidationError

from twinseek.evals.schemas import QueryResult, RunConfig, RunResult, SystemResult
from twinseek.files import write_atomic

logger = logging.getLogger(__name__)

RESULTS = "results.json"
CHECKPOINTS = "checkpoints"


def write_text_atomic(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` (its folder made), whole or not at all (:func:`twinseek.files.write_atomic`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_results(result: RunResult, path: Path) -> Path:
    """Write ``results.json`` atomically."""
    return write_text_atomic(path, result.model_dump_json(indent=2))


def load_results(path: str | Path) -> RunResult:
    """Read a ``results.json``, a gzipped ``results.json.gz``, or the run folder holding one (a run that was
    killed holds the systems it finished)."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS if (path / RESULTS).exists() else path / f"{RESULTS}.gz"
    if path.suffix == ".gz":
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            return RunResult.model_validate_json(handle.read())
    return RunResult.model_validate_json(path.read_text(encoding="utf-8"))


class RunFolder:
    """Where one run's results go, and how a killed run is picked up again."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.results_path = root / RESULTS
        self.checkpoints = root / CHECKPOINTS

    def previous(self) -> RunResult | None:
        """The run already in the folder (complete or not), if any."""
        return load_results(self.results_path) if self.results_path.is_file() else None

    def start(self, config: RunConfig) -> RunResult:
        """A fresh run: refuses to replace an unfinished one (it may be an hour of work), replaces a complete one."""
        old = self.previous()
        if old is not None and (not old.complete or self._partial_systems()):
            done = [n for n, s in old.systems.items() if s.skipped is None]
            raise ValueError(f"{self.root} holds an unfinished run ({len(done)} of {len(old.config.systems)} systems "
                             "finished); resume it with --resume (run(resume=True)), or choose another --out")
        for stale in self._partial_systems():
            stale.unlink()
        result = RunResult(config=config, systems={}, out=self.root, complete=False)
        self.save(result)
        return result

    def resume(self, config: RunConfig) -> RunResult:
        """The folder's run, checked against ``config``; a folder without a run starts afresh.

        Raises:
            ValueError: a setting that changes the numbers differs (bench, kinds, limit, seed, tau, k, ...).
        """
        old = self.previous()
        if old is None:
            logger.info("nothing to resume in %s: starting a new run", self.root)
            return self.start(config)
        differences = old.config.differences(config)
        if differences:
            raise ValueError(f"cannot resume {self.root}: its run used other settings ("
                             + "; ".join(differences) + "); run again with the same ones, or choose another --out")
        systems = list(dict.fromkeys([*old.config.systems, *config.systems]))
        merged = old.config.model_copy(update={"systems": systems})
        kept = {n: s for n, s in old.systems.items() if s.skipped is None}  # a skipped system gets another try
        result = RunResult(config=merged, systems=kept, out=self.root, complete=False)
        self.save(result)
        logger.info("resuming %s: %d system(s) finished, %d to run", self.root, len(kept),
                    len([s for s in systems if s not in kept]))
        return result

    def save(self, result: RunResult) -> Path:
        result.results_path = write_results(result, self.results_path)
        return self.results_path

    # -- per-query checkpoints of the running system
    def _checkpoint(self, system: str) -> Path:
        return self.checkpoints / f"{system}.jsonl"

    def _partial_systems(self) -> list[Path]:
        return sorted(self.checkpoints.glob("*.jsonl")) if self.checkpoints.is_dir() else []

    def checkpointed(self, system: str) -> dict[str, QueryResult]:
        """Query id -> result of the queries ``system`` finished before the run stopped (a line cut short by
        the kill is skipped)."""
        path = self._checkpoint(system)
        if not path.is_file():
            return {}
        done: dict[str, QueryResult] = {}
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            try:
                record = QueryResult.model_validate_json(line)
            except ValidationError:
                logger.warning("%s line %d is incomplete (the run was killed while writing it): ignored", path, number)
                continue
            done[record.id] = record
        return done

    def clear_checkpoint(self, system: str) -> None:
        self._checkpoint(system).unlink(missing_ok=True)

    def append_query(self, system: str, record: QueryResult) -> None:
        """Append one finished query to ``system``'s checkpoint, flushed to disk."""
        path = self._checkpoint(system)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(record.model_dump_json() + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def finish_system(self, result: RunResult, system: SystemResult) -> None:
        """Add ``system`` to the run's ``results.json``, then drop its checkpoint."""
        result.systems[system.name] = system
        self.save(result)
        self.clear_checkpoint(system.name)
