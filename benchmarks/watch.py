"""``twinseek watch`` on 20 real clips copied into the folder at once, with two restarts in the middle: is each
file ingested exactly once, is no partial file ingested, and is nothing lost or redone?

Twenty clips are cut from the three bundled DAVIS clips (different start frames and lengths, re-encoded at 320 px,
so every content hash differs). ``twinseek watch IN --store S`` runs as a subprocess with the embedded models; a
thread copies all twenty in at once, in chunks with pauses (each file is partial for a while, as a network copy
is). The first watcher gets Ctrl-C (SIGINT: it stops after the file it is ingesting) once a few files are in; the
second is killed with SIGKILL in the middle of the rest; a third (``--once``) finishes. Then: 20 videos in the
store, each the whole file (content hash of the final file), each built once over the three runs (a file the killed
watcher had committed but not recorded comes back as ``skipped``), the watch queue all finished, and ``twinseek
store check --deep`` clean. The log goes to stdout and ``--out``.

    PYTHONPATH=. .venv/bin/python benchmarks/watch.py [--out benchmarks/results/watch/watch.log]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import av

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "TWINSEEK_LLM__BASE_URL": "http://127.0.0.1:9/v1",  # ingest needs no LLM
       "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")])),
       "COLUMNS": "200", "PYTHONUNBUFFERED": "1"}  # unbuffered: a killed watcher's lines are all logged
LOG: list[str] = []
START = time.monotonic()
N_FILES = 20
CHUNKS, PAUSE_S, SETTLE_S = 6, 0.5, 2.0  # a copy lasts ~3 s; a file is ready 2 s after its last byte


def log(message: str) -> None:
    line = f"[{time.monotonic() - START:6.1f}s] {message}"
    LOG.append(line)
    print(line, flush=True)


def cut(src: Path, dest: Path, start: int, frames: int) -> Path:
    """Frames ``start`` to ``start + frames`` of ``src``, re-encoded at 320 px wide."""
    with av.open(str(src)) as inp, av.open(str(dest), "w") as out:
        stream_in = inp.streams.video[0]
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        stream = out.add_stream(codec, rate=int(stream_in.average_rate or 24))
        stream.width = 320
        stream.height = round(320 * stream_in.height / stream_in.width / 2) * 2
        stream.pix_fmt = "yuv420p"
        for n, frame in enumerate(inp.decode(stream_in)):
            if n < start:
                continue
            if n >= start + frames:
                break
            image = frame.reformat(width=stream.width, height=stream.height, format="yuv420p")
            for packet in stream.encode(image):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return dest


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def copy_in(sources: list[Path], folder: Path) -> threading.Thread:
    """All files at once: round after round each gets its next chunk, ``PAUSE_S`` between rounds."""

    def run() -> None:
        datas = [p.read_bytes() for p in sources]
        handles = [open(folder / p.name, "wb") for p in sources]  # noqa: SIM115
        for k in range(CHUNKS):
            for data, handle in zip(datas, handles):
                step = -(-len(data) // CHUNKS)
                handle.write(data[k * step:(k + 1) * step])
                handle.flush()
            time.sleep(PAUSE_S)
        for handle in handles:
            handle.close()
        log(f"copy finished: {len(sources)} files, {sum(map(len, datas)) / 2**20:.1f} MB")

    thread = threading.Thread(target=run)
    thread.start()
    return thread


class Watcher:
    """``twinseek watch`` in a subprocess, its output lines logged as they come (prefixed with the run)."""

    def __init__(self, run: int, folder: Path, store: Path, *extra: str) -> None:
        self.run, self.lines = run, []  # type: ignore[var-annotated]
        cmd = [sys.executable, "-m", "twinseek.cli", "watch", str(folder), "--store", str(store),
               "--settle", str(SETTLE_S), *extra]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV,
                                     cwd=ROOT)
        log(f"run {run}: {' '.join(['twinseek', *cmd[3:]])} (pid {self.proc.pid})")
        self.reader = threading.Thread(target=self._read)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            line = line.rstrip()
            if line:
                self.lines.append(line)
                log(f"  run {self.run} | {line}")

    def count(self, word: str) -> int:
        return sum(bool(re.match(rf"\d\d:\d\d:\d\d {word}\b", line)) for line in self.lines)

    def wait_for(self, condition: object, timeout: float = 900) -> None:
        deadline = time.monotonic() + timeout
        while not condition():  # type: ignore[operator]
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise SystemExit(f"run {self.run}: gave up waiting (exit status {self.proc.poll()})")
            time.sleep(0.1)

    def finish(self, timeout: float = 900) -> int:
        code = self.proc.wait(timeout)
        self.reader.join()
        return code


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "watch" / "watch.log")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    from twinseek.data import sample_clips

    tmp = Path(tempfile.mkdtemp(prefix="twinseek-watch-"))
    staged, folder, store = tmp / "staged", tmp / "in", tmp / "store"
    staged.mkdir()
    folder.mkdir()
    clips = sample_clips()
    sources = [cut(clips[n % 3], staged / f"{clips[n % 3].stem}-{n:02d}.mp4", start=3 * (n // 3), frames=16 + n % 5)
               for n in range(N_FILES)]
    assert len({sha(p) for p in sources}) == N_FILES
    log(f"{N_FILES} clips staged ({sum(p.stat().st_size for p in sources) / 2**20:.1f} MB), e.g. "
        f"{', '.join(p.name for p in sources[:3])}; copied in {CHUNKS} chunks {PAUSE_S} s apart; settle {SETTLE_S} s")

    # run 1: watching when the files arrive; Ctrl-C once 5 are in (it stops after the file it is ingesting)
    first = Watcher(1, folder, store)
    first.wait_for(lambda: any(line.startswith("watching") for line in first.lines))
    copier = copy_in(sources, folder)
    first.wait_for(lambda: first.count("ingested") >= 5)
    first.proc.send_signal(signal.SIGINT)
    log(f"run 1: SIGINT (Ctrl-C) after {first.count('ingested')} ingested")
    log(f"run 1: exit status {first.finish()}")
    copier.join()

    # run 2: picks up the rest; kill -9 in the middle of an ingest once 6 more are in
    second = Watcher(2, folder, store)
    second.wait_for(lambda: second.count("ingested") >= 6 and second.count("running") > second.count("ingested"))
    second.proc.kill()
    log(f"run 2: kill -9 after {second.count('ingested')} ingested, one running: exit status {second.finish()}")

    # run 3: --once finishes the queue and exits
    third = Watcher(3, folder, store, "--once")
    log(f"run 3: exit status {third.finish()}")

    # the verdict
    runs = (first, second, third)
    ingested = [re.sub(r"^\S+ ingested\s+(\S+).*", r"\1", line) for w in runs for line in w.lines
                if re.match(r"\d\d:\d\d:\d\d ingested\b", line)]
    skipped = [line.split()[2] for w in runs for line in w.lines if re.match(r"\d\d:\d\d:\d\d skipped\b", line)]
    with sqlite3.connect(store / "twins.db") as db:
        videos = dict(db.execute("select path, content_hash from videos").fetchall())
        queue = dict(db.execute("select f.name, f.status from ingest_files f join ingest_jobs j on j.id = f.job_id "
                                "where j.source = 'watch'").fetchall())
    whole = {str((folder / p.name).resolve()): sha(p) for p in sources}
    check = subprocess.run([sys.executable, "-m", "twinseek.cli", "store", "check", "--deep", "--store", str(store)],
                           capture_output=True, text=True, env=ENV, cwd=ROOT)
    log(f"builds per run: {[w.count('ingested') for w in runs]} (total {len(ingested)}, distinct files "
        f"{len(set(ingested))}); skipped as already stored: {skipped or 'none'}")
    log(f"store: {len(videos)} videos; each the whole file (content hash of the final copy): {videos == whole}")
    log(f"watch queue: {len(queue)} files, statuses {sorted(set(queue.values()))}")
    log(f"twinseek store check --deep: exit {check.returncode}")
    names = {p.name for p in sources}
    ok = (len(ingested) == len(set(ingested)) and not set(ingested) & set(skipped)
          and set(ingested) | set(skipped) == names and videos == whole and len(queue) == N_FILES
          and set(queue.values()) <= {"ingested", "skipped"} and check.returncode == 0)
    log(("PASS" if ok else "FAIL") + f": {N_FILES} files copied in at once, Ctrl-C and kill -9 in the middle; "
        f"each file built once, none partial, nothing lost")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(LOG) + "\n")
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
