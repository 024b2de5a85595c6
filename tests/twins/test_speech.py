"""Speech in the twin: the step's status for every kind of sound track, the store's rows, the texts made from it
(and exactly today's texts without it), and one real transcription of a spoken sentence by the embedded Whisper."""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import sqlite3
import subprocess
from pathlib import Path

import numpy as np
import pytest

from twinseek.config import Settings, load_settings
from twinseek.media.audio import decode_audio
from twinseek.twins.adapters.embedded.whisper import WhisperRecogniser
from twinseek.twins.model import Speech, SpeechSegment, Twin
from twinseek.twins.pipeline import Ingestor
from twinseek.twins.specialists import build_specialists
from twinseek.twins.speech import NO_AUDIO, OFF, SILENCE, TRANSCRIBED, transcribe_video
from twinseek.twins.store import DB_NAME, TwinStore
from twinseek.twins.views import ComponentTexts, compact, describe, scene_gist, template_ecr

from support.store import make_twin, put
from support.synthetic import (
    Scene,
    Sound,
    write_video,
    write_video_with_garbage_audio,
    write_video_with_sound,
)
from support.twin_texts import OLD_STORE, all_texts, synthetic_twin

TEXTS = Path(__file__).parents[1] / "data" / "texts-without-speech.json"
SENTENCE = "The weather in Paris is sunny and warm today."


@pytest.fixture
def settings() -> Settings:
    return load_settings(sampling={"max_audio_s": 60})


# -- the status of the speech step ------------------------------------------------------------------------------
def test_off_no_audio_and_silence_cost_no_model(tmp_path: Path, settings: Settings) -> None:
    recogniser = WhisperRecogniser("embedded", tmp_path / "cache")
    mute = write_video(tmp_path / "mute.mp4")
    assert transcribe_video(mute, None, settings) == Speech(status=OFF)
    assert transcribe_video(mute, recogniser, settings) == Speech(status=NO_AUDIO)
    quiet = transcribe_video(write_video_with_sound(tmp_path / "quiet.mp4", Sound.silence(2.0)), recogniser, settings)
    assert quiet.status == SILENCE and quiet.segments == [] and abs(quiet.audio_s - 2.0) < 0.1
    assert recogniser._model is None and not (tmp_path / "cache").exists()  # never loaded, nor even assembled


