"""Label-free quality metrics of learned representations (float64, torch or numpy input, any device).

``rankme`` (Garrido et al. 2022), ``alpha_req`` (Agrawal et al. 2022), ``lidar`` (Thilak et al. 2024),
``nesum``, ``stable_rank``, ``participation_ratio``, ``collapse_std`` and ``quality_report`` (all of them
as a JSON-serialisable dict).
"""

from selfsup.quality.lidar import lidar, lidar_eigenvalues
from selfsup.quality.report import METRICS, quality_report
from selfsup.quality.spectral import (
    RankMeInfo,
    alpha_req,
    collapse_std,
    covariance_eigenvalues,
    nesum,
    participation_ratio,
    rankme,
    rankme_info,
    rankme_spectrum,
    singular_values,
    stable_rank,
)

__all__ = [
    "METRICS",
    "RankMeInfo",
    "alpha_req",
    "collapse_std",
    "covariance_eigenvalues",
    "lidar",
    "lidar_eigenvalues",
    "nesum",
    "participation_ratio",
    "quality_report",
    "rankme",
    "rankme_info",
    "rankme_spectrum",
    "singular_values",
    "stable_rank",
]
