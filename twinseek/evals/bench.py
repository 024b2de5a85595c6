"""Load retrieval benchmarks into one validated model.

Two layouts are read:

* the **dev-bench** format (``load_bench``)::

      <root>/videos/<video_id>.<mp4|gif|...>   the gallery; the id is the file stem
      <root>/masks/<video_id>/<k>.png           optional ground-truth foreground of decoded frame k (0/255)
      <root>/queries.jsonl                      one JSON object per line; ``kind`` selects the model below

* the **ReasonT2VBench** layout (``load_reasont2vbench``), converted into the same :class:`Bench`.

Every problem found while loading (bad JSON, a field that fails validation, an unknown video id, a missing
folder) is collected and raised at once as a :class:`BenchError` whose message lists each one with its line
number, so a broken bench is fixed in one pass rather than one error at a time.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from twinseek.errors import TwinseekError

logger = logging.getLogger(__name__)

VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".gif"})
QueryKind = Literal["implicit", "explicit", "negation", "absent", "mcq", "counterfactual", "moment"]
QUERY_KINDS: tuple[QueryKind, ...] = ("implicit", "explicit", "negation", "absent", "mcq", "counterfactual", "moment")
RANKED_KINDS: frozenset[str] = frozenset({"implicit", "explicit", "negation", "moment"})


class BenchError(TwinseekError):
    """A bench folder is missing pieces or holds invalid lines; ``problems`` lists every one found."""

    def __init__(self, root: str | Path, problems: Sequence[str]) -> None:
        self.root = Path(root)
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{self.root}: {len(self.problems)} problem(s) in the bench:\n{lines}")


# ---------------------------------------------------------------- query models
class _Query(BaseModel):
    # extra="forbid": a misspelt optional field (``has_mask``) would otherwise silently take its default
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1)

    @property
    def videos(self) -> list[str]:
        """Video ids this query refers to (checked against the gallery when loading)."""
        return list(getattr(self, "positives", None) or []) or ([v] if (v := getattr(self, "video", None)) else [])


class _Ranked(_Query):
    text: str = Field(min_length=1)
    positives: list[str] = Field(min_length=1, description="Ids of the videos that match the query.")


class ImplicitQuery(_Ranked):
    """A query that needs reasoning; grounding is scored when ``has_masks``."""

    kind: Literal["implicit"] = "implicit"
    has_masks: bool = False
    mask_dir: str | None = Field(
        None, description="Per-query mask folder relative to the bench root (ReasonT2VBench); else masks/<video>."
    )


class ExplicitQuery(_Ranked):
    """An ordinary caption."""

    kind: Literal["explicit"] = "explicit"


class MomentQuery(_Ranked):
    """A query whose positives are long videos, each with the time span(s) that match it (the moment bench of
    :mod:`twinseek.evals.moment_bench`): scored for the video at rank 1 and for its best moment's overlap."""

    kind: Literal["moment"] = "moment"
    spans: list[tuple[str, float, float]] = Field(
        min_length=1, description="[video, start_s, end_s] of every span that matches; a video may hold several.")
    source: str | None = Field(None, description="The kind of the query this one was made from (explicit, ...).")
    clips: list[str] = Field(default_factory=list, description="The source clips whose spans these are.")

    @model_validator(mode="after")
    def _spans_match_positives(self) -> MomentQuery:
        for video, start, end in self.spans:
            if video not in self.positives:
                raise ValueError(f"span video {video!r} is not a positive")
            if not 0 <= start < end:
                raise ValueError(f"span {video!r} [{start}, {end}] is empty or negative")
        missing = set(self.positives) - {v for v, _, _ in self.spans}
        if missing:
            raise ValueError(f"positive(s) without a span: {', '.join(sorted(missing))}")
        return self

    def spans_of(self, video: str) -> list[tuple[float, float]]:
        """The ground-truth spans inside ``video`` (empty when it is not a positive)."""
        return [(start, end) for v, start, end in self.spans if v == video]


class NegationQuery(_Ranked):
    """A caption that says what is NOT in the video."""

    kind: Literal["negation"] = "negation"


class AbsentQuery(_Query):
    """A query no gallery video matches: a good system scores every video low."""

    kind: Literal["absent"] = "absent"
    text: str = Field(min_length=1)
    positives: list[str] = Field(default_factory=list, max_length=0)


