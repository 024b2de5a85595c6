"""What an eval run records: the systems it compares, one record per query, per-system and per-run results.

These models are the contract between the evaluator (:mod:`twinseek.evals.metrics`), the runner
(:mod:`twinseek.evals.runner`), the run folder (:mod:`twinseek.evals.results`) and the report
(:mod:`twinseek.evals.report`). They import nothing else of twinseek, so every one of those modules can
import them without an import cycle.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SWITCHES: tuple[str, ...] = ("qd", "ca", "lr", "jit")
SWITCH_LABELS = {"qd": "QD", "ca": "CA", "lr": "LR", "jit": "JiT"}
SystemKind = Literal["agent", "random", "naive", "dense", "compositional", "whole"]
BASELINES: tuple[SystemKind, ...] = ("random", "naive", "dense", "compositional")
# "whole": dense's ranking with the whole video as every moment, the floor of the moment kind (on other kinds it
# is dense again, so --all leaves it out)
MOMENT_BASELINES: tuple[SystemKind, ...] = ("whole",)
ALL_SYSTEMS: tuple[str, ...] = ("full", "full-qd", "full-ca", "full-lr", "full-jit", *BASELINES)
TOP_N = 10  # ranking entries kept per query


# ---------------------------------------------------------------- systems
class SystemSpec(BaseModel):
    """One system to evaluate: the agent with some switches off, or a baseline."""

    model_config = ConfigDict(frozen=True)

    kind: SystemKind
    ablate: tuple[str, ...] = Field((), description="Agent switches turned off (qd, ca, lr, jit), canonical order.")

    @property
    def name(self) -> str:
        if self.kind != "agent":
            return self.kind
        return "-".join(["full", *self.ablate])

    @property
    def label(self) -> str:
        if self.kind != "agent":
            return self.kind
        return "full" + (f" w/o {'+'.join(SWITCH_LABELS[s] for s in self.ablate)}" if self.ablate else "")

    def switches(self) -> dict[str, bool]:
        return {s: s not in self.ablate for s in SWITCHES}

    @classmethod
    def parse(cls, text: str) -> SystemSpec:
        """``full``, ``full-qd-ca`` (or ``no-qd``), ``random``, ``naive``, ``dense``, ``compositional``."""
        parts = [p for p in re.split(r"[-+_/ ]+", text.strip().lower()) if p]
        if len(parts) == 1 and parts[0] in (*BASELINES, *MOMENT_BASELINES):
            return cls(kind=parts[0])  # type: ignore[arg-type]
        if parts and parts[0] in ("full", "no", "wo", "agent"):
            return cls.agent(parts[1:], text)
        raise ValueError(f"unknown system {text!r}; use full, full-<switch>[-<switch>] ({', '.join(SWITCHES)}) "
                         f"or one of {', '.join((*BASELINES, *MOMENT_BASELINES))}")

    @classmethod
    def agent(cls, ablate: Iterable[str], where: str = "") -> SystemSpec:
        """The agent with ``ablate`` (case-insensitive switch names) off."""
        wanted = {a.strip().lower() for a in ablate if a.strip()}
        unknown = wanted - set(SWITCHES)
        if unknown:
            raise ValueError(f"unknown ablation switch(es) {sorted(unknown)} in {where!r}; "
                             f"known: {', '.join(SWITCH_LABELS.values())}")
        return cls(kind="agent", ablate=tuple(s for s in SWITCHES if s in wanted))


def parse_systems(items: Iterable[str | SystemSpec]) -> list[SystemSpec]:
    """Specs from names (comma-separated lists allowed), duplicates dropped, order kept."""
    specs: list[SystemSpec] = []
    for item in items:
        parsed = [item] if isinstance(item, SystemSpec) else [SystemSpec.parse(p) for p in item.split(",") if p.strip()]
        specs.extend(s for s in parsed if s not in specs)
    if not specs:
        raise ValueError("no system to evaluate")
    return specs


# ---------------------------------------------------------------- one query
class QueryRecord(BaseModel):
    """What one query contributes to the metrics; fields that do not apply to its kind stay ``None``."""

    id: str
    kind: str
    rank: int | None = None
    gallery_size: int | None = None
    ap: float | None = None
    positive_score: float | None = None
    max_score: float | None = None
    correct: bool | None = None
    aspect: str | None = None
    j: float | None = None
    f: float | None = None
    iou: float | None = Field(None, description="Moment: tIoU of the rank-1 video's best moment (0: wrong video).")
    localised: bool | None = Field(None, description="Moment: the system gave a moment (else the whole video).")
    source: str | None = Field(None, description="Moment: the kind of the query it was made from.")


class RankedVideo(BaseModel):
    video: str
    score: float | None  # None: not scored (-inf)


class ObjectMasks(BaseModel):
    track_id: int
    category: str = ""
    masks: dict[int, str] = Field(default_factory=dict, description="Frame index -> mask PNG path.")


class HitInfo(BaseModel):
    """One agent hit as recorded: enough to draw its overlay later."""

    video: str
    relevance: float
    judged_by: str = ""
    objects: list[ObjectMasks] = Field(default_factory=list)
    moments: list[tuple[float, float]] = Field(default_factory=list, description="[start_s, end_s], best first.")


class QueryInfo(BaseModel):
    """Stage timings, models and fallbacks a scorer gathered while it answered one query."""

    timings: dict[str, float] = Field(default_factory=dict)
    models: dict[str, str] = Field(default_factory=dict)
    fallbacks: list[str] = Field(default_factory=list)
    hits: list[HitInfo] = Field(default_factory=list)
    returned: list[str] | None = None
    max_relevance: float | None = None

    def add_timings(self, timings: Mapping[str, float]) -> None:
        for key, value in timings.items():
            self.timings[key] = round(self.timings.get(key, 0.0) + float(value), 4)


class QueryResult(QueryRecord):
    """A :class:`QueryRecord` plus what the system did for the query."""

    text: str
    positives: list[str] = Field(default_factory=list)
    ranking: list[RankedVideo] = Field(default_factory=list, description=f"Top {TOP_N} of the gallery.")
    moment: list[float] | None = Field(None, description="Moment: [start_s, end_s] scored for the rank-1 video.")
    choice_scores: list[float | None] | None = Field(None, description="MCQ options' / [true, counterfactual] scores.")
    returned: list[str] | None = Field(None, description="Agent: the videos it returned (relevance >= tau).")
    hits: list[HitInfo] = Field(default_factory=list)
    seconds: float = 0.0
    timings: dict[str, float] = Field(default_factory=dict, description="Seconds per stage (summed over calls).")
    models: dict[str, str] = Field(default_factory=dict, description="tier:model behind each stage.")
    fallbacks: list[str] = Field(default_factory=list)


# ---------------------------------------------------------------- systems and runs
class OverlayExample(BaseModel):
    query_id: str
    text: str
    outcome: Literal["hit", "miss"]
    video: str | None
    positives: list[str]
    files: list[str] = Field(default_factory=list, description="Overlay images, relative to the run folder.")


class SystemResult(BaseModel):
    name: str
    label: str
    kind: SystemKind
    ablate: list[str] = Field(default_factory=list)
    metrics: dict[str, float] = Field(default_factory=dict)
    records: list[QueryResult] = Field(default_factory=list)
    seconds: float = 0.0
    skipped: str | None = Field(None, description="Why the system did not run (e.g. the agent is not installed).")
    examples: list[OverlayExample] = Field(default_factory=list)


# Settings that change the numbers: a run resumes only when they are the same
RESUME_FIELDS: tuple[str, ...] = ("bench", "gallery", "queries", "kinds", "limit", "seed", "tau", "k", "profile",
                                  "llm_decomposition")


class RunConfig(BaseModel):
    bench: str
    gallery: int
    queries: int
    kinds: list[str] | None
    limit: int | None
    seed: int
    tau: float
    k: int
    profile: str
    store: str | None
    llm_decomposition: bool
    systems: list[str]
    llm: dict[str, Any] = Field(default_factory=dict)
    versions: dict[str, str] = Field(default_factory=dict)
    started: str = ""

    def differences(self, other: RunConfig) -> list[str]:
        """``field: ours != theirs`` for each setting (of :data:`RESUME_FIELDS` and the LLM's model) that
        differs; the store counts only when both runs used one."""
        out = [f"{name}: {getattr(self, name)!r} != {getattr(other, name)!r}" for name in RESUME_FIELDS
               if getattr(self, name) != getattr(other, name)]
        if self.llm.get("model") != other.llm.get("model"):
            out.append(f"llm model: {self.llm.get('model')!r} != {other.llm.get('model')!r}")
        if self.store and other.store and Path(self.store).resolve() != Path(other.store).resolve():
            out.append(f"store: {self.store!r} != {other.store!r}")
        return out


class RunResult(BaseModel):
    """Everything a run produced; ``results.json`` is this model."""

    config: RunConfig
    systems: dict[str, SystemResult]
    complete: bool = Field(True, description="False while the run goes on, or after it was killed (resume it).")
    out: Path | None = None
    results_path: Path | None = None
    report_files: list[Path] = Field(default_factory=list)

    def metrics(self) -> dict[str, dict[str, float]]:
        """System name -> metrics (systems that ran)."""
        return {n: s.metrics for n, s in self.systems.items() if s.skipped is None}
