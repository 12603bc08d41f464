"""Label-free model selection: Optuna sweeps scored by RankMe, selection rules, epoch selection.

``selfsup sweep --config SWEEP.yaml`` runs a sweep (:func:`run_sweep`), ``selfsup sweep summary DIR``
summarises one (:func:`sweep_summary`), ``selfsup select-epoch RUN_DIR`` picks the epoch to keep
(:mod:`selfsup.select.epochs`); every layer of a run is scored by :mod:`selfsup.evaluate.layers`. The
schema of a sweep file is in :mod:`selfsup.select.spec`, the bookkeeping that makes a killed sweep resume
exactly in :mod:`selfsup.select.study`, the selection rules in :mod:`selfsup.select.selection`. Optuna and
torch are imported lazily.
"""

from selfsup.select.selection import (
    oracle_gap,
    pick_highest,
    pick_threshold,
    rank_agreement,
    select,
    threshold_candidates,
)
from selfsup.select.spec import Sweep, SweepSpec, load_sweep


def run_sweep(*args, **kwargs):
    from selfsup.select.run import run_sweep as _run

    return _run(*args, **kwargs)


def sweep_summary(*args, **kwargs):
    from selfsup.select.run import sweep_summary as _summary

    return _summary(*args, **kwargs)


__all__ = [
    "Sweep",
    "SweepSpec",
    "load_sweep",
    "oracle_gap",
    "pick_highest",
    "pick_threshold",
    "rank_agreement",
    "run_sweep",
    "select",
    "sweep_summary",
    "threshold_candidates",
]