class McqQuery(_Query):
    """Pick the right one of ``options`` for ``video``; ``answer`` is its index."""

    kind: Literal["mcq"] = "mcq"
    video: str = Field(min_length=1)
    options: list[str] = Field(min_length=2)
    answer: int = Field(ge=0)

    @model_validator(mode="after")
    def _answer_in_range(self) -> McqQuery:
        if self.answer >= len(self.options):
            raise ValueError(f"answer {self.answer} is not an index of the {len(self.options)} options")
        return self


class CounterfactualQuery(_Query):
    """For ``video``, the true ``text`` must score above ``counterfactual``."""

    kind: Literal["counterfactual"] = "counterfactual"
    video: str = Field(min_length=1)
    text: str = Field(min_length=1)
    counterfactual: str = Field(min_length=1)
    aspect: str | None = None


Query = Annotated[
    ImplicitQuery | ExplicitQuery | NegationQuery | AbsentQuery | McqQuery | CounterfactualQuery | MomentQuery,
    Field(discriminator="kind"),
]
QUERY_ADAPTER: TypeAdapter[Query] = TypeAdapter(Query)
RankedQuery = ImplicitQuery | ExplicitQuery | NegationQuery | AbsentQuery | MomentQuery


# ---------------------------------------------------------------- the bench
class Bench(BaseModel):
    """A gallery of videos, the queries over it and (optionally) ground-truth masks."""

    model_config = ConfigDict(frozen=True)

    root: Path
    videos: dict[str, Path] = Field(description="Video id (file stem) -> file; the gallery of every ranking.")
    queries: list[Query]
    mask_dirs: dict[str, Path] = Field(default_factory=dict, description="Video id -> folder of <k>.png masks.")

    def of_kind(self, *kinds: str) -> list[Query]:
        """Queries whose kind is one of ``kinds`` (all when none given), in file order."""
        return [q for q in self.queries if not kinds or q.kind in kinds]

    def select(self, kinds: Iterable[str] | None) -> Bench:
        """A copy keeping only ``kinds`` (all when ``None``); the gallery is unchanged."""
        if kinds is None:
            return self
        wanted = _check_kinds(kinds)
        return self.model_copy(update={"queries": [q for q in self.queries if q.kind in wanted]})

    def masks_for(self, video_id: str) -> dict[int, Path]:
        """Ground-truth masks of ``video_id`` by decoded frame index (empty when it has none)."""
        folder = self.mask_dirs.get(video_id)
        return _mask_files(folder) if folder else {}

    def query_masks(self, query: ImplicitQuery) -> dict[int, Path]:
        """Masks of the objects a query targets: its own folder when given, else its first positive's."""
        if query.mask_dir:
            return _mask_files(self.root / query.mask_dir)
        return self.masks_for(query.positives[0])


def _mask_files(folder: Path) -> dict[int, Path]:
    if not folder.is_dir():
        return {}
    return {int(p.stem): p for p in sorted(folder.glob("*.png")) if p.stem.isdigit()}


def _check_kinds(kinds: Iterable[str]) -> set[str]:
    wanted = set(kinds)
    unknown = wanted - set(QUERY_KINDS)
    if unknown:
        raise ValueError(f"unknown query kind(s) {sorted(unknown)}; known: {', '.join(QUERY_KINDS)}")
    return wanted


# ---------------------------------------------------------------- dev-bench loader
def load_bench(root: str | Path, kinds: Iterable[str] | None = None) -> Bench:
    """Load and validate a dev-bench folder; ``kinds`` keeps only those query kinds.

    Raises:
        BenchError: listing every problem found (missing folders, bad lines by line number, unknown ids).
        ValueError: ``kinds`` names an unknown kind.
    """
    root = Path(root)
    wanted = _check_kinds(kinds) if kinds is not None else None
    problems: list[str] = []
    if not root.is_dir():
        raise BenchError(root, ["bench folder does not exist"])
    videos = _scan_videos(root / "videos", problems)
    mask_dirs = _scan_masks(root / "masks", videos, problems)
    queries = _read_jsonl(root / "queries.jsonl", problems)
    _check_references(queries, videos, mask_dirs, problems, "queries.jsonl line")
    if problems:
        raise BenchError(root, problems)
    if wanted is not None:
        queries = [(n, q) for n, q in queries if q.kind in wanted]
    logger.info("loaded bench %s: %d videos, %d queries", root, len(videos), len(queries))
    return Bench(root=root, videos=videos, queries=[q for _, q in queries], mask_dirs=mask_dirs)


