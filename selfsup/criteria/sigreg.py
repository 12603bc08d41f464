"""SIGReg and LeJEPA (Balestriero & LeCun 2025, arXiv 2511.08544): push embeddings towards an isotropic
Gaussian by testing random 1-D projections of them against N(0, 1) with the Epps-Pulley statistic.

Checked against the authors' public code, rbalestr-lab/lejepa: ``lejepa/univariate/epps_pulley.py``
(t_max 3, 17 points, trapezoid on [0, t_max] with doubled weights, the N(0, 1) window exp(-t^2/2), the
statistic times N and the characteristic-function means all-reduced over processes),
``lejepa/multivariate/slicing.py`` (Gaussian directions normalised to unit length, a seed from the global
step shared by every rank, the mean over directions) and ``MINIMAL.md`` (SIGReg per view on the
(views, batch, dim) projections; prediction loss ``(mean of the views - view)^2``; the convex combination
``(1 - lambda) * prediction + lambda * SIGReg``). The README of that repository uses 1024 directions.
The paper's equation numbers are not cited: its text was not available offline to check them against.
"""

from __future__ import annotations

import torch

from selfsup.criteria._common import (
    all_reduce_sum,
    check_embeddings,
    check_positive,
    float32_math,
    global_mean,
    is_distributed,
)
from selfsup.errors import SelfsupError, ShapeError
from selfsup.options import int_at_least

__all__ = ["lejepa_loss", "lejepa_mix", "lejepa_terms", "sigreg_loss"]

#: Elements of the (batch, directions, t) grid evaluated at once; bounds the memory of large batches.
_CHUNK_ELEMENTS = 1 << 23


def _check_views(z: object, collective: bool, name: str = "z") -> torch.Tensor:
    """(N, K) or (V, N, K) embeddings, N >= 2, finite; returned as (V, N, K) in float32 (float64 kept)."""
    if isinstance(z, torch.Tensor) and z.ndim == 3:
        check_embeddings(z.reshape(-1, z.shape[-1]), name, collective=collective)
        if z.shape[1] < 2:
            raise ShapeError(f"{name} has {z.shape[1]} sample(s) per view (shape {tuple(z.shape)}); need 2+.")
        views = z
    elif isinstance(z, torch.Tensor) and z.ndim == 2:
        check_embeddings(z, name, collective=collective)
        views = z.unsqueeze(0)
    else:
        got = f"shape {tuple(z.shape)}" if isinstance(z, torch.Tensor) else type(z).__name__
        raise ShapeError(f"{name} must be (batch, dim) or (views, batch, dim) embeddings; got {got}.")
    return views.double() if views.dtype == torch.float64 else views.float()


def random_directions(dim: int, n_slices: int, seed: int, device, dtype=torch.float32) -> torch.Tensor:
    """``dim x n_slices`` unit directions, Gaussian then normalised, from a generator seeded with ``seed``
    on ``device``: every process that passes the same seed (the global step) draws the same directions."""
    gen = torch.Generator(device=device).manual_seed(int(seed))
    a = torch.randn(dim, n_slices, generator=gen, device=device, dtype=dtype)
    return a / a.norm(dim=0, keepdim=True)


def epps_pulley_weights(t_max: float, n_points: int, device, dtype=torch.float32):
    """Nodes t on [0, t_max], the N(0, 1) characteristic function exp(-t^2/2) at them, and the trapezoid
    weights of the integral over [-t_max, t_max] (doubled by the symmetry of |phi_N - phi|^2) times the
    window exp(-t^2/2)."""
    t = torch.linspace(0.0, t_max, n_points, device=device, dtype=dtype)
    dt = t_max / (n_points - 1)
    w = torch.full((n_points,), 2 * dt, device=device, dtype=dtype)
    w[0] = w[-1] = dt
    phi = torch.exp(-0.5 * t.square())
    return t, phi, w * phi


