"""The component catalogue: a twin's objects and relations as catalogue items, embedded with the component encoders.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from twinseek.config import RetrievalSettings
from twinseek.retrieval.catalogue import CatalogIndex, digest, params_from
from twinseek.retrieval.encoders import ComponentEncoders
from twinseek.twins.scenes import Scene, scenes, spans_meet
from twinseek.twins.store import TwinStore
from twinseek.twins.views import TEXT_VERSION, ComponentTexts


# -- the component index -------------------------------------------------------------------------------------
class ComponentSource:
    """Twin components (objects and relations) as catalogue items, embedded with :class:`ComponentEncoders`."""

    name = "components"
    table = "components"

    def __init__(self, encoders: ComponentEncoders) -> None:
        self.encoders = encoders

    @property
    def fingerprint(self) -> str:
        return self.encoders.fingerprint + f";texts={COMPONENT_TEXT_VERSION};{TEXT_VERSION}"

    @property
    def dim(self) -> int:
        return self.encoders.dim

    def signatures(self, store: TwinStore) -> dict[str, str]:
        # mask_dir is unique per ingest (the rows below never change after it; refinements are not indexed)
        return {r.video_id: digest((r.content_hash, r.mask_dir, r.ingested_at, r.relations, r.last_relation, r.tracks,
                                    r.track_labels)) for r in store.video_revisions()}

    def rows(self, store: TwinStore, video_id: str) -> list[dict[str, Any]]:
        twin = store.get_twin(video_id, refinements=False)  # retrieval sees ingest rows only
        return with_scenes(ComponentTexts.rows(twin), scenes(twin))

    def embed(self, store: TwinStore, rows: list[dict[str, Any]]) -> np.ndarray:
        return self.encoders.encode_components([r["kind"] for r in rows], [r["text"] for r in rows])


def with_scenes(rows: list[dict[str, Any]], parts: Sequence[Scene]) -> list[dict[str, Any]]:
    """The rows with the first and last scene (index in ``parts``) their span meets
    (:func:`~twinseek.twins.scenes.spans_meet`); None for a video of one scene."""
    if not parts:
        return [dict(row, scene_first=None, scene_last=None) for row in rows]
    spans = np.array([(float(row["start_s"]), float(row["end_s"])) for row in rows], np.float64).reshape(-1, 2)
    first, last = spans_meet(spans, np.array([p.start_s for p in parts]), np.array([p.end_s for p in parts]))
    return [dict(row, scene_first=int(a), scene_last=int(b)) for row, a, b in zip(rows, first, last)]


# Bump when the catalogue's own handling of component rows changes; the texts' version is views.TEXT_VERSION.
# 5: rows carry their time span (start_s, end_s), so indexes built before are re-made with it.
# 6: rows carry the scenes they meet (scene_first, scene_last).
COMPONENT_TEXT_VERSION = 6


class ComponentIndex(CatalogIndex):
    """The component catalogue of a store: ``components`` table + ``<store>/index/components/``."""

    def __init__(self, store: TwinStore, encoders: ComponentEncoders | None = None,
                 settings: RetrievalSettings | None = None) -> None:
        settings = settings or RetrievalSettings()
        self.encoders = encoders or ComponentEncoders.from_settings(settings)
        super().__init__(store, ComponentSource(self.encoders), params_from(settings, 1), settings.commit_every)
        self._scenes: tuple[Any, np.ndarray] | None = None  # (the catalogue it was read with, (n, 2) scene ranges)

    def scene_ranges(self, ids: np.ndarray) -> np.ndarray:
        """The first and last scene each item meets, (n, 2); -1 for an item of a video of one scene."""
        cat = self.catalogue()
        if self._scenes is None or self._scenes[0] is not cat:
            table = np.full((len(cat.ids), 2), -1, np.int64)
            rows = self.db.execute(f"select id, scene_first, scene_last from [{self.source.table}] "
                                   "where scene_first is not null").fetchall()
            if rows:
                found = np.array([r[0] for r in rows], np.int64)
                pos = np.searchsorted(cat.ids, found)
                table[pos] = [(r[1], r[2]) for r in rows]
            self._scenes = (cat, table)
        pos = np.clip(np.searchsorted(cat.ids, ids), 0, max(len(cat.ids) - 1, 0))
        return self._scenes[1][pos] if len(cat.ids) else np.full((len(ids), 2), -1, np.int64)
