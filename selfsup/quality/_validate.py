"""Input checks shared by the quality metrics and the probes.

Every metric accepts a torch tensor or a numpy array (anything :func:`numpy.asarray` understands), of any
real dtype (float16, bfloat16, float32, float64, integers), on any device. Bad input raises a
:class:`~selfsup.errors.SelfsupError` subclass whose message names the problem and the fix.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from selfsup.errors import NonFiniteError, SelfsupError, ShapeError

__all__ = ["as_tensor", "check_finite", "check_2d", "float64_device", "to_float64"]


def as_tensor(x: Any, name: str = "z") -> torch.Tensor:
    """Return ``x`` as a detached real-valued torch tensor (no copy when possible, dtype kept)."""
    if isinstance(x, torch.Tensor):
        t = x.detach()
    else:
        try:
            arr = np.asarray(x)
        except Exception as exc:  # pragma: no cover - exotic inputs
            raise SelfsupError(
                f"{name} could not be converted to an array ({exc}); pass a torch tensor or a numpy array."
            ) from exc
        if arr.dtype == object or arr.dtype.kind not in "biuf":
            raise SelfsupError(
                f"{name} has dtype {arr.dtype}, which is not a real number type; "
                "pass a float array such as np.asarray(z, dtype=np.float32)."
            )
        # torch.from_numpy rejects negative strides and warns on read-only arrays (memory maps): copy those.
        if not arr.flags.writeable or any(st < 0 for st in arr.strides):
            arr = arr.copy()
        t = torch.from_numpy(arr)
    if t.is_complex():
        raise SelfsupError(
            f"{name} is complex ({t.dtype}); the metrics need real embeddings. Pass z.real or z.abs()."
        )
    return t


#: Largest magnitude :func:`check_magnitude` accepts: sums of N x K squares stay finite in float64.
MAX_ABS = 1e150


def check_magnitude(t: torch.Tensor, name: str = "z") -> None:
    """Refuse finite values whose squares overflow float64 (the covariance-based metrics would fail)."""
    top = float(t.abs().max()) if t.numel() else 0.0
    if top > MAX_ABS:
        raise NonFiniteError(
            f"{name} holds values up to {top:.3g}, too large for the metrics (|z| must stay below "
            f"{MAX_ABS:.0e}); rescale the embeddings, e.g. z / z.abs().max()."
        )


def check_finite(t: torch.Tensor, name: str = "z") -> None:
    """Raise :class:`NonFiniteError` when ``t`` holds NaN or Inf, saying how many and where."""
    if not (t.is_floating_point()):
        return
    finite = torch.isfinite(t)
    if bool(finite.all()):
        return
    n_nan = int(torch.isnan(t).sum())
    n_inf = int(torch.isinf(t).sum())
    first = torch.nonzero(~finite)[0].tolist()
    raise NonFiniteError(
        f"{name} contains {n_nan} NaN and {n_inf} Inf value(s) (first at index {tuple(first)}); "
        "embeddings must be finite. Check the model for divergence (a NaN loss) or drop those rows "
        "before computing metrics."
    )


def check_2d(x: Any, name: str = "z", min_rows: int = 2, finite: bool = True) -> torch.Tensor:
    """Validate an (N, K) embedding matrix: 2-D, N >= ``min_rows``, K >= 1, all finite.

    Returns the tensor in its original dtype and device (use :func:`to_float64` to compute with it).
    ``finite=False`` skips the finiteness scan (for callers that detect non-finite values another way
    and then call :func:`check_finite`).
    """
    t = as_tensor(x, name)
    if t.ndim != 2:
        raise ShapeError(
            f"{name} must be a 2-D array of shape (n_samples, n_features); got shape {tuple(t.shape)}. "
            + (
                "For a single embedding vector use z.reshape(1, -1) and add more samples; "
                if t.ndim < 2
                else "Flatten the extra axes, e.g. z.reshape(len(z), -1); "
            )
            + "for multi-view data (n, q, K) reshape to (n * q, K)."
        )
    n, k = t.shape
    if n < min_rows:
        raise ShapeError(
            f"{name} has N={n} sample(s) but at least {min_rows} are needed; embed more samples "
            "(the RankMe paper uses 25,600 and N should be well above the embedding dimension)."
        )
    if k < 1:
        raise ShapeError(f"{name} has shape {tuple(t.shape)}, no features (K=0); pass non-empty embeddings.")
    if finite:
        check_finite(t, name)
    return t


def float64_device(t: torch.Tensor) -> torch.device:
    """The device to compute float64 on: the tensor's own, except backends without float64 (MPS) -> CPU."""
    return torch.device("cpu") if t.device.type == "mps" else t.device


def to_float64(t: torch.Tensor) -> torch.Tensor:
    """``t`` as float64 on a float64-capable device (no copy when it already is)."""
    return t.to(device=float64_device(t), dtype=torch.float64)