def _scan_videos(folder: Path, problems: list[str]) -> dict[str, Path]:
    if not folder.is_dir():
        problems.append(f"missing folder {folder.name}/ (the video gallery)")
        return {}
    videos: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in VIDEO_SUFFIXES:
            logger.debug("ignoring non-video file %s", path)
            continue
        if path.stem in videos:
            problems.append(f"videos/: id {path.stem!r} is used by both {videos[path.stem].name} and {path.name}")
        videos[path.stem] = path
    if not videos:
        problems.append(f"{folder.name}/ holds no video ({', '.join(sorted(VIDEO_SUFFIXES))})")
    return videos


def _read_jsonl(path: Path, problems: list[str]) -> list[tuple[int, Query]]:
    """Valid queries with their line numbers; bad lines become problems."""
    if not path.is_file():
        problems.append(f"missing file {path.name}")
        return []
    queries: list[tuple[int, Query]] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        query = _parse_line(line, f"{path.name} line {number}", problems)
        if query is not None:
            queries.append((number, query))
    return queries


def _line_of(problem: str) -> int:
    # "queries.jsonl line 12 (id ...): ..." -> 12; problems without a line sort first
    head = problem.split(":")[0].split(" (")[0].split()
    return int(head[-1]) if head and head[-1].isdigit() else 0


def _parse_line(line: str, where: str, problems: list[str]) -> Query | None:
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        problems.append(f"{where}: invalid JSON ({exc.msg} at column {exc.colno})")
        return None
    return _validate(data, where, problems)


def _validate(data: Any, where: str, problems: list[str]) -> Query | None:
    if isinstance(data, dict) and data.get("id"):
        where = f"{where} (id {data['id']!r})"
    try:
        return QUERY_ADAPTER.validate_python(data)
    except ValidationError as exc:
        problems.append(f"{where}: " + "; ".join(_describe(e) for e in exc.errors()))
        return None


def _describe(error: Any) -> str:
    # the first loc item is the union tag ("implicit"); the field name is what a bench author needs
    loc = [str(p) for p in error["loc"][1:]] or [str(p) for p in error["loc"]]
    return f"{'.'.join(loc) or 'line'}: {error['msg']}"


def _scan_masks(folder: Path, videos: dict[str, Path], problems: list[str]) -> dict[str, Path]:
    if not folder.is_dir():
        return {}
    mask_dirs: dict[str, Path] = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        if sub.name not in videos:
            problems.append(f"masks/{sub.name}/: no video with that id in videos/")
            continue
        bad = [p.name for p in sub.glob("*.png") if not p.stem.isdigit()]
        if bad:
            problems.append(f"masks/{sub.name}/: file names must be frame numbers (<k>.png): {', '.join(bad[:3])}")
        mask_dirs[sub.name] = sub
    return mask_dirs


def _check_references(
    queries: Sequence[tuple[int, Query]],
    videos: dict[str, Path],
    mask_dirs: dict[str, Path],
    problems: list[str],
    where_prefix: str,
) -> None:
    """Append reference problems (duplicate ids, unknown videos, missing masks), then order all by line."""
    seen: dict[str, int] = {}
    for number, query in queries:
        where = f"{where_prefix} {number} (id {query.id!r})"
        if query.id in seen:
            problems.append(f"{where}: duplicate id, first used on line {seen[query.id]}")
        seen.setdefault(query.id, number)
        unknown = [v for v in query.videos if v not in videos]
        if unknown and videos:
            problems.append(f"{where}: unknown video id(s) {', '.join(map(repr, unknown))}")
        if isinstance(query, CounterfactualQuery) and query.text.strip() == query.counterfactual.strip():
            # The dev bench has one such LOVEU pair (q0155): kept, since dropping items silently skews
            # accuracy, but no scorer can get it right (ties count as wrong).
            logger.warning("%s: text and counterfactual are identical", where)
        if isinstance(query, ImplicitQuery) and query.has_masks and not query.mask_dir:
            missing = [v for v in query.positives if v in videos and v not in mask_dirs]
            if missing:
                problems.append(f"{where}: has_masks is true but masks/{missing[0]}/ does not exist")
    problems.sort(key=_line_of)  # stable: folder problems first, then by line


