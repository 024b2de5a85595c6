"""The twin's vocabulary: how a track's category, its motion, its place in the frame and its size are put into words.

Every renderer of a twin reads its words from here (:mod:`twinseek.twins.views`: the compact view an LLM reads,
the component texts the encoders embed, the template ECR text and the one-line description; the evidence lines of
:mod:`twinseek.agent.judge`), so one track is described one way everywhere. :data:`VERSION` names these rules:
texts and index vectors made under another version are rebuilt (it feeds the index fingerprints).

Names a person uses: an ImageNet leaf ("English setter", "Arabian camel", "beach wagon") is said by its basic-level
name ("dog", "camel", "car"; Rosch et al. 1976) from ``imagenet_words.tsv`` (WordNet 3.0 hypernyms, see its
notice), and the leaf itself only where it is *distinctive* (its own common name: "black swan", "goldfish", "school
bus") and the classifier is sure of it. Labels of other models (COCO, OWLv2, "person") are kept as they are.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from twinseek.twins.adapters.embedded.imagenet import imagenet_classes, imagenet_words
from twinseek.twins.model import Track

VERSION = "words-1"

UNSURE_SCORE = 0.15  # a classifier's category below this is a guess: texts say so, descriptions leave it out

# Coarse groups that name animals (imagenet_groups.txt, plus COCO's animals): "camel (animal)" tells a reader what
# kind of thing a group name equal to the object's name is; ingest reads it to let a classifier's animal rename
# COCO's nearest animal.
ANIMAL_GROUPS = frozenset({
    "dog", "bird", "insect", "fish", "snake", "lizard", "monkey", "spider", "crab", "sea creature", "butterfly",
    "amphibian", "frog", "turtle", "elephant", "camel", "cat", "wolf", "rodent", "crocodile", "big cat", "fox",
    "pig", "zebra", "bear", "dinosaur", "animal", "goat", "seal", "rabbit", "horse", "hippopotamus", "cattle",
    "whale", "hyena", "panda", "antelope", "sheep", "cow", "giraffe"})


# -- one track --------------------------------------------------------------------------------------------------
def category_phrase(track: Track) -> str:
    """The category with its coarse group: ``"black swan (bird)"``, ``"sports car (car)"``, never ``"dog (dog)"``."""
    group = track.category_group
    if not group or group.lower() == track.category.lower():
        return track.category
    return f"{track.category} ({group})"


def prose_name(track: Track) -> str:
    """The category as prose says it (the ECR text): ``"black swan (a bird)"``, ``"puck (a sports gear)"``; the group
    only where its word is not already in the name; a guess said as one."""
    if is_unsure(track):
        return f"object (unclear, perhaps a {track.category})"
    group = track.category_group
    if group and group.lower() not in track.category.lower():
        return f"{track.category} (a {group})"
    return track.category


def is_unsure(track: Track) -> bool:
    """A category that is a guess (a classifier's top score below :data:`UNSURE_SCORE`)."""
    return track.category_score < UNSURE_SCORE


def _third(value: float, low: str, mid: str, high: str) -> str:
    return low if value < 1 / 3 else high if value > 2 / 3 else mid


def position_words(x: float, y: float) -> str:
    """Coarse image position: "top left", "centre", "bottom right", "left", ..."""
    horizontal = _third(x, "left", "centre", "right")
    vertical = _third(y, "top", "middle", "bottom")
    if horizontal == "centre" and vertical == "middle":
        return "centre"
    return f"{vertical} {horizontal}".replace("middle ", "").replace(" centre", "")


def size_word(area: float) -> str:
    """Object size from its mean area (fraction of the frame)."""
    return "tiny" if area < 0.005 else "small" if area < 0.03 else "medium" if area < 0.15 else "large"


def depth_word(depth: float | None) -> str | None:
    if depth is None:
        return None
    return "near" if depth < 1 / 3 else "far" if depth > 2 / 3 else None


def motion_words(track: Track) -> str:
    """``"stationary"``, ``"moving in place"``, ``"moving slowly right"``, ``"moving quickly left"``."""
    if track.direction == "stationary":
        return "stationary"
    if track.direction == "in place":
        return "moving in place"
    pace = "quickly " if track.speed > 0.5 else "slowly " if track.speed < 0.1 else ""
    return f"moving {pace}{track.direction}"


ACTION_SURE = 0.65  # an action (twinseek.twins.actions) enters the texts from this confidence (benchmarks/actions.py)


def action_words(track: Track) -> list[str]:
    """The track's actions confident enough to be said (``["running", "jumping"]``); none for most tracks."""
    return [label for label, confidence in track.actions if confidence >= ACTION_SURE]


def is_moving(track: Track) -> bool:
    return track.direction not in ("stationary", "in place")


# -- names a person uses -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LabelWords:
    """How a label is said: its basic-level name, whether it names a scene (a place one is in) and whether the
    leaf is distinctive enough to be said when sure."""

    label: str
    basic: str
    scene: bool = False
    distinctive: bool = False


class Lexicon:
    """Basic-level words of the ImageNet-1k labels (``imagenet_words.tsv``); other labels are their own word."""

    def __init__(self, rows: list[tuple[str, str | None, str, bool, bool]]) -> None:
        # (class name, coarse group, basic name, scene, distinctive); two classes may share a name (crane the
        # bird and the machine): the group tells them apart
        self._by_name_group = {(name.lower(), group): LabelWords(name, basic, scene, distinctive)
                               for name, group, basic, scene, distinctive in rows}
        self._by_name: dict[str, LabelWords] = {}
        for name, _, basic, scene, distinctive in rows:
            self._by_name.setdefault(name.lower(), LabelWords(name, basic, scene, distinctive))

    def words(self, label: str, group: str | None = None) -> LabelWords:
        key = label.strip().lower()
        return (self._by_name_group.get((key, group)) or self._by_name.get(key)
                or LabelWords(label, label))

    def basic(self, label: str, group: str | None = None) -> str:
        return self.words(label, group).basic

    def is_scene(self, label: str) -> bool:
        return self.words(label).scene


@functools.lru_cache(maxsize=1)
def lexicon() -> Lexicon:
    """The lexicon of the ImageNet labels shipped with the package (read once)."""

    names, groups = imagenet_classes()
    rows = [(name, group, basic, scene, distinctive)
            for name, group, (basic, scene, distinctive) in zip(names, groups, imagenet_words())]
    return Lexicon(rows)
