"""``selfsup robustness RUN_DIR``: accuracy under controlled factors of variation (Ibrahim et al. 2022).

For a run trained on objects3d: a linear probe on frozen features of a layer (default the backbone
output) is trained on the *canonical* renders of the run's training objects (every factor at its canonical
value, :mod:`selfsup.data.objects3d.controlled`), then evaluated on the canonical renders of the test
objects and, for each factor (pose, position, size, background, lighting, colour), on renders of the same
test objects with only that factor varied. The drop from the canonical accuracy is the cost of not having
seen that variation: the first question of "The Robustness Limits of SoTA Vision Models to Natural
Variation". The probe is the deterministic L-BFGS :func:`~selfsup.probes.linear_probe`, refitted on the
same canonical features for every test set. For SIE, whose representation is split into an invariant and
an equivariant part, the backbone output is also scored part by part (``parts`` in the result): does the
split buy robustness to pose?
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import torch

from selfsup.data.objects3d.controlled import VARIED, controlled_set
from selfsup.errors import SelfsupError
from selfsup.evaluate.equivariance import representation_parts
from selfsup.methods import resolve_layer
from selfsup.probes import linear_probe
from selfsup.train.components import Components, load_run, workers
from selfsup.train.measure import embed


def check_objects3d(c: Components) -> dict:
    """The generator parameters and test objects of the run's objects3d data, or a clear error."""
    info = c.data.info
    if (
        c.data.name != "objects3d"
        or "manifest" not in info
        or not info.get("split", {}).get("test_instances")
    ):
        raise SelfsupError(
            f"robustness needs a run trained on objects3d with a test split (this run's dataset is "
            f"'{c.cfg.data.dataset}'): its controlled test sets re-render the run's objects"
        )
    return info["manifest"]["parameters"]


def evaluate_robustness(run_dir: str | Path, layer: str | None = None, views: int = 5) -> dict:
    """Canonical and per-factor test accuracy of a linear probe trained on canonical renders; written to
    ``robustness.json`` and ``robustness.png`` in the run directory."""
    c, ckpt_path = load_run(run_dir)
    params = check_objects3d(c)
    layer = resolve_layer(layer, c.model.layer_names)
    test_ids = torch.tensor(c.data.info["split"]["test_instances"])
    all_ids = torch.arange(params["classes"] * params["instances"])
    train_ids = all_ids[~torch.isin(all_ids, test_ids)]

    def features(ids, factor=None, n_views=1):
        x, y, _ = controlled_set(params, ids, factor, n_views)
        return embed(c.model, x, c.device, [layer], workers=workers(c.cfg))[layer], y.to(c.device)

    x_tr, y_tr = features(train_ids)
    sets = {"canonical": features(test_ids)}
    sets.update({f: features(test_ids, f, views) for f in VARIED})
    result = {"run_dir": str(run_dir), "checkpoint": ckpt_path.name, "method": c.cfg.method.name}
    result.update(layer=layer, **_accuracies(x_tr, y_tr, sets))
    backbone = layer == resolve_layer("backbone", c.model.layer_names)
    result["parts"] = _part_accuracies(c.model, x_tr, y_tr, sets) if backbone else {}
    result.update(
        ranges={f: {"option": o, "range": r} for f, (o, r) in VARIED.items()},
        seen_unseen=_seen_unseen(params, x_tr, y_tr, sets),
        n_train=len(x_tr),
        n_test={name: len(x) for name, (x, _) in sets.items()},
    )
    run_dir = Path(run_dir)
    (run_dir / "robustness.json").write_text(json.dumps(result, indent=2))
    robustness_plot(result).savefig(run_dir / "robustness.png", dpi=100, bbox_inches="tight")
    plt.close("all")
    return result


def _accuracies(x_tr, y_tr, sets: dict) -> dict:
    """The probe's canonical accuracy and, per factor, its accuracy and drop from canonical."""
    acc = {name: linear_probe(x_tr, y_tr, x, y).accuracy for name, (x, y) in sets.items()}
    factors = {f: {"accuracy": acc[f], "drop": acc["canonical"] - acc[f]} for f in VARIED}
    return {"canonical_accuracy": acc["canonical"], "factors": factors}


def _part_accuracies(model, x_tr, y_tr, sets: dict) -> dict:
    """For SIE's split representation, :func:`_accuracies` of its invariant and its equivariant part."""
    train = representation_parts(model, x_tr)
    test = {name: (representation_parts(model, x), y) for name, (x, y) in sets.items()}
    return {
        k: _accuracies(train[k], y_tr, {name: (p[k], y) for name, (p, y) in test.items()})
        for k in train
        if k != "whole"
    }


def _seen_unseen(params: dict, x_tr, y_tr, sets: dict) -> dict | None:
    """For a run trained with ``diversity: {classes: half}`` (the factor varied in the first half of the
    classes only): the varied test set's accuracy on the classes that saw the variation and on the others,
    and how often the probe puts a varied render of an unseen-variation class into a seen-variation class
    (``unseen_as_seen``; a class is ``c`` when the accuracy against the constant label ``c`` is 1)."""
    div = params.get("diversity")
    if not div or div["classes"] != "half":
        return None
    x, y = sets[div["factor"]]
    half = params["classes"] // 2
    seen = y < half
    acc = {g: linear_probe(x_tr, y_tr, x[m], y[m]).accuracy for g, m in (("seen", seen), ("unseen", ~seen))}
    x_un = x[~seen]
    as_seen = sum(linear_probe(x_tr, y_tr, x_un, torch.full((len(x_un),), c)).accuracy for c in range(half))
    return {
        "factor": div["factor"],
        "seen_classes": acc["seen"],
        "unseen_classes": acc["unseen"],
        "unseen_as_seen": as_seen,
    }


def robustness_plot(result: dict) -> plt.Figure:
    """Bars: the canonical accuracy and each factor's, with the drop written above each factor."""
    names = ["canonical", *result["factors"]]
    values = [result["canonical_accuracy"], *(r["accuracy"] for r in result["factors"].values())]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    bars = ax.bar(names, [100 * v for v in values], color=["grey"] + ["tab:blue"] * (len(names) - 1))
    for bar, r in zip(bars[1:], result["factors"].values(), strict=True):
        ax.annotate(
            f"-{100 * r['drop']:.1f}",
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            ha="center",
            va="bottom",
            fontsize=8,
        )
    ax.set(
        ylabel="linear probe accuracy (%)",
        ylim=(0, 105),
        title=f"{result['method']}: trained on canonical renders, tested with one factor varied",
    )
    return fig
