"""GVE's modality-pyramid curriculum: sample well-aligned (foundational) tasks first, harder ones later.

At the start of epoch t each task k gets an alignment ``R_k``: the mean cosine similarity of a few of its
positive pairs under the current model. Tasks are then sampled with ``P(k) ~ exp(R_k / sigma(t))``, where
``sigma`` rises linearly from ``sigma_start`` (0.1: sharp, the best-aligned task dominates) to ``sigma_end``
(1.0: close to uniform) over the epochs.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

logger = logging.getLogger(__name__)

EmbedFn = Callable[[Sequence[str]], np.ndarray]


@dataclass
class CurriculumTask:
    """A task's positive pairs (x, y) and how to embed each side (normalised rows)."""

    name: str
    pairs: list[tuple[str, str]]
    embed_x: EmbedFn
    embed_y: EmbedFn | None = None
    probe: int = 32
    history: list[float] = field(default_factory=list)

    def alignment(self, rng: random.Random) -> float:
        pairs = rng.sample(self.pairs, min(self.probe, len(self.pairs)))
        if not pairs:
            return 0.0
        x = np.asarray(self.embed_x([a for a, _ in pairs]), np.float64)
        y = np.asarray((self.embed_y or self.embed_x)([b for _, b in pairs]), np.float64)
        x /= np.linalg.norm(x, axis=1, keepdims=True) + 1e-12
        y /= np.linalg.norm(y, axis=1, keepdims=True) + 1e-12
        return float(np.mean(np.sum(x * y, axis=1)))


def sigma_at(epoch: int, epochs: int, start: float = 0.1, end: float = 1.0) -> float:
    """Linear annealing from ``start`` (first epoch) to ``end`` (last epoch)."""
    if epochs <= 1:
        return start
    return start + (end - start) * epoch / (epochs - 1)


def task_probabilities(alignments: Mapping[str, float], sigma: float) -> dict[str, float]:
    """``softmax(R_k / sigma)`` over tasks (max-shifted for stability)."""
    names = list(alignments)
    logits = np.array([alignments[n] for n in names], np.float64) / sigma
    weights = np.exp(logits - logits.max())
    probs = weights / weights.sum()
    return {n: float(p) for n, p in zip(names, probs)}


class ModalityPyramid:
    """Per-epoch task sampler. Call :meth:`start_epoch` (re-estimates ``R_k``), then :meth:`sample`."""

    def __init__(self, tasks: Sequence[CurriculumTask], epochs: int, sigma_start: float = 0.1,
                 sigma_end: float = 1.0, seed: int = 0) -> None:
        if not tasks:
            raise ValueError("a curriculum needs at least one task")
        self.tasks = {t.name: t for t in tasks}
        self.epochs, self.sigma_start, self.sigma_end, self.seed = epochs, sigma_start, sigma_end, seed
        self.probabilities: dict[str, float] = {n: 1 / len(tasks) for n in self.tasks}

    def start_epoch(self, epoch: int) -> dict[str, float]:
        rng = random.Random(self.seed * 1000 + epoch)
        alignments = {n: t.alignment(rng) for n, t in self.tasks.items()}
        sigma = sigma_at(epoch, self.epochs, self.sigma_start, self.sigma_end)
        self.probabilities = task_probabilities(alignments, sigma)
        logger.info("curriculum epoch %d: sigma %.2f, R %s, P %s", epoch, sigma,
                    {k: round(v, 3) for k, v in alignments.items()},
                    {k: round(v, 3) for k, v in self.probabilities.items()})
        return self.probabilities

    def sample(self, n: int, epoch: int) -> list[str]:
        """``n`` task names for the steps of ``epoch`` (deterministic per seed and epoch)."""
        rng = random.Random(self.seed * 7919 + epoch)
        names = list(self.probabilities)
        return rng.choices(names, weights=[self.probabilities[k] for k in names], k=n)
