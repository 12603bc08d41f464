"""Robustness under controlled factors: the controlled test sets and `selfsup robustness`."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from selfsup.cli import app
from selfsup.data.objects3d import CANONICAL_FACTORS
from selfsup.data.objects3d.controlled import VARIED, controlled_set
from selfsup.errors import SelfsupError
from selfsup.evaluate import robustness

PARAMS = {"classes": 3, "instances": 4, "data_seed": 0, "image_size": 32}
#: the recorded factors each controlled factor may change (the view index always differs between views)
CHANGES = {
    "pose": {"quaternion"},
    "position": {"position"},
    "size": {"scale"},
    "background": {"background", "background_hue"},
    "lighting": {"light"},
    "colour": {"hue"},
}


@pytest.mark.parametrize("factor", list(VARIED))
def test_a_factor_set_differs_from_the_canonical_set_in_that_factor_only(factor):
    ids = torch.tensor([0, 5, 10])
    x0, y0, f0 = controlled_set(PARAMS, ids)
    x1, y1, f1 = controlled_set(PARAMS, ids, factor, views=3)
    assert torch.equal(y1, y0.repeat_interleave(3)) and torch.equal(
        f1["instance"], f0["instance"].repeat_interleave(3)
    )
    for name in f0:
        same = torch.equal(f1[name], f0[name].repeat_interleave(3, 0))
        assert same == (name not in CHANGES[factor] | {"view"}), name
    assert not torch.equal(x1, x0.repeat_interleave(3, 0))  # the images do change
    assert set(CHANGES) == set(VARIED)


def test_the_canonical_set_is_canonical():
    _, _, f = controlled_set(PARAMS, torch.arange(12))
    assert (f["position"] == 0).all() and (f["scale"] == 1).all()
    assert torch.allclose(f["hue"], torch.tensor(CANONICAL_FACTORS["hue"][0]))
    assert torch.allclose(f["light"], torch.tensor([0.0, 0.0, 1.0]).expand(12, 3))
    assert torch.allclose(f["quaternion"], f["quaternion"][:1].expand(12, 4))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("robust")
    mp = pytest.MonkeyPatch()
    mp.setenv("SELFSUP_CACHE", str(tmp / "cache"))
    load = "data.load_args={classes: 3, instances: 4, views: 5, test_fraction: 0.25}"
    args = [
        "train",
        "--config",
        "configs/vicreg-objects3d.yaml",
        load,
        "train.epochs=1",
        "train.batch_size=16",
    ]
    args += ["data.monitor_size=40", "train.lidar_samples=0", f"train.out_dir={tmp}", "train.name=run"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    yield tmp / "run"
    mp.undo()


@pytest.mark.slow
def test_robustness_command(tiny_run):
    res = CliRunner().invoke(app, ["robustness", str(tiny_run), "--views", "2"])
    assert res.exit_code == 0, res.output
    assert "pose" in res.output and "none" in res.output
    out = json.loads((tiny_run / "robustness.json").read_text())
    assert set(out["factors"]) == set(VARIED) and out["n_train"] == 9 and out["n_test"]["pose"] == 6
    assert out["parts"] == {} and "invariant part" not in res.output  # VICReg: no split
    for r in out["factors"].values():
        assert r["drop"] == pytest.approx(out["canonical_accuracy"] - r["accuracy"])
    assert (tiny_run / "robustness.png").stat().st_size > 0
    assert "Robustness under controlled factors" in (tiny_run / "report.html").read_text()


@pytest.mark.slow
def test_an_identical_copy_of_the_canonical_set_scores_the_canonical_accuracy(tiny_run, monkeypatch):
    """A 'factor' whose varied range is its canonical value renders the canonical set again."""
    monkeypatch.setitem(VARIED, "copy", ("rotation", 0.0))
    out = robustness.evaluate_robustness(tiny_run, views=1)
    assert out["factors"]["copy"]["accuracy"] == out["canonical_accuracy"]
    assert out["factors"]["copy"]["drop"] == 0


@pytest.mark.slow
def test_unknown_layer_and_other_data_are_refused(tiny_run, tmp_path):
    res = CliRunner().invoke(app, ["robustness", str(tiny_run), "--layer", "layr2"])
    assert res.exit_code == 2 and res.output.startswith("error:") and "layer2" in res.output  # did you mean
    args = ["train", "--config", "configs/vicreg-digits.yaml", "train.epochs=1", f"train.out_dir={tmp_path}"]
    res = CliRunner().invoke(app, [*args, "train.name=digits", "train.lidar_samples=0"])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(app, ["robustness", str(tmp_path / "digits")])
    assert res.exit_code == 2 and "objects3d" in res.output and "Traceback" not in res.output
    with pytest.raises(SelfsupError, match="controlled factor"):
        controlled_set(PARAMS, torch.arange(2), "pos")


def test_training_diversity_varies_one_factor_for_a_fraction_of_the_images(tmp_path, monkeypatch):
    from selfsup.data import load_dataset

    monkeypatch.setenv("SELFSUP_CACHE", str(tmp_path))
    args = {"classes": 4, "instances": 5, "views": 10, "test_fraction": 0.2}
    d = load_dataset("objects3d", diversity={"factor": "size", "fraction": 0.5, "classes": "half"}, **args)
    f = d.train.factors
    varied = f["varied"].bool()
    first_half = d.train.y < 2
    assert not varied[~first_half].any() and 0.3 < varied[first_half].float().mean() < 0.7
    assert (f["scale"][~varied] == 1).all() and (f["scale"][varied] < 1).all()  # drawn from [0.4, 1]
    assert torch.allclose(f["quaternion"], f["quaternion"][:1].expand_as(f["quaternion"]))  # pose canonical
    again = load_dataset(
        "objects3d", diversity={"factor": "size", "fraction": 0.5, "classes": "half"}, **args
    )
    assert torch.equal(again.train.factors["varied"], f["varied"]) and torch.equal(again.train.x, d.train.x)
    with pytest.raises(SelfsupError, match="not both"):
        load_dataset("objects3d", diversity={"factor": "size"}, factors={"rotation": 0.1}, **args)
    with pytest.raises(SelfsupError, match="fraction"):
        load_dataset("objects3d", diversity={"factor": "size", "fracton": 0.5}, **args)


def test_seen_and_unseen_classes_are_scored_apart():
    """With diversity over half the classes, the varied set's accuracy is split by class group."""
    x_tr, y_tr = torch.eye(4).repeat(5, 1) * 5, torch.arange(4).repeat(5)
    x_te = torch.cat([torch.eye(4)[:2] * 5, torch.eye(4)[[3, 2]] * 5])  # classes 2, 3 swapped: wrong
    params = {"classes": 4, "diversity": {"factor": "pose", "fraction": 1.0, "classes": "half"}}
    sets = {"pose": (x_te, torch.arange(4))}
    out = robustness._seen_unseen(params, x_tr, y_tr, sets)
    assert out == {"factor": "pose", "seen_classes": 1.0, "unseen_classes": 0.0, "unseen_as_seen": 0.0}
    x_te = torch.eye(4)[[0, 1, 0, 3]] * 5  # class 2 taken for class 0 (seen): half the unseen renders
    out = robustness._seen_unseen(params, x_tr, y_tr, {"pose": (x_te, torch.arange(4))})
    assert out["unseen_classes"] == 0.5 and out["unseen_as_seen"] == 0.5
    assert robustness._seen_unseen({"classes": 4}, x_tr, y_tr, sets) is None


