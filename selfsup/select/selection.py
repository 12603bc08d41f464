"""Label-free selection rules, and how well they agree with the labels (reported, never used to select).

Selection is a function of the label-free scores (and, for the threshold rule, of one hyper-parameter's
values) only. Runs are given in *sweep order* (for a grid: the order of the values in the sweep file,
first key outermost; otherwise the order in which trials claimed their slot). Runs without a finite
score (diverged, crashed) never win.

``highest``
    The run with the best score (the highest for ``direction: maximize``). Ties (exactly equal scores) go
    to the run that comes first in sweep order.

``threshold``
    The RankMe paper's rule for a saturated score: Garrido, Balestriero, Najman, LeCun, "RankMe: Assessing
    the downstream performance of pretrained self-supervised representations by their rank", ICML 2023,
    arXiv 2210.02885, Fig. 4 (left): "We select either the highest rank model, or if there are multiple
    ones, the one with the minimal/maximal value achieving it." We read "multiple runs achieving the
    highest rank" with a relative tolerance: the candidates are the runs whose score is at least
    ``best - tol * |best|`` (``>= (1 - tol) * best`` for a positive best; mirrored for ``minimize``); among
    them we take the one with the smallest (``prefer: min``) or largest (``prefer: max``) value of the
    chosen hyper-parameter; equal values go to the first in sweep order. ``tol = 0`` keeps exact ties only,
    where the rule is ``highest`` with the hyper-parameter as tie-breaker. Which end to prefer is the
    user's call per hyper-parameter (the paper picks per hyper-parameter too); it must be numeric.

Agreement with the labels (when the dataset has them): Kendall's tau-b and Spearman's rho
(``scipy.stats``) between score and probe accuracy over the finished runs, and the *gap*: the accuracy of
the label-free pick minus that of the *oracle* (the run with the best accuracy, ties to the first in sweep
order), in points (x 100).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from selfsup.errors import SelfsupError


def _ok(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _sign(direction: str) -> float:
    if direction not in ("maximize", "minimize"):
        raise SelfsupError(f"direction must be 'maximize' or 'minimize', got {direction!r}")
    return 1.0 if direction == "maximize" else -1.0


def pick_highest(scores: Sequence[float | None], direction: str = "maximize") -> int | None:
    """Index of the best finite score; ties go to the lowest index (first in sweep order); None if none."""
    s = _sign(direction)
    best = None
    for i, x in enumerate(scores):
        if _ok(x) and (best is None or s * x > s * scores[best]):
            best = i
    return best


def threshold_candidates(
    scores: Sequence[float | None], tol: float, direction: str = "maximize"
) -> list[int]:
    """Indices of the runs whose score is within ``tol * |best|`` of the best one."""
    if not 0 <= tol < 1:
        raise SelfsupError(f"tol must be in [0, 1), got {tol}")
    b = pick_highest(scores, direction)
    if b is None:
        return []
    best, s = scores[b], _sign(direction)
    bound = best - s * tol * abs(best)
    return [i for i, x in enumerate(scores) if _ok(x) and s * x >= s * bound]


def pick_threshold(
    scores: Sequence[float | None],
    values: Sequence[Any],
    tol: float = 0.01,
    prefer: str = "min",
    direction: str = "maximize",
) -> int | None:
    """The RankMe paper's saturation rule (see the module docstring)."""
    if len(values) != len(scores):
        raise SelfsupError(f"{len(scores)} scores but {len(values)} hyper-parameter values")
    if prefer not in ("min", "max"):
        raise SelfsupError(f"prefer must be 'min' or 'max', got {prefer!r}")
    cands = threshold_candidates(scores, tol, direction)
    if not cands:
        return None
    bad = [values[i] for i in cands if not _ok(values[i])]
    if bad:
        raise SelfsupError(f"the threshold rule orders runs by a numeric hyper-parameter; got {bad[0]!r}")
    sign = 1.0 if prefer == "min" else -1.0
    return min(cands, key=lambda i: (sign * values[i], i))


def rank_agreement(scores: Sequence[float | None], accs: Sequence[float | None]) -> dict[str, Any]:
    """Kendall's tau-b and Spearman's rho between score and accuracy over the pairs where both are finite."""
    from scipy import stats

    pairs = [(s, a) for s, a in zip(scores, accs, strict=True) if _ok(s) and _ok(a)]
    out: dict[str, Any] = {
        "n": len(pairs),
        "kendall_tau": None,
        "kendall_p": None,
        "spearman_rho": None,
        "spearman_p": None,
    }
    if len(pairs) < 2:
        return out
    x, y = [p[0] for p in pairs], [p[1] for p in pairs]
    if len(set(x)) < 2 or len(set(y)) < 2:  # a constant series has no rank order
        return out
    tau = stats.kendalltau(x, y)
    rho = stats.spearmanr(x, y)
    out.update(
        kendall_tau=float(tau.statistic),
        kendall_p=float(tau.pvalue),
        spearman_rho=float(rho.statistic),
        spearman_p=float(rho.pvalue),
    )
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in out.items()}


def oracle_gap(pick: int | None, accs: Sequence[float | None]) -> dict[str, Any]:
    """The pick's accuracy, the oracle's (best accuracy, ties to the first) and the gap in points."""
    oracle = pick_highest(accs, "maximize")
    pick_acc = accs[pick] if pick is not None and _ok(accs[pick]) else None
    oracle_acc = accs[oracle] if oracle is not None else None
    gap = 100.0 * (oracle_acc - pick_acc) if pick_acc is not None and oracle_acc is not None else None
    return {"pick": pick, "oracle": oracle, "pick_acc": pick_acc, "oracle_acc": oracle_acc, "gap_points": gap}


def select(
    scores: Sequence[float | None],
    values: Sequence[Any] | None = None,
    rule: str = "highest",
    tol: float = 0.01,
    prefer: str = "min",
    direction: str = "maximize",
) -> int | None:
    if rule == "highest":
        return pick_highest(scores, direction)
    if rule == "threshold":
        if values is None:
            raise SelfsupError("the threshold rule needs the hyper-parameter values")
        return pick_threshold(scores, values, tol, prefer, direction)
    raise SelfsupError(f"unknown selection rule '{rule}'; use highest or threshold")
