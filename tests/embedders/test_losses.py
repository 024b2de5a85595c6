"""The compositional InfoNCE: hand-computed values, which candidates it leaves out, and agreement with
sentence-transformers' MultipleNegativesRankingLoss where the two coincide."""

from __future__ import annotations

import math

import pytest
import torch
from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

from twinseek.embedders.losses import CompositionalInfoNCELoss, compositional_labels

E1, E2, E3 = torch.eye(3)


def _loss(scale: float = 1.0) -> CompositionalInfoNCELoss:
    return CompositionalInfoNCELoss(None, scale=scale)  # type: ignore[arg-type]  # embeddings given directly


def test_multiple_positives_known_value() -> None:
    # row 0: positives E1, E1 (logit 1 each); row 1: positive E2, its second column padding (ignored)
    anchors = torch.stack([E1, E2])
    col1, col2 = torch.stack([E1, E2]), torch.stack([E1, E3])
    labels = torch.tensor([compositional_labels(0, 2, 0, 2), compositional_labels(1, 1, 0, 2)])
    loss = _loss().compute_loss_from_embeddings([anchors, col1, col2], labels)
    # row 0 candidates: own E1, E1 (positives) + row 1's positive E2 (logit 0); row 1: E2 (1) + row 0's E1, E1 (0, 0)
    row0 = math.log(2 * math.e + 1) - math.log(2 * math.e)
    row1 = math.log(math.e + 2) - 1
    assert loss.item() == pytest.approx((row0 + row1) / 2, rel=1e-5)


def test_equals_multiple_negatives_ranking_loss_on_pairs() -> None:
    torch.manual_seed(0)
    anchors, positives = torch.randn(6, 8), torch.randn(6, 8)
    labels = torch.tensor([compositional_labels(g, 1, 0, 1) for g in range(6)])
    ours = CompositionalInfoNCELoss(None, scale=20.0).compute_loss_from_embeddings(  # type: ignore[arg-type]
        [anchors, positives], labels)
    theirs = MultipleNegativesRankingLoss(None, scale=20.0).compute_loss_from_embeddings(  # type: ignore[arg-type]
        [anchors, positives], None)  # type: ignore[arg-type]
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-5)


def test_own_hard_negatives_count_and_other_rows_do_not() -> None:
    torch.manual_seed(1)
    anchors, positives, negatives = torch.randn(4, 8), torch.randn(4, 8), torch.randn(4, 8)
    with_neg = torch.tensor([compositional_labels(g, 1, 1, 2) for g in range(4)])
    loss = _loss(10.0).compute_loss_from_embeddings([anchors, positives, negatives], with_neg)
    # by hand: row i's softmax over every positive and its own negative only
    sims = torch.nn.functional.normalize(anchors, dim=-1) @ torch.nn.functional.normalize(
        torch.cat([positives, negatives]), dim=-1).T * 10.0
    expected = []
    for i in range(4):
        keep = torch.cat([sims[i, :4], sims[i, 4 + i: 5 + i]])
        expected.append(torch.logsumexp(keep, 0) - sims[i, i])
    assert loss.item() == pytest.approx(torch.stack(expected).mean().item(), rel=1e-5)
    # a padded negative column changes nothing
    padded = torch.tensor([compositional_labels(g, 1, 0, 2) for g in range(4)])
    plain = torch.tensor([compositional_labels(g, 1, 0, 1) for g in range(4)])
    assert _loss(10.0).compute_loss_from_embeddings([anchors, positives, negatives], padded).item() == pytest.approx(
        _loss(10.0).compute_loss_from_embeddings([anchors, positives], plain).item(), rel=1e-6)


def test_rows_of_one_group_are_no_negatives_of_each_other() -> None:
    anchors = torch.stack([E1, E1, E2])
    positives = torch.stack([E1, E1, E2])  # rows 0 and 1: one video, the same component
    same = torch.tensor([compositional_labels(0, 1, 0, 1), compositional_labels(0, 1, 0, 1),
                         compositional_labels(1, 1, 0, 1)])
    loss = _loss().compute_loss_from_embeddings([anchors, positives], same)
    # rows 0 and 1 see only their own positive (1) and row 2's (0); row 2 sees E2 (1) and the two E1 (0)
    expected = (2 * (math.log(math.e + 1) - 1) + (math.log(math.e + 2) - 1)) / 3
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_bad_labels_fail_clearly() -> None:
    with pytest.raises(ValueError, match="labels must be"):
        _loss().compute_loss_from_embeddings([torch.stack([E1, E2]), torch.stack([E1, E2])], torch.zeros(2, 3))
    none_positive = torch.tensor([[0, -1], [1, 0]])
    with pytest.raises(ValueError, match="no sub-query"):
        _loss().compute_loss_from_embeddings([torch.stack([E1, E2]), torch.stack([E1, E2])], none_positive)
    with pytest.raises(ValueError, match="do not fit"):
        compositional_labels(0, 2, 1, 2)
    assert _loss(20.0).get_config_dict() == {"scale": 20.0, "similarity_fct": "cos_sim", "positives": "multiple"}
    assert "oord2018" in _loss().citation
