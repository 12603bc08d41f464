"""Linear probe: multinomial logistic regression on standardised frozen features (full-batch L-BFGS)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from selfsup.errors import SelfsupError
from selfsup.probes._common import class_index, compute_dtype, standardize
from selfsup.probes._validate import check_features, check_labels
from selfsup.probes.results import ProbeResult

__all__ = ["linear_probe"]


def linear_probe(
    x_tr,
    y_tr,
    x_te,
    y_te,
    *,
    C: float = 1.0,
    weight_decay: float | None = None,
    max_iter: int = 1000,
    tol: float = 1e-6,
    dtype: torch.dtype = torch.float64,
) -> ProbeResult:
    """Multinomial logistic regression on frozen features; returns train and test accuracy.

    Features are standardised with the training mean and std (as scikit-learn's ``StandardScaler``), then
    ``W, b`` minimise, with full-batch L-BFGS (strong Wolfe line search) in torch on the features' device,

        ``sum_i cross_entropy(x_i W + b, y_i) + 0.5 * ||W||^2 / C``

    which is scikit-learn's ``LogisticRegression(C=C)`` objective (multinomial, intercept not penalised);
    the default C = 1.0 is its default. ``weight_decay``, if given, replaces C with the deep-learning
    convention ``mean_i cross_entropy + 0.5 * weight_decay * ||W||^2`` (i.e. C = 1 / (weight_decay * N)).

    Args:
        x_tr, x_te: (N, K) features (torch or numpy, any float dtype); they must be finite.
        y_tr, y_te: integer class labels, one per row. Test labels never seen in training count as errors.
        C: inverse regularisation strength (scikit-learn semantics).
        weight_decay: alternative per-sample L2 strength (see above); do not combine with C.
        max_iter: L-BFGS iterations at most.
        tol: stop when the largest gradient entry of the per-sample objective is below it.
        dtype: torch.float64 (default) or torch.float32.

    Returns:
        :class:`ProbeResult` with ``accuracy`` (test), ``train_accuracy`` and, in ``details``, ``n_iter``,
        ``converged``, ``C`` and ``loss``.
    """
    _check_options(C, weight_decay, max_iter, dtype)
    xa, xb = check_features(x_tr, x_te)
    ya = check_labels(y_tr, xa, "y_tr", "x_tr")
    yb = check_labels(y_te, xb, "y_te", "x_te")
    classes, target = class_index(ya)
    dt = compute_dtype(xa, dtype)
    xs_tr, xs_te = standardize(xa.to(dt), xb.to(dt))
    n = xs_tr.shape[0]
    n_classes = classes.numel()
    penalty = 1.0 / C if weight_decay is None else weight_decay * n  # on the sum-of-losses scale
    weight, bias, final_loss, n_iter = _fit_lbfgs(xs_tr, target, n_classes, penalty, max_iter, tol)
    return ProbeResult(
        accuracy=_accuracy(xs_te, yb, weight, bias, classes),
        train_accuracy=_accuracy(xs_tr, ya, weight, bias, classes),
        n_train=int(n),
        n_test=int(xb.shape[0]),
        n_classes=int(n_classes),
        method="linear",
        details={
            "n_iter": n_iter,
            "converged": n_iter < int(max_iter),
            "C": float(1.0 / penalty) if penalty > 0 else float("inf"),
            "loss": final_loss,
        },
    )


def _check_options(C: float, weight_decay: float | None, max_iter: int, dtype: torch.dtype) -> None:
    if weight_decay is not None and C != 1.0:
        raise SelfsupError("give either C or weight_decay to linear_probe, not both.")
    if weight_decay is not None and not weight_decay >= 0:
        raise SelfsupError(f"weight_decay must be >= 0; got {weight_decay}.")
    if weight_decay is None and not C > 0:
        raise SelfsupError(f"C must be > 0 (scikit-learn's default is 1.0); got {C}.")
    if int(max_iter) < 1:
        raise SelfsupError(f"max_iter must be a positive integer; got {max_iter}.")
    if dtype not in (torch.float32, torch.float64):
        raise SelfsupError(f"linear_probe computes in torch.float32 or torch.float64; got {dtype}.")


def _fit_lbfgs(
    xs: torch.Tensor, target: torch.Tensor, n_classes: int, penalty: float, max_iter: int, tol: float
) -> tuple[torch.Tensor, torch.Tensor, float, int]:
    """Minimise the mean cross-entropy plus ``0.5 * penalty * ||W||^2 / N`` from zero with L-BFGS.

    Returns ``weight``, ``bias``, the final loss and the number of L-BFGS iterations run.
    """
    n, k = xs.shape
    dt = xs.dtype
    weight = torch.zeros(k, n_classes, dtype=dt, device=xs.device, requires_grad=True)
    bias = torch.zeros(n_classes, dtype=dt, device=xs.device, requires_grad=True)
    opt = torch.optim.LBFGS(
        [weight, bias],
        lr=1.0,
        max_iter=int(max_iter),
        max_eval=int(max_iter) * 5 // 4 + 1,
        tolerance_grad=tol,
        tolerance_change=1e-14 if dt == torch.float64 else 1e-9,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        logits = xs @ weight + bias
        loss = (F.cross_entropy(logits, target, reduction="sum") + 0.5 * penalty * (weight**2).sum()) / n
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
        final_loss = float(closure().detach())
    n_iter = int(opt.state[opt._params[0]].get("n_iter", 0))
    return weight, bias, final_loss, n_iter


def _accuracy(
    xs: torch.Tensor, y: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, classes: torch.Tensor
) -> float:
    """Fraction of rows of ``xs`` whose predicted class (argmax of ``xs W + b``) equals ``y``."""
    with torch.no_grad():
        pred = classes[(xs @ weight + bias).argmax(dim=1)]
        return float((pred == y).to(torch.float64).mean())
