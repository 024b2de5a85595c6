"""A long video built a chunk of shots at a time, staged, and resumed after a failure (twinseek.twins.chunks)."""

from __future__ import annotations

from pathlib import Path

import pytest

from twinseek.config import Settings, load_settings
from twinseek.twins import chunks
from twinseek.twins.chunks import staging_dir
from twinseek.twins.pipeline import Ingestor
from twinseek.twins.specialists import Specialists, build_specialists
from twinseek.twins.store import TwinStore

from support.synthetic import write_shots_video

# 6 shots of 20 frames; 12 frames sampled (2 a shot); chunks of at most 4 frames: 3 chunks of 2 shots
LENGTHS = [20] * 6


@pytest.fixture(scope="module")
def specialists() -> Specialists:
    return build_specialists(load_settings())


def _settings(store: Path, chunk_frames: int = 4) -> Settings:
    return load_settings(store=store, sampling={"frames": 12, "chunk_frames": chunk_frames})


def test_chunks_merge_into_one_twin_like_a_whole_build(tmp_path: Path, specialists: Specialists) -> None:
    video = write_shots_video(tmp_path / "cuts.mkv", LENGTHS, width=160, height=120)
    with TwinStore(tmp_path / "a") as store:
        whole = store.get_twin(Ingestor(store, _settings(store.root, 64), specialists).ingest(video).video_id)
    with TwinStore(tmp_path / "b") as store:
        ingestor = Ingestor(store, _settings(store.root), specialists)
        result = ingestor.ingest(video)
        chunked = store.get_twin(result.video_id)
        assert not (store.root / "staging").exists() or not any((store.root / "staging").iterdir())
        assert not store.missing_masks(result.video_id)
    # the same shots and sampled frames; tracks renumbered 1..n over the chunks, none spanning two chunks
    # shot labels come from each shot's own frames: the same however the video was cut into chunks
    assert chunked.shots == whole.shots and chunked.video.sampled_frames == whole.video.sampled_frames
    assert all(s.labels for s in chunked.shots if s.key_frames)
    assert [t.track_id for t in chunked.tracks] == list(range(1, len(chunked.tracks) + 1))
    chunk_of = {f: n // 4 for n, f in enumerate(chunked.video.sampled_frames)}
    for track in chunked.tracks:
        frames = {i.frame_index for i in chunked.instances if i.track_id == track.track_id}
        assert frames and len({chunk_of[f] for f in frames}) == 1
    for rel in chunked.relations:
        assert rel.subject_track in {t.track_id for t in chunked.tracks}
    assert chunked.video.scene and chunked.video.description


def test_a_failed_build_resumes_without_rebuilding_finished_chunks(tmp_path: Path, specialists: Specialists,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    video = write_shots_video(tmp_path / "cuts.mkv", LENGTHS, width=160, height=120)
    perceive = chunks.perceive
    calls: list[list[int]] = []

    def failing(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(list(args[2]))
        if len(calls) == 3:
            raise RuntimeError("killed")
        return perceive(*args, **kwargs)

    monkeypatch.setattr(chunks, "perceive", failing)
    with TwinStore(tmp_path / "store") as store:
        ingestor = Ingestor(store, _settings(store.root), specialists)
        with pytest.raises(RuntimeError, match="killed"):
            ingestor.ingest(video)
        assert store.video_ids() == []
        staged = staging_dir(store.root, next(iter((store.root / "staging").iterdir())).name)
        assert sorted(p.name for p in staged.iterdir() if p.name.startswith("chunk-")) == ["chunk-0000",
                                                                                           "chunk-0001"]
        first_run = calls[:2]
        calls.clear()
        result = ingestor.ingest(video)
        assert result.status == "ingested"
        assert len(calls) == 1  # only the last chunk was built again
        assert calls[0] not in first_run and calls[0][0] > first_run[-1][-1]
        twin = store.get_twin(result.video_id)
        assert len(twin.shots) == 6 and len(twin.video.sampled_frames) == 12
        assert not staged.exists() and not store.missing_masks(result.video_id)


def test_staging_of_other_settings_is_discarded(tmp_path: Path, specialists: Specialists,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    video = write_shots_video(tmp_path / "cuts.mkv", LENGTHS, width=160, height=120)
    perceive = chunks.perceive
    calls: list[int] = []
    failed: list[bool] = []

    def failing(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 2 and not failed:
            failed.append(True)
            raise RuntimeError("killed")
        return perceive(*args, **kwargs)

    monkeypatch.setattr(chunks, "perceive", failing)
    with TwinStore(tmp_path / "store") as store:
        with pytest.raises(RuntimeError):
            Ingestor(store, _settings(store.root), specialists).ingest(video)
        calls.clear()
        other = load_settings(store=store.root, sampling={"frames": 12, "chunk_frames": 4, "max_side": 128})
        assert Ingestor(store, other, specialists).ingest(video).status == "ingested"
        assert len(calls) == 3  # every chunk built again: the staged one was of another max_side