def _cf_sums(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Sums over the batch of cos(t x) and sin(t x): (2, V, M, T) from projections x of shape (V, N, M)."""
    v, n, m = x.shape
    step = max(1, _CHUNK_ELEMENTS // max(1, n * t.numel()))
    parts = []
    for s in range(0, m, step):
        xt = x[:, :, s : s + step, None] * t
        parts.append(torch.stack([xt.cos().sum(1), xt.sin().sum(1)]))
    return torch.cat(parts, dim=2)


def sigreg_loss(
    z: torch.Tensor,
    n_slices: int = 1024,
    t_max: float = 3.0,
    n_points: int = 17,
    seed: int = 0,
    gather_distributed: bool = False,
) -> torch.Tensor:
    """Sketched Isotropic Gaussian Regularisation (LeJEPA, Balestriero & LeCun 2025, sec. 4)::

        T(a) = N * integral_{-t_max}^{t_max} |phi_N(t; a) - exp(-t^2/2)|^2 exp(-t^2/2) dt
        phi_N(t; a) = (1/N) sum_n exp(i t a.z_n),        SIGReg = mean over directions a (and views)

    the Epps-Pulley statistic of the projections ``a . z_n`` on ``n_slices`` random unit directions, by the
    trapezoid rule on ``n_points`` nodes of [0, t_max], doubled by symmetry. Under the null (z ~ N(0, I))
    its expectation is integral (1 - exp(-t^2)) exp(-t^2/2) dt, about 1.05 for t_max = 3, whatever N.

    Args:
        z: (N, K) embeddings, or (V, N, K) for V views: the statistic of each view, averaged over views.
        n_slices: number of random directions (the authors' README: 1024; their minimal example: 256).
        t_max, n_points: integration range [0, t_max] and trapezoid nodes (authors' code: 3 and 17).
        seed: seed of the directions; pass the global step so they change every step and are identical on
            every process.
        gather_distributed: the statistic of the batch of all torch.distributed processes: the
            characteristic-function sums are all-reduced and N is the global batch (gradients as
            :func:`selfsup.criteria.gather`: DDP's averaging gives the single-process gradient).
    """
    views = _check_views(z, gather_distributed)
    n_slices = int_at_least("n_slices", n_slices, 1)
    n_points = int_at_least("n_points", n_points, 2)
    t_max = check_positive("t_max", t_max)
    with float32_math(views.device):
        dtype, device = views.dtype, views.device
        t, phi, weights = epps_pulley_weights(t_max, n_points, device, dtype)
        x = views @ random_directions(views.shape[-1], n_slices, seed, device, dtype)  # (V, N, M)
        sums, n = _cf_sums(x, t), views.new_tensor(float(views.shape[1]))
        if gather_distributed and is_distributed():
            sums, n = all_reduce_sum(sums), all_reduce_sum(n)
        cos_mean, sin_mean = sums / n
        err = (cos_mean - phi).square() + sin_mean.square()  # (V, M, T)
        return (err @ weights).mean() * n


def lejepa_terms(
    z: torch.Tensor,
    n_global: int,
    n_slices: int = 1024,
    t_max: float = 3.0,
    n_points: int = 17,
    seed: int = 0,
    gather_distributed: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """LeJEPA's two terms (prediction, SIGReg) of (V, N, K) projections whose first ``n_global`` views are
    the global ones: prediction = mean over views, samples and dimensions of ``(z_v - mean_g z_g)^2``, each
    view against the mean of the global views (paper sec. 5); SIGReg per view (:func:`sigreg_loss`).
    """
    views = _check_views(z, gather_distributed)
    if views.shape[0] < 2 or z.ndim != 3:
        raise ShapeError(f"LeJEPA needs (views, batch, dim) projections of >= 2 views; got {tuple(z.shape)}.")
    n_global = int_at_least("n_global", n_global, 1)
    if not 2 <= n_global <= views.shape[0]:
        raise SelfsupError(
            f"LeJEPA needs at least 2 global views among the {views.shape[0]} views; got n_global={n_global}."
        )
    with float32_math(views.device):
        center = views[:n_global].mean(0)
        local_sum = (views - center).square().mean((0, 2)).sum()
        prediction = global_mean(local_sum, views.shape[1], gather_distributed)
    sigreg = sigreg_loss(views, n_slices, t_max, n_points, seed, gather_distributed)
    return prediction, sigreg


def lejepa_loss(
    z: torch.Tensor,
    n_global: int,
    lambd: float = 0.05,
    n_slices: int = 1024,
    t_max: float = 3.0,
    n_points: int = 17,
    seed: int = 0,
    gather_distributed: bool = False,
) -> torch.Tensor:
    """LeJEPA (Balestriero & LeCun 2025, arXiv 2511.08544, sec. 5): ``(1 - lambd) * prediction + lambd *
    SIGReg`` of (V, N, K) projections, the first ``n_global`` views global (see :func:`lejepa_terms`).

    ``lambd`` is the method's one hyper-parameter: 0.05, the top of the 0.02-0.05 the paper recommends (it
    explores 0.01-0.1; the authors' minimal example uses 0.02). No stop-gradient, predictor or teacher.
    """
    prediction, sigreg = lejepa_terms(z, n_global, n_slices, t_max, n_points, seed, gather_distributed)
    return lejepa_mix(prediction, sigreg, lambd)


def lejepa_mix(prediction, sigreg, lambd: float):
    """LeJEPA's convex combination ``(1 - lambd) * prediction + lambd * sigreg`` (tensors or numbers)."""
    lambd = check_positive("lambd", lambd, allow_zero=True)
    if lambd > 1:
        raise SelfsupError(f"lambd weighs SIGReg against prediction and must lie in [0, 1]; got {lambd!r}.")
    return (1 - lambd) * prediction + lambd * sigreg
