"""Coarse actions: the rules on synthetic keypoint trajectories, the pose adapter on a real frame with a rider, the
stored labels (round trip, a track without a person keeps none) and the texts that say them only when sure."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from twinseek.config import load_settings
from twinseek.twins import actions as act
from twinseek.twins.model import Instance, Track, Twin
from twinseek.twins.store import TwinStore
from twinseek.twins.views import ComponentTexts, compact_json, describe, scene_gist, template_ecr
from twinseek.twins.words import ACTION_SURE

from support.store import make_twin, put

SAMPLE = Path(__file__).resolve().parents[2] / "twinseek" / "data" / "samples" / "horsejump-high.mp4"
FPS = 24.0
STEP = 6  # source frames between sampled frames: 0.25 s


def body(hip: tuple[float, float], legs: tuple[tuple[float, float], tuple[float, float]], torso: float = 100.0,
         tilt: float = 0.0) -> np.ndarray:
    """A side-view stick figure in BlazePose's 33-keypoint layout, every point visible. ``legs``: per leg the thigh's
    angle from hanging straight down (degrees, forwards positive) and the knee's bend (0 = straight)."""
    k = np.zeros((33, 3), dtype=np.float32)
    k[:, 2] = 1.0
    hx, hy = hip
    sx, sy = hx + torso * math.sin(math.radians(tilt)), hy - torso * math.cos(math.radians(tilt))
    k[[act.L_SHOULDER, act.R_SHOULDER], :2] = (sx, sy)
    k[act.NOSE, :2] = (sx, sy - 0.4 * torso)
    k[[act.L_HIP, act.R_HIP], :2] = (hx, hy)
    for (thigh, bend), knee, ankle in zip(legs, (act.L_KNEE, act.R_KNEE), (act.L_ANKLE, act.R_ANKLE)):
        kx, ky = hx + 0.9 * torso * math.sin(math.radians(thigh)), hy + 0.9 * torso * math.cos(math.radians(thigh))
        k[knee, :2] = (kx, ky)
        k[ankle, :2] = (kx + 0.9 * torso * math.sin(math.radians(thigh - bend)),
                        ky + 0.9 * torso * math.cos(math.radians(thigh - bend)))
    return k


def trajectory(speed: float = 0.0, swing: float = 0.0, bend: tuple[float, float] = (0.0, 0.0), tilt: float = 0.0,
               hop: float = 0.0, thigh: float = 0.0, frames: int = 16) -> dict[int, np.ndarray]:
    """Poses on ``frames`` sampled frames: moving ``speed`` torso lengths a second, the legs alternating with
    amplitude ``swing`` (a stride a second), the knees bending between ``bend``, a jump of ``hop`` torso lengths
    in the middle frames."""
    out = {}
    for i in range(frames):
        t = i * STEP / FPS
        phase = math.sin(2 * math.pi * t + 0.7)
        lift = hop * 100.0 if frames // 2 - 1 <= i <= frames // 2 else 0.0
        knee = bend[0] + (bend[1] - bend[0]) * abs(phase)
        out[i * STEP] = body((200.0 + speed * 100.0 * t, 400.0 - lift),
                             ((thigh + swing * phase, knee), (thigh - swing * phase, knee)), tilt=tilt)
    return out


def labels(poses: dict[int, np.ndarray], **kwargs: object) -> dict[str, float]:
    return dict(act.track_actions(poses, FPS, **kwargs))  # type: ignore[arg-type]


def test_standing_walking_running_sitting_and_jumping_are_told_apart() -> None:
    standing = labels(trajectory(bend=(3, 5)))
    walking = labels(trajectory(speed=1.5, swing=25, bend=(5, 25)))
    running = labels(trajectory(speed=5.0, swing=40, bend=(70, 110), tilt=12))
    sitting = labels(trajectory(thigh=90, bend=(90, 90)))
    jumping = labels(trajectory(bend=(3, 5), hop=1.2))
    assert max(standing, key=standing.get) == "standing" and standing["standing"] > ACTION_SURE  # type: ignore[arg-type]
    assert set(walking) == {"walking"} and walking["walking"] > ACTION_SURE
    assert set(running) == {"running"} and running["running"] > ACTION_SURE
    assert set(sitting) == {"sitting"} and sitting["sitting"] > ACTION_SURE
    assert jumping["jumping"] == 1.0 and "jumping" not in standing


