"""``selfsup layers`` (Guillotine evaluation) on a tiny trained run: one row per layer, finite values,
layers.json and layers.png written; an unknown layer exits 2 with a did-you-mean."""

import json
import math
from pathlib import Path

import pytest
import torch
from rich.console import Console
from typer.testing import CliRunner

from selfsup import config as C
from selfsup.cli import app
from selfsup.train import build, fit

pytestmark = pytest.mark.slow  # every test reads a trained run (the run_dir fixture)
runner = CliRunner()
TINY = [
    "data.dataset=digits",
    "model.backbone=mlp",
    "model.backbone_args={hidden: '64-32'}",
    "model.projector=48-16",
    "train.batch_size=128",
    "data.monitor_size=256",
    "train.lidar_samples=0",
    "train.epochs=1",
]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models: one torch thread is fastest, and two threads crawl on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, one_thread):
    cfg = C.resolve(None, [*TINY, f"train.out_dir={tmp_path_factory.mktemp('runs')}", "train.name=tiny"])
    return fit(cfg, console=Console(quiet=True), progress=False)["run_dir"]


def test_layers_table_json_and_plot(run_dir):
    names = build(C.resolve(run_dir)).model.layer_names
    assert names == ["fc1", "fc2", "proj1", "proj2"]
    res = runner.invoke(app, ["layers", run_dir, "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert [r["layer"] for r in out["layers"]] == names
    assert [r["dim"] for r in out["layers"]] == [64, 32, 48, 16]
    assert [r["part"] for r in out["layers"]] == ["backbone", "backbone", "projector", "projector"]
    for r in out["layers"]:
        for key in ("rankme", "rankme_norm", "stable_rank", "nesum", "linear_acc", "knn_acc"):
            assert math.isfinite(r[key]), (r["layer"], key)
        assert 1 <= r["rankme"] <= r["dim"] and r["rankme_norm"] == pytest.approx(r["rankme"] / r["dim"])
        assert 0.1 < r["linear_acc"] <= 1 and 0.1 < r["knn_acc"] <= 1  # chance is 0.1 on digits
    # the backbone output matches the run's own summary (same monitor subset, same probes)
    summary = json.loads((Path(run_dir) / "summary.json").read_text())
    fc2 = out["layers"][1]
    assert fc2["rankme"] == pytest.approx(summary["rankme_backbone"], rel=1e-6)
    assert fc2["linear_acc"] == pytest.approx(summary["linear_acc"], abs=1e-6)
    assert out["best_linear_layer"] in names
    saved = json.loads((Path(run_dir) / "layers.json").read_text())
    assert saved["layers"] == out["layers"]
    png = (Path(run_dir) / "layers.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_layers_filter_table_and_unknown_layer(run_dir):
    res = runner.invoke(
        app, ["layers", run_dir, "--no-probes", "--layer", "proj2", "--layer", "fc1", "--json"]
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert [r["layer"] for r in out["layers"]] == ["fc1", "proj2"]  # network order
    assert "linear_acc" not in out["layers"][0] and out["probes"] is False
    res = runner.invoke(app, ["layers", run_dir, "--no-probes"])
    assert res.exit_code == 0 and "proj1" in res.output and "RankMe" in res.output
    res = runner.invoke(app, ["layers", run_dir, "--layer", "fc9"])
    assert res.exit_code == 2, res.output
    assert "unknown layer 'fc9'" in res.output and "Did you mean" in res.output
    assert "Traceback" not in res.output
