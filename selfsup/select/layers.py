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

from selfsup.errors import SelfsupError, unknown_name

SCALARS = (
    "rankme",
    "alpha_req",
    "alpha_req_r2",
    "nesum",
    "stable_rank",
    "participation_ratio",
    "collapse_std",
)


def evaluate_layers(
    run_dir: str | Path, layers: list[str] | None = None, probes: bool = True
) -> dict[str, Any]:
    from selfsup import config as C
    from selfsup.data import monitor_indices
    from selfsup.probes import knn_probe, linear_probe
    from selfsup.quality import quality_report
    from selfsup.train import build, embed
    from selfsup.train import checkpoint as ckpt

    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise SelfsupError(f"'{run_dir}' is not a run directory (no config.yaml)")
    cfg = C.resolve(run_dir)
    state, path = ckpt.load_latest(run_dir / "checkpoints")
    c = build(cfg)
    c.model.load_state_dict(state["model"])
    names = c.model.layer_names
    if layers:
        for name in layers:
            if name not in names:
                raise unknown_name("layer", name, names)
        wanted = [n for n in names if n in layers]
    else:
        wanted = list(names)
    backbone_names = set(c.model.backbone.layer_names)

    data = c.data
    n_mon = min(cfg.data.monitor_size, len(data.train))
    x_mon = data.train.x[monitor_indices(len(data.train), n_mon, cfg.train.seed)]
    feats = embed(c.model, x_mon, c.device, wanted)
    labelled = data.test is not None and data.train.y is not None and data.test.y is not None
    do_probes = probes and labelled
    if do_probes:
        tr = embed(c.model, data.train.x, c.device, wanted)
        te = embed(c.model, data.test.x, c.device, wanted)
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
            **{k: rep.get(k) for k in SCALARS},
        }
        row["rankme_norm"] = rep["rankme"] / dim
        if do_probes:
            row["linear_acc"] = linear_probe(tr[name], y_tr, te[name], y_te).accuracy
            row["knn_acc"] = knn_probe(tr[name], y_tr, te[name], y_te).accuracy
        if rep.get("warnings"):
            row["warnings"] = rep["warnings"]
        rows.append(row)

    result: dict[str, Any] = {
        "run_dir": str(run_dir),
        "checkpoint": path.name,
        "method": cfg.method.name,
        "dataset": data.name,
        "monitor_size": n_mon,
        "labelled": bool(labelled),
        "probes": bool(do_probes),
        "backbone_output": c.model.backbone.layer_names[-1],
        "layers": rows,
    }
    if do_probes:
        best = max(rows, key=lambda r: r["linear_acc"])  # first on ties (max keeps the first maximum)
        result["best_linear_layer"] = best["layer"]
    return result
