"""``model.init_from``: a run starts from another run's (or a file's) backbone weights; a resume ignores
it."""

from __future__ import annotations

import shutil

import pytest
import torch
from typer.testing import CliRunner

from selfsup import config as C
from selfsup.cli import app
from selfsup.train import build
from selfsup.train import checkpoint as ckpt

TINY = [
    "data.dataset=digits",
    "model.backbone=mlp",
    "model.backbone_args={hidden: '64-64'}",
    "model.projector=64-64",
    "train.batch_size=128",
    "data.monitor_size=256",
    "train.lidar_samples=32",
    "train.epochs=1",
]
runner = CliRunner()


@pytest.fixture
def source_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["train", "--quiet", *TINY, "train.name=source"])
    assert res.exit_code == 0, res.output
    return tmp_path / "runs" / "source"


def _trained_backbone(run):
    state, _ = ckpt.load_latest(run / "checkpoints")
    return {k[len("backbone.") :]: v for k, v in state["model"].items() if k.startswith("backbone.")}


@pytest.mark.slow
def test_a_run_starts_from_a_run_or_a_weights_file(source_run, tmp_path):
    want = _trained_backbone(source_run)
    torch.save(want, tmp_path / "bare.pt")
    torch.save({f"backbone.{k}": v for k, v in want.items()}, tmp_path / "prefixed.pt")
    for source in (source_run, tmp_path / "bare.pt", tmp_path / "prefixed.pt"):
        got = build(C.resolve(None, [*TINY, f"model.init_from={source}"])).model.backbone.state_dict()
        assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want), source
    fresh = build(C.resolve(None, TINY)).model.backbone.state_dict()
    assert not all(torch.equal(fresh[k], want[k]) for k in want)  # without it: a random start


@pytest.mark.slow
def test_a_resumed_run_takes_its_checkpoint_not_init_from(source_run, tmp_path):
    res = runner.invoke(app, ["train", "--quiet", *TINY, f"model.init_from={source_run}", "train.name=child"])
    assert res.exit_code == 0, res.output
    shutil.rmtree(source_run)  # the source may be gone by the time the run resumes
    res = runner.invoke(app, ["train", "--quiet", "--resume", "runs/child", "train.epochs=2"])
    assert res.exit_code == 0, res.output


@pytest.mark.slow
@pytest.mark.parametrize(
    "value,message",
    [
        ("runs/source", "does not fit model.backbone (other shape stages.fc1"),
        ("nowhere", "model.init_from 'nowhere' does not exist"),
    ],
)
def test_weights_that_do_not_fit_are_one_error_line(source_run, tmp_path, value, message):
    args = [*TINY, "model.backbone_args={hidden: '32-64'}", f"model.init_from={value}", "train.name=bad"]
    res = runner.invoke(app, ["train", "--quiet", *args])
    assert res.exit_code == 2 and res.output.count("error:") == 1 and message in res.output, res.output
    assert not (tmp_path / "runs" / "bad").exists()
