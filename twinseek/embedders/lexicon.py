"""Curated word lists for the TARA text triplets: chiral verb phrases with their temporal antonyms, negators,
subject paraphrases and a small caption grammar.

Inflections come from ``lemminflect`` (its tables ship inside the wheel, so it works offline) when installed,
else from simple English rules. No WordNet release ships inside a registry package usable offline (``wn`` and
``nltk`` download their data at run time), so the antonym list is curated: every pair reverses the direction of
an action in time ("opens" -> "closes"), which a plain lexical antonym ("big"/"small") does not.
"""

from __future__ import annotations

import functools
import logging
import re

logger = logging.getLogger(__name__)

# (verb, particle-or-empty) pairs; each pair is a temporal reversal of the other. Both directions are used.
CHIRAL_PAIRS: tuple[tuple[str, str], ...] = (
    ("open", "close"),
    ("put on", "take off"),
    ("enter", "leave"),
    ("fill", "empty"),
    ("push", "pull"),
    ("pick up", "put down"),
    ("turn on", "turn off"),
    ("plug in", "unplug"),
    ("fold", "unfold"),
    ("tie", "untie"),
    ("lock", "unlock"),
    ("zip up", "unzip"),
    ("pack", "unpack"),
    ("load", "unload"),
    ("cover", "uncover"),
    ("wrap", "unwrap"),
    ("sit down", "stand up"),
    ("lift", "lower"),
    ("climb up", "climb down"),
    ("walk into", "walk out of"),
    ("get into", "get out of"),
    ("insert", "remove"),
    ("attach", "detach"),
    ("connect", "disconnect"),
    ("inflate", "deflate"),
    ("assemble", "disassemble"),
    ("raise", "lower"),
    ("start", "stop"),
    ("approach", "move away from"),
    ("arrive at", "depart from"),
    ("throw", "catch"),
    ("dress", "undress"),
    ("button", "unbutton"),
    ("screw in", "unscrew"),
    ("hang up", "take down"),
    ("switch on", "switch off"),
    ("speed up", "slow down"),
    ("fill up", "drain"),
    ("build", "demolish"),
    ("appear", "disappear"),
)

# What each chiral verb phrase can be done to, for the caption grammar.
CHIRAL_OBJECTS: dict[str, tuple[str, ...]] = {
    "open": ("the door", "a drawer", "the window", "a box", "the fridge", "a bottle"),
    "put on": ("a jacket", "a hat", "gloves", "glasses", "a helmet", "the lid"),
    "enter": ("the room", "a building", "the kitchen", "the shop", "the garage"),
    "fill": ("a glass", "the bucket", "a cup", "the kettle", "a bowl"),
    "push": ("a cart", "the stroller", "a box", "the door", "a wheelbarrow"),
    "pick up": ("a book", "a phone", "the cup", "a ball", "a bag", "the toy"),
    "turn on": ("the light", "the tap", "the television", "a lamp", "the stove"),
    "plug in": ("the charger", "a lamp", "the cable", "the toaster"),
    "fold": ("a towel", "the shirt", "a map", "the blanket", "a letter"),
    "tie": ("the shoelaces", "a knot", "a rope", "the ribbon"),
    "lock": ("the door", "a bicycle", "the car", "the gate"),
    "zip up": ("a jacket", "the bag", "a tent", "the suitcase"),
    "pack": ("a suitcase", "the bag", "a box", "the backpack"),
    "load": ("the dishwasher", "a truck", "the washing machine", "the car"),
    "cover": ("the pot", "a bowl", "the table", "the plant"),
    "wrap": ("a present", "the sandwich", "a box"),
    "sit down": ("on a bench", "on the sofa", "at the table", "on a chair"),
    "lift": ("a barbell", "the box", "a child", "the chair"),
    "climb up": ("a ladder", "the stairs", "a tree", "a wall"),
    "walk into": ("the room", "a shop", "the house", "the park"),
    "get into": ("the car", "a taxi", "the boat", "the pool"),
    "insert": ("a key", "a card", "the plug", "a coin"),
    "attach": ("a hook", "the wheel", "a label", "the handle"),
    "connect": ("the cables", "two pipes", "the hose"),
    "inflate": ("a balloon", "the tyre", "a mattress", "a ball"),
    "assemble": ("a shelf", "the table", "a toy car"),
    "raise": ("a flag", "the barrier", "a hand", "the blinds"),
    "start": ("the engine", "a timer", "the machine", "the race"),
    "approach": ("the camera", "a car", "the door", "a dog"),
    "arrive at": ("the station", "the house", "a gate"),
    "throw": ("a ball", "a frisbee", "a stick"),
    "dress": ("a doll", "the child"),
    "button": ("a shirt", "the coat"),
    "screw in": ("a light bulb", "the screw", "a lid"),
    "hang up": ("a picture", "the coat", "a poster", "the laundry"),
    "switch on": ("the fan", "a radio", "the computer"),
    "speed up": ("", "on the road", "down the hill"),
    "fill up": ("the tank", "a bathtub", "the sink"),
    "build": ("a sandcastle", "a tower", "a snowman", "a wall"),
    "appear": ("on the screen", "in the doorway", "from behind the tree"),
}

SUBJECTS: tuple[tuple[str, str], ...] = (
    ("a man", "a guy"), ("a woman", "a lady"), ("a person", "someone"), ("a boy", "a young boy"),
    ("a girl", "a young girl"), ("a child", "a kid"), ("an old man", "an elderly man"),
    ("a worker", "a labourer"), ("a chef", "a cook"), ("a student", "a pupil"),
)
PLACES: tuple[str, ...] = ("", "", "", " in the kitchen", " outside", " at home", " in the garden",
                           " in an office", " on the street", " in a shop")

