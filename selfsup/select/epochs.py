"""Checkpoint selection without labels: which epoch of one run to keep, from its per-epoch label-free metrics.

``metrics.jsonl`` holds, for every monitored epoch (``train.monitor_every``), the label-free metrics of the
backbone and projector (``backbone/rankme`` ...) and, when the data has labels, the online probe's test
accuracy. :func:`select_epoch` picks the epoch whose metric is best (highest, or lowest for a loss such as
``lejepa_loss``; ties go to the earlier epoch, as in a sweep) and, when labels exist, reports what a sweep
summary reports: the pick's accuracy against the best epoch's (the gap, in points) and Kendall's tau
between metric and accuracy over the epochs. The accuracy is the online probe's, or with ``probe=True`` the
linear probe on the frozen checkpoint of every epoch still kept (``train.keep_checkpoints`` at least
``train.epochs`` keeps them all).
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
    run_dir: str | Path, metric: str = "backbone/rankme", direction: str | None = None, probe: bool = False
) -> dict[str, Any]:
    """The epoch to keep by ``metric``, each monitored epoch's score and accuracy, and the agreement."""
    run_dir = Path(run_dir)
    records = [r for r in read_metrics(run_dir / "metrics.jsonl") if metric in r]
    if not records:
        known = sorted(
            {k for r in read_metrics(run_dir / "metrics.jsonl") for k in r if "/" in k or k in RUN_METRICS}
        )
        if not known:
            raise SelfsupError(
                f"'{run_dir}' has no monitored epoch in metrics.jsonl (is it a run directory?)"
            )
        raise unknown_name("metric", metric, known)
    direction = direction or ("minimize" if metric in RUN_METRICS else "maximize")
    kept = {int(p.stem.split("-")[1]) + 1: p for p in ckpt.list_checkpoints(run_dir / "checkpoints")}
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
    pick = pick_highest(scores, direction)
    gap = oracle_gap(pick, accs) if any(a is not None for a in accs) else None
    return {
        "run_dir": str(run_dir),
        "metric": metric,
        "direction": direction,
        "accuracy": "linear probe (frozen checkpoint)" if probe else "online probe",
        "epochs": [{**e, "checkpoint": str(e["checkpoint"]) if e["checkpoint"] else None} for e in epochs],
        "pick": None if pick is None else epochs[pick]["epoch"],
        "oracle": None if gap is None or gap["oracle"] is None else epochs[gap["oracle"]]["epoch"],
        "gap_points": None if gap is None else gap["gap_points"],
        "agreement": rank_agreement(scores, accs),
    }


def _probe_checkpoints(run_dir: Path, epochs: list[dict]) -> None:
    """Replace each epoch's accuracy by the linear probe of its checkpoint (None where it was pruned)."""
    from selfsup.train import load_run, probe_run

    c, _ = load_run(run_dir)
    for e in epochs:
        e["acc"] = None
        if e["checkpoint"] is not None:
            c.model.load_state_dict(ckpt.load_checkpoint(e["checkpoint"], map_location=c.device)["model"])
            e["acc"] = probe_run(c).get("linear_acc")
