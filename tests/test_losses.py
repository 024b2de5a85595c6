"""Contrastive losses: known values on hand-computed cases, symmetry, weights, temperature, gradient cache."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from twinseek.embedders.losses import CachedInfoNCELoss, CompositionalInfoNCELoss, InfoNCELoss

E1, E2 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])


def test_infonce_known_value_in_batch() -> None:
    # anchors = positives = orthonormal: logits [[s, 0], [0, s]] with s = 1/t = 2
    loss = InfoNCELoss(temperature=0.5).compute_loss_from_embeddings(torch.stack([E1, E2]), torch.stack([E1, E2]))
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-2)), rel=1e-5)


def test_infonce_hard_negative_and_weights() -> None:
    a = torch.stack([E1, E2])
    p = torch.stack([E1, E2])
    n = torch.stack([E1, E1]).unsqueeze(1)  # (B, M=1, d): anchor 0's negative equals its positive
    loss_fn = InfoNCELoss(temperature=1.0)
    # row 0 logits: [1, 0, 1, 1] target 0 ; row 1 logits: [0, 1, 0, 0] target 1
    expected = ((-1 + math.log(3 * math.e + 1)) + (-1 + math.log(math.e + 3))) / 2
    assert loss_fn.compute_loss_from_embeddings(a, p, n).item() == pytest.approx(expected, rel=1e-5)
    # weight w multiplies a negative's term in the denominator; w = 0 removes it
    w = torch.tensor([[0.5], [0.0]])
    expected_w = ((-1 + math.log(1.5 * math.e + 1)) + (-1 + math.log(1.5 + math.e))) / 2
    assert loss_fn.compute_loss_from_embeddings(a, p, n, w).item() == pytest.approx(expected_w, rel=1e-5)
    zero = loss_fn.compute_loss_from_embeddings(a, p, n, torch.zeros(2, 1))
    assert zero.item() == pytest.approx(loss_fn.compute_loss_from_embeddings(a, p).item(), rel=1e-6)


def test_symmetric_averages_both_directions() -> None:
    torch.manual_seed(0)
    a, p = torch.randn(4, 8), torch.randn(4, 8)
    one = InfoNCELoss(temperature=0.1).compute_loss_from_embeddings(a, p)
    back = InfoNCELoss(temperature=0.1).compute_loss_from_embeddings(p, a)
    sym = InfoNCELoss(temperature=0.1, symmetric=True).compute_loss_from_embeddings(a, p)
    assert sym.item() == pytest.approx((one.item() + back.item()) / 2, rel=1e-5)
    assert sym.item() != pytest.approx(one.item())


def test_learnable_temperature_gets_gradient_and_config() -> None:
    loss_fn = InfoNCELoss(temperature=0.07, learnable_temperature=True)
    assert [n for n, _ in loss_fn.named_parameters()] == ["temp.log_scale"]
    torch.manual_seed(0)
    loss_fn.compute_loss_from_embeddings(torch.randn(4, 8), torch.randn(4, 8)).backward()
    assert loss_fn.temp.log_scale.grad is not None and loss_fn.temp.log_scale.grad.abs() > 0
    cfg = loss_fn.get_config_dict()
    assert cfg["temperature"] == pytest.approx(0.07) and cfg["learnable_temperature"] is True
    assert list(InfoNCELoss(temperature=0.07).parameters()) == []


def test_compositional_multiple_positives_known_value() -> None:
    q = torch.stack([E1, E2])
    c = torch.stack([E1, E1, E2])
    targets = torch.tensor([[1.0, 1.0, 0.0], [0.0, -1.0, 1.0]])
    loss = CompositionalInfoNCELoss(temperature=1.0).compute_loss_from_embeddings(q, c, targets=targets)
    # q0: two positives (logit 1 each) vs one negative (0); q1: comp 1 ignored -> [0, 1] target 1
    expected = (math.log(2 * math.e + 1) - math.log(2 * math.e) + math.log(1 + math.e) - 1) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert CompositionalInfoNCELoss().get_config_dict()["positives"] == "multiple"


class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 5))

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        return self.lin(torch.as_tensor(rows))


@pytest.mark.parametrize("symmetric,learnable", [(False, False), (True, True)])
def test_cached_gradients_equal_plain(symmetric: bool, learnable: bool) -> None:
    torch.manual_seed(0)
    model = _Tiny()
    a, p, n = torch.randn(8, 6), torch.randn(8, 6), torch.randn(16, 6)
    w = torch.rand(8, 2)

    torch.manual_seed(1)
    plain = InfoNCELoss(model, 0.1, learnable, symmetric)
    loss_plain = plain(a, p, n, w)
    loss_plain.backward()
    grads_plain = [x.grad.clone() for x in model.parameters()]
    model.zero_grad()

    torch.manual_seed(1)
    cached = CachedInfoNCELoss(model, mini_batch_size=3, temperature=0.1, learnable_temperature=learnable,
                               symmetric=symmetric)
    loss_cached = cached(a, p, n, w)
    loss_cached.backward()
    assert loss_cached.item() == pytest.approx(loss_plain.item(), rel=1e-5)
    for g_plain, x in zip(grads_plain, model.parameters()):
        assert torch.allclose(g_plain, x.grad, atol=1e-6)
    if learnable:
        assert torch.allclose(plain.temp.log_scale.grad, cached.base.temp.log_scale.grad, atol=1e-6)
    assert cached.get_config_dict()["cached"] is True