def test_a_bad_stream_or_a_missing_model_is_skipped_with_the_reason(tmp_path: Path, settings: Settings,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    garbage = write_video_with_garbage_audio(tmp_path / "bad.mkv")
    with caplog.at_level(logging.WARNING, logger="twinseek.twins.speech"):
        bad = transcribe_video(garbage, WhisperRecogniser("embedded", tmp_path / "cache"), settings)
    assert bad.status == "skipped: audio stream (aac) cannot be decoded (invalid data)"
    assert "bad.mkv: speech skipped" in caplog.text
    tone = write_video_with_sound(tmp_path / "tone.mkv", Sound.tone(2.0))
    capped = load_settings(sampling={"max_audio_s": 0.5})  # a 2-hour video costs at most max_audio_s
    missing = transcribe_video(tone, WhisperRecogniser(str(tmp_path / "no-model")), capped)
    assert missing.status.startswith("skipped: ModelUnavailableError: specialists.speech=")
    assert (missing.transcribed_s, missing.audio_s) == (0.5, 2.0)


def test_a_bad_audio_stream_never_fails_the_ingest(tmp_path: Path) -> None:
    """The whole pipeline on a video whose audio is garbage: the twin is stored, with the reason."""
    settings = load_settings(sampling={"frames": 4}, perception={"ocr": False, "coco_detector": False},
                             cache_dir=tmp_path / "cache")
    with TwinStore(tmp_path / "store") as store:
        result = Ingestor(store, settings).ingest(write_video_with_garbage_audio(tmp_path / "bad.mkv"))
        assert result.status == "ingested" and "speech" in result.timings
        speech = store.get_twin(result.video_id or "").speech
    assert speech is not None and speech.status.startswith("skipped: audio stream")


# -- the store ---------------------------------------------------------------------------------------------------
def spoken_twin(video_id: str = "clip") -> tuple[Twin, dict]:
    twin, masks = make_twin(video_id)
    twin.speech = Speech(status=TRANSCRIBED, model="whisper", language="en", audio_s=9.5, transcribed_s=9.5,
                         segments=[SpeechSegment(start=0.5, end=2.0, text="hello there", language="en", confidence=0.8),
                                   SpeechSegment(start=3.0, end=4.25, text="the dog is fetching the ball",
                                                 language="en", confidence=0.7)])
    return twin, masks


def test_speech_round_trips_through_the_store_and_leaves_with_its_video(tmp_path: Path) -> None:
    with TwinStore(tmp_path) as store:
        twin, masks = spoken_twin()
        put(store, twin, masks)
        assert store.get_twin("clip").speech == twin.speech
        rows = store.stored_rows("clip")
        assert rows.speech_status is not None and rows.speech_status["status"] == TRANSCRIBED
        assert [r["text"] for r in rows.speech] == ["hello there", "the dog is fetching the ball"]
        twin.speech = Speech(status=NO_AUDIO)
        put(store, twin, masks)  # a new ingest replaces the old rows
        assert store.get_twin("clip").speech == Speech(status=NO_AUDIO) and store.stored_rows("clip").speech == []
        store.delete("clip")
        assert store.db.table("speech").count == 0 and store.db.table("speech_status").count == 0


def test_store_diff_compares_the_speech_rows(tmp_path: Path) -> None:
    from twinseek.twins.compare import diff_stores

    with TwinStore(tmp_path / "a") as a, TwinStore(tmp_path / "b") as b:
        put(a, *spoken_twin())
        twin, masks = spoken_twin()
        twin.speech.segments[0].text = "hello here"  # type: ignore[union-attr]
        put(b, twin, masks)
        assert diff_stores(a, b).differences == ["'clip' speech (row 0, track 0): text: 'hello there' vs 'hello here'"]


def test_an_old_store_gets_the_speech_tables_and_its_twins_no_speech(tmp_path: Path) -> None:
    (tmp_path / "old").mkdir()
    with contextlib.closing(sqlite3.connect(tmp_path / "old" / DB_NAME)) as conn:
        conn.executescript(OLD_STORE.read_text())
    with TwinStore(tmp_path / "old", create=False) as store:
        assert store.db.table("speech").exists() and store.db.table("speech_status").exists()
        assert all(store.get_twin(v).speech is None for v in store.video_ids())
        assert ("twinseek", "m008_speech") in {(r["migration_set"], r["name"]) for r in
                                               store.db.query("select * from _sqlite_migrations")}


# -- the texts ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("status", [None, NO_AUDIO, SILENCE, OFF, "skipped: audio stream (aac) cannot be decoded"])
def test_a_video_without_speech_gets_exactly_the_texts_it_got_before_speech(status: str | None) -> None:
    def edit(twin: Twin) -> Twin:
        twin.speech = None if status is None else Speech(status=status)
        return twin

    expected = json.loads(TEXTS.read_text())
    assert json.loads(json.dumps(all_texts(edit))) == expected  # the dev bench's rankings cannot move


def test_speech_joins_the_components_the_ecr_the_description_and_the_llm_view() -> None:
    twin = synthetic_twin()
    twin.speech = Speech(status=TRANSCRIBED, language="en", segments=[
        SpeechSegment(start=0.5, end=2.0, text="Welcome to the lake.", confidence=0.8),
        SpeechSegment(start=2.0, end=3.9, text="The swans arrive every spring from the north.", confidence=0.7),
        SpeechSegment(start=3.9, end=4.0, text="mumble", confidence=0.1)])
    rows = [r for r in ComponentTexts.rows(twin) if r["kind"] == "speech"]
    assert [(r["text"], r["frame_start"], r["frame_end"]) for r in rows] == [
        ('someone says "Welcome to the lake."', 4, 16), ('someone says "The swans arrive every spring from the north."',
                                                          16, 31), ('someone says "mumble"', 31, 31)]
    assert 'Someone says: "Welcome to the lake. The swans arrive every spring from the north. mumble".' in \
        template_ecr(twin)
    line = describe(twin)  # confident segments only, cut at a word
    assert line.endswith('says "Welcome to the lake. The swans arrive every spring from the..."'), line
    assert compact(twin)["say"][0] == [0.5, 2.0, "Welcome to the lake."]
    twin.speech.segments.pop()  # a quote that ends its own sentence gets no second full stop
    assert 'from the north."' in scene_gist(twin) and 'north.".' not in scene_gist(twin)


# -- one real transcription --------------------------------------------------------------------------------------
def speak(text: str, path: Path) -> Path:
    """``text`` spoken by espeak-ng into a WAV file."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        pytest.fail("espeak-ng is not installed: the speech test speaks its sentence with it. Install the Debian "
                    "package espeak-ng (`apt-get install espeak-ng`; scripts/bootstrap.sh does)")
    subprocess.run([exe, "-s", "130", "-w", str(path), text], check=True, capture_output=True)
    return path


def test_a_spoken_sentence_comes_back_in_the_twin_and_its_texts(tmp_path: Path) -> None:
    audio = decode_audio(speak(SENTENCE, tmp_path / "said.wav"))
    assert audio is not None
    pause = Sound.silence(1.0).samples
    sound = Sound(samples=np.concatenate([pause, audio.samples[None, :], pause], axis=1))
    video = write_video_with_sound(tmp_path / "talk.mp4", sound, Scene(frames=48, fps=12))
    settings = load_settings(sampling={"frames": 4}, perception={"ocr": False, "coco_detector": False},
                             cache_dir=tmp_path / "cache")
    with TwinStore(tmp_path / "store") as store:
        result = Ingestor(store, settings, build_specialists(settings)).ingest(video)
        twin = store.get_twin(result.video_id or "")
    speech = twin.speech
    assert speech is not None and speech.status == TRANSCRIBED and speech.language == "en", speech
    heard = " ".join(s.text for s in speech.segments).lower()
    words = ["weather", "paris", "sunny", "warm", "today"]
    assert sum(w in heard for w in words) >= 4, heard
    first = speech.segments[0]
    assert 0.5 <= first.start <= 1.6 and first.end <= sound.samples.shape[1] / 16_000 + 0.5  # timed in the video
    assert "paris" in describe(twin).lower() and "paris" in template_ecr(twin).lower()
    assert result.timings["speech"] > 0


# -- shown with times --------------------------------------------------------------------------------------------
def test_twins_show_and_the_video_page_show_the_transcript_with_times(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from fastapi.testclient import TestClient

    from twinseek.cli.render import print_twin
    from twinseek.web import WebSettings, create_app

    with TwinStore(tmp_path / "store") as store:
        twin, masks = spoken_twin()
        twin.speech.segments[1].start, twin.speech.segments[1].end = 63.25, 65.0  # type: ignore[union-attr]
        put(store, twin, masks)
        print_twin(store.get_twin("clip"))
    shown = capsys.readouterr().out
    assert "speech: transcribed, en" in shown and "[0:00.5-0:02.0] hello there" in shown
    assert "[1:03.2-1:05.0] the dog is fetching the ball" in shown
    app = create_app(WebSettings(store=tmp_path / "store", runs=tmp_path / "runs", warm_llm=False))
    with TestClient(app, base_url="http://127.0.0.1") as client:
        page = client.get("/videos/clip").text
        view = client.get("/api/videos/clip").json()
    assert '<p class="muted" id="speech-status">transcribed · en</p>' in page
    assert "<td class=\"muted\">1:03.2–1:05.0</td><td>the dog is fetching the ball</td>" in page
    assert view["twin"]["speech"]["segments"][0]["text"] == "hello there"


def test_the_setting_picks_the_embedded_model_a_folder_or_none(tmp_path: Path) -> None:
    assert build_specialists(load_settings(specialists={"speech": "none"})).speech is None
    embedded = build_specialists(load_settings(cache_dir=tmp_path)).speech
    assert isinstance(embedded, WhisperRecogniser) and embedded.provenance().tier == "embedded"
    folder = embedded.folder()  # assembled once: model.bin from the two packages, beside its config and tokenizer
    assert sorted(p.name for p in folder.iterdir() if not p.name.endswith(".verified")) == [
        "config.json", "model.bin", "tokenizer.json", "vocabulary.txt"]
    settings = load_settings(profile="paper", specialists={"speech": str(folder)})
    assert settings.tier_of("speech") == "paper"
    paper = WhisperRecogniser(str(folder))  # what build_specialists makes of it (the paper profile's other models
    assert paper.provenance().model == "faster-whisper:whisper-base-ct2" and paper.folder() == folder  # need weights)
