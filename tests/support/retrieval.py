"""Retrieval without downloads: a keyword one-hot text encoder, and a component index over hand-made twins."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from twinseek.config import RetrievalSettings
from twinseek.retrieval.components import ComponentIndex
from twinseek.retrieval.encoders import ComponentEncoders
from twinseek.twins.model import Relation, Track, Twin
from twinseek.twins.store import TwinStore

from support.store import make_twin

KEYWORDS = ["dog", "cat", "ball", "horse", "person", "left", "right", "near", "brown"]


class KeywordEncoder:
    """One dimension per keyword, 1 when the keyword occurs in the text: exact, download-free similarities."""

    tier = "test"

    def __init__(self, keywords: Sequence[str], name: str = "keywords") -> None:
        self.keywords = list(keywords)
        self.model = name
        self.fingerprint = f"kw:{name}:{','.join(self.keywords)}"
        self.calls: list[list[str]] = []

    @property
    def dim(self) -> int:
        return len(self.keywords)

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        self.calls.append(list(texts))
        out = np.zeros((len(texts), self.dim), np.float32)
        for i, text in enumerate(texts):
            words = set(re.findall(r"[a-z]+", text.lower()))
            out[i] = [kw in words for kw in self.keywords]
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)

    def encode_queries(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        return self.encode(texts, batch_size)  # symmetric, like MiniLM


def add_video(store: TwinStore, video_id: str, categories: Sequence[str],
              relations: Sequence[tuple[int, str, int | None]] = (), ecr: str | None = None) -> Twin:
    """A twin with one track per category (track ids 1..n) and the given relations; no instances or masks."""
    base, _ = make_twin(video_id)
    video = base.video.model_copy(update={"ecr_text": ecr, "content_hash": f"hash-{video_id}-{len(categories)}"})
    tracks = [Track(video_id=video_id, track_id=i, category=c, category_score=0.9, category_source="t",
                    first_frame=0, last_frame=10, frame_count=3, mean_area=0.05, direction="stationary")
              for i, c in enumerate(categories, 1)]
    rels = [Relation(video_id=video_id, subject_track=s, predicate=p, object_track=o, kind="spatial",
                     frame_start=0, frame_end=10) for s, p, o in relations]
    twin = Twin(video=video, tracks=tracks, instances=[], relations=rels)
    store.put_twin(twin, store.new_mask_dir(video_id))
    return twin


def keyword_index(store: TwinStore, **settings: object) -> ComponentIndex:
    return ComponentIndex(store, ComponentEncoders(KeywordEncoder(KEYWORDS)), RetrievalSettings(**settings))
