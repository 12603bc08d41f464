"""Ridge regression probe: closed-form, float64, on standardised frozen features."""

from __future__ import annotations

import torch

from selfsup.errors import SelfsupError
from selfsup.probes._common import standardize
from selfsup.probes._validate import check_features, check_targets
from selfsup.probes.results import RegressionResult

__all__ = ["ridge_probe"]


def _r2(pred: torch.Tensor, y: torch.Tensor) -> list[float]:
    """Per-output R^2 with scikit-learn's conventions (constant target: 1 if predicted exactly, else 0)."""
    ss_res = ((y - pred) ** 2).sum(dim=0)
    ss_tot = ((y - y.mean(dim=0, keepdim=True)) ** 2).sum(dim=0)
    out = []
    for res, tot in zip(ss_res.tolist(), ss_tot.tolist(), strict=True):
        if tot > 0:
            out.append(1.0 - res / tot)
        else:
            out.append(1.0 if res == 0 else 0.0)
    return out


def ridge_probe(x_tr, y_tr, x_te, y_te, alpha: float = 1.0) -> RegressionResult:
    """Ridge regression of targets from frozen features; returns test R^2, relative error and predictions.

    Features are standardised with the training mean and std (as ``StandardScaler``) and the targets are
    centred (the intercept is not penalised); then ``W = (X^T X + alpha I)^-1 X^T Y`` in float64 (the dual
    form ``X^T (X X^T + alpha I)^-1 Y`` when there are more features than samples). This is
    scikit-learn's ``Ridge(alpha)`` on ``StandardScaler``-ed features.

    Args:
        x_tr, x_te: (N, K) features (torch or numpy, any float dtype), finite.
        y_tr, y_te: targets, (N,) or (N, n_outputs), finite.
        alpha: L2 strength (>= 0; 0 is least squares, solved with ``lstsq``).

    Returns:
        :class:`RegressionResult`: ``r2`` (test, uniform average over outputs as scikit-learn's
        ``r2_score``), ``rel_error = ||pred - y||_F / ||y||_F`` (test; 0 or inf when y is all zero),
        ``train_r2``, ``r2_per_output`` and the test ``predictions`` ``(n_test, n_outputs)``, float64.
    """
    if not alpha >= 0:
        raise SelfsupError(f"ridge alpha must be >= 0; got {alpha}.")
    xa, xb = check_features(x_tr, x_te)
    ya = check_targets(y_tr, xa, "y_tr", "x_tr")
    yb = check_targets(y_te, xb, "y_te", "x_te")
    if ya.shape[1] != yb.shape[1]:
        raise SelfsupError(f"y_tr has {ya.shape[1]} output(s) but y_te has {yb.shape[1]}; they must match.")
    dev = ya.device
    xs_tr, xs_te = standardize(xa.to(device=dev, dtype=torch.float64), xb.to(device=dev, dtype=torch.float64))
    y_mean = ya.mean(dim=0, keepdim=True)
    yc = ya - y_mean
    n, k = xs_tr.shape
    if alpha == 0:
        weight = torch.linalg.lstsq(xs_tr.cpu(), yc.cpu(), driver="gelsd").solution.to(dev)
    elif k <= n:
        eye = torch.eye(k, dtype=torch.float64, device=dev)
        chol = torch.linalg.cholesky(xs_tr.T @ xs_tr + alpha * eye)
        weight = torch.cholesky_solve(xs_tr.T @ yc, chol)
    else:
        eye = torch.eye(n, dtype=torch.float64, device=dev)
        chol = torch.linalg.cholesky(xs_tr @ xs_tr.T + alpha * eye)
        weight = xs_tr.T @ torch.cholesky_solve(yc, chol)
    pred_tr = xs_tr @ weight + y_mean
    pred_te = xs_te @ weight + y_mean
    r2_out = _r2(pred_te, yb)
    r2_tr = _r2(pred_tr, ya)
    err = float(torch.linalg.norm(pred_te - yb))
    ynorm = float(torch.linalg.norm(yb))
    rel = err / ynorm if ynorm > 0 else (0.0 if err == 0 else float("inf"))
    return RegressionResult(
        r2=float(sum(r2_out) / len(r2_out)),
        rel_error=rel,
        train_r2=float(sum(r2_tr) / len(r2_tr)),
        r2_per_output=r2_out,
        n_train=int(n),
        n_test=int(xb.shape[0]),
        n_outputs=int(ya.shape[1]),
        details={"alpha": float(alpha)},
        predictions=pred_te,
    )
