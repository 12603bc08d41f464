"""Input checks for the probes: features (N, K) finite, labels/targets aligned with them."""

from __future__ import annotations

import torch

from selfsup.errors import NonFiniteError, SelfsupError, ShapeError
from selfsup.quality._validate import as_tensor, check_2d

__all__ = ["check_features", "check_labels", "check_targets"]


def check_features(x_tr, x_te, min_train: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate train/test features; returns both as tensors on the train features' device."""
    a = check_2d(x_tr, "x_tr", min_rows=min_train)
    b = check_2d(x_te, "x_te", min_rows=1)
    if a.shape[1] != b.shape[1]:
        raise ShapeError(
            f"x_tr has {a.shape[1]} features but x_te has {b.shape[1]}; embed both splits with the same "
            "model and layer."
        )
    return a, b.to(a.device)


def _check_length(y: torch.Tensor, x: torch.Tensor, yname: str, xname: str) -> None:
    if y.shape[0] != x.shape[0]:
        raise ShapeError(
            f"{yname} has {y.shape[0]} entries but {xname} has {x.shape[0]} rows; give one label/target "
            "per sample, in the same order."
        )


def check_labels(y, x: torch.Tensor, yname: str, xname: str) -> torch.Tensor:
    """Validate class labels: 1-D (or (N, 1)), integer, one per row of ``x``; returns int64 on x's device."""
    t = as_tensor(y, yname)
    if t.ndim == 2 and t.shape[1] == 1:
        t = t[:, 0]
    if t.ndim != 1:
        raise ShapeError(f"{yname} must be a 1-D vector of class labels; got shape {tuple(t.shape)}.")
    if t.is_floating_point():
        raise SelfsupError(
            f"{yname} has dtype {t.dtype}, but class labels must be integers; convert with y.long() "
            "(for continuous targets use ridge_probe)."
        )
    _check_length(t, x, yname, xname)
    return t.to(device=x.device, dtype=torch.int64)


def check_targets(y, x: torch.Tensor, yname: str, xname: str) -> torch.Tensor:
    """Validate regression targets, (N,) or (N, D) and finite; returns (N, D) float64 on x's device."""
    t = as_tensor(y, yname)
    if t.ndim == 1:
        t = t[:, None]
    if t.ndim != 2:
        raise ShapeError(f"{yname} must be (N,) or (N, n_outputs); got shape {tuple(t.shape)}.")
    if t.shape[1] < 1:
        raise ShapeError(f"{yname} has no output columns; pass at least one target per sample.")
    _check_length(t, x, yname, xname)
    t = t.to(device=x.device if x.device.type != "mps" else "cpu", dtype=torch.float64)
    if not bool(torch.isfinite(t).all()):
        raise NonFiniteError(f"{yname} contains NaN or Inf; regression targets must be finite.")
    return t