NEGATORS: tuple[str, ...] = ("not", "never", "no", "none", "nobody", "nothing", "without", "n't")
# Things a scene may be said to lack, for negation triplets ("..., with no dog in sight").
ABSENT_THINGS: tuple[str, ...] = (
    "dog", "cat", "car", "bicycle", "child", "horse", "tree", "boat", "ball", "bird", "phone", "table",
    "crowd", "umbrella", "guitar", "truck", "music", "water", "snow", "person",
)
NEGATION_FRAMES: tuple[str, ...] = ("{s}, with no {x} in sight", "{s}, and there is no {x}", "no {x} appears; {s}",
                                    "{s}, without any {x}")
AFFIRMATION_FRAMES: tuple[str, ...] = ("{s}, with a {x} in sight", "{s}, and there is a {x}", "a {x} appears; {s}",
                                       "{s}, with a {x}")

COLOURS: tuple[str, ...] = ("red", "blue", "green", "yellow", "black", "white", "orange", "purple", "grey", "brown")
BACKGROUNDS: tuple[str, ...] = ("a beach", "a forest", "a city street", "a snowy field", "a desert", "a park",
                                "a kitchen", "a stadium", "a lake", "a mountain road")
STYLES: tuple[str, ...] = ("a cartoon", "an oil painting", "a pencil sketch", "a watercolour", "pixel art")
SWAP_NOUNS: tuple[tuple[str, str], ...] = (
    ("dog", "cat"), ("car", "truck"), ("man", "woman"), ("boy", "girl"), ("horse", "cow"), ("bicycle", "motorbike"),
    ("ball", "frisbee"), ("swan", "duck"), ("apple", "orange"), ("guitar", "violin"), ("chair", "stool"),
    ("boat", "canoe"), ("bird", "butterfly"), ("cup", "mug"),
)


def antonym_map() -> dict[str, str]:
    """Base verb phrase -> its temporal antonym, both directions (first listing wins on a collision)."""
    out: dict[str, str] = {}
    for a, b in CHIRAL_PAIRS:
        out.setdefault(a, b)
        out.setdefault(b, a)
    return out


@functools.lru_cache(maxsize=4096)
def inflections(verb: str) -> dict[str, str]:
    """Forms of a single verb by Penn tag (VB, VBZ, VBG, VBD)."""
    try:
        from lemminflect import getAllInflections

        table = getAllInflections(verb, upos="VERB")
        if table:
            return {"VB": verb, **{tag: forms[0] for tag, forms in table.items() if forms}}
    except ImportError:
        pass
    return _rule_inflections(verb)


def _rule_inflections(verb: str) -> dict[str, str]:
    if verb.endswith("e") and not verb.endswith("ee"):
        ing, ed = verb[:-1] + "ing", verb + "d"
    elif verb.endswith("y") and verb[-2:-1] not in "aeiou":
        ing, ed = verb + "ing", verb[:-1] + "ied"
    else:
        ing, ed = verb + "ing", verb + "ed"
    vbz = verb + "es" if verb.endswith(("s", "sh", "ch", "x", "z", "o")) else (
        verb[:-1] + "ies" if verb.endswith("y") and verb[-2:-1] not in "aeiou" else verb + "s")
    return {"VB": verb, "VBZ": vbz, "VBG": ing, "VBD": ed}


def inflect_phrase(phrase: str, tag: str) -> str:
    """Inflect the head verb of a phrase ("pick up", "VBZ") -> "picks up"."""
    head, _, rest = phrase.partition(" ")
    form = inflections(head).get(tag, head)
    return f"{form} {rest}".strip()


@functools.lru_cache(maxsize=1)
def _surface_index() -> list[tuple[re.Pattern[str], str, str]]:
    """(pattern of an inflected phrase, the phrase, its tag), longest phrases first so "pick up" beats "pick"."""
    rows = []
    for phrase in sorted(antonym_map(), key=len, reverse=True):
        for tag in ("VBZ", "VBG", "VBD", "VB"):
            surface = inflect_phrase(phrase, tag)
            rows.append((re.compile(rf"\b{re.escape(surface)}\b", re.IGNORECASE), phrase, tag))
    return rows


def swap_chiral(sentence: str) -> tuple[str, str, str] | None:
    """Replace the first chiral verb phrase by its temporal antonym in the same form.

    Returns ``(new sentence, phrase, antonym)`` or ``None`` when the sentence has no chiral phrase.
    """
    antonyms = antonym_map()
    best: tuple[int, int, str, str] | None = None
    for pattern, phrase, tag in _surface_index():
        match = pattern.search(sentence)
        if match and (best is None or match.start() < best[0]
                      or (match.start() == best[0] and match.end() > best[1])):
            best = (match.start(), match.end(), phrase, tag)
    if best is None:
        return None
    start, end, phrase, tag = best
    antonym = antonyms[phrase]
    return sentence[:start] + inflect_phrase(antonym, tag) + sentence[end:], phrase, antonym


NEGATOR_RE = re.compile(r"\b(not|never|no|none|nobody|nothing|without)\b|n't\b", re.IGNORECASE)


def has_negator(sentence: str) -> bool:
    return NEGATOR_RE.search(sentence) is not None
