"""The twin encoders' compositional InfoNCE, as a sentence-transformers loss.

The text embedder trains with sentence-transformers' own losses (``MultipleNegativesRankingLoss``, its cached
and symmetric variants); only the compositional loss of the twin encoders (paper 1, stage 1) is ours, because a
sub-query has *several* positive components and some in-batch components must be left out of its softmax
rather than counted as negatives. It has the sentence-transformers loss interface (``__init__(model, ...)``,
``forward(sentence_features, labels)``, ``get_config_dict()``, ``citation``), so ``SentenceTransformerTrainer``
trains with it like any other loss.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn

POSITIVE, NEGATIVE, IGNORE = 1, 0, -1


class CompositionalInfoNCELoss(nn.Module):
    """Multi-positive InfoNCE between sub-queries and twin components.

    Dataset columns: the sub-query (anchor) first, then document columns (components). The ``label`` column
    holds per row ``[group, role_1, ..., role_C]``: ``group`` identifies the row's video (rows of one video never
    serve as each other's negatives: another component of the same video may satisfy the sub-query), and
    ``role_c`` says what document column ``c`` is *for its own row*: 1 a positive (a component that satisfies the
    sub-query), 0 a hard negative (e.g. mined), -1 nothing (padding of a row with fewer positives or negatives).

    For sub-query i the softmax runs over its own positives and hard negatives and the positives of every row of
    another group (in-batch negatives); another row's hard negatives are left out (mined for that row, they may
    match i). Per sub-query: ``-log(sum_pos exp(s * sim) / sum_{pos + neg} exp(s * sim))``, averaged over the
    sub-queries that have a positive. With one positive per row, distinct groups and no padding this is
    ``MultipleNegativesRankingLoss``.

    Args:
        model: the SentenceTransformer being trained.
        scale: inverse temperature (20 = temperature 0.05, as TARA and MNRL).
        similarity_fct: similarity of two embedding matrices (cosine by default).
    """

    def __init__(self, model: nn.Module, scale: float = 20.0,
                 similarity_fct: Callable[[Tensor, Tensor], Tensor] | None = None) -> None:
        super().__init__()
        if scale <= 0:
            raise ValueError("scale must be > 0")
        from sentence_transformers.util import cos_sim

        self.model = model
        self.scale = scale
        self.similarity_fct = similarity_fct or cos_sim

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor) -> Tensor:
        from sentence_transformers.base.losses.merged_forward import embed_columns

        return self.compute_loss_from_embeddings(embed_columns(self.model, sentence_features), labels)

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor) -> Tensor:
        """``embeddings``: the anchors (B, d) then one (B, d) per document column; ``labels``: (B, 1 + C)."""
        anchors, docs = embeddings[0], embeddings[1:]
        batch, columns = anchors.shape[0], len(docs)
        labels = labels.to(anchors.device).long()
        if labels.shape != (batch, 1 + columns):
            raise ValueError(f"labels must be (batch, 1 + document columns) = {(batch, 1 + columns)}, "
                             f"got {tuple(labels.shape)}")
        group, roles = labels[:, 0], labels[:, 1:]
        # candidates in column-major order, as MNRL: candidate c * B + r is document column c of row r
        logits = self.scale * self.similarity_fct(anchors, torch.cat(docs))  # (B, C * B)
        role = roles.T.reshape(-1)  # role of each candidate for its own row
        owner = torch.arange(batch, device=anchors.device).repeat(columns)
        own = owner.unsqueeze(0) == torch.arange(batch, device=anchors.device).unsqueeze(1)  # (B, C * B)
        same_group = group.unsqueeze(1) == group[owner].unsqueeze(0)
        is_pos = own & (role == POSITIVE)
        is_neg = (own & (role == NEGATIVE)) | (~same_group & (role == POSITIVE))
        has_pos = is_pos.any(dim=1)
        if not has_pos.any():
            raise ValueError("no sub-query in the batch has a positive component")
        all_logits = logits.masked_fill(~(is_pos | is_neg), -math.inf)
        pos_logits = logits.masked_fill(~is_pos, -math.inf)
        per_query = torch.logsumexp(all_logits, dim=1) - torch.logsumexp(pos_logits, dim=1)
        return per_query[has_pos].mean()

    def get_config_dict(self) -> dict[str, Any]:
        from sentence_transformers.util import similarity_fct_name

        return {"scale": self.scale, "similarity_fct": similarity_fct_name(self.similarity_fct),
                "positives": "multiple"}

    @property
    def temperature(self) -> float:
        return 1.0 / self.scale

    @property
    def citation(self) -> str:
        return """
@article{oord2018representation,
    title={Representation Learning with Contrastive Predictive Coding},
    author={van den Oord, Aaron and Li, Yazhe and Vinyals, Oriol},
    journal={arXiv preprint arXiv:1807.03748},
    year={2018}
}
"""


def compositional_labels(group: int, positives: int, negatives: int, width: int) -> list[int]:
    """A row's ``label``: ``[group]``, ``positives`` ones, ``negatives`` zeros, -1 up to ``width`` columns."""
    if positives + negatives > width:
        raise ValueError(f"{positives} positives and {negatives} negatives do not fit {width} columns")
    return [group, *[POSITIVE] * positives, *[NEGATIVE] * negatives, *[IGNORE] * (width - positives - negatives)]
