"""Embedded adapters: segmenter/tracker on synthetic clips with known ground truth, describer colours,
the real MobileNetV2 weights and mediapipe person masks (the last skip cleanly without their inputs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from twinseek.media.masks import mask_iou
from twinseek.twins.adapters.base import AttributeDescriber, Detection, Detector, SegmenterTracker
from twinseek.twins.adapters.embedded.describer import EmbeddedDescriber
from twinseek.twins.adapters.embedded.proposals import Proposal
from twinseek.twins.adapters.embedded.tracker import EmbeddedSegmenter, MultiObjectTracker

H, W = 240, 320
PARKOUR = Path("/work/shared/data/dev-bench/videos/parkour.mp4")
SAMPLES = sorted((Path(__file__).resolve().parents[2] / "twinseek" / "data" / "samples").glob("*.mp4"))


def _texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth random texture (so optical flow has something to lock on to)."""
    import cv2

    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 255, (h // 8, w // 8, 3), dtype=np.uint8)
    return cv2.resize(noise, (w, h), interpolation=cv2.INTER_CUBIC) // 2 + 60


def _clip(n: int = 8, pan: int = 0) -> tuple[list[np.ndarray], list[list[np.ndarray]]]:
    """A red square moving right and a blue disc moving down on a texture; ``pan`` px/frame camera pan."""
    bg = _texture(H, W + pan * n + 8)
    frames, gts = [], []
    yy, xx = np.mgrid[0:H, 0:W]
    for k in range(n):
        frame = bg[:, pan * k : pan * k + W].copy()
        sq = (xx >= 40 + 12 * k) & (xx < 90 + 12 * k) & (yy >= 60) & (yy < 110)
        disc = (xx - 230) ** 2 + (yy - 50 - 10 * k) ** 2 < 28**2
        frame[sq] = (220, 30, 30)
        frame[disc] = (30, 60, 220)
        frames.append(frame)
        gts.append([sq, disc])
    return frames, gts


def _check_two_tracks(frames: list[np.ndarray], gts: list[list[np.ndarray]]) -> None:
    tracks = EmbeddedSegmenter().segment(frames, {})
    assert 2 <= len(tracks) <= 4
    assert len({t.track_id for t in tracks}) == len(tracks)
    for obj in range(2):
        # the track that best covers this object in the middle frame must follow it everywhere
        mid = len(frames) // 2
        best = max(tracks, key=lambda t: mask_iou(t.masks[mid], gts[mid][obj]) if mid in t.masks else 0)
        ious = [mask_iou(best.masks[p], gts[p][obj]) if p in best.masks else 0.0 for p in range(len(frames))]
        assert np.mean(ious) > 0.7, (obj, ious)


def test_segmenter_tracks_two_moving_shapes() -> None:
    frames, gts = _clip()
    _check_two_tracks(frames, gts)


@pytest.mark.xfail(
    reason="known weakness: a flat-coloured square under a camera pan loses its motion blob after a few "
    "frames (DIS flow inside untextured regions follows the background); the disc is tracked fine",
    strict=False,
)
def test_segmenter_compensates_camera_pan() -> None:
    frames, gts = _clip(pan=6)
    _check_two_tracks(frames, gts)


def test_segmenter_keeps_seed_label_and_static_scene_is_quiet() -> None:
    bg = _texture(H, W, seed=3)
    frames = [bg.copy() for _ in range(6)]
    person = np.zeros((H, W), bool)
    person[80:200, 140:180] = True
    seeds = {p: [Detection(box=(140, 80, 180, 200), score=0.9, label="person", mask=person, source="test")]
             for p in range(6)}
    tracks = EmbeddedSegmenter().segment(frames, seeds)
    assert len(tracks) == 1
    assert tracks[0].label == "person" and sorted(tracks[0].masks) == list(range(6))
    assert mask_iou(tracks[0].masks[3], person) > 0.95


def _box_mask(x: int, y: int, s: int = 30) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[max(0, y) : y + s, max(0, x) : x + s] = True
    return m


def test_tracker_crossing_birth_and_death() -> None:
    # A moves right, B moves left on a nearby row band and they pass each other; C is born at frame 4
    # and lives to the end; a one-frame flicker must be dropped as a short track.
    per_frame = []
    for k in range(10):
        props = [Proposal(_box_mask(20 + 25 * k, 60), 1.0), Proposal(_box_mask(270 - 25 * k, 110), 1.0)]
        if k >= 4:
            props.append(Proposal(_box_mask(150, 180), 1.0))
        if k == 2:
            props.append(Proposal(_box_mask(10, 200, 12), 0.2))
        per_frame.append(props)
    tracks = MultiObjectTracker().run(per_frame)
    assert len(tracks) == 3
    a_b = [t for t in tracks if min(t.proposals) == 0]
    born = [t for t in tracks if min(t.proposals) == 4]
    assert len(a_b) == 2 and len(born) == 1
    for t in a_b:
        xs = [np.nonzero(t.proposals[p].mask)[1].mean() for p in sorted(t.proposals)]
        steps = np.diff(xs)
        assert np.all(steps > 0) or np.all(steps < 0), xs  # no identity swap at the crossing
        assert len(t.proposals) == 10
    assert sorted(born[0].proposals) == list(range(4, 10))


def test_tracker_fills_short_occlusion_and_ends_lost_tracks() -> None:
    per_frame = []
    for k in range(10):
        props = []
        if k not in (4, 5):  # occluded for two frames
            props.append(Proposal(_box_mask(20 + 20 * k, 100), 1.0))
        if k < 5:  # leaves for good after frame 4
            props.append(Proposal(_box_mask(250, 20), 1.0))
        per_frame.append(props)
    tracks = MultiObjectTracker().run(per_frame)
    assert len(tracks) == 2
    mover = max(tracks, key=lambda t: len(t.masks))
    assert sorted(mover.masks) == list(range(10))  # gap filled by the motion model
    assert mover.masks[4][110, 20 + 20 * 4 + 15]  # predicted roughly where it should be
    leaver = min(tracks, key=lambda t: len(t.masks))
    assert max(leaver.masks) == 4  # no trailing coasted masks after death


@pytest.mark.parametrize(
    ("rgb", "word"),
    [((220, 30, 30), "red"), ((30, 60, 220), "blue"), ((40, 180, 40), "green"), ((240, 220, 30), "yellow"),
     ((250, 140, 20), "orange"), ((10, 10, 10), "black"), ((245, 245, 245), "white"), ((128, 128, 128), "grey"),
     ((130, 40, 170), "purple"), ((250, 170, 200), "pink"), ((110, 70, 30), "brown")],
)
def test_describer_names_colours(rgb: tuple[int, int, int], word: str) -> None:
    frame = np.zeros((100, 100, 3), np.uint8)
    mask = np.zeros((100, 100), bool)
    mask[10:20, 10:20] = True
    frame[mask] = rgb
    assert EmbeddedDescriber().describe(frame, mask, "thing") == f"{word}, small"


def test_describer_two_colours_and_size() -> None:
    frame = np.zeros((100, 100, 3), np.uint8)
    frame[:, 50:] = 250
    mask = np.ones((100, 100), bool)
    text = EmbeddedDescriber().describe(frame, mask, "zebra")
    assert text in {"black and white, large", "white and black, large"}
    assert isinstance(EmbeddedDescriber(), AttributeDescriber)


def test_protocols() -> None:
    from twinseek.twins.adapters.embedded.classifier import EmbeddedDetector

    assert isinstance(EmbeddedSegmenter(), SegmenterTracker)
    assert isinstance(EmbeddedDetector(), Detector)
    assert EmbeddedDetector().provenance().tier == "embedded"


@pytest.fixture(scope="module")
def detector():  # noqa: ANN201 - skip cleanly if the weights package is missing
    from twinseek.errors import ModelUnavailableError
    from twinseek.twins.adapters.embedded.classifier import EmbeddedDetector, checkpoint_path

    try:
        checkpoint_path()
    except ModelUnavailableError as exc:
        pytest.skip(str(exc))
    return EmbeddedDetector()


def _frame(path: Path, index: int = 30) -> np.ndarray:
    av = pytest.importorskip("av")
    with av.open(str(path)) as container:
        for k, frame in enumerate(container.decode(video=0)):
            if k == index:
                return frame.to_ndarray(format="rgb24")
    raise AssertionError("clip too short")


@pytest.mark.integration
def test_classifier_real_weights(detector) -> None:  # noqa: ANN001
    import torch

    clf = detector.classifier
    torch.manual_seed(0)
    x = torch.randn(1, 3, 224, 224)
    a, b = clf.logits(x), clf.logits(x)
    assert a.shape == (1, 1000) and torch.equal(a, b)
    image = np.random.default_rng(0).integers(0, 255, (120, 200, 3), dtype=np.uint8)
    cats = detector.categorise([image, image[::-1]])
    assert len(cats) == 3 and cats[0].score >= cats[1].score >= cats[2].score
    assert 0 < sum(c.score for c in cats) <= 1.0 + 1e-6
    assert clf.names[100] == "black swan" and clf.groups[100] == "bird"
    if SAMPLES:
        assert detector.categorise([_frame(SAMPLES[0], 0)])[0].score > 0.05


@pytest.mark.integration
def test_categorise_real_photo_and_person_mask(detector) -> None:  # noqa: ANN001
    if not PARKOUR.exists():
        pytest.skip(f"{PARKOUR} not available")
    frame = _frame(PARKOUR)
    people = detector.detect(frame)
    assert people and people[0].label == "person" and people[0].mask is not None
    frac = people[0].mask.mean()
    assert 0.005 < frac < 0.3
    swan = PARKOUR.with_name("blackswan.mp4")
    if swan.exists():
        cats = detector.categorise([_frame(swan, 10)])
        assert cats[0].label == "black swan" and cats[0].group == "bird"


@pytest.mark.integration
def test_the_embedded_detector_is_closed_set_and_runs_on_every_frame(detector) -> None:  # noqa: ANN001
    """Its capabilities say what it does: a vocabulary changes none of its labels (ImageNet classes, people)."""
    assert detector.open_vocabulary is False and detector.every_frame is True
    image = np.random.default_rng(1).integers(0, 255, (120, 200, 3), dtype=np.uint8)
    assert detector.categorise([image], ["kite", "swan"]) == detector.categorise([image])
    assert detector.categorise_batch([[image]], ["kite"]) == detector.categorise_batch([[image]])
    if PARKOUR.exists():
        frame = _frame(PARKOUR)
        assert [d.label for d in detector.detect(frame, ["kite"])] == [d.label for d in detector.detect(frame)]


def test_folded_classifier_matches_the_network_it_was_folded_from() -> None:
    """Batch norms folded into the convolutions (and channels-last weights) give the same logits as the plain
    network, with running statistics that are not the identity (random weights: no package needed)."""
    import copy

    import torch

    from twinseek.twins.adapters.embedded.classifier import MobileNetV2, fold_batch_norms

    torch.manual_seed(0)
    plain = MobileNetV2(num_classes=10)
    for m in plain.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    plain.eval()
    folded = fold_batch_norms(copy.deepcopy(plain)).to(memory_format=torch.channels_last)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    x = torch.randn(3, 3, 96, 96)
    with torch.inference_mode():
        want, got = plain(x), folded(x.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(want, got, atol=1e-4, rtol=1e-4)


def test_camera_residual_equals_the_uncached_computation() -> None:
    """The per-size grids (sample points, pixel coordinates, quadratic basis) are cached and the vector lengths
    computed without ``np.linalg.norm``: the residual must stay bit-identical to computing everything afresh."""
    import cv2

    from twinseek.twins.adapters.embedded import proposals as P

    rng = np.random.default_rng(3)
    for h, w in [(180, 320), (90, 120), (180, 320)]:
        flow = cv2.GaussianBlur(rng.normal(0, 2, (h, w, 2)).astype(np.float32), (0, 0), 5)
        flow[20:60, 30:90] += 4.0  # an object moving against the camera
        ys, xs = np.mgrid[P.GRID_STEP // 2 : h : P.GRID_STEP, P.GRID_STEP // 2 : w : P.GRID_STEP]
        src = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float32)
        samples = flow[ys.ravel(), xs.ravel()]
        hom, _ = cv2.findHomography(src, src + samples, cv2.RANSAC, P.RANSAC_PX, maxIters=500)
        gy, gx = np.mgrid[0:h, 0:w].astype(np.float32)
        pts = np.stack([gx, gy], axis=-1)
        cam = cv2.perspectiveTransform(pts.reshape(-1, 1, 2), hom).reshape(h, w, 2) - pts
        quad = P._quadratic_flow(src, samples, P._quad_basis(gx, gy, max(h, w)))
        want = np.minimum(np.linalg.norm(flow - cam, axis=2), np.linalg.norm(flow - quad, axis=2))
        assert np.array_equal(P.FlowField.camera_residual(flow), want)
    grid = P.pixel_grid(90, 120)
    assert grid.shape == (90, 120, 2) and not grid.flags.writeable
    assert grid[5, 7].tolist() == [7.0, 5.0]


def test_grabcut_refinement_of_a_large_region_at_reduced_scale(monkeypatch: pytest.MonkeyPatch) -> None:
    """A big object's region is cut at a smaller scale (``REFINE_GRABCUT_PIXELS``): the refined mask still snaps a
    blobby motion mask to the object's edges, as the full-scale cut does, and a small region is cut as before."""
    import cv2

    from twinseek.twins.adapters.embedded import proposals as P

    frame = _texture(180, 320, seed=5)
    truth = np.zeros((180, 320), np.uint8)
    cv2.ellipse(truth, ((160, 90), (190, 120), 0), 1, -1)
    frame[truth > 0] = (200, 40, 40)
    blob = cv2.dilate(truth, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (15, 15))) > 0  # flow smears outwards
    reduced = P.refine_grabcut(frame, blob)
    monkeypatch.setattr(P, "REFINE_GRABCUT_PIXELS", 10**9)
    full = P.refine_grabcut(frame, blob)
    assert blob.sum() > 1.2 * truth.sum()  # the region is over the cap: the reduced path ran
    assert mask_iou(reduced, truth > 0) > 0.9 and mask_iou(full, truth > 0) > 0.9
    assert mask_iou(reduced, full) > 0.9
    small_truth = np.zeros_like(truth)
    cv2.circle(small_truth, (60, 50), 20, 1, -1)
    small_frame = frame.copy()
    small_frame[small_truth > 0] = (30, 30, 220)
    small_blob = cv2.dilate(small_truth, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (9, 9))) > 0
    monkeypatch.setattr(P, "REFINE_GRABCUT_PIXELS", 24000)
    cv2.setRNGSeed(0)
    a = P.refine_grabcut(small_frame, small_blob)
    monkeypatch.setattr(P, "REFINE_GRABCUT_PIXELS", 10**9)
    cv2.setRNGSeed(0)
    assert np.array_equal(a, P.refine_grabcut(small_frame, small_blob))  # under the cap: unchanged