def test_sie_split_parts_are_scored_apart():
    """The invariant part (first columns) keeps the class under pose; the equivariant part does not."""
    from types import SimpleNamespace

    from selfsup.models import SplitHead

    model = SimpleNamespace(projector=SplitHead(8, 4, "8"))
    y = torch.arange(4).repeat(5)
    clean = torch.cat([torch.eye(4)[y], torch.eye(4)[y]], 1) * 5
    posed = torch.cat([torch.eye(4)[y], torch.eye(4)[(y + 1) % 4]], 1) * 5  # pose moves the second half
    sets = {"canonical": (clean, y), **{f: (posed if f == "pose" else clean, y) for f in VARIED}}
    parts = robustness._part_accuracies(model, clean, y, sets)
    assert set(parts) == {"invariant", "equivariant"}
    assert parts["invariant"]["factors"]["pose"]["accuracy"] == 1.0
    assert parts["equivariant"]["factors"]["pose"]["accuracy"] == 0.0
    assert parts["equivariant"]["canonical_accuracy"] == 1.0
    assert robustness._part_accuracies(SimpleNamespace(projector=None), clean, y, sets) == {}


def test_supervised_reference_learns_the_labels():
    """method.name=supervised: cross-entropy against the class of each sample (not its index)."""
    from selfsup import config as C
    from selfsup.data import load_dataset
    from selfsup.train.components import build

    data = load_dataset("digits")
    cfg = C.from_dict(
        {"method": {"name": "supervised"}, "data": {"dataset": "digits"}, "model": {"backbone": "mlp"}}
    )
    c = build(cfg, data)
    idx = torch.arange(64)
    x = data.train.x[idx]
    opt = torch.optim.Adam(c.model.parameters(), lr=1e-2)
    for _ in range(30):
        loss, _ = c.model([x, x], idx)
        opt.zero_grad()
        loss.backward()
        opt.step()
    pred = c.model.class_head(c.model.eval().backbone(x)).argmax(1)
    assert c.model.class_head.out_features == 10 and (pred == data.train.y[idx]).float().mean() > 0.95


def test_supervised_reference_needs_labels():
    from selfsup.errors import ConfigError
    from selfsup.methods import SSLModel, get_method
    from selfsup.models import build_backbone

    with pytest.raises(ConfigError, match="trains on labels"):
        SSLModel(get_method("supervised"), build_backbone("mlp", (1, 8, 8)), "16", train_labels=None)
