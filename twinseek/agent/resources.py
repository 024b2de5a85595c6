"""Heavy resources of the agent: the twin store, the retriever (indexes, encoders, reranker), the LLM client and
the specialist models. Graph nodes reach them through ``runtime.context.resources``; nothing here enters the
graph state."""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlite_utils

from twinseek.config import EMBEDDED_LLM_WEIGHT, Settings, load_settings

if TYPE_CHECKING:
    from twinseek.tools.decompose import Decomposition
    from twinseek.tools.encoders import ComponentEncoders
    from twinseek.tools.llm import LLMClient
    from twinseek.tools.retrieval import Retriever
    from twinseek.twins.specialists import Specialists
    from twinseek.twins.store import TwinStore

logger = logging.getLogger(__name__)

DECOMPOSITION_CACHE = 1024  # query texts whose decomposition is kept


class Resources:
    """What the nodes need. Build with :meth:`open`; the LLM and the specialists load on first use."""

    def __init__(self, store: TwinStore, settings: Settings, retriever: Retriever, *,
                 llm: LLMClient | None = None, specialists: Specialists | None = None) -> None:
        self.store = store
        self.settings = settings
        self.retriever = retriever
        self._llm = llm
        self._specialists = specialists
        self._lock = threading.Lock()
        # LLM decompositions by query text: a repeated query (chat follow-ups, ablation runs) is not re-asked
        self.decompositions: OrderedDict[str, Decomposition] = OrderedDict()

    @classmethod
    def open(cls, store_dir: str | Path | None = None, settings: Settings | None = None, *,
             llm: LLMClient | None = None, specialists: Specialists | None = None,
             encoders: ComponentEncoders | None = None, dense_embedder: Any = None, sync: bool = True) -> Resources:
        """Open the store at ``store_dir`` (default ``settings.store``) and bring its indexes up to date.

        ``encoders`` / ``dense_embedder`` replace the configured component encoders and dense embedder (tests,
        experiments); ``llm`` and ``specialists`` replace the configured ones.
        """
        from twinseek.tools.retrieval import Retriever

        settings = settings or load_settings()
        store = open_shared_store(store_dir or settings.store)
        try:
            retriever = Retriever(store, settings, llm=llm)
            if encoders is not None or dense_embedder is not None:
                _replace_encoders(retriever, encoders, dense_embedder)
            resources = cls(store, settings, retriever, llm=llm, specialists=specialists)
            if sync:
                resources.sync()
        except BaseException:
            store.close()
            raise
        return resources

    @property
    def llm(self) -> LLMClient:
        """The LLM client (shared with the retriever; the embedded server starts on first use)."""
        with self._lock:
            if self._llm is None:
                self._llm = self.retriever.llm
            return self._llm

    @property
    def specialists(self) -> Specialists:
        """The specialist adapters of the profile (built on the first refinement that needs one)."""
        with self._lock:
            if self._specialists is None:
                from twinseek.twins.specialists import build_specialists

                self._specialists = build_specialists(self.settings)
            return self._specialists

    @property
    def depth_available(self) -> bool:
        if self._specialists is not None:
            return self._specialists.depth is not None
        return self.settings.specialists.depth not in (None, "none")

    @property
    def llm_weight(self) -> float:
        """The settings' ``agent.llm_weight``, or by the LLM's tier: 1.0 for a user's endpoint, less for the
        embedded model (decided without starting its server)."""
        weight = self.settings.agent.llm_weight
        if weight is not None:
            return weight
        tier = self._llm.tier if self._llm is not None else ("paper" if self.settings.llm.base_url else "embedded")
        return 1.0 if tier == "paper" else EMBEDDED_LLM_WEIGHT

    @property
    def parallel(self) -> int:
        """Requests the LLM decodes at once (the embedded server's slots)."""
        return max(1, self.llm.settings.n_parallel)

    def decompose(self, query: str) -> Decomposition:
        """The LLM's decomposition of ``query``, cached (a rule-based fallback is not cached: the LLM may be back
        next time)."""
        with self._lock:
            cached = self.decompositions.get(query)
            if cached is not None:
                self.decompositions.move_to_end(query)
                return cached.model_copy(deep=True)
        dec = self.retriever.decompose(query, use_llm=True)
        if dec.source == "llm":
            with self._lock:
                self.decompositions[query] = dec.model_copy(deep=True)
                while len(self.decompositions) > DECOMPOSITION_CACHE:
                    self.decompositions.popitem(last=False)
        return dec

    def sync(self) -> None:
        self.retriever.sync()

    def close(self) -> None:
        if self._llm is not None:
            self._llm.close()
        self.store.close()


def open_shared_store(root: str | Path) -> TwinStore:
    """An existing store whose connection may be used from the graph's worker threads.

    ``asearch`` runs nodes on executor threads and the reason node hands work to a pool; SQLite is built
    serialised (``sqlite3.threadsafety == 3``) and writes still go one at a time through the store's writer lock.
    """
    from twinseek.twins.store import DB_NAME, TwinStore

    store = TwinStore(root, create=False)
    if sqlite3.threadsafety == 3:
        store.db.close()
        store.db = sqlite_utils.Database(sqlite3.connect(store.root / DB_NAME, check_same_thread=False))
        store.db.execute("PRAGMA foreign_keys = ON")
    else:  # pragma: no cover - distributions build SQLite serialised
        logger.warning("SQLite is not built thread-safe: run one search at a time, from one thread")
    return store


def _replace_encoders(retriever: Retriever, encoders: ComponentEncoders | None, dense_embedder: Any) -> None:
    from twinseek.tools.compositional import CompositionalSearch
    from twinseek.tools.dense import DenseIndex
    from twinseek.tools.index import ComponentIndex

    r = retriever.settings.retrieval
    if encoders is not None:
        retriever.components = ComponentIndex(retriever.store, encoders, r)
        retriever.compositional = CompositionalSearch(retriever.components, settings=r)
    if dense_embedder is not None:
        retriever.dense = DenseIndex(retriever.store, dense_embedder, r)


_DEFAULT: Resources | None = None
_DEFAULT_LOCK = threading.Lock()


def default_resources() -> Resources:
    """A process-wide set opened from the settings (``TWINSEEK_*``): used when a run's context carries none,
    e.g. under ``langgraph dev``."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            _DEFAULT = Resources.open()
        return _DEFAULT
