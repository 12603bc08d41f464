"""Small result records returned by the probes."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import torch


@dataclass(frozen=True)
class ProbeResult:
    """Outcome of a classification probe.

    Attributes:
        accuracy: test accuracy, a fraction in [0, 1].
        train_accuracy: accuracy on the training split (None for k-NN, where it is not meaningful).
        n_train, n_test, n_classes: sizes (classes seen in the training split).
        method: ``"linear"`` or ``"knn"``.
        details: method-specific extras (iterations, k, temperature...).
    """

    accuracy: float
    train_accuracy: float | None
    n_train: int
    n_test: int
    n_classes: int
    method: str
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class RegressionResult:
    """Outcome of a regression probe.

    Attributes:
        r2: test R^2, uniform average over outputs (scikit-learn's ``r2_score`` convention).
        rel_error: relative error ``||pred - y||_F / ||y||_F`` on the test split.
        train_r2: R^2 on the training split.
        r2_per_output: test R^2 of each output column.
        n_train, n_test, n_outputs: sizes.
        method: ``"ridge"``.
        details: method-specific extras (alpha...).
        predictions: the test-split predictions, ``(n_test, n_outputs)`` float64 (2-D even for 1-D
            targets), or None; left out of :meth:`to_dict`, the repr and comparisons.
    """

    r2: float
    rel_error: float
    train_r2: float
    r2_per_output: list[float]
    n_train: int
    n_test: int
    n_outputs: int
    method: str = "ridge"
    details: dict = field(default_factory=dict)
    predictions: torch.Tensor | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict:
        """The JSON-ready fields (everything but ``predictions``)."""
        d = asdict(replace(self, predictions=None))
        del d["predictions"]
        return d
