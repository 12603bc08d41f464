"""Contrastive losses against a memory or a momentum encoder: MoCo v2 (a queue of past keys), MoCo v3
(the keys of the whole global batch), NNCLR (nearest neighbours from a support set as positives)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from selfsup.criteria._common import (
    check_embeddings,
    check_pair,
    check_positive,
    float32_math,
    gather_with_offset,
    global_mean,
)
from selfsup.errors import ShapeError

__all__ = ["moco_v2_loss", "moco_v3_loss", "nearest_neighbour", "nnclr_loss"]


def moco_v2_loss(
    q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, temperature: float = 0.2
) -> torch.Tensor:
    """InfoNCE of MoCo (He et al. 2020, arXiv 1911.05722; v2: Chen et al. 2020, arXiv 2003.04297): each
    query's positive is its own key, its negatives the queue of keys from earlier batches::

        l_i = -log exp(q_i . k_i / tau) / (exp(q_i . k_i / tau) + sum_j exp(q_i . queue_j / tau))

    on L2-normalised vectors, averaged over the queries (the public code's ``MoCo.forward``: logits
    ``[l_pos, l_neg] / T``, cross-entropy with label 0). ``k`` and ``queue`` are detached.

    Args:
        q: (N, K) queries (online encoder).
        k: (N, K) keys of the other view (momentum encoder).
        queue: (M, K) keys of earlier batches.
        temperature: tau > 0 (MoCo v2: 0.2).
    """
    q, k = check_pair(q, k, names=("q", "k"), min_rows=1)
    queue = check_embeddings(queue, "queue", min_rows=1)
    if queue.shape[1] != q.shape[1]:
        raise ShapeError(f"queue must have q's width {q.shape[1]}; got shape {tuple(queue.shape)}.")
    tau = check_positive("temperature", temperature)
    with float32_math(q.device):
        q, k = F.normalize(q, dim=1), F.normalize(k.detach(), dim=1)
        queue = F.normalize(queue.detach(), dim=1)
        logits = torch.cat([(q * k).sum(1, keepdim=True), q @ queue.T], dim=1) / tau
        return F.cross_entropy(logits, torch.zeros(q.shape[0], dtype=torch.long, device=q.device))


def moco_v3_loss(
    q: torch.Tensor, k: torch.Tensor, temperature: float = 1.0, gather_distributed: bool = False
) -> torch.Tensor:
    """One direction of MoCo v3's loss (Chen, Xie & He 2021, arXiv 2104.02057; public code
    ``moco/builder.py``, ``contrastive_loss``): the query i's positive is key i, its negatives the keys of
    every other sample of the global batch, scaled by ``2 tau`` as the public code::

        l_i = 2 tau (-q_i . k_i / tau + log sum_j exp(q_i . k_j / tau))

    Callers symmetrise: ``moco_v3_loss(q1, k2) + moco_v3_loss(q2, k1)``. ``k`` is detached.

    Args:
        q: (N, K) predictions of the online encoder; k: (N, K) momentum-encoder keys of the other view.
        temperature: tau > 0 (1.0 for ResNets, 0.2 for ViTs in the public code).
        gather_distributed: take the keys of all processes as candidates.
    """
    q, k = check_pair(q, k, names=("q", "k"), min_rows=1, collective=gather_distributed)
    tau = check_positive("temperature", temperature)
    with float32_math(q.device):
        q, k = F.normalize(q, dim=1), F.normalize(k.detach(), dim=1)
        k_all, offset = gather_with_offset(k) if gather_distributed else (k, 0)
        logits = q @ k_all.T / tau
        labels = torch.arange(q.shape[0], device=q.device) + offset
        return F.cross_entropy(logits, labels) * 2 * tau


def nearest_neighbour(z: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
    """NNCLR's ``NN(z, Q)``: for each row of ``z``, the row of the support set ``Q`` with the highest cosine
    similarity (Dwibedi et al. 2021, arXiv 2104.14548, eq. 2), L2-normalised and detached."""
    z = check_embeddings(z, "z", min_rows=1)
    support = check_embeddings(support, "support", min_rows=1)
    if support.shape[1] != z.shape[1]:
        raise ShapeError(f"support must have z's width {z.shape[1]}; got shape {tuple(support.shape)}.")
    with torch.no_grad(), float32_math(z.device):
        support = F.normalize(support, dim=1)
        return support[(F.normalize(z, dim=1) @ support.T).argmax(dim=1)]


def nnclr_loss(
    nn_z: torch.Tensor, p: torch.Tensor, temperature: float = 0.1, gather_distributed: bool = False
) -> torch.Tensor:
    """One direction of NNCLR's loss (Dwibedi et al. 2021, eq. 2 with the prediction head of sec. 3.2):
    anchor i is the nearest neighbour of view 1's embedding, its positive the prediction of view 2 of the
    same sample, its negatives the predictions of view 2 of every other sample of the global batch::

        l_i = -log exp(NN(z_i) . p_i / tau) / sum_j exp(NN(z_i) . p_j / tau)

    Callers symmetrise: ``(nnclr_loss(NN(z1), p2) + nnclr_loss(NN(z2), p1)) / 2``.

    Args:
        nn_z: (N, K) nearest neighbours (no gradient), from :func:`nearest_neighbour`.
        p: (N, K) predictions of the other view.
        temperature: tau > 0 (the paper's 0.1).
        gather_distributed: take the predictions of all processes as candidates.
    """
    nn_z, p = check_pair(nn_z, p, names=("nn_z", "p"), min_rows=1, collective=gather_distributed)
    tau = check_positive("temperature", temperature)
    with float32_math(p.device):
        a, b = F.normalize(nn_z.detach(), dim=1), F.normalize(p, dim=1)
        b_all, offset = gather_with_offset(b) if gather_distributed else (b, 0)
        logits = a @ b_all.T / tau
        rows = torch.arange(a.shape[0], device=a.device)
        per_anchor = torch.logsumexp(logits, dim=1) - logits[rows, rows + offset]
        return global_mean(per_anchor.sum(), per_anchor.shape[0], gather_distributed)
