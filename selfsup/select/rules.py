"""Label-free selection rules: which run of a sweep to keep, from the runs' own label-free records only.

A rule sees, for every finished run of one sweep (in a seeded study: of one seed), its per-epoch
``metrics.jsonl`` rows, its ``summary.json`` and its unsafe-run flags (:mod:`selfsup.select.flags`), and
returns one score per run (None: the run is not compared) and the pick, the best compared score (ties to
the first run in sweep order). Labels never enter a rule; :mod:`selfsup.select.evidence` measures the picks
against them afterwards.

``rankme``
    The final backbone RankMe, highest, over every run (Garrido et al., ICML 2023, arXiv 2210.02885).
``rankme-safe``
    The same among the runs without an unsafe-run flag (all runs when every one is flagged).
``rankme-relative``
    ``rankme-safe`` that also leaves out the *relative collapse*: a run whose final RankMe is below
    :data:`RELATIVE_COLLAPSE` (half) of the median over the sweep's runs. Partial collapse (backbone RankMe
    20-40 where the sweep's other runs reach 64-79) is far above the absolute flag's 2 yet says the run
    learned a few directions only.
``rankme-selected``
    Comparison at a common point of training: each unflagged run is represented by its RankMe at its own
    label-free selected epoch (``selfsup select-epoch``'s rule: the best epoch after the early phase),
    so that a run caught mid-way through a rise or a fall is compared at its settled value.
``alpha-req``
    Closeness of the backbone's eigenspectrum decay to 1: ``-|alpha - 1|`` (Agrawal et al., NeurIPS 2022,
    "alpha-ReQ"), among unflagged runs.
``lidar``
    The backbone's LiDAR (Thilak et al., ICLR 2024), highest, among unflagged runs.
``loss``
    The method's own final training loss, lowest, among unflagged runs: comparable only when nothing that
    defines the loss is swept (:data:`LOSS_KEYS`: the method and its weights, the heads, the data and
    views, the batch), as LeJEPA's paper compares runs of one method by its loss; otherwise it abstains.
``loss-rankme``
    ``loss`` where the loss is comparable, else ``rankme-relative``; the relative collapse is left out in
    both (a collapsing run can reach a low loss).
``borda``
    The mean of each unflagged run's rank position under ``rankme-relative`` and ``alpha-req`` (lower is
    better, negated to a score): a run must be good on both the spread of its spectrum and its decay.

:func:`verdict` says when a sweep cannot decide: the compared runs' scores still moving at their last
epoch, or ordered exactly like (or against) their training progress.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from selfsup.select.epochs import early_phase
from selfsup.select.flags import CONVERGED_SHARE
from selfsup.select.selection import pick_highest, rank_agreement
from selfsup.select.spec import finite

#: A run below this share of the sweep's median final RankMe is flagged "relative collapse".
RELATIVE_COLLAPSE = 0.5
#: The rule chosen on the development sweeps, judged on the held-out ones (docs/results/selection.md).
CHOSEN_RULE = "loss-rankme"
#: Swept keys (prefixes) that change what the training loss measures: its value then compares nothing.
LOSS_KEYS = ("method.", "model.projector", "model.predictor", "data.", "train.batch_size")


@dataclass
class Run:
    """What a rule sees of one finished run: its swept values and label-free records."""

    params: dict[str, Any]
    history: list[dict] = field(default_factory=list)  # metrics.jsonl rows
    summary: dict = field(default_factory=dict)  # summary.json
    flags: list[str] = field(default_factory=list)

    def series(self, key: str) -> list[float]:
        """The finite values of ``key`` over the monitored epochs."""
        return [float(r[key]) for r in self.history if finite(r.get(key))]

    def final(self, key: str) -> float | None:
        values = self.series(key)
        return values[-1] if values else None


def relative_collapse(runs: Sequence[Run], key: str = "backbone/rankme") -> list[bool]:
    """Per run: its final ``key`` is below :data:`RELATIVE_COLLAPSE` of the median over the runs."""
    finals = [run.final(key) for run in runs]
    known = [v for v in finals if v is not None]
    if len(known) < 3:  # a median of two says nothing about what is typical
        return [False] * len(runs)
    median = statistics.median(known)
    return [v is not None and v < RELATIVE_COLLAPSE * median for v in finals]


def _safe(runs: Sequence[Run], scores: list[float | None], relative: bool = False) -> list[float | None]:
    """``scores`` with the flagged runs' set to None (unchanged when that would leave none)."""
    rel = relative_collapse(runs) if relative else [False] * len(runs)
    kept = [None if run.flags or r else s for run, r, s in zip(runs, rel, scores, strict=True)]
    return kept if any(finite(s) for s in kept) else scores


def _rankme(runs: Sequence[Run]) -> list[float | None]:
    return [run.final("backbone/rankme") for run in runs]


