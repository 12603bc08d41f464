"""Spectral, label-free quality metrics of an embedding matrix Z (N samples x K dimensions).

All computations run in float64 on the input's device (MPS, which lacks float64, falls back to the CPU).
Inputs may be torch tensors or numpy arrays of any real dtype, float16 included.

- :func:`rankme`: smooth effective rank of Z (Garrido et al., arXiv 2210.02885), with a fast Gram path.
- :func:`alpha_req`: power-law decay exponent of the covariance spectrum (Agrawal et al., NeurIPS 2022).
- :func:`nesum`, :func:`stable_rank`, :func:`participation_ratio`: other effective-dimension measures.
- :func:`collapse_std`: per-dimension std of L2-normalised embeddings (SimSiam's collapse indicator).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

from selfsup.errors import SelfsupError
from selfsup.quality._validate import check_2d, check_finite, float64_device, to_float64

__all__ = [
    "RankMeInfo",
    "alpha_req",
    "collapse_std",
    "covariance_eigenvalues",
    "nesum",
    "participation_ratio",
    "rankme",
    "rankme_info",
    "rankme_spectrum",
    "singular_values",
    "stable_rank",
]

#: float64 unit roundoff (half the machine epsilon).
UNIT_ROUNDOFF = float(np.finfo(np.float64).eps) / 2
#: The Gram path is tried only when max(N, K) >= GRAM_MIN_ASPECT * min(N, K); below that it is no faster.
GRAM_MIN_ASPECT = 2.0
#: Default tolerance on the estimated relative RankMe error of the Gram path (``method="auto"``).
DEFAULT_RTOL = 1e-7
_METHODS = ("auto", "gram", "svd")
#: Torch threads for the CPU eigensolver of the Gram matrix (None: leave torch's setting); see _eigvalsh.
EIGH_THREADS: int | None = 1


# ----------------------------------------------------------------------------------------------------
# building blocks
# ----------------------------------------------------------------------------------------------------
def _gram(z: torch.Tensor, chunk_bytes: int = 64 * 2**20) -> torch.Tensor:
    """Float64 Gram matrix of the smaller side of ``z``: Z^T Z (K x K) when N >= K, else Z Z^T (N x N).

    Rows of the long side are converted to float64 chunk by chunk (bounded memory) and accumulated.
    On the CPU it uses BLAS ``dsyrk`` (half the flops of a general matrix product, so about twice as
    fast as ``Z.T @ Z``); only the upper triangle is then valid. Elsewhere it uses a torch matmul.
    """
    a = z if z.shape[0] >= z.shape[1] else z.T  # (L, m), Gram = a^T a
    length, m = a.shape
    rows = max(256, chunk_bytes // (8 * m))
    device = float64_device(a)
    if device.type == "cpu":
        from scipy.linalg import blas

        g = None
        for start in range(0, length, rows):
            c = a[start : start + rows].to(device=device, dtype=torch.float64).contiguous().numpy()
            # dsyrk(trans=0) computes x @ x.T; with x = c.T (Fortran-contiguous, no copy) that is c.T @ c.
            if g is None:
                g = blas.dsyrk(1.0, c.T, trans=0, lower=0)
            else:
                g = blas.dsyrk(1.0, c.T, beta=1.0, c=g, trans=0, lower=0, overwrite_c=1)
        return torch.from_numpy(g)
    g = torch.zeros(m, m, dtype=torch.float64, device=device)
    for start in range(0, length, rows):
        c = a[start : start + rows].to(device=device, dtype=torch.float64)
        g.addmm_(c.T, c)
    return g


def _eigvalsh(g: torch.Tensor) -> torch.Tensor:
    """Ascending eigenvalues of the symmetric ``g`` (upper triangle read).

    On the CPU the eigensolver runs with ``EIGH_THREADS`` torch threads: its tridiagonal reduction is
    memory-bound and synchronises threads at every column, so on few cores it is no faster with more
    threads and, when the cores are shared with other processes, several times slower.
    """
    if g.device.type != "cpu" or EIGH_THREADS is None or torch.get_num_threads() <= EIGH_THREADS:
        return torch.linalg.eigvalsh(g, UPLO="U")
    previous = torch.get_num_threads()
    torch.set_num_threads(EIGH_THREADS)
    try:
        return torch.linalg.eigvalsh(g, UPLO="U")
    finally:
        torch.set_num_threads(previous)


def _gram_eigenvalues(z: torch.Tensor) -> torch.Tensor:
    """Eigenvalues (descending, clamped at 0) of the float64 Gram matrix of the smaller side of ``z``."""
    return _eigvalsh(_gram(z)).flip(0).clamp_min(0.0)


def _entropy_rank(sigma: torch.Tensor, eps: float) -> float:
    """exp(entropy) of p_k = sigma_k / sum(sigma) + eps (not renormalised), natural log; 0 for sigma == 0."""
    total = sigma.sum()
    if float(total) <= 0.0:
        return 0.0
    p = sigma / total + eps
    return float(torch.exp(-torch.xlogy(p, p).sum()))


def _gram_error_estimate(lam: torch.Tensor, length: int, eps: float) -> float:
    """Estimated bound on the relative error of RankMe computed from the Gram eigenvalues ``lam``.

    ``lam``: descending, clamped float64 eigenvalues of the m x m Gram matrix; ``length``: the summation
    length max(N, K) of its entries.

    With m = min(N, K) and L = max(N, K), the Gram path costs
    L m^2 flops (BLAS syrk) + O(m^3) against about 2 L m^2 + O(m^3), at lower BLAS efficiency, for the
    SVD. It loses accuracy on small singular values, because it squares them. ``"auto"`` uses the SVD when

    1. L < 2 m (no speed-up to be had), or
    2. the following a-posteriori error estimate, computed from the Gram spectrum itself, exceeds rtol
       (u = 2^-53 is the float64 unit roundoff, lambda_hat the computed Gram eigenvalues):

       - eigenvalue error
         ``|lambda_hat_k - lambda_k| <= delta_k = u (sqrt(m) lambda_max + sqrt(L) lambda_k)``.
         The first term is the backward error of the symmetric eigensolver, ||E|| <= p(m) u ||G||, with
         the realistic growth p(m) = sqrt(m) instead of the worst-case O(m); the second is the summation
         error of the Gram entries (random-rounding model: sqrt(L) u, relative).
       - singular-value error ``dsigma_k = min(sqrt(delta_k), delta_k / sigma_hat_k)``, exact since
         ``|sqrt(a) - sqrt(b)| = |a - b| / (sqrt(a) + sqrt(b))``.
       - with S = sum sigma_hat and dS = sum dsigma, the error of sigma_k / S is at most
         ``dq_k = (dsigma_k + (sigma_hat_k / S) dS) / (S - dS)``.
       - entropy, to first order, ``|dH| <= sum_k |log p_k + 1| dq_k``; the relative RankMe error is
         at most ``exp(|dH|) - 1``.

    The estimate is not a worst-case proof (the worst-case eigensolver constant is O(m), not sqrt(m)),
    but it adds all errors with aligned signs; in the tests and the benchmark the observed error of the
    Gram path is two or more orders of magnitude below it. Pass ``method="svd"`` for the reference
    computation; :func:`rankme_info` tells which method ran and its error estimate.
    """
    m = lam.numel()
    lam_max = float(lam[0])
    if lam_max <= 0.0:
        return 0.0
    # absolute eigenvalue error: eigensolver backward error + Gram summation (relative) error
    delta = UNIT_ROUNDOFF * (math.sqrt(m) * lam_max + math.sqrt(length) * lam)
    sigma = lam.sqrt()
    # |sqrt(a) - sqrt(b)| = |a - b| / (sqrt(a) + sqrt(b)) <= min(sqrt(|a - b|), |a - b| / sqrt(a_hat))
    dsigma = torch.where(
        sigma > 0, torch.minimum(delta.sqrt(), delta / sigma.clamp_min(1e-300)), delta.sqrt()
    )
    s_sum, ds_sum = float(sigma.sum()), float(dsigma.sum())
    if ds_sum >= s_sum:
        return math.inf
    q = sigma / s_sum
    dq = (dsigma + q * ds_sum) / (s_sum - ds_sum)  # |d(sigma_k / S)|
    p = q + eps
    # dH = -sum (log p_k + 1) dp_k; where p_k == 0 (eps = 0) bound -x log x by dq (|log dq| + 1)
    weight = torch.where(p > 0, (torch.log(p.clamp_min(1e-300)) + 1).abs(), (torch.log(dq) - 1).abs())
    dh = float((weight * dq).sum())
    return math.expm1(dh)  # |RankMe_hat / RankMe - 1| <= exp(|dH|) - 1


# ----------------------------------------------------------------------------------------------------
# RankMe
# ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RankMeInfo:
    """RankMe value and how it was computed.

    Attributes:
        value: the RankMe score (between 1 and min(N, K); 0 for an all-zero matrix).
        method: ``"gram"`` (eigenvalues of the float64 Gram matrix) or ``"svd"`` (float64 SVD).
        error_estimate: estimated bound on the relative error of the Gram path (None when not computed).
        reason: why this method was used (for ``method="auto"``).
        n, k: the shape of Z.
    """

    value: float
    method: str
    error_estimate: float | None
    reason: str
    n: int
    k: int

    def to_dict(self) -> dict:
        return asdict(self)


def rankme_info(z, eps: float = 1e-7, method: str = "auto", rtol: float = DEFAULT_RTOL) -> RankMeInfo:
    """RankMe of ``z`` together with the method used and the Gram path's error estimate.

    Same arguments as :func:`rankme`; returns a :class:`RankMeInfo`.
    """
    return rankme_spectrum(z, eps=eps, method=method, rtol=rtol)[0]


def rankme_spectrum(
    z, eps: float = 1e-7, method: str = "auto", rtol: float = DEFAULT_RTOL
) -> tuple[RankMeInfo, torch.Tensor]:
    """:func:`rankme_info` and the float64 singular values (descending) it was computed from.

    Lets a caller that also needs the spectrum (the stable rank, a plot) skip a second decomposition.
    """
    if method not in _METHODS:
        raise SelfsupError(f"unknown RankMe method '{method}'; use one of {', '.join(_METHODS)}.")
    if not eps >= 0:
        raise SelfsupError(f"RankMe eps must be >= 0 (the paper uses 1e-7); got {eps}.")
    # The finiteness scan is deferred: on the Gram path a NaN/Inf in column j makes G_jj = sum_i z_ij^2
    # non-finite, which is checked for free; the full scan (with its detailed message) runs only then.
    t = check_2d(z, "z", finite=False)
    n, k = t.shape
    m, length = min(n, k), max(n, k)
    reason = f"method='{method}' requested"
    if method == "auto":
        if length < GRAM_MIN_ASPECT * m:
            method = "svd"
            reason = f"max(N, K) < {GRAM_MIN_ASPECT:g} min(N, K): the Gram path brings no speed-up"
        else:
            method = "gram"
            reason = "auto"
    bound = None
    if method == "gram":
        g = _gram(t)
        overflow = not bool(torch.isfinite(g.diagonal()).all())
        if overflow:
            check_finite(t, "z")  # raises NonFiniteError for NaN/Inf input
            bound = math.inf  # finite input whose Gram matrix overflowed float64
        else:
            lam = _eigvalsh(g).flip(0).clamp_min(0.0)
            bound = _gram_error_estimate(lam, length, eps)
        if overflow:
            reason = "the float64 Gram matrix overflowed: used the float64 SVD"
        elif reason == "auto" and bound > rtol:
            reason = f"Gram path error estimate {bound:.2e} > rtol={rtol:g}: fell back to the float64 SVD"
        else:
            if reason == "auto":
                reason = f"Gram path error estimate {bound:.2e} <= rtol={rtol:g}"
            sigma = lam.sqrt()
            return RankMeInfo(_entropy_rank(sigma, eps), "gram", bound, reason, n, k), sigma
    sigma = singular_values(t)
    return RankMeInfo(_entropy_rank(sigma, eps), "svd", bound, reason, n, k), sigma


def rankme(z, eps: float = 1e-7, method: str = "auto", rtol: float = DEFAULT_RTOL) -> float:
    r"""RankMe (Garrido et al., arXiv 2210.02885): the smooth effective rank of the embeddings ``z``.

    ``RankMe(Z) = exp(-sum_k p_k log p_k)`` with ``p_k = sigma_k / sum_j sigma_j + eps``: singular values of
    Z (N x K, not centred) in float64, natural log, no renormalisation after adding ``eps``. The score lies
    in [1, min(N, K)] (up to eps); keep N well above K (the paper uses N = 25,600) since it is capped at N.

    Args:
        z: (N, K) embeddings, torch tensor or numpy array, any real dtype and device.
        eps: the paper's 1e-7.
        method: ``"svd"`` (float64 ``torch.linalg.svdvals``, the reference), ``"gram"`` (eigenvalues of the
            float64 Gram matrix of the smaller side, ``sigma = sqrt(clamp(eigvalsh(Z^T Z), 0))``), or
            ``"auto"`` (default): the Gram path when it is faster and its error estimate is <= ``rtol``,
            else the SVD.
        rtol: tolerance on the Gram path's estimated relative RankMe error for ``method="auto"``.

    ``"auto"`` takes the SVD when max(N, K) < 2 min(N, K) (the Gram path gains nothing) or when the Gram
    path's a-posteriori error estimate (:func:`_gram_error_estimate`) exceeds ``rtol``;
    :func:`rankme_info` tells which method ran and its estimate.

    Returns:
        The RankMe score as a Python float (0.0 for an all-zero matrix, whose rank is 0).
    """
    return rankme_info(z, eps=eps, method=method, rtol=rtol).value


# ----------------------------------------------------------------------------------------------------
# spectra
# ----------------------------------------------------------------------------------------------------
def singular_values(z) -> torch.Tensor:
    """Singular values of ``z`` (N x K, not centred) in float64, descending (``torch.linalg.svdvals``)."""
    t = check_2d(z, "z")
    return torch.linalg.svdvals(to_float64(t))


def covariance_eigenvalues(z) -> torch.Tensor:
    """Eigenvalues of the centred feature covariance ``Zc^T Zc / (N - 1)`` in float64, descending.

    Returns min(N, K) values, clamped at 0 (computed from the Gram matrix of the smaller side; at most
    N - 1 of them are non-zero).
    """
    t = to_float64(check_2d(z, "z"))
    zc = t - t.mean(dim=0, keepdim=True)
    return _gram_eigenvalues(zc) / (t.shape[0] - 1)


def alpha_req(z, min_rank: int = 4, max_rank: int = 100, eigenvalues=None) -> tuple[float, float]:
    """alpha-ReQ (Agrawal et al., NeurIPS 2022): power-law decay of the covariance spectrum.

    Fits ``log lambda_i = c - alpha log i`` by weighted least squares (weights 1/i) over the ranks
    ``min_rank..max_rank`` (1-based, default 4..100) of the eigenvalues of the centred covariance,
    clipped to the ranks whose eigenvalues are numerically positive (> lambda_1 max(N, K) eps64).
    alpha near 1 is reported as "good"; small alpha means a flat (noisy) spectrum, large alpha a
    collapsing one.

    ``eigenvalues`` (optional) are ``covariance_eigenvalues(z)`` computed once by the caller.

    Returns:
        ``(alpha, r2)``: the decay exponent and the weighted R^2 of the fit (1 = perfect power law).

    Raises:
        SelfsupError: fewer than 3 usable positive eigenvalues in the rank window.
    """
    if not 1 <= min_rank <= max_rank:
        raise SelfsupError(f"alpha_req needs 1 <= min_rank <= max_rank; got {min_rank}, {max_rank}.")
    t = check_2d(z, "z")
    n, k = t.shape
    lam = covariance_eigenvalues(t) if eigenvalues is None else eigenvalues
    tol = float(lam[0]) * max(n, k) * float(np.finfo(np.float64).eps)
    n_pos = int((lam > tol).sum()) if float(lam[0]) > 0 else 0
    top = min(max_rank, n_pos)
    if top - min_rank + 1 < 3:
        raise SelfsupError(
            f"alpha_req fits ranks {min_rank}..{max_rank} of the covariance spectrum and needs at least 3 "
            f"positive eigenvalues there, but Z (N={n}, K={k}) has {n_pos} positive eigenvalue(s). "
            f"Use more samples and dimensions (N > {min_rank + 3}, K >= {min_rank + 2}), "
            "or check for collapse."
        )
    ranks = torch.arange(min_rank, top + 1, dtype=torch.float64, device=lam.device)
    x = ranks.log()
    y = lam[min_rank - 1 : top].log()
    w = 1.0 / ranks
    w = w / w.sum()
    xm, ym = (w * x).sum(), (w * y).sum()
    sxx = (w * (x - xm) ** 2).sum()
    slope = (w * (x - xm) * (y - ym)).sum() / sxx
    resid = y - (ym + slope * (x - xm))
    ss_res = float((w * resid**2).sum())
    ss_tot = float((w * (y - ym) ** 2).sum())
    if ss_tot <= 1e-30:
        r2 = 1.0 if ss_res <= 1e-30 else 0.0
    else:
        r2 = 1.0 - ss_res / ss_tot
    return float(-slope), float(r2)


def nesum(z, eigenvalues=None) -> float:
    """NESum: ``sum_i lambda_i / lambda_1`` over the centred covariance eigenvalues (0 for constant Z)."""
    lam = covariance_eigenvalues(z) if eigenvalues is None else eigenvalues
    return float(lam.sum() / lam[0]) if float(lam[0]) > 0 else 0.0


def stable_rank(z, singular_values=None) -> float:
    """Stable rank ``||Z||_F^2 / ||Z||_2^2 = sum sigma^2 / sigma_max^2`` (Z not centred; 0 for Z == 0).

    ``singular_values`` (optional, descending) are those of ``z`` computed once by the caller, e.g. by
    :func:`rankme_spectrum`.
    """
    if singular_values is not None:
        lam = torch.as_tensor(singular_values, dtype=torch.float64) ** 2
    else:
        lam = _gram_eigenvalues(check_2d(z, "z"))
    return float(lam.sum() / lam[0]) if float(lam[0]) > 0 else 0.0


def participation_ratio(z, eigenvalues=None) -> float:
    """Participation ratio ``(sum lambda)^2 / sum lambda^2`` of the centred covariance (0 for constant Z)."""
    lam = covariance_eigenvalues(z) if eigenvalues is None else eigenvalues
    denom = float((lam**2).sum())
    return float(lam.sum() ** 2 / denom) if denom > 0 else 0.0


def collapse_std(z) -> float:
    """Collapse indicator: mean over dimensions of the std (ddof=1) of the L2-normalised embeddings.

    About ``1 / sqrt(K)`` for healthy (isotropic) embeddings, 0 for a complete collapse (all rows point
    the same way). Zero rows stay zero after normalisation. Compare with ``1 / math.sqrt(K)``
    (:func:`~selfsup.quality.quality_report` reports both).
    """
    t = to_float64(check_2d(z, "z"))
    zn = torch.nn.functional.normalize(t, dim=1)
    return float(zn.std(dim=0, correction=1).mean())
