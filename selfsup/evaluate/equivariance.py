"""``selfsup equivariance RUN_DIR``: SIE's evaluation of a trained run on data with recorded transformations.

For any method trained on ``objects3d`` (SIE, its no-split baseline, VICReg or SimCLR on the same pairs):

(a) classification: a linear probe on the backbone representation, and for SIE on its invariant and its
    equivariant part;
(b) transformation prediction: R^2 of an MLP on ``[f(x1), f(x2)]`` predicting the relative rotation
    quaternion, and (whole representation) the colour shifts (object and background hue, on the circle),
    for pairs of views of the same object;
(c) predictor retrieval (methods with a transformation predictor): the predictor applied with the true
    transformation ranks the true target among the other views of the same object (MRR, Hit@1, Hit@5), beside
    the identity baseline (the embedding of view 1 itself as the prediction);
(d) RankMe of each part (label-free), on the monitor subset.

Pairs are drawn with the ``pairs`` views' own rule (:class:`selfsup.views.TransformPairs`) from a fixed
seed, train pairs from the training split and test pairs from the test split (objects unseen in training).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from selfsup.data.stream import as_float
from selfsup.errors import SelfsupError
from selfsup.methods import SSLModel, resolve_layer
from selfsup.models import SplitHead
from selfsup.probes import linear_probe
from selfsup.probes.transformation import retrieval, transformation_r2
from selfsup.quality import rankme
from selfsup.train.components import load_run, monitor_subset, workers
from selfsup.train.measure import embed
from selfsup.views.pairs import REQUIRED_FACTORS, TransformPairs


def _pairs(split, seed: int, n_max: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Up to ``n_max`` pairs (i, j, t) of views of one object, ``t`` with the colour shifts, seeded."""
    pairs = TransformPairs(split.x[:0], split.factors, as_float, colour=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        i = torch.randperm(len(split))[:n_max]
        j = pairs.partners(i)
    return i, j, pairs.transform(i, j)


def _target(t: torch.Tensor, name: str) -> torch.Tensor:
    """The regression target of a transformation: the relative quaternion, or the two hue shifts as points
    on the circle (cos, sin of 2 pi shift: a shift of 0.49 and one of -0.49 are neighbours)."""
    if name == "rotation":
        return t[:, :4]
    angle = 2 * torch.pi * t[:, 4:6]
    return torch.cat((torch.cos(angle), torch.sin(angle)), 1)


def representation_parts(model: SSLModel, h: torch.Tensor) -> dict[str, torch.Tensor]:
    """The representation and, for SIE, its invariant and equivariant parts."""
    if not isinstance(model.projector, SplitHead):
        return {"whole": h}
    n = model.projector.inv_dim
    return {"whole": h, "invariant": h[:, :n], "equivariant": h[:, n:]}


def check_factors(data) -> None:
    for name, split in (("training", data.train), ("test", data.test)):
        missing = [k for k in REQUIRED_FACTORS if split is None or k not in (split.factors or {})]
        if missing or split.y is None:
            raise SelfsupError(
                f"this run's dataset '{data.name}' has no recorded transformations in its {name} split "
                f"(needs labels and {', '.join(REQUIRED_FACTORS)}); train on data.dataset=objects3d"
            )


@torch.no_grad()
def _retrieval(c, pairs: tuple, z_test: torch.Tensor, colour: bool) -> dict:
    """Predictor retrieval on test pairs: the model's predictor (if any) and the identity baseline."""
    model, (i, j, t) = c.model, pairs
    n = model.n_inv
    eq = z_test[:, n:]
    groups = c.data.test.factors["instance"].to(eq.device)
    i, j = i.to(eq.device), j.to(eq.device)
    out = {"identity": retrieval(eq[i], j, eq, groups, source_index=i).__dict__}
    if model.predictor is not None and model.recipe.needs_transform:
        model.eval()
        t_model = (t if colour else t[:, :4]).to(eq.device)
        out["predictor"] = retrieval(model.predictor(eq[i], t_model), j, eq, groups, source_index=i).__dict__
    return out


def evaluate_equivariance(
    run_dir: str | Path, device: str | None = None, seed: int = 0, n_pairs: int = 8000, epochs: int = 40
) -> dict:
    """(a)-(d) of the module docstring for the run in ``run_dir``; written to ``equivariance.json``."""
    c, ckpt_path = load_run(run_dir, device)
    check_factors(c.data)
    names = c.model.layer_names
    rep, proj = resolve_layer("backbone", names), resolve_layer("projector", names)
    feats = {
        split: embed(c.model, getattr(c.data, split).x, c.device, [rep, proj], workers=workers(c.cfg))
        for split in ("train", "test")
    }
    y_tr, y_te = c.data.train.y.to(c.device), c.data.test.y.to(c.device)
    parts_tr = representation_parts(c.model, feats["train"][rep])
    parts_te = representation_parts(c.model, feats["test"][rep])
    result: dict = {"run_dir": str(run_dir), "checkpoint": ckpt_path.name, "method": c.cfg.method.name}
    result["classification"] = {
        k: linear_probe(parts_tr[k], y_tr, parts_te[k], y_te).accuracy for k in parts_tr
    }
    tr, te = _pairs(c.data.train, seed, n_pairs), _pairs(c.data.test, seed + 1, n_pairs)

    def r2(part: str, target: str) -> dict:
        f_tr, f_te = parts_tr[part], parts_te[part]
        train = (f_tr[tr[0]], f_tr[tr[1]], _target(tr[2], target))
        test = (f_te[te[0]], f_te[te[1]], _target(te[2], target))
        return transformation_r2(train, test, epochs=epochs, seed=seed).__dict__

    result["rotation_r2"] = {k: r2(k, "rotation") for k in parts_tr}
    result["colour_r2"] = {"whole": r2("whole", "colour")}
    colour = isinstance(c.views, TransformPairs) and c.views.colour
    result["retrieval"] = _retrieval(c, te, feats["test"][proj], colour)
    mon = representation_parts(c.model, embed(c.model, monitor_subset(c), c.device, [rep])[rep])
    result["rankme"] = {k: rankme(v) for k, v in mon.items()}
    result["dims"] = {k: int(v.shape[1]) for k, v in mon.items()}
    (Path(run_dir) / "equivariance.json").write_text(json.dumps(result, indent=2))
    return result


def equivariance_table(res: dict) -> list[tuple[str, ...]]:
    """Rows (part, dims, RankMe, linear accuracy, rotation R^2, colour R^2) of a result, as text."""
    rows = []
    for part in res["classification"]:
        colour = res["colour_r2"].get(part)
        rows.append(
            (
                part,
                str(res["dims"][part]),
                f"{res['rankme'][part]:.1f}",
                f"{100 * res['classification'][part]:.1f} %",
                f"{res['rotation_r2'][part]['r2_global']:.3f}",
                f"{colour['r2_global']:.3f}" if colour else "-",
            )
        )
    return rows