def _selected(run: Run) -> float | None:
    """RankMe at the run's label-free selected epoch (best after the early phase)."""
    scores = run.series("backbone/rankme")
    if not scores:
        return None
    first = early_phase(scores, "maximize")
    return max(scores[first:])


def _alpha(runs: Sequence[Run]) -> list[float | None]:
    alphas = [run.final("backbone/alpha_req") for run in runs]
    return [None if a is None else -abs(a - 1.0) for a in alphas]


def _loss(runs: Sequence[Run]) -> list[float | None]:
    swept = {k for run in runs for k in run.params}
    if any(k.startswith(LOSS_KEYS) for k in swept):
        return [None] * len(runs)
    return [None if (v := run.final("loss")) is None else -v for run in runs]


def _positions(scores: list[float | None]) -> list[float | None]:
    """Each finite score's rank position, 0 = best (ties share the mean position)."""
    known = sorted(s for s in scores if finite(s))
    out: list[float | None] = []
    for s in scores:
        if not finite(s):
            out.append(None)
            continue
        above = sum(1 for k in known if k > s)
        out.append(above + (known.count(s) - 1) / 2)
    return out


def _borda(runs: Sequence[Run]) -> list[float | None]:
    a = _positions(_safe(runs, _rankme(runs), relative=True))
    b = _positions(_safe(runs, _alpha(runs)))
    return [None if x is None or y is None else -(x + y) / 2 for x, y in zip(a, b, strict=True)]


def _loss_rankme(runs: Sequence[Run]) -> list[float | None]:
    loss = _loss(runs)
    return _safe(runs, loss if any(finite(v) for v in loss) else _rankme(runs), relative=True)


#: name -> the per-run scores a rule compares (higher is better; None: not compared).
RULES: dict[str, Callable[[Sequence[Run]], list[float | None]]] = {
    "rankme": _rankme,
    "rankme-safe": lambda runs: _safe(runs, _rankme(runs)),
    "rankme-relative": lambda runs: _safe(runs, _rankme(runs), relative=True),
    "rankme-selected": lambda runs: _safe(runs, [_selected(run) for run in runs]),
    "alpha-req": lambda runs: _safe(runs, _alpha(runs)),
    "lidar": lambda runs: _safe(runs, [run.final("backbone/lidar") for run in runs]),
    "loss": lambda runs: _safe(runs, _loss(runs)),
    "borda": _borda,
    "loss-rankme": _loss_rankme,
}


def apply(rule: str, runs: Sequence[Run]) -> tuple[list[float | None], int | None]:
    """A rule's per-run scores and its pick (an index into ``runs``; None when no run is compared)."""
    scores = RULES[rule](runs)
    return scores, pick_highest(scores)


def still_moving(scores: Sequence[float]) -> bool:
    """The score changed by more than :data:`~selfsup.select.flags.CONVERGED_SHARE` of its range over the
    run within the last fifth of the monitored epochs (the loss's convergence test, on the score)."""
    scores = [float(s) for s in scores if finite(s)]
    if len(scores) < 3 or max(scores) == min(scores):
        return False
    tail = max(1, len(scores) // 5)
    return abs(scores[-1] - scores[-1 - tail]) > CONVERGED_SHARE * (max(scores) - min(scores))


def progress(run: Run) -> float | None:
    """How far training went: the loss's relative decrease from the first epoch to the last."""
    losses = run.series("loss")
    if len(losses) < 2 or losses[0] == 0:
        return None
    return (losses[0] - losses[-1]) / abs(losses[0])


def verdict(runs: Sequence[Run], key: str = "backbone/rankme") -> dict[str, Any]:
    """Whether a comparison of ``runs`` by their final ``key`` can be trusted, and why not.

    Unreliable when most runs' scores are still moving at their last monitored epoch, or when four or more
    runs' scores are ordered exactly like their training progress, or exactly against it (Kendall tau = +-1
    with the loss's relative decrease; RankMe falls as training leaves the rank-inflated start): the score
    then ranks how far each run got, not where it is going."""
    compared = [run for run in runs if run.series(key)]
    reasons = []
    moving = sum(still_moving(run.series(key)) for run in compared)
    if compared and moving > len(compared) / 2:
        reasons.append(f"{moving} of {len(compared)} runs' {key} still moving at their last epoch")
    prog = [progress(run) for run in compared]
    tau = rank_agreement([run.final(key) for run in compared], prog)["kendall_tau"]
    if len(compared) >= 4 and tau is not None and math.isclose(abs(tau), 1.0):
        how = "like" if tau > 0 else "against"
        reasons.append(f"{key} ordered exactly {how} training progress (the loss's relative decrease)")
    return {
        "reliable": not reasons,
        "reasons": reasons,
        "advice": None
        if not reasons
        else "train longer, or compare each run at its selected epoch (selfsup select-epoch)",
    }
