"""Files written whole or not at all: the one atomic write of the package (the eval results, the vector indexes,
the staged chunks of a long ingest)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def write_atomic(path: Path, write: Callable[[Path], object]) -> Path:
    """``write(tmp)`` writes a temp file beside ``path`` (any writer: text, bytes, a library that takes a path);
    it is flushed to disk and then ``os.replace``d onto ``path``, so a crash at any moment leaves the old file or
    the new one, never half of one. Returns ``path``."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
