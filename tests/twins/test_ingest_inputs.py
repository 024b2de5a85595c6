"""Ingest input checks: what a path is, its size and suffix are checked before its content is read; one file's
unexpected failure does not end a folder ingest."""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

import pytest

import twinseek.twins.chunks as chunks
import twinseek.twins.pipeline as pipeline
from twinseek.config import load_settings
from twinseek.errors import UnsupportedFormatError, VideoError, VideoTooLargeError
from twinseek.media.decode import check_file
from twinseek.twins.pipeline import Ingestor
from twinseek.twins.specialists import Specialists, build_specialists
from twinseek.twins.store import TwinStore

from support.synthetic import Scene, write_video


@pytest.fixture(scope="module")
def specialists() -> Specialists:
    return build_specialists(load_settings())


def _never_hash(path: Path, chunk: int = 0) -> str:
    raise AssertionError(f"{path} was read before it was checked")


@pytest.fixture
def ingestor(tmp_path: Path, specialists: Specialists, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    store = TwinStore(tmp_path / "store")
    yield Ingestor(store, load_settings(store=tmp_path / "store", sampling={"frames": 4, "max_file_mb": 1}),
                   specialists)
    store.close()


def _odd_paths(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """Paths named like videos that are not video files, and what ingest must call each."""
    (tmp_path / "dir.mp4").mkdir()
    os.mkfifo(tmp_path / "pipe.mp4")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "sock.mp4"))
    sock.close()
    (tmp_path / "dangling.mp4").symlink_to(tmp_path / "gone.mp4")
    (tmp_path / "loop-a.mp4").symlink_to(tmp_path / "loop-b.mp4")
    (tmp_path / "loop-b.mp4").symlink_to(tmp_path / "loop-a.mp4")
    return {
        "directory": (tmp_path / "dir.mp4", "not a regular file: a directory"),
        "fifo": (tmp_path / "pipe.mp4", "not a regular file: a named pipe (fifo)"),
        "socket": (tmp_path / "sock.mp4", "not a regular file: a socket"),
        "dangling symlink": (tmp_path / "dangling.mp4", f"dangling symlink to {tmp_path / 'gone.mp4'}"),
        "symlink loop": (tmp_path / "loop-a.mp4", "symlink loop"),
        "missing": (tmp_path / "absent.mp4", "file not found"),
    }


@pytest.mark.parametrize("kind", ["directory", "fifo", "socket", "dangling symlink", "symlink loop", "missing"])
def test_odd_paths_are_named_for_what_they_are(tmp_path: Path, kind: str) -> None:
    path, said = _odd_paths(tmp_path)[kind]
    with pytest.raises(VideoError) as caught:
        check_file(path)
    assert str(caught.value) == f"{path}: cannot be read ({said})"


def test_large_and_unsupported_files_are_refused_before_hashing(ingestor: Ingestor, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipeline, "file_hash", _never_hash)
    huge = tmp_path / "huge.mp4"
    with open(huge, "wb") as f:  # sparse: 3 MiB on paper, nothing on disk
        f.truncate(3 * 2**20)
    with pytest.raises(VideoTooLargeError, match="3 MiB > max_file_mb=1"):
        ingestor.ingest(huge)
    doc = tmp_path / "notes.txt"
    doc.write_text("hello")
    with pytest.raises(UnsupportedFormatError):
        ingestor.ingest(doc)
    monkeypatch.setattr(pipeline, "PROBE_BEFORE_HASH_BYTES", 1024)  # a big file: its header is probed first
    fake = tmp_path / "fake.mp4"  # right suffix, not a container: refused by the header probe, unread
    fake.write_bytes(b"\x00" * 4096)
    with pytest.raises(VideoError, match="corrupt"):
        ingestor.ingest(fake)
    with pytest.raises(VideoError, match="named pipe"):  # a fifo would block a reader forever
        ingestor.ingest(_odd_paths(tmp_path)["fifo"][0])
    assert len(ingestor.store) == 0


def test_folder_ingest_reports_odd_entries_by_kind(ingestor: Ingestor, tmp_path: Path) -> None:
    folder = tmp_path / "videos"
    folder.mkdir()
    write_video(folder / "good.mp4", Scene(frames=6))
    os.mkfifo(folder / "pipe.mp4")
    (folder / "broken.mp4").symlink_to(folder / "nowhere.mp4")
    results = {Path(r.path).name: r for r in ingestor.ingest_many([folder])}
    assert results["good.mp4"].status == "ingested"
    assert results["pipe.mp4"].status == "failed" and "named pipe (fifo)" in (results["pipe.mp4"].error or "")
    assert results["broken.mp4"].status == "failed" and "dangling symlink" in (results["broken.mp4"].error or "")


def test_unexpected_error_in_one_video_does_not_stop_the_folder(ingestor: Ingestor, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "videos"
    folder.mkdir()
    for seed, name in enumerate(("a", "boom", "c")):
        write_video(folder / f"{name}.mp4", Scene(frames=6, seed=seed))
    real = chunks.build_twin  # where a twin is built (one chunk: a short video)

    def flaky(video_id: str, *args, **kwargs):  # type: ignore[no-untyped-def]
        if video_id == "boom":
            raise KeyError("track 7")  # a bug, not a TwinseekError
        return real(video_id, *args, **kwargs)

    monkeypatch.setattr(chunks, "build_twin", flaky)
    with caplog.at_level(logging.ERROR, logger="twinseek.twins.pipeline"):
        results = {Path(r.path).name: r for r in ingestor.ingest_many([folder])}
    assert [results[n].status for n in ("a.mp4", "boom.mp4", "c.mp4")] == ["ingested", "failed", "ingested"]
    assert results["boom.mp4"].error == f"{folder / 'boom.mp4'}: KeyError: 'track 7'"
    assert "Traceback" in caplog.text and "boom.mp4" in caplog.text
    assert sorted(ingestor.store.video_ids()) == ["a", "c"]
    assert not (ingestor.store.root / "masks" / "boom").exists()


def test_keyboard_interrupt_still_stops_a_folder_ingest(ingestor: Ingestor, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "videos"
    folder.mkdir()
    for name in ("a", "b"):
        write_video(folder / f"{name}.mp4", Scene(frames=6))

    def interrupted(*_: object, **__: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(chunks, "build_twin", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ingestor.ingest_many([folder])
    assert len(ingestor.store) == 0
