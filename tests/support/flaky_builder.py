"""A real :class:`TwinBuilder` with faults keyed by file name, for the parallel-ingest tests.

- ``*always-fails*``: every build raises ``RuntimeError`` (a model that crashes on this video);
- ``*fails-once*``: the first build raises ``OSError`` (a transient fault), later ones succeed;
- ``*crash-once*``: the first build kills its worker process (``os._exit``), later ones succeed.

"First" is recorded in a marker file next to the video, so it holds across worker processes and Ray nodes. Only
``*-once*`` videos get one; the tests write those into their own temporary folders, so nothing is ever written
next to the bundled sample clips.
"""

from __future__ import annotations

import os
from pathlib import Path

from twinseek.media.shots import ProgressCallback
from twinseek.twins.pipeline import BuildJob, BuiltTwin, TwinBuilder

from support.synthetic import Scene, write_video


def fault_videos(folder: Path, *names: str) -> Path:
    """Write the named test videos into ``folder``: ``broken.mp4`` (zero bytes, corrupt), ``empty.gif`` (empty),
    any other name a small synthetic clip of its own content."""
    folder.mkdir(parents=True, exist_ok=True)
    for seed, name in enumerate(names):
        if name == "broken.mp4":
            (folder / name).write_bytes(b"\x00" * 4096)
        elif name == "empty.gif":
            (folder / name).touch()
        else:
            write_video(folder / name, Scene(frames=8, seed=seed))
    return folder


class FlakyBuilder(TwinBuilder):
    def build(self, job: BuildJob, on_shot: ProgressCallback | None = None) -> BuiltTwin:
        name = job.path.name
        if "always-fails" in name:
            raise RuntimeError("the model crashed on this video")
        if "-once" in name:  # only these videos (written by the tests into tmp_path) get a marker file
            marker = job.path.with_name(job.path.name + ".tried")
            first = not marker.exists()
            marker.touch()
            if first and "fails-once" in name:
                raise OSError("a transient fault (network filesystem hiccup)")
            if first and "crash-once" in name:
                os._exit(3)
        return super().build(job, on_shot)
