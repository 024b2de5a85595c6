"""Contrastive losses for twinseek's embedders.

* :class:`InfoNCELoss`: in-batch negatives plus explicit hard negatives (optionally weighted), one-directional
  (TARA) or symmetric (GVE / CLIP), with a fixed or learnable temperature.
* :class:`CompositionalInfoNCELoss`: each sub-query against the components that satisfy it (several positives)
  and the components of other videos (negatives); the twin encoders' loss (paper 1, stage 1).
* :class:`CachedInfoNCELoss`: the gradient-cache variant of :class:`InfoNCELoss` (as sentence-transformers'
  ``CachedMultipleNegativesRankingLoss``): the whole batch is embedded without a graph, the loss gradient with
  respect to the embeddings is cached, and mini-batches are re-embedded with a graph to push it into the model.
  Same loss and same gradients as the plain loss, with the memory of one mini-batch.

All losses L2-normalise their inputs (cosine similarity) and divide by the temperature.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

logger = logging.getLogger(__name__)

MAX_SCALE = 100.0  # CLIP clamps its logit scale here: beyond it training becomes unstable
EmbedFn = Callable[[Sequence[Any]], Tensor]


class _Temperature(nn.Module):
    """``scale = 1 / temperature``; learnable as CLIP's ``logit_scale`` (a log parameter), clamped."""

    def __init__(self, temperature: float, learnable: bool) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError("temperature must be > 0")
        self.learnable = learnable
        log_scale = torch.tensor(math.log(1.0 / temperature))
        if learnable:
            self.log_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("log_scale", log_scale)

    @property
    def scale(self) -> Tensor:
        return self.log_scale.exp().clamp(max=MAX_SCALE)

    @property
    def temperature(self) -> float:
        return float(1.0 / self.scale.detach())


class InfoNCELoss(nn.Module):
    """InfoNCE over in-batch negatives plus explicit hard negatives.

    For anchor i the candidates are every positive of the batch (its own is the target) and every hard negative
    of the batch. A negative's weight ``w`` multiplies its term in the softmax denominator (``w = 0`` removes
    it, ``w = 1`` is plain InfoNCE), i.e. ``log w`` is added to its logit. ``symmetric=True`` averages with the
    positive-to-anchor direction (in-batch only), as GVE and CLIP do.

    Args:
        model: optional encoder ``texts -> embeddings``; needed only by :meth:`forward`.
        temperature: initial temperature (TARA/MNRL use 0.05, GVE 0.03).
        learnable_temperature: learn it (as CLIP's log logit scale, clamped at scale 100).
        symmetric: add the positive-to-anchor direction.
    """

    def __init__(self, model: nn.Module | None = None, temperature: float = 0.05,
                 learnable_temperature: bool = False, symmetric: bool = False) -> None:
        super().__init__()
        self.model = model
        self.temp = _Temperature(temperature, learnable_temperature)
        self.symmetric = symmetric

    @property
    def scale(self) -> Tensor:
        return self.temp.scale

    def get_config_dict(self) -> dict[str, Any]:
        return {"temperature": self.temp.temperature, "learnable_temperature": self.temp.learnable,
                "symmetric": self.symmetric, "similarity": "cosine"}

    def forward(self, anchors: Sequence[Any], positives: Sequence[Any], negatives: Sequence[Any] | None = None,
                negative_weights: Tensor | None = None) -> Tensor:
        """Embed with ``self.model`` (negatives: ``len(anchors) * m`` items, row-major per anchor), then
        :meth:`compute_loss_from_embeddings`."""
        if self.model is None:
            raise ValueError("InfoNCELoss.forward needs a model; use compute_loss_from_embeddings otherwise")
        neg = _reshape_negatives(self.model(negatives), len(anchors)) if negatives is not None and len(negatives) else None
        return self.compute_loss_from_embeddings(self.model(anchors), self.model(positives), neg, negative_weights)

    def compute_loss_from_embeddings(self, anchors: Tensor, positives: Tensor, negatives: Tensor | None = None,
                                     negative_weights: Tensor | None = None) -> Tensor:
        """``anchors``/``positives``: (B, d); ``negatives``: (B, M, d) or (B, d); weights: (B, M) or (B,)."""
        a, p = F.normalize(anchors, dim=-1), F.normalize(positives, dim=-1)
        candidates, bias = p, torch.zeros(p.shape[0], dtype=a.dtype, device=a.device)
        if negatives is not None:
            n = F.normalize(negatives.reshape(-1, negatives.shape[-1]), dim=-1)
            candidates = torch.cat([p, n])
            bias = torch.cat([bias, _log_weights(negative_weights, n.shape[0], a)])
        logits = self.scale * a @ candidates.T + bias
        labels = torch.arange(a.shape[0], device=a.device)
        loss = F.cross_entropy(logits, labels)
        if self.symmetric:
            loss = (loss + F.cross_entropy(self.scale * p @ a.T, labels)) / 2
        return loss


