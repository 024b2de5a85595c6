"""What goes in each training batch: GVE's modality-pyramid curriculum over tasks, and batches of sub-queries
in which no row is a false negative of another. Both are batch samplers of ``SentenceTransformerTrainer``.

**Modality pyramid** (:class:`ModalityPyramid`, :class:`PyramidBatchSampler`): at the start of epoch t each
task k gets an alignment ``R_k``: the mean cosine similarity of a few of its positive pairs under the current
model. Each batch then comes from task k with ``P(k) ~ exp(R_k / sigma(t))``, where ``sigma`` rises linearly
from ``sigma_start`` (0.1: sharp, the best-aligned task dominates) to ``sigma_end`` (1.0: close to uniform).

**Conflict-free batches** (:class:`ConflictFreeBatchSampler`): the compositional loss takes every other row's
positive components as negatives of a sub-query, so a batch holds at most one sub-query per video and no two
rows of which one's positive components satisfy the other's terms (a red car of another video is no negative of
"a red car").
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from sentence_transformers.base.sampler import DefaultBatchSampler, MultiDatasetDefaultBatchSampler

from twinseek.embedders.data import content_terms, content_words

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


class PyramidBatchSampler(MultiDatasetDefaultBatchSampler):
    """Each batch from one task of a ``DatasetDict``, the task drawn by a :class:`ModalityPyramid`.

    An epoch has as many batches as the first task (the main one) has; a smaller task starts over when it runs
    out. ``names`` are the tasks in the order of the ``DatasetDict`` (that of the ``ConcatDataset``).
    """

    def __init__(self, dataset: Any, batch_samplers: list[Any], pyramid: ModalityPyramid, names: Sequence[str],
                 generator: torch.Generator | None = None, seed: int = 0) -> None:
        super().__init__(dataset, batch_samplers, generator=generator, seed=seed)
        if list(names) != list(pyramid.tasks):
            raise ValueError(f"the pyramid's tasks {list(pyramid.tasks)} differ from the datasets {list(names)}")
        self.pyramid, self.names = pyramid, list(names)

    def __len__(self) -> int:
        return len(self.batch_samplers[0])

    def __iter__(self) -> Iterator[list[int]]:
        offsets = np.cumsum([0, *(len(d) for d in self.dataset.datasets)])  # type: ignore[arg-type]
        self.pyramid.start_epoch(self.epoch)
        iterators = [iter(s) for s in self.batch_samplers]
        for name in self.pyramid.sample(len(self), self.epoch):
            k = self.names.index(name)
            batch = next(iterators[k], None)
            if batch is None:  # a smaller task: start it over
                iterators[k] = iter(self.batch_samplers[k])
                batch = next(iterators[k])
            yield [int(i + offsets[k]) for i in batch]


class ConflictFreeBatchSampler(DefaultBatchSampler):
    """Batches of compositional rows (``label`` = ``[group, roles...]``, see
    :class:`~twinseek.embedders.losses.CompositionalInfoNCELoss`) in which no row can be a false negative of
    another: distinct groups, and no row whose positive components satisfy another row's match terms.

    ``terms`` gives the match terms of a sub-query text (default: its content words). Rows are taken in a seeded
    shuffle (``seed + epoch``) and each goes to the first open batch it does not conflict with; an epoch has at
    most ``ceil(rows / batch_size)`` batches (rows left over wait for the next epoch's shuffle), none of one row.
    """

    def __init__(self, dataset: Any, batch_size: int, drop_last: bool, valid_label_columns: list[str] | None = None,
                 generator: torch.Generator | None = None, seed: int = 0,
                 terms: Mapping[str, Sequence[str]] | None = None) -> None:
        super().__init__(dataset, batch_size=batch_size, drop_last=drop_last,
                         valid_label_columns=valid_label_columns, generator=generator, seed=seed)
        known = terms or {}
        anchors, labels = dataset["anchor"], dataset["label"]
        documents = [c for c in dataset.column_names if c not in ("anchor", "label", "dataset_name")]
        self.groups = [int(label[0]) for label in labels]
        self.terms = [frozenset(known.get(a) or content_terms(a)) for a in anchors]
        # the word sets of each row's positive components (what ``satisfies`` checks the terms against)
        self.words = [[frozenset(content_words(row[c])) for c, role in zip(documents, label[1:]) if role == 1]
                      for row, label in zip(dataset.select_columns(documents), labels)]

    def conflict(self, i: int, j: int) -> bool:
        return (self.groups[i] == self.groups[j]
                or any(self.terms[i] <= w for w in self.words[j] if self.terms[i])
                or any(self.terms[j] <= w for w in self.words[i] if self.terms[j]))

    def __len__(self) -> int:
        n = len(self.groups)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        if self.generator is not None:
            self.generator.manual_seed(self.seed + self.epoch)
        order = torch.randperm(len(self.groups), generator=self.generator).tolist()
        open_batches: list[list[int]] = []
        yielded = 0
        for i in order:
            batch = next((b for b in open_batches if not any(self.conflict(i, j) for j in b)), None)
            if batch is None:
                open_batches.append(batch := [])
            batch.append(i)
            if len(batch) == self.batch_size:
                open_batches.remove(batch)
                yield batch
                yielded += 1
                if yielded == len(self):
                    return
        for batch in sorted(open_batches, key=len, reverse=True):
            if yielded == len(self) or len(batch) < 2 or (self.drop_last and len(batch) < self.batch_size):
                return
            yield batch
            yielded += 1