def test_a_crouch_that_stands_up_is_no_jump_and_few_poses_say_nothing() -> None:
    crouch = trajectory(bend=(3, 5))
    for frame in list(crouch)[:8]:  # hips low, feet where they were: bent knees, then up
        crouch[frame] = body((200.0, 460.0), ((40, 80), (40, 80)))
    assert "jumping" not in labels(crouch)
    assert act.track_actions(dict(list(trajectory().items())[:2]), FPS) == []
    hidden = {f: k * np.float32([1, 1, 0]) for f, k in trajectory().items()}
    assert act.track_actions(hidden, FPS) == []  # no keypoint visible: no label


def test_riding_needs_the_person_on_a_ridden_thing_and_silences_the_gait() -> None:
    frames = [i * STEP for i in range(16)]
    bike = {f: (0.40, 0.50, 0.60, 0.90) for f in frames}
    rider = {f: (0.43, 0.30, 0.57, 0.80) for f in frames}
    behind = {f: (0.42, 0.20, 0.58, 0.95) for f in frames}  # a person behind it, feet below its wheels
    pedalling = trajectory(speed=4.0, swing=40, bend=(70, 110))
    assert act.riding_score(rider, [bike]) > ACTION_SURE
    assert act.riding_score(behind, [bike]) == 0.0 and act.riding_score(rider, []) == 0.0
    on_bike = labels(pedalling, person=rider, ridden=[bike])
    assert "riding" in on_bike and "running" not in on_bike
    assert act.is_ridden("mountain bike") and act.is_ridden("sorrel", "horse") and not act.is_ridden("person")


@pytest.fixture(scope="module")
def rider_frame() -> np.ndarray:
    pytest.importorskip("mediapipe")
    from twinseek.media.decode import iter_frames

    [(_, frame)] = list(iter_frames(SAMPLE, 640, {0}))
    return frame


def test_the_pose_adapter_finds_the_rider_on_a_real_frame(rider_frame: np.ndarray) -> None:
    from twinseek.twins.adapters.embedded.pose import EmbeddedPoseEstimator

    pose = EmbeddedPoseEstimator()
    points = pose.keypoints(rider_frame, (140.0, 75.0, 200.0, 200.0))  # the rider on the horse, first frame
    assert points is not None and points.shape == (33, 3)
    nose, shoulder, hip = points[act.NOSE], points[[act.L_SHOULDER, act.R_SHOULDER]].mean(0), \
        points[[act.L_HIP, act.R_HIP]].mean(0)
    assert min(nose[2], shoulder[2], hip[2]) > 0.5
    assert nose[1] < shoulder[1] < hip[1]  # upright: head above shoulders above hips, in frame pixels
    assert 150 < nose[0] < 195 and 75 < nose[1] < 110 and 140 < hip[1] < 185
    assert pose.keypoints(rider_frame, (0.0, 0.0, 128.0, 72.0)) is None  # sky and trees: no body
    assert pose.keypoints(rider_frame, (10.0, 10.0, 30.0, 30.0)) is None  # too small to tell


def test_the_pose_setting_switches_the_step_off() -> None:
    from twinseek.twins.specialists import _pose

    assert load_settings().specialists.pose == "embedded"
    assert load_settings(specialists={"pose": "none"}).specialists.pose == "none" and _pose("none") is None


