"""One trained run shared by the tests of the reports: trained once per session (a few seconds), used by
the test of the embedding maps and by the browser's look at the report."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from selfsup.cli import app


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory):
    """A finished 1-epoch run on digits (a 32-unit MLP) with its report: tests that change it copy it."""
    root = tmp_path_factory.mktemp("digits_run")
    args = ["data.dataset=digits", "model.backbone=mlp", "model.backbone_args={hidden: '32'}"]
    args += ["model.projector=16-16", "train.epochs=1", "data.monitor_size=256", "train.lidar_samples=0"]
    res = CliRunner().invoke(app, ["train", "--quiet", *args, f"train.out_dir={root}", "train.name=r"])
    assert res.exit_code == 0, res.output
    return root / "r"
