"""The speech step of ingest: a video's sound track -> :class:`~twinseek.twins.model.Speech` (status + timed
segments).

The audio is decoded (:mod:`twinseek.media.audio`, at most ``sampling.max_audio_s`` seconds: a cap, not chunks, so
that a 2-hour video costs a bounded, known time and memory), a silent track is told apart without a model, and the
recogniser (:class:`~twinseek.twins.adapters.base.SpeechRecogniser`) transcribes what its voice-activity filter
hears. Nothing in this step fails an ingest: no audio track, silence, speech off, an unreadable stream or a failing
model each become the video's speech status, and the reason is logged.
"""

from __future__ import annotations

import logging
from pathlib import Path

from twinseek.config import Settings
from twinseek.errors import ModelUnavailableError
from twinseek.media.audio import AudioError, decode_audio, rms_dbfs
from twinseek.twins.adapters.base import SpeechRecogniser
from twinseek.twins.model import Speech

logger = logging.getLogger(__name__)

TRANSCRIBED, NO_AUDIO, SILENCE, SKIPPED = "transcribed", "no audio track", "silence", "skipped"
OFF = f"{SKIPPED}: speech off (specialists.speech=none)"
SILENCE_DBFS = -60.0  # a track quieter than this (RMS) holds no voice: no model runs on it
MIN_AUDIO_S = 0.1


def transcribe_video(path: str | Path, recogniser: SpeechRecogniser | None, settings: Settings) -> Speech:
    """The speech of the video at ``path`` (never raises for a bad stream or a failing model: see the module)."""
    if recogniser is None:
        return Speech(status=OFF)
    if not Path(path).is_file():  # a worker's warm-up clip, frames only
        return Speech(status=f"{SKIPPED}: no file")
    try:
        audio = decode_audio(path, settings.sampling.max_audio_s)
    except AudioError as exc:
        logger.warning("%s: speech skipped: %s", path, exc)
        return Speech(status=f"{SKIPPED}: {exc}", model=recogniser.model)
    if audio is None:
        return Speech(status=NO_AUDIO)
    done = Speech(status=SILENCE, model=recogniser.model, audio_s=round(audio.stream_s, 2),
                  transcribed_s=round(audio.seconds, 2))
    if audio.truncated:
        logger.info("%s: transcribing the first %.0f s of %.0f s of audio (sampling.max_audio_s)", path,
                    audio.seconds, audio.stream_s)
    if audio.seconds < MIN_AUDIO_S or rms_dbfs(audio.samples) < SILENCE_DBFS:
        return done
    try:
        segments, language = recogniser.transcribe(audio.samples)
    except Exception as exc:  # an optional step: keep the twin (ModelUnavailableError included: speech is extra)
        logger.warning("%s: speech skipped: %s: %s", path, type(exc).__name__, exc,
                       exc_info=not isinstance(exc, ModelUnavailableError))
        return done.model_copy(update={"status": f"{SKIPPED}: {type(exc).__name__}: {exc}"[:300]})
    if not segments:
        return done
    return done.model_copy(update={"status": TRANSCRIBED, "language": language, "segments": segments})
