"""The component catalogue: a twin's objects and relations as catalogue items, embedded with the component encoders.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from twinseek.config import RetrievalSettings
from twinseek.retrieval.catalogue import CatalogIndex, digest, params_from
from twinseek.retrieval.encoders import ComponentEncoders
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
        return ComponentTexts.rows(store.get_twin(video_id, refinements=False))  # retrieval sees ingest rows only

    def embed(self, store: TwinStore, rows: list[dict[str, Any]]) -> np.ndarray:
        return self.encoders.encode_components([r["kind"] for r in rows], [r["text"] for r in rows])


# Bump when the catalogue's own handling of component rows changes; the texts' version is views.TEXT_VERSION.
# 5: rows carry their time span (start_s, end_s), so indexes built before are re-made with it.
COMPONENT_TEXT_VERSION = 5


class ComponentIndex(CatalogIndex):
    """The component catalogue of a store: ``components`` table + ``<store>/index/components/``."""

    def __init__(self, store: TwinStore, encoders: ComponentEncoders | None = None,
                 settings: RetrievalSettings | None = None) -> None:
        settings = settings or RetrievalSettings()
        self.encoders = encoders or ComponentEncoders.from_settings(settings)
        super().__init__(store, ComponentSource(self.encoders), params_from(settings, 1), settings.commit_every)
