"""The embedded LLM server: llama.cpp's HTTP server in a child process, one per process and configuration.
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO

from twinseek.config import Settings
from twinseek.llm.base import LLMError
from twinseek.llm.embedded import embedded_model_path

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------------------------
# The embedded server process.


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedServer:
    """llama.cpp's HTTP server in a child process we own, on 127.0.0.1 and a free port.

    Use as a context manager, or call :meth:`start` / :meth:`stop`; an ``atexit`` hook stops it in any case and
    the child exits by itself if this process dies without running it.
    """

    def __init__(
        self, model_path: Path, *, threads: int = 2, context: int = 4096, n_parallel: int = 1,
        startup_timeout_s: float = 120.0, embedding: bool = False,
    ) -> None:
        self.model_path = Path(model_path)
        self.threads = threads
        self.context = context
        self.n_parallel = n_parallel
        self.startup_timeout_s = startup_timeout_s
        self.embedding = embedding
        self.port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._owner_pid = os.getpid()
        self._lock = threading.Lock()

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise LLMError("the embedded LLM server is not started")
        return f"http://127.0.0.1:{self.port}/v1"

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> EmbeddedServer:
        """Start the process and wait until ``/health`` answers (idempotent)."""
        with self._lock:
            if self.alive():
                return self
            self._spawn()
            atexit.register(self.stop)
            try:
                self._wait_healthy()
            except BaseException:
                self._terminate()
                raise
        return self

    def _spawn(self) -> None:
        self.port = _free_port()
        self._log = tempfile.TemporaryFile(prefix="twinseek-llm-")  # noqa: SIM115 - closed in _terminate
        cmd = [
            sys.executable, "-m", "twinseek.llm.serve", "--model", str(self.model_path),
            "--port", str(self.port), "--threads", str(self.threads),
            "--ctx", str(self.context * self.n_parallel), "--parallel", str(self.n_parallel),
            "--parent-pid", str(os.getpid()),
        ] + (["--embedding"] if self.embedding else [])
        logger.info(
            "starting the embedded LLM server (%s, %d threads, %d slots) on 127.0.0.1:%d",
            self.model_path.name, self.threads, self.n_parallel, self.port,
        )
        # Own session: a Ctrl-C that interrupts one query in a REPL must not take the server down with it.
        self._proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def _wait_healthy(self) -> None:
        t0 = time.monotonic()
        deadline = t0 + self.startup_timeout_s
        url = f"http://127.0.0.1:{self.port}/health"
        while True:
            if self._proc is not None and self._proc.poll() is not None:
                raise LLMError(
                    f"the embedded LLM server exited with code {self._proc.returncode} while loading "
                    f"{self.model_path}; its output ends with:\n{self.output_tail()}"
                )
            if _healthy(url):
                logger.info("embedded LLM server ready in %.1fs", time.monotonic() - t0)
                return
            if time.monotonic() > deadline:
                raise LLMError(
                    f"the embedded LLM server did not answer {url} within {self.startup_timeout_s:.0f}s; "
                    f"its output ends with:\n{self.output_tail()}"
                )
            time.sleep(0.1)

    def output_tail(self, max_chars: int = 2000) -> str:
        """The last ``max_chars`` of the server's stdout/stderr (for error messages)."""
        if self._log is None or self._log.closed:
            return "(no output captured)"
        try:
            size = os.fstat(self._log.fileno()).st_size
            data = os.pread(self._log.fileno(), max_chars, max(0, size - max_chars))
        except OSError:
            return "(output unavailable)"
        return data.decode("utf-8", "replace").strip() or "(no output)"

    def stop(self) -> None:
        """Terminate the process (SIGTERM, then SIGKILL after 5 s). Safe to call more than once."""
        if os.getpid() != self._owner_pid:  # a forked child must not kill its parent's server
            return
        with self._lock:
            self._terminate()
        atexit.unregister(self.stop)

    def _terminate(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
            logger.info("embedded LLM server stopped")
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> EmbeddedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as r:  # noqa: S310 - our own loopback server
            return bool(r.status == 200)
    except (urllib.error.URLError, OSError):
        return False  # connection refused while binding, or 503 while the model loads


# One embedded server per process and configuration, shared by every client.
_SERVERS: dict[tuple[str, int, int, int], EmbeddedServer] = {}


_SERVERS_LOCK = threading.Lock()


def shared_server(settings: Settings) -> EmbeddedServer:
    llm = settings.llm
    # Half the cores: on a shared 2-core box two spinning llama.cpp threads ran ~15x slower than one (measured).
    threads = llm.threads or max(1, (os.cpu_count() or 2) // 2)
    path = embedded_model_path(settings)
    key = (str(path), threads, llm.context, llm.n_parallel)
    with _SERVERS_LOCK:
        server = _SERVERS.get(key)
        if server is None:
            server = EmbeddedServer(
                path, threads=threads, context=llm.context, n_parallel=llm.n_parallel,
                startup_timeout_s=llm.startup_timeout_s,
            )
            _SERVERS[key] = server
    return server.start()


def stop_embedded_servers() -> None:
    """Stop every shared embedded server of this process (also runs at exit)."""
    with _SERVERS_LOCK:
        servers = list(_SERVERS.values())
        _SERVERS.clear()
    for server in servers:
        server.stop()


atexit.register(stop_embedded_servers)
