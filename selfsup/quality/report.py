"""One call that computes every label-free metric and returns a JSON-serialisable dict."""

from __future__ import annotations

import math

from selfsup.errors import SelfsupError
from selfsup.quality._validate import as_tensor, check_2d, check_magnitude
from selfsup.quality.lidar import lidar
from selfsup.quality.spectral import (
    alpha_req,
    collapse_std,
    covariance_eigenvalues,
    nesum,
    participation_ratio,
    rankme_spectrum,
    stable_rank,
)

__all__ = ["METRICS", "SMALL_N", "quality_report"]

#: The label-free scalar metrics of :func:`quality_report` that a layer table shows and a sweep may optimise.
METRICS = (
    "rankme",
    "alpha_req",
    "alpha_req_r2",
    "nesum",
    "stable_rank",
    "participation_ratio",
    "collapse_std",
)

#: Below this many samples the report warns that every estimate is noisy.
SMALL_N = 100


def quality_report(z, n_views: int | None = None, singular_values: bool = False) -> dict:
    """All label-free quality metrics of the embeddings ``z`` as a JSON-serialisable dict.

    Args:
        z: (N, K) embeddings; or, with ``n_views=q``, multi-view embeddings given as (n, q, K) or
            sample-major (n * q, K) (then the spectral metrics use all n * q rows).
        n_views: number of views per sample; LiDAR is computed only when it is given.
        singular_values: also return the singular values of Z (descending, those RankMe used).

    Returns:
        A dict of plain floats, ints, strings, lists and None: ``n``, ``k``, ``rankme``, ``rankme_method``,
        ``rankme_error_estimate``, ``alpha_req``, ``alpha_req_r2``, ``nesum``, ``stable_rank``,
        ``participation_ratio``, ``collapse_std``, ``collapse_std_reference`` (= 1/sqrt(K)), ``lidar``
        (only with ``n_views``), ``n_views``, ``singular_values`` (only when asked) and ``warnings``
        (list of strings). A metric that cannot be computed on this input (alpha-ReQ with too few
        eigenvalues) is None with a warning saying why.
    """
    t = as_tensor(z, "z")
    if n_views is not None and t.ndim == 3:
        t = t.reshape(t.shape[0] * t.shape[1], t.shape[2])
    t = check_2d(t, "z")
    check_magnitude(t, "z")
    n, k = (int(s) for s in t.shape)
    warnings: list[str] = []
    if n < k:
        warnings.append(
            f"N={n} < K={k}: the rank metrics are capped at N={n}; embed at least K (ideally many times K, "
            "the RankMe paper uses 25,600) samples."
        )
    if n < SMALL_N:
        warnings.append(f"only N={n} samples: every estimate is noisy; use at least a few thousand samples.")

    info, sigma = rankme_spectrum(t)
    report: dict = {
        "n": n,
        "k": k,
        "rankme": info.value,
        "rankme_method": info.method,
        "rankme_error_estimate": info.error_estimate,
    }
    lam = covariance_eigenvalues(t)  # shared by alpha-ReQ, NESum and the participation ratio
    try:
        a, r2 = alpha_req(t, eigenvalues=lam)
        report["alpha_req"], report["alpha_req_r2"] = a, r2
    except SelfsupError as exc:
        report["alpha_req"] = report["alpha_req_r2"] = None
        warnings.append(f"alpha_req not computed: {exc}")
    report["nesum"] = nesum(t, eigenvalues=lam)
    report["stable_rank"] = stable_rank(t, singular_values=sigma)
    report["participation_ratio"] = participation_ratio(t, eigenvalues=lam)
    report["collapse_std"] = collapse_std(t)
    report["collapse_std_reference"] = 1.0 / math.sqrt(k)
    if info.value == 0.0:
        warnings.append("all embeddings are zero: complete collapse.")
    elif report["nesum"] == 0.0:
        warnings.append("all embeddings are identical (zero covariance): complete collapse.")
    elif k > 1 and report["collapse_std"] < 0.1 * report["collapse_std_reference"]:
        warnings.append(
            f"collapse_std={report['collapse_std']:.3g} is below a tenth of the healthy 1/sqrt(K)="
            f"{report['collapse_std_reference']:.3g}: the embeddings are (nearly) collapsed."
        )
    if singular_values:
        report["singular_values"] = sigma.tolist()
    if n_views is not None:
        report["n_views"] = int(n_views)
        report["lidar"] = lidar(t, n_views=n_views)
    report["warnings"] = warnings
    # Guarantee strict JSON: no NaN/Inf floats.
    for key, value in report.items():
        if isinstance(value, float) and not math.isfinite(value):
            report[key] = None
            warnings.append(f"{key} was not finite and is reported as null.")
    return report
