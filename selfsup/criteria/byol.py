"""BYOL / SimSiam regression loss between a prediction and a stop-gradient target."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from selfsup.criteria._common import check_pair, float32_math

__all__ = ["byol_loss"]


def byol_loss(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Normalised mean squared error of BYOL (Grill et al., NeurIPS 2020, arXiv 2006.07733)::

        loss = mean_i || p_i / ||p_i|| - z_i / ||z_i|| ||^2 = mean_i (2 - 2 cos(p_i, z_i))

    The target ``z`` is detached (stop-gradient). This is one direction: callers symmetrise it,
    ``byol_loss(p1, z2) + byol_loss(p2, z1)``, with p the online predictor's output for one view and
    z the target network's projection of the other. SimSiam (Chen & He, CVPR 2021, arXiv 2011.10566)
    uses the same function with z from the online projector (no EMA); its paper's negative cosine
    D = -cos differs by the affine map 2 + 2 D, which changes neither minimiser nor gradient direction.

    Args:
        p: (N, K) predictions, N >= 1.
        z: (N, K) targets (gradient not propagated).
    """
    p, z = check_pair(p, z, names=("p", "z"), min_rows=1)
    with float32_math(p.device):
        cos = (F.normalize(p, dim=1) * F.normalize(z.detach(), dim=1)).sum(dim=1)
        return (2.0 - 2.0 * cos).mean()
