"""Evaluations of a finished run, each writing its JSON into the run directory: every layer's label-free
quality and probes (:mod:`.layers`), SIE's equivariance measures (:mod:`.equivariance`) and accuracy
under controlled factors (:mod:`.robustness`).

What :func:`selfsup.train.fit` itself measures (the per-epoch monitor, the final summary and probes) is
in :mod:`selfsup.train.measure`; the PDE downstream tasks are in :mod:`selfsup.pde.downstream`.
"""

from selfsup.evaluate.equivariance import evaluate_equivariance
from selfsup.evaluate.layers import evaluate_layers
from selfsup.evaluate.robustness import evaluate_robustness

__all__ = ["evaluate_equivariance", "evaluate_layers", "evaluate_robustness"]
