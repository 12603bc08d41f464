"""Barlow Twins: redundancy reduction through the cross-correlation matrix of the two views."""

from __future__ import annotations

import torch

from selfsup.criteria._common import check_pair, check_positive, float32_math, gather_pair, off_diagonal

__all__ = ["barlow_twins_loss"]

_BN_EPS = 1e-5  # nn.BatchNorm1d's default


def _batch_norm(z: torch.Tensor) -> torch.Tensor:
    """Affine-free batch norm in training mode: biased variance, eps 1e-5 (nn.BatchNorm1d(affine=False))."""
    return (z - z.mean(dim=0)) / torch.sqrt(z.var(dim=0, unbiased=False) + _BN_EPS)


def barlow_twins_loss(
    z1: torch.Tensor, z2: torch.Tensor, lambd: float = 0.0051, gather_distributed: bool = False
) -> torch.Tensor:
    """Barlow Twins (Zbontar et al., ICML 2021, arXiv 2103.03230), as the official code::

        C = bn(z1)^T bn(z2) / N                                    (K x K cross-correlation)
        loss = sum_i (1 - C_ii)^2 + lambd * sum_{i != j} C_ij^2

    with bn the affine-free batch norm over the batch (biased variance, eps 1e-5).

    Args:
        z1, z2: (N, K) embeddings of the two views, N >= 2.
        lambd: weight of the redundancy-reduction (off-diagonal) term, >= 0 (paper: 0.0051).
        gather_distributed: normalise and correlate over the batch of all torch.distributed processes
            (N is then the global batch size), like the official code's SyncBatchNorm + all_reduce.
    """
    x, y = check_pair(z1, z2, collective=gather_distributed)
    lambd = check_positive("lambd", lambd, allow_zero=True)
    with float32_math(x.device):
        if gather_distributed:
            x, y, _ = gather_pair(x, y)
        c = _batch_norm(x).T @ _batch_norm(y) / x.shape[0]
        on_diag = (torch.diagonal(c) - 1.0).pow(2).sum()
        off_diag = off_diagonal(c).pow(2).sum()
        return on_diag + lambd * off_diag
