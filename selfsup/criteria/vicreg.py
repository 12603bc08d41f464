"""VICReg and the two variants of the duality paper: VICReg-exp (dimension-contrastive with a
log-sum-exp covariance term) and VICReg-ctr (the same criterion on the transposed embedding matrix,
hence sample-contrastive).

With ``gather_distributed=True`` every term is computed on the concatenated batch of all processes,
so the value equals the single-process loss on that batch (the official VICReg code computes the
invariance term on the local batch only; its expected value is the same).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from selfsup.criteria._common import (
    check_pair,
    check_positive,
    float32_math,
    gather_pair,
    global_mean,
    off_diagonal,
)
from selfsup.errors import ShapeError

__all__ = ["duality_criteria", "vicreg_ctr_loss", "vicreg_exp_loss", "vicreg_loss"]


def _coefficients(sim_coeff: float, std_coeff: float, cov_coeff: float, eps: float) -> tuple[float, ...]:
    return (
        check_positive("sim_coeff", sim_coeff, allow_zero=True),
        check_positive("std_coeff", std_coeff, allow_zero=True),
        check_positive("cov_coeff", cov_coeff, allow_zero=True),
        check_positive("eps", eps),
    )


def _std_hinge(x: torch.Tensor, eps: float, dim: int) -> torch.Tensor:
    """relu(1 - sqrt(Var(x) + eps)) with the unbiased variance along ``dim``."""
    return F.relu(1.0 - torch.sqrt(x.var(dim=dim) + eps))


def _invariance_variance(x: torch.Tensor, y: torch.Tensor, eps: float):
    """VICReg's invariance (MSE) and variance (std hinge, averaged over both views) terms, and the
    column-centred views the covariance terms use."""
    repr_loss = F.mse_loss(x, y)
    x = x - x.mean(dim=0)
    y = y - y.mean(dim=0)
    std_loss = _std_hinge(x, eps, 0).mean() / 2 + _std_hinge(y, eps, 0).mean() / 2
    return repr_loss, std_loss, x, y


def _exp_cov_rows(c: torch.Tensor, self_col: torch.Tensor, tau: float) -> torch.Tensor:
    """Per row i of ``c``: log sum_{j != i} exp(c_ij / tau), the diagonal given by ``self_col``."""
    rows = torch.arange(c.shape[0], device=c.device)
    mask = torch.zeros(c.shape, dtype=torch.bool, device=c.device)
    mask[rows, self_col] = True
    return torch.logsumexp((c / tau).masked_fill(mask, float("-inf")), dim=1)


def vicreg_loss(
    z1: torch.Tensor,
    z2: torch.Tensor,
    sim_coeff: float = 25.0,
    std_coeff: float = 25.0,
    cov_coeff: float = 1.0,
    eps: float = 1e-4,
    gather_distributed: bool = False,
) -> torch.Tensor:
    """VICReg (Bardes, Ponce, LeCun, ICLR 2022, arXiv 2105.04906), as the official code
    (facebookresearch/vicreg, main_vicreg.py)::

        loss = sim_coeff * mse(z1, z2)
             + std_coeff * (v(z1) + v(z2)) / 2          v(z) = mean_j relu(1 - sqrt(Var(z_j) + eps))
             + cov_coeff * (c(z1) + c(z2))              c(z) = sum_{i != j} Cov(z)_ij^2 / K

    with the unbiased variance, Cov(z) = z_c^T z_c / (N - 1) and z_c the column-centred batch. The
    off-diagonal sum is computed through the N x N Gram matrix when N < K (same value, see
    :func:`_off_diagonal_sq`).

    Args:
        z1, z2: (N, K) embeddings of the two views, N >= 2.
        sim_coeff, std_coeff, cov_coeff: weights of the three terms (>= 0).
        eps: added to the variance before the square root (> 0).
        gather_distributed: compute every term on the batch of all torch.distributed processes.
    """
    x, y = check_pair(z1, z2, collective=gather_distributed)
    sim, std, cov, eps = _coefficients(sim_coeff, std_coeff, cov_coeff, eps)
    with float32_math(x.device):
        if gather_distributed:
            x, y, _ = gather_pair(x, y)
        n, k = x.shape
        repr_loss, std_loss, x, y = _invariance_variance(x, y, eps)
        cov_loss = (_off_diagonal_sq(x) + _off_diagonal_sq(y)) / ((n - 1) ** 2 * k)
        return sim * repr_loss + std * std_loss + cov * cov_loss


def _off_diagonal_sq(x: torch.Tensor) -> torch.Tensor:
    """sum_{i != j} (x^T x)_ij^2 of an N x K matrix; through the N x N Gram matrix when N < K.

    ||x^T x||_F^2 = ||x x^T||_F^2 (both are trace((x^T x)^2)) and the diagonal of x^T x holds the columns'
    squared norms, so with fewer samples than dimensions (the usual case: batch 128-256, projector
    1024-8192) an N x N product replaces the official code's K x K covariance. The difference of the two sums
    cancels when a few columns hold most of the variance, so it is formed in float64 (N^2 K flops, still
    fewer than the K^2 N of the covariance; tests/criteria/test_criteria.py checks a decorrelated batch and a
    dominant column against float64). With N >= K the off-diagonal entries are summed directly, as the
    official code.
    """
    n, k = x.shape
    if n >= k:
        return off_diagonal(x.T @ x).pow(2).sum()
    xd = x.double()
    return ((xd @ xd.T).pow(2).sum() - xd.pow(2).sum(dim=0).pow(2).sum()).to(x.dtype)


def _exp_inputs(name: str, z1, z2, sim_coeff, std_coeff, cov_coeff, eps, tau, gather: bool):
    """Checked inputs of the log-sum-exp variants: the pair (K >= 2) and the five hyper-parameters."""
    x, y = check_pair(z1, z2, collective=gather)
    if x.shape[1] < 2:
        raise ShapeError(f"{name} needs embeddings with at least 2 dimensions; got shape {tuple(x.shape)}.")
    return x, y, (*_coefficients(sim_coeff, std_coeff, cov_coeff, eps), check_positive("tau", tau))


def vicreg_exp_loss(
    z1: torch.Tensor,
    z2: torch.Tensor,
    sim_coeff: float = 25.0,
    std_coeff: float = 25.0,
    cov_coeff: float = 1.0,
    eps: float = 1e-4,
    tau: float = 0.1,
    gather_distributed: bool = False,
) -> torch.Tensor:
    """VICReg-exp (Garrido et al., "On the duality between contrastive and non-contrastive SSL",
    ICLR 2023, arXiv 2206.02574): VICReg with the covariance term c(z) replaced by::

        c_exp(z) = (1 / K) sum_i log sum_{j != i} exp(Cov(z)_ij / tau)

    (applied to both views and summed, like c(z)). The invariance and variance terms are VICReg's.
    The paper's temperature (its Table S6) is unverified here: ``tau=0.1`` is a default to tune in
    0.1..1, and the coefficients default to VICReg's.

    Args:
        z1, z2: (N, K) embeddings of the two views, N >= 2, K >= 2.
        sim_coeff, std_coeff, cov_coeff, eps: as in :func:`vicreg_loss`.
        tau: temperature of the log-sum-exp (> 0).
        gather_distributed: compute every term on the batch of all torch.distributed processes.
    """
    x, y, (sim, std, cov, eps, tau) = _exp_inputs(
        "vicreg_exp_loss", z1, z2, sim_coeff, std_coeff, cov_coeff, eps, tau, gather_distributed
    )
    with float32_math(x.device):
        if gather_distributed:
            x, y, _ = gather_pair(x, y)
        n, k = x.shape
        repr_loss, std_loss, x, y = _invariance_variance(x, y, eps)
        diag = torch.arange(k, device=x.device)
        cov_loss = (
            _exp_cov_rows((x.T @ x) / (n - 1), diag, tau).mean()
            + _exp_cov_rows((y.T @ y) / (n - 1), diag, tau).mean()
        )
        return sim * repr_loss + std * std_loss + cov * cov_loss


def vicreg_ctr_loss(
    z1: torch.Tensor,
    z2: torch.Tensor,
    sim_coeff: float = 25.0,
    std_coeff: float = 25.0,
    cov_coeff: float = 1.0,
    eps: float = 1e-4,
    tau: float = 0.1,
    gather_distributed: bool = False,
) -> torch.Tensor:
    """VICReg-ctr (Garrido et al., arXiv 2206.02574): VICReg-exp whose variance and covariance terms
    are applied to the transposed embedding matrix z^T (K x N), which turns the dimension-contrastive
    criterion into a sample-contrastive one (the duality of the paper). For each sample i, with z_i
    centred over its K dimensions::

        v_ctr(z) = mean_i relu(1 - sqrt(Var_k(z_ik) + eps))              (unbiased, over dimensions)
        G(z)     = z_c z_c^T / (K - 1)                                   (N x N, between samples)
        c_ctr(z) = (1 / N) sum_i log sum_{j != i} exp(G(z)_ij / tau)

        loss = sim_coeff * mse(z1, z2) + std_coeff * (v_ctr(z1) + v_ctr(z2)) / 2
             + cov_coeff * (c_ctr(z1) + c_ctr(z2))

    ``tau=0.1`` is an unverified default (see :func:`vicreg_exp_loss`). With ``gather_distributed``
    each process's samples are contrasted with the samples of all processes and the value returned
    is the loss of the concatenated batch.

    Args:
        z1, z2: (N, K) embeddings of the two views, N >= 2, K >= 2.
        sim_coeff, std_coeff, cov_coeff, eps: as in :func:`vicreg_loss`.
        tau: temperature of the log-sum-exp (> 0).
        gather_distributed: contrast with the samples of all torch.distributed processes.
    """
    x, y, (sim, std, cov, eps, tau) = _exp_inputs(
        "vicreg_ctr_loss", z1, z2, sim_coeff, std_coeff, cov_coeff, eps, tau, gather_distributed
    )
    with float32_math(x.device):
        n, k = x.shape
        xc = x - x.mean(dim=1, keepdim=True)
        yc = y - y.mean(dim=1, keepdim=True)
        if gather_distributed:
            xc_all, yc_all, offset = gather_pair(xc, yc)
        else:
            xc_all, yc_all, offset = xc, yc, 0
        self_col = torch.arange(n, device=x.device) + offset
        per_row = (
            sim * (x - y).pow(2).mean(dim=1)
            + std * (_std_hinge(xc, eps, 1) + _std_hinge(yc, eps, 1)) / 2
            + cov * _exp_cov_rows(xc @ xc_all.T / (k - 1), self_col, tau)
            + cov * _exp_cov_rows(yc @ yc_all.T / (k - 1), self_col, tau)
        )
        return global_mean(per_row.sum(), n, gather_distributed)


def duality_criteria(k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The contrastive and non-contrastive criteria of the duality theorem (arXiv 2206.02574).

    For K (M x N, its N columns being the embeddings of N samples)::

        L_c  = || K^T K - diag(K^T K) ||_F^2      (sample-contrastive)
        L_nc = || K K^T - diag(K K^T) ||_F^2      (dimension-contrastive)

    and L_nc + sum_j ||row_j||^4 = L_c + sum_i ||col_i||^4. Returns ``(L_c, L_nc)``.
    """
    if not isinstance(k, torch.Tensor) or k.ndim != 2:
        shape = tuple(k.shape) if isinstance(k, torch.Tensor) else type(k).__name__
        raise ShapeError(f"duality_criteria needs a 2-D matrix K; got {shape}.")
    gram = k.T @ k
    cov = k @ k.T
    return off_diagonal(gram).pow(2).sum(), off_diagonal(cov).pow(2).sum()
