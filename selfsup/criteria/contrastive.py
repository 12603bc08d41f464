"""Sample-contrastive criteria: SimCLR (NT-Xent) and its abs/sq variants, DCL, spectral contrastive.

With ``gather_distributed=True`` each process uses its own rows as anchors and the embeddings of all
processes as candidates (1/world_size of the work of recomputing every anchor everywhere); the value
returned on every process is the loss of the concatenated global batch, and the gradient follows the
convention of :mod:`selfsup.criteria._common` (DDP's averaging yields the single-process gradient).
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
import torch.nn.functional as F

from selfsup.criteria._common import (
    check_pair,
    check_positive,
    float32_math,
    gather_pair,
    gather_with_offset,
    global_mean,
)
from selfsup.errors import unknown_name

__all__ = ["dcl_loss", "simclr_loss", "spectral_contrastive_loss"]

SimCLRVariant = Literal["standard", "abs", "sq"]
SIMCLR_VARIANTS = get_args(SimCLRVariant)


def _pair_columns(n: int, total: int, offset: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Column of each local anchor itself and of its positive in the candidate matrix [z1_all; z2_all].

    Anchors are the local rows [z1; z2] (2n of them); candidates are the 2 * ``total`` global rows.
    """
    i = torch.arange(n, device=device) + offset
    self_col = torch.cat([i, i + total])
    pos_col = torch.cat([i + total, i])
    return self_col, pos_col


def _anchor_similarities(
    z1: torch.Tensor, z2: torch.Tensor, gather_distributed: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cosine similarities of local anchors to all candidates, with the self and positive columns."""
    a = F.normalize(z1, dim=1)
    b = F.normalize(z2, dim=1)
    if gather_distributed:
        a_all, b_all, offset = gather_pair(a, b)
    else:
        a_all, b_all, offset = a, b, 0
    cos = torch.cat([a, b]) @ torch.cat([a_all, b_all]).T  # (2n, 2 * total)
    self_col, pos_col = _pair_columns(a.shape[0], a_all.shape[0], offset, a.device)
    return cos, self_col, pos_col


def _column_mask(shape: torch.Size, cols: torch.Tensor) -> torch.Tensor:
    mask = torch.zeros(shape, dtype=torch.bool, device=cols.device)
    mask[torch.arange(shape[0], device=cols.device), cols] = True
    return mask


def simclr_loss(
    z1: torch.Tensor,
    z2: torch.Tensor,
    temperature: float = 0.1,
    variant: SimCLRVariant = "standard",
    gather_distributed: bool = False,
) -> torch.Tensor:
    """NT-Xent loss of SimCLR (Chen et al. 2020, arXiv 2002.05709, eq. 1), averaged over all 2N anchors.

    For anchor i with positive p(i) among the 2N rows of [z1; z2] and cosine similarities s_ij::

        l_i = -s_ip(i) / tau + log sum_{j != i} exp(g_ij / tau),   loss = mean_i l_i

    with g_ij = s_ij for ``variant="standard"``; for ``"abs"`` / ``"sq"`` (SimCLR-abs / SimCLR-sq of
    Garrido et al., "On the duality between contrastive and non-contrastive SSL", arXiv 2206.02574)
    the negatives enter as |s_ij| or s_ij**2, while the positive keeps s_ip(i).

    Args:
        z1, z2: (N, K) embeddings of the two views, N >= 2.
        temperature: tau > 0 (0.1 for ImageNet at batch 4096, 0.5 for CIFAR).
        variant: "standard", "abs" or "sq".
        gather_distributed: use the embeddings of all torch.distributed processes as candidates.
    """
    z1, z2 = check_pair(z1, z2, collective=gather_distributed)
    tau = check_positive("temperature", temperature)
    if variant not in SIMCLR_VARIANTS:
        raise unknown_name("SimCLR variant", str(variant), SIMCLR_VARIANTS)
    with float32_math(z1.device):
        cos, self_col, pos_col = _anchor_similarities(z1, z2, gather_distributed)
        rows = torch.arange(cos.shape[0], device=cos.device)
        if variant == "standard":
            sim = cos
        else:
            neg = cos.abs() if variant == "abs" else cos.square()
            sim = torch.where(_column_mask(cos.shape, pos_col), cos, neg)
        logits = sim.masked_fill(_column_mask(cos.shape, self_col), float("-inf")) / tau
        per_anchor = torch.logsumexp(logits, dim=1) - logits[rows, pos_col]
        return global_mean(per_anchor.sum(), per_anchor.shape[0], gather_distributed)


def dcl_loss(
    z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.1, gather_distributed: bool = False
) -> torch.Tensor:
    """Decoupled contrastive loss (Yeh et al., ECCV 2022, arXiv 2110.06848).

    NT-Xent without the positive in the denominator, averaged over all 2N anchors (both directions)::

        l_i = -s_ip(i) / tau + log sum_{j not in {i, p(i)}} exp(s_ij / tau)

    Args:
        z1, z2: (N, K) embeddings of the two views, N >= 2.
        temperature: tau > 0.
        gather_distributed: use the embeddings of all torch.distributed processes as candidates.
    """
    z1, z2 = check_pair(z1, z2, collective=gather_distributed)
    tau = check_positive("temperature", temperature)
    with float32_math(z1.device):
        cos, self_col, pos_col = _anchor_similarities(z1, z2, gather_distributed)
        rows = torch.arange(cos.shape[0], device=cos.device)
        logits = cos / tau
        excluded = _column_mask(cos.shape, self_col) | _column_mask(cos.shape, pos_col)
        negatives = torch.logsumexp(logits.masked_fill(excluded, float("-inf")), dim=1)
        per_anchor = negatives - logits[rows, pos_col]
        return global_mean(per_anchor.sum(), per_anchor.shape[0], gather_distributed)


def spectral_contrastive_loss(
    z1: torch.Tensor, z2: torch.Tensor, gather_distributed: bool = False
) -> torch.Tensor:
    """Spectral contrastive loss (HaoChen et al., NeurIPS 2021, arXiv 2106.04156)::

        loss = -2 mean_i <z1_i, z2_i> + mean_{i != j} <z1_i, z2_j>^2

    The embeddings are used as given (no normalisation). The loss is symmetric in (z1, z2).

    Args:
        z1, z2: (N, K) embeddings of the two views, N >= 2.
        gather_distributed: pair the local rows of z1 with z2 of all torch.distributed processes.
    """
    z1, z2 = check_pair(z1, z2, collective=gather_distributed)
    with float32_math(z1.device):
        z2_all, offset = gather_with_offset(z2) if gather_distributed else (z2, 0)
        n, total = z1.shape[0], z2_all.shape[0]
        dots = z1 @ z2_all.T  # (n, total)
        rows = torch.arange(n, device=z1.device)
        positive = dots[rows, rows + offset]
        sq_others = dots.square().masked_fill(_column_mask(dots.shape, rows + offset), 0.0).sum(dim=1)
        # per-row share: mean over the global rows of these terms is the loss
        per_row = -2.0 * positive + sq_others / (total - 1)
        return global_mean(per_row.sum(), n, gather_distributed)