class Pose:
    """Gives one fixed standing pose wherever it is asked, and records where (no model: the calls are checked)."""

    role, tier, model = "pose", "embedded", "fixed"

    def __init__(self) -> None:
        self.asked: list[tuple[float, float, float, float]] = []

    def provenance(self) -> object:
        raise NotImplementedError

    def keypoints(self, frame: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
        self.asked.append(box)
        return body((box[0] + 20, box[1] + 60), ((0, 3), (0, 3)), torso=40.0)


def test_only_person_tracks_are_posed_and_labelled(tmp_path: Path) -> None:
    twin, masks = make_twin()
    for t in twin.tracks:
        assert not t.actions
    person = Track(video_id="clip", track_id=9, category="person", category_score=0.9, category_source="m",
                   first_frame=0, last_frame=10, frame_count=3, mean_area=0.1)
    twin.tracks.append(person)
    twin.instances += [Instance(video_id="clip", track_id=9, frame_index=f, category="person", category_score=0.9,
                                mask_path="", bbox=(0.2, 0.1, 0.5, 0.9), centroid=(0.35, 0.5), area=0.1)
                       for f in (0, 5, 10)]
    frames = [np.zeros((100, 200, 3), np.uint8) for _ in range(3)]
    pose = Pose()
    act.add_actions(twin.tracks, twin.instances, frames, [0, 5, 10], 10.0, pose)  # type: ignore[arg-type]
    assert pose.asked == [(40.0, 10.0, 100.0, 90.0)] * 3  # the person's box in frame pixels, once a frame
    assert [t.actions for t in twin.tracks[:-1]] == [[] for _ in twin.tracks[:-1]]
    assert [label for label, _ in person.actions] == ["standing"]
    with TwinStore(tmp_path) as store:
        put(store, twin, masks)
        stored = store.get_twin("clip")
    assert stored.tracks[-1].actions == person.actions and all(not t.actions for t in stored.tracks[:-1])


def with_person() -> Twin:
    """``make_twin``'s dog and a person beside it (no actions: as every twin was before them)."""
    twin, _ = make_twin()
    twin.tracks.append(Track(video_id="clip", track_id=2, category="person", category_score=0.9,
                             category_source="mediapipe-pose", first_frame=0, last_frame=10, frame_count=3,
                             mean_area=0.2, speed=0.05, direction="in place"))
    twin.instances += [Instance(video_id="clip", track_id=2, frame_index=f, category="person", category_score=0.9,
                                mask_path="", bbox=(0.6, 0.1, 0.9, 0.9), centroid=(0.75, 0.5), area=0.2)
                       for f in (0, 5, 10)]
    return twin


def texts(twin: Twin) -> tuple[list[str], str, str, str]:
    return [r["text"] for r in ComponentTexts.rows(twin)], template_ecr(twin), describe(twin), compact_json(twin)


def test_texts_without_actions_are_todays_byte_for_byte() -> None:
    # written by main's views (928989d) before actions existed, on this very twin
    assert texts(with_person()) == GOLDEN


def test_texts_say_an_action_only_when_sure() -> None:
    twin = with_person()
    person = twin.tracks[1]
    person.actions = [("running", ACTION_SURE - 0.01), ("jumping", 0.2)]
    assert texts(twin) == GOLDEN
    person.actions = [("running", 0.9), ("jumping", ACTION_SURE), ("standing", 0.1)]
    rows, ecr, line, view = texts(twin)
    assert "person, running and jumping;" in rows[1] and rows[0] == GOLDEN[0][0]
    assert "person, running and jumping, " in ecr and "person running and jumping" in line
    assert json.loads(view)["o"][1]["act"] == ["running", "jumping"] and "act" not in json.loads(view)["o"][0]
    assert "Objects: person, dog." in scene_gist(twin)  # the gist (dense retrieval's text) names no action


GOLDEN: tuple[list[str], str, str, str] = (
    [
        'dog, brown; top left, medium, moving right',
        'person; right, large, moving in place',
        'dog moving right',
        'dog (domestic dog, Canis familiaris): a member of the genus Canis (probably descended from the commo'
        'n wolf) that has been domesticated by man since prehistoric times; occurs in many breeds',
        'person (individual, someone, somebody, mortal): a human being',
    ],
    'A person, moving in place, mostly at right of the frame. A dog, brown, moving right, mostly at top l'
    'eft of the frame.',
    'objects: person, dog (animal)',
    '{"video":"clip","secs":1.2,"desc":"objects: person, dog (animal)","o":[{"id":1,"cat":"dog","attr":"b'
    'rown","mv":"moving right","f":[[0,0.16,0.31,0.033,null],[5,0.31,0.31,0.033,null],[10,0.47,0.31,0.033'
    ',null]]},{"id":2,"cat":"person","attr":"","mv":"moving in place","f":[[0,0.75,0.5,0.2,null],[5,0.75,'
    '0.5,0.2,null],[10,0.75,0.5,0.2,null]]}],"r":[[1,"moving right",null,0,10]],"know":{"dog":"dog (domes'
    'tic dog, Canis familiaris): a member of the genus Canis (probably descended from the common wolf) th'
    'at has been domesticated by man since prehistoric times; occurs in many breeds","person":"person (in'
    'dividual, someone, somebody, mortal): a human being"}}',
)
