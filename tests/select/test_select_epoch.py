"""`selfsup select-epoch`: the epoch to keep by a label-free metric, against the per-epoch probe."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from scipy import stats
from typer.testing import CliRunner

from selfsup.cli import app
from selfsup.errors import ConfigError, SelfsupError
from selfsup.select.epochs import select_epoch
from selfsup.train import checkpoint as ckpt

runner = CliRunner()


def _history(tmp_path: Path, rows: list[dict], kept_epochs=()) -> Path:
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    lines = [json.dumps({"epoch": i + 1, "loss": 1.0, **row}) for i, row in enumerate(rows)]
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    for e in kept_epochs:  # 1-based epochs; files are named by the 0-based epoch index
        ckpt.save_checkpoint({"epoch": e - 1}, ckpt.checkpoint_path(run / "checkpoints", e - 1))
    return run


def test_pick_gap_tau_and_tie_rule(tmp_path):
    ranks = [10.0, 30.0, 30.0, 20.0, 25.0]  # monitored epochs 1, 3, 4, 5, 6; 3 and 4 tie: the earlier wins
    accs = [0.50, 0.70, 0.80, 0.75, 0.90]
    rows = [{"backbone/rankme": r, "online_probe_test_acc": a} for r, a in zip(ranks, accs, strict=True)]
    rows.insert(1, {"lr": 0.1})  # epoch 2, not monitored: skipped
    run = _history(tmp_path, rows, kept_epochs=[5, 6])
    out = select_epoch(run)
    assert [e["epoch"] for e in out["epochs"]] == [1, 3, 4, 5, 6]
    assert out["pick"] == 3 and out["oracle"] == 6 and out["direction"] == "maximize"
    assert out["gap_points"] == pytest.approx(100 * (0.90 - 0.70))
    assert out["agreement"]["kendall_tau"] == pytest.approx(stats.kendalltau(ranks, accs).statistic)
    assert [e["checkpoint"] is not None for e in out["epochs"]] == [False, False, False, True, True]


def test_the_early_phase_is_left_out(tmp_path):
    """RankMe falls from its value at initialisation before learning raises it: the epochs before its lowest
    point are not compared (the main job's highest RankMe is its 2nd epoch's, 8.3 points below the best)."""
    ranks = [50.0, 40.0, 30.0, 35.0, 45.0, 44.0]
    accs = [0.50, 0.60, 0.70, 0.80, 0.90, 0.95]
    run = _history(
        tmp_path,
        [{"backbone/rankme": r, "online_probe_test_acc": a} for r, a in zip(ranks, accs, strict=True)],
    )
    out = select_epoch(run)
    assert [e["excluded"] for e in out["epochs"]] == ["early phase"] * 2 + [None] * 4
    assert out["pick"] == 5 and out["oracle"] == 6 and out["gap_points"] == pytest.approx(5.0)
    assert out["agreement"]["n"] == 4  # tau over the compared epochs
    everything = select_epoch(run, all_epochs=True)
    assert everything["pick"] == 1 and everything["gap_points"] == pytest.approx(45.0)
    run_nan = _history(tmp_path / "nan", [{"backbone/rankme": None}, {"backbone/rankme": None}])
    with pytest.raises(SelfsupError, match="not finite"):
        select_epoch(run_nan)


def test_a_loss_is_minimised_and_labels_are_optional(tmp_path):
    run = _history(tmp_path, [{"lejepa_loss": v} for v in (3.0, 1.0, 2.0)])
    out = select_epoch(run, "lejepa_loss")
    assert out["direction"] == "minimize" and out["pick"] == 2
    assert out["gap_points"] is None and out["oracle"] is None  # no probe accuracy: no agreement to report
    assert select_epoch(run, "lejepa_loss", direction="maximize")["pick"] == 3  # after its lowest value
    assert select_epoch(run, "lejepa_loss", direction="maximize", all_epochs=True)["pick"] == 1


def test_errors(tmp_path):
    run = _history(tmp_path, [{"backbone/rankme": 3.0}])
    with pytest.raises(ConfigError, match="Did you mean 'backbone/rankme'"):
        select_epoch(run, "rankme")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SelfsupError, match="no monitored epoch"):
        select_epoch(empty)
    result = runner.invoke(app, ["select-epoch", str(run), "--direction", "up"])
    assert result.exit_code == 2


@pytest.mark.slow
def test_on_a_trained_run_with_every_checkpoint(tmp_path):
    """A tiny run keeping every epoch: the table, the JSON, and --probe's linear probe of each checkpoint."""
    args = [
        "train",
        "--quiet",
        "data.dataset=digits",
        "model.backbone=mlp",
        "model.backbone_args={hidden: '32'}",
        "model.projector=32-32",
        "data.monitor_size=256",
        "train.lidar_samples=0",
        "train.epochs=3",
        "train.monitor_every=1",
        "train.keep_checkpoints=3",
        f"train.out_dir={tmp_path}",
        "train.name=e",
    ]
    assert runner.invoke(app, args).exit_code == 0
    table = runner.invoke(app, ["select-epoch", str(tmp_path / "e")])
    assert table.exit_code == 0, table.output
    assert "pick: epoch" in table.output and "Kendall tau" in table.output
    res = runner.invoke(app, ["select-epoch", str(tmp_path / "e"), "--probe", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert [e["epoch"] for e in out["epochs"]] == [1, 2, 3] and all(e["checkpoint"] for e in out["epochs"])
    assert all(0.5 < e["acc"] <= 1 for e in out["epochs"]) and out["accuracy"].startswith("linear probe")
    final = json.loads((tmp_path / "e" / "summary.json").read_text())["linear_acc"]
    assert out["epochs"][-1]["acc"] == pytest.approx(final)  # the last checkpoint is the final model
