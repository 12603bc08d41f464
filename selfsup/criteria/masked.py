"""Masked prediction: MAE's pixel loss on the masked patches and I-JEPA's latent regression loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from selfsup.criteria._common import check_pair, float32_math
from selfsup.errors import ShapeError

__all__ = ["ijepa_loss", "mae_loss"]


def _tokens(a: torch.Tensor, b: torch.Tensor, names: tuple[str, str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Two (N, L, K) token batches of one shape, checked as (N L) x K embeddings; returned as given."""
    for x, name in zip((a, b), names, strict=True):
        if not isinstance(x, torch.Tensor) or x.ndim != 3:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ShapeError(f"{name} must be a (batch, tokens, dim) tensor; got {shape}")
    check_pair(a.flatten(0, 1), b.flatten(0, 1), names=names, min_rows=1)
    return a, b


def mae_loss(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, norm_pix_loss: bool = True
) -> torch.Tensor:
    """Mean squared error on the masked patches (He et al. 2022, arXiv 2111.06377, sec. 3; the authors'
    ``models_mae.py``, ``forward_loss``)::

        t = (target - mean(target)) / sqrt(var(target) + 1e-6)   per patch, when norm_pix_loss
        loss = sum_{n,l} mask[n,l] * mean_k (pred - t)^2 / sum_{n,l} mask[n,l]

    Args:
        pred: (N, L, P) the decoder's pixels of every patch (P = patch_size^2 x channels).
        target: (N, L, P) the image's patches (patchified in the same order).
        mask: (N, L) 1 for a masked (removed) patch, 0 for a visible one; only masked patches count.
        norm_pix_loss: normalise each target patch by its mean and (unbiased) variance (the paper's
            default, which improves representations).
    """
    pred, target = _tokens(pred, target, ("pred", "target"))
    if mask.shape != pred.shape[:2]:
        raise ShapeError(f"mask must be (batch, tokens) = {tuple(pred.shape[:2])}; got {tuple(mask.shape)}")
    with float32_math(pred.device):
        t = target.detach().float()
        if norm_pix_loss:
            t = (t - t.mean(dim=-1, keepdim=True)) / (t.var(dim=-1, keepdim=True) + 1.0e-6) ** 0.5
        per_patch = (pred.float() - t).pow(2).mean(dim=-1)
        mask = mask.float()
        return (per_patch * mask).sum() / mask.sum()


def ijepa_loss(pred: torch.Tensor, target: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
    """I-JEPA's regression of the target blocks' representations (Assran et al. 2023, arXiv 2301.08243,
    eq. 1; the authors' ``src/train.py`` uses ``F.smooth_l1_loss``): the smooth L1 (Huber, ``beta``)
    distance between the predictor's output and the target encoder's layer-normalised patch tokens,
    averaged over every target token and feature.

    Args:
        pred: (M, K, D) the predictor's tokens of the target blocks (M = blocks x batch).
        target: (M, K, D) the target encoder's tokens at the same positions (gradient not propagated).
    """
    pred, target = _tokens(pred, target, ("pred", "target"))
    with float32_math(pred.device):
        return F.smooth_l1_loss(pred.float(), target.detach().float(), beta=beta)
