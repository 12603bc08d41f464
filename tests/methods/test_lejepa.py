"""The lejepa method end to end: global and local views, the loss terms recorded on the monitor subset, the
step-seeded directions in the checkpoint, config errors, and the loss as a sweep objective."""

import json

import pytest
import torch
from typer.testing import CliRunner

from selfsup import config as C
from selfsup.cli import app
from selfsup.errors import ConfigError, SelfsupError
from selfsup.select import load_sweep
from selfsup.select.worker import preflight, trial_metrics
from selfsup.train import build
from selfsup.train.checkpoint import load_latest

runner = CliRunner()
TINY = [
    "data.dataset=digits",
    "model.backbone=mlp",
    "model.backbone_args={hidden: '64-64'}",
    "model.projector=64-32",
    "method.name=lejepa",
    "method.params={n_slices: 64}",
    "data.n_views=4",
    "data.local_views=2",
    "train.batch_size=128",
    "data.monitor_size=256",
    "train.lidar_samples=32",
]


def test_views_are_global_then_local():
    c = build(C.resolve(None, TINY))
    scales = [v.crop_scale for v in c.views]
    assert scales[:2] == [(0.5, 1.0)] * 2 and scales[2:] == [(0.25, 0.5)] * 2  # small-image's local crops
    assert c.model.n_global == 2
    c = build(C.resolve(None, [*TINY, "data.local_view_args={crop_scale: [0.4, 0.7]}"]))
    assert [v.crop_scale for v in c.views][2:] == [(0.4, 0.7)] * 2


@pytest.mark.slow
def test_run_records_the_loss_terms_and_resumes_the_direction_seed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["train", "--quiet", *TINY, "train.epochs=2", "train.monitor_every=1", "train.name=r"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    run = tmp_path / "runs" / "r"
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for rec in records:
        assert rec["lejepa_sigreg"] > 0 and rec["lejepa_prediction"] > 0
        mix = 0.95 * rec["lejepa_prediction"] + 0.05 * rec["lejepa_sigreg"]
        assert rec["lejepa_loss"] == pytest.approx(mix)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["lejepa_loss"] == pytest.approx(records[-1]["lejepa_loss"])  # same weights, same views
    state, _ = load_latest(run / "checkpoints")
    assert int(state["model"]["sigreg_step"]) == state["step"] == 2 * (1437 // 128)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["data.n_views=3", "data.local_views=2"], "needs at least 2 global views"),
        (["data.local_views=4"], "leaves no global view"),
        (["data.local_view_args={crop_scal: [0.1, 0.2]}"], "Did you mean 'crop_scale'"),
        (["method.params={lambd: high}"], "method.params"),
        (["method.params={seed: 3}"], "has no option 'seed'"),
        (["method.params={n_global: 3}"], "has no option 'n_global'"),
    ],
)
def test_config_mistakes(overrides, message):
    with pytest.raises(ConfigError, match=message):
        C.resolve(None, [*TINY, *overrides])


def test_local_views_need_a_crop_for_recipes_without_one():
    with pytest.raises(ConfigError, match="no default for local views"):
        C.resolve(None, [*TINY, "data.views=identity"])


def _sweep(tmp_path, method: str):
    base = C.resolve(None, [*TINY, f"method.name={method}", "method.params={}"]).model_dump(mode="json")
    data = {
        "name": "s",
        "base": base,
        "space": {"optim.lr": {"type": "grid", "values": [1e-3, 2e-3]}},
        "objective": {"metric": "lejepa_loss"},
        "direction": "minimize",
    }
    return load_sweep(data=data, sweep_dir=tmp_path)


def test_lejepa_loss_is_a_sweep_objective(tmp_path):
    sweep = _sweep(tmp_path, "lejepa")
    preflight(sweep)
    summary = {"layers": {"fc2": {"rankme": 5.0}, "proj2": {"rankme": 3.0}}, "lejepa_loss": 0.7}
    summary.update(lejepa_prediction=0.5, lejepa_sigreg=4.5, rankme_backbone=5.0)
    metrics = trial_metrics(summary, sweep)
    assert metrics["score"] == 0.7 and metrics["lejepa_sigreg"] == 4.5
    with pytest.raises(SelfsupError, match="recorded by method lejepa only"):
        preflight(_sweep(tmp_path, "vicreg"))


def test_unknown_objective_lists_the_loss_metrics(tmp_path):
    with pytest.raises(ConfigError, match="Did you mean 'lejepa_loss'"):
        load_sweep(data={**_sweep_data(), "objective": {"metric": "lejepa_los"}}, sweep_dir=tmp_path)


def _sweep_data():
    space = {"optim.lr": {"type": "grid", "values": [1]}}
    return {"name": "s", "base": {"method": {"name": "lejepa"}}, "space": space}


def test_monitor_leaves_the_training_rng_alone():
    from selfsup.train.measure import method_metrics

    c = build(C.resolve(None, TINY))
    x = c.data.train.x[:256]
    torch.manual_seed(0)
    first = method_metrics(c, x)
    assert set(first) == {"lejepa_loss", "lejepa_prediction", "lejepa_sigreg"}
    after = torch.rand(1)
    torch.manual_seed(0)
    assert method_metrics(c, x) == first and torch.equal(torch.rand(1), after)


@pytest.mark.parametrize(
    "backbone, shape",
    [
        ("mlp", (1, 8, 8)),
        ("conv1d", (1, 40)),
        ("convnet", (1, 8, 8)),
        ("resnet18", (3, 32, 32)),
        ("resnet50", (3, 32, 32)),
        ("pde2d", (2, 32, 64)),
    ],
)
def test_lejepa_trains_with_every_backbone(backbone, shape):
    from selfsup.methods import SSLModel, get_method
    from selfsup.models import build_backbone

    torch.manual_seed(0)
    model = SSLModel(get_method("lejepa"), build_backbone(backbone, shape), "64-16", params={"n_slices": 32})
    x = torch.randn(8, *shape)
    views = [x + 0.1 * torch.randn_like(x) for _ in range(4)]  # 2 global, 2 local (same shape)
    loss, feats = model.loss(views, torch.arange(8))
    loss.backward()
    assert torch.isfinite(loss) and feats.shape[0] == 8
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_a_loss_objective_must_be_minimised(tmp_path):
    data = {**_sweep_data(), "objective": {"metric": "lejepa_loss"}}  # direction left at maximize
    with pytest.raises(ConfigError, match="set direction: minimize"):
        load_sweep(data=data, sweep_dir=tmp_path)


@pytest.mark.parametrize(
    "params, message",
    [({"lambd": 1.5}, "must lie in \\[0, 1\\]"), ({"n_slices": 0}, "n_slices must be an integer >= 1")],
)
def test_criterion_ranges_are_checked_with_the_config(params, message):
    with pytest.raises(ConfigError, match=message):
        C.from_dict({"method": {"name": "lejepa", "params": params}})
