"""Synthetic videos with known ground truth: coloured shapes moving over a textured background."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

CODECS = {
    ".mp4": ("libx264", "yuv420p"),
    ".mov": ("libx264", "yuv420p"),
    ".mkv": ("ffv1", "yuv420p"),
    ".webm": ("libvpx", "yuv420p"),
    ".avi": ("mjpeg", "yuvj420p"),
    ".gif": ("gif", "rgb8"),
}


@dataclass
class Shape:
    """A shape moving linearly from ``start`` to ``end`` (pixel centres) over the clip."""

    kind: str  # "square" or "disc"
    colour: tuple[int, int, int]
    start: tuple[float, float]
    end: tuple[float, float]
    radius: int = 14

    def centre(self, t: float) -> tuple[float, float]:
        return (self.start[0] + (self.end[0] - self.start[0]) * t, self.start[1] + (self.end[1] - self.start[1]) * t)

    def mask(self, t: float, h: int, w: int) -> np.ndarray:
        cx, cy = self.centre(t)
        yy, xx = np.mgrid[0:h, 0:w]
        if self.kind == "square":
            return (np.abs(xx - cx) <= self.radius) & (np.abs(yy - cy) <= self.radius)
        return (xx - cx) ** 2 + (yy - cy) ** 2 <= self.radius**2


RED_RIGHT = Shape("square", (220, 30, 30), (50, 70), (260, 70), radius=25)
BLUE_LEFT = Shape("disc", (30, 60, 220), (270, 170), (70, 170), radius=25)


@dataclass
class Scene:
    shapes: list[Shape] = field(default_factory=lambda: [RED_RIGHT, BLUE_LEFT])
    width: int = 320
    height: int = 240
    frames: int = 24
    fps: int = 12
    seed: int = 0

    def background(self) -> np.ndarray:
        """Smooth greenish random texture: real scenes have texture, and motion estimation needs some."""
        from PIL import Image

        rng = np.random.default_rng(self.seed)
        noise = rng.integers(0, 90, (self.height // 8, self.width // 8, 3), dtype=np.uint8)
        smooth = np.asarray(Image.fromarray(noise).resize((self.width, self.height), Image.BICUBIC))
        return (smooth + np.array([70, 90, 60], np.uint8)).astype(np.uint8)

    def t(self, k: int) -> float:
        return k / max(self.frames - 1, 1)

    def frame(self, k: int) -> np.ndarray:
        img = self.background()
        for shape in self.shapes:
            img[shape.mask(self.t(k), self.height, self.width)] = shape.colour
        return img

    def masks(self, k: int) -> list[np.ndarray]:
        return [s.mask(self.t(k), self.height, self.width) for s in self.shapes]


def write_video(path: Path, scene: Scene | None = None) -> Path:
    scene = scene or Scene()
    codec, pix_fmt = CODECS[path.suffix.lower()]
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=scene.fps)
        stream.width, stream.height, stream.pix_fmt = scene.width, scene.height, pix_fmt
        if codec == "libx264":
            stream.options = {"crf": "12", "preset": "ultrafast"}
        for k in range(scene.frames):
            frame = av.VideoFrame.from_ndarray(scene.frame(k), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


AUDIO_CODECS = {".mp4": "aac", ".mov": "aac", ".mkv": "pcm_s16le", ".avi": "pcm_s16le"}


@dataclass
class Sound:
    """An audio track: ``samples`` (float32 in [-1, 1], shape (channels, n)) at ``rate`` Hz in ``layout``."""

    samples: np.ndarray
    rate: int = 16_000
    layout: str = "mono"

    @classmethod
    def tone(cls, seconds: float, rate: int = 16_000, layout: str = "mono", hz: float = 440.0,
             level: float = 0.3) -> Sound:
        t = np.arange(int(seconds * rate)) / rate
        channels = av.AudioLayout(layout).nb_channels
        wave = (level * np.sin(2 * np.pi * hz * t)).astype(np.float32)
        return cls(np.tile(wave, (channels, 1)), rate, layout)

    @classmethod
    def silence(cls, seconds: float, rate: int = 16_000, layout: str = "mono") -> Sound:
        channels = av.AudioLayout(layout).nb_channels
        return cls(np.zeros((channels, int(seconds * rate)), np.float32), rate, layout)


def write_video_with_sound(path: Path, sound: Sound, scene: Scene | None = None) -> Path:
    """A synthetic video (:func:`write_video`'s) with ``sound`` as its audio stream (AAC in mp4/mov, PCM in
    mkv/avi)."""
    scene = scene or Scene()
    codec, pix_fmt = CODECS[path.suffix.lower()]
    with av.open(str(path), mode="w") as container:
        video = container.add_stream(codec, rate=scene.fps)
        video.width, video.height, video.pix_fmt = scene.width, scene.height, pix_fmt
        audio = container.add_stream(AUDIO_CODECS[path.suffix.lower()], rate=sound.rate, layout=sound.layout)
        packets = []
        for k in range(scene.frames):
            packets += video.encode(av.VideoFrame.from_ndarray(scene.frame(k), format="rgb24"))
        packets += video.encode()
        step = 1024
        for start in range(0, sound.samples.shape[1], step):
            chunk = np.ascontiguousarray(sound.samples[:, start:start + step])
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=sound.layout)
            frame.sample_rate, frame.pts = sound.rate, start
            packets += audio.encode(frame)
        packets += audio.encode()
        for packet in packets:
            container.mux(packet)
    return path


def write_video_with_garbage_audio(path: Path, scene: Scene | None = None, seconds: float = 2.0) -> Path:
    """A synthetic mkv whose audio stream says AAC but whose packets are random bytes (its video is fine)."""
    scene = scene or Scene()
    rng = np.random.default_rng(0)
    with av.open(str(path), mode="w") as container:
        video = container.add_stream("ffv1", rate=scene.fps)
        video.width, video.height, video.pix_fmt = scene.width, scene.height, "yuv420p"
        audio = container.add_stream("aac", rate=16_000, layout="mono")
        for k in range(scene.frames):
            for packet in video.encode(av.VideoFrame.from_ndarray(scene.frame(k), format="rgb24")):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        for n in range(int(seconds * 16_000 / 1024)):
            packet = av.Packet(rng.integers(0, 256, 300, dtype=np.uint8).tobytes())
            packet.stream, packet.pts, packet.dts = audio, n * 1024, n * 1024
            packet.time_base = audio.time_base if audio.time_base else None
            container.mux(packet)
    return path


# Backgrounds of a multi-shot video: far apart in hue and brightness, so that every change between them is a cut.
SHOT_TINTS = ((200, 60, 40), (40, 160, 70), (50, 70, 200), (220, 200, 60), (120, 40, 160), (30, 30, 30))


def write_shots_video(path: Path, lengths: list[int], fps: int = 12, width: int = 320, height: int = 240) -> Path:
    """A video of hard cuts: shot ``k`` lasts ``lengths[k]`` frames, a tinted texture of its own with a square
    moving across it (motion inside a shot, which must not read as a cut). Returns ``path``."""
    codec, pix_fmt = CODECS[path.suffix.lower()]
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        if codec == "libx264":
            stream.options = {"crf": "18", "preset": "ultrafast"}
        for k, length in enumerate(lengths):
            tint = np.array(SHOT_TINTS[k % len(SHOT_TINTS)], np.int16)
            scene = Scene(shapes=[Shape("square", (240, 240, 240), (40, 60 + 10 * (k % 5)),
                                        (width - 40, height - 60), radius=18)],
                          width=width, height=height, frames=length, fps=fps, seed=k)
            base = scene.background().astype(np.int16) - np.array([70, 90, 60], np.int16)  # texture 0..90
            for i in range(length):
                img = np.clip(base // 2 + tint, 0, 255).astype(np.uint8)
                img[scene.shapes[0].mask(scene.t(i), height, width)] = scene.shapes[0].colour
                for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