# ---------------------------------------------------------------- ReasonT2VBench adapter
class _RT2VEntry(BaseModel):
    """One ReasonT2VBench query entry; the aliases cover the spellings such releases tend to use."""

    model_config = ConfigDict(extra="ignore")

    id: str | int = Field(validation_alias=AliasChoices("id", "query_id", "qid"))
    text: str = Field(min_length=1, validation_alias=AliasChoices("query", "text", "question"))
    video_ids: list[str] = Field(
        min_length=1, validation_alias=AliasChoices("video_ids", "video_id", "videos", "video", "positives")
    )
    mask_dir: str | None = Field(None, validation_alias=AliasChoices("mask_dir", "masks"))

    @model_validator(mode="before")
    @classmethod
    def _single_video(cls, data: Any) -> Any:
        # "video_id": "sav_000123" is the common single-target form; lists are accepted as well
        if isinstance(data, dict):
            for key in ("video_ids", "video_id", "videos", "video", "positives"):
                if isinstance(data.get(key), str):
                    data = {**data, key: [data[key]]}
        return data


def load_reasont2vbench(root: str | Path) -> Bench:
    """Load a local copy of ReasonT2VBench (Shen et al., arXiv 2511.12371) into a :class:`Bench`.

    The dataset is not public, so this reads an **assumed** layout, chosen to match the paper's description
    (SA-V test videos at 24 fps, manually written implicit queries, each with its ground-truth video(s) and the
    instance masks of the objects that satisfy it)::

        <root>/videos/<video_id>.mp4            the gallery: the 135 target videos (+865 distractors for -1000)
        <root>/queries.json                     a JSON list (or {"queries": [...]}) of entries:
            {"id": "q001",                      also "query_id" / "qid"; ints are turned into strings
             "query": "...",                    also "text" / "question"
             "video_id": "sav_000123",          also "video_ids" / "videos" / "positives"; a string or a list
             "mask_dir": "masks/q001"}          optional, relative to <root>; also "masks"
        <root>/masks/<query id>/<k>.png          default mask folder when "mask_dir" is absent: the union of the
                                                 target instances in decoded frame k (any non-zero pixel)

    Every entry becomes an :class:`ImplicitQuery` (``has_masks`` when its mask folder holds PNGs). Problems are
    collected and raised together as a :class:`BenchError`, as in :func:`load_bench`.
    """
    root = Path(root)
    if not root.is_dir():
        raise BenchError(root, ["bench folder does not exist"])
    problems: list[str] = []
    videos = _scan_videos(root / "videos", problems)
    queries = [(n, _rt2v_query(root, e)) for n, e in _read_rt2v_entries(root / "queries.json", problems)]
    _check_references(queries, videos, {}, problems, "queries.json entry")
    if problems:
        raise BenchError(root, problems)
    logger.info("loaded ReasonT2VBench %s: %d videos, %d queries", root, len(videos), len(queries))
    return Bench(root=root, videos=videos, queries=[q for _, q in queries])


def _read_rt2v_entries(path: Path, problems: list[str]) -> list[tuple[int, _RT2VEntry]]:
    if not path.is_file():
        problems.append(f"missing file {path.name}")
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        problems.append(f"{path.name}: invalid JSON ({exc.msg} at line {exc.lineno})")
        return []
    items = data.get("queries") if isinstance(data, dict) else data
    if not isinstance(items, list):
        problems.append(f"{path.name}: expected a list of query entries (or {{'queries': [...]}})")
        return []
    entries = []
    for number, item in enumerate(items, start=1):
        try:
            entries.append((number, _RT2VEntry.model_validate(item)))
        except ValidationError as exc:
            errors = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'entry'}: {e['msg']}" for e in exc.errors())
            problems.append(f"{path.name} entry {number}: {errors}")
    return entries


def _rt2v_query(root: Path, entry: _RT2VEntry) -> ImplicitQuery:
    qid = str(entry.id)
    mask_dir = entry.mask_dir or f"masks/{qid}"
    has_masks = bool(_mask_files(root / mask_dir))
    return ImplicitQuery(
        id=qid, text=entry.text, positives=entry.video_ids, has_masks=has_masks, mask_dir=mask_dir if has_masks else None
    )
