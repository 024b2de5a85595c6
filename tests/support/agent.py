"""The agent's test scaffolding: a small store (the synthetic shapes clip and two animal twins), fake specialists,
and the scripted stub answering by content (which schema is asked for, which video's twin is in the prompt), so
the replies do not depend on the order in which candidates reach the LLM."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from twinseek.agent import Agent, Resources
from twinseek.config import load_settings
from twinseek.retrieval.dense import EcrTextEmbedder
from twinseek.retrieval.encoders import ComponentEncoders
from twinseek.twins.adapters.base import Category, SpecialistBase
from twinseek.twins.masks import mask_geometry
from twinseek.twins.model import Instance, Track, Twin, Video
from twinseek.twins.relations import compute_relations
from twinseek.twins.specialists import Specialists
from twinseek.twins.store import TwinStore

from support.llm_stub import completion
from support.retrieval import KeywordEncoder
from support.store import make_twin
from support.synthetic import Scene, write_video

KEYWORDS = ["square", "disc", "red", "blue", "dog", "cat", "ball", "moving", "right", "left"]
FRAMES = (0, 8, 16, 23)
QUERY = "a red square"
DECOMPOSITION = {"rewritten": "a red square", "subqueries": [
    {"text": "a square", "type": "object", "negated": False}, {"text": "red", "type": "attribute", "negated": False}]}


# -- the store --------------------------------------------------------------------------------------------------
def shapes_twin(video_id: str, path: Path, scene: Scene) -> tuple[Twin, dict[tuple[int, int], np.ndarray]]:
    """The synthetic clip's twin: track 1 the square, track 2 the disc, no attribute text (colour unknown)."""
    instances, masks, tracks = [], {}, []
    for tid, (shape, cat) in enumerate(zip(scene.shapes, ("square", "disc")), start=1):
        for f in FRAMES:
            mask = shape.mask(scene.t(f), scene.height, scene.width)
            bbox, centroid, area = mask_geometry(mask)  # type: ignore[misc]
            instances.append(Instance(video_id=video_id, track_id=tid, frame_index=f, category=cat,
                                      category_score=0.8, mask_path="", bbox=bbox, centroid=centroid, area=area))
            masks[(tid, f)] = mask
        tracks.append(Track(video_id=video_id, track_id=tid, category=cat, category_score=0.8, category_source="t",
                            first_frame=FRAMES[0], last_frame=FRAMES[-1], frame_count=len(FRAMES), mean_area=0.03,
                            speed=0.5, direction="right" if tid == 1 else "left"))
    video = Video(video_id=video_id, path=str(path), content_hash=f"hash-{video_id}", width=scene.width,
                  height=scene.height, fps=scene.fps, frame_count=scene.frames, duration_s=2.0,
                  sampled_frames=list(FRAMES), profile="embedded")
    return Twin(video=video, tracks=tracks, instances=instances, relations=compute_relations(instances, FRAMES)), masks


def animal_twin(video_id: str, category: str) -> tuple[Twin, dict[tuple[int, int], np.ndarray]]:
    twin, masks = make_twin(video_id)
    twin.tracks[0].category = twin.tracks[0].category_group = category
    for inst in twin.instances:
        inst.category = category
    return twin, masks


def put_twin(store: TwinStore, twin: Twin, masks: dict[tuple[int, int], np.ndarray]) -> None:
    mask_dir = store.new_mask_dir(twin.video.video_id)
    for inst in twin.instances:
        inst.mask_path = store.write_mask(mask_dir, inst.track_id, inst.frame_index, masks[(inst.track_id,
                                                                                            inst.frame_index)])
    store.put_twin(twin, mask_dir)


@pytest.fixture(scope="session")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_video(tmp_path_factory.mktemp("clips") / "shapes.mp4", Scene())


