"""SIE: split invariant-equivariant representations (Garrido, Najman, LeCun, ICML 2023, arXiv 2302.02964).

The embedding of a view is ``[inv | eq]``: an invariant part and an equivariant part, each the output of its
own projector. The invariant parts of two views of one object are pulled together as in VICReg; the
equivariant part of view 1, mapped by a predictor that knows the transformation between the views, is
pulled towards the equivariant part of view 2. The variance and covariance terms act on the whole
concatenated embedding, so the two parts are also decorrelated from each other, and a variance term on
the predictor's output keeps it from collapsing. As the public code (facebookresearch/SIE, ``src/models.py``,
class ``SIE``)::

    loss = sim_coeff * mse(inv1, inv2)
         + equi_factor * sim_coeff * mse(pred, eq2)
         + std_coeff * (v(z1) + v(z2)) / 2 + std_coeff * v(pred) / 2
         + cov_coeff * (c(z1) + c(z2))

with ``v`` and ``c`` VICReg's variance hinge and covariance terms (:func:`selfsup.criteria.vicreg_loss`)
and the public configuration's weights 10 / 0.45 / 10 / 1. ``n_inv = 0`` is the baseline without a split
(every dimension equivariant, SIE's "only equivariant" model).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from selfsup.criteria._common import check_embeddings, check_pair, check_positive, float32_math, gather
from selfsup.criteria.vicreg import _coefficients, _invariance_variance, _off_diagonal_sq, _std_hinge
from selfsup.errors import ShapeError

__all__ = ["sie_loss"]


def sie_loss(
    z1: torch.Tensor,
    z2: torch.Tensor,
    pred: torch.Tensor,
    n_inv: int,
    sim_coeff: float = 10.0,
    equi_factor: float = 0.45,
    std_coeff: float = 10.0,
    cov_coeff: float = 1.0,
    eps: float = 1e-4,
    gather_distributed: bool = False,
) -> torch.Tensor:
    """SIE's criterion (module docstring).

    Args:
        z1, z2: (N, K) embeddings ``[inv | eq]`` of the two views; the first ``n_inv`` columns invariant.
        pred: (N, K - n_inv) the predictor's estimate of ``z2[:, n_inv:]`` from ``z1[:, n_inv:]`` and the
            transformation between the views.
        n_inv: the width of the invariant part, 0 <= n_inv < K.
        sim_coeff, std_coeff, cov_coeff, eps: as in :func:`~selfsup.criteria.vicreg_loss`.
        equi_factor: weight of the equivariant prediction term relative to ``sim_coeff``.
        gather_distributed: compute every term on the batch of all torch.distributed processes.
    """
    x, y = check_pair(z1, z2, collective=gather_distributed)
    p = check_embeddings(pred, "pred", collective=gather_distributed)
    k = x.shape[1]
    if isinstance(n_inv, bool) or not isinstance(n_inv, int) or not 0 <= n_inv < k:
        raise ShapeError(f"n_inv must be an integer in [0, {k}) (the embedding width), got {n_inv!r}.")
    if p.shape != (x.shape[0], k - n_inv):
        raise ShapeError(
            f"pred must be N x (K - n_inv) = {x.shape[0]} x {k - n_inv}, got shape {tuple(p.shape)}."
        )
    sim, std, cov, eps = _coefficients(sim_coeff, std_coeff, cov_coeff, eps)
    equi = check_positive("equi_factor", equi_factor, allow_zero=True)
    with float32_math(x.device):
        if gather_distributed:
            x, y, p = gather(x), gather(y), gather(p)
        n = x.shape[0]
        inv_loss = F.mse_loss(x[:, :n_inv], y[:, :n_inv]) if n_inv else x.new_zeros(())
        equi_loss = F.mse_loss(p, y[:, n_inv:])
        _, std_loss, x, y = _invariance_variance(x, y, eps)
        pred_std = _std_hinge(p - p.mean(dim=0), eps, 0).mean() / 2
        cov_loss = (_off_diagonal_sq(x) + _off_diagonal_sq(y)) / ((n - 1) ** 2 * k)
        return sim * inv_loss + equi * sim * equi_loss + std * (std_loss + pred_std) + cov * cov_loss
