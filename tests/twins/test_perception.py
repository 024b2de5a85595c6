"""The twin's extra eyes: COCO detector seeds, on-screen text, word knowledge, and their place in the store,
the index, the ECR text, the LLM's view and ``twins show``. Real models where their packages are installed
(skipped cleanly otherwise); the bundled DAVIS clips for real photos."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import sqlite_utils
from typer.testing import CliRunner

from twinseek.config import load_settings
from twinseek.media.masks import keyframes, mask_iou, spread
from twinseek.media.shots import ShotSpan
from twinseek.twins.adapters.base import Category, Detection, ObjectDetector, TextReader, TrackedObject
from twinseek.twins.adapters.embedded.tracker import EmbeddedSegmenter
from twinseek.twins.migrations import store_migrations
from twinseek.twins.model import ScreenText, Track, Twin, Video
from twinseek.twins.perception import shot_runs
from twinseek.twins.store import TwinStore

SAMPLES = Path(__file__).resolve().parents[2] / "twinseek" / "data" / "samples"
runner = CliRunner()


def _frame(name: str, index: int = 10) -> np.ndarray:
    import av

    with av.open(str(SAMPLES / name)) as container:
        for k, frame in enumerate(container.decode(video=0)):
            if k == index:
                return frame.to_ndarray(format="rgb24")
    raise AssertionError("clip too short")


# -- the COCO detector ----------------------------------------------------------------------------------------
def _varint(n: int) -> bytes:
    out = b""
    while True:
        byte, n = n & 0x7F, n >> 7
        out += bytes([byte | (0x80 if n else 0)])
        if not n:
            return out


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def test_frozen_graph_constants_are_read_without_tensorflow() -> None:
    from twinseek.twins.adapters.embedded.coco import parse_text_graph, read_constants

    values = np.arange(6, dtype="<f4").reshape(2, 3)
    dims = _field(2, _varint(1 << 3) + _varint(2)) + _field(2, _varint(1 << 3) + _varint(3))  # TensorShapeProto
    tensor = _varint(1 << 3) + _varint(1) + _field(2, dims) + _field(4, values.tobytes())  # DT_FLOAT, shape, bytes
    scalar = _varint(1 << 3) + _varint(1) + _varint(5 << 3 | 5) + struct.pack("<f", 0.5)
    attr = lambda t: _field(5, _field(1, b"value") + _field(2, _field(8, t)))  # noqa: E731
    graph = (_field(1, _field(1, b"w") + _field(2, b"Const") + attr(tensor))
             + _field(1, _field(1, b"s") + _field(2, b"Const") + attr(scalar))
             + _field(1, _field(1, b"other") + _field(2, b"Const") + attr(scalar)))
    consts = read_constants(graph, {"w", "s"})
    assert set(consts) == {"w", "s"}
    np.testing.assert_array_equal(consts["w"], values)
    assert consts["s"].shape == () and float(consts["s"]) == 0.5
    nodes = parse_text_graph('node {\n name: "a"\n op: "Conv2D"\n input: "x"\n input: "w"\n'
                             ' attr { key: "strides" value { list { i: 1 i: 2 } } }\n}\nnode { name: "b" op: "Relu6" '
                             'input: "a" }\n')
    assert [n["name"] for n in nodes] == ["a", "b"] and nodes[0]["inputs"] == ["x", "w"]
    assert nodes[0]["attr"]["strides"] == [("list", [("i", "1"), ("i", "2")])]


@pytest.fixture(scope="module")
def coco():  # noqa: ANN201 - skip cleanly without the weights package
    from twinseek.errors import ModelUnavailableError
    from twinseek.twins.adapters.embedded.coco import EmbeddedObjectDetector, model_files

    try:
        model_files()
    except ModelUnavailableError as exc:
        pytest.skip(str(exc))
    return EmbeddedObjectDetector(threshold=0.5)


@pytest.mark.integration
def test_coco_detector_on_real_frames(coco) -> None:  # noqa: ANN001
    assert isinstance(coco, ObjectDetector) and coco.provenance().tier == "embedded"
    swan, cars, horse = coco.detect_batch([_frame("blackswan.mp4"), _frame("car-roundabout.mp4"),
                                           _frame("horsejump-high.mp4", 30)])
    assert swan[0].label == "bird" and swan[0].score > 0.9 and swan[0].mask is None
    x1, y1, x2, y2 = swan[0].box
    assert 0 <= x1 < x2 <= 854 and 0 <= y1 < y2 <= 480 and (x2 - x1) * (y2 - y1) > 0.1 * 854 * 480
    assert cars[0].label == "car" and cars[0].score > 0.9
    assert {"horse", "person"} <= {d.label for d in horse}
    import pickle

    clone = pickle.loads(pickle.dumps(coco))  # workers build their own copy; the loaded graph stays behind
    assert clone.coco._graph is None


@pytest.mark.integration
def test_coco_detector_runs_many_frames_in_small_passes(coco, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    from twinseek.twins.adapters.embedded import coco as module

    frames = [_frame("blackswan.mp4"), _frame("car-roundabout.mp4"), _frame("horsejump-high.mp4", 30)] * 3
    alone = [coco.detect_batch([f])[0] for f in frames[:3]]
    graph = coco.coco._load()
    sizes: list[int] = []
    forward = graph.forward
    monkeypatch.setattr(graph, "forward", lambda batch: (sizes.append(batch.shape[0]), forward(batch))[1])
    many = coco.detect_batch(frames)  # a long video's chunk: a keyframe per shot
    assert sizes == [module.FORWARD_BATCH] * 2 + [len(frames) - 2 * module.FORWARD_BATCH]
    for got, want in zip(many, alone * 3):
        assert [d.label for d in got] == [d.label for d in want]
        assert np.allclose([d.box for d in got], [d.box for d in want], atol=0.05)


@pytest.mark.integration
def test_classifier_refines_within_the_coco_category(coco) -> None:  # noqa: ANN001
    from twinseek.errors import ModelUnavailableError
    from twinseek.twins.adapters.base import BatchCategoriser, crop
    from twinseek.twins.adapters.embedded.classifier import EmbeddedDetector, checkpoint_path

    try:
        checkpoint_path()
    except ModelUnavailableError as exc:
        pytest.skip(str(exc))
    frame = _frame("car-roundabout.mp4")
    car = coco.detect_batch([frame])[0][0]
    detector = EmbeddedDetector()
    assert isinstance(detector, BatchCategoriser)
    hinted, plain, scene = detector.categorise_batch([[crop(frame, car.box)], [crop(frame, car.box)], [frame]],
                                                     hints=["car", None, None])
    assert hinted[0].group == "car" and hinted[0].label in {"sports car", "cab", "beach wagon", "convertible",
                                                             "minivan", "jeep", "limousine", "racer", "police van",
                                                             "Model T", "ambulance", "pickup", "moving van",
                                                             "go-kart", "golfcart"}
    assert [c.label for c in plain] == [c.label for c in detector.categorise([crop(frame, car.box)])]
    assert scene and all(c.group != "car" or c.label != "car" for c in scene)


def _decide(found: list[Category], hint: str | None, label_score: float = 0.9) -> tuple:
    from twinseek.twins.categories import _categorise

    class _Seg:
        model = "segmenter"

    class _Sp:
        segmenter = _Seg()

    obj = TrackedObject(1, label=hint, label_score=label_score, label_source="ssd")
    return _categorise(obj, found, _Sp(), hint, "ssd")  # type: ignore[arg-type]


def test_detector_category_decides_and_classifier_refines_it() -> None:
    cats = [Category("sports car", 0.3, "mnv2", "car"), Category("cab", 0.1, "mnv2", "car"),
            Category("cleaver", 0.2, "mnv2", None)]
    label, score, source, group, runners = _decide(cats, "car")
    assert (label, score, group) == ("sports car", 0.9, "car") and source == "ssd+mnv2"
    assert runners == [("cleaver", 0.2)]
    # a classifier guess within the category that is too weak leaves the detector's own word
    weak = [Category("sports car", 0.05, "mnv2", "car"), Category("cleaver", 0.2, "mnv2", None)]
    assert _decide(weak, "car")[:4] == ("car", 0.9, "ssd", None)
    # a category COCO lacks: the classifier, surer than the detector, wins (a camel is COCO's "horse")
    camel = [Category("sorrel", 0.02, "mnv2", "horse"), Category("Arabian camel", 0.85, "mnv2", "camel")]
    assert _decide(camel, "horse", label_score=0.7)[0] == "Arabian camel"
    # ... and an animal COCO lacks wins over a weaker one within COCO's animal even when COCO is sure
    camel = [Category("sorrel", 0.2, "mnv2", "horse"), Category("Arabian camel", 0.38, "mnv2", "camel"),
             Category("ox", 0.22, "mnv2", "cattle")]
    assert _decide(camel, "horse", label_score=0.88)[0] == "Arabian camel"
    # but context (an oxcart) does not rename a cow COCO is sure of
    cows = [Category("ox", 0.34, "mnv2", "cow"), Category("oxcart", 0.54, "mnv2", "cart")]
    assert _decide(cows, "cow", label_score=0.98)[:2] == ("ox", 0.98)


# -- detector seeds in the tracker ----------------------------------------------------------------------------
def _static_scene(n: int = 9) -> tuple[list[np.ndarray], np.ndarray]:
    """A still camera on a textured background with a static grey box (no motion at all)."""
    rng = np.random.default_rng(3)
    import cv2

    bg = cv2.resize(rng.integers(0, 80, (30, 40, 3), dtype=np.uint8), (320, 240), interpolation=cv2.INTER_CUBIC)
    frame = (bg + 60).astype(np.uint8)
    truth = np.zeros((240, 320), bool)
    truth[90:170, 120:220] = True
    frame[truth] = (200, 200, 205)
    return [frame.copy() for _ in range(n)], truth


def test_box_seeds_on_keyframes_track_a_static_object_through_every_frame() -> None:
    frames, truth = _static_scene()
    seg = EmbeddedSegmenter()
    assert not [t for t in seg.segment(frames, {}) if t.label == "suitcase"]
    box = Detection(box=(118.0, 88.0, 222.0, 172.0), score=0.8, label="suitcase", source="coco-test")
    tracks = seg.segment(frames, {0: [box], 4: [box], 8: [box]})
    labelled = [t for t in tracks if t.label == "suitcase"]
    assert len(labelled) == 1
    obj = labelled[0]
    assert sorted(obj.masks) == list(range(len(frames)))  # carried by flow between the keyframes
    assert obj.label_source == "coco-test" and obj.label_score == pytest.approx(0.8)
    assert np.mean([mask_iou(m, truth) for m in obj.masks.values()]) > 0.6


# -- on-screen text ---------------------------------------------------------------------------------------------
def _text_frame(text: str = "BREAKING NEWS 2024", size: tuple[int, int] = (640, 360)) -> np.ndarray:
    from PIL import Image, ImageDraw, ImageFont

    img = Image.new("RGB", size, (30, 60, 90))
    ImageDraw.Draw(img).text((40, size[1] // 2 - 30), text, fill=(255, 255, 255), font=ImageFont.load_default(48))
    return np.asarray(img)


@pytest.fixture(scope="module")
def reader():  # noqa: ANN201
    pytest.importorskip("rapidocr_onnxruntime")
    from twinseek.twins.adapters.embedded.ocr import EmbeddedTextReader

    return EmbeddedTextReader()


@pytest.mark.integration
def test_reader_reads_rendered_text_and_skips_blank_frames(reader) -> None:  # noqa: ANN001
    assert isinstance(reader, TextReader)
    frame = _text_frame()
    assert reader.has_text(frame)
    lines = reader.read(frame)
    assert lines and "BREAKING" in lines[0].text.replace(" ", "") and lines[0].score > 0.8
    x1, y1, x2, y2 = lines[0].box
    assert 20 < x1 < x2 < 640 and 120 < y1 < y2 < 240  # in the frame's own pixels
    assert not reader.has_text(np.full((360, 640, 3), 110, np.uint8))


def test_text_like_boxes_are_lines_or_text_sized() -> None:
    """The reader's gate: elongated boxes (either way round) and small ones are text; a large squarish box is not."""
    from twinseek.twins.adapters.embedded.ocr import text_like

    def box(x: float, y: float, w: float, h: float) -> np.ndarray:
        return np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]], np.float32)

    shape = (240, 320)
    assert text_like(box(10, 10, 200, 30), shape)  # a caption line
    assert text_like(box(10, 10, 20, 120), shape)  # vertical text
    assert text_like(box(10, 10, 30, 28), shape)  # one short word or a glyph, at text size
    assert not text_like(box(40, 20, 150, 130), shape)  # a textured blob a third of the frame high
    assert not text_like(box(40, 20, 83, 92), shape)


