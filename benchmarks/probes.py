"""Misuse probes of the CLI and the web app (issue 28): each probe's outcome, and whether it ended in a traceback,
an HTTP 5xx or a dropped connection.

The web probes run against ``create_app`` through FastAPI's TestClient (server errors answered, not raised), and
the ones that need a real socket (a 1 MB URL, the access log) against ``twinseek serve`` in a child process. The
CLI probes run ``python -m twinseek.cli`` in child processes. Run it with the tree to measure first on the path:

    PYTHONPATH=. .venv/bin/python benchmarks/probes.py --store STORE [--out FILE]

``--store``: a store of the bundled clips (it is copied; without one the clips are ingested first). The LLM is
never asked: searches run with reasoning and decomposition off, and the server's LLM points at a closed port.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OFF = {"lr": "false", "qd": "false", "jit": "false"}
CROSS = {"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}
TOKEN = "s3cret-probe-token"
NO_LLM_ENV = {"TWINSEEK_LLM__BASE_URL": "http://127.0.0.1:9/v1"}


def build_store(dest: Path, source: Path | None) -> Path:
    if source is not None:
        return Path(shutil.copytree(source, dest))
    from twinseek.config import load_settings
    from twinseek.data import sample_clips
    from twinseek.twins.pipeline import Ingestor
    from twinseek.twins.store import TwinStore

    with TwinStore(dest) as store:
        Ingestor(store, load_settings(store=dest)).ingest_many(sample_clips())
    return dest


# -- web probes through the TestClient --------------------------------------------------------------------------
def web_probes(store: Path, work: Path) -> list[dict[str, Any]]:
    from fastapi.testclient import TestClient

    from twinseek.agent.api import Agent
    from twinseek.data import sample_clips
    from twinseek.web import WebSettings, create_app

    root = work / "root"
    (root / "vids").mkdir(parents=True)
    (root / "vids" / "x.mp4").symlink_to(sample_clips()[0])  # a video outside the ingest root
    runs = work / "runs"
    (runs / "r1").mkdir(parents=True)
    (runs / "r1" / "report.md").write_text("# r1\n")
    rows: list[dict[str, Any]] = []
    agent = Agent.open(store)
    try:
        for token in (None, TOKEN):
            settings = WebSettings(store=store, runs=runs, ingest_roots=[root], warm_llm=False, token=token)
            auth = {"Authorization": f"Bearer {TOKEN}"} if token else {}
            with TestClient(create_app(settings, agent=agent), base_url="http://127.0.0.1",
                            raise_server_exceptions=False) as client:
                for name, method, url, kwargs, check in _web_cases(str(store), token):
                    headers = {**auth, **kwargs.pop("headers", {})}
                    try:
                        response = client.request(method, url, headers=headers, **kwargs)
                        outcome = str(response.status_code)
                        body = response.text
                    except Exception as exc:  # a route that raised through the client
                        outcome, body = f"exception {type(exc).__name__}", ""
                    note = check(body) if check else ""
                    rows.append({"probe": name + (" (token set)" if token else ""), "outcome": outcome,
                                 "note": note, "bad": outcome.startswith(("5", "exception"))})
    finally:
        agent.close()
    return rows


def _has_paths(store: str) -> Callable[[str], str]:
    return lambda body: "absolute server paths in the body" if store in body or "/" + "tmp" in body else ""


def stream_note(body: str) -> str:
    return "search ran" if "event: result" in body else ""


def _web_cases(store: str, token: str | None) -> list[tuple[str, str, str, dict[str, Any], Any]]:
    if token:  # what a remote client with the token sees
        return [("GET /api/stats", "GET", "/api/stats", {}, _has_paths(store)),
                ("GET /api/videos/blackswan", "GET", "/api/videos/blackswan", {}, _has_paths(store)),
                ("POST /api/ingest/folder /etc (403 text)", "POST", "/api/ingest/folder", {"json": {"path": "/etc"}},
                 _has_paths(store)),
                ("GET /api/search (hit paths)", "GET", "/api/search", {"params": {"q": "a swan", **OFF}},
                 _has_paths(store))]
    return [
        ("GET /api/files/masks/%00.png", "GET", "/api/files/masks/%00.png", {}, None),
        ("GET /reports/r1/%00", "GET", "/reports/r1/%00", {}, None),
        ("POST /api/ingest/folder vids\\0/..", "POST", "/api/ingest/folder", {"json": {"path": "vids\u0000/.."}}, None),
        ("POST /api/ingest/folder \\0", "POST", "/api/ingest/folder", {"json": {"path": "\u0000"}}, None),
        ("GET /api/files/%00", "GET", "/api/files/%00", {}, None),
        ("GET /api/files/masks/a%00b/c.png", "GET", "/api/files/masks/a%00b/c.png", {}, None),
        ("GET /reports/r1/a/%00/b", "GET", "/reports/r1/a/%00/b", {}, None),
        ("GET /reports/%00/", "GET", "/reports/%00/", {}, None),
        ("GET /api/reports/%00", "GET", "/api/reports/%00", {}, None),
        ("GET /api/videos/%00", "GET", "/api/videos/%00", {}, None),
        ("GET /api/videos/%00/file", "GET", "/api/videos/%00/file", {}, None),
        ("GET /videos/%00", "GET", "/videos/%00", {"headers": {"Accept": "text/html"}}, None),
        ("GET /api/files/..%2ftwins.db", "GET", "/api/files/..%2ftwins.db", {}, None),
        ("GET /api/search?q=%00", "GET", "/api/search", {"params": {"q": "\u0000", **OFF}}, None),
        ("GET /api/videos/blackswan/frames/99999999999999999999/masks.png", "GET",
         "/api/videos/blackswan/frames/99999999999999999999/masks.png", {}, None),
        ("GET /api/videos/blackswan/frames/-1/masks.png", "GET", "/api/videos/blackswan/frames/-1/masks.png", {}, None),
        ("POST /api/ingest/folder {path: 12}", "POST", "/api/ingest/folder", {"json": {"path": 12}}, None),
        ("POST /api/ingest/folder ~root", "POST", "/api/ingest/folder", {"json": {"path": "~root/../../etc"}}, None),
        ("GET /api/search cross-site", "GET", "/api/search", {"params": {"q": "a swan", **OFF}, "headers": CROSS},
         None),
        ("GET /api/search/stream cross-site", "GET", "/api/search/stream",
         {"params": {"q": "a swan", **OFF}, "headers": CROSS}, stream_note),
        ("GET /api/search Origin: evil (no Sec-Fetch)", "GET", "/api/search",
         {"params": {"q": "a swan", **OFF}, "headers": {"Origin": "http://evil.example"}}, None),
        ("GET /api/search Sec-Fetch-Site: same-site", "GET", "/api/search",
         {"params": {"q": "a swan", **OFF}, "headers": {"Sec-Fetch-Site": "same-site"}}, None),
        ("GET /api/videos/blackswan/overlay.gif cross-site", "GET", "/api/videos/blackswan/overlay.gif",
         {"headers": CROSS}, None),
        ("GET /api/search same-origin", "GET", "/api/search",
         {"params": {"q": "a swan", **OFF}, "headers": {"Origin": "http://127.0.0.1", "Sec-Fetch-Site": "same-origin"}},
         None),
        ("GET / cross-site link (navigation)", "GET", "/",
         {"headers": {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Accept": "text/html"}}, None),
        ("POST /api/ingest/folder vids (symlink out)", "POST", "/api/ingest/folder", {"json": {"path": "vids"}},
         None),
    ]


# -- probes against a real server -------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def raw_get(port: int, target: str) -> str:
    """The status code of ``GET target`` sent over a plain socket (httpx refuses long URLs itself), or how the
    connection ended."""
    request = f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(request)
            head = sock.recv(64)
    except OSError as exc:
        return f"dropped ({type(exc).__name__})"
    parts = head.split(b" ")
    return parts[1].decode() if head.startswith(b"HTTP/") and len(parts) > 1 else "dropped (no reply)"


def server_probes(store: Path, env: dict[str, str]) -> list[dict[str, Any]]:
    import httpx

    port = _free_port()
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen([sys.executable, "-m", "twinseek.cli", "serve", "--store", str(store), "--port",
                             str(port), "--token", TOKEN], stdout=log, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)
    rows: list[dict[str, Any]] = []
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(600):
            try:
                httpx.get(base + "/api/health", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        try:
            r = httpx.get(base + "/api/health", params={"token": TOKEN}, timeout=10)
            outcome = str(r.status_code)
        except httpx.TransportError as exc:
            outcome = f"dropped ({type(exc).__name__})"
        rows.append({"probe": "GET /api/health?token=... (server)", "outcome": outcome, "note": "",
                     "bad": not outcome[0].isdigit() or outcome[0] == "5"})
        outcome = raw_get(port, "/api/search?q=" + "x" * (1 << 20))
        rows.append({"probe": "GET /api/search?q=<1 MB> (server)", "outcome": outcome, "note": "",
                     "bad": not outcome[0].isdigit() or outcome[0] == "5"})
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    log.seek(0)
    text = log.read().decode(errors="replace")
    rows.append({"probe": "the token in serve's output (start-up line, access log)",
                 "outcome": f"{text.count(TOKEN)} times", "note": "", "bad": "Traceback" in text})
    return rows


# -- CLI probes -------------------------------------------------------------------------------------------------
def cli_probes(store: Path, work: Path, env: dict[str, str]) -> list[dict[str, Any]]:
    from twinseek.data import sample_clips

    a_file = work / "a-file"
    a_file.write_text("not a store\n")
    junk = work / "junk.mp4"
    junk.write_bytes(os.urandom(4096))
    clip = str(sample_clips()[0])
    cases: list[tuple[str, list[str], Callable[[subprocess.CompletedProcess[str]], str]]] = [
        ("ingest x.mp4 --store <a file>", ["ingest", clip, "--store", str(a_file)], _none),
        ("ingest x.mp4 --store /dev/null/x", ["ingest", clip, "--store", "/dev/null/x"], _none),
        ("serve --store <a file>", ["serve", "--store", str(a_file)], _none),
        ("serve --port 99999", ["serve", "--store", str(work / "s-port"), "--port", "99999"], _none),
        ("serve --port -1", ["serve", "--store", str(work / "s-port"), "--port", "-1"], _none),
        ("search --help", ["search", "--help"],
         lambda p: "" if "[env TWINSEEK_STORE]" in p.stdout else "'[env TWINSEEK_STORE]' missing"),
        ("serve --help", ["serve", "--help"],
         lambda p: ", ".join(f"'{s}' missing" for s in ("[default: the current folder]", "[env TWINSEEK_WEB_TOKEN]")
                             if s not in " ".join(p.stdout.split()))),
        ("ingest missing.mp4 --store new", ["ingest", str(work / "missing.mp4"), "--store", str(work / "new")],
         lambda p: "store created" if (work / "new").exists() else ""),
        ("ingest <random bytes>.mp4", ["ingest", str(junk), "--store", str(work / "junk-store")],
         lambda p: "raw PyAV errno" if "Errno" in p.stdout + p.stderr else ""),
        ("search q --store <missing>", ["search", "a swan", "--store", str(work / "nothing")], _none),
        ("ask q --store <a file>", ["ask", "a swan", "--store", str(a_file)], _none),
        ("twins list --store <a file>", ["twins", "list", "--store", str(a_file)], _none),
        ("store check --store /dev/null/x", ["store", "check", "--store", "/dev/null/x"], _none),
        ("chat --store <missing>", ["chat", "--store", str(work / "nothing")], _none),
        ("demo --store <a file>", ["demo", "--store", str(a_file)], _none),
        ("serve --host 0.0.0.0 (no token)", ["serve", "--store", str(work / "s-host"), "--host", "0.0.0.0"], _none),
        ("search q --store <store> (stderr noise)", ["search", "a swan", "--store", str(store), "--no-llm"],
         lambda p: _noise(p.stderr)),
    ]
    rows = []
    for name, args, check in cases:
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "twinseek.cli", *args], capture_output=True, text=True, env=env,
                              timeout=300, stdin=subprocess.DEVNULL)
        seconds = time.perf_counter() - start
        traceback = "Traceback" in proc.stderr or "Traceback" in proc.stdout
        err_lines = [line for line in proc.stderr.splitlines() if line.strip()]
        note = check(proc)
        rows.append({"probe": name, "outcome": f"exit {proc.returncode}, {len(err_lines)} stderr lines, {seconds:.1f}s",
                     "note": ("traceback; " if traceback else "") + note, "bad": traceback,
                     "stderr_head": err_lines[:3]})
    return rows


def _none(proc: subprocess.CompletedProcess[str]) -> str:
    return ""


def _noise(stderr: str) -> str:
    marks = ("TensorFlow Lite", "INFO: Created", "W0000", "I0000", "Protobuf", "protobuf", "Loading weights",
             "DeprecationWarning", "UserWarning")
    found = [m for m in marks if m in stderr]
    return f"third-party noise: {', '.join(found)}" if found else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, help="A store of the bundled clips (copied).")
    parser.add_argument("--out", type=Path, help="Write the rows as JSON here.")
    parser.add_argument("--only", choices=("web", "server", "cli"), action="append")
    args = parser.parse_args()
    only = set(args.only or ("web", "server", "cli"))
    env = {**os.environ, **NO_LLM_ENV, "PYTHONPATH": os.pathsep.join(filter(None, [
        os.environ.get("PYTHONPATH", ""), str(ROOT)]))}
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="twinseek-probes-") as tmp:
        work = Path(tmp)
        os.environ.update(NO_LLM_ENV)
        store = build_store(work / "store", args.store)
        if "web" in only:
            rows += web_probes(store, work)
        if "server" in only:
            rows += server_probes(store, env)
        if "cli" in only:
            rows += cli_probes(store, work, env)
    width = max(len(r["probe"]) for r in rows)
    for r in rows:
        print(f"{r['probe']:<{width}}  {r['outcome']:<32} {'BAD ' if r['bad'] else ''}{r['note']}")
    print(f"{sum(r['bad'] for r in rows)} tracebacks / 5xx / dropped connections over {len(rows)} probes")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