def _reshape_negatives(flat: Tensor, batch: int) -> Tensor:
    if flat.shape[0] % batch:
        raise ValueError(f"{flat.shape[0]} negatives cannot be split evenly over {batch} anchors")
    return flat.reshape(batch, flat.shape[0] // batch, -1)


def _log_weights(weights: Tensor | None, count: int, like: Tensor) -> Tensor:
    """Per-negative additive logit bias ``log w`` (0 for unweighted; -inf for weight 0)."""
    if weights is None:
        return torch.zeros(count, dtype=like.dtype, device=like.device)
    w = weights.reshape(-1).to(like)
    if w.shape[0] != count:
        raise ValueError(f"{w.shape[0]} negative weights for {count} negatives")
    if (w < 0).any():
        raise ValueError("negative weights must be >= 0")
    return torch.log(w)


class CompositionalInfoNCELoss(nn.Module):
    """Multi-positive InfoNCE between sub-queries and twin components.

    ``targets[q, c]`` is 1 when component c satisfies sub-query q (a positive), 0 when c belongs to another
    video (a negative), -1 to leave c out of q's softmax (e.g. another component of the same video that does not
    satisfy q, or another video's component that matches the text and would be a false negative). Per
    sub-query: ``-log(sum_pos exp(s/t) / sum_{pos+neg} exp(s/t))``, averaged over sub-queries.
    """

    def __init__(self, model: nn.Module | None = None, temperature: float = 0.05,
                 learnable_temperature: bool = False) -> None:
        super().__init__()
        self.model = model
        self.temp = _Temperature(temperature, learnable_temperature)

    def get_config_dict(self) -> dict[str, Any]:
        return {"temperature": self.temp.temperature, "learnable_temperature": self.temp.learnable,
                "similarity": "cosine", "positives": "multiple"}

    def compute_loss_from_embeddings(self, anchors: Tensor, positives: Tensor, negatives: Tensor | None = None,
                                     negative_weights: Tensor | None = None, targets: Tensor | None = None) -> Tensor:
        """``anchors``: sub-queries (Q, d); ``positives``: components (C, d); ``negatives``: extra components
        (N, d) that are negatives of every sub-query, optionally weighted (N,); ``targets``: (Q, C), default the
        identity (one positive each, the rest negatives)."""
        q, c = F.normalize(anchors, dim=-1), F.normalize(positives, dim=-1)
        if targets is None:
            targets = torch.eye(q.shape[0], c.shape[0], device=q.device)
        targets = targets.to(q.device)
        logits = self.temp.scale * q @ c.T
        bias = torch.where(targets < 0, torch.full_like(logits, -math.inf), torch.zeros_like(logits))
        is_pos = targets > 0
        if negatives is not None:
            n = F.normalize(negatives.reshape(-1, negatives.shape[-1]), dim=-1)
            logits = torch.cat([logits, self.temp.scale * q @ n.T], dim=1)
            extra = _log_weights(negative_weights, n.shape[0], q).expand(q.shape[0], -1)
            bias = torch.cat([bias, extra], dim=1)
            is_pos = torch.cat([is_pos, torch.zeros_like(extra, dtype=torch.bool)], dim=1)
        logits = logits + bias
        has_pos = is_pos.any(dim=1)
        if not has_pos.any():
            raise ValueError("no sub-query has a positive component")
        pos_logits = logits.masked_fill(~is_pos, -math.inf)
        per_query = torch.logsumexp(logits, dim=1) - torch.logsumexp(pos_logits, dim=1)
        return per_query[has_pos].mean()


class _RandContext:
    """Replays the CPU RNG state of a mini-batch's first pass, so dropout masks match on re-embedding."""

    def __init__(self) -> None:
        self.state = torch.get_rng_state()

    def __enter__(self) -> None:
        self._saved = torch.get_rng_state()
        torch.set_rng_state(self.state)

    def __exit__(self, *exc: object) -> None:
        torch.set_rng_state(self._saved)


class CachedInfoNCELoss(nn.Module):
    """Gradient-cache InfoNCE: memory of ``mini_batch_size`` items, the gradients of :class:`InfoNCELoss`.

    ``forward`` embeds everything without a graph, computes the loss on detached embeddings, back-propagates it
    to them (and to a learnable temperature) right away and returns a loss whose ``backward()`` re-embeds each
    mini-batch with a graph and applies the cached embedding gradients to the model.
    """

    def __init__(self, model: nn.Module, mini_batch_size: int = 32, temperature: float = 0.05,
                 learnable_temperature: bool = False, symmetric: bool = False) -> None:
        super().__init__()
        self.model = model
        self.mini_batch_size = mini_batch_size
        self.base = InfoNCELoss(None, temperature, learnable_temperature, symmetric)

    def get_config_dict(self) -> dict[str, Any]:
        return {**self.base.get_config_dict(), "mini_batch_size": self.mini_batch_size, "cached": True}

    def compute_loss_from_embeddings(self, anchors: Tensor, positives: Tensor, negatives: Tensor | None = None,
                                     negative_weights: Tensor | None = None) -> Tensor:
        return self.base.compute_loss_from_embeddings(anchors, positives, negatives, negative_weights)

    def _chunks(self, items: Sequence[Any]) -> list[Sequence[Any]]:
        return [items[i:i + self.mini_batch_size] for i in range(0, len(items), self.mini_batch_size)]

    def forward(self, anchors: Sequence[Any], positives: Sequence[Any], negatives: Sequence[Any] | None = None,
                negative_weights: Tensor | None = None) -> Tensor:
        groups: list[Sequence[Any]] = [anchors, positives]
        has_neg = negatives is not None and len(negatives) > 0
        if negatives is not None and has_neg:
            groups.append(negatives)
        contexts: list[list[_RandContext]] = []
        reps: list[Tensor] = []
        with torch.no_grad():
            for group in groups:
                ctx, parts = [], []
                for chunk in self._chunks(group):
                    ctx.append(_RandContext())
                    parts.append(self.model(chunk))
                contexts.append(ctx)
                reps.append(torch.cat(parts).detach().requires_grad_())
        neg = _reshape_negatives(reps[2], len(anchors)) if has_neg else None
        with torch.enable_grad():
            loss = self.base.compute_loss_from_embeddings(reps[0], reps[1], neg, negative_weights)
            loss.backward()  # grads into the cached embeddings (and the temperature)
        grads = [r.grad for r in reps]
        out = loss.detach().requires_grad_()
        out.register_hook(lambda g: self._backward(g, groups, contexts, grads))
        return out

    def _backward(self, grad_out: Tensor, groups: list[Sequence[Any]], contexts: list[list[_RandContext]],
                  grads: list[Tensor | None]) -> Tensor:
        with torch.enable_grad():
            for group, ctx, grad in zip(groups, contexts, grads):
                if grad is None:
                    continue
                offset = 0
                for chunk, rand in zip(self._chunks(group), ctx):
                    with rand:
                        emb = self.model(chunk)
                    surrogate = (emb * grad[offset:offset + emb.shape[0]] * grad_out).sum()
                    surrogate.backward()
                    offset += emb.shape[0]
        return grad_out
