"""What :func:`selfsup.train.fit` measures on frozen features: embeddings of named layers, the per-epoch
label-free monitor (and the method's own metrics), the final summary (quality report per layer, probes on
the test split)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from selfsup.data import monitor_indices
from selfsup.data.sources import Source
from selfsup.data.stream import as_float, sequential, take, worker_count
from selfsup.embeddings import map_2d
from selfsup.methods import SSLModel, resolve_layer
from selfsup.probes import knn_probe, linear_probe
from selfsup.quality import lidar, quality_report
from selfsup.train.components import Components, monitor_subset, workers
from selfsup.views import TransformPairs


@torch.no_grad()
def embed(
    model: SSLModel,
    x: torch.Tensor | Source,
    device: torch.device,
    layers: list[str] | None = None,
    batch_size: int = 1024,
    workers: int | None = None,
) -> dict[str, torch.Tensor]:
    """Embed un-augmented samples in eval mode, ``batch_size`` at a time (a streamed source is read by
    ``workers`` processes, never whole); returns layer -> N x D float32 on ``device``."""
    was_training = model.training
    model.eval()
    chunks: dict[str, list[torch.Tensor]] = {}
    for batch in sequential(x, batch_size, device, worker_count(workers)):
        for k, v in model.embed_layers(batch, layers).items():
            chunks.setdefault(k, []).append(v.float())
    model.train(was_training)
    return {k: torch.cat(v) for k, v in chunks.items()}


@torch.no_grad()
def monitor(c: Components, x_mon: torch.Tensor, n_lidar: int) -> dict[str, float]:
    """Label-free quality of the backbone output and the projector output on the monitor subset, and
    LiDAR of the backbone on the first ``n_lidar`` monitor samples' views."""
    names = c.model.layer_names
    out_layers = {"backbone": resolve_layer("backbone", names)}
    if resolve_layer("projector", names) != out_layers["backbone"]:
        out_layers["projector"] = resolve_layer("projector", names)
    feats = embed(c.model, x_mon, c.device, list(dict.fromkeys(out_layers.values())))
    result = {}
    for tag, layer in out_layers.items():
        rep = quality_report(feats[layer])
        result.update({f"{tag}/{k}": v for k, v in rep.items() if isinstance(v, (int, float))})
    if n_lidar:
        was_training = c.model.training
        c.model.eval()
        views = torch.stack([c.model.backbone(v) for v in _lidar_views(c, x_mon, n_lidar)], 1)
        c.model.train(was_training)
        result["backbone/lidar"] = float(lidar(views.float(), views.shape[1]))
    result.update(method_metrics(c, x_mon))
    return result


def _lidar_views(c: Components, x_mon: torch.Tensor, n: int) -> list[torch.Tensor]:
    """The views LiDAR's classes are made of, for the first ``n`` monitor samples: the run's augmentations,
    or, for the ``pairs`` views, each sample and another render of its object."""
    if isinstance(c.views, TransformPairs):
        n_train = len(c.data.train)
        idx = monitor_indices(n_train, min(c.cfg.data.monitor_size, n_train), c.cfg.train.seed)[:n]
        idx = idx.to(c.views.order.device)
        return [as_float(c.views.images[idx]), as_float(c.views.images[c.views.partners(idx)])]
    xs = as_float(x_mon[:n].to(c.device))
    return [view(xs) for view in c.views]


@torch.no_grad()
def method_metrics(c: Components, x_mon: torch.Tensor) -> dict[str, float]:
    """The method's own label-free numbers (``model.run_metrics``, e.g. LeJEPA's loss and its terms) on
    the projected views of the monitor subset: views drawn from a fixed seed (the training RNG is left
    untouched), the model in eval mode, so that they compare across epochs and runs."""
    m = c.model
    if not m.run_metrics:
        return {}
    kind = c.device.type  # fork the RNG of the device the views draw from (cpu's is always forked)
    fork = {"devices": []} if kind == "cpu" else {"devices": [c.device.index or 0], "device_type": kind}
    with torch.random.fork_rng(**fork):
        torch.manual_seed(c.cfg.train.seed)
        views = [view(as_float(x_mon.to(c.device))) for view in c.views]
    layer = resolve_layer("projector", m.layer_names)
    z = torch.stack([embed(m, v, c.device, [layer])[layer] for v in views])  # (V, N, K)
    return m.monitor_metrics(z, c.cfg.train.batch_size)


