"""Bundled data: sample clips for the demo and integration tests."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def sample_clips() -> list[Path]:
    """The bundled DAVIS-2016 sample clips (BSD-3, see ``samples/LICENSE-DAVIS.md``)."""
    folder = Path(str(files("twinseek.data") / "samples"))
    return sorted(folder.glob("*.mp4"))
