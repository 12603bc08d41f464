"""Helpers shared by the probes: standardisation and label indexing."""

from __future__ import annotations

import torch

from selfsup.errors import SelfsupError


def standardize(x_tr: torch.Tensor, x_te: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale both splits with the training mean and population std (scikit-learn's StandardScaler).

    Constant training features (std 0) are only centred, as StandardScaler does.
    """
    mean = x_tr.mean(dim=0, keepdim=True)
    std = x_tr.std(dim=0, correction=0, keepdim=True)
    tiny = 10 * torch.finfo(std.dtype).eps * mean.abs().clamp_min(1.0)
    std = torch.where(std > tiny, std, torch.ones_like(std))
    return (x_tr - mean) / std, (x_te - mean) / std


def class_index(y_tr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted distinct training labels and each training label's index among them (needs >= 2 classes)."""
    classes = torch.unique(y_tr, sorted=True)
    if classes.numel() < 2:
        raise SelfsupError(
            f"the training labels hold {classes.numel()} distinct class(es); a classification probe needs "
            "at least 2. Check the labels or the train split."
        )
    return classes, torch.searchsorted(classes, y_tr)


def compute_dtype(x: torch.Tensor, requested: torch.dtype) -> torch.dtype:
    """``requested``, except float32 on backends without float64 (MPS)."""
    if requested == torch.float64 and x.device.type == "mps":
        return torch.float32
    return requested