@pytest.mark.integration
def test_reader_gate_reads_small_and_large_captions_but_not_texture(reader) -> None:  # noqa: ANN001
    """The gate skips work only where no text is: a big one-word title, a caption on a 120x90 GIF-sized frame and
    a normal caption are all read; a frame of large smooth blobs is not."""
    import cv2

    title = _text_frame("SALE", (640, 360))
    assert reader.has_text(title) and any("SALE" in t.text for t in reader.read(title))
    gif = cv2.resize(_text_frame("GOAL 2:1"), (120, 90), interpolation=cv2.INTER_AREA)
    assert reader.has_text(gif) and reader.read(gif)
    blobs = np.full((360, 640, 3), 200, np.uint8)
    cv2.circle(blobs, (320, 180), 120, (20, 20, 20), -1)
    cv2.circle(blobs, (320, 180), 60, (240, 240, 240), -1)
    assert not reader.has_text(blobs)


@pytest.fixture(scope="module")
def text_twin(tmp_path_factory: pytest.TempPathFactory, reader):  # noqa: ANN001, ANN201
    """A synthetic clip with a caption burnt in, ingested by the real embedded pipeline."""
    import av

    from twinseek.twins.pipeline import Ingestor

    folder = tmp_path_factory.mktemp("text")
    path = folder / "news.mp4"
    frame = _text_frame("[red]OPEN 24 HOURS")
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=8)
        stream.width, stream.height, stream.pix_fmt = 640, 360, "yuv420p"
        for k in range(8):
            moved = np.roll(frame, 3 * k, axis=1)
            for packet in stream.encode(av.VideoFrame.from_ndarray(moved, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    store = TwinStore(folder / "store")
    Ingestor(store, load_settings(sampling={"frames": 6})).ingest(path)
    yield store, store.get_twin("news")
    store.close()


@pytest.mark.integration
def test_screen_text_is_stored_indexed_and_in_the_ecr(text_twin) -> None:  # noqa: ANN001
    from twinseek.twins.views import ComponentTexts, compact, scene_gist, template_ecr

    store, twin = text_twin
    texts = [t.text.replace(" ", "") for t in twin.video.screen_text]
    assert any("OPEN24HOURS" in t for t in texts), texts
    assert all(0 <= v <= 1 for t in twin.video.screen_text for v in t.bbox)
    assert store.get_video("news").screen_text == twin.video.screen_text  # round trip through SQLite
    rows = [r for r in ComponentTexts.rows(twin) if r["kind"] == "text"]
    assert rows and rows[0]["text"].startswith('on-screen text "') and "HOURS" in rows[0]["text"]
    assert "On-screen text:" in template_ecr(twin) and "On-screen text:" in scene_gist(twin)
    assert "text" in compact(twin)
    roles = {p.role: p for p in twin.video.specialists}
    assert roles["text reader"].tier == "embedded" and "ocr" in roles["text reader"].model.lower()
    assert roles["object detector"].model.startswith("ssd_mobilenet_v2_coco")
    assert roles["word knowledge"].tier == "embedded"


@pytest.mark.integration
def test_twins_show_prints_screen_text_escaped(text_twin) -> None:  # noqa: ANN001
    from twinseek.cli import app

    store, _ = text_twin
    shown = runner.invoke(app, ["twins", "show", "news", "--store", str(store.root)], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    assert "on-screen text:" in shown.output and "[red]" in shown.output  # markup printed, not interpreted


# -- word knowledge ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def knowledge():  # noqa: ANN201
    from twinseek.twins.knowledge import WordKnowledge, data_dir

    if data_dir() is None:
        pytest.skip("timm (WordNet glosses) is not installed")
    return WordKnowledge()


def test_glosses_resolve_imagenet_and_coco_names(knowledge) -> None:  # noqa: ANN001
    dog = knowledge.gloss("dog")
    assert dog and "wolf" in dog and dog.startswith("dog (domestic dog")
    assert "Australian swan" in knowledge.gloss("black swan", "bird")
    assert "computer" in knowledge.gloss("mouse") or "cursor" in knowledge.gloss("mouse")
    assert "hawk" in knowledge.lookup("kite", "bird").definition  # ImageNet's kite is a bird ...
    assert knowledge.lookup("kite") is None  # ... COCO's (a toy) has no synset in the data
    assert knowledge.gloss("no such thing") is None


def test_glosses_reach_components_and_the_llm_view(knowledge) -> None:  # noqa: ANN001
    from twinseek.twins.views import ComponentTexts, compact

    video = Video(video_id="v", path="/v.mp4", content_hash="h", width=64, height=48, fps=10, frame_count=10,
                  duration_s=1, sampled_frames=[0, 9], profile="embedded")
    tracks = [Track(video_id="v", track_id=i, category=c, category_score=0.9, category_source="t", first_frame=0,
                    last_frame=9, frame_count=2, mean_area=0.1, category_group=g)
              for i, c, g in ((1, "English setter", "dog"), (2, "dog", None), (3, "zzz", None))]
    twin = Twin(video=video, tracks=tracks)
    gloss = [r for r in ComponentTexts.rows(twin) if r["kind"] == "gloss"]
    assert [(r["track_id"], r["text"].split(":")[0]) for r in gloss] == [(1, "English setter"),
                                                                         (1, "dog (domestic dog, Canis familiaris)")]
    know = compact(twin)["know"]
    assert "wolf" in know["dog"] and "English setter" in know and "zzz" not in know


# -- the store ------------------------------------------------------------------------------------------------
def test_old_store_opens_with_empty_screen_text(tmp_path: Path) -> None:
    db = sqlite_utils.Database(tmp_path / "twins.db")
    store_migrations.apply(db, stop_before="m004_perception")  # a store written before it existed
    db.table("videos").insert({"video_id": "old", "path": "/old.mp4", "content_hash": "h", "width": 8, "height": 8,
                               "fps": 1.0, "frame_count": 1, "duration_s": 1.0, "sampled_frames": "[0]",
                               "profile": "embedded", "specialists": "[]", "scene": "[]", "mask_dir": "masks/old/x",
                               "ingested_at": "2026-01-01"})
    db.close()
    with TwinStore(tmp_path) as store:
        assert "screen_text" in store.db.table("videos").columns_dict
        assert store.get_twin("old").video.screen_text == []
        names = [r["name"] for r in store.db.query("select name from _sqlite_migrations")]
        assert "m004_perception" in names
        video = Video(video_id="new", path="/n.mp4", content_hash="n", width=8, height=8, fps=1, frame_count=1,
                      duration_s=1, sampled_frames=[0], profile="embedded",
                      screen_text=[ScreenText(frame_index=0, text="EXIT", score=0.9, bbox=(0.1, 0.1, 0.3, 0.2))])
        store.put_twin(Twin(video=video), store.new_mask_dir("new"))
        assert store.get_video("new").screen_text[0].text == "EXIT"


def test_box_labels_a_blob_hints_a_labelled_mask_and_adds_nothing_over_a_covered_one() -> None:
    from twinseek.twins.adapters.embedded.proposals import Proposal, attach_boxes

    def square(x: int, y: int, side: int) -> np.ndarray:
        m = np.zeros((100, 100), bool)
        m[y:y + side, x:x + side] = True
        return m

    blob = Proposal(mask=square(10, 10, 20), score=0.2)
    person = Proposal(mask=square(50, 50, 30), score=0.9, label="person")
    props = [blob, person]
    boxes = [Proposal(mask=square(11, 11, 20), score=0.8, label="cup", source="coco"),
             Proposal(mask=square(51, 50, 30), score=0.95, label="horse", source="coco"),
             Proposal(mask=square(55, 55, 10), score=0.7, label="dog", source="coco"),  # inside the person mask
             Proposal(mask=square(0, 70, 10), score=0.6, label="bench", source="coco")]  # over empty ground
    carried = attach_boxes(props, boxes)
    assert blob.label == "cup" and blob.label_score == 0.8 and blob.label_source == "coco"
    assert person.label == "person" and (person.hint, person.hint_score) == ("horse", 0.95)
    assert [p.label for p in props] == ["cup", "person", "bench"] and len(carried) == 4


def test_same_padding_matches_tensorflow_layout() -> None:
    """The COCO graph's SAME padding (extra pixel bottom/right) equals F.pad and keeps channels-last."""
    import torch
    import torch.nn.functional as F

    from twinseek.twins.adapters.embedded.coco import _same_pad

    x = torch.randn(2, 5, 9, 12).contiguous(memory_format=torch.channels_last)
    got = _same_pad(x, 3, 2)  # 9 -> out 5 -> total pad 2 (1, 1); 12 -> out 6 -> total 1 (0, 1)
    assert torch.equal(got, F.pad(x, [0, 1, 1, 1]))
    assert got.is_contiguous(memory_format=torch.channels_last)
    assert _same_pad(x, 1, 1) is x


def test_shot_runs_group_the_sampled_frames_by_shot_and_keyframes_reach_every_shot() -> None:
    indices = [2, 10, 20, 30, 31, 50]
    shots = [ShotSpan(0, 0, 15, [2, 10]), ShotSpan(1, 16, 25, [20]), ShotSpan(2, 26, 40, [30, 31]),
             ShotSpan(3, 41, 45, []), ShotSpan(4, 46, 60, [50])]
    runs = shot_runs(indices, shots)
    assert runs == [range(0, 2), range(2, 3), range(3, 5), range(5, 6)]  # a shot with no sampled frame has no run
    assert shot_runs(indices, []) == [range(6)]
    assert keyframes([range(40)], 4) == spread(40, 4)  # one shot: the keyframes of old
    picked = keyframes(runs, 1)
    assert all(set(picked) & set(r) for r in runs) and len(picked) == len(runs)