def build_store(root: Path, clip: Path) -> Path:
    with TwinStore(root) as store:
        put_twin(store, *shapes_twin("shapes", clip, Scene()))
        put_twin(store, *animal_twin("dogs", "dog"))
        put_twin(store, *animal_twin("cats", "cat"))
    return root


# -- fake specialists -------------------------------------------------------------------------------------------
class FakeDescriber(SpecialistBase):
    role, tier, model = "describer", "embedded", "fake-describer"

    def __init__(self) -> None:
        self.calls: list[tuple[tuple[int, ...], str]] = []

    def describe(self, frame: np.ndarray, mask: np.ndarray, category: str) -> str:
        assert frame.shape[:2] == mask.shape and mask.any()
        self.calls.append((frame.shape, category))
        r, g, b = frame[mask].mean(axis=0)
        return "bright red" if r > 150 and g < 100 else "dull"


class FakeDetector(SpecialistBase):
    role, tier, model = "detector", "embedded", "fake-detector"
    open_vocabulary, every_frame = False, True  # a closed set, like the embedded classifier

    def detect(self, frame: np.ndarray, vocabulary: Any = None) -> list[Any]:
        return []

    def categorise(self, crops: Any, vocabulary: Any = None) -> list[Category]:
        return [Category("kite", 0.6, "fake", "toy"), Category("box", 0.3, "fake", None)]


def fake_specialists() -> Specialists:
    return Specialists(detector=FakeDetector(), segmenter=None, describer=FakeDescriber())  # type: ignore[arg-type]


# -- the stub, answering by content -----------------------------------------------------------------------------
Responder = Callable[[str, str, str], Any]  # (schema name, video id or "", last user message) -> reply


class Routed(list):  # type: ignore[type-arg]
    """A ``stub.script`` that picks each reply from the request just received."""

    def __init__(self, stub: Any, respond: Responder) -> None:
        super().__init__([None])  # never empty: the stub pops from it
        self.stub, self.respond = stub, respond

    def pop(self, index: Any = -1) -> Any:
        body = self.stub.requests[-1]
        schema = (body.get("response_format") or {}).get("json_schema", {}).get("name", "")
        user = body["messages"][-1]["content"]
        found = [v for v in ("shapes", "dogs", "cats") if f'"video":"{v}"' in user]
        return self.respond(schema, found[0] if found else "", user)


def reply(obj: Any) -> dict[str, Any]:
    return completion(json.dumps(obj))


def verdict(relevance: float, objects: list[int] = (), missing: list[str] = (), why: str = "ok") -> dict[str, Any]:
    return reply({"reasoning": why, "missing": list(missing), "objects": list(objects), "relevance": relevance})


def plan(*calls: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    return reply({"calls": [{"action": a, "args": args} for a, args in calls]})


def responder(shapes: Callable[[str], dict[str, Any]], plan_reply: Any = None, decomposition: Any = None,
              others: float = 0.2) -> Responder:
    def respond(schema: str, video: str, user: str) -> Any:
        if schema in ("Decomposition", "_Reply"):
            return decomposition or reply(DECOMPOSITION)
        if schema == "Plan":
            return plan_reply or plan()
        if schema == "Verdict":
            return shapes(user) if video == "shapes" else verdict(others, [1], why=f"not a square: {video}")
        return completion("")
    return respond


def open_agent(root: Path, clip: Path, stub: Any, **settings: Any) -> Agent:
    """An agent over a fresh test store: keyword encoders, fake specialists, the stub as its LLM."""
    build_store(root, clip)
    resources = Resources.open(root, load_settings(store=root, **settings), llm=stub.client(n_parallel=2, max_retries=0),
                               specialists=fake_specialists(), encoders=ComponentEncoders(KeywordEncoder(KEYWORDS)),
                               dense_embedder=EcrTextEmbedder(KeywordEncoder(KEYWORDS)))
    return Agent(resources)


def route(stub: Any, respond: Responder) -> None:
    stub.script = Routed(stub, respond)
