"""LiDAR (Thilak et al., ICLR 2024): effective rank of the linear-discriminant matrix of multi-view data.

Treats each source sample as a class whose members are its q augmented views: the metric is large when
views of one sample agree (small within-sample scatter) while samples differ (large between-sample
scatter), in many directions at once. It needs the view recipe, so it is label-free but augmentation-aware.
"""

from __future__ import annotations

import torch

from selfsup.errors import SelfsupError, ShapeError
from selfsup.quality._validate import as_tensor, check_finite, to_float64

__all__ = ["lidar", "lidar_eigenvalues"]


def _views(z, n_views: int | None) -> torch.Tensor:
    """Validate and reshape ``z`` to (n, q, K)."""
    t = as_tensor(z, "z")
    if t.ndim == 3:
        n, q, _ = t.shape
        if n_views is not None and n_views != q:
            raise ShapeError(
                f"z has shape {tuple(t.shape)} = (n, q, K) with q={q} views, but n_views={n_views}; "
                "pass n_views=None or the matching number."
            )
    elif t.ndim == 2:
        if n_views is None:
            raise ShapeError(
                f"z has shape {tuple(t.shape)}: a 2-D input needs n_views (rows i*q .. i*q + q - 1 are the "
                "q views of sample i), or pass a 3-D array of shape (n, q, K)."
            )
        if int(n_views) != n_views or n_views < 1:
            raise SelfsupError(f"n_views must be a positive integer; got {n_views!r}.")
        q = int(n_views)
        if t.shape[0] % q:
            raise ShapeError(
                f"z has {t.shape[0]} rows, not a multiple of n_views={q}; rows must be sample-major "
                "(the q views of sample i in rows i*q .. i*q + q - 1)."
            )
        t = t.reshape(t.shape[0] // q, q, t.shape[1])
    else:
        raise ShapeError(
            f"z must be (n, q, K) or sample-major (n * q, K) with n_views=q; got shape {tuple(t.shape)}."
        )
    n, q, k = t.shape
    if q < 2:
        raise ShapeError(f"LiDAR needs at least 2 views per sample (within-sample scatter); got q={q}.")
    if n < 2:
        raise ShapeError(f"LiDAR needs at least 2 source samples (between-sample scatter); got n={n}.")
    if k < 1:
        raise ShapeError("z has no features (K=0); pass non-empty embeddings.")
    check_finite(t, "z")
    return t


def lidar_eigenvalues(z, n_views: int | None = None, delta: float = 1e-4) -> torch.Tensor:
    """Eigenvalues (descending, float64, clamped at 0) of ``Sw^-1/2 Sb Sw^-1/2``; see :func:`lidar`."""
    if not delta >= 0:
        raise SelfsupError(f"LiDAR delta must be >= 0 (the paper uses 1e-4); got {delta}.")
    t = to_float64(_views(z, n_views))
    n, q, k = t.shape
    mu_i = t.mean(dim=1)  # (n, K) per-sample means
    dm = mu_i - mu_i.mean(dim=0, keepdim=True)
    sb = dm.T @ dm / (n - 1)
    r = (t - mu_i[:, None, :]).reshape(n * q, k)
    sw = r.T @ r / (n * (q - 1))
    sw = sw + delta * torch.eye(k, dtype=sw.dtype, device=sw.device)
    chol, info = torch.linalg.cholesky_ex(sw)
    if int(info) != 0:
        raise SelfsupError(
            "the within-sample scatter Sw is singular (views of a sample are identical along some "
            f"direction) and delta={delta} does not regularise it; use delta > 0 (the paper uses 1e-4)."
        )
    # Sw^-1/2 Sb Sw^-1/2 is similar to L^-1 Sb L^-T (Sw = L L^T): same eigenvalues, cheaper and stabler.
    a = torch.linalg.solve_triangular(chol, sb, upper=False)
    m = torch.linalg.solve_triangular(chol, a.T, upper=False)
    m = (m + m.T) / 2
    return torch.linalg.eigvalsh(m).flip(0).clamp_min(0.0)


def lidar(z, n_views: int | None = None, delta: float = 1e-4, eps: float = 1e-8) -> float:
    """LiDAR (Thilak et al., ICLR 2024) of multi-view embeddings.

    Args:
        z: either (n, q, K), or (n * q, K) sample-major (rows ``i*q .. i*q + q - 1`` are the q views of
            sample i) together with ``n_views=q``. Torch tensor or numpy array, any real dtype/device.
        n_views: q, required for 2-D input.
        delta: ridge added to the within-sample scatter (paper: 1e-4). It is absolute, so the score
            depends on the embeddings' scale when their within-sample scatter is comparable to delta.
        eps: added to each eigenvalue before normalising (paper: 1e-8).

    Normalisation as in the paper, in float64, with mu_i the mean of sample i's views and mu the mean of
    the mu_i:

    - ``Sb = 1/(n-1) sum_i (mu_i - mu)(mu_i - mu)^T`` (covariance of the per-sample means),
    - ``Sw = 1/(n (q-1)) sum_i sum_j (z_ij - mu_i)(z_ij - mu_i)^T + delta I`` (mean within-sample covariance),
    - lambda = eigenvalues of ``Sw^-1/2 Sb Sw^-1/2`` (computed as those of ``L^-1 Sb L^-T``, Sw = L L^T),
    - ``p = (lambda + eps) / sum(lambda + eps)``, ``LiDAR = exp(-sum p log p)``.

    Reading it: LiDAR is an effective rank, so it is blind to a common scale. Views that disagree
    equally in every direction do not lower it (Sb and Sw scale together, up to delta); it is high when,
    relative to the view noise, samples differ along many directions, and low when they differ along few
    or the views disagree more in some directions than in others. Since the per-sample means of q views
    keep 1/q of the view noise, pure noise (no sample signal) scores high, like RankMe.

    Returns:
        A float in [1, K]: high when views agree and samples differ along many directions.
    """
    if not eps >= 0:
        raise SelfsupError(f"LiDAR eps must be >= 0 (the paper uses 1e-8); got {eps}.")
    lam = lidar_eigenvalues(z, n_views=n_views, delta=delta)
    total = lam + eps
    s = float(total.sum())
    if s <= 0:
        return 0.0
    p = total / s
    return float(torch.exp(-torch.xlogy(p, p).sum()))
