"""The heavy objects of one store: the twin store, its retrieval indexes, the decomposer (with its cache in the
store), the LLM client, the rerankers and the specialist models.

They are bound when the graph is built for a store (:func:`twinseek.agent.graph.build_graph`); nothing here
enters the graph state or the run context, and nothing is shared between two :class:`Resources` (two stores
in one process share no index, cache or client; only the embedded LLM server process is shared, see
:func:`twinseek.llm.client.open_llm`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from twinseek.agent.calibration import RETRIEVAL_JUDGE, Calibrator, find_calibrator, retrieval_sibling
from twinseek.agent.judge import listwise_messages, yesno_messages
from twinseek.config import JudgeName, LLMTier, Settings, TierDefaults, load_settings
from twinseek.errors import TwinseekError
from twinseek.llm.base import ChatModel, LLMError
from twinseek.llm.client import LLMClient, open_llm
from twinseek.llm.embeddings import nomic_embeddings
from twinseek.prompts import decompose as decompose_prompt
from twinseek.retrieval.decompose import Decomposer, DecompositionCache
from twinseek.retrieval.dense import VideoEmbedder, embedder_from_settings
from twinseek.retrieval.ecr import EcrGenerator, LLMEcr, TemplateEcr, VlmEcr
from twinseek.retrieval.encoders import ComponentEncoders
from twinseek.retrieval.rerank import LLM_RERANKERS, Reranker, RerankerName, make_reranker
from twinseek.retrieval.stages import RetrievalIndexes
from twinseek.twins.specialists import Specialists, build_specialists
from twinseek.twins.store import TwinStore

logger = logging.getLogger(__name__)
T = TypeVar("T")


class Resources:
    """What the graph's nodes need for one store. Build with :meth:`open`; the LLM client, the specialists and
    the model-based rerankers load on first use."""

    def __init__(self, store: TwinStore, settings: Settings, indexes: RetrievalIndexes, *,
                 llm: LLMClient | None = None, specialists: Specialists | None = None) -> None:
        self.store = store
        self.settings = settings
        self.indexes = indexes
        self.decomposer = Decomposer(DecompositionCache(store))
        self._llm = llm
        self._judge_llm: LLMClient | None = None
        self._specialists = specialists
        self._rerankers: dict[str, Reranker] = {}
        self._lock = threading.Lock()

    @classmethod
    def open(cls, store_dir: str | Path | None = None, settings: Settings | None = None, *,
             llm: LLMClient | None = None, specialists: Specialists | None = None,
             encoders: ComponentEncoders | None = None, dense_embedder: VideoEmbedder | None = None,
             sync: bool = True) -> Resources:
        """Open the store at ``store_dir`` (default ``settings.store``) and bring its indexes up to date.

        ``encoders`` / ``dense_embedder`` replace the configured component encoders and dense embedder (tests,
        experiments); ``llm`` and ``specialists`` replace the configured ones.
        """

        settings = settings or load_settings()
        store = open_shared_store(store_dir or settings.store)
        try:
            encoders, dense_embedder = text_encoders(settings, encoders, dense_embedder)
            indexes = RetrievalIndexes(store, settings.retrieval, encoders=encoders, dense_embedder=dense_embedder)
            resources = cls(store, settings, indexes, llm=llm, specialists=specialists)
            if sync:
                resources.sync()
        except BaseException:
            store.close()
            raise
        return resources

    def _built(self, slot: str, build: Callable[[], T]) -> T:
        """The object in ``slot``, built on first use (by one thread; the others wait for it)."""
        with self._lock:
            if getattr(self, slot) is None:
                setattr(self, slot, build())
            built: T = getattr(self, slot)
            return built

    @property
    def llm(self) -> LLMClient:
        """The LLM client (built without a request: the embedded server starts on the first call)."""
        return self._built("_llm", lambda: open_llm(self.settings))

    @property
    def judge_llm(self) -> LLMClient:
        """The LLM of the 'describe' judge: the embedded ``llm.judge_model`` on its own server (built without a
        request), else the search's LLM (a user's endpoint, or no separate judge model)."""
        model = self.settings.llm.judge_server_model(self.llm_tier)
        if model is None:
            return self.llm
        return self._built("_judge_llm", lambda: open_llm(self.settings, embedded_model=model))

    def judge_llm_key(self, judge: str) -> str:
        """The model name a calibrator of ``judge`` records: the judge model's for 'describe', else the LLM's."""
        model = self.settings.llm.judge_server_model(self.llm_tier)
        return model if judge == "describe" and model is not None else self.llm_key

    def warm(self) -> threading.Thread | None:
        """Start the embedded LLM servers now and fill their prompt caches (see :func:`warm_embedded`), in the
        background; nothing for a user's endpoint."""
        if self.llm_tier != "embedded":
            return None
        return warm_embedded(self.llm, self.judge_llm, self.defaults)

    @property
    def llm_name(self) -> str:
        return f"{self.llm.tier}:{self.llm.model}"

    @property
    def specialists(self) -> Specialists:
        """The specialist adapters of the profile (built on the first refinement that needs one)."""
        return self._built("_specialists", lambda: build_specialists(self.settings))

    @property
    def depth_available(self) -> bool:
        if self._specialists is not None:
            return self._specialists.depth is not None
        return self.settings.specialists.depth not in (None, "none")

    @property
    def llm_tier(self) -> LLMTier:
        """The LLM's tier, decided without starting the embedded server."""
        return self._llm.tier if self._llm is not None else ("paper" if self.settings.llm.base_url else "embedded")

    @property
    def llm_key(self) -> str:
        """The LLM's model name as calibrators record it (the embedded model's name, or the endpoint's)."""
        if self._llm is not None:
            return self._llm.model
        llm = self.settings.llm
        return llm.model if self.llm_tier == "paper" else llm.embedded_model

    @property
    def defaults(self) -> TierDefaults:
        """The searches' judge, judge_top and llm_weight when a search does not say: the settings' ``agent.*``,
        else the LLM tier's defaults (decided without starting the embedded server)."""
        return self.settings.agent.defaults(self.llm_tier)

    def calibrator(self, judge: str) -> Calibrator | None:
        """The calibrator of this LLM and ``judge`` mode (see :func:`~twinseek.agent.calibration.find_calibrator`)."""

        explicit = self.settings.agent.calibration
        if explicit is not None and judge == RETRIEVAL_JUDGE:  # the one fitted with the explicit file, beside it
            sibling = retrieval_sibling(explicit, self.defaults.judge)
            explicit = sibling if sibling.is_file() else None
        return find_calibrator(explicit, self.store.root, self.judge_llm_key(judge), judge)

    @property
    def parallel(self) -> int:
        """Requests the LLM decodes at once (the embedded server's slots)."""
        return max(1, self.llm.settings.n_parallel)

    def ecr_generator(self) -> EcrGenerator:
        """Who writes each video's ECR text (``retrieval.ecr``)."""

        r = self.settings.retrieval
        if r.ecr == "llm":
            return LLMEcr(self.llm)
        if r.ecr == "vlm":
            return VlmEcr(r.ecr_vlm, device=r.device)
        return TemplateEcr()

    def reranker(self, name: RerankerName, llm: ChatModel | None = None) -> Reranker | None:
        """The reranker ``name``: LLM-based ones wrap ``llm`` (default: the client) per call; model-based ones
        load once and are kept."""
        if name in LLM_RERANKERS:
            return make_reranker(name, self.settings.retrieval, llm or self.llm, parallel=self.parallel)
        with self._lock:
            if name not in self._rerankers and (made := make_reranker(name, self.settings.retrieval)) is not None:
                self._rerankers[name] = made
            return self._rerankers.get(name)

    def sync(self) -> None:
        self.indexes.sync(self.ecr_generator())

    def close(self) -> None:
        for client in (self._llm, self._judge_llm):
            if client is not None:
                client.close()
        self.store.close()


