"""Ingestion end to end on synthetic videos, with the real embedded specialists."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from twinseek.config import load_settings
from twinseek.errors import VideoError
from twinseek.media.decode import DecodedVideo, VideoInfo
from twinseek.media.masks import mask_iou
from twinseek.twins.adapters.base import Category, Detection, SpecialistBase, TrackedObject
from twinseek.twins.model import Tier
from twinseek.twins.perception import build_twin
from twinseek.twins.pipeline import Ingestor, slugify
from twinseek.twins.specialists import Specialists, build_specialists
from twinseek.twins.store import TwinStore

from support.synthetic import Scene, write_shots_video, write_video


@pytest.fixture(scope="module")
def specialists() -> Specialists:
    return build_specialists(load_settings())


@pytest.fixture
def ingestor(tmp_path: Path, specialists: Specialists):  # type: ignore[no-untyped-def]
    store = TwinStore(tmp_path / "store")
    yield Ingestor(store, load_settings(store=tmp_path / "store", sampling={"frames": 12}), specialists)
    store.close()


def test_synthetic_scene_gives_tracks_masks_colours_and_motion(ingestor: Ingestor, tmp_path: Path) -> None:
    scene = Scene()
    result = ingestor.ingest(write_video(tmp_path / "shapes.mp4", scene))
    assert result.status == "ingested" and result.video_id == "shapes" and result.frames == 12
    twin = ingestor.store.get_twin("shapes")
    assert {p.role for p in twin.video.specialists} >= {"detector", "object detector", "segmenter", "describer",
                                                        "text reader"}
    # each ground-truth shape is matched by one track whose masks overlap it across the clip
    matched = {}
    for shape_no in range(len(scene.shapes)):
        best_iou, best_track = 0.0, None
        for track in twin.tracks:
            insts = [i for i in twin.instances if i.track_id == track.track_id]
            ious = []
            for inst in insts:
                gt = scene.masks(inst.frame_index)[shape_no]
                ious.append(mask_iou(ingestor.store.load_mask(inst), gt))
            score = sum(ious) / len(twin.video.sampled_frames)
            if score > best_iou:
                best_iou, best_track = score, track
        assert best_iou > 0.6, f"shape {shape_no} not tracked (best IoU {best_iou:.2f})"
        matched[shape_no] = best_track
    red, blue = matched[0], matched[1]
    assert red.track_id != blue.track_id
    assert red.direction == "right" and blue.direction == "left"
    assert "red" in red.attributes and "blue" in blue.attributes
    preds = {(r.subject_track, r.predicate, r.object_track) for r in twin.relations}
    assert (red.track_id, "moving right", None) in preds and (blue.track_id, "moving left", None) in preds
    assert (red.track_id, "above", blue.track_id) in preds and (blue.track_id, "below", red.track_id) in preds
    for inst in twin.instances:
        assert inst.depth is None  # no depth model in the embedded default
        assert (ingestor.store.root / inst.mask_path).is_file()


def test_an_ingested_multi_shot_clip_has_its_shots_stored(ingestor: Ingestor, tmp_path: Path) -> None:
    seen = []
    ingestor.on_shot = seen.append
    result = ingestor.ingest(write_shots_video(tmp_path / "cuts.mp4", [24, 36, 24]))
    twin = ingestor.store.get_twin(result.video_id)
    assert [(s.index, s.start_frame, s.end_frame) for s in twin.shots] == [(0, 0, 23), (1, 24, 59), (2, 60, 83)]
    assert twin.shots[1].start_s == pytest.approx(2.0) and twin.shots[2].end_s == pytest.approx(7.0)
    # every sampled frame is a key frame of the shot it falls in, and every shot has some
    assert sorted(k for s in twin.shots for k in s.key_frames) == twin.video.sampled_frames
    assert all(s.key_frames for s in twin.shots) and len(twin.video.sampled_frames) == 12
    assert [p.shot.index for p in seen] == [0, 1, 2]
    # objects are followed within a shot: no track crosses a cut, and the square is found in every shot
    holding = [{s.index for s in twin.shots if s.start_frame <= t.first_frame <= s.end_frame
                or s.start_frame <= t.last_frame <= s.end_frame} for t in twin.tracks]
    assert all(len(shots) == 1 for shots in holding), [(t.first_frame, t.last_frame) for t in twin.tracks]
    assert set().union(*holding) == {0, 1, 2}


def test_rerun_skips_force_reingests(ingestor: Ingestor, tmp_path: Path) -> None:
    path = write_video(tmp_path / "clip.webm", Scene(frames=10))
    assert ingestor.ingest(path).status == "ingested"
    old_dir = next((ingestor.store.root / "masks" / "clip").iterdir())
    assert ingestor.ingest(path).status == "skipped"
    assert ingestor.ingest(path, force=True).status == "ingested"
    assert ingestor.store.video_ids() == ["clip"] and not old_dir.exists()


def test_same_stem_elsewhere_gets_its_own_id_and_changed_file_keeps_id(ingestor: Ingestor, tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = write_video(tmp_path / "a" / "clip.mp4", Scene(frames=8))
    b = write_video(tmp_path / "b" / "clip.mp4", Scene(frames=8, seed=3))
    first, second = ingestor.ingest(a).video_id, ingestor.ingest(b).video_id
    assert first == "clip" and second.startswith("clip-") and second != first
    write_video(a, Scene(frames=9, seed=7))  # the file changes in place
    assert ingestor.ingest(a).video_id == "clip"
    assert len(ingestor.store) == 2


def test_folder_ingest_reports_bad_files_and_keeps_going(ingestor: Ingestor, tmp_path: Path) -> None:
    folder = tmp_path / "videos"
    folder.mkdir()
    write_video(folder / "good.mp4", Scene(frames=8))
    (folder / "broken.mp4").write_bytes(b"\x00" * 4096)
    (folder / "empty.gif").touch()
    (folder / "readme.txt").write_text("not a video")  # ignored inside a folder
    write_video(folder / "also-good.gif", Scene(frames=8))
    results = {Path(r.path).name: r for r in ingestor.ingest_many([folder])}
    assert set(results) == {"good.mp4", "broken.mp4", "empty.gif", "also-good.gif"}
    assert results["good.mp4"].status == results["also-good.gif"].status == "ingested"
    assert results["broken.mp4"].status == "failed" and "broken.mp4" in results["broken.mp4"].error
    assert results["empty.gif"].status == "failed" and "empty" in results["empty.gif"].error
    assert sorted(ingestor.store.video_ids()) == ["also-good", "good"]


def test_bad_file_raises_and_store_is_untouched(ingestor: Ingestor, tmp_path: Path) -> None:
    good = write_video(tmp_path / "good.mp4", Scene(frames=8))
    ingestor.ingest(good)
    before = ingestor.store.get_twin("good")
    bad = tmp_path / "bad.mov"
    bad.write_bytes(b"garbage" * 1000)
    with pytest.raises(VideoError, match="bad.mov"):
        ingestor.ingest(bad)
    assert ingestor.store.video_ids() == ["good"] and ingestor.store.get_twin("good") == before


def test_failure_in_a_specialist_writes_nothing(ingestor: Ingestor, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: object) -> list:
        raise RuntimeError("model crashed")

    monkeypatch.setattr(ingestor.specialists.segmenter, "segment", broken)
    with pytest.raises(RuntimeError):
        ingestor.ingest(write_video(tmp_path / "x.mp4", Scene(frames=8)))
    assert len(ingestor.store) == 0
    assert not any((ingestor.store.root / "masks").rglob("*.png"))


class RecordingDetector(SpecialistBase):
    """Finds nothing, names nothing: records the vocabulary of every call."""

    role, model = "detector", "recording"

    def __init__(self, tier: Tier, open_vocabulary: bool, every_frame: bool) -> None:
        self.tier, self.open_vocabulary, self.every_frame = tier, open_vocabulary, every_frame
        self.detected: list[Sequence[str] | None] = []
        self.categorised: list[Sequence[str] | None] = []

    def detect(self, frame: np.ndarray, vocabulary: Sequence[str] | None = None) -> list[Detection]:
        self.detected.append(vocabulary)
        return []

    def categorise(self, crops: Sequence[np.ndarray], vocabulary: Sequence[str] | None = None) -> list[Category]:
        self.categorised.append(vocabulary)
        return []


class NoTracks(SpecialistBase):
    role, model = "segmenter", "none"

    def segment(self, frames: Sequence[np.ndarray], seeds: object) -> list[TrackedObject]:
        return []


@pytest.mark.parametrize(("tier", "open_vocabulary", "every_frame"),
                         [("embedded", True, False), ("paper", False, True), ("paper", True, False)])
def test_the_build_follows_the_detector_capabilities_not_its_tier(tier: Tier, open_vocabulary: bool,
                                                                    every_frame: bool) -> None:
    """The vocabulary goes to a detector that takes labels, and a detector cheap enough for every frame runs on
    every frame, whatever its tier."""
    detector = RecordingDetector(tier, open_vocabulary, every_frame)
    settings = load_settings(paper={"vocabulary": ["kite", "swan"], "keyframes": 3})
    info = VideoInfo(path=Path("clip.mp4"), width=48, height=32, fps=8.0, frame_count=8, duration_s=1.0)
    decoded = DecodedVideo(info, [np.full((32, 48, 3), 10 * i, np.uint8) for i in range(8)], list(range(8)))
    specialists = Specialists(detector=detector, segmenter=NoTracks(), describer=None)  # type: ignore[arg-type]
    build_twin("clip", decoded, "", specialists, settings)
    vocabulary = ["kite", "swan"] if open_vocabulary else None
    assert detector.detected == [vocabulary] * (8 if every_frame else 3)
    assert detector.categorised == [vocabulary] * 8  # the scene frames


def test_slugify() -> None:
    assert slugify("My Clip (final)") == "my-clip-final"
    assert slugify("///") == "video"


def test_sample_clips_are_bundled(tmp_path: Path) -> None:
    from twinseek.data import sample_clips

    clips = sample_clips()
    assert [c.stem for c in clips] == ["blackswan", "car-roundabout", "horsejump-high"]
    shutil.copy(clips[0], tmp_path / "x.mp4")
    assert (tmp_path / "x.mp4").stat().st_size > 100_000
