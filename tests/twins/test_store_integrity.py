"""Store integrity under concurrency: an open of the store never sweeps the mask folder of a live ingest;
``check`` finds rows whose mask files are gone; a re-ingest repairs a damaged video."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from twinseek.config import load_settings
from twinseek.twins.pipeline import Ingestor
from twinseek.twins.specialists import Specialists, build_specialists
from twinseek.twins.store import ORPHAN_GRACE_S, TwinStore

from support.store import make_twin
from support.synthetic import Scene, write_video


@pytest.fixture(scope="module")
def specialists() -> Specialists:
    return build_specialists(load_settings())


def _mask_files(root: Path, video_id: str) -> list[Path]:
    return sorted((root / "masks" / video_id).rglob("*.png"))


def test_open_between_mask_writes_and_commit_keeps_the_masks(tmp_path: Path) -> None:
    """The reported loss, deterministically: another TwinStore opens while an ingest has written its masks but
    not yet committed its rows (``twinseek twins list`` in a loop during ``twinseek ingest``)."""
    twin, masks = make_twin()
    with TwinStore(tmp_path) as store:
        mask_dir = store.new_mask_dir("clip")
        first, *rest = twin.instances
        first.mask_path = store.write_mask(mask_dir, 1, first.frame_index, masks[(1, first.frame_index)])
        TwinStore(tmp_path, create=False).close()  # a reader opens the store mid-ingest
        for inst in rest:
            inst.mask_path = store.write_mask(mask_dir, 1, inst.frame_index, masks[(1, inst.frame_index)])
        TwinStore(tmp_path, create=False).close()  # and again just before the commit
        store.put_twin(twin, mask_dir)
        stored = store.get_twin("clip")
        for inst in stored.instances:
            assert store.mask_file(inst).is_file(), f"{inst.mask_path} was swept by the other open"
            assert np.array_equal(store.load_mask(inst), masks[(1, inst.frame_index)])
        assert store.check().ok


def test_another_process_opening_mid_ingest_keeps_the_masks(tmp_path: Path) -> None:
    """The same with a real second process running ``twinseek twins list`` (what the user did)."""
    twin, masks = make_twin()
    with TwinStore(tmp_path) as store:
        mask_dir = store.new_mask_dir("clip")
        for inst in twin.instances:
            inst.mask_path = store.write_mask(mask_dir, 1, inst.frame_index, masks[(1, inst.frame_index)])
        listed = subprocess.run([sys.executable, "-m", "twinseek.cli", "twins", "list", "--store", str(tmp_path)],
                                capture_output=True, text=True, timeout=120)
        assert listed.returncode == 0, listed.stderr
        store.put_twin(twin, mask_dir)
        assert len(_mask_files(tmp_path, "clip")) == len(twin.instances)
        assert all(store.mask_file(i).is_file() for i in store.get_twin("clip").instances)


def _hold_lease_script(root: Path) -> str:
    """A child process that writes a mask folder, prints it, and waits (an ingest still running)."""
    return textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(Path(__file__).parents[1])!r})
        from support.store import make_twin
        from twinseek.twins.store import TwinStore
        store = TwinStore({str(root)!r})
        twin, masks = make_twin("held")
        mask_dir = store.new_mask_dir("held")
        for inst in twin.instances:
            store.write_mask(mask_dir, 1, inst.frame_index, masks[(1, inst.frame_index)])
        print(mask_dir, flush=True)
        time.sleep(120)
    """)


