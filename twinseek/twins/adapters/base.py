"""Specialist protocols. The ingestion pipeline depends only on these, never on a concrete model.

Frames are RGB ``uint8`` arrays of shape ``(H, W, 3)``; masks are ``bool`` arrays of shape ``(H, W)``;
boxes are pixel ``(x1, y1, x2, y2)``. Every specialist names its ``tier`` and ``model`` so that the twin
records which model produced what.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from twinseek.twins.model import Provenance, SpeechSegment, Tier

Box = tuple[float, float, float, float]


@dataclass
class Detection:
    """One object found in one frame, with or without a mask."""

    box: Box
    score: float
    label: str | None = None
    mask: np.ndarray | None = None
    source: str = ""


@dataclass
class TrackedObject:
    """One object followed through the sampled frames.

    ``masks`` maps a frame *position* (index into the sampled frame list) to the object's mask there.
    ``label`` is a category hint from the seeds (e.g. ``person`` from a person segmenter, an OWLv2 label).
    """

    track_id: int
    masks: dict[int, np.ndarray] = field(default_factory=dict)
    label: str | None = None
    label_score: float = 0.0
    source: str = ""
    label_source: str = ""  # the model that gave ``label`` (``source`` is the one that made most masks)


@dataclass
class Category:
    """A label for one object. ``group`` is a coarser word (``bird`` for ``black swan``) where known; ``votes`` the
    share of the object's images on which this label came first (how much its views agree; None: not counted)."""

    label: str
    score: float
    source: str
    group: str | None = None
    votes: float | None = None


@runtime_checkable
class Specialist(Protocol):
    # read-only in the protocol so that adapters may narrow them (e.g. ``tier: Literal["paper"]``)
    @property
    def role(self) -> str: ...

    @property
    def tier(self) -> Tier: ...

    @property
    def model(self) -> str: ...

    def provenance(self) -> Provenance: ...


class SpecialistBase:
    """Shared ``provenance`` for concrete adapters (subclasses set ``role``, ``tier`` and ``model``)."""

    role: str = ""
    tier: Tier = "embedded"
    model: str = ""

    def provenance(self) -> Provenance:
        return Provenance(role=self.role, tier=self.tier, model=self.model)


class LazyModel:
    """Pickles without its loaded model: worker processes build their own copy on first use.

    Subclasses list the attributes holding loaded models in ``_lazy`` and guard loading with ``self._lock``."""

    _lazy: tuple[str, ...] = ()
    _lock: threading.Lock

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.update(dict.fromkeys(self._lazy), _lock=None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()


@runtime_checkable
class Detector(Specialist, Protocol):
    """Finds and names objects. ``vocabulary`` is an open-vocabulary label list where the model supports one.

    What a detector can do is told by its capabilities, never by its ``tier`` (which is only recorded):
    ``open_vocabulary``, it takes text labels (OWLv2, YOLO-World; a closed-set model ignores ``vocabulary``), and
    ``every_frame``, it is cheap enough to run on every sampled frame (otherwise it seeds the segmenter on a few
    keyframes, ``paper.keyframes``).
    """

    @property
    def open_vocabulary(self) -> bool: ...

    @property
    def every_frame(self) -> bool: ...

    def detect(self, frame: np.ndarray, vocabulary: Sequence[str] | None = None) -> list[Detection]: ...

    def categorise(self, crops: Sequence[np.ndarray], vocabulary: Sequence[str] | None = None) -> list[Category]:
        """Best labels (most likely first) for one object seen in several crops."""
        ...


@runtime_checkable
class BatchCategoriser(Protocol):
    """A detector that names many objects in one forward pass (all crops of a video at once).

    ``groups`` holds the crops of each object; ``hints`` an optional coarse label per object (e.g. a COCO
    detector's ``car``): the returned list of that object is then ranked within the hint's categories when the
    model has any (``car`` -> ``sports car``, each with ``group`` set to the hint), else as without a hint.
    """

    def categorise_batch(
        self, groups: Sequence[Sequence[np.ndarray]], vocabulary: Sequence[str] | None = None,
        hints: Sequence[str | None] | None = None,
    ) -> list[list[Category]]: ...


@runtime_checkable
class ObjectDetector(Specialist, Protocol):
    """Boxes of known categories in a batch of frames (masks optional): seeds for the segmenter."""

    def detect_batch(self, frames: Sequence[np.ndarray]) -> list[list[Detection]]: ...


@runtime_checkable
class TextReader(Specialist, Protocol):
    """On-screen text: a cheap presence test and the reading itself (lines with confidence and box)."""

    def has_text(self, frame: np.ndarray) -> bool: ...

    def read(self, frame: np.ndarray) -> list[Any]: ...


@runtime_checkable
class SegmenterTracker(Specialist, Protocol):
    """Segments objects and keeps their identity across the sampled frames.

    ``seeds`` maps a frame position to detections found there (may be empty: a class-agnostic segmenter
    proposes its own objects). Track ids are unique within the returned list.
    """

    def segment(
        self, frames: Sequence[np.ndarray], seeds: Mapping[int, Sequence[Detection]]
    ) -> list[TrackedObject]: ...


@runtime_checkable
class DepthEstimator(Specialist, Protocol):
    def estimate(self, frame: np.ndarray) -> np.ndarray:
        """Relative depth ``float32 (H, W)`` in [0, 1], 0 = nearest."""
        ...


@runtime_checkable
class AttributeDescriber(Specialist, Protocol):
    def describe(self, frame: np.ndarray, mask: np.ndarray, category: str) -> str:
        """Short attribute text (colour, texture, appearance) for the masked object."""
        ...


@runtime_checkable
class SpeechRecogniser(Specialist, Protocol):
    def load(self) -> Any:
        """Load the model now (else on the first :meth:`transcribe`)."""
        ...

    def transcribe(self, samples: np.ndarray) -> tuple[list[SpeechSegment], str | None]:
        """Timed segments of what is said in ``samples`` (16 kHz mono float32; times in seconds from its start)
        where a voice-activity detector hears speech, and the language spoken (None when nothing is)."""


class PoseEstimator(Specialist, Protocol):
    def keypoints(self, frame: np.ndarray, box: Box) -> np.ndarray | None:
        """Body keypoints ``float32 (K, 3)`` (x, y in frame pixels, visibility) of the person in the pixel box, or
        ``None`` where no body is found."""
        ...


def box_from_mask(mask: np.ndarray) -> Box | None:
    """Tight pixel box of a mask, or ``None`` for an empty mask."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    return float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)


def crop(frame: np.ndarray, box: Box, pad: float = 0.1) -> np.ndarray:
    """Crop ``frame`` to ``box`` grown by ``pad`` of its size on each side, clipped to the frame."""
    h, w = frame.shape[:2]
    x1, y1, x2, y2 = box
    dx, dy = (x2 - x1) * pad, (y2 - y1) * pad
    x1, y1 = max(0, int(x1 - dx)), max(0, int(y1 - dy))
    x2, y2 = min(w, int(np.ceil(x2 + dx))), min(h, int(np.ceil(y2 + dy)))
    return frame[y1:max(y2, y1 + 1), x1:max(x2, x1 + 1)]
