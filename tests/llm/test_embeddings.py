"""The llama.cpp embeddings client (nomic's backend) against a tiny local HTTP stub."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import numpy as np
import pytest

from twinseek.llm.base import LLMError
from twinseek.llm.embeddings import LlamaEmbeddings


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append((self.path, body))  # type: ignore[attr-defined]
        if body["input"] == ["broken"]:
            data, status = b"<html>proxy error</html>", 200
        else:
            rows = [{"index": i, "embedding": [len(t), i]} for i, t in enumerate(body["input"])]
            data, status = json.dumps({"data": rows[::-1]}).encode(), 200  # out of order: sorted by index
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


class _Server:
    def __init__(self, port: int) -> None:
        self.base_url = f"http://127.0.0.1:{port}/v1"

    def start(self) -> _Server:
        return self


@pytest.fixture
def stub() -> Iterator[tuple[HTTPServer, _Server]]:
    http = HTTPServer(("127.0.0.1", 0), _Handler)
    http.requests = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    yield http, _Server(http.server_address[1])
    http.shutdown()


def test_embeddings_post_the_texts_and_keep_their_order(stub: tuple[HTTPServer, _Server]) -> None:
    http, server = stub
    client = LlamaEmbeddings(server, "nomic-embed-text-v1.5")  # type: ignore[arg-type]
    vectors = client.embed(["search_query: a", "search_document: abc"])
    assert vectors.dtype == np.float32 and vectors.tolist() == [[15, 0], [20, 1]]
    assert http.requests == [("/v1/embeddings", {"input": ["search_query: a", "search_document: abc"],  # type: ignore[attr-defined]
                                                 "model": "nomic-embed-text-v1.5", "encoding_format": "float"})]


def test_an_answer_that_is_not_embeddings_raises_llm_error(stub: tuple[HTTPServer, _Server]) -> None:
    _, server = stub
    with pytest.raises(LLMError, match="embedding server"):
        LlamaEmbeddings(server, "m").embed(["broken"])  # type: ignore[arg-type]
