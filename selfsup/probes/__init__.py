"""Labelled evaluation of frozen features: linear (logistic), k-NN and ridge-regression probes.

Each runs in torch on the features' device and returns a small result dataclass.
"""

from selfsup.probes.knn import knn_probe
from selfsup.probes.linear import linear_probe
from selfsup.probes.results import ProbeResult, RegressionResult
from selfsup.probes.ridge import ridge_probe

__all__ = ["ProbeResult", "RegressionResult", "knn_probe", "linear_probe", "ridge_probe"]
