"""``kill -9`` of ``twinseek serve`` with ingest files queued, then a restart: are all of them ingested, each once,
and is the store whole (``twinseek store check --deep``)?

Five videos (the three bundled clips and two trimmed re-encodes of them, so that every content hash differs) are
queued as one folder job through ``POST /api/ingest/folder``. The server is killed with SIGKILL while the first
file is being ingested (all five unfinished), started again, killed again once two files are in, and started a
third time; then the job must be done with five videos ingested once each. The log goes to stdout and ``--out``.

    PYTHONPATH=. .venv/bin/python benchmarks/ingest_restart.py [--out benchmarks/results/ingest-restart.log]
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

import av
import httpx

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "TWINSEEK_LLM__BASE_URL": "http://127.0.0.1:9/v1",  # ingest needs no LLM
       "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")]))}
LOG: list[str] = []
START = time.monotonic()


def log(message: str) -> None:
    line = f"[{time.monotonic() - START:6.1f}s] {message}"
    LOG.append(line)
    print(line, flush=True)


def trimmed_copy(src: Path, dest: Path, frames: int) -> Path:
    """The first ``frames`` frames of ``src`` re-encoded (other bytes, so another content hash)."""
    with av.open(str(src)) as inp, av.open(str(dest), "w") as out:
        stream_in = inp.streams.video[0]
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        stream = out.add_stream(codec, rate=int(stream_in.average_rate or 24))
        stream.width, stream.height, stream.pix_fmt = stream_in.width, stream_in.height, "yuv420p"
        for n, frame in enumerate(inp.decode(stream_in)):
            if n >= frames:
                break
            for packet in stream.encode(frame.reformat(format="yuv420p")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return dest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, store: Path, root: Path, logfile: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.out = open(logfile, "ab")  # noqa: SIM115 (closed in stop/kill)
        self.proc = subprocess.Popen([sys.executable, "-m", "twinseek.cli", "serve", "--store", str(store), "--port",
                                      str(self.port), "--ingest-root", str(root)], stdout=self.out,
                                     stderr=subprocess.STDOUT, env=ENV, start_new_session=True)
        deadline = time.monotonic() + 300
        while True:
            try:
                httpx.get(self.base + "/api/health", timeout=2).raise_for_status()
                break
            except httpx.HTTPError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the server did not start (see {logfile})") from None
                time.sleep(0.2)
        log(f"server up (pid {self.proc.pid}, port {self.port})")

    def get(self, path: str) -> Any:
        return httpx.get(self.base + path, timeout=30).json()

    def kill9(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.out.close()
        log(f"kill -9 {self.proc.pid}: exit status {self.proc.returncode}")

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGINT)
        self.proc.wait(60)
        self.out.close()
        log(f"server stopped (exit status {self.proc.returncode})")


def statuses(job: dict[str, Any]) -> str:
    return ", ".join(f"{f['name']}={f['status']}" for f in job["files"])


def wait_for(server: Server, job_id: str, done: Callable[[dict[str, Any]], bool], timeout: float = 600) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = server.get(f"/api/ingest/jobs/{job_id}")
        if done(job):
            return job
        if time.monotonic() > deadline:
            raise TimeoutError(statuses(job))
        time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="Write the log here too.")
    parser.add_argument("--keep", type=Path, help="Keep the store and the server logs in this folder.")
    args = parser.parse_args()
    from twinseek.data import sample_clips

    work = Path(tempfile.mkdtemp(prefix="twinseek-restart-"))
    root, store, server_log = work / "root", work / "store", work / "serve.log"
    vids = root / "vids"
    vids.mkdir(parents=True)
    clips = sample_clips()
    for clip in clips:
        shutil.copy(clip, vids / clip.name)
    trimmed_copy(clips[0], vids / "blackswan-first30.mp4", 30)
    trimmed_copy(clips[1], vids / "car-roundabout-first30.mp4", 30)
    log(f"5 videos in {vids}: {', '.join(sorted(p.name for p in vids.iterdir()))}")

    server = Server(store, root, server_log)
    response = httpx.post(server.base + "/api/ingest/folder", json={"path": "vids"}, timeout=30)
    response.raise_for_status()
    job_id = response.json()["id"]
    log(f"POST /api/ingest/folder vids -> {response.status_code}, job {job_id}")
    job = wait_for(server, job_id, lambda j: any(f["status"] == "running" for f in j["files"]))
    log(f"before kill 1: {statuses(job)}")
    server.kill9()

    server = Server(store, root, server_log)
    job = server.get(f"/api/ingest/jobs/{job_id}")
    if "status" not in job:  # a server that kept its queue in memory only
        time.sleep(5)
        log(f"after restart 1: GET /api/ingest/jobs/{job_id} -> {job}; videos in the store after 5 s: "
            f"{len(server.get('/api/videos'))}")
        server.stop()
        log("FAIL: the queued files were lost with the server")
        if args.out:
            args.out.write_text("\n".join(LOG) + "\n")
        sys.exit(1)
    log(f"after restart 1: job {job['status']}: {statuses(job)}")
    job = wait_for(server, job_id, lambda j: sum(f["status"] == "ingested" for f in j["files"]) >= 2
                   and any(f["status"] == "running" for f in j["files"]))
    log(f"before kill 2: {statuses(job)}")
    server.kill9()

    server = Server(store, root, server_log)
    job = server.get(f"/api/ingest/jobs/{job_id}")
    log(f"after restart 2: job {job['status']}: {statuses(job)}")
    job = wait_for(server, job_id, lambda j: j["status"] == "done")
    log(f"done: {statuses(job)}")
    videos = server.get("/api/videos")
    server.stop()

    import sqlite3

    with sqlite3.connect(store / "twins.db") as db:
        per_hash = db.execute("select content_hash, count(*) from videos group by content_hash").fetchall()
        rows = db.execute("select video_id, path from videos order by video_id").fetchall()
    log(f"videos in the store: {len(rows)} ({', '.join(v for v, _ in rows)}); "
        f"rows per content hash: {sorted(n for _, n in per_hash)}; /api/videos lists {len(videos)}")
    check = subprocess.run([sys.executable, "-m", "twinseek.cli", "store", "check", "--deep", "--json", "--store",
                            str(store)], capture_output=True, text=True, env=ENV)
    report = json.loads(check.stdout)
    log(f"twinseek store check --deep: exit {check.returncode}, ok={report['ok']}, findings={report['findings']}")
    ingested = [f for f in job["files"] if f["status"] == "ingested"]
    verdict = (len(ingested) == 5 and len(rows) == 5 and all(n == 1 for _, n in per_hash) and report["ok"])
    log(("PASS" if verdict else "FAIL") + ": 5 files queued, 2 kill -9, all 5 ingested once, store check clean")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(LOG) + "\n")
    if args.keep:
        shutil.copytree(work, args.keep, dirs_exist_ok=True)
    shutil.rmtree(work, ignore_errors=True)
    if not verdict:
        sys.exit(1)


if __name__ == "__main__":
    main()