def open_shared_store(root: str | Path) -> TwinStore:
    """An existing store whose connection may be used from the graph's worker threads.

    ``asearch`` runs nodes on executor threads and the reason node hands work to a pool; SQLite is built
    serialised (``sqlite3.threadsafety == 3``) and writes still go one at a time through the store's writer lock.
    """
    return TwinStore(root, create=False, shared=True)


def start_in_background(llm: LLMClient) -> threading.Thread:
    """Start ``llm``'s embedded server on a background thread (a judge model loads while the query is decomposed);
    a failure is logged, and the first request reports its own."""

    def run() -> None:
        try:
            llm.start()
        except (TwinseekError, OSError) as exc:
            logger.info("the judge LLM did not start in the background: %s", exc)

    thread = threading.Thread(target=run, name="twinseek-judge-start", daemon=True)
    thread.start()
    return thread


def warm_embedded(llm: LLMClient, judge_llm: LLMClient, defaults: TierDefaults) -> threading.Thread:
    """The one warm-up of a session's embedded LLMs (``Agent.open(warm=True)``, the web app, the demo): the judge
    model's server starts when the searches' judge reads descriptions with it, and ``llm`` is warmed for the
    decomposition and the judge (:func:`warm_llm`), all on background threads."""
    judges = defaults.judge_top != 0
    if judges and defaults.judge == "describe" and judge_llm is not llm:
        start_in_background(judge_llm)
    return warm_llm(llm, defaults.judge if judges else None)


