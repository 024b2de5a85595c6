"""Word knowledge for the categories the twin names: WordNet lemmas and glosses, offline.

The data is timm's package data (``timm/data/_info/imagenet_synset_to_lemma.txt`` and
``imagenet_synset_to_definition.txt``: 21,844 ImageNet synsets, tab-separated, wnid first; WordNet licence). The
files are read by path (``timm`` is never imported). A category is resolved to a synset as follows: an
ImageNet-1k class name by its class index (the 1000 classes are the sorted wnids of ``imagenet_synsets.txt``);
a COCO name through :data:`COCO_SYNSETS` where the plain word is ambiguous; otherwise the first synset whose first
lemma is the word, then the first that lists it among its lemmas.

So "a close relative of the wolf" can meet a track named ``dog``: its gloss says "... probably descended from the
common wolf ...".
"""

from __future__ import annotations

import functools
import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path

from twinseek.twins.adapters.embedded.imagenet import imagenet_classes

logger = logging.getLogger(__name__)

SOURCE = "wordnet-glosses (timm package data)"
MAX_LEMMAS = 4

# COCO names whose plain word would resolve to another sense (mouse -> the rodent, cow -> any female mammal)
# or that WordNet spells differently; None: WordNet (as shipped) has no synset for the COCO sense.
COCO_SYNSETS: dict[str, str | None] = {
    "mouse": "n03793489", "cow": "n02403454", "tv": "n04405907", "cell phone": "n02992529", "kite": None,
    "sports ball": "n02778669", "tie": "n03815615", "hair drier": "n03483316", "wine glass": "n04592099",
    "donut": "n07639069", "tennis racket": "n04409806", "skis": "n04228054", "chair": "n03001627",
    "couch": "n03115762", "horse": "n02374451", "sheep": "n02411705", "bed": "n02818832", "book": "n02870526",
    "bottle": "n02876657", "cup": "n03147509", "car": "n02958343", "remote": "n04074963",
    "keyboard": "n03085013", "microwave": "n03761084", "teddy bear": "n04399382", "hot dog": "n07697537",
    "laptop": "n03642806", "dining table": "n03201208", "potted plant": None, "fire hydrant": None,
    "stop sign": None, "handbag": None, "suitcase": None, "surfboard": None, "frisbee": None, "sink": None,
}


@dataclass(frozen=True)
class Gloss:
    """A category's synset: ``wnid``, its lemmas (synonyms, first = the synset's head word) and definition."""

    wnid: str
    lemmas: tuple[str, ...]
    definition: str

    def text(self, label: str) -> str:
        """E.g. ``"dog (domestic dog, Canis familiaris): a member of the genus Canis ..."``."""
        others = [lemma for lemma in self.lemmas if lemma.lower() != label.lower()][:MAX_LEMMAS]
        head = f"{label} ({', '.join(others)})" if others else label
        return f"{head}: {self.definition}"


def data_dir() -> Path | None:
    """timm's ``data/_info`` folder, or None when timm is not installed."""
    spec = importlib.util.find_spec("timm")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "data" / "_info"
    return folder if (folder / "imagenet_synset_to_definition.txt").is_file() else None


class WordKnowledge:
    """Lemmas and glosses by category name. Loads its files on first use; empty when they are missing."""

    def __init__(self, folder: Path | None = None) -> None:
        self._folder = folder
        self._loaded = False
        self._lemmas: dict[str, tuple[str, ...]] = {}
        self._definitions: dict[str, str] = {}
        self._by_head: dict[str, str] = {}
        self._by_lemma: dict[str, str] = {}
        self._imagenet: dict[str, list[tuple[str, str | None]]] = {}  # class name -> (wnid, group) per class

    @property
    def available(self) -> bool:
        self._load()
        return bool(self._definitions)

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        folder = self._folder or data_dir()
        if folder is None:
            logger.warning("word knowledge unavailable: install timm (its package data holds the WordNet glosses)")
            return
        for line in (folder / "imagenet_synset_to_lemma.txt").read_text(encoding="utf-8").splitlines():
            wnid, _, rest = line.partition("\t")
            lemmas = tuple(x.strip() for x in rest.split(",") if x.strip())
            self._lemmas[wnid] = lemmas
            if lemmas:
                self._by_head.setdefault(lemmas[0].lower(), wnid)
            for lemma in lemmas:
                self._by_lemma.setdefault(lemma.lower(), wnid)
        for line in (folder / "imagenet_synset_to_definition.txt").read_text(encoding="utf-8").splitlines():
            wnid, _, definition = line.partition("\t")
            self._definitions[wnid] = definition.strip()
        synsets = (folder / "imagenet_synsets.txt")
        if synsets.is_file():

            names, groups = imagenet_classes()
            wnids = synsets.read_text().split()
            if len(wnids) == len(names):
                for name, wnid, group in zip(names, wnids, groups):
                    self._imagenet.setdefault(name.lower(), []).append((wnid, group))

    def lookup(self, label: str, group: str | None = None) -> Gloss | None:
        """The synset of a category name (``group`` disambiguates an ImageNet class from a COCO name)."""
        self._load()
        key = label.strip().lower()
        if not key or not self._definitions:
            return None
        wnid: str | None
        classes = self._imagenet.get(key, [])
        if classes and (key not in COCO_SYNSETS or group not in (None, key)):
            # two ImageNet classes share a name (crane the bird, crane the machine): the group tells them apart
            wnid = next((w for w, g in classes if g == group), classes[0][0])
        elif key in COCO_SYNSETS:
            wnid = COCO_SYNSETS[key]
        else:
            wnid = self._by_head.get(key) or self._by_lemma.get(key)
        if wnid is None or wnid not in self._definitions:
            return None
        return Gloss(wnid, self._lemmas.get(wnid, ()), self._definitions[wnid])

    def gloss(self, label: str, group: str | None = None) -> str | None:
        """The gloss as one line of text (see :meth:`Gloss.text`), or None."""
        found = self.lookup(label, group)
        return found.text(label) if found else None


@functools.lru_cache(maxsize=1)
def word_knowledge() -> WordKnowledge:
    """The process-wide knowledge table (read-only after loading)."""
    return WordKnowledge()
