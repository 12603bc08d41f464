"""Runs whose label-free score should not be compared with the others': the unsafe-run flags.

A sweep compares runs by one label-free score at the end of training. That comparison misleads when a run

``not converged``
    is still learning: its loss fell by more than :data:`CONVERGED_SHARE` (10 %) of its whole decrease
    over the last fifth of the epochs (at least the last one);
``collapsed``
    has collapsed: its final backbone RankMe is below :data:`COLLAPSE_RANKME` (2), all samples on about
    one direction;
``rank inflation``
    is still in the early rank-inflation phase: the objective fell from its first monitored value and
    ends within :data:`CONVERGED_SHARE` of its range of its worst value (the lowest, for a score to
    maximise), i.e. it is still falling from, or flat at the bottom of, its descent from the value at
    initialisation, where a high RankMe says nothing of the representation (the phase ``selfsup
    select-epoch`` leaves out). A run that never fell (worst value first) is not flagged;
``N < K``
    had fewer monitor samples than embedding dimensions at the objective's layer: rank metrics are then
    capped at N;
``relative collapse``
    (a flag of the sweep, not of the run alone) ends with a backbone RankMe below half the median of the
    sweep's runs (of its seed's runs, in a seeded sweep): :func:`selfsup.select.rules.relative_collapse`.

The pick is made among the runs without a run flag (ties, as always, to the first in sweep order); when
every run is flagged, among all of them, and the summary says so. The relative collapse is reported with
its cost and used by the ``rankme-relative`` rule; the sweep's own pick does not leave it out.
"""

from __future__ import annotations

import json
from pathlib import Path

from selfsup.errors import SelfsupError
from selfsup.methods import resolve_layer
from selfsup.select.epochs import early_phase
from selfsup.select.spec import finite

CONVERGED_SHARE = 0.10
COLLAPSE_RANKME = 2.0
#: The sweep-level flag (see the module docstring); every other flag is a run's own.
RELATIVE = "relative collapse"


def not_converged(losses: list[float]) -> bool:
    """The loss fell by more than :data:`CONVERGED_SHARE` of its total decrease over the last fifth of the
    epochs."""
    losses = [float(v) for v in losses if finite(v)]
    if len(losses) < 3 or losses[0] <= losses[-1]:
        return False
    tail = max(1, len(losses) // 5)
    return losses[-1 - tail] - losses[-1] > CONVERGED_SHARE * (losses[0] - losses[-1])


def rank_inflation(scores: list[float], direction: str) -> bool:
    """The score fell from its first value and has not come back from its worst (see the module doc)."""
    if len(scores) < 2:
        return False
    worst = early_phase(scores, direction)  # the index of the worst value (the first, on ties)
    sign = 1.0 if direction == "maximize" else -1.0
    span = max(sign * s for s in scores) - min(sign * s for s in scores)
    return worst > 0 and sign * (scores[-1] - scores[worst]) <= CONVERGED_SHARE * span


def run_flags(history: list[dict], summary: dict, metric: str, layer: str, direction: str) -> list[str]:
    """The flags of one run from its ``metrics.jsonl`` rows and ``summary.json`` (see the module doc)."""
    flags = []
    if not_converged([r.get("loss") for r in history]):
        flags.append("not converged")
    rankme = summary.get("rankme_backbone")
    if isinstance(rankme, (int, float)) and rankme < COLLAPSE_RANKME:
        flags.append("collapsed")
    scores = [float(r[f"{layer}/{metric}"]) for r in history if finite(r.get(f"{layer}/{metric}"))]
    if rank_inflation(scores, direction):
        flags.append("rank inflation")
    layers = summary.get("layers") or {}
    try:
        report = layers[resolve_layer(layer, list(layers))] if layers else {}
    except SelfsupError:  # a layer the run did not report
        report = {}
    if isinstance(report.get("n"), int) and isinstance(report.get("k"), int) and report["n"] < report["k"]:
        flags.append("N < K")
    return flags


def read_run(run_dir: str | Path | None) -> tuple[list[dict], dict] | None:
    """A run directory's ``metrics.jsonl`` rows and ``summary.json``; None when they cannot be read."""
    if not run_dir:
        return None
    try:
        rows = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
        summary = json.loads((Path(run_dir) / "summary.json").read_text())
    except (OSError, ValueError):
        return None
    return rows, summary


def read_run_flags(run_dir: str | Path | None, metric: str, layer: str, direction: str) -> list[str] | None:
    """:func:`run_flags` of a run directory; None when its files cannot be read (the run is then not
    flagged: nothing is known against it)."""
    records = read_run(run_dir)
    return None if records is None else run_flags(*records, metric, layer, direction)