#: k of the kNN probe (Wu et al. 2018, as DINO); smaller training sets use all their samples.
KNN_K = 20


def probe_run(c: Components, layer: str | None = None) -> dict:
    """Linear probe and kNN on frozen features of ``layer`` (default: backbone output), test split;
    ``{}`` when the dataset has no labelled test split."""
    data = c.data
    if data.test is None or data.train.y is None or data.test.y is None:
        return {}
    layer = resolve_layer(layer, c.model.layer_names)
    if int(torch.unique(data.train.y).numel()) < 2:  # nothing to tell apart: no probe, the run still ends
        return {"probe_layer": layer, "probes_skipped": "the training labels hold a single class"}
    tr = embed(c.model, data.train.x, c.device, [layer], workers=workers(c.cfg))[layer]
    te = embed(c.model, data.test.x, c.device, [layer], workers=workers(c.cfg))[layer]
    y_tr, y_te = data.train.y.to(c.device), data.test.y.to(c.device)
    lin = linear_probe(tr, y_tr, te, y_te)
    k = min(KNN_K, len(tr))  # fewer training samples than k: every one of them votes
    knn = knn_probe(tr, y_tr, te, y_te, k=k)
    return {"probe_layer": layer, "linear_acc": lin.accuracy, "knn_acc": knn.accuracy, "knn_k": k}


def final_summary(c: Components, run_dir: Path) -> dict:
    """The quality report (with singular values) of every layer on the monitor subset, and the probes."""
    feats = embed(c.model, monitor_subset(c), c.device)
    summary: dict = {
        "run_dir": str(run_dir),
        "method": c.cfg.method.name,
        "dataset": c.data.name,
        "n_train": len(c.data.train),
        "layers": {layer: quality_report(z, singular_values=True) for layer, z in feats.items()},
    }
    summary["rankme_backbone"] = summary["layers"][resolve_layer("backbone", c.model.layer_names)]["rankme"]
    summary.update(method_metrics(c, monitor_subset(c)))
    summary.update(probe_run(c))
    write_embedding_map(c, run_dir)
    return summary


MAP_SAMPLES = 2000  # points of the run report's embedding pictures


def write_embedding_map(c: Components, run_dir: Path) -> Path:
    """``embedding_map.npz``: the 2-D PCA map (:func:`~selfsup.embeddings.map_2d`) of the backbone and
    projector outputs of the first ``MAP_SAMPLES`` test samples, with their labels (without a test split:
    the monitor subset, unlabelled), for the run report's pictures."""
    test = c.data.test
    if test is not None:
        n = min(len(test), MAP_SAMPLES)
        x, y = take(test.x, torch.arange(n)), (test.y[:n] if test.y is not None else None)
    else:
        x, y = monitor_subset(c)[:MAP_SAMPLES], None
    names = c.model.layer_names
    layers = {"backbone": resolve_layer("backbone", names), "projector": resolve_layer("projector", names)}
    feats = embed(c.model, x, c.device, sorted(set(layers.values())))
    arrays = {f"{which}_pca": map_2d(feats[layer]).astype(np.float32) for which, layer in layers.items()}
    labels = np.asarray(y.cpu()) if y is not None else np.zeros(0, dtype=np.int64)
    path = run_dir / "embedding_map.npz"
    with open(path, "wb") as fh:
        np.savez(fh, **arrays, labels=labels, layers=np.array([layers["backbone"], layers["projector"]]))
    return path
