"""Process entry point of the embedded LLM server: llama.cpp's OpenAI-compatible HTTP server via ``xllamacpp``.

Started by :class:`twinseek.llm.server.EmbeddedServer`, never by hand in normal use::

    python -m twinseek.llm.serve --model M.gguf --port 8123 --parent-pid 4242

``xllamacpp.Server`` has no stop method, so the server lives in its own process and ends with it: on SIGTERM,
or by itself once its parent process is gone (so a crashed parent leaves no orphan).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True, help="GGUF file")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ctx", type=int, default=4096, help="total context tokens (all slots)")
    parser.add_argument("--parallel", type=int, default=1, help="slots decoded concurrently")
    parser.add_argument("--embedding", action="store_true", help="serve /v1/embeddings (an embedding model)")
    parser.add_argument("--parent-pid", type=int, default=None, help="exit when this process is gone")
    return parser.parse_args(argv)


def _params(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    import xllamacpp as xlc

    p = xlc.CommonParams()
    p.model.path = args.model
    p.hostnames = ["127.0.0.1"]
    p.port = args.port
    p.n_ctx = args.ctx
    p.n_parallel = args.parallel
    p.cpuparams.n_threads = args.threads
    p.cpuparams_batch.n_threads = args.threads
    p.ui = False
    if args.embedding:
        p.embedding = True
        p.n_batch = p.n_ubatch = args.ctx  # a whole input in one batch (non-causal models need it)
    p.offline = True
    return p


def _parent_gone(parent_pid: int | None) -> bool:
    if parent_pid is None:
        return False
    if os.getppid() != parent_pid:  # re-parented: the parent exited
        return True
    try:
        os.kill(parent_pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def main(argv: list[str] | None = None) -> None:
    """Start the server, then block until SIGTERM or until the parent process is gone."""
    args = _parse(argv)
    # Own session (see EmbeddedServer): a Ctrl-C meant for the parent must not kill the server.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    import xllamacpp as xlc

    t0 = time.monotonic()
    server = xlc.Server(_params(args))
    print(f"twinseek-llm-server READY {server.listening_address} load_s={time.monotonic() - t0:.2f}", flush=True)
    while not _parent_gone(args.parent_pid):
        time.sleep(0.5)
    print("twinseek-llm-server: parent gone, exiting", file=sys.stderr, flush=True)
    os._exit(0)  # the native server threads would keep a normal exit waiting


if __name__ == "__main__":
    main()
