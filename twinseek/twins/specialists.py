"""Build the specialist adapters a profile asks for. Adapter modules are imported lazily so that a
profile never imports (or needs installed) another profile's heavy dependencies."""

from __future__ import annotations

from dataclasses import dataclass

from twinseek.config import Settings
from twinseek.errors import ConfigError
from twinseek.twins.adapters.base import (
    AttributeDescriber,
    DepthEstimator,
    Detector,
    ObjectDetector,
    PoseEstimator,
    SegmenterTracker,
    SpeechRecogniser,
    TextReader,
)
from twinseek.twins.knowledge import SOURCE as KNOWLEDGE_SOURCE
from twinseek.twins.knowledge import word_knowledge
from twinseek.twins.model import Provenance


@dataclass
class Specialists:
    detector: Detector
    segmenter: SegmenterTracker
    describer: AttributeDescriber
    depth: DepthEstimator | None = None
    objects: ObjectDetector | None = None  # COCO boxes seeding the segmenter (embedded profile)
    reader: TextReader | None = None  # on-screen text
    speech: SpeechRecogniser | None = None  # what is said (None: speech off)
    pose: PoseEstimator | None = None  # keypoints of person tracks (twinseek.twins.actions)

    def provenance(self) -> list[Provenance]:
        parts = [self.detector, self.objects, self.segmenter, self.describer, self.depth, self.reader, self.speech,
                 self.pose]
        record = [p.provenance() for p in parts if p is not None]
        if word_knowledge().available:
            record.append(Provenance(role="word knowledge", tier="embedded", model=KNOWLEDGE_SOURCE))
        return record


def build_specialists(settings: Settings) -> Specialists:
    choice = settings.specialists
    return Specialists(
        detector=_detector(choice.detector, settings),
        segmenter=_segmenter(choice.segmenter, settings),
        describer=_describer(choice.describer, settings),
        depth=_depth(choice.depth, settings),
        objects=_objects(settings),
        reader=_reader(settings),
        speech=_speech(choice.speech, settings),
        pose=_pose(choice.pose),
    )


def _pose(name: str | None) -> PoseEstimator | None:
    if name in (None, "none"):
        return None
    if name == "embedded":
        from twinseek.twins.adapters.embedded.pose import EmbeddedPoseEstimator

        return EmbeddedPoseEstimator()
    raise ConfigError(f"unknown pose estimator {name!r}")


def _speech(name: str | None, s: Settings) -> SpeechRecogniser | None:
    """'embedded' (Whisper base), 'none', or the folder of any faster-whisper model (the paper tier's choice)."""
    if name in (None, "none"):
        return None
    from twinseek.twins.adapters.embedded.whisper import WhisperRecogniser

    return WhisperRecogniser(name, s.cache_dir)


def _objects(s: Settings) -> ObjectDetector | None:
    # the paper profile's OWLv2 already detects open-vocabulary boxes
    if not s.perception.coco_detector or s.specialists.detector != "embedded":
        return None
    from twinseek.twins.adapters.embedded.coco import EmbeddedObjectDetector

    return EmbeddedObjectDetector(threshold=s.perception.detector_threshold)


def _reader(s: Settings) -> TextReader | None:
    if not s.perception.ocr:
        return None
    from twinseek.twins.adapters.embedded.ocr import EmbeddedTextReader

    return EmbeddedTextReader(min_score=s.perception.ocr_min_score)


def _detector(name: str | None, s: Settings) -> Detector:
    if name == "embedded":
        from twinseek.twins.adapters.embedded.classifier import EmbeddedDetector

        return EmbeddedDetector()
    if name == "owlv2":
        from twinseek.twins.adapters.paper.owlv2 import Owlv2Detector

        return Owlv2Detector(s.paper.owlv2, device=s.paper.device, threshold=s.paper.detection_threshold,
                             vocabulary=s.paper.vocabulary)
    if name == "ultralytics":
        from twinseek.twins.adapters.paper.ultralytics_yolo import UltralyticsDetector

        return UltralyticsDetector(s.paper.ultralytics_weights)
    raise ConfigError(f"unknown detector {name!r}")


def _segmenter(name: str | None, s: Settings) -> SegmenterTracker:
    if name == "embedded":
        from twinseek.twins.adapters.embedded.tracker import EmbeddedSegmenter

        return EmbeddedSegmenter()
    if name == "sam2":
        from twinseek.twins.adapters.paper.sam2 import Sam2PackageSegmenter

        if not s.paper.sam2_checkpoint:
            raise ConfigError("the sam2 segmenter needs a checkpoint: set TWINSEEK_PAPER__SAM2_CHECKPOINT="
                              "/path/to/sam2.1_hiera_large.pt (or use TWINSEEK_SPECIALISTS__SEGMENTER=sam2-hf)")
        return Sam2PackageSegmenter(s.paper.sam2_config, s.paper.sam2_checkpoint, device=s.paper.device,
                                    overrides=s.paper.sam2_overrides)
    if name == "sam2-hf":
        from twinseek.twins.adapters.paper.sam2 import Sam2HFSegmenter

        return Sam2HFSegmenter(s.paper.sam2_hf, device=s.paper.device)
    raise ConfigError(f"unknown segmenter {name!r}")


def _describer(name: str | None, s: Settings) -> AttributeDescriber:
    if name == "embedded":
        from twinseek.twins.adapters.embedded.describer import EmbeddedDescriber

        return EmbeddedDescriber()
    if name == "qwen-vl":
        from twinseek.twins.adapters.paper.qwen_vl import QwenVLDescriber

        return QwenVLDescriber(s.paper.qwen_vl, device=s.paper.device)
    raise ConfigError(f"unknown describer {name!r}")


def _depth(name: str | None, s: Settings) -> DepthEstimator | None:
    if name in (None, "none"):
        return None
    if name == "depth-anything":
        from twinseek.twins.adapters.paper.depth_anything import DepthAnythingEstimator

        return DepthAnythingEstimator(s.paper.depth_anything, device=s.paper.device)
    raise ConfigError(f"unknown depth estimator {name!r}")
