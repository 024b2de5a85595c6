"""A scripted OpenAI-compatible chat-completions server on 127.0.0.1, for tests of anything that calls an LLM
through the real ``openai`` client; and a server that never answers (for cancelling calls)."""

from __future__ import annotations

import json
import math
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from twinseek.config import LLMSettings
from twinseek.llm.client import LLMClient


def completion(content: str, *, finish_reason: str = "stop", logprobs: Any = None) -> dict[str, Any]:
    """A chat.completion body as OpenAI-compatible servers send it."""
    return {
        "id": "chatcmpl-stub", "object": "chat.completion", "created": 0, "model": "stub",
        "choices": [{"index": 0, "finish_reason": finish_reason, "logprobs": logprobs,
                     "message": {"role": "assistant", "content": content}}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }


def top_logprobs(pairs: list[tuple[str, float]]) -> dict[str, Any]:
    """The ``logprobs`` field of a choice whose first token has these (token, probability) alternatives."""
    top = [{"token": t, "logprob": math.log(p), "bytes": list(t.encode())} for t, p in pairs]
    return {"content": [{**top[0], "top_logprobs": top}]}


class StubLLMServer:
    """Replies from a script: dicts are JSON bodies, ("sleep", s) delays, ("status", code) fails (a third item:
    extra headers), ("raw", status, content_type, bytes) sends that body as is, ("drip", s) sends a valid
    reply's headers then its body one byte every ``s`` seconds (a server that never trips a read timeout)."""

    def __init__(self) -> None:
        self.script: list[Any] = []
        self.requests: list[dict[str, Any]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server API
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.requests.append(body)
                reply = stub.script.pop(0) if stub.script else completion("")
                if isinstance(reply, tuple) and reply[0] == "sleep":
                    time.sleep(reply[1])
                    reply = completion("late")
                headers: dict[str, str] = {}
                content_type, delay = "application/json", 0.0
                if isinstance(reply, tuple) and reply[0] == "raw":
                    status, content_type, payload = reply[1], reply[2], reply[3]
                elif isinstance(reply, tuple) and reply[0] == "drip":
                    status, delay = 200, reply[1]
                    payload = json.dumps(completion("slow")).encode()
                else:
                    status = reply[1] if isinstance(reply, tuple) else 200
                    headers = reply[2] if isinstance(reply, tuple) and len(reply) > 2 else {}
                    payload = json.dumps({"error": {"message": "stub failure"}} if status != 200 else reply).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(payload)))
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    if delay:
                        for byte in payload:
                            self.wfile.write(bytes([byte]))
                            self.wfile.flush()
                            time.sleep(delay)
                    else:
                        self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def client(self, **overrides: Any) -> LLMClient:
        # A generous timeout: on a loaded machine a scripted reply must not become a timeout (a 5 s one did);
        # the tests of timeouts and deadlines set their own.
        fields: dict[str, Any] = {"api_key": "test", "model": "stub", "http_retries": 0, "timeout_s": 30.0}
        settings = LLMSettings(base_url=self.base_url, **{**fields, **overrides})
        return LLMClient(settings, tier="paper", base_url=self.base_url)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class HangingServer:
    """Accepts connections, reads each request and never answers; records when each client closed."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.requests = 0
        self.closed: list[float] = []
        self.base_url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            self.requests += 1
            while conn.recv(65536):  # whatever else comes, until the client closes
                pass
            self.closed.append(time.monotonic())

    def close(self) -> None:
        self.sock.close()