def warm_llm(llm: LLMClient, judge: JudgeName | None = "yesno") -> threading.Thread:
    """Start ``llm``'s embedded server and send it, at once, the fixed prompt prefix of the decomposition and of
    the judge (``judge``; None: no judgement is asked), one token each, on a background thread. The server keeps each slot's last prompt: the two
    concurrent requests land in two slots, and a search's decomposition and judgement then reuse the prefix their
    slot holds (measured: a cold prefix costs seconds on 2 cores). Failures are logged, never raised: the search
    that follows reports its own."""
    from concurrent.futures import ThreadPoolExecutor

    judged = {"yesno": yesno_messages("warm-up", None, "warm-up"),
              "listwise": listwise_messages("warm-up", ["a"])}.get(judge or "")  # a verdict's prompt is per candidate
    prompts = [decompose_prompt.messages("warm-up")] + ([judged] if judged else [])

    def one(messages: list[dict[str, str]]) -> None:
        try:
            llm.complete(messages, max_tokens=1)
        except (LLMError, OSError) as exc:
            logger.info("warming the LLM failed: %s", exc)

    def run() -> None:
        try:
            llm.start()
        except (TwinseekError, OSError) as exc:
            logger.info("the LLM did not start for warming: %s", exc)
            return
        with ThreadPoolExecutor(max_workers=len(prompts)) as pool:
            list(pool.map(one, prompts))
        logger.info("LLM warm: %d prompt prefixes cached", len(prompts))

    thread = threading.Thread(target=run, name="twinseek-llm-warm", daemon=True)
    thread.start()
    return thread


def text_encoders(settings: Settings, encoders: ComponentEncoders | None = None,
                  dense_embedder: VideoEmbedder | None = None) -> tuple[ComponentEncoders, VideoEmbedder]:
    """The configured component encoders and dense embedder (``retrieval.text_encoder``, files assembled into
    ``cache_dir``; nomic on its llama.cpp server), where not given."""
    retrieval = settings.retrieval
    backend = nomic_embeddings(settings) if retrieval.text_encoder == "nomic" else None
    if encoders is None:
        encoders = ComponentEncoders.from_settings(retrieval, cache_dir=settings.cache_dir, backend=backend)
    if dense_embedder is None:
        dense_embedder = embedder_from_settings(retrieval, cache_dir=settings.cache_dir, backend=backend)
    return encoders, dense_embedder
