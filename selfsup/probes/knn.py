"""Weighted k-nearest-neighbour probe on cosine similarity (Wu et al. 2018; DINO's evaluation)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from selfsup.errors import SelfsupError
from selfsup.probes._common import class_index
from selfsup.probes._validate import check_features, check_labels
from selfsup.probes.results import ProbeResult

__all__ = ["knn_probe"]


def knn_probe(
    x_tr,
    y_tr,
    x_te,
    y_te,
    k: int = 20,
    temperature: float = 0.07,
    chunk_size: int | None = None,
) -> ProbeResult:
    """k-NN classification of test features by the training features, in torch on the features' device.

    Features are L2-normalised; each test sample's ``k`` most cosine-similar training samples vote for
    their class with weight ``exp(sim / temperature)``; the class with the largest total wins (ties go to
    the smallest label). Test rows are processed in chunks so that the similarity block stays below about
    16M entries (``chunk_size`` overrides the number of rows per chunk).

    Equivalent to scikit-learn's ``KNeighborsClassifier(k, metric="cosine",
    weights=lambda d: np.exp((1 - d) / temperature))`` up to ties between equidistant neighbours.

    Returns:
        :class:`ProbeResult` with the test ``accuracy`` (``train_accuracy`` is None).
    """
    if int(k) != k or k < 1:
        raise SelfsupError(f"k must be a positive integer; got {k!r}.")
    if not temperature > 0:
        raise SelfsupError(f"temperature must be > 0 (DINO uses 0.07); got {temperature}.")
    xa, xb = check_features(x_tr, x_te)
    ya = check_labels(y_tr, xa, "y_tr", "x_tr")
    yb = check_labels(y_te, xb, "y_te", "x_te")
    k = int(k)
    n_tr = xa.shape[0]
    if k > n_tr:
        raise SelfsupError(
            f"k={k} exceeds the {n_tr} training samples; use k <= {n_tr} or more training data."
        )
    classes, target = class_index(ya)
    n_classes = classes.numel()
    dt = torch.float64 if xa.dtype == torch.float64 else torch.float32
    fa = F.normalize(xa.to(dt), dim=1)
    fb = F.normalize(xb.to(dt), dim=1)
    if chunk_size is None:
        chunk_size = max(1, (1 << 24) // n_tr)
    if int(chunk_size) < 1:
        raise SelfsupError(f"chunk_size must be a positive integer; got {chunk_size!r}.")
    correct = 0
    with torch.no_grad():
        for start in range(0, fb.shape[0], int(chunk_size)):
            sim = fb[start : start + int(chunk_size)] @ fa.T
            top_sim, top_idx = sim.topk(k, dim=1)
            # exp(sim / T) up to a per-row factor exp(-max / T), which leaves the vote unchanged and
            # cannot overflow.
            weights = torch.exp((top_sim - top_sim[:, :1]) / temperature)
            votes = torch.zeros(top_sim.shape[0], n_classes, dtype=dt, device=fa.device)
            votes.scatter_add_(1, target[top_idx], weights)
            pred = classes[votes.argmax(dim=1)]
            correct += int((pred == yb[start : start + int(chunk_size)]).sum())
    return ProbeResult(
        accuracy=correct / xb.shape[0],
        train_accuracy=None,
        n_train=int(n_tr),
        n_test=int(xb.shape[0]),
        n_classes=int(n_classes),
        method="knn",
        details={"k": k, "temperature": float(temperature)},
    )
