"""Paper-tier adapters on tiny random-weight models: real loading, pre- and post-processing, offline.

Random weights give meaningless values, so these tests check plumbing (shapes, dtypes, ranges, label sets,
track identity, errors), not predictions.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from twinseek import weights as _weights
from twinseek.errors import ConfigError, ModelUnavailableError
from twinseek.twins.adapters.base import (
    AttributeDescriber,
    DepthEstimator,
    Detection,
    Detector,
    SegmenterTracker,
)
from twinseek.twins.adapters.paper._common import (
    WeightsSpec,
    box_iou,
    load_pretrained,
    model_dtype,
    resolve_device,
)
from twinseek.twins.adapters.paper.depth_anything import DepthAnythingEstimator, normalise_depth
from twinseek.twins.adapters.paper.owlv2 import Owlv2Detector
from twinseek.twins.adapters.paper.qwen_vl import QwenVLDescriber, clean_answer
from twinseek.twins.adapters.paper.sam2 import (
    Sam2HFSegmenter,
    Sam2PackageSegmenter,
    SeedPrompt,
    link_seeds,
    merge_tracks,
)

from support import tiny_models

pytestmark = pytest.mark.filterwarnings("ignore:cannot import name '_C'", "ignore::FutureWarning")

VOCAB = ["dog", "person", "bicycle"]
H, W = 96, 128


def random_frames(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (H, W, 3), dtype=np.uint8) for _ in range(n)]


# ---- session-scoped tiny models (built once, loaded through each adapter's real path) ----


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tiny-models")


@pytest.fixture(scope="session")
def owlv2(models_dir: Path, device: str) -> Owlv2Detector:
    return Owlv2Detector(str(tiny_models.build_tiny_owlv2(models_dir / "owlv2")), device=device, threshold=0.0)


@pytest.fixture(scope="session")
def sam2_package(models_dir: Path, device: str) -> Sam2PackageSegmenter:
    pytest.importorskip("sam2")
    checkpoint = tiny_models.build_tiny_sam2_checkpoint(models_dir / "sam2")
    return Sam2PackageSegmenter(
        tiny_models.SAM2_TINY_CONFIG, str(checkpoint), device=device, overrides=tiny_models.SAM2_TINY_OVERRIDES
    )


@pytest.fixture(scope="session")
def sam2_hf(models_dir: Path, device: str) -> Sam2HFSegmenter:
    pytest.importorskip("torchvision")  # transformers' SAM-2 processors need it
    return Sam2HFSegmenter(str(tiny_models.build_tiny_sam2_hf(models_dir / "sam2-hf")), device=device)


@pytest.fixture(scope="session", params=["sam2_package", "sam2_hf"])
def segmenter(request: pytest.FixtureRequest) -> Sam2PackageSegmenter | Sam2HFSegmenter:
    return request.getfixturevalue(request.param)


# ---- device, dtype, missing weights ----


def test_device_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(_weights, "_mps_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    assert resolve_device(" CPU ") == "cpu"
    with pytest.raises(ConfigError, match="CUDA is not available"):
        resolve_device("cuda:0")
    with pytest.raises(ConfigError, match="unknown device"):
        resolve_device("tpu")
    monkeypatch.setattr(_weights, "_mps_available", lambda: True)
    assert resolve_device("auto") == "mps"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda"
    assert model_dtype("cpu") == torch.float32


HUB_ADAPTERS = [
    (Owlv2Detector, "TWINSEEK_PAPER__OWLV2"),
    (DepthAnythingEstimator, "TWINSEEK_PAPER__DEPTH_ANYTHING"),
    (QwenVLDescriber, "TWINSEEK_PAPER__QWEN_VL"),
    (Sam2HFSegmenter, "TWINSEEK_PAPER__SAM2_HF"),
]


@pytest.mark.parametrize(("adapter", "env_var"), HUB_ADAPTERS)
@pytest.mark.parametrize("source", ["/nonexistent/twinseek-weights", "twinseek-test/not-in-any-cache"])
def test_missing_weights_name_the_setting(adapter: type, env_var: str, source: str) -> None:
    with pytest.raises(ModelUnavailableError) as info:
        adapter(source, device="cpu")
    message = str(info.value)
    assert env_var in message and adapter.spec.name in message and "download" in message


def test_incomplete_weights_are_unavailable(tmp_path: Path) -> None:
    from transformers import AutoConfig, Owlv2ForObjectDetection

    with pytest.raises(ModelUnavailableError, match="no config.json"):
        Owlv2Detector(str(tmp_path), device="cpu")
    spec = WeightsSpec("Thing", "thing", "org/thing")
    with pytest.raises(ModelUnavailableError, match="TWINSEEK_PAPER__THING"):
        load_pretrained(AutoConfig, "twinseek-test/not-in-any-cache", spec)
    with pytest.raises(ModelUnavailableError, match="TWINSEEK_PAPER__THING"):
        load_pretrained(Owlv2ForObjectDetection, str(tmp_path), spec)  # no weights file


@pytest.mark.parametrize("checkpoint", [None, "/nonexistent/sam2.1_hiera_large.pt"])
def test_sam2_package_missing_checkpoint(checkpoint: str | None) -> None:
    with pytest.raises(ModelUnavailableError, match="TWINSEEK_PAPER__SAM2_CHECKPOINT"):
        Sam2PackageSegmenter("configs/sam2.1/sam2.1_hiera_l.yaml", checkpoint, device="cpu")


def test_sam2_package_bad_config(sam2_package: Sam2PackageSegmenter) -> None:
    for config, overrides in [
        ("configs/nope.yaml", []),
        (tiny_models.SAM2_TINY_CONFIG, []),
    ]:  # 2nd: shape mismatch
        segmenter = Sam2PackageSegmenter(
            config, str(sam2_package.checkpoint), device="cpu", overrides=overrides
        )
        with pytest.raises(ConfigError, match="cannot build SAM-2"):
            segmenter.load()


def test_ultralytics_missing_is_a_config_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from twinseek.twins.adapters.paper.ultralytics_yolo import UltralyticsDetector

    monkeypatch.setitem(sys.modules, "ultralytics", None)  # import fails even where it is installed
    with pytest.raises(ConfigError, match=r"AGPL.*twinseek\[ultralytics\]") as info:
        UltralyticsDetector(str(tmp_path / "yolo11n.pt"))
    assert info.type is ConfigError


class _YoloResult:
    """One box per class, as an ultralytics result holds them."""

    def __init__(self, classes: list[str]) -> None:
        n = len(classes)
        self.names = dict(enumerate(classes))
        self.boxes = types.SimpleNamespace(xyxy=torch.tensor([[1.0, 1.0, 9.0, 9.0]] * n),
                                           conf=torch.full((n,), 0.5), cls=torch.arange(n))
        self.masks = self.probs = None


class _ClosedYolo:
    def __init__(self) -> None:
        self.classes = ["person", "dog"]

    def predict(self, image: np.ndarray, **_: Any) -> list[_YoloResult]:
        return [_YoloResult(self.classes)]


class _WorldYolo(_ClosedYolo):
    def set_classes(self, classes: list[str]) -> None:
        self.classes = list(classes)


def _fake_yolo(path: str) -> _ClosedYolo:
    """ultralytics' ``YOLO(path)``: a "-world" .pt loads as YOLO-World (which has ``set_classes``), any other as a
    closed-set model."""
    return _WorldYolo() if "-world" in Path(path).stem else _ClosedYolo()


@pytest.mark.parametrize(("weights", "takes_labels"), [("yolov8s-world.pt", True), ("yolo11n-seg.pt", False)])
def test_ultralytics_open_vocabulary_says_whether_it_takes_labels(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                                 weights: str, takes_labels: bool) -> None:
    from twinseek.twins.adapters.paper.ultralytics_yolo import UltralyticsDetector

    monkeypatch.setitem(sys.modules, "ultralytics", types.SimpleNamespace(YOLO=_fake_yolo))
    (tmp_path / weights).write_bytes(b"")
    detector = UltralyticsDetector(str(tmp_path / weights), device="cpu")
    assert isinstance(detector, Detector) and detector.tier == "paper"
    assert detector.open_vocabulary is takes_labels and detector.every_frame is False
    frame = random_frames(1)[0]
    labels = {c.label for c in detector.categorise([frame], ["kite", "swan"])}
    assert labels == ({"kite", "swan"} if takes_labels else {"person", "dog"})
    assert {d.label for d in detector.detect(frame, ["kite"])} == ({"kite"} if takes_labels else {"person", "dog"})


# ---- OWLv2 ----


def test_owlv2_detect(owlv2: Owlv2Detector) -> None:
    assert isinstance(owlv2, Detector) and owlv2.provenance().tier == "paper"
    detections = owlv2.detect(random_frames(1)[0], VOCAB)
    assert detections and len(detections) <= owlv2.max_detections
    for det in detections:
        x1, y1, x2, y2 = det.box
        assert 0 <= x1 < x2 <= W and 0 <= y1 < y2 <= H
        assert 0.0 <= det.score <= 1.0 and det.label in VOCAB
    tiny_models.assert_placed(owlv2._net, owlv2.device, model_dtype(owlv2.device))
    boxes = np.array([d.box for d in detections])
    for i in range(len(boxes)):  # class-agnostic NMS: no two kept boxes overlap much
        assert (box_iou(boxes[i], np.delete(boxes, i, axis=0)) < owlv2.nms_iou).all()


def test_owlv2_categorise(owlv2: Owlv2Detector) -> None:
    frame = random_frames(1, seed=1)[0]
    categories = owlv2.categorise([frame[10:60, 20:90], frame[:30, :20], frame], VOCAB)
    assert sorted(c.label for c in categories) == sorted(VOCAB)
    scores = [c.score for c in categories]
    assert scores == sorted(scores, reverse=True) and all(0.0 <= s <= 1.0 for s in scores)
    assert owlv2.categorise([], VOCAB) == []
    assert {c.label for c in owlv2.categorise([frame], None)} == set(owlv2.vocabulary)


def test_owlv2_takes_labels(owlv2: Owlv2Detector) -> None:
    """Its capabilities say what it does: any labels given are the labels it names; it seeds on keyframes."""
    assert owlv2.open_vocabulary is True and owlv2.every_frame is False
    frame = random_frames(1, seed=2)[0]
    novel = ["kite", "black swan"]
    assert {c.label for c in owlv2.categorise([frame], novel)} == set(novel)
    assert {d.label for d in owlv2.detect(frame, novel)} <= set(novel)


# ---- Depth Anything ----


def test_depth_anything(models_dir: Path, device: str) -> None:
    path = tiny_models.build_tiny_depth_anything(models_dir / "depth")
    estimator = DepthAnythingEstimator(str(path), device=device)
    assert isinstance(estimator, DepthEstimator)
    for frame in (random_frames(1)[0], random_frames(1)[0][:, :50]):
        depth = estimator.estimate(frame)
        assert depth.shape == frame.shape[:2] and depth.dtype == np.float32
        assert np.isfinite(depth).all() and depth.min() >= 0.0 and depth.max() <= 1.0
    tiny_models.assert_placed(estimator._net, device, model_dtype(device))


def test_normalise_depth() -> None:
    flat = normalise_depth(np.full((4, 5), 3.0), inverse=True)
    assert flat.dtype == np.float32 and not flat.any()
    assert not np.isnan(normalise_depth(np.full((2, 2), np.nan), inverse=True)).any()
    inverse = np.array([[0.0, 2.0, 4.0]])  # inverse depth: the largest value is the nearest
    assert normalise_depth(inverse, inverse=True).tolist() == [[1.0, 0.5, 0.0]]
    assert normalise_depth(inverse, inverse=False).tolist() == [[0.0, 0.5, 1.0]]


# ---- Qwen-VL ----


def test_qwen_vl_describer(models_dir: Path, device: str) -> None:
    pytest.importorskip("torchvision")  # Qwen2-VL's video processor needs it
    path = tiny_models.build_tiny_qwen2vl(models_dir / "qwen2vl")
    describer = QwenVLDescriber(str(path), device=device, max_new_tokens=8, max_chars=40)
    assert isinstance(describer, AttributeDescriber)
    frame = random_frames(1)[0]
    mask = np.zeros((H, W), bool)
    mask[20:60, 30:50] = True
    text = describer.describe(frame, mask, "dog")
    assert isinstance(text, str) and text and len(text) <= 40 and "\n" not in text
    tiny_models.assert_placed(describer._net, device, model_dtype(device))
    tiny = np.zeros((H, W), bool)
    tiny[5:8, 5:9] = True  # smaller than a Qwen patch: the crop is upscaled
    assert isinstance(describer.describe(frame, tiny, "dog"), str)
    assert describer.describe(frame, np.zeros((H, W), bool), "dog") == ""


def test_clean_answer() -> None:
    assert clean_answer('  The object is "bright red,\n glossy metal".  ', 80) == "bright red, glossy metal"
    long = "dark brown shaggy fur with a white patch on the chest"
    assert clean_answer(long, 20) == "dark brown shaggy"
    assert clean_answer("\ufffd\x00 ", 20) == ""


# ---- SAM-2 prompting plan ----


def test_link_seeds() -> None:
    box, other = (10.0, 10.0, 50.0, 60.0), (70.0, 10.0, 120.0, 40.0)
    seeds = {
        0: [
            Detection(box, 0.6, "dog"),
            Detection((12.0, 11.0, 50.0, 60.0), 0.3, "cat"),
        ],  # same-frame duplicate
        4: [Detection(box, 0.9, "cat"), Detection(other, 0.5, "person")],  # same object again + a new one
        99: [Detection(other, 0.9, "person")],  # beyond the sampled frames
    }
    prompts = link_seeds(seeds, n_frames=8, frame_shape=(H, W))
    assert [(p.obj_id, sorted(p.boxes), p.label) for p in prompts] == [(1, [0, 4], "cat"), (2, [4], "person")]
    assert prompts[0].score == pytest.approx(0.9)


def test_merge_tracks_folds_moved_duplicates() -> None:
    def square(x: int) -> np.ndarray:
        mask = np.zeros((H, W), bool)
        mask[10:40, x : x + 30] = True
        return mask

    first = SeedPrompt(1, {0: (0.0, 10.0, 30.0, 40.0)}, "dog", 0.4)
    moved = SeedPrompt(2, {3: (60.0, 10.0, 90.0, 40.0)}, "cat", 0.7)  # track 1's mask is there by frame 3
    vanished = SeedPrompt(3, {3: (0.0, 60.0, 20.0, 90.0)}, "ball", 0.9)  # never got a non-empty mask
    masks = {1: {0: square(0), 3: square(60)}, 2: {3: square(60), 5: square(70)}}
    tracks = merge_tracks([first, moved, vanished], masks, source="test")
    assert len(tracks) == 1
    assert tracks[0].track_id == 1 and sorted(tracks[0].masks) == [0, 3, 5]
    assert (tracks[0].label, tracks[0].label_score) == ("cat", 0.7)


# ---- SAM-2 back ends ----


def test_segmenter_tracks(segmenter: Sam2PackageSegmenter | Sam2HFSegmenter) -> None:
    assert isinstance(segmenter, SegmenterTracker) and segmenter.provenance().role == "segmenter"
    frames = random_frames(6)
    seeds = {
        0: [Detection((10.0, 10.0, 60.0, 70.0), 0.8, "dog")],
        3: [
            Detection((10.0, 10.0, 60.0, 70.0), 0.6, "cat"),
            Detection((80.0, 5.0, 120.0, 40.0), 0.5, "person"),
        ],
    }
    tracks = segmenter.segment(frames, seeds)
    assert 1 <= len(tracks) <= 2  # the static dog is one object; the person may merge under random weights
    assert len({t.track_id for t in tracks}) == len(tracks)
    assert tracks[0].label == "dog" and tracks[0].label_score == pytest.approx(0.8)
    for track in tracks:
        assert track.masks and set(track.masks) <= set(range(len(frames)))
        for mask in track.masks.values():
            assert mask.shape == (H, W) and mask.dtype == bool and mask.any()
    if isinstance(segmenter, Sam2HFSegmenter):
        tiny_models.assert_placed(segmenter._net, segmenter.device, model_dtype(segmenter.device))
    else:  # the sam2 package keeps float32 weights and runs under autocast on CUDA
        tiny_models.assert_placed(segmenter._predictor, segmenter.device, torch.float32)


def test_segmenter_deduplicates_same_box(segmenter: Sam2PackageSegmenter | Sam2HFSegmenter) -> None:
    box = (30.0, 20.0, 90.0, 80.0)
    seeds = {1: [Detection(box, 0.5, "dog")], 4: [Detection(box, 0.7, "dog")]}
    tracks = segmenter.segment(random_frames(6, seed=2), seeds)
    assert len(tracks) == 1 and tracks[0].label_score == pytest.approx(0.7)
    assert 0 in tracks[0].masks  # the reverse pass covers frames before the first keyframe
    assert segmenter.segment(random_frames(3), {}) == []
