"""Layer-wise (Guillotine) evaluation of a trained run: where to cut the network.

Bordes et al., "Guillotine Regularization", arXiv 2206.13378: the best layer to read a representation
from is usually not the last one (probing the backbone instead of the projector output gains 20-30 points
on ImageNet). For every named layer of the backbone and every projector layer (``SSLModel.layer_names``)
this computes the label-free quality metrics on the run's monitor subset and, when the dataset has labels,
linear-probe and kNN (k = 20) accuracy on the test split.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from selfsup.methods import resolve_layer


def evaluate_layers(
    run_dir: str | Path, layers: list[str] | None = None, probes: bool = True
) -> dict[str, Any]:
    """Every layer's scores (``layers``: only these) of the run's newest checkpoint."""
    from selfsup.train import load_run

    c, path = load_run(run_dir)
    return score_layers(c, path, layers, probes)


def score_layers(c, path: Path, layers: list[str] | None = None, probes: bool = True) -> dict[str, Any]:
    """:func:`evaluate_layers` of loaded components ``c`` (:func:`selfsup.train.load_run`), whose weights are
    those of checkpoint ``path``."""
    from selfsup.probes import knn_probe, linear_probe
    from selfsup.quality import METRICS, quality_report
    from selfsup.train import embed, monitor_subset
    from selfsup.train.components import workers

    names = c.model.layer_names
    chosen = {resolve_layer(name, names) for name in layers or names}
    wanted = [n for n in names if n in chosen]
    backbone_names = set(c.model.backbone.layer_names)

    data = c.data
    feats = embed(c.model, monitor_subset(c), c.device, wanted)
    labelled = data.test is not None and data.train.y is not None and data.test.y is not None
    do_probes = probes and labelled
    if do_probes:
        tr = embed(c.model, data.train.x, c.device, wanted, workers=workers(c.cfg))
        te = embed(c.model, data.test.x, c.device, wanted, workers=workers(c.cfg))
        y_tr, y_te = data.train.y.to(c.device), data.test.y.to(c.device)

    rows = []
    for name in wanted:
        z = feats[name]
        rep = quality_report(z)
        dim = int(z.shape[1])
        row: dict[str, Any] = {
            "layer": name,
            "part": "backbone" if name in backbone_names else "projector",
            "dim": dim,
            **{k: rep.get(k) for k in METRICS},
        }
        row["rankme_norm"] = rep["rankme"] / dim
        if do_probes:
            row["linear_acc"] = linear_probe(tr[name], y_tr, te[name], y_te).accuracy
            row["knn_acc"] = knn_probe(tr[name], y_tr, te[name], y_te).accuracy
        if rep.get("warnings"):
            row["warnings"] = rep["warnings"]
        rows.append(row)

    result: dict[str, Any] = {
        "run_dir": str(path.parent.parent),
        "checkpoint": path.name,
        "method": c.cfg.method.name,
        "dataset": data.name,
        "monitor_size": len(feats[wanted[0]]),
        "labelled": bool(labelled),
        "probes": bool(do_probes),
        "backbone_output": resolve_layer("backbone", names),
        "layers": rows,
    }
    if do_probes:
        best = max(rows, key=lambda r: r["linear_acc"])  # first on ties (max keeps the first maximum)
        result["best_linear_layer"] = best["layer"]
    return result