def test_live_ingest_in_another_process_is_kept_and_its_folder_swept_after_kill_9(tmp_path: Path) -> None:
    TwinStore(tmp_path).close()
    child = subprocess.Popen([sys.executable, "-c", _hold_lease_script(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        mask_dir = child.stdout.readline().strip()
        assert mask_dir.startswith("masks/held/"), mask_dir
        with TwinStore(tmp_path) as store:  # the ingest is alive: its folder stays
            assert (tmp_path / mask_dir).is_dir() and len(list((tmp_path / mask_dir).glob("*.png"))) == 3
            report = store.check()
            assert report.ok and [f.kind for f in report.findings] == ["ingest_in_progress"]
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    with TwinStore(tmp_path) as store:  # its process died: the folder is an orphan, swept on open
        assert not (tmp_path / mask_dir).exists() and not any((tmp_path / ".leases").iterdir())
        assert store.check().findings == []


def test_folder_without_lease_is_swept_only_when_old(tmp_path: Path) -> None:
    """Mask folders from a twinseek without leases: spared while young (an old-version ingest may be writing)."""
    legacy = tmp_path / "masks" / "old" / "abc123"
    legacy.mkdir(parents=True)
    (legacy / "t1_f0.png").write_bytes(b"png")
    TwinStore(tmp_path).close()
    assert legacy.is_dir()
    stale = time.time() - ORPHAN_GRACE_S - 10
    os.utime(legacy, (stale, stale))
    with TwinStore(tmp_path) as store:
        assert not legacy.exists() and store.check().ok


def test_check_finds_missing_masks_and_reingest_repairs(tmp_path: Path, specialists: Specialists) -> None:
    settings = load_settings(store=tmp_path / "store", sampling={"frames": 4})
    clip = write_video(tmp_path / "cat-in-the-sun.mp4", Scene(frames=6))
    other = write_video(tmp_path / "other.mp4", Scene(frames=6, seed=2))
    with TwinStore(settings.store) as store:
        ingestor = Ingestor(store, settings, specialists)
        assert [r.status for r in ingestor.ingest_many([clip, other])] == ["ingested", "ingested"]
        assert store.check().ok
        twin = store.get_twin("cat-in-the-sun")
        lost = [store.mask_file(i) for i in twin.instances[::2]]
        for path in lost:
            path.unlink()
        report = store.check()
        assert not report.ok and report.damaged_videos == ["cat-in-the-sun"]
        (finding,) = report.findings
        assert finding.kind == "missing_masks" and finding.count == len(lost)
        assert store.missing_masks("cat-in-the-sun") == [i.mask_path for i in twin.instances[::2]]

        again = {Path(r.path).name: r for r in ingestor.ingest_many([clip, other])}
        assert again["cat-in-the-sun.mp4"].status == "ingested" and again["cat-in-the-sun.mp4"].repaired
        assert again["other.mp4"].status == "skipped"  # the whole twin is not touched
        assert store.check().ok and store.missing_masks("cat-in-the-sun") == []
        # the whole folder gone is found and repaired too
        shutil.rmtree(store.root / store.get_twin("cat-in-the-sun").instances[0].mask_path.rsplit("/", 1)[0])
        assert [f.kind for f in store.check().findings] == ["missing_mask_dir"]
        assert ingestor.ingest(clip).repaired and store.check().ok


def test_concurrent_reader_loop_during_folder_ingest(tmp_path: Path, specialists: Specialists) -> None:
    """The user's scenario end to end: ``twins list`` in a tight loop (another thread, its own connections)
    while a folder ingest writes masks; every mask of every video survives."""
    settings = load_settings(store=tmp_path / "store", sampling={"frames": 4})
    folder = tmp_path / "videos"
    folder.mkdir()
    for seed in range(2):
        write_video(folder / f"v{seed}.mp4", Scene(frames=6, seed=seed))
    TwinStore(settings.store).close()
    stop = threading.Event()
    opens = 0

    def reader() -> None:
        nonlocal opens
        while not stop.is_set():
            with TwinStore(settings.store, create=False) as s:
                s.videos()
            opens += 1

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        with TwinStore(settings.store) as store:
            results = Ingestor(store, settings, specialists).ingest_many([folder])
    finally:
        stop.set()
        thread.join(60)
    assert opens > 3
    assert [r.status for r in results] == ["ingested"] * 2, [r.error for r in results]
    with TwinStore(settings.store) as store:
        lost = [i.mask_path for v in store.video_ids() for i in store.get_twin(v).instances
                if not store.mask_file(i).is_file()]
        assert lost == []
        report = store.check()
        assert report.ok and report.instances > 0, report.findings


def test_new_mask_dir_survives_a_sweep_removing_the_empty_video_folder(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Another process's sweep removes an empty ``masks/<video>`` folder; if that happens between ``mkdir`` of
    the video folder and of the ingest folder inside it, the ingest makes the folder again instead of failing."""
    real_mkdir = Path.mkdir
    raced: list[Path] = []

    def racing_mkdir(self: Path, mode: int = 0o777, parents: bool = False, exist_ok: bool = False) -> None:
        if self.parent.name == "v" and not raced:  # the ingest folder, first try: a sweep took its parent
            raced.append(self)
            real_mkdir(self.parent, parents=True, exist_ok=True)
            self.parent.rmdir()
            raise FileNotFoundError(str(self))
        real_mkdir(self, mode, parents, exist_ok)

    with TwinStore(tmp_path / "store") as store:
        monkeypatch.setattr(Path, "mkdir", racing_mkdir)
        rel = store.new_mask_dir("v")
        monkeypatch.undo()
        assert raced and (store.root / rel).is_dir()
        store.discard_mask_dir(rel)
