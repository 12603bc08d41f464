"""Checkpoint selection without labels: which epoch of one run to keep, from its per-epoch label-free metrics.

``metrics.jsonl`` holds, for every monitored epoch (``train.monitor_every``), the label-free metrics of the
backbone and projector (``backbone/rankme`` ...) and, when the data has labels, the online probe's test
accuracy. :func:`select_epoch` picks the epoch whose metric is best (highest, or lowest for a loss such as
``lejepa_loss``; ties go to the earlier epoch, as in a sweep) and, when labels exist, reports what a sweep
summary reports: the pick's accuracy against the best epoch's (the gap, in points) and Kendall's tau
between metric and accuracy over the epochs. The accuracy is the online probe's, or with ``probe=True`` the
linear probe on the frozen checkpoint of every epoch still kept (``train.keep_checkpoints`` at least
``train.epochs`` keeps them all).

The early phase is not comparable and is left out (``all_epochs=False``): a randomly initialised network's
features are spread in every direction, so RankMe starts high and falls before learning raises it again
(the "rank inflation" of early training; RankMe's paper compares trained runs). The epochs before the
metric's worst value (lowest RankMe; highest loss) are excluded. On the main job (28 epochs) the highest
RankMe is epoch 2's, 8.3 points below the best checkpoint; after the exclusion the pick is 0.5 points below.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from selfsup.errors import SelfsupError, unknown_name
from selfsup.methods import RUN_METRICS
from selfsup.select.selection import oracle_gap, pick_highest, rank_agreement
from selfsup.train import checkpoint as ckpt
from selfsup.train import read_metrics


def select_epoch(
    run_dir: str | Path,
    metric: str = "backbone/rankme",
    direction: str | None = None,
    probe: bool = False,
    all_epochs: bool = False,
) -> dict[str, Any]:
    """The epoch to keep by ``metric`` among the comparable epochs (all of them with ``all_epochs``, else
    from the metric's worst value on), each monitored epoch's score and accuracy, the gap to the best epoch
    of all, and the rank agreement over the comparable epochs."""
    run_dir = Path(run_dir)
    history = read_metrics(run_dir / "metrics.jsonl")
    records = [r for r in history if metric in r]
    if not records:
        known = sorted({k for r in history for k in r if "/" in k or k in RUN_METRICS})
        if not known:
            raise SelfsupError(
                f"'{run_dir}' has no monitored epoch in metrics.jsonl (is it a run directory?)"
            )
        raise unknown_name("metric", metric, known)
    direction = direction or ("minimize" if metric in RUN_METRICS else "maximize")
    kept = ckpt.epoch_checkpoints(run_dir / "checkpoints")
    epochs = [
        {
            "epoch": r["epoch"],
            "score": r[metric],
            "acc": r.get("online_probe_test_acc"),
            "checkpoint": kept.get(r["epoch"]),
        }
        for r in records
    ]
    if probe:
        _probe_checkpoints(run_dir, epochs)
    scores, accs = [e["score"] for e in epochs], [e["acc"] for e in epochs]
    first = 0 if all_epochs else early_phase(scores, direction)
    best = pick_highest(scores[first:], direction)  # among the comparable epochs
    if best is None:
        raise SelfsupError(
            f"'{run_dir}': {metric} is not finite at any monitored epoch; nothing to choose from"
        )
    pick = first + best
    gap = oracle_gap(pick, accs) if any(a is not None for a in accs) else None  # against every epoch
    epochs = [{**e, "excluded": "early phase" if i < first else None} for i, e in enumerate(epochs)]
    return {
        "run_dir": str(run_dir),
        "metric": metric,
        "direction": direction,
        "accuracy": "linear probe (frozen checkpoint)" if probe else "online probe",
        "epochs": [{**e, "checkpoint": str(e["checkpoint"]) if e["checkpoint"] else None} for e in epochs],
        "pick": epochs[pick]["epoch"],
        "oracle": None if gap is None or gap["oracle"] is None else epochs[gap["oracle"]]["epoch"],
        "gap_points": None if gap is None else gap["gap_points"],
        "agreement": rank_agreement(scores[first:], accs[first:]),  # over the comparable epochs
    }


def early_phase(scores: list[float], direction: str) -> int:
    """How many leading epochs come before the metric's worst value (the first, on ties): the early phase,
    when RankMe is still falling from its value at initialisation."""
    return pick_highest(scores, "minimize" if direction == "maximize" else "maximize") or 0


def _probe_checkpoints(run_dir: Path, epochs: list[dict]) -> None:
    """Replace each epoch's accuracy by the linear probe of its checkpoint (None where it was pruned)."""
    from selfsup.train import load_run, probe_run

    c, _ = load_run(run_dir)
    for e in epochs:
        e["acc"] = None
        if e["checkpoint"] is not None:
            c.model.load_state_dict(ckpt.load_checkpoint(e["checkpoint"], map_location=c.device)["model"])
            e["acc"] = probe_run(c).get("linear_acc")
