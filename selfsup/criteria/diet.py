"""DIET: the sample index as the class of a (bias-free linear) classification head."""

from __future__ import annotations

import math
import numbers

import torch
import torch.nn.functional as F

from selfsup.criteria._common import check_embeddings, float32_math
from selfsup.errors import SelfsupError, ShapeError

__all__ = ["diet_loss"]


def diet_loss(logits: torch.Tensor, index: torch.Tensor, label_smoothing: float = 0.8) -> torch.Tensor:
    """DIET (Ibrahim et al., "Datum-Index as Target", arXiv 2302.10260): cross-entropy with label
    smoothing of the head's logits against each sample's index in the training set::

        loss = mean_b CE_smooth(logits_b, index_b),  target = (1 - s) onehot(index_b) + s / N_train

    ``label_smoothing=0.8`` is the value recalled from the paper (not verified against its text).

    Args:
        logits: (B, N_train) output of the bias-free linear head over N_train >= 2 classes.
        index: (B,) integer index of each sample in [0, N_train).
        label_smoothing: s in [0, 1).
    """
    logits = check_embeddings(logits, "logits", min_rows=1)
    n_train = logits.shape[1]
    if n_train < 2:
        raise ShapeError(
            f"logits must have one column per training sample (at least 2); got shape {tuple(logits.shape)}."
        )
    if not isinstance(index, torch.Tensor):
        raise SelfsupError(f"index must be a torch.Tensor of sample indices; got a {type(index).__name__}.")
    if index.dtype == torch.bool or index.is_floating_point() or index.is_complex():
        raise SelfsupError(f"index must be an integer tensor (e.g. torch.long); got dtype {index.dtype}.")
    if index.ndim != 1 or index.shape[0] != logits.shape[0]:
        raise ShapeError(
            f"index must be 1-D with one entry per row of logits ({logits.shape[0]}); "
            f"got shape {tuple(index.shape)}."
        )
    if index.device != logits.device:
        raise SelfsupError(f"index is on {index.device} but logits are on {logits.device}.")
    low, high = int(index.min()), int(index.max())
    if low < 0 or high >= n_train:
        raise SelfsupError(
            f"index values must lie in [0, {n_train}) (logits has {n_train} columns, one per training "
            "sample); "
            f"got values in [{low}, {high}]. Size the head to the training set."
        )
    if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, numbers.Real):
        raise SelfsupError(f"label_smoothing must be a number in [0, 1); got {label_smoothing!r}.")
    if not (math.isfinite(label_smoothing) and 0.0 <= label_smoothing < 1.0):
        raise SelfsupError(f"label_smoothing must be in [0, 1); got {label_smoothing!r}.")
    with float32_math(logits.device):
        return F.cross_entropy(logits, index.long(), label_smoothing=float(label_smoothing))
