"""The one timer: wall time of named steps, into a plain dict (a search's node and stage timings, ingest's steps)."""

from __future__ import annotations

import time
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager


@contextmanager
def timed(timings: MutableMapping[str, float], name: str) -> Iterator[None]:
    """Add the seconds the block takes to ``timings[name]`` (rounded to 0.1 ms), also when it raises."""
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = round(timings.get(name, 0.0) + time.perf_counter() - start, 4)
