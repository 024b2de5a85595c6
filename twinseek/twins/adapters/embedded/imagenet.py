"""The ImageNet-1k class names and coarse groups shipped with the package (data only: no torch, no model), read by
the classifier and by the word knowledge."""

from __future__ import annotations

import importlib.resources

from twinseek.errors import ModelUnavailableError


def _read_lines(name: str) -> list[str]:
    text = importlib.resources.files(__package__).joinpath(name).read_text(encoding="utf-8")
    return [line.rstrip("\n") for line in text.splitlines()]


def imagenet_classes() -> tuple[list[str], list[str | None]]:
    """ImageNet-1k names and coarse groups (``None`` where no group is known)."""
    names = _read_lines("imagenet_classes.txt")
    groups = [None if g == "-" else g for g in _read_lines("imagenet_groups.txt")]
    if len(names) != 1000 or len(groups) != 1000:
        raise ModelUnavailableError("imagenet_classes.txt / imagenet_groups.txt must have 1000 lines each")
    return names, groups


def imagenet_words() -> list[tuple[str, bool, bool]]:
    """Per ImageNet-1k class (model order): its basic-level name, whether it names a scene, whether the leaf is
    distinctive (``imagenet_words.tsv``; made by ``scripts/make_imagenet_words.py`` from WordNet 3.0)."""
    lines = _read_lines("imagenet_words.tsv")
    rows = [line.split("\t") for line in lines[1:] if line.strip()]
    if len(rows) != 1000 or any(len(r) < 6 for r in rows):
        raise ModelUnavailableError("imagenet_words.tsv must have a header and 1000 rows of 6 columns")
    return [(r[3], r[4] == "1", r[5] == "1") for r in rows]
